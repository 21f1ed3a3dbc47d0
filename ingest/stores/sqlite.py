"""The embedded store: SQLite in WAL mode, for the demo and small single-hub installs."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, cast

from ingest.errors import StoreError
from ingest.stores._rows import dumps, from_iso, iso, loads, opt_from_iso, opt_iso
from ingest.stores.sqlite_access import SqliteAccessMixin
from ingest.stores.sqlite_alerts import SqliteAlertsMixin
from ingest.stores.sqlite_careplans import (
    LAST_SEEN_UPSERT,
    SqliteCarePlansMixin,
    last_seen_rows,
)
from ingest.stores.sqlite_charts import SqliteChartsMixin
from wardwatch.store import (
    Alert,
    AlertStatus,
    AuditEvent,
    CareTeam,
    GatewayState,
    GatewayStatus,
    ObservationQuery,
    Patient,
    QuarantineItem,
    QuarantineState,
    Severity,
    StoredObservation,
)

_MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE care_teams (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, notify_urls TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE patients (
        id TEXT PRIMARY KEY, display_name TEXT NOT NULL,
        care_team TEXT REFERENCES care_teams(id), thresholds TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE device_pairings (
        device TEXT PRIMARY KEY, patient TEXT NOT NULL REFERENCES patients(id),
        paired_at TEXT NOT NULL
    );
    CREATE TABLE observations (
        identifier TEXT PRIMARY KEY, patient TEXT NOT NULL, device TEXT NOT NULL,
        gateway TEXT, kind TEXT NOT NULL, at TEXT NOT NULL, value REAL, unit TEXT,
        components TEXT NOT NULL DEFAULT '{}', resource BLOB NOT NULL, received_at TEXT NOT NULL
    );
    CREATE INDEX observations_patient_kind_at ON observations (patient, kind, at);
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, source TEXT NOT NULL,
        reason_code TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, patient TEXT NOT NULL, rule TEXT NOT NULL,
        kind TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL,
        opened_at TEXT NOT NULL, message TEXT NOT NULL, observations TEXT NOT NULL,
        acknowledged_at TEXT, acknowledged_by TEXT, resolved_at TEXT, resolved_by TEXT,
        updated_at TEXT
    );
    CREATE UNIQUE INDEX alerts_one_open ON alerts (patient, rule) WHERE status != 'resolved';
    """,
    # 2: quarantine release/retry times, the append-only audit trail
    """
    ALTER TABLE quarantine ADD COLUMN released_at TEXT;
    ALTER TABLE quarantine ADD COLUMN retried_at TEXT;
    CREATE INDEX quarantine_reason_code ON quarantine (reason_code);
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, principal TEXT NOT NULL,
        action TEXT NOT NULL, outcome TEXT NOT NULL, patient TEXT, resource TEXT, remote TEXT,
        detail TEXT
    );
    CREATE INDEX audit_events_patient_at ON audit_events (patient, at);
    CREATE INDEX audit_events_at ON audit_events (at);
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    """,
    # 3: gateways (liveness status, last bundle); status/status_at NULL: seen by bundles only
    """
    CREATE TABLE gateways (
        id TEXT PRIMARY KEY, status TEXT CHECK (status IN ('online', 'offline')),
        status_at TEXT, updated_at TEXT, queued INTEGER, dropped TEXT NOT NULL DEFAULT '{}',
        last_bundle_at TEXT, CHECK ((status IS NULL) = (status_at IS NULL))
    );
    """,
)


_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def _all_migrations() -> tuple[str, ...]:
    """The built-in scripts, then ``ingest/migrations/sqlite/NNNN_name.sql`` (from 4 on)."""
    found: dict[int, str] = {}
    for entry in (resources.files("ingest") / "migrations" / "sqlite").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is not None:
            found[int(match.group(1))] = entry.read_text(encoding="utf-8")
    expected = list(range(len(_MIGRATIONS) + 1, len(_MIGRATIONS) + 1 + len(found)))
    if sorted(found) != expected:
        raise StoreError(f"SQLite migration files must be numbered {expected}, got {sorted(found)}")
    return (*_MIGRATIONS, *(found[v] for v in expected))


def _statements(script: str) -> Iterator[str]:
    """The complete SQL statements of ``script`` (a trigger body holds ``;`` of its own)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise StoreError(f"incomplete SQL statement in a migration: {pending.strip()[:60]!r}")


class SqliteStore(SqliteAlertsMixin, SqliteCarePlansMixin, SqliteAccessMixin, SqliteChartsMixin):
    """SQLite implementation of :class:`wardwatch.store.Store`."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by threads (asyncio.to_thread), serialised by a lock.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, args)
            except sqlite3.IntegrityError as exc:  # same exception as the TimescaleDB store
                raise StoreError(str(exc)) from exc

    def migrate(self) -> None:
        """Apply pending migrations, each in its own transaction."""
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(_all_migrations()[version:], start=version + 1):
                self._db.execute("BEGIN")
                try:
                    for statement in _statements(script):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={number}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    # -- registry -------------------------------------------------------------------
    def upsert_care_team(self, team: CareTeam) -> None:
        """Create or replace a care team."""
        self._exec(
            "INSERT INTO care_teams (id, name, notify_urls) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name=excluded.name, notify_urls=excluded.notify_urls",
            (team.id, team.name, dumps(list(team.notify_urls))),
        )

    def get_care_team(self, team_id: str) -> CareTeam | None:
        """The care team with this id, if any."""
        rows = self._query("SELECT id, name, notify_urls FROM care_teams WHERE id=?", (team_id,))
        if not rows:
            return None
        tid, name, urls = rows[0]
        return CareTeam(tid, name, tuple(cast(list[str], loads(urls))))

    def upsert_patient(self, patient: Patient) -> None:
        """Enrol a patient or update their record."""
        self._exec(
            "INSERT INTO patients (id, display_name, care_team, thresholds) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET display_name=excluded.display_name, "
            "care_team=excluded.care_team, thresholds=excluded.thresholds",
            (patient.id, patient.display_name, patient.care_team, dumps(dict(patient.thresholds))),
        )

    @staticmethod
    def _patient(row: tuple[Any, ...]) -> Patient:
        pid, name, team, thresholds = row
        return Patient(pid, name, team, cast(dict[str, float], loads(thresholds)))

    def get_patient(self, patient_id: str) -> Patient | None:
        """The patient with this id, if enrolled."""
        rows = self._query(
            "SELECT id, display_name, care_team, thresholds FROM patients WHERE id=?",
            (patient_id,),
        )
        return self._patient(rows[0]) if rows else None

    def list_patients(self) -> list[Patient]:
        """Every enrolled patient, ordered by id."""
        rows = self._query(
            "SELECT id, display_name, care_team, thresholds FROM patients ORDER BY id"
        )
        return [self._patient(r) for r in rows]

    def pair_device(self, device: str, patient: str) -> None:
        """Record that ``device`` measures ``patient``."""
        self._exec(
            "INSERT INTO device_pairings (device, patient, paired_at) VALUES (?, ?, "
            "strftime('%Y-%m-%dT%H:%M:%f', 'now')) "
            "ON CONFLICT (device) DO UPDATE SET patient=excluded.patient, "
            "paired_at=excluded.paired_at",
            (device, patient),
        )

    def device_patient(self, device: str) -> str | None:
        """The patient a device is paired to, if any."""
        rows = self._query("SELECT patient FROM device_pairings WHERE device=?", (device,))
        return str(rows[0][0]) if rows else None

    # -- gateways -------------------------------------------------------------------------
    def record_gateway_status(self, state: GatewayState) -> bool:
        """Store a gateway's status unless a newer one is stored; return whether it was."""
        if state.status is None or state.status_at is None or state.updated_at is None:
            raise ValueError("record_gateway_status needs a status, its time and updated_at")
        cur = self._exec(
            "INSERT INTO gateways (id, status, status_at, updated_at, queued, dropped) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET status=excluded.status, "
            "status_at=excluded.status_at, updated_at=excluded.updated_at, "
            "queued=excluded.queued, dropped=excluded.dropped "
            "WHERE gateways.status_at IS NULL OR excluded.status_at >= gateways.status_at",
            (
                state.id,
                state.status,
                iso(state.status_at),
                iso(state.updated_at),
                state.queued,
                dumps(dict(state.dropped)),
            ),
        )
        return cur.rowcount > 0

    def note_gateway_bundle(self, gateway: str, at: datetime) -> None:
        """Record that a bundle from ``gateway`` was committed at ``at`` (never moves back)."""
        self._exec(
            "INSERT INTO gateways (id, last_bundle_at) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET last_bundle_at=excluded.last_bundle_at "
            "WHERE gateways.last_bundle_at IS NULL "
            "OR excluded.last_bundle_at > gateways.last_bundle_at",
            (gateway, iso(at)),
        )

    _GATEWAY_COLUMNS = "id, status, status_at, updated_at, queued, dropped, last_bundle_at"

    @staticmethod
    def _gateway(row: tuple[Any, ...]) -> GatewayState:
        gid, status, status_at, updated, queued, dropped, last_bundle = row
        return GatewayState(
            id=gid,
            status=cast(GatewayStatus | None, status),
            status_at=opt_from_iso(status_at),
            updated_at=opt_from_iso(updated),
            queued=queued,
            dropped=cast(dict[str, int], loads(dropped)),
            last_bundle_at=opt_from_iso(last_bundle),
        )

    def get_gateway(self, gateway: str) -> GatewayState | None:
        """What is known of this gateway, if anything."""
        rows = self._query(f"SELECT {self._GATEWAY_COLUMNS} FROM gateways WHERE id=?", (gateway,))
        return self._gateway(rows[0]) if rows else None

    def list_gateways(self) -> list[GatewayState]:
        """Every gateway known, ordered by id."""
        rows = self._query(f"SELECT {self._GATEWAY_COLUMNS} FROM gateways ORDER BY id")
        return [self._gateway(r) for r in rows]

    # -- observations -----------------------------------------------------------------
    def write_observations(self, rows: Sequence[StoredObservation]) -> int:
        """Insert rows in one transaction, ignoring identifiers already stored."""
        if not rows:
            return 0
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO observations (identifier, patient, device, gateway, kind, at, "
                    "value, unit, components, resource, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (identifier) DO NOTHING",
                    [
                        (
                            r.identifier,
                            r.patient,
                            r.device,
                            r.gateway,
                            r.kind,
                            iso(r.at),
                            r.value,
                            r.unit,
                            dumps(dict(r.components)),
                            r.resource,
                            iso(r.received_at),
                        )
                        for r in rows
                    ],
                )
                stored = self._db.total_changes - before
                if stored:  # the missing-data detectors' last reading per device and kind
                    self._db.executemany(LAST_SEEN_UPSERT, last_seen_rows(rows))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return stored

    _OBS_COLUMNS = (
        "identifier, patient, device, gateway, kind, at, value, unit, components, resource, "
        "received_at"
    )

    @staticmethod
    def _observation(row: tuple[Any, ...]) -> StoredObservation:
        ident, patient, device, gateway, kind, at, value, unit, comps, resource, received = row
        return StoredObservation(
            identifier=ident,
            patient=patient,
            device=device,
            gateway=gateway,
            kind=kind,
            at=from_iso(at),
            value=value,
            unit=unit,
            components=cast(Mapping[str, float], loads(comps)),
            resource=bytes(resource),
            received_at=from_iso(received),
        )

    def get_observation(self, identifier: str) -> StoredObservation | None:
        """One stored observation by its reading identifier."""
        rows = self._query(
            f"SELECT {self._OBS_COLUMNS} FROM observations WHERE identifier=?", (identifier,)
        )
        return self._observation(rows[0]) if rows else None

    def observations(
        self,
        patient: str,
        kind: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> list[StoredObservation]:
        """A patient's observations in time order, optionally of one kind in [start, end)."""
        sql = f"SELECT {self._OBS_COLUMNS} FROM observations WHERE patient=?"
        args: list[Any] = [patient]
        if kind is not None:
            sql += " AND kind=?"
            args.append(kind)
        if start is not None:
            sql += " AND at>=?"
            args.append(iso(start))
        if end is not None:
            sql += " AND at<?"
            args.append(iso(end))
        sql += " ORDER BY at, identifier"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [self._observation(r) for r in self._query(sql, args)]

    def count_observations(self) -> int:
        """How many observations are stored."""
        return int(self._query("SELECT count(*) FROM observations")[0][0])

    @staticmethod
    def _where(query: ObservationQuery) -> tuple[str, list[Any]]:
        sql = "patient=?"
        args: list[Any] = [query.patient]
        if query.kinds:
            sql += f" AND kind IN ({', '.join('?' * len(query.kinds))})"
            args.extend(query.kinds)
        if query.start is not None:
            sql += " AND at>=?" if query.start_inclusive else " AND at>?"
            args.append(iso(query.start))
        if query.end is not None:
            sql += " AND at<=?" if query.end_inclusive else " AND at<?"
            args.append(iso(query.end))
        return sql, args

    def search_observations(
        self,
        query: ObservationQuery,
        *,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[StoredObservation]:
        """One page of matches ordered by (``at``, identifier), after the ``after`` cursor."""
        where, args = self._where(query)
        if after is not None:
            # ``at>=?`` stays usable by the (patient, kind, at) index; the OR breaks ties.
            where += " AND at>=? AND (at>? OR identifier>?)"
            at = iso(after[0])
            args += [at, at, after[1]]
        sql = f"SELECT {self._OBS_COLUMNS} FROM observations WHERE {where} "
        sql += "ORDER BY at, identifier LIMIT ?"
        return [self._observation(r) for r in self._query(sql, [*args, max(limit, 0)])]

    def count_matching(self, query: ObservationQuery) -> int:
        """How many observations match ``query``."""
        where, args = self._where(query)
        return int(self._query(f"SELECT count(*) FROM observations WHERE {where}", args)[0][0])

    # -- quarantine ---------------------------------------------------------------------
    def quarantine(self, items: Sequence[QuarantineItem]) -> None:
        """Keep refused input with its reason."""
        with self._lock:
            self._db.executemany(
                "INSERT INTO quarantine (received_at, source, reason_code, reason, payload) "
                "VALUES (?, ?, ?, ?, ?)",
                [(iso(i.received_at), i.source, i.reason_code, i.reason, i.payload) for i in items],
            )

    def list_quarantine(
        self,
        *,
        state: QuarantineState | None = None,
        reason_code: str | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[QuarantineItem]:
        """Quarantined items, oldest first, optionally only held/released, of one reason or ids."""
        sql = (
            "SELECT id, received_at, source, reason_code, reason, payload, released_at, "
            "retried_at FROM quarantine WHERE 1=1"
        )
        args: list[Any] = []
        if state == "held":
            sql += " AND released_at IS NULL"
        elif state == "released":
            sql += " AND released_at IS NOT NULL"
        if reason_code is not None:
            sql += " AND reason_code=?"
            args.append(reason_code)
        if ids is not None:
            sql += f" AND id IN ({', '.join('?' * len(ids))})" if ids else " AND 0"
            args.extend(ids)
        rows = self._query(sql + " ORDER BY id", args)
        return [
            QuarantineItem(
                from_iso(at),
                source,
                code,
                reason,
                bytes(payload),
                id=qid,
                released_at=opt_from_iso(released),
                retried_at=opt_from_iso(retried),
            )
            for qid, at, source, code, reason, payload, released, retried in rows
        ]

    def release_quarantine(self, ids: Sequence[int], at: datetime) -> int:
        """Mark held items as released at ``at`` (kept, not deleted); return how many were."""
        if not ids:
            return 0
        cur = self._exec(
            f"UPDATE quarantine SET released_at=? WHERE released_at IS NULL "
            f"AND id IN ({', '.join('?' * len(ids))})",
            (iso(at), *ids),
        )
        return cur.rowcount

    def requarantine(self, item_id: int, reason_code: str, reason: str, at: datetime) -> None:
        """Record that a held item was re-ingested at ``at`` and refused again, and why."""
        self._exec(
            "UPDATE quarantine SET reason_code=?, reason=?, retried_at=? "
            "WHERE id=? AND released_at IS NULL",
            (reason_code, reason, iso(at), item_id),
        )

    # -- audit ------------------------------------------------------------------------------
    def record_audit(self, event: AuditEvent) -> AuditEvent:
        """Append an audit event; return it with its id."""
        cur = self._exec(
            "INSERT INTO audit_events (at, principal, action, outcome, patient, resource, "
            "remote, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                iso(event.at),
                event.principal,
                event.action,
                event.outcome,
                event.patient,
                event.resource,
                event.remote,
                event.detail,
            ),
        )
        return replace(event, id=int(cur.lastrowid or 0))

    def list_audit(
        self,
        *,
        patient: str | None = None,
        principal: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Audit events, oldest first, optionally filtered (``since`` inclusive)."""
        sql = (
            "SELECT id, at, principal, action, outcome, patient, resource, remote, detail "
            "FROM audit_events WHERE 1=1"
        )
        args: list[Any] = []
        for column, value in (("patient", patient), ("principal", principal), ("action", action)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(value)
        if since is not None:
            sql += " AND at>=?"
            args.append(iso(since))
        sql += " ORDER BY at, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(limit, 0))
        return [
            AuditEvent(
                at=from_iso(at),
                principal=who,
                action=act,
                outcome=outcome,
                patient=pat,
                resource=res,
                remote=remote,
                detail=detail,
                id=aid,
            )
            for aid, at, who, act, outcome, pat, res, remote, detail in self._query(sql, args)
        ]

    # -- alerts ---------------------------------------------------------------------------
    _ALERT_COLUMNS = (
        "patient, rule, kind, severity, status, opened_at, message, observations, "
        "acknowledged_at, acknowledged_by, resolved_at, resolved_by, updated_at"
    )

    @staticmethod
    def _alert_args(a: Alert) -> tuple[Any, ...]:
        return (
            a.patient,
            a.rule,
            a.kind,
            a.severity,
            a.status,
            iso(a.opened_at),
            a.message,
            dumps(list(a.observations)),
            opt_iso(a.acknowledged_at),
            a.acknowledged_by,
            opt_iso(a.resolved_at),
            a.resolved_by,
            opt_iso(a.updated_at),
        )

    @staticmethod
    def _alert(row: tuple[Any, ...]) -> Alert:
        (
            aid,
            patient,
            rule,
            kind,
            severity,
            status,
            opened,
            message,
            obs,
            ack_at,
            ack_by,
            res_at,
            res_by,
            upd,
        ) = row
        return Alert(
            patient=patient,
            rule=rule,
            kind=kind,
            severity=cast(Severity, severity),
            status=cast(AlertStatus, status),
            opened_at=from_iso(opened),
            message=message,
            observations=tuple(cast(list[str], loads(obs))),
            acknowledged_at=opt_from_iso(ack_at),
            acknowledged_by=ack_by,
            resolved_at=opt_from_iso(res_at),
            resolved_by=res_by,
            updated_at=opt_from_iso(upd),
            id=aid,
        )

    def insert_alert(self, alert: Alert) -> Alert:
        """Store a new alert; return it with its id."""
        cur = self._exec(
            f"INSERT INTO alerts ({self._ALERT_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._alert_args(alert),
        )
        return _with_id(alert, int(cur.lastrowid or 0))

    def update_alert(self, alert: Alert) -> None:
        """Replace the stored alert with the same id."""
        if alert.id is None:
            raise ValueError("update_alert needs an alert with an id")
        sets = ", ".join(f"{c.strip()}=?" for c in self._ALERT_COLUMNS.split(","))
        self._exec(f"UPDATE alerts SET {sets} WHERE id=?", (*self._alert_args(alert), alert.id))

    def find_open_alert(self, patient: str, rule: str) -> Alert | None:
        """The alert of this patient and rule that is not resolved, if any."""
        rows = self._query(
            f"SELECT id, {self._ALERT_COLUMNS} FROM alerts "
            "WHERE patient=? AND rule=? AND status != 'resolved'",
            (patient, rule),
        )
        return self._alert(rows[0]) if rows else None

    def list_alerts(
        self, patient: str | None = None, status: AlertStatus | None = None
    ) -> list[Alert]:
        """Alerts, oldest first, optionally filtered."""
        sql = f"SELECT id, {self._ALERT_COLUMNS} FROM alerts WHERE 1=1"
        args: list[Any] = []
        if patient is not None:
            sql += " AND patient=?"
            args.append(patient)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        sql += " ORDER BY opened_at, id"
        return [self._alert(r) for r in self._query(sql, args)]


def _with_id(alert: Alert, alert_id: int) -> Alert:
    return replace(alert, id=alert_id)
