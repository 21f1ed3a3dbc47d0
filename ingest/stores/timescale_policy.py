"""Storage policy of the TimescaleDB store, chosen at start-up from the server's edition.

Compression, retention policies and continuous aggregates are Timescale License features.
:func:`apply_storage_policy` asks :meth:`TimescaleStore.capabilities` which edition runs:

- **timescale** edition: a compression policy, a retention policy (when configured) and
  continuous aggregates ``observations_hourly`` / ``observations_daily`` with refresh
  policies; TimescaleDB's own job scheduler runs them.
- **apache** edition (no ``add_job``, no policies, no continuous aggregates): plain rollup
  tables with the same names and columns, kept up to date by
  :meth:`StorageMaintenance.refresh_rollups`, and retention by
  :meth:`StorageMaintenance.apply_retention` (``drop_chunks``); the ingest service runs
  both periodically (:meth:`StorageMaintenance.run`).

Rollups hold, per patient, kind and bucket (UTC hour / UTC day): ``avg``, ``min``, ``max``
of ``value`` and ``count`` of observations (panels such as blood pressure have no
``value``: their rows count, their aggregates are NULL). Retention is off unless configured:
clinical records are kept. Rollups are kept when raw chunks are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import psycopg
from psycopg import sql

from ingest.errors import StoreError

if TYPE_CHECKING:
    from ingest.stores.timescale import TimescaleStore

__all__ = [
    "Period",
    "RefreshResult",
    "StorageMaintenance",
    "StoragePlan",
    "StoragePolicySettings",
    "apply_storage_policy",
    "plan_for",
    "storage_policy_for",
]

log = logging.getLogger(__name__)

#: Advisory lock keys (any constants distinct from the migration lock): replicas of the
#: ingest service run the same steps; one of them does the work, the others skip.
POLICY_LOCK_KEY: Final = 0x7777706F6C696379
REFRESH_LOCK_KEY: Final = 0x7777726F6C6C7570
RETENTION_LOCK_KEY: Final = 0x7777726574656E74
CONNECT_TIMEOUT: Final = 5
#: Subtracted from each new refresh watermark: a transaction that began just before the
#: refresh but is not yet visible in pg_stat_activity is still covered next time.
WATERMARK_MARGIN: Final = timedelta(minutes=1)

ROLLUPS: Final = (("observations_hourly", "1 hour"), ("observations_daily", "1 day"))

_UNITS: Final = {
    "s": "seconds",
    "m": "minutes",
    "h": "hours",
    "d": "days",
    "w": "weeks",
    "y": "years",
}
_SECONDS: Final = {
    "seconds": 1,
    "minutes": 60,
    "hours": 3600,
    "days": 86400,
    "weeks": 7 * 86400,
    "years": 365.25 * 86400,
}
_PERIOD = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
_LONG_UNIT = {long: long for long in _UNITS.values()} | {
    long.removesuffix("s"): long for long in _UNITS.values()
}


@dataclass(frozen=True, slots=True)
class Period:
    """A duration such as ``90d`` or ``5y``, usable as a PostgreSQL interval."""

    amount: int
    unit: Literal["seconds", "minutes", "hours", "days", "weeks", "years"]

    @classmethod
    def parse(cls, text: str) -> Period:
        """Parse ``<n><unit>`` with unit s, m, h, d, w or y (also ``5 years``, ``1 hour``)."""
        match = _PERIOD.match(text.lower())
        unit = None
        if match is not None:
            unit = _UNITS.get(match.group(2)) or _LONG_UNIT.get(match.group(2))
        if match is None or unit is None or int(match.group(1)) <= 0:
            raise ValueError(
                f"period {text!r} is not a positive <number><unit> with unit "
                "s, m, h, d, w or y (e.g. 90d, 5y, 1h)"
            )
        return cls(int(match.group(1)), unit)  # type: ignore[arg-type]

    @property
    def interval(self) -> str:
        """The PostgreSQL interval literal, e.g. ``5 years``."""
        return f"{self.amount} {self.unit}"

    def total_seconds(self) -> float:
        """Length in seconds (a year is 365.25 days)."""
        return self.amount * _SECONDS[self.unit]

    def __str__(self) -> str:
        unit = self.unit.removesuffix("s") if self.amount == 1 else self.unit
        return f"{self.amount} {unit}"

    @property
    def short(self) -> str:
        """Compact form, e.g. ``1h``."""
        letter = next(k for k, v in _UNITS.items() if v == self.unit)
        return f"{self.amount}{letter}"


@dataclass(frozen=True, slots=True)
class StoragePolicySettings:
    """Operator choices (``wardwatch ingest run --rollup-every/--retention/...``)."""

    refresh_every: Period = field(default_factory=lambda: Period(5, "minutes"))
    """How often rollups are refreshed (Apache: our task; Timescale: the refresh policy)."""
    retention: Period | None = None
    """Drop raw observations older than this; ``None``: keep everything (the default)."""
    retention_every: Period = field(default_factory=lambda: Period(1, "hours"))
    """How often the retention step runs (Apache edition)."""
    compress_after: Period = field(default_factory=lambda: Period(30, "days"))
    """Compress chunks older than this (Timescale edition)."""


@dataclass(frozen=True, slots=True)
class StoragePlan:
    """What the store does about aggregates, retention and compression (no patient data)."""

    edition: str
    aggregates: str
    refresh: str
    retention: str
    compression: str

    @property
    def licensed(self) -> bool:
        """True when TimescaleDB's own jobs run the policy (Timescale edition)."""
        return self.edition == "timescale"

    def as_dict(self) -> dict[str, str]:
        """The plan as reported at start-up."""
        return {
            "edition": self.edition,
            "aggregates": self.aggregates,
            "refresh": self.refresh,
            "retention": self.retention,
            "compression": self.compression,
        }


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """Buckets re-aggregated by one rollup refresh (``skipped``: another replica had it)."""

    hourly: int = 0
    daily: int = 0
    skipped: bool = False


def plan_for(capabilities: Mapping[str, object], settings: StoragePolicySettings) -> StoragePlan:
    """The plan for a server with these :meth:`TimescaleStore.capabilities` (pure)."""
    if not capabilities.get("hypertables"):
        raise StoreError("the timescaledb extension is not installed in this database")
    licensed = bool(
        capabilities.get("continuous_aggregates")
        and capabilities.get("retention_policies")
        and capabilities.get("compression")
    )
    if licensed:
        retention = (
            "off"
            if settings.retention is None
            else f"retention policy, older than {settings.retention}"
        )
        return StoragePlan(
            edition="timescale",
            aggregates="continuous-aggregates",
            refresh=f"refresh policy every {settings.refresh_every.short}",
            retention=retention,
            compression=f"policy, after {settings.compress_after}",
        )
    retention = (
        "off"
        if settings.retention is None
        else f"drop_chunks every {settings.retention_every.short}, older than {settings.retention}"
    )
    return StoragePlan(
        edition=str(capabilities.get("license") or "apache"),
        aggregates="rollup-tables",
        refresh=f"every {settings.refresh_every.short}",
        retention=retention,
        compression="unavailable",
    )


def _connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    try:
        conn = psycopg.connect(
            url, connect_timeout=CONNECT_TIMEOUT, application_name="wardwatch-storage"
        )
    except psycopg.Error as exc:
        raise StoreError(f"storage policy: cannot connect: {exc}") from exc
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


def _relkind(cur: psycopg.Cursor[tuple[Any, ...]], name: str) -> str | None:
    cur.execute(
        "SELECT c.relkind FROM pg_class c WHERE c.relname = %s "
        "AND c.relnamespace = current_schema()::regnamespace",
        (name,),
    )
    row = cur.fetchone()
    return None if row is None else str(row[0])


def _apply_apache(cur: psycopg.Cursor[tuple[Any, ...]]) -> list[str]:
    """Create the rollup tables if absent; return problems (relations of another kind)."""
    problems = []
    for name, _width in ROLLUPS:
        kind = _relkind(cur, name)
        if kind is None:
            cur.execute(
                sql.SQL(
                    "CREATE TABLE {} (patient text NOT NULL, kind text NOT NULL, "
                    "bucket timestamptz NOT NULL, avg double precision, min double precision, "
                    "max double precision, count bigint NOT NULL, "
                    "PRIMARY KEY (patient, kind, bucket))"
                ).format(sql.Identifier(name))
            )
        elif kind != "r":
            problems.append(f"{name} exists but is not a table (relkind {kind!r})")
    return problems


def _apply_timescale(
    cur: psycopg.Cursor[tuple[Any, ...]], settings: StoragePolicySettings
) -> list[str]:
    """Compression, retention and continuous aggregates with their policies (idempotent)."""
    problems = []
    cur.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_name = 'observations'"
    )
    row = cur.fetchone()
    if row is None or not row[0]:
        cur.execute(
            "ALTER TABLE observations SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'patient, kind', "
            "timescaledb.compress_orderby = 'at DESC, identifier')"
        )
    cur.execute(
        "SELECT add_compression_policy('observations', %s::interval, if_not_exists => true)",
        (settings.compress_after.interval,),
    )
    cur.execute("SELECT remove_retention_policy('observations', if_exists => true)")
    if settings.retention is not None:
        cur.execute(
            "SELECT add_retention_policy('observations', %s::interval)",
            (settings.retention.interval,),
        )
    for name, width in ROLLUPS:
        kind = _relkind(cur, name)
        if kind is None:
            cur.execute(
                sql.SQL(
                    "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous) AS "
                    "SELECT patient, kind, time_bucket({}::interval, at) AS bucket, "
                    "avg(value) AS avg, min(value) AS min, max(value) AS max, "
                    "count(*) AS count FROM observations GROUP BY patient, kind, bucket "
                    "WITH NO DATA"
                ).format(sql.Identifier(name), sql.Literal(width))
            )
        elif kind == "r":
            problems.append(f"{name} is a rollup table from the apache edition; not replaced")
            continue
        # The refresh window stops at the retention cut: refreshing over dropped raw
        # chunks would empty the aggregates there.
        cur.execute("SELECT remove_continuous_aggregate_policy(%s, if_exists => true)", (name,))
        cur.execute(
            "SELECT add_continuous_aggregate_policy(%s, start_offset => %s::interval, "
            "end_offset => %s::interval, schedule_interval => %s::interval)",
            (
                name,
                None if settings.retention is None else settings.retention.interval,
                width,
                settings.refresh_every.interval,
            ),
        )
    return problems


def apply_storage_policy(
    store: TimescaleStore, settings: StoragePolicySettings | None = None
) -> StoragePlan:
    """Choose the plan from the server's edition, set it up, log and return it.

    Idempotent and safe when several ingest replicas start together (advisory lock).
    """
    settings = settings or StoragePolicySettings()
    plan = plan_for(store.capabilities(), settings)
    with _connect(store.url) as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (POLICY_LOCK_KEY,))
            problems = _apply_timescale(cur, settings) if plan.licensed else _apply_apache(cur)
            conn.commit()
        except psycopg.Error as exc:
            raise StoreError(f"storage policy ({plan.edition} edition) failed: {exc}") from exc
    if problems:
        log.warning("storage policy: %s", "; ".join(problems))
        plan = StoragePlan(
            plan.edition, f"{plan.aggregates} (not usable: {'; '.join(problems)})",
            plan.refresh, plan.retention, plan.compression,
        )  # fmt: skip
    log.info("storage policy: %s", plan.as_dict())
    return plan


_REFRESH_SQL: Final = """
    INSERT INTO {table} AS r (patient, kind, bucket, avg, min, max, count)
    SELECT o.patient, o.kind, t.bucket, avg(o.value), min(o.value), max(o.value), count(*)
    FROM (SELECT DISTINCT patient, kind, time_bucket({width}::interval, at) AS bucket
          FROM observations
          WHERE ingested_at >= (SELECT watermark FROM storage_state WHERE name = 'rollups')
            -- buckets older than the retention cut are left alone: their raw rows go away
            AND at >= coalesce(now() - %(retention)s::interval, '-infinity')) AS t
    JOIN observations o ON o.patient = t.patient AND o.kind = t.kind
         AND o.at >= t.bucket AND o.at < t.bucket + {width}::interval
    GROUP BY o.patient, o.kind, t.bucket
    ON CONFLICT (patient, kind, bucket) DO UPDATE SET
        avg = excluded.avg, min = excluded.min, max = excluded.max, count = excluded.count
"""


class StorageMaintenance:
    """The Apache edition's stand-ins for TimescaleDB jobs: rollup refresh and retention.

    Each step runs on its own short-lived connection (never the store's, so ingest is not
    held up) in one transaction, under a try-lock: with several replicas one does the work.
    """

    def __init__(
        self,
        url: str,
        plan: StoragePlan,
        settings: StoragePolicySettings | None = None,
        *,
        margin: timedelta = WATERMARK_MARGIN,
    ) -> None:
        self.url = url
        self.plan = plan
        self.settings = settings or StoragePolicySettings()
        self.margin = margin

    @property
    def needed(self) -> bool:
        """Whether anything must run from our side (not on the Timescale edition)."""
        return not self.plan.licensed

    def refresh_rollups(self) -> RefreshResult:
        """Re-aggregate every hourly and daily bucket touched since the last refresh.

        Touched buckets are those of rows whose ``ingested_at`` is at or after the stored
        watermark (late readings into old buckets included). The new watermark is the
        start of the oldest transaction still open in this database (its rows may become
        visible after this refresh), less :data:`WATERMARK_MARGIN`; re-aggregating a
        bucket twice is harmless, missing one is not.
        """
        with _connect(self.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (REFRESH_LOCK_KEY,))
            if not _first(cur):
                return RefreshResult(skipped=True)
            cur.execute("SELECT 1 FROM storage_state WHERE name = 'rollups' FOR UPDATE")
            if _first(cur) is None:
                raise StoreError("storage_state has no 'rollups' row (migration 0004 missing?)")
            # Read before the aggregation below takes its snapshot.
            cur.execute(
                "SELECT least(now(), min(xact_start)) - %s FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                (self.margin,),
            )
            new_mark = _first(cur)
            retention = (
                None if self.settings.retention is None else self.settings.retention.interval
            )
            counts = []
            for table, width in ROLLUPS:
                cur.execute(
                    sql.SQL(_REFRESH_SQL).format(
                        table=sql.Identifier(table), width=sql.Literal(width)
                    ),
                    {"retention": retention},
                )
                counts.append(max(cur.rowcount, 0))
            cur.execute(
                "UPDATE storage_state SET watermark = %s WHERE name = 'rollups'", (new_mark,)
            )
            conn.commit()
        result = RefreshResult(hourly=counts[0], daily=counts[1])
        log.debug("rollups refreshed: %d hourly, %d daily buckets", result.hourly, result.daily)
        return result

    def apply_retention(self, now: datetime | None = None) -> int:
        """Drop raw chunks entirely older than ``now`` less the retention period.

        Returns the number of chunks dropped (0 when retention is off or another replica
        holds the lock). ``now`` defaults to the database's clock.
        """
        retention = self.settings.retention
        if retention is None:
            return 0
        with _connect(self.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (RETENTION_LOCK_KEY,))
            if not _first(cur):
                return 0
            cur.execute(
                "SELECT count(*) FROM drop_chunks('observations', "
                "older_than => coalesce(%s::timestamptz, now()) - %s::interval)",
                (now, retention.interval),
            )
            dropped = int(_first(cur) or 0)
            conn.commit()
        if dropped:
            log.info("retention: dropped %d chunks older than %s", dropped, retention)
        return dropped

    async def run(self) -> None:
        """Refresh rollups and apply retention periodically, until cancelled.

        A failed step is logged and tried again at its next turn; it never stops ingest.
        """
        if not self.needed:
            return
        loop = asyncio.get_running_loop()
        due_refresh = due_retention = loop.time()
        while True:
            now = loop.time()
            if now >= due_refresh:
                due_refresh = now + self.settings.refresh_every.total_seconds()
                await self._step("rollup refresh", self.refresh_rollups)
            if self.settings.retention is not None and now >= due_retention:
                due_retention = now + self.settings.retention_every.total_seconds()
                await self._step("retention", self.apply_retention)
            wake = due_refresh
            if self.settings.retention is not None:
                wake = min(wake, due_retention)
            await asyncio.sleep(max(wake - loop.time(), 0.0))

    @staticmethod
    async def _step(name: str, fn: Any) -> None:
        try:
            await asyncio.to_thread(fn)
        except (StoreError, psycopg.Error) as exc:
            log.warning("storage %s failed, retrying at its next turn: %s", name, exc)


def _first(cur: psycopg.Cursor[tuple[Any, ...]]) -> Any:
    row = cur.fetchone()
    return None if row is None else row[0]


def storage_policy_for(
    store: object, settings: StoragePolicySettings | None = None
) -> tuple[dict[str, str], StorageMaintenance | None]:
    """Start-up entry point of the ingest service, for any store.

    Returns the plan to report and the maintenance to run periodically (``None`` when
    nothing must run from our side: the SQLite store, or the Timescale edition's own jobs).
    """
    from ingest.stores.timescale import TimescaleStore

    settings = settings or StoragePolicySettings()
    if not isinstance(store, TimescaleStore):
        if settings.retention is not None:
            log.warning("retention is configured but %s has no retention step", type(store))
        plan = {
            "edition": "sqlite",
            "aggregates": "none",
            "refresh": "none",
            "retention": "off" if settings.retention is None else "unsupported by this store",
            "compression": "unavailable",
        }
        log.info("storage policy: %s", plan)
        return plan, None
    timescale_plan = apply_storage_policy(store, settings)
    maintenance = StorageMaintenance(store.url, timescale_plan, settings)
    return timescale_plan.as_dict(), maintenance if maintenance.needed else None
