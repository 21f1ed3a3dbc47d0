"""Care plans and proposals: the store contract (SQLite and TimescaleDB), the proposal
generator's triggers, accepting and rejecting, and the FHIR Task / CarePlan shapes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.careplan import CarePlan as FhirCarePlan
from fhir.resources.R4B.task import Task as FhirTask

from alerting.careplans import (
    care_plan_resource,
    check_change,
    decide_proposal,
    effective_thresholds,
    proposal_task,
)
from alerting.changes import AlertChange
from alerting.errors import CarePlanChangeError, ProposalDecidedError, ProposalNotFoundError
from alerting.proposals import (
    BP_TWICE_DAILY,
    DIURETIC_REVIEW,
    INSULIN_REVIEW,
    OUTREACH_CALL,
    ProposalGenerator,
)
from ingest.errors import StoreError
from wardwatch.store import Alert, Patient, Store, StoredObservation
from wardwatch.store_careplans import CarePlan, Proposal

T0 = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)


def reading(
    patient: str, device: str, kind: str, at: datetime, gateway: str | None = "hub-1"
) -> StoredObservation:
    """A stored row as ingest makes it (the resource is not read by these tests)."""
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


def proposal(patient: str = "p-1", code: str = BP_TWICE_DAILY, **kw: Any) -> Proposal:
    kw.setdefault("description", "Increase blood pressure readings to twice daily")
    kw.setdefault("created_at", T0)
    return Proposal(patient=patient, code=code, **kw)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Forgetful:
    """Records engine.forget calls (the engine seam decide_proposal uses)."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget(self, patient_id: str) -> None:
        self.forgotten.append(patient_id)


# -- store contract: care plans ------------------------------------------------------------


def test_care_plan_put_get_bumps_version(store: Store) -> None:
    assert store.get_care_plan("p-1") is None
    first = store.put_care_plan(
        CarePlan("p-1", "Heart failure", {"weight.gain.2kg_3d": 1.5}, {"body_weight": 24.0})
    )
    assert first.version == 1
    again = store.put_care_plan(
        replace(first, schedule={"body_weight": 24.0, "blood_pressure": 12.0}, updated_by="rn")
    )
    assert again.version == 2
    got = store.get_care_plan("p-1")
    assert got == again
    assert got is not None and got.schedule == {"body_weight": 24.0, "blood_pressure": 12.0}
    assert got.thresholds == {"weight.gain.2kg_3d": 1.5}
    store.put_care_plan(CarePlan("p-0", "Hypertension", updated_at=T0, updated_by="dr"))
    plans = store.list_care_plans()
    assert [p.patient for p in plans] == ["p-0", "p-1"]
    assert plans[0].updated_at == T0 and plans[0].updated_by == "dr"


def test_put_care_plan_ignores_the_callers_version(store: Store) -> None:
    store.put_care_plan(CarePlan("p-1", "Plan"))
    stale = store.put_care_plan(CarePlan("p-1", "Plan", version=1))
    assert stale.version == 2


# -- store contract: proposals -------------------------------------------------------------


def test_add_proposal_dedupes_open_ones_per_patient_and_code(store: Store) -> None:
    first = store.add_proposal(
        proposal(reason_alerts=(3, 7), change={"schedule": {"blood_pressure": 12.0}})
    )
    assert first.id is not None
    assert first.reason_alerts == (3, 7)
    assert first.change == {"schedule": {"blood_pressure": 12.0}}
    again = store.add_proposal(proposal(created_at=T0 + timedelta(hours=1)))
    assert again == first  # still open: the same one back
    other = store.add_proposal(proposal(code=DIURETIC_REVIEW, due=T0 + timedelta(hours=24)))
    assert other.id != first.id and other.due == T0 + timedelta(hours=24)
    assert len(store.list_proposals()) == 2
    assert [p.code for p in store.list_proposals(patient="p-1", status="proposed")] == [
        BP_TWICE_DAILY,
        DIURETIC_REVIEW,
    ]
    assert store.list_proposals(patient="p-2") == []
    assert store.get_proposal(first.id) == first
    assert store.get_proposal(10_000) is None


def test_decide_proposal_once_then_a_new_one_may_open(store: Store) -> None:
    first = store.add_proposal(proposal())
    decided = replace(
        first, status="rejected", decided_at=T0, decided_by="rn-ana", decision_note="on holiday"
    )
    store.decide_proposal(decided)
    assert store.get_proposal(first.id or 0) == decided
    with pytest.raises(StoreError):
        store.decide_proposal(replace(decided, status="accepted"))
    assert store.list_proposals(status="proposed") == []
    assert [p.id for p in store.list_proposals(status="rejected")] == [first.id]
    second = store.add_proposal(proposal(created_at=T0 + timedelta(days=1)))
    assert second.id != first.id and second.status == "proposed"


def test_decide_proposal_of_unknown_id_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError):
        store.decide_proposal(
            replace(proposal(), id=999, status="accepted", decided_at=T0, decided_by="rn")
        )


# -- store contract: last readings ---------------------------------------------------------


def test_last_readings_track_the_latest_per_device_and_kind(store: Store) -> None:
    store.upsert_patient(Patient("p-1", "Synthetic One"))
    store.upsert_patient(Patient("p-2", "Synthetic Two"))
    store.pair_device("cuff-1", "p-1")
    store.pair_device("oxi-1", "p-1")
    store.pair_device("scale-9", "p-2")  # never sends anything
    rows = [
        reading("p-1", "cuff-1", "blood_pressure", T0),
        reading("p-1", "cuff-1", "blood_pressure", T0 + timedelta(hours=12), gateway="hub-2"),
        reading("p-1", "oxi-1", "spo2", T0 + timedelta(hours=1)),
        reading("p-1", "oxi-1", "heart_rate", T0 + timedelta(hours=1)),
    ]
    assert store.write_observations(rows) == 4
    # an older reading arriving late and a duplicate do not move anything back
    store.write_observations([reading("p-1", "cuff-1", "blood_pressure", T0 - timedelta(days=1))])
    store.write_observations(rows[:1])
    got = {(r.patient, r.device, r.kind): r for r in store.last_readings()}
    assert set(got) == {
        ("p-1", "cuff-1", "blood_pressure"),
        ("p-1", "oxi-1", "spo2"),
        ("p-1", "oxi-1", "heart_rate"),
        ("p-2", "scale-9", None),
    }
    cuff = got[("p-1", "cuff-1", "blood_pressure")]
    assert cuff.at == T0 + timedelta(hours=12) and cuff.gateway == "hub-2" and cuff.paired
    assert got[("p-1", "oxi-1", "spo2")].at == T0 + timedelta(hours=1)
    unheard = got[("p-2", "scale-9", None)]
    assert unheard.paired and unheard.gateway is None
    assert unheard.at.tzinfo is not None


def test_last_readings_mark_a_device_re_paired_to_another_patient(store: Store) -> None:
    store.upsert_patient(Patient("p-1", "Synthetic One"))
    store.upsert_patient(Patient("p-2", "Synthetic Two"))
    store.pair_device("cuff-1", "p-1")
    store.write_observations([reading("p-1", "cuff-1", "blood_pressure", T0)])
    store.pair_device("cuff-1", "p-2")
    got = {(r.patient, r.device, r.kind): r for r in store.last_readings()}
    assert not got[("p-1", "cuff-1", "blood_pressure")].paired
    assert got[("p-2", "cuff-1", None)].paired  # the new patient: paired, nothing sent yet
    store.write_observations(
        [reading("p-2", "cuff-1", "blood_pressure", T0 + timedelta(days=1), gateway=None)]
    )
    got = {(r.patient, r.device, r.kind): r for r in store.last_readings()}
    assert ("p-2", "cuff-1", None) not in got
    assert got[("p-2", "cuff-1", "blood_pressure")].paired
    assert got[("p-2", "cuff-1", "blood_pressure")].gateway is None


# -- effective thresholds and decisions ---------------------------------------------------


def test_effective_thresholds_patient_over_plan(store: Store) -> None:
    assert effective_thresholds(store, "p-1") == {}
    store.put_care_plan(CarePlan("p-1", "Plan", {"a": 1.0, "b": 2.0}))
    assert effective_thresholds(store, "p-1") == {"a": 1.0, "b": 2.0}
    store.upsert_patient(Patient("p-1", "Synthetic One", thresholds={"b": 3.0}))
    assert effective_thresholds(store, "p-1") == {"a": 1.0, "b": 3.0}


def test_accept_applies_the_change_and_forgets_the_patient(store: Store) -> None:
    store.put_care_plan(CarePlan("p-1", "Plan", {"x": 1.0}, {"body_weight": 24.0}))
    open_ = store.add_proposal(
        proposal(change={"schedule": {"blood_pressure": 12}, "thresholds": {"y": 2}})
    )
    engine = Forgetful()
    at = T0 + timedelta(hours=3)
    decided = decide_proposal(store, open_.id or 0, True, "rn-ana", at, "agreed", engine)
    assert decided.status == "accepted" and decided.decided_by == "rn-ana"
    assert decided.decided_at == at and decided.decision_note == "agreed"
    assert store.get_proposal(open_.id or 0) == decided
    plan = store.get_care_plan("p-1")
    assert plan is not None
    assert plan.version == 2 and plan.updated_by == "rn-ana" and plan.updated_at == at
    assert plan.schedule == {"body_weight": 24.0, "blood_pressure": 12.0}
    assert plan.thresholds == {"x": 1.0, "y": 2.0}
    assert engine.forgotten == ["p-1"]
    with pytest.raises(ProposalDecidedError):
        decide_proposal(store, open_.id or 0, False, "rn-bo", at)
    assert store.get_care_plan("p-1") == plan


def test_accept_without_a_plan_creates_one(store: Store) -> None:
    open_ = store.add_proposal(proposal(change={"schedule": {"blood_pressure": 12.0}}))
    decide_proposal(store, open_.id or 0, True, "rn-ana", T0)
    plan = store.get_care_plan("p-1")
    assert plan is not None and plan.version == 1 and plan.schedule == {"blood_pressure": 12.0}


def test_reject_records_the_decision_and_leaves_the_plan(store: Store) -> None:
    store.put_care_plan(CarePlan("p-1", "Plan", schedule={"blood_pressure": 24.0}))
    open_ = store.add_proposal(proposal(change={"schedule": {"blood_pressure": 12.0}}))
    engine = Forgetful()
    decided = decide_proposal(store, open_.id or 0, False, "rn-ana", T0, "patient declined", engine)
    assert decided.status == "rejected" and decided.decision_note == "patient declined"
    plan = store.get_care_plan("p-1")
    assert plan is not None and plan.version == 1 and plan.schedule == {"blood_pressure": 24.0}
    assert engine.forgotten == []
    with pytest.raises(ProposalDecidedError):
        decide_proposal(store, open_.id or 0, True, "rn-ana", T0)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"schedule": {"blood_pressure": 0}}, "outside"),
        ({"schedule": {"no_such_kind": 12}}, "unknown kind"),
        ({"schedule": {"blood_pressure": "twice"}}, "not a number"),
        ({"thresholds": {"x": True}}, "not a number"),
        ({"medication": {"furosemide": 40}}, "unknown care-plan change keys"),
    ],
)
def test_a_bad_change_is_refused_before_anything_is_written(
    store: Store, change: dict[str, Any], fragment: str
) -> None:
    open_ = store.add_proposal(proposal(change=change))
    with pytest.raises(CarePlanChangeError, match=fragment):
        decide_proposal(store, open_.id or 0, True, "rn-ana", T0)
    assert store.get_proposal(open_.id or 0) == open_
    assert store.get_care_plan("p-1") is None


def test_check_change_refuses_non_finite_numbers() -> None:
    with pytest.raises(CarePlanChangeError, match="not a finite number"):
        check_change({"thresholds": {"x": float("nan")}})
    assert check_change({"schedule": {"cgm_glucose": 0.25}}) == {
        "schedule": {"cgm_glucose": 0.25},
        "thresholds": {},
    }


def test_decide_refuses_unknown_ids_missing_actor_and_naive_times(store: Store) -> None:
    with pytest.raises(ProposalNotFoundError):
        decide_proposal(store, 12345, True, "rn-ana", T0)
    open_ = store.add_proposal(proposal())
    with pytest.raises(CarePlanChangeError, match="who"):
        decide_proposal(store, open_.id or 0, True, " ", T0)
    with pytest.raises(CarePlanChangeError, match="time zone"):
        decide_proposal(store, open_.id or 0, True, "rn", datetime(2024, 5, 6, 8, 0))


# -- the proposal generator -----------------------------------------------------------------


def open_alert(store: Store, patient: str, rule: str, kind: str, at: datetime) -> AlertChange:
    alert = store.insert_alert(Alert(patient, rule, kind, "warning", at, "synthetic"))
    return AlertChange(alert, "opened", at, "engine")


def test_rising_bp_trend_proposes_twice_daily_readings_once(store: Store) -> None:
    gen = ProposalGenerator(store, FakeClock(T0))
    change = open_alert(store, "p-1", "bp.trend.rising", "blood_pressure", T0)
    gen([change, replace(change, action="updated")])
    gen([change])  # the same again: still one open proposal
    (got,) = store.list_proposals()
    assert got.code == BP_TWICE_DAILY and got.patient == "p-1"
    assert got.change == {"schedule": {"blood_pressure": 12.0}}
    assert got.reason_alerts == (change.alert.id,) and got.created_at == T0


def test_no_twice_daily_proposal_when_the_plan_already_has_it(store: Store) -> None:
    store.put_care_plan(CarePlan("p-1", "Plan", schedule={"blood_pressure": 12.0}))
    gen = ProposalGenerator(store, FakeClock(T0))
    gen([open_alert(store, "p-1", "bp.trend.rising", "blood_pressure", T0)])
    assert store.list_proposals() == []


@pytest.mark.parametrize("rule", ["weight.gain.2kg_3d", "weight.gain.3lb_1d", "weight.trend.macd"])
def test_weight_gain_proposes_a_diuretic_review_due_in_24_hours(store: Store, rule: str) -> None:
    gen = ProposalGenerator(store, FakeClock(T0))
    gen([open_alert(store, "p-1", rule, "body_weight", T0)])
    (got,) = store.list_proposals()
    assert got.code == DIURETIC_REVIEW and got.due == T0 + timedelta(hours=24)
    assert got.change == {}


def test_second_level1_hypo_in_7_days_proposes_an_insulin_review(store: Store) -> None:
    gen = ProposalGenerator(store, FakeClock(T0))
    old = open_alert(store, "p-1", "glucose.hypo.level1", "glucose", T0 - timedelta(days=9))
    store.update_alert(replace(old.alert, status="resolved", resolved_at=T0, resolved_by="rn"))
    first = open_alert(store, "p-1", "glucose.cgm.hypo.level1", "cgm_glucose", T0)
    gen([first])
    assert store.list_proposals() == []  # one in 7 days (the other is 9 days old)
    store.update_alert(
        replace(first.alert, status="resolved", resolved_at=T0, resolved_by="auto-clear")
    )
    # another patient's and a level-2 episode do not count
    gen([open_alert(store, "p-2", "glucose.hypo.level1", "glucose", T0)])
    open_alert(store, "p-1", "glucose.hypo.level2", "glucose", T0 + timedelta(days=1))
    assert store.list_proposals() == []
    second = open_alert(store, "p-1", "glucose.hypo.level1", "glucose", T0 + timedelta(days=6))
    gen([second])
    (got,) = store.list_proposals()
    assert got.code == INSULIN_REVIEW and got.patient == "p-1"
    assert set(got.reason_alerts) == {first.alert.id, second.alert.id}


def test_outreach_call_after_three_days_without_readings(store: Store) -> None:
    for pid in ("p-1", "p-2", "p-3"):
        store.upsert_patient(Patient(pid, f"Synthetic {pid}"))
    store.write_observations(
        [
            reading("p-1", "cuff-1", "blood_pressure", T0),
            reading("p-1", "oxi-1", "spo2", T0 + timedelta(hours=6)),
            reading("p-2", "cuff-2", "blood_pressure", T0 + timedelta(days=2)),
        ]
    )  # p-3 never read: nothing to miss yet
    clock = FakeClock(T0 + timedelta(days=3))
    gen = ProposalGenerator(store, clock)
    assert gen.check() == []  # p-1's last reading is 66 h old
    later = T0 + timedelta(days=3, hours=7)
    (got,) = gen.check(later)
    assert got.patient == "p-1" and got.code == OUTREACH_CALL
    assert got.created_at == later and got.due == later + timedelta(hours=24)
    assert gen.check(later + timedelta(hours=1)) == []  # proposed for this silence already
    assert store.list_proposals() == [got]
    decide_proposal(store, got.id or 0, True, "rn-ana", later + timedelta(hours=2), "called")
    assert gen.check(later + timedelta(days=1)) == []  # this silence was handled
    store.write_observations([reading("p-1", "cuff-1", "blood_pressure", later)])
    raised = {p.patient: p for p in gen.check(later + timedelta(days=3, minutes=1))}
    assert set(raised) == {"p-1", "p-2"}  # p-1 silent again; p-2 silent since day 2
    assert raised["p-1"].id != got.id


def test_a_broken_trigger_does_not_stop_the_others(store: Store) -> None:
    gen = ProposalGenerator(store, FakeClock(T0))
    changes: Sequence[AlertChange] = [
        open_alert(store, "p-1", "bp.hypertensive_crisis", "blood_pressure", T0),
        open_alert(store, "p-1", "weight.gain.3lb_1d", "body_weight", T0),
    ]
    gen(changes)
    assert [p.code for p in store.list_proposals()] == [DIURETIC_REVIEW]


# -- FHIR ----------------------------------------------------------------------------------


def test_proposal_task_validates_as_a_fhir_task(store: Store) -> None:
    plan = store.put_care_plan(CarePlan("p-1", "Hypertension", schedule={"blood_pressure": 24}))
    open_ = store.add_proposal(
        proposal(
            reason_alerts=(4,),
            change={"schedule": {"blood_pressure": 12.0}, "thresholds": {"x": 1.0}},
            due=T0 + timedelta(hours=24),
        )
    )
    doc = proposal_task(open_, plan)
    task = FhirTask.model_validate(doc)
    assert task.intent == "proposal" and task.status == "requested"
    assert doc["focus"]["reference"] == "CarePlan/careplan-p-1"
    assert doc["for"]["reference"] == "Patient/p-1"
    assert doc["authoredOn"] == "2024-05-06T08:00:00Z"
    assert doc["restriction"]["period"]["end"] == "2024-05-07T08:00:00Z"
    assert doc["reasonCode"]["text"] == "wardwatch alert 4"
    assert doc["input"][0]["valueQuantity"]["value"] == 12.0
    decided = decide_proposal(store, open_.id or 0, True, "rn-ana", T0 + timedelta(hours=1), "ok")
    done = proposal_task(decided, store.get_care_plan("p-1"))
    FhirTask.model_validate(done)
    assert done["status"] == "accepted"
    assert done["note"][0]["authorString"] == "rn-ana" and "ok" in done["note"][0]["text"]
    rejected = store.add_proposal(proposal(code=OUTREACH_CALL, description="Outreach call"))
    no = decide_proposal(store, rejected.id or 0, False, "rn-bo", T0)
    doc = proposal_task(no)
    FhirTask.model_validate(doc)
    assert doc["status"] == "rejected" and "input" not in doc


def test_care_plan_resource_validates_as_a_fhir_care_plan() -> None:
    plan = CarePlan(
        "patient_with_underscores",
        "Heart failure",
        {"weight.gain.2kg_3d": 1.5},
        {"body_weight": 24.0, "blood_pressure": 12.0},
        version=3,
        updated_at=T0,
        updated_by="rn-ana",
    )
    doc = care_plan_resource(plan)
    FhirCarePlan.model_validate(doc)
    assert doc["meta"]["versionId"] == "3"
    assert [a["detail"]["scheduledTiming"]["repeat"]["period"] for a in doc["activity"]] == [
        12.0,
        24.0,
    ]
    assert doc["subject"]["reference"].startswith("Patient/")
    assert "_" not in doc["id"]  # not a valid FHIR id: a stable UUID instead
    assert care_plan_resource(plan)["id"] == doc["id"]
