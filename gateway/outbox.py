"""The durable outbox: every Observation is on disk before anything else happens to it.

SQLite in WAL mode with ``synchronous=FULL``: a committed ``put`` survives ``kill -9`` and
power loss. Entries leave only through :meth:`Outbox.confirm`, called when the backend has
acknowledged the bundle that carried them. Identifiers are unique, so a reading that a
device sends twice is queued once. Order: oldest first (which keeps each device's order).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import OutboxError

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
"""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One queued Observation."""

    seq: int
    identifier: str
    device: str
    body: bytes


class Outbox:
    """Durable FIFO of FHIR Observations awaiting the backend's acknowledgement."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database (committed entries stay on disk)."""
        with self._lock:
            self._db.close()

    def put(self, observations: Iterable[Mapping[str, Any]]) -> int:
        """Queue Observations in one durable transaction; return how many were new."""
        rows = []
        now = datetime.now(UTC).isoformat()
        for obs in observations:
            ident = obs["identifier"][0]["value"]
            device = obs["device"]["reference"].removeprefix("Device/")
            rows.append((ident, device, orjson.dumps(obs), now))
        if not rows:
            return 0
        with self._lock:
            before = self._db.total_changes
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR IGNORE INTO outbox (identifier, device, body, enqueued_at) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise OutboxError(f"outbox write failed: {exc}") from exc
            return self._db.total_changes - before

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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            removed = self._db.executemany(
                "DELETE FROM outbox WHERE seq=?", [(s,) for s in seqs]
            ).rowcount
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('sent', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                (removed,),
            )
            self._db.execute("COMMIT")
            return removed

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

    def pending(self) -> int:
        """How many entries await acknowledgement."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def sent(self) -> int:
        """How many entries were confirmed by the backend over the outbox's life."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name='sent'").fetchone()
            return int(row[0]) if row else 0

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
