"""The production store: PostgreSQL with TimescaleDB, through psycopg 3 (sync API).

Same semantics as :mod:`ingest.stores.sqlite` (the contract suite in
``tests/test_store_contract.py`` runs against both); what differs is how:

- **Schema** lives in versioned files ``ingest/migrations/NNNN_name.sql``. :meth:`migrate`
  applies the pending ones in order, each in its own transaction under
  ``pg_advisory_xact_lock`` (so ingest workers starting together do not race), and
  records them in ``schema_migrations``.
- **Observations** go to a hypertable on ``at``. A batch is written with binary ``COPY``
  into a per-connection temporary staging table, then ``INSERT ... SELECT DISTINCT ON
  (identifier, at) ... ON CONFLICT DO NOTHING`` in the same transaction: duplicates within
  the batch and across batches are stored once and the row count of the insert is the
  number of new rows.
- **One connection**, serialised by a lock (callers come from ``asyncio.to_thread``), with
  explicit transactions. If the server went away (restart, failover) the store reconnects
  once and retries the operation; if the database stays down, :class:`StoreError` says so.
  An operation that is not idempotent (``insert_alert``, ``quarantine``) is not retried
  when the connection was lost while committing, since it may have been committed.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Final, LiteralString, TypeVar, cast

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads

from ingest.errors import StoreError
from ingest.stores._rows import dumps, opt_utc, utc
from ingest.stores.timescale_access import TimescaleAccessMixin
from ingest.stores.timescale_alerts import TimescaleAlertsMixin
from ingest.stores.timescale_careplans import (
    LAST_SEEN_FROM_STAGING,
    TimescaleCarePlansMixin,
)
from ingest.stores.timescale_charts import TimescaleChartsMixin
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

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]
Cursor = psycopg.Cursor[Row]
Connection = psycopg.Connection[Row]

#: Key of the advisory lock that serialises migrations (any constant; "wardwatc" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x7761726477617463
DEFAULT_CONNECT_TIMEOUT: Final = 5
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


# -- migrations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: ``ingest/migrations/{version:04d}_{name}.sql``."""

    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """The packaged migrations in version order (read once)."""
    found: dict[int, Migration] = {}
    for entry in (resources.files("ingest") / "migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise StoreError(f"two migrations with version {version:04d}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    ordered = tuple(found[v] for v in sorted(found))
    if [m.version for m in ordered] != list(range(1, len(ordered) + 1)):
        raise StoreError(f"migration versions must be 1..n without gaps, got {sorted(found)}")
    return ordered


# -- conversions -------------------------------------------------------------------------


_STAGING_DDL: Final = """
    CREATE TEMP TABLE IF NOT EXISTS observations_staging (
        ord integer NOT NULL, identifier text, patient text, device text, gateway text,
        kind text, at timestamptz, value double precision, unit text, components text,
        resource bytea, received_at timestamptz
    ) ON COMMIT DELETE ROWS
"""
_STAGING_COPY: Final = (
    "COPY observations_staging (ord, identifier, patient, device, gateway, kind, at, value, "
    "unit, components, resource, received_at) FROM STDIN (FORMAT BINARY)"
)
_STAGING_TYPES: Final = (
    "int4", "text", "text", "text", "text", "text", "timestamptz", "float8", "text", "text",
    "bytea", "timestamptz",
)  # fmt: skip
# DISTINCT ON keeps the first row of a batch for each key (ord), as the SQLite store does;
# ordering by the key also makes concurrent writers take index locks in the same order.
_INSERT_FROM_STAGING: Final = """
    INSERT INTO observations (identifier, patient, device, gateway, kind, at, value, unit,
                              components, resource, received_at)
    SELECT DISTINCT ON (identifier, at)
           identifier, patient, device, gateway, kind, at, value, unit,
           components::jsonb, resource, received_at
    FROM observations_staging
    ORDER BY identifier, at, ord
    ON CONFLICT DO NOTHING
"""
_OBS_COLUMNS: Final = (
    "identifier, patient, device, gateway, kind, at, value, unit, components, resource, received_at"
)
_ALERT_COLUMNS: Final = (
    "patient, rule, kind, severity, status, opened_at, message, observations, "
    "acknowledged_at, acknowledged_by, resolved_at, resolved_by, updated_at"
)
_ALERT_SETS: Final = ", ".join(f"{c.strip()}=%s" for c in _ALERT_COLUMNS.split(","))


def _observation(row: Row) -> StoredObservation:
    ident, patient, device, gateway, kind, at, value, unit, comps, resource, received = row
    return StoredObservation(
        identifier=ident,
        patient=patient,
        device=device,
        gateway=gateway,
        kind=kind,
        at=utc(at),
        value=value,
        unit=unit,
        components=cast(Mapping[str, float], comps),
        resource=bytes(resource),
        received_at=utc(received),
    )


_GATEWAY_COLUMNS: Final = "id, status, status_at, updated_at, queued, dropped, last_bundle_at"


def _gateway(row: Row) -> GatewayState:
    gid, status, status_at, updated, queued, dropped, last_bundle = row
    return GatewayState(
        id=gid,
        status=cast(GatewayStatus | None, status),
        status_at=opt_utc(status_at),
        updated_at=opt_utc(updated),
        queued=queued,
        dropped=cast(dict[str, int], dropped),
        last_bundle_at=opt_utc(last_bundle),
    )


def _patient(row: Row) -> Patient:
    pid, name, team, thresholds = row
    return Patient(pid, name, team, cast(dict[str, float], thresholds))


def _alert_args(a: Alert) -> tuple[Any, ...]:
    return (
        a.patient, a.rule, a.kind, a.severity, a.status, utc(a.opened_at), a.message,
        list(a.observations), opt_utc(a.acknowledged_at), a.acknowledged_by,
        opt_utc(a.resolved_at), a.resolved_by, opt_utc(a.updated_at),
    )  # fmt: skip


def _alert(row: Row) -> Alert:
    (aid, patient, rule, kind, severity, status, opened, message, obs, ack_at, ack_by,
     res_at, res_by, upd) = row  # fmt: skip
    return Alert(
        patient=patient,
        rule=rule,
        kind=kind,
        severity=cast(Severity, severity),
        status=cast(AlertStatus, status),
        opened_at=utc(opened),
        message=message,
        observations=tuple(obs),
        acknowledged_at=opt_utc(ack_at),
        acknowledged_by=ack_by,
        resolved_at=opt_utc(res_at),
        resolved_by=res_by,
        updated_at=opt_utc(upd),
        id=aid,
    )


def search_where(query: ObservationQuery) -> tuple[LiteralString, list[Any]]:
    """The WHERE clause of an observation search: sargable on (patient, kind, at) indexes."""
    sql: LiteralString = "patient=%s"
    args: list[Any] = [query.patient]
    if len(query.kinds) == 1:
        sql += " AND kind=%s"
        args.append(query.kinds[0])
    elif query.kinds:
        sql += " AND kind = ANY(%s::text[])"
        args.append(list(query.kinds))
    if query.start is not None:
        sql += " AND at>=%s" if query.start_inclusive else " AND at>%s"
        args.append(utc(query.start))
    if query.end is not None:
        sql += " AND at<=%s" if query.end_inclusive else " AND at<%s"
        args.append(utc(query.end))
    return sql, args


def search_sql(
    query: ObservationQuery, limit: int, after: tuple[datetime, str] | None
) -> tuple[LiteralString, list[Any]]:
    """One page of a search in (at, identifier) order, keyset-paged after ``after``."""
    where, args = search_where(query)
    if after is not None:
        # ``at>=`` is an index condition; the OR only breaks ties between equal times.
        where += ' AND at>=%s AND (at>%s OR identifier COLLATE "C" > %s)'
        args += [utc(after[0]), utc(after[0]), after[1]]
    sql: LiteralString = f"SELECT {_OBS_COLUMNS} FROM observations WHERE {where} "
    sql += 'ORDER BY at, identifier COLLATE "C" LIMIT %s'
    return sql, [*args, max(limit, 0)]


_QUARANTINE_COLUMNS: Final = (
    "id, received_at, source, reason_code, reason, payload, released_at, retried_at"
)
_AUDIT_COLUMNS: Final = "id, at, principal, action, outcome, patient, resource, remote, detail"


def _quarantine_item(row: Row) -> QuarantineItem:
    qid, at, source, code, reason, payload, released, retried = row
    return QuarantineItem(
        utc(at),
        source,
        code,
        reason,
        bytes(payload),
        id=int(qid),
        released_at=opt_utc(released),
        retried_at=opt_utc(retried),
    )


def _audit_event(row: Row) -> AuditEvent:
    aid, at, principal, action, outcome, patient, resource, remote, detail = row
    return AuditEvent(
        at=utc(at),
        principal=principal,
        action=action,
        outcome=outcome,
        patient=patient,
        resource=resource,
        remote=remote,
        detail=detail,
        id=int(aid),
    )


def _describe(url: str) -> str:
    """``user@host:port/dbname`` for messages: never the password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(f"invalid PostgreSQL URL: {exc}") from None
    user = f"{info['user']}@" if info.get("user") else ""
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"{user}{host}{port}/{info.get('dbname') or ''}"


# -- the store ---------------------------------------------------------------------------


class TimescaleStore(
    TimescaleAlertsMixin, TimescaleCarePlansMixin, TimescaleAccessMixin, TimescaleChartsMixin
):
    """TimescaleDB implementation of :class:`wardwatch.store.Store`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = _describe(url)
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._closed = False
        with self._lock:
            self._connection()

    def __repr__(self) -> str:
        return f"TimescaleStore({self.where!r})"

    # -- connection handling ---------------------------------------------------------------
    def _connect(self) -> Connection:
        options: dict[str, Any] = {}
        given = conninfo_to_dict(self.url)
        if "connect_timeout" not in given:
            options["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
        if "application_name" not in given:
            options["application_name"] = "wardwatch"
        try:
            conn = psycopg.connect(self.url, autocommit=False, **options)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to TimescaleDB at {self.where}: {exc}") from exc
        try:
            set_json_loads(orjson.loads, conn)
            with conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
                cur.execute(_STAGING_DDL)
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot set up a session on {self.where}: {exc}") from exc
        return conn

    def _connection(self) -> Connection:
        """The live connection (connecting if there is none). Call with the lock held."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _discard(self, conn: Connection) -> None:
        if self._conn is conn:
            self._conn = None
        with contextlib.suppress(psycopg.Error):
            conn.close()

    @staticmethod
    def _lost(conn: Connection) -> bool:
        return conn.closed or conn.broken

    def _rollback(self, conn: Connection) -> None:
        try:
            conn.rollback()
        except psycopg.Error:
            self._discard(conn)

    def _run(self, op: str, fn: Callable[[Cursor], T], *, idempotent: bool = True) -> T:
        """Run ``fn`` in one transaction and commit it.

        If the connection turns out to be lost, reconnect once and run ``fn`` again,
        unless the loss happened during COMMIT of a non-idempotent operation (it may have
        been committed). Database errors become :class:`StoreError`.
        """
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                committing = False
                try:
                    with conn.cursor() as cur:
                        result = fn(cur)
                    committing = True
                    conn.commit()
                except psycopg.Error as exc:
                    if not self._lost(conn):
                        self._rollback(conn)
                        raise StoreError(f"{op} failed: {exc}") from exc
                    self._discard(conn)
                    if committing and not idempotent:
                        raise StoreError(
                            f"{op}: connection to {self.where} lost while committing; "
                            f"the outcome is unknown: {exc}"
                        ) from exc
                    if attempt == 2:
                        raise StoreError(
                            f"{op}: connection to {self.where} lost again after reconnecting: {exc}"
                        ) from exc
                    log.warning("connection to %s lost (%s); reconnecting", self.where, exc)
                except BaseException:
                    if not self._lost(conn):
                        self._rollback(conn)
                    else:
                        self._discard(conn)
                    raise
                else:
                    return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _query(self, op: str, sql: LiteralString, args: Sequence[Any] = ()) -> list[Row]:
        def run(cur: Cursor) -> list[Row]:
            cur.execute(sql, args)
            return cur.fetchall()

        return self._run(op, run)

    def _exec(
        self, op: str, sql: LiteralString, args: Sequence[Any] = (), *, idempotent: bool = True
    ) -> None:
        def run(cur: Cursor) -> None:
            cur.execute(sql, args)

        self._run(op, run, idempotent=idempotent)

    # -- schema --------------------------------------------------------------------------
    def migrate(self) -> None:
        """Apply pending migrations in order, each in its own transaction.

        Each step takes a transaction-scoped advisory lock first, then re-reads
        ``schema_migrations``: concurrent callers wait for each other and none applies a
        version twice.
        """
        known = migrations()

        def step(cur: Cursor) -> bool:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            # Only create it when absent: an application role without CREATE on the schema
            # can still open an up-to-date database.
            cur.execute("SELECT to_regclass('schema_migrations') IS NULL")
            row = cur.fetchone()
            if row is not None and row[0]:
                cur.execute(
                    "CREATE TABLE schema_migrations ("
                    "version integer PRIMARY KEY, name text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                )
            cur.execute("SELECT version FROM schema_migrations")
            applied = {int(v) for (v,) in cur.fetchall()}
            newer = applied - {m.version for m in known}
            if newer:  # a newer release migrated this database (rolling upgrade)
                log.warning("database %s has schema versions %s unknown here", self.where, newer)
            pending = [m for m in known if m.version not in applied]
            if not pending:
                return False
            migration = pending[0]
            try:
                # No parameters: psycopg sends the script with the simple query protocol,
                # which runs several statements.
                cur.execute(migration.sql.encode())
            except psycopg.Error as exc:
                if self._lost(cur.connection):
                    raise
                raise StoreError(
                    f"migration {migration.version:04d}_{migration.name} failed on "
                    f"{self.where}: {exc}"
                ) from exc
            cur.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            return True

        while self._run("migrate", step):
            pass

    def schema_version(self) -> int:
        """The highest applied migration (0 before the first :meth:`migrate`)."""
        rows = self._query(
            "schema_version",
            "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0 "
            "ELSE (SELECT coalesce(max(version), 0) FROM schema_migrations) END",
        )
        return int(rows[0][0])

    def capabilities(self) -> dict[str, object]:
        """What this server's TimescaleDB offers, so start-up can report the strategy.

        Compression, continuous aggregates and retention policies are Timescale License
        features: available with ``timescaledb.license = 'timescale'``, absent with the
        Apache edition (plain tables and ``drop_chunks`` stand in for them).
        """
        rows = self._query(
            "capabilities",
            "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), "
            "current_setting('timescaledb.license', true), current_setting('server_version')",
        )
        version, license_, server = rows[0]
        tsl = version is not None and license_ == "timescale"
        return {
            "timescaledb_version": version,
            "license": license_,
            "postgres_version": server,
            "hypertables": version is not None,
            "compression": tsl,
            "continuous_aggregates": tsl,
            "retention_policies": tsl,
        }

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    # -- registry ----------------------------------------------------------------------
    def upsert_care_team(self, team: CareTeam) -> None:
        """Create or replace a care team."""
        self._exec(
            "upsert_care_team",
            "INSERT INTO care_teams (id, name, notify_urls) VALUES (%s, %s, %s::jsonb) "
            "ON CONFLICT (id) DO UPDATE SET name=excluded.name, notify_urls=excluded.notify_urls",
            (team.id, team.name, dumps(list(team.notify_urls))),
        )

    def get_care_team(self, team_id: str) -> CareTeam | None:
        """The care team with this id, if any."""
        rows = self._query(
            "get_care_team", "SELECT id, name, notify_urls FROM care_teams WHERE id=%s", (team_id,)
        )
        if not rows:
            return None
        tid, name, urls = rows[0]
        return CareTeam(tid, name, tuple(cast(list[str], urls)))

    def upsert_patient(self, patient: Patient) -> None:
        """Enrol a patient or update their record."""
        self._exec(
            "upsert_patient",
            "INSERT INTO patients (id, display_name, care_team, thresholds) "
            "VALUES (%s, %s, %s, %s::jsonb) "
            "ON CONFLICT (id) DO UPDATE SET display_name=excluded.display_name, "
            "care_team=excluded.care_team, thresholds=excluded.thresholds",
            (patient.id, patient.display_name, patient.care_team, dumps(dict(patient.thresholds))),
        )

    def get_patient(self, patient_id: str) -> Patient | None:
        """The patient with this id, if enrolled."""
        rows = self._query(
            "get_patient",
            "SELECT id, display_name, care_team, thresholds FROM patients WHERE id=%s",
            (patient_id,),
        )
        return _patient(rows[0]) if rows else None

    def list_patients(self) -> list[Patient]:
        """Every enrolled patient, ordered by id (byte order, like SQLite)."""
        rows = self._query(
            "list_patients",
            'SELECT id, display_name, care_team, thresholds FROM patients ORDER BY id COLLATE "C"',
        )
        return [_patient(r) for r in rows]

    def pair_device(self, device: str, patient: str) -> None:
        """Record that ``device`` measures ``patient`` (replaces an earlier pairing)."""
        self._exec(
            "pair_device",
            "INSERT INTO device_pairings (device, patient, paired_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (device) DO UPDATE SET patient=excluded.patient, "
            "paired_at=excluded.paired_at",
            (device, patient),
        )

    def device_patient(self, device: str) -> str | None:
        """The patient a device is paired to, if any."""
        rows = self._query(
            "device_patient", "SELECT patient FROM device_pairings WHERE device=%s", (device,)
        )
        return str(rows[0][0]) if rows else None

    # -- gateways ------------------------------------------------------------------------
    def record_gateway_status(self, state: GatewayState) -> bool:
        """Store a gateway's status unless a newer one is stored; return whether it was."""
        if state.status is None or state.status_at is None or state.updated_at is None:
            raise ValueError("record_gateway_status needs a status, its time and updated_at")
        args = (
            state.id,
            state.status,
            utc(state.status_at),
            utc(state.updated_at),
            state.queued,
            dumps(dict(state.dropped)),
        )

        def run(cur: Cursor) -> bool:
            cur.execute(
                "INSERT INTO gateways (id, status, status_at, updated_at, queued, dropped) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb) "
                "ON CONFLICT (id) DO UPDATE SET status=excluded.status, "
                "status_at=excluded.status_at, updated_at=excluded.updated_at, "
                "queued=excluded.queued, dropped=excluded.dropped "
                "WHERE gateways.status_at IS NULL OR excluded.status_at >= gateways.status_at",
                args,
            )
            return cur.rowcount > 0

        return self._run("record_gateway_status", run)

    def note_gateway_bundle(self, gateway: str, at: datetime) -> None:
        """Record that a bundle from ``gateway`` was committed at ``at`` (never moves back)."""
        self._exec(
            "note_gateway_bundle",
            "INSERT INTO gateways (id, last_bundle_at) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE "
            "SET last_bundle_at=greatest(gateways.last_bundle_at, excluded.last_bundle_at)",
            (gateway, utc(at)),
        )

    def get_gateway(self, gateway: str) -> GatewayState | None:
        """What is known of this gateway, if anything."""
        rows = self._query(
            "get_gateway", f"SELECT {_GATEWAY_COLUMNS} FROM gateways WHERE id=%s", (gateway,)
        )
        return _gateway(rows[0]) if rows else None

    def list_gateways(self) -> list[GatewayState]:
        """Every gateway known, ordered by id (byte order, like SQLite)."""
        rows = self._query(
            "list_gateways", f'SELECT {_GATEWAY_COLUMNS} FROM gateways ORDER BY id COLLATE "C"'
        )
        return [_gateway(r) for r in rows]

    # -- observations --------------------------------------------------------------------
    def write_observations(self, rows: Sequence[StoredObservation]) -> int:
        """Store rows in one transaction; return how many were new (duplicates ignored).

        Binary COPY into the session's staging table, then one INSERT ... SELECT that
        drops duplicates within the batch (DISTINCT ON) and against stored rows (ON
        CONFLICT DO NOTHING). Safe to retry: a retried batch inserts nothing twice.
        """
        if not rows:
            return 0
        records = [
            (
                n,
                r.identifier,
                r.patient,
                r.device,
                r.gateway,
                r.kind,
                utc(r.at),
                None if r.value is None else float(r.value),
                r.unit,
                dumps(dict(r.components)),
                bytes(r.resource),
                utc(r.received_at),
            )
            for n, r in enumerate(rows)
        ]

        def write(cur: Cursor) -> int:
            with cur.copy(_STAGING_COPY) as copy:
                copy.set_types(list(_STAGING_TYPES))
                for record in records:
                    copy.write_row(record)
            cur.execute(_INSERT_FROM_STAGING)
            stored = max(cur.rowcount, 0)
            if stored:  # the missing-data detectors' last reading per device and kind
                cur.execute(LAST_SEEN_FROM_STAGING)
            return stored

        return self._run("write_observations", write)

    def get_observation(self, identifier: str) -> StoredObservation | None:
        """One stored observation by its reading identifier."""
        rows = self._query(
            "get_observation",
            f"SELECT {_OBS_COLUMNS} FROM observations WHERE identifier=%s LIMIT 1",
            (identifier,),
        )
        return _observation(rows[0]) if rows else None

    def observations(
        self,
        patient: str,
        kind: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> list[StoredObservation]:
        """A patient's observations in time order, optionally of one kind in [start, end)."""
        sql: LiteralString = f"SELECT {_OBS_COLUMNS} FROM observations WHERE patient=%s"
        args: list[Any] = [patient]
        if kind is not None:
            sql += " AND kind=%s"
            args.append(kind)
        if start is not None:
            sql += " AND at>=%s"
            args.append(utc(start))
        if end is not None:
            sql += " AND at<%s"
            args.append(utc(end))
        sql += ' ORDER BY at, identifier COLLATE "C"'
        if limit is not None and limit >= 0:  # SQLite reads a negative LIMIT as none
            sql += " LIMIT %s"
            args.append(limit)
        return [_observation(r) for r in self._query("observations", sql, args)]

    def count_observations(self) -> int:
        """How many observations are stored."""
        return int(self._query("count_observations", "SELECT count(*) FROM observations")[0][0])

    def search_observations(
        self,
        query: ObservationQuery,
        *,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[StoredObservation]:
        """One page of matches ordered by (``at``, identifier), after the ``after`` cursor."""
        sql, args = search_sql(query, limit, after)
        return [_observation(r) for r in self._query("search_observations", sql, args)]

    def count_matching(self, query: ObservationQuery) -> int:
        """How many observations match ``query``."""
        where, args = search_where(query)
        rows = self._query(
            "count_matching", f"SELECT count(*) FROM observations WHERE {where}", args
        )
        return int(rows[0][0])

    # -- quarantine ----------------------------------------------------------------------
    def quarantine(self, items: Sequence[QuarantineItem]) -> None:
        """Keep refused input with its reason."""
        if not items:
            return
        args = [
            (utc(i.received_at), i.source, i.reason_code, i.reason, bytes(i.payload)) for i in items
        ]

        def run(cur: Cursor) -> None:
            cur.executemany(
                "INSERT INTO quarantine (received_at, source, reason_code, reason, payload) "
                "VALUES (%s, %s, %s, %s, %s)",
                args,
            )

        self._run("quarantine", run, idempotent=False)

    def list_quarantine(
        self,
        *,
        state: QuarantineState | None = None,
        reason_code: str | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[QuarantineItem]:
        """Quarantined items, oldest first, optionally only held/released, of one reason or ids."""
        sql: LiteralString = f"SELECT {_QUARANTINE_COLUMNS} FROM quarantine WHERE true"
        args: list[Any] = []
        if state == "held":
            sql += " AND released_at IS NULL"
        elif state == "released":
            sql += " AND released_at IS NOT NULL"
        if reason_code is not None:
            sql += " AND reason_code=%s"
            args.append(reason_code)
        if ids is not None:
            sql += " AND id = ANY(%s::bigint[])"
            args.append(list(ids))
        sql += " ORDER BY id"
        return [_quarantine_item(r) for r in self._query("list_quarantine", sql, args)]

    def release_quarantine(self, ids: Sequence[int], at: datetime) -> int:
        """Mark held items as released at ``at`` (kept, not deleted); return how many were."""
        if not ids:
            return 0

        def run(cur: Cursor) -> int:
            cur.execute(
                "UPDATE quarantine SET released_at=%s "
                "WHERE released_at IS NULL AND id = ANY(%s::bigint[])",
                (utc(at), list(ids)),
            )
            return max(cur.rowcount, 0)

        return self._run("release_quarantine", run)

    def requarantine(self, item_id: int, reason_code: str, reason: str, at: datetime) -> None:
        """Record that a held item was re-ingested at ``at`` and refused again, and why."""
        self._exec(
            "requarantine",
            "UPDATE quarantine SET reason_code=%s, reason=%s, retried_at=%s "
            "WHERE id=%s AND released_at IS NULL",
            (reason_code, reason, utc(at), item_id),
        )

    # -- audit ---------------------------------------------------------------------------
    def record_audit(self, event: AuditEvent) -> AuditEvent:
        """Append an audit event; return it with its id (not retried if the commit was lost)."""

        def run(cur: Cursor) -> int:
            cur.execute(
                "INSERT INTO audit_events (at, principal, action, outcome, patient, resource, "
                "remote, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    utc(event.at),
                    event.principal,
                    event.action,
                    event.outcome,
                    event.patient,
                    event.resource,
                    event.remote,
                    event.detail,
                ),
            )
            row = cur.fetchone()
            assert row is not None
            return int(row[0])

        return replace(event, id=self._run("record_audit", run, idempotent=False))

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
        sql: LiteralString = f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE true"
        args: list[Any] = []
        if patient is not None:
            sql += " AND patient=%s"
            args.append(patient)
        if principal is not None:
            sql += " AND principal=%s"
            args.append(principal)
        if action is not None:
            sql += " AND action=%s"
            args.append(action)
        if since is not None:
            sql += " AND at>=%s"
            args.append(utc(since))
        sql += " ORDER BY at, id"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(max(limit, 0))
        return [_audit_event(r) for r in self._query("list_audit", sql, args)]

    # -- alerts --------------------------------------------------------------------------
    def insert_alert(self, alert: Alert) -> Alert:
        """Store a new alert; return it with its id.

        Raises :class:`StoreError` if the patient already has a non-resolved alert of
        the same rule (unique index ``alerts_one_open``).
        """

        def run(cur: Cursor) -> int:
            cur.execute(
                f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                _alert_args(alert),
            )
            row = cur.fetchone()
            assert row is not None
            return int(row[0])

        return replace(alert, id=self._run("insert_alert", run, idempotent=False))

    def update_alert(self, alert: Alert) -> None:
        """Replace the stored alert with the same id."""
        if alert.id is None:
            raise ValueError("update_alert needs an alert with an id")
        self._exec(
            "update_alert",
            f"UPDATE alerts SET {_ALERT_SETS} WHERE id=%s",
            (*_alert_args(alert), alert.id),
        )

    def find_open_alert(self, patient: str, rule: str) -> Alert | None:
        """The alert of this patient and rule that is not resolved, if any."""
        rows = self._query(
            "find_open_alert",
            f"SELECT id, {_ALERT_COLUMNS} FROM alerts "
            "WHERE patient=%s AND rule=%s AND status <> 'resolved'",
            (patient, rule),
        )
        return _alert(rows[0]) if rows else None

    def list_alerts(
        self, patient: str | None = None, status: AlertStatus | None = None
    ) -> list[Alert]:
        """Alerts, oldest first, optionally filtered."""
        sql: LiteralString = f"SELECT id, {_ALERT_COLUMNS} FROM alerts WHERE true"
        args: list[Any] = []
        if patient is not None:
            sql += " AND patient=%s"
            args.append(patient)
        if status is not None:
            sql += " AND status=%s"
            args.append(status)
        sql += " ORDER BY opened_at, id"
        return [_alert(r) for r in self._query("list_alerts", sql, args)]
