"""TimescaleDB side of :mod:`wardwatch.store_alerts` (mixed into
:class:`ingest.stores.timescale.TimescaleStore`).

A change to an alert reads the row ``FOR UPDATE`` and writes it and its event in the same
transaction, so two processes (the engine appending a reading, the API acknowledging)
never overwrite each other's change.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, LiteralString, TypeVar, cast

from ingest.stores._mixins import TimescaleMixin
from ingest.stores._rows import utc
from wardwatch.store_alerts import (
    AlertAction,
    AlertEvent,
    AlertUpdate,
    DeliveryAttempt,
    Silence,
    apply_update,
)

if TYPE_CHECKING:
    import psycopg

    from wardwatch.store import Alert

T = TypeVar("T")
Row = tuple[Any, ...]

_EVENT_COLUMNS: Final = "id, alert_id, at, action, actor, detail"
_SILENCE_COLUMNS: Final = (
    "id, created_by, created_at, starts_at, ends_at, comment, patient, rule, care_team, alert_id"
)
_DELIVERY_COLUMNS: Final = (
    "id, alert_ids, patient, care_team, purpose, step, target, attempt, at, delivered, "
    "result, targets"
)


def _event(row: Row) -> AlertEvent:
    eid, alert_id, at, action, actor, detail = row
    return AlertEvent(
        alert_id=int(alert_id),
        at=utc(at),
        action=cast(AlertAction, action),
        actor=actor,
        detail=detail,
        id=int(eid),
    )


def _silence(row: Row) -> Silence:
    sid, by, created, starts, ends, comment, patient, rule, team, alert_id = row
    return Silence(
        created_by=by,
        created_at=utc(created),
        starts_at=utc(starts),
        ends_at=utc(ends),
        comment=comment,
        patient=patient,
        rule=rule,
        care_team=team,
        alert_id=None if alert_id is None else int(alert_id),
        id=int(sid),
    )


def _delivery(row: Row) -> DeliveryAttempt:
    did, ids, patient, team, purpose, step, target, attempt, at, ok, result, targets = row
    return DeliveryAttempt(
        alert_ids=tuple(int(i) for i in ids),
        patient=patient,
        care_team=team,
        purpose=cast(Literal["notify", "renotify", "escalate"], purpose),
        step=int(step),
        target=target,
        attempt=int(attempt),
        at=utc(at),
        delivered=bool(ok),
        result=result,
        targets=int(targets),
        id=int(did),
    )


def _returned_id(cur: psycopg.Cursor[Row]) -> int:
    row = cur.fetchone()
    assert row is not None  # INSERT ... RETURNING id
    return int(row[0])


def _insert_event(cur: psycopg.Cursor[Row], event: AlertEvent) -> AlertEvent:
    cur.execute(
        "INSERT INTO alert_events (alert_id, at, action, actor, detail) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (event.alert_id, utc(event.at), event.action, event.actor, event.detail),
    )
    return replace(event, id=_returned_id(cur))


class TimescaleAlertsMixin(TimescaleMixin):
    """Methods of :class:`wardwatch.store_alerts` on TimescaleDB (schema: migrations/)."""

    # -- alerts ------------------------------------------------------------------------------
    def get_alert(self, alert_id: int) -> Alert | None:
        """One alert by id."""
        from ingest.stores.timescale import _ALERT_COLUMNS, _alert

        rows = self._query(
            "get_alert", f"SELECT id, {_ALERT_COLUMNS} FROM alerts WHERE id=%s", (alert_id,)
        )
        return _alert(rows[0]) if rows else None

    def open_alert(self, alert: Alert, event: AlertEvent) -> tuple[Alert, AlertEvent]:
        """Insert a new alert and its ``opened`` event in one transaction (not retried if
        the connection was lost while committing: it may have been committed)."""
        from ingest.stores.timescale import _ALERT_COLUMNS, _alert_args

        def run(cur: psycopg.Cursor[Row]) -> tuple[Alert, AlertEvent]:
            cur.execute(
                f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                _alert_args(alert),
            )
            alert_id = _returned_id(cur)
            stored = _insert_event(cur, replace(event, alert_id=alert_id))
            return replace(alert, id=alert_id), stored

        return self._run("open_alert", run, idempotent=False)

    def change_alert(self, alert_id: int, change: AlertUpdate, event: AlertEvent) -> Alert | None:
        """Apply ``change`` and append ``event`` if the alert's status is in ``change.when``
        (the row is locked ``FOR UPDATE`` between the read and the write)."""
        from ingest.stores.timescale import _ALERT_COLUMNS, _ALERT_SETS, _alert, _alert_args

        def run(cur: psycopg.Cursor[Row]) -> Alert | None:
            cur.execute(
                f"SELECT id, {_ALERT_COLUMNS} FROM alerts WHERE id=%s FOR UPDATE", (alert_id,)
            )
            row = cur.fetchone()
            if row is None:
                return None
            current = _alert(row)
            if current.status not in change.when:
                return None
            new = apply_update(current, change)
            cur.execute(
                f"UPDATE alerts SET {_ALERT_SETS} WHERE id=%s", (*_alert_args(new), alert_id)
            )
            _insert_event(cur, replace(event, alert_id=alert_id))
            return new

        return self._run("change_alert", run, idempotent=False)

    # -- events ------------------------------------------------------------------------------
    def record_alert_event(self, event: AlertEvent) -> AlertEvent:
        """Append an alert event; return it with its id (not retried if the commit was lost)."""
        return self._run(
            "record_alert_event", lambda cur: _insert_event(cur, event), idempotent=False
        )

    def list_alert_events(
        self, *, alert_id: int | None = None, after_id: int | None = None, limit: int | None = None
    ) -> list[AlertEvent]:
        """Alert events in id order, optionally of one alert or after an id."""
        sql: LiteralString = f"SELECT {_EVENT_COLUMNS} FROM alert_events WHERE true"
        args: list[Any] = []
        if alert_id is not None:
            sql += " AND alert_id=%s"
            args.append(alert_id)
        if after_id is not None:
            sql += " AND id>%s"
            args.append(after_id)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(max(limit, 0))
        return [_event(r) for r in self._query("list_alert_events", sql, args)]

    # -- silences and snoozes ----------------------------------------------------------------
    def add_silence(self, silence: Silence, *, event: AlertEvent | None = None) -> Silence:
        """Store a silence or snooze (and ``event``); return it with its id."""
        if silence.ends_at <= silence.starts_at:
            raise ValueError("a silence must end after it starts")

        def run(cur: psycopg.Cursor[Row]) -> int:
            cur.execute(
                "INSERT INTO silences (created_by, created_at, starts_at, ends_at, comment, "
                "patient, rule, care_team, alert_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    silence.created_by,
                    utc(silence.created_at),
                    utc(silence.starts_at),
                    utc(silence.ends_at),
                    silence.comment,
                    silence.patient,
                    silence.rule,
                    silence.care_team,
                    silence.alert_id,
                ),
            )
            silence_id = _returned_id(cur)
            if event is not None:
                _insert_event(cur, event)
            return silence_id

        return replace(silence, id=self._run("add_silence", run, idempotent=False))

    def get_silence(self, silence_id: int) -> Silence | None:
        """One silence or snooze by id."""
        rows = self._query(
            "get_silence", f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id=%s", (silence_id,)
        )
        return _silence(rows[0]) if rows else None

    def expire_silence(
        self, silence_id: int, at: datetime, *, event: AlertEvent | None = None
    ) -> Silence | None:
        """End a silence at ``at`` if it ends later (and append ``event`` if it did)."""

        def run(cur: psycopg.Cursor[Row]) -> Silence | None:
            cur.execute(
                "UPDATE silences SET ends_at=greatest(starts_at, %s) WHERE id=%s AND ends_at>%s",
                (utc(at), silence_id, utc(at)),
            )
            if cur.rowcount and event is not None:
                _insert_event(cur, event)
            cur.execute(f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id=%s", (silence_id,))
            row = cur.fetchone()
            return None if row is None else _silence(row)

        return self._run("expire_silence", run, idempotent=event is None)

    def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """Silences (all, or those active at ``active_at``), oldest first."""
        sql: LiteralString = f"SELECT {_SILENCE_COLUMNS} FROM silences"
        args: list[Any] = []
        if active_at is not None:
            sql += " WHERE ends_at>%s AND starts_at<=%s"
            args += [utc(active_at), utc(active_at)]
        sql += " ORDER BY created_at, id"
        return [_silence(r) for r in self._query("list_silences", sql, args)]

    # -- deliveries --------------------------------------------------------------------------
    def record_delivery(self, attempt: DeliveryAttempt) -> DeliveryAttempt:
        """Append a delivery attempt; return it with its id (not retried if the commit was
        lost)."""
        if not attempt.alert_ids:
            raise ValueError("a delivery attempt covers at least one alert")

        def run(cur: psycopg.Cursor[Row]) -> int:
            cur.execute(
                "INSERT INTO deliveries (alert_ids, patient, care_team, purpose, step, target, "
                "attempt, at, delivered, result, targets) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    list(attempt.alert_ids),
                    attempt.patient,
                    attempt.care_team,
                    attempt.purpose,
                    attempt.step,
                    attempt.target,
                    attempt.attempt,
                    utc(attempt.at),
                    attempt.delivered,
                    attempt.result,
                    attempt.targets,
                ),
            )
            return _returned_id(cur)

        return replace(attempt, id=self._run("record_delivery", run, idempotent=False))

    def list_deliveries(self, *, alert_id: int | None = None) -> list[DeliveryAttempt]:
        """Delivery attempts in id order, optionally those covering one alert."""
        if alert_id is None:
            rows = self._query(
                "list_deliveries", f"SELECT {_DELIVERY_COLUMNS} FROM deliveries ORDER BY id"
            )
        else:
            rows = self._query(
                "list_deliveries",
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries "
                "WHERE alert_ids @> ARRAY[%s]::bigint[] ORDER BY id",
                (alert_id,),
            )
        return [_delivery(r) for r in rows]
