"""Missing-data detectors on a fake clock: a silent device, a scheduled kind, a hub offline,
through the engine's ``tick(now)``; an accepted proposal's schedule takes effect."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.careplans import decide_proposal
from alerting.changes import AlertChange
from alerting.detectors import default_clock_detectors
from alerting.detectors.missing import (
    EXPECTED,
    DeviceSilentDetector,
    Expected,
    HubOfflineDetector,
)
from alerting.engine import AUTO_CLEAR, AlertEngine
from alerting.errors import RuleError
from alerting.proposals import BP_TWICE_DAILY, ProposalGenerator
from ingest.stores import open_store
from wardwatch.store import Alert, GatewayState, Patient, Store, StoredObservation
from wardwatch.store_careplans import CarePlan

T0 = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:{tmp_path / 'store.db'}")
    try:
        yield store
    finally:
        store.close()


def reading(
    patient: str, device: str, kind: str, at: datetime, gateway: str | None = "hub-1"
) -> StoredObservation:
    return StoredObservation(
        identifier=f"{device}-{kind}-{at.isoformat()}",
        patient=patient,
        device=device,
        kind=kind,
        at=at,
        value=1.0,
        unit="1",
        components={},
        resource=b"{}",
        received_at=at,
        gateway=gateway,
    )


def enrol(store: Store, patient: str, *devices: str) -> None:
    store.upsert_patient(Patient(patient, f"Synthetic {patient}"))
    for device in devices:
        store.pair_device(device, patient)


def engine_for(store: Store, clock: FakeClock) -> AlertEngine:
    return AlertEngine(store, clock=clock, clock_detectors=default_clock_detectors())


def unresolved(store: Store, rule: str) -> list[Alert]:
    return [a for a in store.list_alerts() if a.rule == rule and a.status != "resolved"]


# -- device silent ---------------------------------------------------------------------------


def test_silent_device_fires_after_interval_times_grace_and_clears_on_a_reading(
    db: Store,
) -> None:
    enrol(db, "p-1", "cuff-1")
    db.write_observations([reading("p-1", "cuff-1", "blood_pressure", T0)])
    clock = FakeClock(T0)
    engine = engine_for(db, clock)
    limit = hours(24 * EXPECTED["blood_pressure"].grace)  # 60 h: daily by default
    assert engine.tick(T0 + limit - timedelta(minutes=1)) == []
    (alert,) = engine.tick(T0 + limit + timedelta(minutes=5))
    assert alert.rule == "data.silent.blood_pressure" and alert.patient == "p-1"
    assert alert.opened_at == T0 + limit  # when the silence passed the limit (event time)
    assert alert.severity == "info" and alert.status == "open"
    assert alert.message == "no reading from cuff-1 for 60 h"
    assert engine.tick(T0 + limit + hours(3)) == []  # still silent: the same alert, unchanged
    back = T0 + hours(70)
    db.write_observations([reading("p-1", "cuff-1", "blood_pressure", back)])
    (cleared,) = engine.tick(back + timedelta(minutes=15))
    assert cleared.id == alert.id and cleared.status == "resolved"
    assert cleared.resolved_by == AUTO_CLEAR and cleared.resolved_at == back
    assert engine.tick(back + hours(1)) == []
    assert len(db.list_alerts()) == 1


def test_the_detector_reads_the_time_it_is_given_not_the_wall_clock(db: Store) -> None:
    enrol(db, "p-1", "cuff-1")
    db.write_observations([reading("p-1", "cuff-1", "blood_pressure", T0)])
    detector = DeviceSilentDetector()
    assert detector.check(db, T0 + hours(59)) == []  # the wall clock is years later
    (finding,) = detector.check(db, T0 + hours(61))
    assert finding.firing and finding.at == T0 + hours(60)
    assert finding.evidence == ("cuff-1",)


def test_an_oximeter_is_one_alert_and_a_replaced_cuff_does_not_alert(db: Store) -> None:
    enrol(db, "p-1", "oxi-1", "cuff-old", "cuff-new")
    db.write_observations(
        [
            reading("p-1", "oxi-1", "spo2", T0),
            reading("p-1", "oxi-1", "heart_rate", T0),
            reading("p-1", "cuff-old", "blood_pressure", T0 - hours(240)),
            reading("p-1", "cuff-new", "blood_pressure", T0 + hours(50)),
        ]
    )
    engine = engine_for(db, FakeClock(T0))
    changed = engine.tick(T0 + hours(61))
    assert [a.rule for a in changed] == ["data.silent.spo2"]  # not heart_rate, not the cuff


def test_a_scheduled_kind_without_any_reading_is_watched_from_the_plan(db: Store) -> None:
    enrol(db, "p-1")
    db.put_care_plan(CarePlan("p-1", "HF", schedule={"body_weight": 24.0}, updated_at=T0))
    detector = DeviceSilentDetector()
    assert detector.check(db, T0 + hours(59)) == []
    (finding,) = detector.check(db, T0 + hours(61))
    assert finding.rule.id == "data.silent.body_weight" and finding.at == T0 + hours(60)


def test_cgm_signal_loss_after_20_minutes(db: Store) -> None:
    enrol(db, "p-1", "cgm-1")
    db.write_observations([reading("p-1", "cgm-1", "cgm_glucose", T0)])
    engine = engine_for(db, FakeClock(T0))
    assert engine.tick(T0 + timedelta(minutes=19)) == []
    (alert,) = engine.tick(T0 + timedelta(minutes=21))
    assert alert.rule == "data.silent.cgm_glucose" and alert.severity == "warning"
    assert alert.opened_at == T0 + timedelta(minutes=20)


def test_a_paired_device_that_never_sent_is_watched_from_its_pairing(db: Store) -> None:
    enrol(db, "p-1", "scale-1")
    detector = DeviceSilentDetector()
    # SQLite records the pairing at the store's own time (now): nothing is overdue yet
    assert detector.check(db, datetime.now(UTC)) == []
    (finding,) = detector.check(db, datetime.now(UTC) + hours(61))
    assert finding.rule.id == "data.silent.device" and finding.evidence == ("scale-1",)


def test_a_device_re_paired_to_another_patient_stops_its_old_patients_alert(db: Store) -> None:
    enrol(db, "p-1", "cuff-1")
    enrol(db, "p-2")
    db.write_observations([reading("p-1", "cuff-1", "blood_pressure", T0)])
    engine = engine_for(db, FakeClock(T0))
    (alert,) = engine.tick(T0 + hours(61))
    db.pair_device("cuff-1", "p-2")
    db.write_observations([reading("p-2", "cuff-1", "blood_pressure", T0 + hours(62))])
    (cleared,) = engine.tick(T0 + hours(63))
    assert cleared.id == alert.id and cleared.status == "resolved"
    assert unresolved(db, "data.silent.blood_pressure") == []


def test_bad_expected_intervals_are_refused() -> None:
    with pytest.raises(RuleError):
        DeviceSilentDetector({"blood_pressure": Expected(0.0, 2.0, "x")})
    with pytest.raises(RuleError):
        DeviceSilentDetector({"blood_pressure": Expected(24.0, 0.5, "x")})
    with pytest.raises(RuleError):
        HubOfflineDetector(timedelta(minutes=-1))


# -- an accepted proposal changes the schedule the detector uses ---------------------------


def test_accepted_twice_daily_proposal_makes_the_detector_fire_sooner(db: Store) -> None:
    for patient, cuff in (("p-1", "cuff-1"), ("p-2", "cuff-2")):
        enrol(db, patient, cuff)
        db.write_observations([reading(patient, cuff, "blood_pressure", T0)])
    clock = FakeClock(T0)
    engine = engine_for(db, clock)
    generator = ProposalGenerator(db, clock)
    engine.add_sink(generator)
    # a rising-trend alert for each patient (as the BP trend detector opens it)
    for patient in ("p-1", "p-2"):
        alert = db.insert_alert(
            Alert(patient, "bp.trend.rising", "blood_pressure", "warning", T0, "synthetic")
        )
        generator([AlertChange(alert, "opened", T0, "engine")])
    proposals = {p.patient: p for p in db.list_proposals(status="proposed")}
    assert {p.code for p in proposals.values()} == {BP_TWICE_DAILY}
    decide_proposal(db, proposals["p-1"].id or 0, True, "rn-ana", T0 + hours(1), engine=engine)
    decide_proposal(db, proposals["p-2"].id or 0, False, "rn-ana", T0 + hours(1), engine=engine)
    plan = db.get_care_plan("p-1")
    assert plan is not None and plan.schedule == {"blood_pressure": 12.0}
    assert db.get_care_plan("p-2") is None
    # twice daily: 12 h x 2.5 = 30 h; p-2 keeps the daily default (60 h)
    assert engine.tick(T0 + hours(29)) == []
    (alert,) = engine.tick(T0 + hours(31))
    assert alert.patient == "p-1" and alert.rule == "data.silent.blood_pressure"
    assert alert.opened_at == T0 + hours(30)
    assert [a.patient for a in engine.tick(T0 + hours(61))] == ["p-2"]


def test_a_plan_that_allows_a_longer_silence_clears_the_alert(db: Store) -> None:
    enrol(db, "p-1", "cuff-1")
    db.write_observations([reading("p-1", "cuff-1", "blood_pressure", T0)])
    engine = engine_for(db, FakeClock(T0))
    (alert,) = engine.tick(T0 + hours(61))
    plan = CarePlan("p-1", "Plan", schedule={"blood_pressure": 24.0 * 7}, updated_at=T0)
    db.put_care_plan(replace(plan, updated_by="rn-ana"))
    (cleared,) = engine.tick(T0 + hours(62))
    assert cleared.id == alert.id and cleared.status == "resolved"
    assert cleared.resolved_at == alert.opened_at  # no reading came: dated at its opening


# -- hub offline ---------------------------------------------------------------------------


def status(gateway: str, state: str, at: datetime) -> GatewayState:
    return GatewayState(gateway, state, at, at)  # type: ignore[arg-type]


def test_hub_offline_fires_for_its_patients_after_the_grace_and_clears_online(
    db: Store,
) -> None:
    enrol(db, "p-1", "cuff-1")
    enrol(db, "p-2", "scale-2")
    enrol(db, "p-3", "cuff-3")
    db.write_observations(
        [
            reading("p-1", "cuff-1", "blood_pressure", T0, gateway="hub-1"),
            reading("p-2", "scale-2", "body_weight", T0, gateway="hub-1"),
            reading("p-3", "cuff-3", "blood_pressure", T0, gateway="hub-3"),
        ]
    )
    db.record_gateway_status(status("hub-1", "online", T0))
    db.record_gateway_status(status("hub-3", "online", T0))
    engine = engine_for(db, FakeClock(T0))
    off = T0 + hours(1)
    db.record_gateway_status(status("hub-1", "offline", off))
    assert engine.tick(off + timedelta(minutes=59)) == []
    opened = engine.tick(off + timedelta(minutes=61))
    assert sorted(a.patient for a in opened) == ["p-1", "p-2"]  # not p-3 (another hub)
    assert {a.rule for a in opened} == {"hub.offline"}
    assert {a.opened_at for a in opened} == {off + timedelta(minutes=60)}
    assert all(a.severity == "warning" and "hub-1" in a.message for a in opened)
    assert engine.tick(off + hours(5)) == []  # still offline: nothing new
    back = off + hours(6)
    db.record_gateway_status(status("hub-1", "online", back))
    cleared = engine.tick(back + timedelta(minutes=1))
    assert sorted(a.patient for a in cleared) == ["p-1", "p-2"]
    assert all(a.status == "resolved" and a.resolved_at == back for a in cleared)
    assert all(a.resolved_by == AUTO_CLEAR for a in cleared)
    assert unresolved(db, "hub.offline") == []


def test_a_short_outage_within_the_grace_does_not_alert(db: Store) -> None:
    enrol(db, "p-1", "cuff-1")
    db.write_observations([reading("p-1", "cuff-1", "blood_pressure", T0, gateway="hub-1")])
    detector = HubOfflineDetector(grace=timedelta(minutes=30))
    db.record_gateway_status(status("hub-1", "offline", T0))
    assert detector.check(db, T0 + timedelta(minutes=29)) == []
    db.record_gateway_status(status("hub-1", "online", T0 + timedelta(minutes=20)))
    assert detector.check(db, T0 + hours(2)) == []
