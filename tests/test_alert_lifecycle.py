"""The alert lifecycle, scenario by scenario, with a fake clock, on both stores.

Each transition (opened, updated, acknowledged, auto-cleared, resolved, snoozed,
unsnoozed; a clock detector's alert opened and cleared by ``tick``) is checked in the
store (the alert and its events: who and when), in what the sinks were handed, and in
``wardwatch alerts list --json``.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from alerting.changes import AlertChange, TimedFinding
from alerting.engine import AUTO_CLEAR, ENGINE, AlertEngine
from alerting.errors import AlertTransitionError, SilenceNotFoundError
from alerting.report import alerts_as_json
from alerting.rules import ThresholdDetector
from ingest.stores import open_store
from wardwatch.fhir import reading_id
from wardwatch.store import Alert, CareTeam, Patient, Severity, Store, StoredObservation
from wardwatch.store_alerts import Silence
from wardwatch.store_careplans import CarePlan

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
WALL = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
"""The fake wall clock (``updated_at`` only): far from event time, so a mix-up shows."""
PATIENT = "p-001"
CRISIS = "bp.hypertensive_crisis"


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def bp(
    systolic: float, diastolic: float, at: datetime, patient: str = PATIENT
) -> StoredObservation:
    return StoredObservation(
        identifier=reading_id(f"cuff-{patient}", at, "blood_pressure"),
        patient=patient,
        device=f"cuff-{patient}",
        kind="blood_pressure",
        at=at,
        value=None,
        unit=None,
        components={"systolic": systolic, "diastolic": diastolic},
        resource=b'{"resourceType": "Observation"}',
        received_at=at + timedelta(seconds=3),
    )


@dataclass
class FakeClock:
    now: datetime = WALL

    def __call__(self) -> datetime:
        return self.now


@dataclass
class RecordingSink:
    """A change sink that also checks each change's event is committed when it is handed
    over (so another connection, the API's, would see it)."""

    store: Store
    changes: list[AlertChange] = field(default_factory=list)
    uncommitted: list[AlertChange] = field(default_factory=list)

    def __call__(self, changes: Sequence[AlertChange]) -> None:
        for change in changes:
            assert change.alert.id is not None
            stored = self.store.list_alert_events(alert_id=change.alert.id)
            if (change.action, change.actor, change.at) not in [
                (e.action, e.actor, e.at) for e in stored
            ]:
                self.uncommitted.append(change)
            self.changes.append(change)

    def seen(self) -> list[tuple[int | None, str, str]]:
        return [(c.alert.id, c.action, c.actor) for c in self.changes]


@pytest.fixture
def ward(store: Store) -> Store:
    store.upsert_care_team(CareTeam("ward-1", "Ward 1"))
    store.upsert_patient(Patient(PATIENT, "Synthetic Person", "ward-1"))
    return store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink(ward: Store) -> RecordingSink:
    return RecordingSink(ward)


@pytest.fixture
def engine(ward: Store, clock: FakeClock, sink: RecordingSink) -> AlertEngine:
    # The blood-pressure table alone: one crisis reading is one alert.
    return AlertEngine(ward, clock=clock, detectors=[ThresholdDetector()], sinks=[sink])


def feed(engine: AlertEngine, *rows: StoredObservation) -> list[Alert]:
    """Store the readings (as ingest would), then hand them to the engine."""
    engine.store.write_observations(rows)
    return engine.process(rows)


def events(store: Store, alert_id: int | None) -> list[tuple[str, str, datetime]]:
    return [(e.action, e.actor, e.at) for e in store.list_alert_events(alert_id=alert_id)]


def alerts_list(store_url: str) -> list[dict[str, Any]]:
    """``wardwatch alerts list --store STORE --json``, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "wardwatch.cli", "alerts", "list", "--store", store_url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return cast(list[dict[str, Any]], orjson.loads(result.stdout))


# -- readings: open, update, acknowledge, auto-clear -----------------------------------------


def test_open_update_acknowledge_auto_clear(
    engine: AlertEngine, ward: Store, clock: FakeClock, sink: RecordingSink, store_url: str
) -> None:
    first, second, third = (bp(185 + n, 100, minutes(10 * n)) for n in range(3))
    [opened] = feed(engine, first)
    assert opened.id is not None
    assert (opened.status, opened.opened_at, opened.observations) == (
        "open",
        first.at,
        (first.identifier,),
    )
    # repeats update the alert: no duplicate, one event per change
    clock.now = WALL + timedelta(minutes=1)
    [updated] = feed(engine, second, third)
    assert updated.id == opened.id
    assert updated.observations == (first.identifier, second.identifier, third.identifier)
    assert updated.updated_at == WALL + timedelta(minutes=1)
    assert feed(engine, second) == []  # the same reading again: nothing
    assert len(ward.list_alerts()) == 1
    # a nurse acknowledges; a later firing reading keeps it acknowledged
    acked = engine.acknowledge(opened.id, "nurse-ana", minutes(25))
    assert (acked.status, acked.acknowledged_by, acked.acknowledged_at) == (
        "acknowledged",
        "nurse-ana",
        minutes(25),
    )
    assert engine.acknowledge(opened.id, "nurse-ben", minutes(26)) == acked  # first one stands
    [still] = feed(engine, bp(190, 100, minutes(30)))
    assert (still.status, still.acknowledged_by, len(still.observations)) == (
        "acknowledged",
        "nurse-ana",
        4,
    )
    # in the hysteresis band: nothing; past it: auto-cleared at the reading's time
    assert feed(engine, bp(175, 95, minutes(40))) == []
    recovered = bp(150, 90, minutes(50))
    [cleared] = feed(engine, recovered)
    assert (cleared.status, cleared.resolved_by, cleared.resolved_at) == (
        "resolved",
        AUTO_CLEAR,
        recovered.at,
    )
    assert cleared.acknowledged_by == "nurse-ana"
    assert events(ward, opened.id) == [
        ("opened", ENGINE, first.at),
        ("updated", ENGINE, second.at),
        ("updated", ENGINE, third.at),
        ("acknowledged", "nurse-ana", minutes(25)),
        ("updated", ENGINE, minutes(30)),
        ("auto-cleared", AUTO_CLEAR, recovered.at),
    ]
    # the sink got each committed change, in order, with who and when
    assert sink.uncommitted == []
    assert sink.seen() == [
        (opened.id, "opened", ENGINE),
        (opened.id, "updated", ENGINE),
        (opened.id, "updated", ENGINE),
        (opened.id, "acknowledged", "nurse-ana"),
        (opened.id, "updated", ENGINE),
        (opened.id, "auto-cleared", AUTO_CLEAR),
    ]
    assert sink.changes[-1].alert == cleared and sink.changes[-1].at == recovered.at
    # shown as auto-cleared by the CLI, with every contract field
    [listed] = alerts_list(store_url)
    assert listed == {
        "id": opened.id,
        "patient": PATIENT,
        "rule": CRISIS,
        "kind": "blood_pressure",
        "severity": "urgent",
        "status": "resolved",
        "opened_at": "2026-03-02T08:00:00Z",
        "acknowledged_at": "2026-03-02T08:25:00Z",
        "acknowledged_by": "nurse-ana",
        "resolved_at": "2026-03-02T08:50:00Z",
        "resolved_by": AUTO_CLEAR,
        "auto_cleared": True,
        "observations": list(still.observations),
        "message": opened.message,
    }


def test_resolved_by_a_person_then_a_new_crisis_opens_a_new_alert(
    engine: AlertEngine, ward: Store, sink: RecordingSink
) -> None:
    [alert] = feed(engine, bp(186, 100, minutes(0)))
    assert alert.id is not None
    resolved = engine.resolve(alert.id, "nurse-ben", minutes(5))
    assert (resolved.status, resolved.resolved_by, resolved.resolved_at) == (
        "resolved",
        "nurse-ben",
        minutes(5),
    )
    assert engine.resolve(alert.id, "nurse-cy", minutes(6)) == resolved  # first one stands
    with pytest.raises(AlertTransitionError, match="resolved"):
        engine.acknowledge(alert.id, "nurse-cy", minutes(6))
    # a normal reading changes nothing; the next crisis opens a new alert
    assert feed(engine, bp(150, 90, minutes(10))) == []
    [again] = feed(engine, bp(188, 100, minutes(20)))
    assert again.id != alert.id and again.status == "open"
    assert events(ward, alert.id) == [
        ("opened", ENGINE, minutes(0)),
        ("resolved", "nurse-ben", minutes(5)),
    ]
    assert [(c.action, c.actor) for c in sink.changes] == [
        ("opened", ENGINE),
        ("resolved", "nurse-ben"),
        ("opened", ENGINE),
    ]
    report = {a["id"]: a for a in alerts_as_json(ward.list_alerts())}
    assert (report[alert.id]["resolved_by"], report[alert.id]["auto_cleared"]) == (
        "nurse-ben",
        False,
    )
    assert report[again.id]["status"] == "open" and report[again.id]["resolved_at"] is None


def test_person_actions_are_checked(engine: AlertEngine) -> None:
    [alert] = feed(engine, bp(186, 100, minutes(0)))
    assert alert.id is not None
    for reserved in (AUTO_CLEAR, ENGINE, "dispatcher"):
        with pytest.raises(AlertTransitionError, match="reserved"):
            engine.resolve(alert.id, reserved, minutes(1))
    with pytest.raises(AlertTransitionError, match="missing"):
        engine.snooze(alert.id, " ", minutes(1), minutes(30))
    with pytest.raises(AlertTransitionError, match="time zone"):
        engine.snooze(alert.id, "nurse-ana", minutes(1), datetime(2026, 3, 2, 9, 0))


# -- snooze -----------------------------------------------------------------------------------


def test_snooze_with_expiry_and_author_then_unsnooze(
    engine: AlertEngine, ward: Store, sink: RecordingSink
) -> None:
    [alert] = feed(engine, bp(186, 100, minutes(0)))
    assert alert.id is not None
    with pytest.raises(AlertTransitionError, match="end before it starts"):
        engine.snooze(alert.id, "nurse-ana", minutes(5), minutes(5))
    snooze = engine.snooze(alert.id, "nurse-ana", minutes(5), minutes(35), "called the patient")
    assert snooze.id is not None
    assert snooze == Silence(
        created_by="nurse-ana",
        created_at=minutes(5),
        starts_at=minutes(5),
        ends_at=minutes(35),
        comment="called the patient",
        patient=PATIENT,
        rule=CRISIS,
        alert_id=alert.id,
        id=snooze.id,
    )
    assert ward.list_silences(active_at=minutes(20)) == [snooze]
    assert ward.list_silences(active_at=minutes(35)) == []  # it expires by itself
    # the alert itself is unchanged by a snooze (still open, still updated by readings)
    assert ward.get_alert(alert.id) == alert
    # ended early by another nurse
    ended = engine.unsnooze(snooze.id, "nurse-ben", minutes(15))
    assert ended.ends_at == minutes(15)
    assert ward.list_silences(active_at=minutes(20)) == []
    assert engine.unsnooze(snooze.id, "nurse-cy", minutes(16)) == ended  # over: nothing
    with pytest.raises(SilenceNotFoundError):
        engine.unsnooze(snooze.id + 50, "nurse-cy", minutes(16))
    ward_silence = ward.add_silence(
        Silence("charge-nurse", minutes(0), minutes(0), minutes(60), "ward", care_team="ward-1")
    )
    assert ward_silence.id is not None
    with pytest.raises(SilenceNotFoundError):  # a ward silence is not a snooze
        engine.unsnooze(ward_silence.id, "nurse-cy", minutes(16))
    [snoozed_event, unsnoozed_event] = ward.list_alert_events(alert_id=alert.id)[1:]
    assert (snoozed_event.action, snoozed_event.actor, snoozed_event.at) == (
        "snoozed",
        "nurse-ana",
        minutes(5),
    )
    assert snoozed_event.detail == "until 2026-03-02T08:35:00Z"
    assert (unsnoozed_event.action, unsnoozed_event.actor, unsnoozed_event.at) == (
        "unsnoozed",
        "nurse-ben",
        minutes(15),
    )
    assert [(c.action, c.actor, c.at) for c in sink.changes[1:]] == [
        ("snoozed", "nurse-ana", minutes(5)),
        ("unsnoozed", "nurse-ben", minutes(15)),
    ]
    # a resolved alert cannot be snoozed
    engine.resolve(alert.id, "nurse-ben", minutes(40))
    with pytest.raises(AlertTransitionError, match="resolved"):
        engine.snooze(alert.id, "nurse-ana", minutes(41), minutes(60))


# -- clock detectors: tick() ------------------------------------------------------------------


def hours(h: float) -> datetime:
    return T0 + timedelta(hours=h)


@dataclass(frozen=True)
class _Rule:
    id: str
    kind: str
    title: str
    severity: Severity


NO_BP = _Rule("test.no_bp_reading", "blood_pressure", "No blood pressure reading", "warning")


class NoReadingDetector:
    """A small real clock detector: an enrolled patient's cuff silent for over 24 h.

    The episode starts 24 h after the last reading (a stable ``at`` while it lasts); a
    reading within the last 24 h clears it.
    """

    def __init__(self, hours: float = 24) -> None:
        self.window = timedelta(hours=hours)
        self.checked: list[datetime] = []

    @property
    def rules(self) -> Sequence[_Rule]:
        return (NO_BP,)

    def check(self, store: Store, now: datetime) -> list[TimedFinding]:
        self.checked.append(now)
        findings = []
        for patient in store.list_patients():
            recent = store.observations(patient.id, "blood_pressure", start=now - 4 * self.window)
            past = [o for o in recent if o.at <= now]
            if not past:
                continue
            last = past[-1]
            silent = now - last.at > self.window
            findings.append(
                TimedFinding(
                    patient=patient.id,
                    rule=NO_BP,
                    firing=silent,
                    at=last.at + self.window if silent else last.at,
                    message="no blood_pressure reading for over 24 h",
                    evidence=(last.identifier,) if silent else (),
                )
            )
        return findings


def test_tick_opens_and_clears_a_clock_detector_alert(
    ward: Store, clock: FakeClock, sink: RecordingSink
) -> None:
    detector = NoReadingDetector()
    engine = AlertEngine(
        ward, clock=clock, detectors=[ThresholdDetector()], clock_detectors=[detector]
    )
    engine.add_sink(sink)
    last = bp(128, 80, T0)
    feed(engine, last)
    assert engine.tick(hours(12)) == []
    [opened] = engine.tick(hours(25))
    assert opened.id is not None
    assert (opened.rule, opened.kind, opened.severity, opened.status) == (
        NO_BP.id,
        "blood_pressure",
        "warning",
        "open",
    )
    assert opened.opened_at == hours(24)  # when the condition began
    assert opened.observations == (last.identifier,)
    assert engine.tick(hours(26)) == []  # still silent: no duplicate, no change
    assert len(ward.list_alerts()) == 1
    # a reading arrives; the next tick clears the alert
    feed(engine, bp(126, 80, hours(27)))
    [cleared] = engine.tick(hours(28))
    assert (cleared.id, cleared.status, cleared.resolved_by, cleared.resolved_at) == (
        opened.id,
        "resolved",
        AUTO_CLEAR,
        hours(27),
    )
    assert events(ward, opened.id) == [
        ("opened", ENGINE, hours(25)),
        ("auto-cleared", AUTO_CLEAR, hours(28)),
    ]
    # a second episode: opened, then resolved by a nurse; the same episode stays resolved
    [second] = engine.tick(hours(52))
    assert second.id != opened.id and second.opened_at == hours(51)
    assert second.id is not None
    engine.resolve(second.id, "nurse-ana", hours(53))
    assert engine.tick(hours(54)) == []
    restarted = AlertEngine(ward, clock=clock, clock_detectors=[detector])
    assert restarted.tick(hours(55)) == []  # a new engine knows it from the store
    assert [(a.status, a.resolved_by) for a in ward.list_alerts()] == [
        ("resolved", AUTO_CLEAR),
        ("resolved", "nurse-ana"),
    ]
    assert [(c.action, c.actor, c.at) for c in sink.changes] == [
        ("opened", ENGINE, hours(25)),
        ("auto-cleared", AUTO_CLEAR, hours(28)),
        ("opened", ENGINE, hours(52)),
        ("resolved", "nurse-ana", hours(53)),
    ]
    assert detector.checked[-1] == hours(55)
    with pytest.raises(ValueError, match="aware"):
        engine.tick(datetime(2026, 3, 5, 8, 0))


# -- sinks ------------------------------------------------------------------------------------


def test_a_raising_sink_does_not_stop_the_engine_or_other_sinks(
    ward: Store, clock: FakeClock, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(changes: Sequence[AlertChange]) -> None:
        raise RuntimeError("full")

    engine = AlertEngine(ward, clock=clock, detectors=[ThresholdDetector()], sinks=[broken, sink])
    [alert] = feed(engine, bp(186, 100, minutes(0)))
    assert [c.alert for c in sink.changes] == [alert]
    assert "RuntimeError" in caplog.text
    assert ward.list_alerts() == [alert]


# -- thresholds: default < care plan < patient ----------------------------------------------


def test_care_plan_thresholds_apply_and_the_patient_overrides_them(
    engine: AlertEngine, ward: Store
) -> None:
    ward.put_care_plan(
        CarePlan(PATIENT, "Hypertension", thresholds={f"{CRISIS}.systolic": 170}, version=1)
    )
    [alert] = feed(engine, bp(175, 90, minutes(0)))  # over the plan's 170, under 180
    assert "> 170 mmHg" in alert.message
    assert alert.id is not None
    engine.resolve(alert.id, "nurse-ana", minutes(1))
    # the patient's own threshold wins over the plan's
    ward.upsert_patient(Patient(PATIENT, "Synthetic Person", "ward-1", {f"{CRISIS}.systolic": 190}))
    assert feed(engine, bp(185, 90, minutes(10))) == []
    [again] = feed(engine, bp(195, 90, minutes(20)))
    assert "> 190 mmHg" in again.message


# -- concurrency with another process, and the cost of the lookup cache ------------------------


def test_changes_made_elsewhere_are_never_overwritten(
    engine: AlertEngine, ward: Store, store_url: str
) -> None:
    """The API (another process, its own engine and connection) acknowledges and resolves
    while the ingest engine keeps processing readings."""
    [alert] = feed(engine, bp(186, 100, minutes(0)))
    assert alert.id is not None
    api_store = open_store(store_url)
    try:
        api = AlertEngine(api_store, clock=lambda: WALL)
        api.acknowledge(alert.id, "nurse-ana", minutes(2))
        [updated] = feed(engine, bp(188, 100, minutes(3)))
        assert (updated.status, updated.acknowledged_by) == ("acknowledged", "nurse-ana")
        assert len(updated.observations) == 2
        api.resolve(alert.id, "nurse-ana", minutes(4))
        # a firing reading after that opens a new alert; it never reopens the resolved one
        [new] = feed(engine, bp(190, 100, minutes(5)))
        assert new.id != alert.id
        # the API's action on that new one is seen too: a recovery clears nothing it resolved
        assert new.id is not None
        api.resolve(new.id, "nurse-ben", minutes(6))
        assert feed(engine, bp(150, 90, minutes(7))) == []
    finally:
        api_store.close()
    final = {a.id: a for a in ward.list_alerts()}
    assert (final[alert.id].resolved_by, final[alert.id].acknowledged_by) == (
        "nurse-ana",
        "nurse-ana",
    )
    assert final[new.id].resolved_by == "nurse-ben"


class CountingStore:
    """Our store, counting the calls the engine makes through it (the work, not the time)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return target(*args, **kwargs)

        return counted


def test_normal_readings_need_no_alert_lookup(ward: Store, clock: FakeClock) -> None:
    counting = CountingStore(ward)
    engine = AlertEngine(cast(Store, counting), clock=clock, detectors=[ThresholdDetector()])
    bp_rules = 2  # crisis and hypotension
    feed(engine, bp(125, 80, minutes(0)))
    assert counting.calls["find_open_alert"] <= bp_rules  # looked once per rule
    counting.calls.clear()
    for m in range(1, 21):
        feed(engine, bp(120 + m % 5, 80, minutes(m)))
    assert counting.calls["find_open_alert"] == 0
    # an alert opened by this engine is looked up again (it may be changed elsewhere) ...
    [alert] = feed(engine, bp(186, 100, minutes(30)))
    assert alert.id is not None
    counting.calls.clear()
    feed(engine, bp(187, 100, minutes(31)))
    assert counting.calls["find_open_alert"] >= 1
    # ... and once resolved (here by a person), no longer
    engine.resolve(alert.id, "nurse-ana", minutes(32))
    counting.calls.clear()
    for m in range(33, 40):
        feed(engine, bp(125, 80, minutes(m)))
    assert counting.calls["find_open_alert"] == 0
