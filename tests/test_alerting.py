"""Alerting: threshold rules, the alert lifecycle on the real SQLite store, notifications.

The clock and the notifier are fakes at our own seams; the apprise tests deliver through
real apprise to a real HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alerting.dispatch import Dispatcher
from alerting.engine import AUTO_CLEAR, AlertEngine
from alerting.errors import (
    AlertNotFoundError,
    AlertTransitionError,
    RuleError,
    ThresholdOverrideError,
    UnusableObservationError,
)
from alerting.notify import (
    AppriseNotifier,
    ConsoleNotifier,
    DeliveryResult,
    Notification,
    NotifiedAlert,
    RecordingNotifier,
    notification_body,
    notification_title,
)
from alerting.policy import NotificationPolicy, Target
from alerting.rules import (
    DEFAULT_RULES,
    HYPERTENSIVE_CRISIS,
    Criterion,
    ThresholdDetector,
    ThresholdRule,
)
from ingest.pipeline import IngestPipeline
from ingest.stores.sqlite import SqliteStore
from wardwatch.fhir import bundle, observation_from_reading, reading_id
from wardwatch.reading import Component, Reading
from wardwatch.store import Alert, CareTeam, Patient, StoredObservation

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
WALL = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
"""The fake wall clock: far from event time, so a mix-up shows."""
PATIENT = "p-001"
DISPLAY_NAME = "Ada Testpatient"
CRISIS = "bp.hypertensive_crisis"
HYPO = "bp.hypotension"
KPA_PER_MMHG = 1 / 7.50061683


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def bp(
    systolic: float,
    diastolic: float,
    at: datetime,
    *,
    patient: str = PATIENT,
    unit: str | None = None,
    device: str = "cuff-1",
) -> StoredObservation:
    """A stored blood-pressure panel (components in ``unit``; None = canonical mm[Hg])."""
    return StoredObservation(
        identifier=reading_id(device, at, "blood_pressure"),
        patient=patient,
        device=device,
        kind="blood_pressure",
        at=at,
        value=None,
        unit=unit,
        components={
            "systolic": systolic,
            "diastolic": diastolic,
            "mean_arterial_pressure": (systolic + 2 * diastolic) / 3,
        },
        resource=b'{"resourceType": "Observation"}',
        received_at=at + timedelta(seconds=3),
    )


@dataclass
class FakeClock:
    now: datetime = WALL

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "x.db")
    s.migrate()
    s.upsert_care_team(CareTeam("ward-1", "Ward 1"))
    s.upsert_patient(Patient(PATIENT, DISPLAY_NAME, "ward-1"))
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


_DISPATCHERS: dict[int, Dispatcher] = {}
"""The dispatcher behind each engine fixture (by the engine's id)."""


@pytest.fixture
def engine(
    store: SqliteStore, notifier: RecordingNotifier, clock: FakeClock
) -> Iterator[AlertEngine]:
    # The lifecycle tests read the blood-pressure table alone, so a low systolic is one
    # alert (bp.hypotension), not also NEWS2's; tests/test_detectors.py runs the default set.
    # Notifications go through the dispatcher (tests/test_dispatch.py has its own tests).
    dispatcher = Dispatcher(store, notifier, NotificationPolicy(), clock)
    engine = AlertEngine(store, clock=clock, detectors=[ThresholdDetector()])
    engine.add_sink(dispatcher.submit)
    _DISPATCHERS[id(engine)] = dispatcher
    yield engine
    del _DISPATCHERS[id(engine)]


async def dispatch(engine: AlertEngine) -> None:
    """Let the engine's dispatcher send what is due now."""
    await _DISPATCHERS[id(engine)].run_once(engine.clock())


async def feed(engine: AlertEngine, *observations: StoredObservation) -> list[Alert]:
    """Store the observations (as ingest would), hand them to the engine in a worker
    thread, then let the dispatcher send what is due."""
    engine.store.write_observations(observations)
    alerts = await asyncio.to_thread(engine.process, observations)
    await dispatch(engine)
    return alerts


# -- rules (pure) -------------------------------------------------------------------------


def test_default_rules_cite_their_source_and_use_the_guideline_limits() -> None:
    detector = ThresholdDetector()
    assert [r.id for r in DEFAULT_RULES] == [CRISIS, HYPO]
    assert all(r.source and r.severity == "urgent" for r in DEFAULT_RULES)
    assert dict(detector.parameters) == {
        "bp.hypertensive_crisis.systolic": 180.0,
        "bp.hypertensive_crisis.diastolic": 120.0,
        "bp.hypotension.systolic": 90.0,
        # confirmation (repeat count, minimum duration), overridable per patient too
        "bp.hypertensive_crisis.readings": 1.0,
        "bp.hypertensive_crisis.minutes": 0.0,
        "bp.hypotension.readings": 1.0,
        "bp.hypotension.minutes": 0.0,
    }
    assert detector.kinds == frozenset({"blood_pressure"})


@pytest.mark.parametrize(
    ("systolic", "diastolic", "expected"),
    [
        (180, 100, None),  # "> 180": the limit itself does not fire
        (181, 100, True),
        (150, 121, True),  # and/or: diastolic alone fires
        (175, 100, None),  # inside the hysteresis band: no finding
        (169.9, 109.9, False),  # both back past limit - 10: cleared
        (165, 115, None),  # diastolic still in its band: not cleared
    ],
)
def test_crisis_thresholds_and_hysteresis(
    systolic: float, diastolic: float, expected: bool | None
) -> None:
    findings = ThresholdDetector([HYPERTENSIVE_CRISIS]).evaluate(bp(systolic, diastolic, T0))
    if expected is None:
        assert findings == []
    else:
        [finding] = findings
        assert finding.firing is expected
        assert finding.rule.id == CRISIS
        assert finding.at == T0  # event time
        assert finding.unit == "mm[Hg]"


def test_finding_message_names_what_crossed_which_limit() -> None:
    [finding] = ThresholdDetector([HYPERTENSIVE_CRISIS]).evaluate(bp(185, 125, T0))
    assert finding.value == 185
    assert finding.message == (
        "Hypertensive crisis: systolic 185 mmHg > 180 mmHg, diastolic 125 mmHg > 120 mmHg"
    )


def test_panel_without_diastolic_cannot_clear_a_crisis() -> None:
    obs = bp(120, 80, T0)
    partial = StoredObservation(**{**_fields(obs), "components": {"systolic": 120.0}})
    assert ThresholdDetector([HYPERTENSIVE_CRISIS]).evaluate(partial) == []


def test_kpa_components_are_converted_to_mmhg() -> None:
    detector = ThresholdDetector([HYPERTENSIVE_CRISIS])
    [finding] = detector.evaluate(bp(186 * KPA_PER_MMHG, 90 * KPA_PER_MMHG, T0, unit="kPa"))
    assert finding.firing
    assert finding.value == pytest.approx(186)
    assert "systolic 186 mmHg" in finding.message
    [cleared] = detector.evaluate(bp(22.0, 12.0, T0, unit="kPa"))  # 165/90 mmHg
    assert not cleared.firing
    assert cleared.value == pytest.approx(165, abs=0.1)


def test_unconvertible_unit_is_refused_by_name() -> None:
    with pytest.raises(UnusableObservationError) as err:
        ThresholdDetector().evaluate(bp(185, 125, T0, unit="bogus"))
    assert err.value.code == "unusable-observation"
    assert "185" not in str(err.value)


def test_overrides_replace_the_default_threshold() -> None:
    detector = ThresholdDetector([HYPERTENSIVE_CRISIS])
    overrides = {"bp.hypertensive_crisis.systolic": 170.0}
    [finding] = detector.evaluate(bp(175, 90, T0), overrides)
    assert finding.firing
    assert detector.evaluate(bp(175, 90, T0)) == []


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("bp.hypertensive_crisis.systolic", "170"),
        ("bp.hypertensive_crisis.systolic", True),
        ("bp.hypertensive_crisis.systolic", float("nan")),
        ("bp.hypertensive_crisis.systolic", 1700),  # outside the plausible 40-300
        ("bp.nonsense.systolic", 170),
    ],
)
def test_unusable_overrides_are_refused(parameter: str, value: object) -> None:
    with pytest.raises(ThresholdOverrideError) as err:
        ThresholdDetector().check_override(parameter, value)
    assert err.value.parameter == parameter


def test_rule_table_is_checked() -> None:
    crit = Criterion("x.systolic", "systolic", "above", 180.0, 10.0)
    rule = ThresholdRule("x", "blood_pressure", "X", "urgent", (crit,), "test")
    with pytest.raises(RuleError, match="twice"):
        ThresholdDetector([rule, rule])
    bad_component = ThresholdRule(
        "y", "blood_pressure", "Y", "urgent", (Criterion("y.s", "pulse", "above", 1, 0),), "t"
    )
    with pytest.raises(RuleError, match="component"):
        ThresholdDetector([bad_component])
    negative = ThresholdRule(
        "z", "blood_pressure", "Z", "urgent", (Criterion("z.s", "systolic", "above", 1, -1),), "t"
    )
    with pytest.raises(RuleError, match="hysteresis"):
        ThresholdDetector([negative])
    with pytest.raises(RuleError, match="unknown measurement kind"):
        ThresholdDetector([ThresholdRule("k", "nope", "K", "urgent", (crit,), "t")])


# -- lifecycle on the real store ------------------------------------------------------------


async def test_crisis_opens_one_urgent_alert_and_notifies(
    engine: AlertEngine, store: SqliteStore, notifier: RecordingNotifier
) -> None:
    obs = bp(185, 125, minutes(0))
    [alert] = await feed(engine, obs)
    assert alert.id is not None
    assert (alert.patient, alert.rule, alert.kind) == (PATIENT, CRISIS, "blood_pressure")
    assert alert.severity == "urgent"
    assert alert.status == "open"
    assert alert.observations == (obs.identifier,)
    assert alert.opened_at == obs.at  # event time, not the wall clock
    assert alert.updated_at == WALL
    assert store.list_alerts() == [alert]
    [sent] = notifier.sent
    assert [a.alert for a in sent.notification.alerts] == [alert]
    assert sent.notification.patient == PATIENT
    assert sent.notification.care_team == "ward-1"
    assert sent.title == "[URGENT] wardwatch alert: patient p-001"
    assert "Hypertensive crisis (urgent, bp.hypertensive_crisis)" in sent.body
    assert "185 mmHg" in sent.body
    assert DISPLAY_NAME not in sent.body + sent.title


async def test_repeats_update_the_alert_and_notify_once(
    engine: AlertEngine, store: SqliteStore, notifier: RecordingNotifier, clock: FakeClock
) -> None:
    first, second, third = (bp(185 + n, 100, minutes(10 * n)) for n in range(3))
    [opened] = await feed(engine, first)
    clock.advance(60)
    [updated] = await feed(engine, second, third)  # changed twice in one batch: returned once
    assert updated.id == opened.id
    assert updated.observations == (first.identifier, second.identifier, third.identifier)
    assert updated.updated_at == WALL + timedelta(seconds=60)
    assert updated.opened_at == first.at
    assert store.list_alerts() == [updated]
    assert len(notifier.sent) == 1
    # The same readings again (ingest hands duplicates over too): nothing changes.
    assert await feed(engine, second) == []
    assert store.list_alerts() == [updated]


async def test_recovery_past_hysteresis_auto_resolves(
    engine: AlertEngine, store: SqliteStore
) -> None:
    [alert] = await feed(engine, bp(185, 100, minutes(0)))
    assert await feed(engine, bp(175, 100, minutes(10))) == []  # in the band: still open
    assert store.find_open_alert(PATIENT, CRISIS) == alert
    recovered = bp(165, 100, minutes(20))
    [resolved] = await feed(engine, recovered)
    assert resolved.id == alert.id
    assert resolved.status == "resolved"
    assert resolved.resolved_by == AUTO_CLEAR
    assert resolved.resolved_at == recovered.at
    assert store.find_open_alert(PATIENT, CRISIS) is None
    assert store.list_alerts(status="resolved") == [resolved]


async def test_new_crisis_after_resolve_opens_a_new_alert(
    engine: AlertEngine, store: SqliteStore, notifier: RecordingNotifier
) -> None:
    crisis = bp(190, 100, minutes(0))
    [first] = await feed(engine, crisis)
    await feed(engine, bp(150, 90, minutes(10)))
    # A replay of the reading that opened the first alert does not reopen anything.
    assert await feed(engine, crisis) == []
    [second] = await feed(engine, bp(186, 100, minutes(30)))
    assert second.id != first.id
    assert second.status == "open"
    assert [a.status for a in store.list_alerts()] == ["resolved", "open"]
    assert [s.notification.alert_ids for s in notifier.sent] == [(first.id,), (second.id,)]


async def test_late_normal_reading_does_not_resolve(
    engine: AlertEngine, store: SqliteStore
) -> None:
    await feed(engine, bp(185, 100, minutes(0)), bp(188, 100, minutes(20)))
    assert await feed(engine, bp(120, 80, minutes(10))) == []  # taken before the last crisis
    open_alert = store.find_open_alert(PATIENT, CRISIS)
    assert open_alert is not None
    assert open_alert.status == "open"


async def test_per_patient_threshold_override(
    engine: AlertEngine, store: SqliteStore, notifier: RecordingNotifier
) -> None:
    store.upsert_patient(
        Patient("p-002", "Bo Override", "ward-1", {"bp.hypertensive_crisis.systolic": 170})
    )
    await feed(engine, bp(175, 90, minutes(0)), bp(175, 90, minutes(0), patient="p-002"))
    [alert] = store.list_alerts()
    assert alert.patient == "p-002"
    assert "> 170 mmHg" in alert.message
    assert await feed(engine, bp(165, 90, minutes(5), patient="p-002")) == []  # band 160-170
    [resolved] = await feed(engine, bp(159, 90, minutes(10), patient="p-002"))
    assert resolved.resolved_by == AUTO_CLEAR


async def test_unusable_override_falls_back_to_the_default(
    engine: AlertEngine, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.upsert_patient(
        Patient(PATIENT, DISPLAY_NAME, "ward-1", {"bp.hypertensive_crisis.systolic": 1700})
    )
    with caplog.at_level(logging.WARNING, logger="alerting"):
        [alert] = await feed(engine, bp(185, 100, minutes(0)))
    assert alert.rule == CRISIS
    assert "bp.hypertensive_crisis.systolic" in caplog.text
    assert "1700" not in caplog.text


async def test_kpa_reading_opens_an_alert(engine: AlertEngine) -> None:
    [alert] = await feed(engine, bp(24.8, 12.0, minutes(0), unit="kPa"))  # 186/90 mmHg
    assert alert.rule == CRISIS
    assert "systolic 186 mmHg > 180 mmHg" in alert.message


async def test_hypotension_opens_and_clears(engine: AlertEngine, store: SqliteStore) -> None:
    low = bp(85, 55, minutes(0))
    [alert] = await feed(engine, low)
    assert (alert.rule, alert.severity, alert.observations) == (HYPO, "urgent", (low.identifier,))
    assert alert.message == "Hypotension: systolic 85 mmHg < 90 mmHg"
    assert await feed(engine, bp(95, 60, minutes(10))) == []  # band 90-100
    [resolved] = await feed(engine, bp(105, 65, minutes(20)))
    assert resolved.status == "resolved"
    assert resolved.resolved_by == AUTO_CLEAR


async def test_acknowledge_and_resolve_record_who_and_when(
    engine: AlertEngine, store: SqliteStore, notifier: RecordingNotifier, clock: FakeClock
) -> None:
    [alert] = await feed(engine, bp(185, 100, minutes(0)))
    assert alert.id is not None
    ack_at = minutes(3)
    clock.advance(30)
    acked = engine.acknowledge(alert.id, "nurse-ana", ack_at)
    assert (acked.status, acked.acknowledged_by, acked.acknowledged_at) == (
        "acknowledged",
        "nurse-ana",
        ack_at,
    )
    assert acked.updated_at == WALL + timedelta(seconds=30)
    assert store.list_alerts() == [acked]
    # The first acknowledgement stands.
    assert engine.acknowledge(alert.id, "nurse-ben", minutes(4)) == acked
    # Still firing while acknowledged: updated, not reopened, not renotified.
    [updated] = await feed(engine, bp(187, 100, minutes(5)))
    assert updated.status == "acknowledged"
    assert len(updated.observations) == 2
    assert len(notifier.sent) == 1
    resolved = engine.resolve(alert.id, "nurse-ben", minutes(6))
    assert (resolved.status, resolved.resolved_by, resolved.resolved_at) == (
        "resolved",
        "nurse-ben",
        minutes(6),
    )
    assert resolved.acknowledged_by == "nurse-ana"
    assert store.list_alerts() == [resolved]
    assert engine.resolve(alert.id, "nurse-cy", minutes(7)) == resolved
    with pytest.raises(AlertTransitionError, match="resolved"):
        engine.acknowledge(alert.id, "nurse-cy", minutes(7))


async def test_transitions_are_checked(engine: AlertEngine) -> None:
    [alert] = await feed(engine, bp(185, 100, minutes(0)))
    assert alert.id is not None
    with pytest.raises(AlertNotFoundError):
        engine.acknowledge(alert.id + 100, "nurse-ana", minutes(1))
    with pytest.raises(AlertTransitionError, match="missing"):
        engine.acknowledge(alert.id, " ", minutes(1))
    with pytest.raises(AlertTransitionError, match="reserved"):
        engine.resolve(alert.id, AUTO_CLEAR, minutes(1))
    with pytest.raises(AlertTransitionError, match="time zone"):
        engine.resolve(alert.id, "nurse-ana", datetime(2026, 3, 2, 8, 1))


async def test_unusable_observation_does_not_stop_the_batch(
    engine: AlertEngine, caplog: pytest.LogCaptureFixture
) -> None:
    bad = bp(185, 100, minutes(0), unit="bogus", device="cuff-2")
    good = bp(186, 100, minutes(1))
    with caplog.at_level(logging.WARNING, logger="alerting"):
        [alert] = await feed(engine, bad, good)
    assert alert.observations == (good.identifier,)
    assert bad.identifier in caplog.text
    assert "unusable-observation" in caplog.text


async def test_other_kinds_and_normal_readings_change_nothing(
    engine: AlertEngine, store: SqliteStore, notifier: RecordingNotifier
) -> None:
    weight = StoredObservation(
        **{**_fields(bp(0, 0, T0)), "kind": "body_weight", "value": 80.0, "unit": "kg"}
    )
    assert await feed(engine, weight, bp(120, 80, minutes(1))) == []
    assert store.list_alerts() == []
    assert notifier.sent == []


async def test_failed_or_raising_notifier_does_not_break_the_engine(
    store: SqliteStore, clock: FakeClock
) -> None:
    engine = AlertEngine(store, clock=clock, detectors=[ThresholdDetector()])
    failing = Dispatcher(store, RecordingNotifier(fail=True), NotificationPolicy(), clock)
    engine.add_sink(failing.submit)
    store.write_observations([bp(185, 100, minutes(0))])
    [alert] = engine.process([bp(185, 100, minutes(0))])
    [attempt] = await failing.run_once(clock())
    assert (attempt.alert_ids, attempt.delivered, attempt.result) == ((alert.id,), False, "failure")

    class Broken:
        async def deliver(self, notification: Notification) -> DeliveryResult:
            raise ConnectionError("down")

    broken = Dispatcher(store, Broken(), NotificationPolicy(), clock)
    engine.add_sink(broken.submit)
    store.write_observations([bp(80, 50, minutes(1))])
    # The low reading also clears the crisis alert opened above; one new alert to notify.
    changed = engine.process([bp(80, 50, minutes(1))])
    assert [(a.rule, a.status) for a in changed] == [(CRISIS, "resolved"), (HYPO, "open")]
    low = changed[1]
    [attempt] = await broken.run_once(clock())
    assert (attempt.alert_ids, attempt.delivered, attempt.result) == ((low.id,), False, "error")


class SignallingNotifier(RecordingNotifier):
    """Records, and sets ``sent_event`` on each delivery."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_event = asyncio.Event()

    async def deliver(self, notification: Notification) -> DeliveryResult:
        result = await super().deliver(notification)
        self.sent_event.set()
        return result


async def test_dispatcher_task_sends_what_a_worker_thread_committed(
    store: SqliteStore, clock: FakeClock
) -> None:
    notifier = SignallingNotifier()
    dispatcher = Dispatcher(store, notifier, NotificationPolicy(), clock)
    engine = AlertEngine(store, clock=clock, sinks=[dispatcher.submit])
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        obs = bp(185, 100, minutes(0))
        store.write_observations([obs])
        # As ingest's on_stored hook would: process() in a worker thread.
        [alert] = await asyncio.to_thread(engine.process, [obs])
        async with asyncio.timeout(5):
            await notifier.sent_event.wait()
        assert [s.notification.alert_ids for s in notifier.sent] == [(alert.id,)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_logs_at_info_carry_no_values_or_names(
    engine: AlertEngine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        [alert] = await feed(engine, bp(197, 133, minutes(0)))
        assert alert.id is not None
        await feed(engine, bp(198, 134, minutes(1)), bp(141, 93, minutes(2)))
    infos = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any(CRISIS in m and PATIENT in m for m in infos)
    for message in infos:
        for secret in (DISPLAY_NAME, "197", "133", "198", "141", "93"):
            assert secret not in message


async def test_ingest_hook_to_notification(
    engine: AlertEngine, store: SqliteStore, notifier: RecordingNotifier
) -> None:
    """The whole backend path: a FHIR bundle in kPa through ingest's hook to a notification."""
    store.pair_device("cuff-9", PATIENT)
    pipeline = IngestPipeline(store, clock=lambda: minutes(1), on_stored=[engine.on_stored])
    reading = Reading(
        kind="blood_pressure",
        at=minutes(0),
        components=(
            Component("systolic", 24.8, "kPa"),  # 186 mmHg
            Component("diastolic", 12.0, "kPa"),  # 90 mmHg
        ),
    )
    doc = bundle([observation_from_reading(reading, patient=PATIENT, device="cuff-9")])
    result = await asyncio.to_thread(
        pipeline.ingest_bundle, json.dumps(doc).encode(), source="test"
    )
    assert result.stored == 1
    [alert] = store.list_alerts()
    assert alert.observations == (reading_id("cuff-9", minutes(0), "blood_pressure"),)
    assert "systolic 186 mmHg > 180 mmHg" in alert.message
    await dispatch(engine)
    assert [s.notification.alert_ids for s in notifier.sent if s.delivered] == [(alert.id,)]


# -- notifications ----------------------------------------------------------------------------


def _alert(**kw: Any) -> Alert:
    fields: dict[str, Any] = {
        "patient": PATIENT,
        "rule": CRISIS,
        "kind": "blood_pressure",
        "severity": "urgent",
        "opened_at": T0,
        "message": "Hypertensive crisis: systolic 185 mmHg > 180 mmHg",
        "observations": ("obs-1",),
        "id": 7,
    }
    fields.update(kw)
    return Alert(**fields)


def _notification(*alerts: Alert, purpose: str = "notify") -> Notification:
    return Notification(
        PATIENT,
        "ward-1",
        purpose,  # type: ignore[arg-type]
        0,
        "care-team",
        ("care-team",),
        (),
        tuple(NotifiedAlert(a, "Hypertensive crisis", None) for a in alerts),
        T0,
    )


def test_title_and_body_hold_the_minimum_necessary() -> None:
    n = _notification(_alert())
    assert notification_title(n) == "[URGENT] wardwatch alert: patient p-001"
    assert notification_body(n).splitlines() == [
        "patient: p-001",
        "severity: urgent",
        "- Hypertensive crisis (urgent, bp.hypertensive_crisis) since 2026-03-02T08:00:00Z",
        "  Hypertensive crisis: systolic 185 mmHg > 180 mmHg",
        "  alert 7",
    ]


async def test_console_notifier_prints_one_line() -> None:
    stream = io.StringIO()
    result = await ConsoleNotifier(stream).deliver(_notification(_alert()))
    assert result.delivered
    assert stream.getvalue() == (
        "2026-03-02T08:00:00Z [URGENT] notify patient p-001 step 0 (care-team): "
        "Hypertensive crisis (alert 7)\n"
    )


@dataclass
class Receiver:
    """A tiny HTTP endpoint that records JSON POSTs (apprise's json:// target)."""

    status: int = 200
    received: list[tuple[str, dict[str, Any], bytes]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/wardwatch/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append((self.path, json.loads(raw), raw))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def _apprise_engine(store: SqliteStore, clock: FakeClock) -> tuple[AlertEngine, Dispatcher]:
    dispatcher = Dispatcher(store, AppriseNotifier(timeout=10), NotificationPolicy(), clock)
    engine = AlertEngine(store, clock=clock, sinks=[dispatcher.submit])
    return engine, dispatcher


async def test_apprise_delivers_to_the_care_team(
    store: SqliteStore, clock: FakeClock, receiver: Receiver
) -> None:
    store.upsert_care_team(CareTeam("ward-1", "Ward 1", (receiver.url(),)))
    engine, dispatcher = await _apprise_engine(store, clock)
    obs = bp(185, 125, minutes(0))
    store.write_observations([obs])
    [alert] = await asyncio.to_thread(engine.process, [obs])
    [result] = await dispatcher.run_once(clock())
    assert (result.alert_ids, result.delivered, result.result, result.targets) == (
        (alert.id,),
        True,
        "sent",
        1,
    )
    [(path, doc, raw)] = receiver.received
    assert path == "/wardwatch/hook"
    assert doc["title"] == "[URGENT] wardwatch alert: patient p-001"
    assert doc["type"] == "failure"  # apprise's most severe type, for urgent
    assert "Hypertensive crisis" in doc["message"]
    assert f"patient: {PATIENT}" in doc["message"]
    assert "systolic 185 mmHg" in doc["message"]
    assert DISPLAY_NAME.encode() not in raw


async def test_apprise_failure_is_reported_not_raised(
    store: SqliteStore, clock: FakeClock, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 500
    store.upsert_care_team(CareTeam("ward-1", "Ward 1", (receiver.url(),)))
    engine, dispatcher = await _apprise_engine(store, clock)
    obs = bp(185, 125, minutes(0))
    store.write_observations([obs])
    with caplog.at_level(logging.WARNING):
        [alert] = await asyncio.to_thread(engine.process, [obs])
        [attempt] = await dispatcher.run_once(clock())
        assert len(receiver.received) == 1
    assert (attempt.delivered, attempt.result) == (False, "failure")
    assert alert.status == "open"  # the alert stands whatever happened to the message
    ours = [r for r in caplog.records if r.name.startswith("alerting")]
    assert any(r.levelno == logging.WARNING and "failure" in r.getMessage() for r in ours)
    for record in caplog.records:
        assert DISPLAY_NAME not in record.getMessage()
        assert "185" not in record.getMessage()


async def test_apprise_without_route_or_with_bad_urls(receiver: Receiver) -> None:
    n = _notification(_alert())
    result = await AppriseNotifier().deliver(n)
    assert (result.delivered, result.reason) == (False, "no-route")
    bad = (Target(url="notaservice://nowhere", tags=("care-team",)),)
    result = await AppriseNotifier().deliver(replace(n, targets=bad))
    assert (result.delivered, result.reason) == (False, "bad-url")
    # A step whose tag no target carries: apprise's NOMATCH.
    other = (Target(url=receiver.url("/x"), tags=("charge-nurse",)),)
    result = await AppriseNotifier(timeout=10).deliver(replace(n, targets=other))
    assert (result.delivered, result.reason) == (False, "nomatch")
    # A patient without a care team goes to the policy's fallback URLs.
    policy = NotificationPolicy.from_yaml(f"fallback_urls: ['{receiver.url('/fallback')}']")
    plan = policy.plan(None, "urgent")
    routed = replace(n, targets=plan.targets, tags=plan.steps[0].notify)
    result = await AppriseNotifier(timeout=10).deliver(routed)
    assert result.delivered
    assert [path for path, _, _ in receiver.received] == ["/fallback"]


def _fields(obs: StoredObservation) -> dict[str, Any]:
    return {name: getattr(obs, name) for name in StoredObservation.__dataclass_fields__}
