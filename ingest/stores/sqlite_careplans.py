"""SQLite side of :mod:`wardwatch.store_careplans` (a SqliteStore mixin).

``device_last_seen`` (migration 5) is upserted by ``SqliteStore.write_observations`` in the
batch's transaction with :data:`LAST_SEEN_UPSERT` (one row per patient, device and kind of
the batch, :func:`last_seen_rows`); a duplicate or older reading moves nothing back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from ingest.errors import StoreError
from ingest.stores._mixins import SqliteMixin
from ingest.stores._rows import dumps, from_iso, iso, loads, opt_iso
from wardwatch.store import StoredObservation
from wardwatch.store_careplans import CarePlan, LastReading, Proposal, ProposalStatus

#: Moves a (patient, device, kind) to a later reading time (ISO text in UTC sorts in time order).
LAST_SEEN_UPSERT = (
    "INSERT INTO device_last_seen (patient, device, kind, at, gateway) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (patient, device, kind) DO UPDATE SET at=excluded.at, gateway=excluded.gateway "
    "WHERE excluded.at > device_last_seen.at"
)


def last_seen_rows(rows: Sequence[StoredObservation]) -> list[tuple[str, str, str, str, Any]]:
    """The latest reading of each (patient, device, kind) of a batch, as upsert arguments."""
    latest: dict[tuple[str, str, str], StoredObservation] = {}
    for r in rows:
        key = (r.patient, r.device, r.kind)
        old = latest.get(key)
        if old is None or r.at > old.at:
            latest[key] = r
    return [(r.patient, r.device, r.kind, iso(r.at), r.gateway) for r in latest.values()]


_PLAN_COLUMNS = "patient, title, thresholds, schedule, version, updated_at, updated_by"
_PROPOSAL_COLUMNS = (
    "id, patient, code, description, created_at, reason_alerts, change, due, status, "
    "decided_at, decided_by, decision_note"
)


def _opt_time(text: str | None) -> datetime | None:
    return None if text is None else _time(text)


def _time(text: str) -> datetime:
    at = from_iso(text)
    # device_pairings.paired_at is written by SQLite's strftime('now'): UTC without offset
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _plan(row: tuple[Any, ...]) -> CarePlan:
    patient, title, thresholds, schedule, version, updated_at, updated_by = row
    return CarePlan(
        patient=patient,
        title=title,
        thresholds=cast(dict[str, float], loads(thresholds)),
        schedule=cast(dict[str, float], loads(schedule)),
        version=int(version),
        updated_at=_opt_time(updated_at),
        updated_by=updated_by,
    )


def _proposal(row: tuple[Any, ...]) -> Proposal:
    (pid, patient, code, description, created, reasons, change, due, status, decided_at,
     decided_by, note) = row  # fmt: skip
    return Proposal(
        patient=patient,
        code=code,
        description=description,
        created_at=_time(created),
        reason_alerts=tuple(int(a) for a in cast(list[int], loads(reasons))),
        change=cast(dict[str, Any], loads(change)),
        due=_opt_time(due),
        status=cast(ProposalStatus, status),
        decided_at=_opt_time(decided_at),
        decided_by=decided_by,
        decision_note=note,
        id=int(pid),
    )


def _json_map(value: Mapping[str, Any]) -> str:
    return dumps(dict(value))


class SqliteCarePlansMixin(SqliteMixin):
    """Methods of :class:`wardwatch.store_careplans` on SQLite (schema: migrations/sqlite)."""

    # -- care plans ------------------------------------------------------------------------
    def get_care_plan(self, patient: str) -> CarePlan | None:
        """The patient's care plan, if one was set."""
        rows = self._query(f"SELECT {_PLAN_COLUMNS} FROM care_plans WHERE patient=?", (patient,))
        return _plan(rows[0]) if rows else None

    def put_care_plan(self, plan: CarePlan) -> CarePlan:
        """Create or replace the patient's plan; return it as stored (version bumped)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT version FROM care_plans WHERE patient=?", (plan.patient,)
                ).fetchone()
                stored = replace(plan, version=1 if row is None else int(row[0]) + 1)
                self._db.execute(
                    f"INSERT INTO care_plans ({_PLAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (patient) DO UPDATE SET title=excluded.title, "
                    "thresholds=excluded.thresholds, schedule=excluded.schedule, "
                    "version=excluded.version, updated_at=excluded.updated_at, "
                    "updated_by=excluded.updated_by",
                    (
                        stored.patient,
                        stored.title,
                        _json_map(stored.thresholds),
                        _json_map(stored.schedule),
                        stored.version,
                        opt_iso(stored.updated_at),
                        stored.updated_by,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored

    def list_care_plans(self) -> list[CarePlan]:
        """Every patient's care plan, ordered by patient."""
        rows = self._query(f"SELECT {_PLAN_COLUMNS} FROM care_plans ORDER BY patient")
        return [_plan(r) for r in rows]

    def last_readings(self) -> list[LastReading]:
        """The latest reading per (patient, device, kind), and paired devices never heard."""
        rows = self._query(
            "SELECT s.patient, s.device, s.kind, s.at, s.gateway, "
            "p.patient IS NULL OR p.patient = s.patient "
            "FROM device_last_seen s LEFT JOIN device_pairings p ON p.device = s.device "
            "UNION ALL "
            "SELECT p.patient, p.device, NULL, p.paired_at, NULL, 1 FROM device_pairings p "
            "WHERE NOT EXISTS (SELECT 1 FROM device_last_seen s "
            "WHERE s.device = p.device AND s.patient = p.patient) "
            "ORDER BY 1, 2, 3"
        )
        return [
            LastReading(patient, device, kind, _time(at), gateway, bool(paired))
            for patient, device, kind, at, gateway, paired in rows
        ]

    # -- proposals -------------------------------------------------------------------------
    def add_proposal(self, proposal: Proposal) -> Proposal:
        """Store a proposal unless the same patient and code is still open (return that)."""
        if proposal.status != "proposed":
            raise ValueError("add_proposal takes an undecided proposal (status 'proposed')")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO care_plan_proposals (patient, code, description, created_at, "
                    "reason_alerts, change, due, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'proposed') "
                    "ON CONFLICT DO NOTHING",
                    (
                        proposal.patient,
                        proposal.code,
                        proposal.description,
                        iso(proposal.created_at),
                        dumps(list(proposal.reason_alerts)),
                        _json_map(proposal.change),
                        opt_iso(proposal.due),
                    ),
                )
                args: tuple[Any, ...]
                if cur.rowcount > 0:
                    where, args = "id=?", (cur.lastrowid,)
                else:
                    where = "patient=? AND code=? AND status='proposed'"
                    args = (proposal.patient, proposal.code)
                row = self._db.execute(
                    f"SELECT {_PROPOSAL_COLUMNS} FROM care_plan_proposals WHERE {where}", args
                ).fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return _proposal(row)

    def get_proposal(self, proposal_id: int) -> Proposal | None:
        """One proposal by id."""
        rows = self._query(
            f"SELECT {_PROPOSAL_COLUMNS} FROM care_plan_proposals WHERE id=?", (proposal_id,)
        )
        return _proposal(rows[0]) if rows else None

    def list_proposals(
        self, *, patient: str | None = None, status: ProposalStatus | None = None
    ) -> list[Proposal]:
        """Proposals, oldest first, optionally filtered."""
        sql = f"SELECT {_PROPOSAL_COLUMNS} FROM care_plan_proposals WHERE 1=1"
        args: list[Any] = []
        if patient is not None:
            sql += " AND patient=?"
            args.append(patient)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        return [_proposal(r) for r in self._query(sql + " ORDER BY created_at, id", args)]

    def decide_proposal(self, proposal: Proposal) -> None:
        """Store the decision of a proposal that was ``proposed`` (StoreError otherwise)."""
        if proposal.id is None or proposal.status == "proposed" or proposal.decided_at is None:
            raise ValueError("decide_proposal needs a stored proposal with its decision and time")
        cur = self._exec(
            "UPDATE care_plan_proposals SET status=?, decided_at=?, decided_by=?, "
            "decision_note=? WHERE id=? AND status='proposed'",
            (
                proposal.status,
                iso(proposal.decided_at),
                proposal.decided_by,
                proposal.decision_note,
                proposal.id,
            ),
        )
        if cur.rowcount == 0:
            raise StoreError(f"proposal {proposal.id} does not exist or was decided already")
