"""TimescaleDB side of :mod:`wardwatch.store_careplans` (mixed into
:class:`ingest.stores.timescale.TimescaleStore`).

``device_last_seen`` (migration 7) is upserted by ``write_observations`` from the batch's
staging rows with :data:`LAST_SEEN_FROM_STAGING`, in the batch's own transaction: one
statement per batch, rows locked in key order (concurrent ingest workers do not deadlock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, LiteralString, TypeVar, cast

from ingest.errors import StoreError
from ingest.stores._mixins import TimescaleMixin
from ingest.stores._rows import dumps, opt_utc, utc
from wardwatch.store_careplans import CarePlan, LastReading, Proposal, ProposalStatus

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
Row = tuple[Any, ...]

#: Moves each (patient, device, kind) of the staged batch to its latest reading time.
#: Duplicates of stored rows change nothing: their time is already counted.
LAST_SEEN_FROM_STAGING: Final = """
    INSERT INTO device_last_seen (patient, device, kind, at, gateway)
    SELECT DISTINCT ON (patient, device, kind) patient, device, kind, at, gateway
    FROM observations_staging
    ORDER BY patient, device, kind, at DESC
    ON CONFLICT (patient, device, kind) DO UPDATE
    SET at = excluded.at, gateway = excluded.gateway
    WHERE excluded.at > device_last_seen.at
"""

_PLAN_COLUMNS: Final = "patient, title, thresholds, schedule, version, updated_at, updated_by"
_PROPOSAL_COLUMNS: Final = (
    "id, patient, code, description, created_at, reason_alerts, change, due, status, "
    "decided_at, decided_by, decision_note"
)


def _plan(row: Row) -> CarePlan:
    patient, title, thresholds, schedule, version, updated_at, updated_by = row
    return CarePlan(
        patient=patient,
        title=title,
        thresholds=cast(dict[str, float], thresholds),
        schedule=cast(dict[str, float], schedule),
        version=int(version),
        updated_at=opt_utc(updated_at),
        updated_by=updated_by,
    )


def _proposal(row: Row) -> Proposal:
    (pid, patient, code, description, created, reasons, change, due, status, decided_at,
     decided_by, note) = row  # fmt: skip
    return Proposal(
        patient=patient,
        code=code,
        description=description,
        created_at=utc(created),
        reason_alerts=tuple(int(a) for a in reasons),
        change=cast(dict[str, Any], change),
        due=opt_utc(due),
        status=cast(ProposalStatus, status),
        decided_at=opt_utc(decided_at),
        decided_by=decided_by,
        decision_note=note,
        id=int(pid),
    )


def _json_map(value: Mapping[str, Any]) -> str:
    return dumps(dict(value))


class TimescaleCarePlansMixin(TimescaleMixin):
    """Methods of :class:`wardwatch.store_careplans` on TimescaleDB (schema: migrations/)."""

    # -- care plans ------------------------------------------------------------------------
    def get_care_plan(self, patient: str) -> CarePlan | None:
        """The patient's care plan, if one was set."""
        rows = self._query(
            "get_care_plan",
            f"SELECT {_PLAN_COLUMNS} FROM care_plans WHERE patient=%s",
            (patient,),
        )
        return _plan(rows[0]) if rows else None

    def put_care_plan(self, plan: CarePlan) -> CarePlan:
        """Create or replace the patient's plan; return it as stored (version bumped).

        Not retried if the connection is lost while committing (the bump may have happened).
        """
        args = (
            plan.patient,
            plan.title,
            _json_map(plan.thresholds),
            _json_map(plan.schedule),
            opt_utc(plan.updated_at),
            plan.updated_by,
        )

        def run(cur: psycopg.Cursor[Row]) -> int:
            cur.execute(
                f"INSERT INTO care_plans ({_PLAN_COLUMNS}) "
                "VALUES (%s, %s, %s::jsonb, %s::jsonb, 1, %s, %s) "
                "ON CONFLICT (patient) DO UPDATE SET title=excluded.title, "
                "thresholds=excluded.thresholds, schedule=excluded.schedule, "
                "version=care_plans.version + 1, updated_at=excluded.updated_at, "
                "updated_by=excluded.updated_by RETURNING version",
                args,
            )
            row = cur.fetchone()
            assert row is not None
            return int(row[0])

        return replace(plan, version=self._run("put_care_plan", run, idempotent=False))

    def list_care_plans(self) -> list[CarePlan]:
        """Every patient's care plan, ordered by patient (byte order, like SQLite)."""
        rows = self._query(
            "list_care_plans",
            f'SELECT {_PLAN_COLUMNS} FROM care_plans ORDER BY patient COLLATE "C"',
        )
        return [_plan(r) for r in rows]

    def last_readings(self) -> list[LastReading]:
        """The latest reading per (patient, device, kind), and paired devices never heard."""
        rows = self._query(
            "last_readings",
            "SELECT patient, device, kind, at, gateway, paired FROM ("
            "SELECT s.patient, s.device, s.kind, s.at, s.gateway, "
            "(p.patient IS NULL OR p.patient = s.patient) AS paired "
            "FROM device_last_seen s LEFT JOIN device_pairings p ON p.device = s.device "
            "UNION ALL "
            "SELECT p.patient, p.device, NULL, p.paired_at, NULL, true FROM device_pairings p "
            "WHERE NOT EXISTS (SELECT 1 FROM device_last_seen s "
            "WHERE s.device = p.device AND s.patient = p.patient)) AS r "
            'ORDER BY patient COLLATE "C", device COLLATE "C", kind COLLATE "C"',
        )
        return [
            LastReading(patient, device, kind, utc(at), gateway, bool(paired))
            for patient, device, kind, at, gateway, paired in rows
        ]

    # -- proposals -------------------------------------------------------------------------
    def add_proposal(self, proposal: Proposal) -> Proposal:
        """Store a proposal unless the same patient and code is still open (return that)."""
        if proposal.status != "proposed":
            raise ValueError("add_proposal takes an undecided proposal (status 'proposed')")
        args = (
            proposal.patient,
            proposal.code,
            proposal.description,
            utc(proposal.created_at),
            list(proposal.reason_alerts),
            _json_map(proposal.change),
            opt_utc(proposal.due),
        )

        def run(cur: psycopg.Cursor[Row]) -> Proposal:
            cur.execute(
                "INSERT INTO care_plan_proposals (patient, code, description, created_at, "
                "reason_alerts, change, due, status) "
                "VALUES (%s, %s, %s, %s, %s::bigint[], %s::jsonb, %s, 'proposed') "
                f"ON CONFLICT DO NOTHING RETURNING {_PROPOSAL_COLUMNS}",
                args,
            )
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    f"SELECT {_PROPOSAL_COLUMNS} FROM care_plan_proposals "
                    "WHERE patient=%s AND code=%s AND status='proposed'",
                    (proposal.patient, proposal.code),
                )
                row = cur.fetchone()
                assert row is not None  # the conflicting open proposal
            return _proposal(row)

        # Safe to retry: a retry after a lost commit finds the open proposal and returns it.
        return self._run("add_proposal", run)

    def get_proposal(self, proposal_id: int) -> Proposal | None:
        """One proposal by id."""
        rows = self._query(
            "get_proposal",
            f"SELECT {_PROPOSAL_COLUMNS} FROM care_plan_proposals WHERE id=%s",
            (proposal_id,),
        )
        return _proposal(rows[0]) if rows else None

    def list_proposals(
        self, *, patient: str | None = None, status: ProposalStatus | None = None
    ) -> list[Proposal]:
        """Proposals, oldest first, optionally filtered."""
        sql: LiteralString = f"SELECT {_PROPOSAL_COLUMNS} FROM care_plan_proposals WHERE true"
        args: list[Any] = []
        if patient is not None:
            sql += " AND patient=%s"
            args.append(patient)
        if status is not None:
            sql += " AND status=%s"
            args.append(status)
        sql += " ORDER BY created_at, id"
        return [_proposal(r) for r in self._query("list_proposals", sql, args)]

    def decide_proposal(self, proposal: Proposal) -> None:
        """Store the decision of a proposal that was ``proposed`` (StoreError otherwise)."""
        if proposal.id is None or proposal.status == "proposed" or proposal.decided_at is None:
            raise ValueError("decide_proposal needs a stored proposal with its decision and time")
        args = (
            proposal.status,
            utc(proposal.decided_at),
            proposal.decided_by,
            proposal.decision_note,
            proposal.id,
        )

        def run(cur: psycopg.Cursor[Row]) -> int:
            cur.execute(
                "UPDATE care_plan_proposals SET status=%s, decided_at=%s, decided_by=%s, "
                "decision_note=%s WHERE id=%s AND status='proposed'",
                args,
            )
            return cur.rowcount

        if self._run("decide_proposal", run, idempotent=False) == 0:
            raise StoreError(f"proposal {proposal.id} does not exist or was decided already")
