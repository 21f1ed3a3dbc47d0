"""SQLite side of :mod:`wardwatch.store_alerts` (a SqliteStore mixin).

Multi-statement changes (an alert and its event) run in one ``BEGIN IMMEDIATE``
transaction: SQLite's write lock is taken before the row is read, so another process
cannot change the alert between the read and the write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from ingest.errors import StoreError
from ingest.stores._mixins import SqliteMixin
from ingest.stores._rows import dumps, from_iso, iso, loads
from wardwatch.store_alerts import (
    AlertAction,
    AlertEvent,
    AlertUpdate,
    DeliveryAttempt,
    Silence,
    apply_update,
)

if TYPE_CHECKING:
    from wardwatch.store import Alert

T = TypeVar("T")

_EVENT_COLUMNS = "id, alert_id, at, action, actor, detail"
_SILENCE_COLUMNS = (
    "id, created_by, created_at, starts_at, ends_at, comment, patient, rule, care_team, alert_id"
)
_DELIVERY_COLUMNS = (
    "id, alert_ids, patient, care_team, purpose, step, target, attempt, at, delivered, "
    "result, targets"
)


def _event(row: tuple[Any, ...]) -> AlertEvent:
    eid, alert_id, at, action, actor, detail = row
    return AlertEvent(
        alert_id=int(alert_id),
        at=from_iso(at),
        action=cast(AlertAction, action),
        actor=actor,
        detail=detail,
        id=int(eid),
    )


def _silence(row: tuple[Any, ...]) -> Silence:
    sid, by, created, starts, ends, comment, patient, rule, team, alert_id = row
    return Silence(
        created_by=by,
        created_at=from_iso(created),
        starts_at=from_iso(starts),
        ends_at=from_iso(ends),
        comment=comment,
        patient=patient,
        rule=rule,
        care_team=team,
        alert_id=None if alert_id is None else int(alert_id),
        id=int(sid),
    )


def _delivery(row: tuple[Any, ...]) -> DeliveryAttempt:
    did, ids, patient, team, purpose, step, target, attempt, at, ok, result, targets = row
    return DeliveryAttempt(
        alert_ids=tuple(int(i) for i in cast(list[int], loads(ids))),
        patient=patient,
        care_team=team,
        purpose=cast(Literal["notify", "renotify", "escalate"], purpose),
        step=int(step),
        target=target,
        attempt=int(attempt),
        at=from_iso(at),
        delivered=bool(ok),
        result=result,
        targets=int(targets),
        id=int(did),
    )


def _insert_event(db: sqlite3.Connection, event: AlertEvent) -> AlertEvent:
    cur = db.execute(
        "INSERT INTO alert_events (alert_id, at, action, actor, detail) VALUES (?, ?, ?, ?, ?)",
        (event.alert_id, iso(event.at), event.action, event.actor, event.detail),
    )
    return replace(event, id=int(cur.lastrowid or 0))


class SqliteAlertsMixin(SqliteMixin):
    """Methods of :class:`wardwatch.store_alerts` on SQLite (schema: migrations/sqlite)."""

    if TYPE_CHECKING:  # the alert row helpers of SqliteStore
        _ALERT_COLUMNS: str

        @staticmethod
        def _alert(row: tuple[Any, ...]) -> Alert: ...

        @staticmethod
        def _alert_args(a: Alert) -> tuple[Any, ...]: ...

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (SQLite's write lock taken at BEGIN), committed on success."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except sqlite3.IntegrityError as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(str(exc)) from exc
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _in_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._write() as db:
            return fn(db)

    # -- alerts ------------------------------------------------------------------------------
    def get_alert(self, alert_id: int) -> Alert | None:
        """One alert by id."""
        rows = self._query(f"SELECT id, {self._ALERT_COLUMNS} FROM alerts WHERE id=?", (alert_id,))
        return self._alert(rows[0]) if rows else None

    def open_alert(self, alert: Alert, event: AlertEvent) -> tuple[Alert, AlertEvent]:
        """Insert a new alert and its ``opened`` event in one transaction."""

        def run(db: sqlite3.Connection) -> tuple[Alert, AlertEvent]:
            cur = db.execute(
                f"INSERT INTO alerts ({self._ALERT_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._alert_args(alert),
            )
            alert_id = int(cur.lastrowid or 0)
            stored = _insert_event(db, replace(event, alert_id=alert_id))
            return replace(alert, id=alert_id), stored

        return self._in_write(run)

    def change_alert(self, alert_id: int, change: AlertUpdate, event: AlertEvent) -> Alert | None:
        """Apply ``change`` and append ``event`` if the alert's status is in ``change.when``."""

        def run(db: sqlite3.Connection) -> Alert | None:
            row = db.execute(
                f"SELECT id, {self._ALERT_COLUMNS} FROM alerts WHERE id=?", (alert_id,)
            ).fetchone()
            if row is None:
                return None
            current = self._alert(row)
            if current.status not in change.when:
                return None
            new = apply_update(current, change)
            sets = ", ".join(f"{c.strip()}=?" for c in self._ALERT_COLUMNS.split(","))
            db.execute(f"UPDATE alerts SET {sets} WHERE id=?", (*self._alert_args(new), alert_id))
            _insert_event(db, replace(event, alert_id=alert_id))
            return new

        return self._in_write(run)

    # -- events ------------------------------------------------------------------------------
    def record_alert_event(self, event: AlertEvent) -> AlertEvent:
        """Append an alert event; return it with its id."""
        return self._in_write(lambda db: _insert_event(db, event))

    def list_alert_events(
        self, *, alert_id: int | None = None, after_id: int | None = None, limit: int | None = None
    ) -> list[AlertEvent]:
        """Alert events in id order, optionally of one alert or after an id."""
        sql = f"SELECT {_EVENT_COLUMNS} FROM alert_events WHERE 1=1"
        args: list[Any] = []
        if alert_id is not None:
            sql += " AND alert_id=?"
            args.append(alert_id)
        if after_id is not None:
            sql += " AND id>?"
            args.append(after_id)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(limit, 0))
        return [_event(r) for r in self._query(sql, args)]

    # -- silences and snoozes ----------------------------------------------------------------
    def add_silence(self, silence: Silence, *, event: AlertEvent | None = None) -> Silence:
        """Store a silence or snooze (and ``event``); return it with its id."""
        if silence.ends_at <= silence.starts_at:
            raise ValueError("a silence must end after it starts")

        def run(db: sqlite3.Connection) -> Silence:
            cur = db.execute(
                "INSERT INTO silences (created_by, created_at, starts_at, ends_at, comment, "
                "patient, rule, care_team, alert_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    silence.created_by,
                    iso(silence.created_at),
                    iso(silence.starts_at),
                    iso(silence.ends_at),
                    silence.comment,
                    silence.patient,
                    silence.rule,
                    silence.care_team,
                    silence.alert_id,
                ),
            )
            if event is not None:
                _insert_event(db, event)
            return replace(silence, id=int(cur.lastrowid or 0))

        return self._in_write(run)

    def get_silence(self, silence_id: int) -> Silence | None:
        """One silence or snooze by id."""
        rows = self._query(f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id=?", (silence_id,))
        return _silence(rows[0]) if rows else None

    def expire_silence(
        self, silence_id: int, at: datetime, *, event: AlertEvent | None = None
    ) -> Silence | None:
        """End a silence at ``at`` if it ends later (and append ``event`` if it did)."""

        def run(db: sqlite3.Connection) -> Silence | None:
            cur = db.execute(
                "UPDATE silences SET ends_at=max(starts_at, ?) WHERE id=? AND ends_at>?",
                (iso(at), silence_id, iso(at)),
            )
            if cur.rowcount and event is not None:
                _insert_event(db, event)
            row = db.execute(
                f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id=?", (silence_id,)
            ).fetchone()
            return None if row is None else _silence(row)

        return self._in_write(run)

    def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """Silences (all, or those active at ``active_at``), oldest first."""
        sql = f"SELECT {_SILENCE_COLUMNS} FROM silences"
        args: list[Any] = []
        if active_at is not None:
            sql += " WHERE ends_at>? AND starts_at<=?"
            args += [iso(active_at), iso(active_at)]
        sql += " ORDER BY created_at, id"
        return [_silence(r) for r in self._query(sql, args)]

    # -- deliveries --------------------------------------------------------------------------
    def record_delivery(self, attempt: DeliveryAttempt) -> DeliveryAttempt:
        """Append a delivery attempt; return it with its id."""
        if not attempt.alert_ids:
            raise ValueError("a delivery attempt covers at least one alert")

        def run(db: sqlite3.Connection) -> DeliveryAttempt:
            cur = db.execute(
                "INSERT INTO deliveries (alert_ids, patient, care_team, purpose, step, target, "
                "attempt, at, delivered, result, targets) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dumps(list(attempt.alert_ids)),
                    attempt.patient,
                    attempt.care_team,
                    attempt.purpose,
                    attempt.step,
                    attempt.target,
                    attempt.attempt,
                    iso(attempt.at),
                    int(attempt.delivered),
                    attempt.result,
                    attempt.targets,
                ),
            )
            delivery_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT OR IGNORE INTO delivery_alerts (alert_id, delivery_id) VALUES (?, ?)",
                [(alert_id, delivery_id) for alert_id in attempt.alert_ids],
            )
            return replace(attempt, id=delivery_id)

        return self._in_write(run)

    def list_deliveries(self, *, alert_id: int | None = None) -> list[DeliveryAttempt]:
        """Delivery attempts in id order, optionally those covering one alert."""
        if alert_id is None:
            rows = self._query(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries ORDER BY id")
        else:
            rows = self._query(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id IN "
                "(SELECT delivery_id FROM delivery_alerts WHERE alert_id=?) ORDER BY id",
                (alert_id,),
            )
        return [_delivery(r) for r in rows]
