"""Contract tests of the alert-lifecycle part of the store (wardwatch/store_alerts.py).

Every test runs on SQLite and on a fresh TimescaleDB database (the ``store`` fixture).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.errors import StoreError
from ingest.stores import open_store
from wardwatch.store import Alert, Store
from wardwatch.store_alerts import AlertEvent, AlertUpdate, DeliveryAttempt, Silence

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _alert(patient: str = "p-1", rule: str = "bp.hypertensive_crisis", **kw: object) -> Alert:
    fields: dict[str, object] = {
        "patient": patient,
        "rule": rule,
        "kind": "blood_pressure",
        "severity": "urgent",
        "opened_at": at(0),
        "message": "Hypertensive crisis",
        "observations": ("obs-1",),
        "updated_at": at(0),
    }
    fields.update(kw)
    return Alert(**fields)  # type: ignore[arg-type]


def _opened(store: Store, patient: str = "p-1", rule: str = "bp.hypertensive_crisis") -> Alert:
    alert, _ = store.open_alert(
        _alert(patient, rule), AlertEvent(0, at(0), "opened", "engine", "1 observation(s)")
    )
    return alert


def _raw_execute(store_url: str, sql: str) -> None:
    if store_url.startswith("sqlite:"):
        import sqlite3

        db = sqlite3.connect(store_url.removeprefix("sqlite:"))
        try:
            db.execute(sql)
            db.commit()
        finally:
            db.close()
    else:
        with psycopg.connect(store_url) as conn:
            conn.execute(sql.encode())


# -- alerts and their events --------------------------------------------------------------


def test_open_alert_stores_the_alert_and_its_event_together(store: Store) -> None:
    alert, event = store.open_alert(_alert(), AlertEvent(0, at(0), "opened", "engine", "1 obs"))
    assert alert.id is not None and event.id is not None
    assert event.alert_id == alert.id
    assert store.get_alert(alert.id) == alert
    assert store.list_alerts() == [alert]
    assert store.list_alert_events() == [event]
    assert store.get_alert(alert.id + 1) is None


def test_a_second_unresolved_alert_is_refused_and_leaves_no_event(store: Store) -> None:
    first = _opened(store)
    with pytest.raises(StoreError):
        store.open_alert(_alert(), AlertEvent(0, at(1), "opened", "engine"))
    assert store.list_alerts() == [first]
    assert [e.alert_id for e in store.list_alert_events()] == [first.id]
    # another rule or another patient is fine
    other = _opened(store, rule="bp.hypotension")
    assert other.id != first.id


def test_change_alert_applies_a_targeted_update_with_its_event(store: Store) -> None:
    alert = _opened(store)
    assert alert.id is not None
    updated = store.change_alert(
        alert.id,
        AlertUpdate(when=("open", "acknowledged"), add_observations=("obs-2", "obs-1", "obs-2")),
        AlertEvent(alert.id, at(5), "updated", "engine", "+1 observation(s)"),
    )
    # appended once, in order; every field not named is kept as stored
    assert updated == replace(alert, observations=("obs-1", "obs-2"))
    assert store.get_alert(alert.id) == updated
    acked = store.change_alert(
        alert.id,
        AlertUpdate(
            when=("open",),
            status="acknowledged",
            acknowledged_at=at(6),
            acknowledged_by="nurse-ana",
            updated_at=at(60),
        ),
        AlertEvent(alert.id, at(6), "acknowledged", "nurse-ana"),
    )
    assert acked == replace(
        alert,
        observations=("obs-1", "obs-2"),
        status="acknowledged",
        acknowledged_at=at(6),
        acknowledged_by="nurse-ana",
        updated_at=at(60),
    )
    events = store.list_alert_events(alert_id=alert.id)
    assert [(e.action, e.actor, e.at) for e in events] == [
        ("opened", "engine", at(0)),
        ("updated", "engine", at(5)),
        ("acknowledged", "nurse-ana", at(6)),
    ]


def test_change_alert_in_the_wrong_status_writes_nothing(store: Store) -> None:
    alert = _opened(store)
    assert alert.id is not None
    resolved = store.change_alert(
        alert.id,
        AlertUpdate(
            when=("open", "acknowledged"),
            status="resolved",
            resolved_at=at(9),
            resolved_by="nurse-ben",
        ),
        AlertEvent(alert.id, at(9), "resolved", "nurse-ben"),
    )
    assert resolved is not None and resolved.status == "resolved"
    # an acknowledgement from a copy read before the resolution: refused, nothing written
    late = store.change_alert(
        alert.id,
        AlertUpdate(
            when=("open",),
            status="acknowledged",
            acknowledged_at=at(10),
            acknowledged_by="nurse-ana",
        ),
        AlertEvent(alert.id, at(10), "acknowledged", "nurse-ana"),
    )
    assert late is None
    assert store.get_alert(alert.id) == resolved
    assert [e.action for e in store.list_alert_events(alert_id=alert.id)] == ["opened", "resolved"]
    unknown = AlertEvent(alert.id + 7, at(10), "updated", "engine")
    assert store.change_alert(alert.id + 7, AlertUpdate(when=("open",)), unknown) is None
    # the resolved alert no longer blocks a new one of the same patient and rule
    assert _opened(store).id != alert.id


def test_concurrent_changes_from_two_processes_are_both_kept(store: Store, store_url: str) -> None:
    """The engine appends readings while the API (its own connection) acknowledges."""
    alert = _opened(store)
    assert alert.id is not None
    alert_id = alert.id
    errors: list[BaseException] = []
    api = open_store(store_url)

    def append(n: int) -> None:
        try:
            for i in range(n):
                store.change_alert(
                    alert_id,
                    AlertUpdate(when=("open", "acknowledged"), add_observations=(f"obs-x{i}",)),
                    AlertEvent(alert_id, at(i), "updated", "engine"),
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=append, args=(30,))
    worker.start()
    try:
        acked = api.change_alert(
            alert_id,
            AlertUpdate(
                when=("open",),
                status="acknowledged",
                acknowledged_at=at(3),
                acknowledged_by="nurse-ana",
            ),
            AlertEvent(alert_id, at(3), "acknowledged", "nurse-ana"),
        )
    finally:
        worker.join()
        api.close()
    assert acked is not None
    assert errors == []
    final = store.get_alert(alert_id)
    assert final is not None
    assert (final.status, final.acknowledged_by) == ("acknowledged", "nurse-ana")
    assert final.observations == ("obs-1", *(f"obs-x{i}" for i in range(30)))


def test_alert_events_feed_filters_and_pages(store: Store) -> None:
    a, b = _opened(store, "p-1"), _opened(store, "p-2")
    assert a.id is not None and b.id is not None
    recorded = [
        store.record_alert_event(AlertEvent(a.id, at(1), "notified", "dispatcher", "step 0")),
        store.record_alert_event(AlertEvent(b.id, at(2), "delivery-failed", "dispatcher")),
        store.record_alert_event(AlertEvent(a.id, at(3), "escalated", "dispatcher", "step 1")),
    ]
    everything = store.list_alert_events()
    assert everything[2:] == recorded
    assert [e.id for e in everything] == sorted(e.id for e in everything if e.id is not None)
    assert [e.action for e in store.list_alert_events(alert_id=a.id)] == [
        "opened",
        "notified",
        "escalated",
    ]
    first = recorded[0].id
    assert store.list_alert_events(after_id=first) == recorded[1:]
    assert store.list_alert_events(after_id=first, limit=1) == recorded[1:2]
    assert store.list_alert_events(alert_id=b.id, after_id=first) == recorded[1:2]
    assert store.list_alert_events(after_id=recorded[-1].id) == []


def test_events_need_a_known_alert_and_a_known_action(store: Store, store_url: str) -> None:
    alert = _opened(store)
    assert alert.id is not None
    with pytest.raises(StoreError):
        store.record_alert_event(AlertEvent(alert.id + 99, at(1), "notified", "dispatcher"))
    with pytest.raises(StoreError):
        store.record_alert_event(AlertEvent(alert.id, at(1), "exploded", "x"))  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        store.record_alert_event(AlertEvent(alert.id, at(1), "notified", ""))
    assert len(store.list_alert_events()) == 1


def test_alert_events_are_append_only_in_the_database(store: Store, store_url: str) -> None:
    _opened(store)
    for sql in ("UPDATE alert_events SET actor = 'someone else'", "DELETE FROM alert_events"):
        with pytest.raises(Exception, match="append-only"):
            _raw_execute(store_url, sql)
    assert [e.actor for e in store.list_alert_events()] == ["engine"]


# -- silences and snoozes -------------------------------------------------------------------


def test_silences_snoozes_and_their_expiry(store: Store) -> None:
    alert = _opened(store)
    assert alert.id is not None
    ward = store.add_silence(
        Silence("charge-nurse", at(0), at(0), at(60), "ward round", care_team="ward-1")
    )
    snooze = store.add_silence(
        Silence(
            "nurse-ana",
            at(5),
            at(5),
            at(35),
            "called the patient",
            patient="p-1",
            rule=alert.rule,
            alert_id=alert.id,
        ),
        event=AlertEvent(alert.id, at(5), "snoozed", "nurse-ana", "until 08:35Z"),
    )
    assert ward.id is not None and snooze.id is not None
    assert store.get_silence(snooze.id) == snooze
    assert store.get_silence(snooze.id + 10) is None
    assert store.list_silences() == [ward, snooze]
    assert store.list_silences(active_at=at(0)) == [ward]
    assert store.list_silences(active_at=at(5)) == [ward, snooze]  # starts_at inclusive
    assert store.list_silences(active_at=at(35)) == [ward]  # ends_at exclusive
    assert store.list_silences(active_at=at(60)) == []
    assert [e.action for e in store.list_alert_events(alert_id=alert.id)] == ["opened", "snoozed"]
    # ending early moves ends_at and records the event; ending again changes nothing
    ended = store.expire_silence(
        snooze.id, at(10), event=AlertEvent(alert.id, at(10), "unsnoozed", "nurse-ben")
    )
    assert ended == replace(snooze, ends_at=at(10))
    again = store.expire_silence(
        snooze.id, at(20), event=AlertEvent(alert.id, at(20), "unsnoozed", "nurse-cy")
    )
    assert again == ended
    assert [e.actor for e in store.list_alert_events(alert_id=alert.id)] == [
        "engine",
        "nurse-ana",
        "nurse-ben",
    ]
    assert store.list_silences(active_at=at(12)) == [ward]
    # expiring before it starts leaves an empty window, never a negative one
    later = store.add_silence(Silence("nurse-ana", at(0), at(100), at(200), "night"))
    assert later.id is not None
    assert store.expire_silence(later.id, at(50)) == replace(later, ends_at=at(100))
    assert store.expire_silence(9999, at(50)) is None


def test_a_silence_must_end_after_it_starts(store: Store) -> None:
    with pytest.raises(ValueError, match="end after"):
        store.add_silence(Silence("nurse-ana", at(0), at(10), at(10), "empty"))
    assert store.list_silences() == []


# -- deliveries -----------------------------------------------------------------------------


def test_deliveries_by_alert(store: Store) -> None:
    a, b = _opened(store, "p-1"), _opened(store, "p-1", "spo2.low")
    assert a.id is not None and b.id is not None
    grouped = store.record_delivery(
        DeliveryAttempt(
            (a.id, b.id),
            "p-1",
            "ward-1",
            "notify",
            0,
            "primary-nurse",
            1,
            at(1),
            False,
            "failure",
            targets=2,
        )
    )
    retry = store.record_delivery(
        DeliveryAttempt(
            (a.id, b.id),
            "p-1",
            "ward-1",
            "notify",
            0,
            "primary-nurse",
            2,
            at(2),
            True,
            "sent",
            targets=2,
        )
    )
    escalation = store.record_delivery(
        DeliveryAttempt(
            (a.id,), "p-1", None, "escalate", 1, "charge-nurse", 1, at(12), True, "sent", targets=1
        )
    )
    assert grouped.id is not None and grouped.id < retry.id < escalation.id  # type: ignore[operator]
    assert store.list_deliveries() == [grouped, retry, escalation]
    assert store.list_deliveries(alert_id=a.id) == [grouped, retry, escalation]
    assert store.list_deliveries(alert_id=b.id) == [grouped, retry]
    assert store.list_deliveries(alert_id=b.id + 100) == []
    with pytest.raises(ValueError, match="at least one alert"):
        store.record_delivery(replace(retry, alert_ids=(), id=None))
