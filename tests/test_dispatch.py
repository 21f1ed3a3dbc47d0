"""The notification dispatcher: grouping, inhibition, silences and snoozes, re-notification,
escalation, retries, restart, and delivery through real apprise to a local HTTP receiver.

Alerts come from the real engine (default detectors) on the real stores; the clock is a
fake (``run_once(now)``), the notifier is RecordingNotifier (our seam) or AppriseNotifier
with ``json://`` to a JsonReceiver on 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.dispatch import Dispatcher
from alerting.engine import AlertEngine
from alerting.notify import (
    AppriseNotifier,
    Notification,
    NotifiedAlert,
    RecordingNotifier,
    is_sms_like,
    notification_short,
)
from alerting.policy import (
    DEFAULT_INHIBIT_RULES,
    NotificationPolicy,
    PolicyError,
    Target,
)
from alerting.wiring import alerting_hook
from ingest.stores import open_store
from tests.support.receiver import JsonReceiver
from wardwatch.fhir import reading_id
from wardwatch.store import Alert, CareTeam, Patient, Store, StoredObservation
from wardwatch.store_alerts import Silence

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PATIENT = "p-001"
OTHER = "p-002"
DISPLAY_NAME = "Ada Testpatient"
TEAM = "ward-3"
ROOT = Path(__file__).resolve().parents[1]

POLICY = f"""
worklist_url: https://ww.example.org/
teams:
  {TEAM}:
    targets:
      - {{url: "json://127.0.0.1:9/primary", tags: [primary-nurse]}}
      - {{url: "json://127.0.0.1:9/charge", tags: [charge-nurse]}}
      - {{url: "json://127.0.0.1:9/physician", tags: [on-call-physician]}}
    escalation:
      - {{after: 0m, notify: [primary-nurse]}}
      - {{after: 10m, notify: [charge-nurse]}}
      - {{after: 20m, notify: [on-call-physician]}}
    repeat_interval: 4m
    group_wait: 30s
    retries: {{count: 2, backoff: 30s, factor: 2}}
"""


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def obs(
    kind: str,
    when: datetime,
    value: float | None = None,
    *,
    patient: str = PATIENT,
    components: dict[str, float] | None = None,
) -> StoredObservation:
    device = f"dev-{kind}-{patient}"
    return StoredObservation(
        identifier=reading_id(device, when, kind),
        patient=patient,
        device=device,
        kind=kind,
        at=when,
        value=value,
        unit=None,
        components=components or {},
        resource=b'{"resourceType": "Observation"}',
        received_at=when,
    )


def crisis(when: datetime, patient: str = PATIENT) -> StoredObservation:
    return obs(
        "blood_pressure",
        when,
        patient=patient,
        components={"systolic": 192.0, "diastolic": 100.0, "mean_arterial_pressure": 130.0},
    )


@dataclass
class Ward:
    """A store with one enrolled patient, the engine and a dispatcher on a fake clock."""

    store: Store
    notifier: RecordingNotifier
    policy: NotificationPolicy
    now: datetime = T0
    engine: AlertEngine = field(init=False)
    dispatcher: Dispatcher = field(init=False)

    def __post_init__(self) -> None:
        self.store.upsert_care_team(CareTeam(TEAM, "Ward 3", ()))
        for p in (PATIENT, OTHER):
            self.store.upsert_patient(Patient(p, DISPLAY_NAME, TEAM))
        self.dispatcher = self.new_dispatcher()
        self.engine = AlertEngine(self.store, clock=lambda: self.now)
        self.engine.add_sink(self.dispatcher.submit)

    def new_dispatcher(self) -> Dispatcher:
        return Dispatcher(self.store, self.notifier, self.policy, lambda: self.now)

    def feed(self, *observations: StoredObservation) -> list[Alert]:
        self.store.write_observations(observations)
        return self.engine.process(observations)

    async def run(self, minutes: float) -> int:
        """Run the dispatcher at T0 + minutes; return how many attempts it made."""
        self.now = at(minutes)
        return len(await self.dispatcher.run_once(self.now))

    def actions(self, alert_id: int) -> list[str]:
        return [
            e.action
            for e in self.store.list_alert_events(alert_id=alert_id)
            if e.actor == "dispatcher"
        ]

    def sent_to(self) -> list[tuple[str, tuple[int, ...]]]:
        """(step tags joined, alert ids) of every notification delivered, in order."""
        return [("+".join(n.tags), n.alert_ids) for n in self.notifier.delivered]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:{tmp_path / 'store.db'}")
    yield s
    s.close()


def ward_on(store: Store, notifier: RecordingNotifier | None = None) -> Ward:
    return Ward(store, notifier or RecordingNotifier(), NotificationPolicy.from_yaml(POLICY))


@pytest.fixture
def ward(sqlite_store: Store) -> Ward:
    return ward_on(sqlite_store)


# -- grouping -----------------------------------------------------------------------------


async def test_alerts_of_one_patient_within_group_wait_go_out_as_one(store: Store) -> None:
    ward = ward_on(store)
    [bp_alert] = ward.feed(crisis(at(0)))
    assert await ward.run(0) == 0  # the group wait has started
    ward.now = at(0.25)
    [spo2_alert] = [a for a in ward.feed(obs("spo2", at(0.25), 88.0)) if a.rule == "spo2.low"]
    other = ward.feed(crisis(at(0.3), patient=OTHER))
    assert await ward.run(0.4) == 0
    assert await ward.run(0.5) == 1  # the first patient's group
    assert await ward.run(0.8) == 1  # the other patient's alert waits its own group wait
    assert bp_alert.id is not None and spo2_alert.id is not None
    by_patient = {n.patient: n for n in ward.notifier.delivered}
    mine = by_patient[PATIENT]
    assert set(mine.alert_ids) == {bp_alert.id, spo2_alert.id}
    assert mine.alerts[0].alert.severity == "urgent"  # most severe first
    assert mine.tags == ("primary-nurse",) and mine.purpose == "notify"
    assert by_patient[OTHER].alert_ids == (other[0].id,)
    [delivery] = store.list_deliveries(alert_id=bp_alert.id)
    assert set(delivery.alert_ids) == {bp_alert.id, spo2_alert.id}
    assert (delivery.purpose, delivery.step, delivery.target) == ("notify", 0, "primary-nurse")
    assert delivery.delivered and delivery.result == "sent" and delivery.at == at(0.5)
    assert ward.actions(bp_alert.id) == ["notified"]
    body = ward.notifier.sent[0].body + ward.notifier.sent[1].body
    assert DISPLAY_NAME not in body
    assert f"https://ww.example.org/#/alerts/{bp_alert.id}" in mine_body(ward, PATIENT)


def mine_body(ward: Ward, patient: str) -> str:
    return next(s.body for s in ward.notifier.sent if s.notification.patient == patient)


# -- inhibition ---------------------------------------------------------------------------


async def test_urgent_alert_inhibits_its_warning_twin(ward: Ward) -> None:
    alerts = {a.rule: a for a in ward.feed(obs("glucose", at(0), 50.0))}
    level2, level1 = alerts["glucose.hypo.level2"], alerts["glucose.hypo.level1"]
    assert level1.id is not None and level2.id is not None
    await ward.run(0.5)
    assert ward.sent_to() == [("primary-nurse", (level2.id,))]
    assert ward.actions(level1.id) == ["inhibited"]
    [event] = [
        e for e in ward.store.list_alert_events(alert_id=level1.id) if e.actor == "dispatcher"
    ]
    assert event.detail == f"by alert {level2.id} (glucose.hypo.level2)"
    # Still inhibited at the next checks (recorded once), never delivered.
    await ward.run(2)
    await ward.run(4.5)
    assert ward.actions(level1.id) == ["inhibited"]
    assert ward.store.list_deliveries(alert_id=level1.id) == []
    # The urgent one resolved by a nurse while level 1 still holds: level 1 is told now.
    ward.now = at(5)
    ward.engine.resolve(level2.id, "nurse.jo", at(5))
    await ward.run(5)
    assert ward.sent_to()[-1] == ("primary-nurse", (level1.id,))
    assert ward.actions(level1.id) == ["inhibited", "notified"]


def test_default_inhibition_names_real_rules() -> None:
    from alerting.detectors import default_detectors
    from alerting.dispatch import rule_titles

    rules = rule_titles(default_detectors())
    NotificationPolicy().check_rules(rules)  # raises on a typo
    severity = {r.id: r.severity for d in default_detectors() for r in getattr(d, "rules", ())}
    rank = {"urgent": 0, "warning": 1, "info": 2}
    for rule in DEFAULT_INHIBIT_RULES:
        for target in rule.targets:
            # A rule never silences a more severe one.
            assert rank[severity[rule.source]] <= rank[severity[target]], (rule.source, target)
    with pytest.raises(
        PolicyError, match=r"inhibit\.0\.targets: unknown rule id\(s\) glucose\.hypo"
    ):
        NotificationPolicy.from_yaml(
            "inhibit: [{source: glucose.hypo.level2, targets: [glucose.hypo], reason: r}]"
        ).check_rules(rules)


# -- silences and snoozes -------------------------------------------------------------------


async def test_silence_suppresses_then_notifies_when_it_ends(ward: Ward) -> None:
    silence = ward.store.add_silence(
        Silence("nurse.jo", at(0), at(0), at(45), "transfer to hospital", patient=PATIENT)
    )
    [alert] = ward.feed(crisis(at(0)))
    assert alert.id is not None
    await ward.run(0.5)
    await ward.run(10)  # no escalation either while silenced
    assert ward.notifier.sent == []
    assert ward.actions(alert.id) == ["silenced"]
    [event] = [
        e for e in ward.store.list_alert_events(alert_id=alert.id) if e.actor == "dispatcher"
    ]
    assert event.detail is not None and f"silence {silence.id}" in event.detail
    await ward.run(45)
    assert ward.sent_to() == [("primary-nurse", (alert.id,))]
    assert ward.actions(alert.id) == ["silenced", "notified"]


async def test_snooze_expiry_notifies_again_while_unacknowledged(ward: Ward) -> None:
    [alert] = ward.feed(crisis(at(0)))
    assert alert.id is not None
    await ward.run(0.5)
    ward.now = at(2)
    ward.engine.snooze(alert.id, "nurse.jo", at(2), at(32), "calling the patient")
    await ward.run(2)
    await ward.run(6)  # the repeat and the escalation fall due meanwhile
    await ward.run(15)
    assert len(ward.notifier.sent) == 1
    assert ward.actions(alert.id) == ["notified", "silenced"]
    await ward.run(32)  # snooze over, nobody acknowledged: the same step hears again
    assert ward.sent_to()[-1] == ("primary-nurse", (alert.id,))
    assert ward.notifier.delivered[-1].purpose == "renotify"
    # Escalation resumes from there: charge nurse 10 minutes later.
    await ward.run(36)
    await ward.run(42)
    assert [n.tags for n in ward.notifier.delivered[1:]] == [
        ("primary-nurse",),
        ("primary-nurse",),
        ("charge-nurse",),
    ]


# -- re-notification and escalation -------------------------------------------------------------


async def test_renotify_at_the_interval_and_escalate_until_acknowledged(store: Store) -> None:
    ward = ward_on(store)
    [alert] = ward.feed(crisis(at(0)))
    assert alert.id is not None
    for minute in (0.5, 4.4):
        await ward.run(minute)
    await ward.run(4.5)  # repeat_interval 4 min after the first notification
    await ward.run(8.5)
    await ward.run(10.5)  # step 1, 10 min after the first notification
    await ward.run(14.5)  # the charge nurse again
    await ward.run(20.5)  # step 2
    assert [(n.purpose, n.tags[0]) for n in ward.notifier.delivered] == [
        ("notify", "primary-nurse"),
        ("renotify", "primary-nurse"),
        ("renotify", "primary-nurse"),
        ("escalate", "charge-nurse"),
        ("renotify", "charge-nurse"),
        ("escalate", "on-call-physician"),
    ]
    ward.now = at(21)
    ward.engine.acknowledge(alert.id, "dr.kim", at(21))
    for minute in (24.5, 30, 60, 120):
        await ward.run(minute)
    assert len(ward.notifier.delivered) == 6
    assert ward.actions(alert.id) == [
        "notified",
        "renotified",
        "renotified",
        "escalated",
        "renotified",
        "escalated",
    ]
    assert [d.step for d in store.list_deliveries(alert_id=alert.id)] == [0, 0, 0, 1, 1, 2]


async def test_acknowledge_stops_escalation_and_resolve_stops_everything(ward: Ward) -> None:
    [a1] = ward.feed(crisis(at(0)))
    [a2] = ward.feed(crisis(at(0), patient=OTHER))
    assert a1.id is not None and a2.id is not None
    await ward.run(0.5)
    ward.now = at(3)
    ward.engine.acknowledge(a1.id, "nurse.jo", at(3))
    ward.engine.resolve(a2.id, "nurse.jo", at(3))
    for minute in (4.5, 10.5, 20.5, 60):
        await ward.run(minute)
    assert len(ward.notifier.delivered) == 2  # the first notifications only
    # Auto-clear stops it too.
    ward.now = at(61)
    [a3] = ward.feed(crisis(at(61), patient=OTHER))
    await ward.run(61.5)
    normal = {"systolic": 130.0, "diastolic": 80.0, "mean_arterial_pressure": 97.0}
    ward.feed(obs("blood_pressure", at(62), patient=OTHER, components=normal))
    for minute in (65.5, 71.5, 90):
        await ward.run(minute)
    assert ward.sent_to()[-1] == ("primary-nurse", (a3.id,))
    assert len(ward.notifier.delivered) == 3


# -- retries ---------------------------------------------------------------------------------


async def test_failed_delivery_is_retried_then_escalated(ward: Ward) -> None:
    ward.notifier.fail_tags = frozenset({"primary-nurse"})
    [alert] = ward.feed(crisis(at(0)))
    assert alert.id is not None
    await ward.run(0.5)  # attempt 1 fails
    await ward.run(0.9)  # backoff 30 s: nothing yet
    await ward.run(1.0)  # attempt 2 fails
    await ward.run(1.9)
    await ward.run(2.0)  # attempt 3 (30 s x 2 later) fails: the charge nurse, at once
    deliveries = ward.store.list_deliveries(alert_id=alert.id)
    assert [(d.step, d.attempt, d.delivered, d.result) for d in deliveries] == [
        (0, 1, False, "failure"),
        (0, 2, False, "failure"),
        (0, 3, False, "failure"),
        (1, 1, True, "sent"),
    ]
    assert ward.actions(alert.id) == ["delivery-failed"] * 3 + ["escalated"]
    failed = ward.store.list_alert_events(alert_id=alert.id)
    assert any(e.detail == "step 0: primary-nurse, attempt 3 of 3: failure" for e in failed)
    # Step 2 keeps its time from the first attempt's schedule: 10 min after step 1.
    await ward.run(11.9)
    await ward.run(12.0)
    assert ward.notifier.delivered[-1].tags == ("on-call-physician",)


async def test_last_step_failing_keeps_trying(ward: Ward) -> None:
    ward.notifier.fail = True
    [alert] = ward.feed(crisis(at(0)))
    assert alert.id is not None
    for minute in (0.5, 1.0, 2.0, 2.5, 3.5, 4.0, 5.0, 8.9):
        await ward.run(minute)
    steps = [(d.step, d.attempt) for d in ward.store.list_deliveries(alert_id=alert.id)]
    # 3 tries per step, each step at once after the last try of the one before.
    assert steps == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    await ward.run(9.0)  # the repeat interval (4 min) after the last failure: again
    last = ward.store.list_deliveries(alert_id=alert.id)[-1]
    assert (last.purpose, last.step, last.attempt, last.delivered) == ("renotify", 2, 1, False)


# -- restart -------------------------------------------------------------------------------


async def test_restart_rebuilds_what_is_due_from_the_store(store: Store) -> None:
    ward = ward_on(store)
    [notified] = ward.feed(crisis(at(0)))
    await ward.run(0.5)
    # Committed while no dispatcher runs (a crash between commit and delivery).
    ward.engine = AlertEngine(store, clock=lambda: ward.now)
    [missed] = ward.feed(crisis(at(1), patient=OTHER))
    assert notified.id is not None and missed.id is not None
    restarted = ward.new_dispatcher()
    ward.dispatcher = restarted
    ward.engine.add_sink(restarted.submit)
    await ward.run(2)  # the missed alert goes out at once
    assert ward.sent_to()[-1] == ("primary-nurse", (missed.id,))
    await ward.run(4.4)
    assert len(ward.notifier.delivered) == 2
    await ward.run(4.5)  # the first alert's repeat, from its stored delivery
    await ward.run(10.5)  # and its escalation
    assert [
        ("+".join(n.tags), n.purpose)
        for n in ward.notifier.delivered
        if n.alert_ids == (notified.id,)
    ] == [
        ("primary-nurse", "notify"),
        ("primary-nurse", "renotify"),
        ("charge-nurse", "escalate"),
    ]


async def test_restart_resumes_retries(ward: Ward) -> None:
    ward.notifier.fail = True
    [alert] = ward.feed(crisis(at(0)))
    await ward.run(0.5)
    ward.notifier.fail = False
    ward.dispatcher = ward.new_dispatcher()
    await ward.run(0.6)
    assert ward.notifier.delivered == []  # the backoff still holds
    await ward.run(1.0)
    [delivered] = ward.notifier.delivered
    assert delivered.attempt == 2 and delivered.alert_ids == (alert.id,)


# -- the message and apprise --------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_delivery_through_apprise_to_a_local_receiver(store: Store) -> None:
    with JsonReceiver() as receiver:
        store.upsert_care_team(CareTeam(TEAM, "Ward 3", (receiver.url,)))
        store.upsert_patient(Patient(PATIENT, DISPLAY_NAME, TEAM))
        policy = NotificationPolicy.from_yaml("worklist_url: https://ww.example.org")
        now = T0
        dispatcher = Dispatcher(store, AppriseNotifier(timeout=10), policy, lambda: now)
        engine = AlertEngine(store, clock=lambda: now, sinks=[dispatcher.submit])
        store.write_observations([crisis(at(0))])
        [alert] = engine.process([crisis(at(0))])
        [attempt] = await dispatcher.run_once(now)
        assert receiver.received, "nothing arrived"
    assert attempt.delivered and attempt.result == "sent" and attempt.targets == 1
    assert attempt.target == "care-team" and attempt.alert_ids == (alert.id,)
    [message] = receiver.received
    text = f"{message['title']}\n{message['message']}"
    assert PATIENT in text and "Hypertensive crisis" in text
    assert f"https://ww.example.org/#/alerts/{alert.id}" in text
    assert DISPLAY_NAME not in text and "Testpatient" not in text
    assert message["type"] == "failure"  # apprise's type for urgent


async def test_failed_apprise_delivery_is_stored_with_its_result(ward: Ward) -> None:
    bad = f"json://127.0.0.1:{_closed_port()}/x"
    ward.store.upsert_care_team(CareTeam(TEAM, "Ward 3", (bad,)))
    dispatcher = Dispatcher(
        ward.store, AppriseNotifier(timeout=10), NotificationPolicy(), lambda: ward.now
    )
    ward.engine.add_sink(dispatcher.submit)
    [alert] = ward.feed(crisis(at(0)))
    [attempt] = await dispatcher.run_once(at(0))
    assert not attempt.delivered and attempt.result == "failure" and attempt.targets == 1
    assert attempt.alert_ids == (alert.id,)


def test_sms_like_channels_get_a_short_text_without_values() -> None:
    alert = Alert(
        PATIENT,
        "bp.hypertensive_crisis",
        "blood_pressure",
        "urgent",
        T0,
        "systolic 192 mmHg above 180",
        id=7,
    )
    n = Notification(
        PATIENT,
        TEAM,
        "escalate",
        1,
        "charge-nurse",
        ("charge-nurse",),
        (Target(url="twilio://AC1:t@15551230000/15557650000", tags=("charge-nurse",)),),
        (NotifiedAlert(alert, "Hypertensive crisis", "https://ww.example.org/#/alerts/7"),),
        T0,
    )
    short = notification_short(n)
    assert short == (
        "wardwatch URGENT ESCALATED p-001: Hypertensive crisis 08:00Z "
        "https://ww.example.org/#/alerts/7"
    )
    assert "192" not in short and len(short) <= 160
    assert is_sms_like("twilio://AC1:t@15551230000/15557650000")
    assert is_sms_like("sns://A/B/us-east-1/+15551234567")
    assert not is_sms_like("json://127.0.0.1:9/x")


# -- the policy file ----------------------------------------------------------------------------


def test_example_policy_loads() -> None:
    policy = NotificationPolicy.load(ROOT / "deploy" / "alerting-policy.example.yaml")
    team = CareTeam("ward-3", "Ward 3", ("json://127.0.0.1:9/x",))
    urgent = policy.plan(team, "urgent")
    assert [s.label for s in urgent.steps] == ["primary-nurse", "charge-nurse", "on-call-physician"]
    assert [s.after for s in urgent.steps] == [
        timedelta(0),
        timedelta(minutes=10),
        timedelta(minutes=20),
    ]
    assert policy.plan(team, "info").steps == ()
    assert policy.plan(team, "warning").repeat_interval == timedelta(minutes=30)


def test_defaults_without_a_policy_entry() -> None:
    policy = NotificationPolicy()
    team = CareTeam("ward-9", "Ward 9", ("json://127.0.0.1:9/x",))
    plan = policy.plan(team, "urgent")
    assert [s.notify for s in plan.steps] == [("care-team",)]
    assert [t.tags for t in plan.targets] == [("care-team",)]
    assert plan.repeat_interval == timedelta(minutes=15)
    assert policy.plan(team, "info").repeat_interval is None
    assert policy.plan(team, "info").steps == plan.steps  # step 0 for every severity
    assert plan.group_wait == timedelta(0) and plan.retries.count == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("teams: {w: {escalaton: []}}", r"teams\.w\.escalaton: unknown key"),
        ("defaults: {group_wait: soon}", r"defaults\.group_wait: a duration is"),
        (
            "teams: {w: {targets: [{url: 'json://a/b', tags: [nurse]}], "
            "escalation: [{after: 0, notify: [charge]}]}}",
            r"teams\.w: .*escalation\.0\.notify: no target has tag\(s\) charge",
        ),
        (
            "teams: {w: {escalation: [{after: 0, notify: [care-team]}, "
            "{after: 0, notify: [care-team]}]}}",
            r"teams\.w\.escalation: .*step 1: 'after' must be later",
        ),
        ("teams: {w: {escalation: [{after: 5m, notify: [care-team]}]}}", r"'after' must be 0"),
        ("teams: {w: {routes: {critical: {}}}}", r"teams\.w\.routes\.critical"),
        ("teams: {w: {targets: [{url: 'json://a/b', tags: ['1:x']}]}}", r"not a plain name"),
        ("worklist_url: ftp://x", r"worklist_url: must be an http\(s\) URL"),
        ("- 1", r"top level must be a mapping"),
    ],
)
def test_policy_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        NotificationPolicy.from_yaml(text)


def test_policy_errors_never_echo_a_url() -> None:
    with pytest.raises(PolicyError) as info:
        NotificationPolicy.from_yaml(
            "teams: {w: {targets: [{url: 'secret-token-url', tags: [a]}]}}"
        )
    assert "secret-token" not in str(info.value)


async def test_alerting_hook_runs_engine_and_dispatcher(sqlite_store: Store) -> None:
    with JsonReceiver() as receiver:
        sqlite_store.upsert_care_team(CareTeam(TEAM, "Ward 3", (receiver.url,)))
        sqlite_store.upsert_patient(Patient(PATIENT, DISPLAY_NAME, TEAM))
        hook, tasks = alerting_hook(sqlite_store, AppriseNotifier(timeout=10))
        sqlite_store.write_observations([crisis(at(0))])
        hook([crisis(at(0))])
        await tasks.drain()
        assert len(receiver.received) == 1
