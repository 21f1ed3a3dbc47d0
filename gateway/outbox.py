"""The durable outbox: every Observation is on disk before anything else happens to it.

SQLite in WAL mode with ``synchronous=FULL``: a committed ``put`` survives ``kill -9`` and
power loss. Entries leave only through :meth:`Outbox.confirm`, called when the backend has
acknowledged the bundle that carried them. Identifiers are unique, so a reading that a
device sends twice is queued once. Order: oldest first (which keeps each device's order).

Disk policy (bounded; see ``docs/operations-hub.md``). The queue has a budget
(:class:`OutboxBudget`: 256 MiB of queued data by default, optionally a row limit). When
the uplink is down long enough for the budget to be reached:

1. *Thin* high-rate, low-acuity kinds (``thin_kinds``: CGM glucose, steps, heart rate by
   default): the queued backlog of those kinds is reduced to the oldest reading per
   device, kind and ``thin_interval`` window (15 minutes by default), and new readings of
   those kinds are queued only if their window has none yet. Thinning stays on until the
   queue drains below 90 % of the budget.
2. If there is still no room, *refuse* new readings. What is queued is never evicted: the
   oldest vital signs are kept, newer ones are refused.

Nothing is dropped silently: every thinned or refused reading is counted per device, kind
and reason (``thinned`` | ``refused``) in the ``dropped`` table of this database, in the
same transaction that decided it; :meth:`Outbox.dropped` and :meth:`Outbox.drop_totals`
report them (``gateway status``, the health endpoint, the retained status message).
A refused reading is not durably stored, so it must not be acknowledged to a device that
keeps records: the gateway leaves such a device's record sequence where it was, and the
record is fetched again once there is room.

The budget is measured as queued bytes (:func:`entry_size`: the Observation JSON plus an
estimate of the row's and its index entries' overhead); the SQLite file reuses the pages
that confirmed entries free and does not shrink.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import OutboxError
from wardwatch.fhir import parse_time
from wardwatch.vocabulary import BY_LOINC, LOINC_SYSTEM

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier TEXT NOT NULL UNIQUE,
    device TEXT NOT NULL,
    body BLOB NOT NULL,
    enqueued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    device TEXT NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS record_sequence (
    device TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dropped (
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    PRIMARY KEY (device, kind, reason)
);
CREATE TABLE IF NOT EXISTS device_state (
    device TEXT PRIMARY KEY,
    last_seen TEXT,
    battery INTEGER,
    readings_in INTEGER NOT NULL DEFAULT 0
);
"""

# Columns added after the first release: (name, declaration). Old databases get them on open.
_ADDED_COLUMNS = (
    ("kind", "TEXT NOT NULL DEFAULT ''"),
    ("effective", "INTEGER NOT NULL DEFAULT 0"),
    ("size", "INTEGER NOT NULL DEFAULT 0"),
)

#: default queue budget: small next to a Raspberry Pi's SD card, weeks of a busy home
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: high-rate, low-acuity kinds thinned first when the budget is reached
DEFAULT_THIN_KINDS = frozenset({"cgm_glucose", "steps", "heart_rate"})
#: one reading per device, kind and this many seconds is kept when thinning
DEFAULT_THIN_INTERVAL = 900.0
#: thinning stays on until the queue is below this share of its budget
_LOW_WATER = 0.9
# Per-row bytes beside the body: identifier in the row and its unique index, device and
# kind in the row and the window index, times, record headers and b-tree cells.
_ROW_OVERHEAD = 96

THINNED = "thinned"
REFUSED = "refused"


class OutboxFullError(OutboxError):
    """Readings were refused because the outbox's budget is reached (they are counted)."""

    code = "outbox-full"


@dataclass(frozen=True, slots=True)
class OutboxBudget:
    """How much the outbox may hold, and what gives way first when it is full."""

    max_bytes: int | None = DEFAULT_MAX_BYTES
    """Queued bytes (see :func:`entry_size`); None: no byte limit."""
    max_rows: int | None = None
    """Queued entries; None: no row limit."""
    thin_kinds: frozenset[str] = DEFAULT_THIN_KINDS
    thin_interval: float = DEFAULT_THIN_INTERVAL

    def __post_init__(self) -> None:
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise OutboxError(f"outbox max_bytes must be positive, got {self.max_bytes}")
        if self.max_rows is not None and self.max_rows <= 0:
            raise OutboxError(f"outbox max_rows must be positive, got {self.max_rows}")
        if self.thin_interval < 1:
            raise OutboxError(f"thin_interval must be at least 1 s, got {self.thin_interval}")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One queued Observation."""

    seq: int
    identifier: str
    device: str
    body: bytes


@dataclass(frozen=True, slots=True)
class PutResult:
    """What became of the Observations offered to :meth:`Outbox.admit`."""

    new: int = 0
    duplicate: int = 0
    thinned: int = 0
    refused: int = 0
    refused_by_device: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What the running gateway last knew of a device (persisted for other processes)."""

    device: str
    last_seen: str | None = None
    battery: int | None = None
    readings_in: int = 0
    queued: int = 0
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class _Row:
    identifier: str
    device: str
    kind: str
    effective: int
    body: bytes

    @property
    def size(self) -> int:
        return entry_size(self.identifier, self.device, self.kind, self.body)


def entry_size(identifier: str, device: str, kind: str, body: bytes) -> int:
    """The bytes an entry counts against the budget."""
    return len(body) + 2 * (len(identifier) + len(device) + len(kind)) + _ROW_OVERHEAD


def observation_kind(obs: Mapping[str, Any]) -> str:
    """The wardwatch measurement kind of an Observation (by its LOINC code), '' if unknown."""
    for coding in obs.get("code", {}).get("coding", ()):
        if coding.get("system") == LOINC_SYSTEM:
            spec = BY_LOINC.get(str(coding.get("code")))
            if spec is not None:
                return spec.name
    return ""


def _row(obs: Mapping[str, Any]) -> _Row:
    try:
        ident = obs["identifier"][0]["value"]
        device = obs["device"]["reference"].removeprefix("Device/")
        effective = int(parse_time(obs["effectiveDateTime"]).timestamp())
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise OutboxError(f"not a wardwatch Observation ({exc!r} missing or invalid)") from exc
    return _Row(ident, device, observation_kind(obs), effective, orjson.dumps(obs))


class Outbox:
    """Durable FIFO of FHIR Observations awaiting the backend's acknowledgement."""

    def __init__(self, path: str | Path, budget: OutboxBudget | None = None) -> None:
        self.path = str(path)
        self.budget = budget if budget is not None else OutboxBudget()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._migrate()
            rows, size = self._db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM outbox"
            ).fetchone()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._rows = int(rows)
        self._bytes = int(size)
        self._thinning = False

    def _migrate(self) -> None:
        have = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        missing = [(n, decl) for n, decl in _ADDED_COLUMNS if n not in have]
        if missing:
            self._db.execute("BEGIN IMMEDIATE")
            for name, decl in missing:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {decl}")
            self._db.execute(
                "UPDATE outbox SET size = length(body) + 2 * (length(identifier) + "
                f"length(device)) + {_ROW_OVERHEAD} WHERE size = 0"
            )
            self._db.execute("COMMIT")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS outbox_window ON outbox (device, kind, effective)"
        )

    def close(self) -> None:
        """Close the database (committed entries stay on disk)."""
        with self._lock:
            self._db.close()

    # -- queueing ----------------------------------------------------------------------

    def put(self, observations: Iterable[Mapping[str, Any]]) -> int:
        """Queue Observations in one durable transaction; return how many were new."""
        return self.admit(observations).new

    def admit(self, observations: Iterable[Mapping[str, Any]]) -> PutResult:
        """Queue Observations in one durable transaction under the budget's policy.

        Every reading offered is counted per device in ``device_state.readings_in``; any
        thinned or refused is counted in ``dropped`` in the same transaction.
        """
        rows = [_row(obs) for obs in observations]
        if not rows:
            return PutResult()
        now = datetime.now(UTC).isoformat()
        new = duplicate = 0
        drops: Counter[tuple[str, str, str]] = Counter()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                added_rows, added_bytes = 0, 0
                for row in rows:
                    size = row.size
                    if self._queued(row.identifier):
                        duplicate += 1
                        continue
                    full = not self._fits(added_rows + 1, added_bytes + size)
                    if full and not self._thinning:
                        self._thinning = True
                        freed_rows, freed_bytes = self._thin_backlog(drops)
                        added_rows -= freed_rows
                        added_bytes -= freed_bytes
                        full = not self._fits(added_rows + 1, added_bytes + size)
                    if (
                        self._thinning
                        and row.kind in self.budget.thin_kinds
                        and self._window_taken(row)
                    ):
                        drops[(row.device, row.kind, THINNED)] += 1
                        continue
                    if full:
                        drops[(row.device, row.kind, REFUSED)] += 1
                        continue
                    self._db.execute(
                        "INSERT INTO outbox (identifier, device, body, enqueued_at, kind, "
                        "effective, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (row.identifier, row.device, row.body, now, row.kind, row.effective, size),
                    )
                    new += 1
                    added_rows += 1
                    added_bytes += size
                per_device = Counter(r.device for r in rows)
                self._db.executemany(
                    "INSERT INTO device_state (device, readings_in) VALUES (?, ?) "
                    "ON CONFLICT (device) DO UPDATE SET readings_in = readings_in + "
                    "excluded.readings_in",
                    per_device.items(),
                )
                self._count_drops(drops, now)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                self._thinning = False  # the backlog thinning (if any) was rolled back too
                raise OutboxError(f"outbox write failed: {exc}") from exc
            self._rows += added_rows
            self._bytes += added_bytes
        refused = Counter[str]()
        for (device, _kind, reason), n in drops.items():
            if reason == REFUSED:
                refused[device] += n
        return PutResult(
            new=new,
            duplicate=duplicate,
            thinned=sum(n for (_d, _k, r), n in drops.items() if r == THINNED),
            refused=sum(refused.values()),
            refused_by_device=dict(refused),
        )

    def _queued(self, identifier: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM outbox WHERE identifier=?", (identifier,)).fetchone()
            is not None
        )

    def _fits(self, extra_rows: int, extra_bytes: int) -> bool:
        b = self.budget
        if b.max_rows is not None and self._rows + extra_rows > b.max_rows:
            return False
        return b.max_bytes is None or self._bytes + extra_bytes <= b.max_bytes

    def _window(self, effective: int) -> int:
        return int(effective // self.budget.thin_interval)

    def _window_taken(self, row: _Row) -> bool:
        start = self._window(row.effective) * self.budget.thin_interval
        found = self._db.execute(
            "SELECT 1 FROM outbox WHERE device=? AND kind=? AND effective >= ? AND effective < ?"
            " LIMIT 1",
            (row.device, row.kind, start, start + self.budget.thin_interval),
        ).fetchone()
        return found is not None

    def _thin_backlog(self, drops: Counter[tuple[str, str, str]]) -> tuple[int, int]:
        """Keep the oldest queued entry per device, kind and window of the thinned kinds."""
        kinds = sorted(self.budget.thin_kinds)
        if not kinds:
            return 0, 0
        marks = ",".join("?" * len(kinds))
        interval = self.budget.thin_interval
        victims = self._db.execute(
            f"SELECT seq, device, kind, size FROM outbox WHERE kind IN ({marks}) AND seq NOT IN "
            f"(SELECT min(seq) FROM outbox WHERE kind IN ({marks}) "
            "GROUP BY device, kind, CAST(effective / ? AS INTEGER))",
            (*kinds, *kinds, interval),
        ).fetchall()
        self._db.executemany("DELETE FROM outbox WHERE seq=?", [(v[0],) for v in victims])
        for _seq, device, kind, _size in victims:
            drops[(device, kind, THINNED)] += 1
        return len(victims), sum(int(v[3]) for v in victims)

    def _count_drops(self, drops: Counter[tuple[str, str, str]], now: str) -> None:
        self._db.executemany(
            "INSERT INTO dropped (device, kind, reason, count, first_at, last_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device, kind, reason) DO UPDATE SET "
            "count = count + excluded.count, last_at = excluded.last_at",
            [(d, k, r, n, now, now) for (d, k, r), n in drops.items()],
        )

    # -- draining ----------------------------------------------------------------------

    def batch(self, limit: int, exclude: Collection[int] = ()) -> list[OutboxEntry]:
        """The oldest ``limit`` entries, skipping sequence numbers in ``exclude`` (in flight)."""
        with self._lock:
            cur = self._db.execute(
                "SELECT seq, identifier, device, body FROM outbox ORDER BY seq LIMIT ?",
                (limit + len(exclude),),
            )
            out = [OutboxEntry(*row) for row in cur if row[0] not in exclude]
        return out[:limit]

    def mark_attempt(self, seqs: Sequence[int]) -> None:
        """Count a send attempt for these entries (reported in status)."""
        with self._lock:
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1 WHERE seq=?", [(s,) for s in seqs]
            )

    def confirm(self, seqs: Sequence[int]) -> int:
        """Delete acknowledged entries; return how many were removed."""
        removed = freed = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for s in seqs:
                    row = self._db.execute(
                        "DELETE FROM outbox WHERE seq=? RETURNING size", (s,)
                    ).fetchone()
                    if row is not None:
                        removed += 1
                        freed += int(row[0])
                self._bump("sent", removed)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise OutboxError(f"outbox confirm failed: {exc}") from exc
            self._rows -= removed
            self._bytes -= freed
            if self._thinning and self._below_low_water():
                self._thinning = False
            return removed

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def _below_low_water(self) -> bool:
        b = self.budget
        if b.max_rows is not None and self._rows >= b.max_rows * _LOW_WATER:
            return False
        return b.max_bytes is None or self._bytes < b.max_bytes * _LOW_WATER

    # -- quarantine ----------------------------------------------------------------------

    def quarantine(self, device: str, source: str, reason: str, payload: bytes) -> None:
        """Keep device input that could not be decoded, with the reason."""
        with self._lock:
            self._db.execute(
                "INSERT INTO quarantine (at, device, source, reason, payload) "
                "VALUES (?, ?, ?, ?, ?)",
                (datetime.now(UTC).isoformat(), device, source, reason, payload),
            )

    def quarantined(self) -> list[tuple[str, str, str, bytes]]:
        """Quarantined device input as (device, source, reason, payload), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device, source, reason, payload FROM quarantine ORDER BY id"
            ).fetchall()
        return [(d, s, r, bytes(p)) for d, s, r, p in rows]

    def quarantined_count(self) -> int:
        """How many device inputs are quarantined."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM quarantine").fetchone()[0])

    # -- state and counters ----------------------------------------------------------------

    def pending(self) -> int:
        """How many entries await acknowledgement."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def pending_bytes(self) -> int:
        """The queued bytes counted against the budget."""
        with self._lock:
            return int(self._db.execute("SELECT coalesce(sum(size), 0) FROM outbox").fetchone()[0])

    @property
    def thinning(self) -> bool:
        """Whether the budget was reached and thinning is on (in this process)."""
        return self._thinning

    def sent(self) -> int:
        """How many entries were confirmed by the backend over the outbox's life."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name='sent'").fetchone()
            return int(row[0]) if row else 0

    def summary(self) -> dict[str, Any]:
        """Queue length and drop totals, cheap enough for every status message."""
        return {"queued": self._rows, "dropped": self.drop_totals()}

    def dropped(self) -> list[dict[str, Any]]:
        """Readings not queued because of the budget, per device, kind and reason."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device, kind, reason, count, first_at, last_at FROM dropped "
                "ORDER BY device, kind, reason"
            ).fetchall()
        keys = ("device", "kind", "reason", "count", "first_at", "last_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def drop_totals(self) -> dict[str, int]:
        """Readings thinned and refused over the outbox's life: ``{"thinned", "refused"}``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT reason, sum(count) FROM dropped GROUP BY reason"
            ).fetchall()
        totals = {THINNED: 0, REFUSED: 0}
        totals.update({str(r): int(n) for r, n in rows})
        return totals

    def record_device_state(
        self, last_seen: Mapping[str, datetime], battery: Mapping[str, int]
    ) -> None:
        """Persist what the running gateway knows of its devices (for ``gateway devices``)."""
        devices = set(last_seen) | set(battery)
        if not devices:
            return
        rows = [
            (
                d,
                last_seen[d].isoformat() if d in last_seen else None,
                battery.get(d),
            )
            for d in sorted(devices)
        ]
        with self._lock:
            self._db.executemany(
                "INSERT INTO device_state (device, last_seen, battery) VALUES (?, ?, ?) "
                "ON CONFLICT (device) DO UPDATE SET "
                "last_seen = coalesce(excluded.last_seen, last_seen), "
                "battery = coalesce(excluded.battery, battery)",
                rows,
            )

    def device_states(self) -> dict[str, DeviceState]:
        """Per device: last seen, battery, readings in, queued and dropped."""
        with self._lock:
            state = self._db.execute(
                "SELECT device, last_seen, battery, readings_in FROM device_state"
            ).fetchall()
            queued = dict(
                self._db.execute("SELECT device, count(*) FROM outbox GROUP BY device").fetchall()
            )
            dropped = dict(
                self._db.execute(
                    "SELECT device, sum(count) FROM dropped GROUP BY device"
                ).fetchall()
            )
        out: dict[str, DeviceState] = {}
        for device, seen, battery, readings_in in state:
            out[device] = DeviceState(
                device,
                seen,
                battery,
                int(readings_in),
                int(queued.get(device, 0)),
                int(dropped.get(device, 0)),
            )
        for device in set(queued) | set(dropped):
            if device not in out:
                out[device] = DeviceState(
                    device,
                    queued=int(queued.get(device, 0)),
                    dropped=int(dropped.get(device, 0)),
                )
        return out

    def last_sequence(self, device: str) -> int | None:
        """The highest RACP record sequence number queued from ``device``, None if none."""
        with self._lock:
            row = self._db.execute(
                "SELECT last FROM record_sequence WHERE device=?", (device,)
            ).fetchone()
        return int(row[0]) if row else None

    def set_last_sequence(self, device: str, sequence: int) -> None:
        """Keep ``sequence`` as ``device``'s last record sequence number if it is higher."""
        with self._lock:
            self._db.execute(
                "INSERT INTO record_sequence (device, last) VALUES (?, ?) "
                "ON CONFLICT (device) DO UPDATE SET last = max(last, excluded.last)",
                (device, sequence),
            )
