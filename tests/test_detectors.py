"""Detectors: clinical thresholds with confirmation, NEWS2, weight, BP and CGM trends.

Scenario tests on explicit event times (no wall clock), pure detectors first, then the
engine on the real SQLite store: rebuilding state after a restart, out-of-order readings,
and the work done per observation (counted store calls, not time).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerting.detectors import (
    CLINICAL_RULES,
    BloodPressureTrendDetector,
    GlucoseTrendDetector,
    News2Detector,
    WeightGainDetector,
    default_detectors,
)
from alerting.detectors.news2 import (
    News2State,
    news2_score,
    on_supplemental_oxygen,
    score_pulse,
    score_respiratory_rate,
    score_spo2,
    score_systolic,
    score_temperature,
)
from alerting.engine import AUTO_CLEAR, AlertEngine
from alerting.errors import RuleError, ThresholdOverrideError, UnusableObservationError
from alerting.notify import RecordingNotifier
from alerting.rules import IncrementalDetector, ThresholdDetector, ThresholdState
from ingest.stores.sqlite import SqliteStore
from wardwatch.fhir import reading_id
from wardwatch.store import Alert, CareTeam, Patient, StoredObservation

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
WALL = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
PATIENT = "p-det"

UNITS = {
    "glucose": "mg/dL",
    "cgm_glucose": "mg/dL",
    "spo2": "%",
    "heart_rate": "/min",
    "respiratory_rate": "/min",
    "body_temperature": "Cel",
    "body_weight": "kg",
}


def at(minutes: float = 0, *, days: float = 0) -> datetime:
    return T0 + timedelta(days=days, minutes=minutes)


def obs(
    kind: str,
    value: float,
    when: datetime,
    *,
    patient: str = PATIENT,
    unit: str | None = None,
    resource: bytes = b'{"resourceType": "Observation"}',
) -> StoredObservation:
    device = f"dev-{kind}"
    return StoredObservation(
        identifier=reading_id(device, when, kind),
        patient=patient,
        device=device,
        kind=kind,
        at=when,
        value=value,
        unit=unit or UNITS[kind],
        components={},
        resource=resource,
        received_at=when + timedelta(seconds=2),
    )


def bp(systolic: float, diastolic: float, when: datetime, *, patient: str = PATIENT) -> Any:
    return StoredObservation(
        identifier=reading_id("cuff", when, "blood_pressure"),
        patient=patient,
        device="cuff",
        kind="blood_pressure",
        at=when,
        value=None,
        unit=None,
        components={"systolic": systolic, "diastolic": diastolic},
        resource=b'{"resourceType": "Observation"}',
        received_at=when,
    )


def fired(findings: list[Any]) -> set[str]:
    return {f.rule.id for f in findings if f.firing}


def cleared(findings: list[Any]) -> set[str]:
    return {f.rule.id for f in findings if not f.firing}


# -- thresholds: glucose, vitals, confirmation -------------------------------------------


@pytest.fixture
def thresholds() -> ThresholdDetector:
    return ThresholdDetector(CLINICAL_RULES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (54, {"glucose.hypo.level1"}),  # "< 54": the limit itself is level 1 only
        (53.9, {"glucose.hypo.level1", "glucose.hypo.level2"}),
        (70, set()),
        (69.9, {"glucose.hypo.level1"}),
        (250, set()),  # level 2 hyper "> 250"; level 1 needs two readings
        (251, {"glucose.hyper.level2"}),
    ],
)
def test_ada_glucose_limits(
    thresholds: ThresholdDetector, value: float, expected: set[str]
) -> None:
    assert fired(thresholds.evaluate(obs("glucose", value, at()), state=ThresholdState())) == (
        expected
    )


def test_rules_cite_sources_and_severities_follow_the_levels(thresholds: ThresholdDetector) -> None:
    assert all(r.source for r in CLINICAL_RULES)
    severity = {r.id: r.severity for r in CLINICAL_RULES}
    assert severity["glucose.hypo.level2"] == "urgent"
    assert severity["glucose.hypo.level1"] == "warning"
    assert severity["glucose.cgm.hypo.level2"] == "urgent"
    assert severity["bp.hypertensive_crisis"] == "urgent"
    assert severity["glucose.hyper.level1"] == "info"
    assert "ADA" in next(r.source for r in CLINICAL_RULES if r.id == "glucose.hypo.level1")
    # meter and CGM read one limit: one care-plan entry moves both
    assert thresholds.parameters["glucose.hypo.level1"] == 70.0
    assert thresholds.parameters["glucose.cgm.hypo.level1.minutes"] == 15.0


def test_glucose_hysteresis(thresholds: ThresholdDetector) -> None:
    state = ThresholdState()
    assert fired(thresholds.evaluate(obs("glucose", 65, at(0)), state=state)) == {
        "glucose.hypo.level1"
    }
    inside = thresholds.evaluate(obs("glucose", 73, at(30)), state=state)  # band 70-75
    assert "glucose.hypo.level1" not in fired(inside) | cleared(inside)
    assert "glucose.hypo.level1" in cleared(
        thresholds.evaluate(obs("glucose", 76, at(60)), state=state)
    )


def test_cgm_low_must_persist_15_minutes(thresholds: ThresholdDetector) -> None:
    state = ThresholdState()
    readings = [obs("cgm_glucose", 62, at(m)) for m in (0, 5, 10)]
    for r in readings:
        assert fired(thresholds.evaluate(r, state=state)) == set()  # pending
    last = obs("cgm_glucose", 61, at(15))
    [finding] = [f for f in thresholds.evaluate(last, state=state) if f.firing]
    assert finding.rule.id == "glucose.cgm.hypo.level1"
    assert finding.since == at(0)  # the alert dates from the start of the run
    assert finding.evidence == (*(r.identifier for r in readings), last.identifier)
    assert "(4 readings over 15 min)" in finding.message


def test_cgm_run_is_broken_by_a_normal_reading_or_a_gap(thresholds: ThresholdDetector) -> None:
    state = ThresholdState()
    for m, v in ((0, 62), (5, 64), (10, 90), (15, 63), (20, 62)):
        assert fired(thresholds.evaluate(obs("cgm_glucose", v, at(m)), state=state)) == set()
    gap = ThresholdState()
    for m in (0, 5, 25, 30):  # 20 minutes without a reading: the run restarts at 25
        assert fired(thresholds.evaluate(obs("cgm_glucose", 60, at(m)), state=gap)) == set()
    assert "glucose.cgm.hypo.level1" in fired(
        thresholds.evaluate(obs("cgm_glucose", 60, at(40)), state=gap)
    )


def test_meter_hyperglycaemia_needs_two_consecutive_readings(
    thresholds: ThresholdDetector,
) -> None:
    state = ThresholdState()
    first = obs("glucose", 190, at(0))
    assert fired(thresholds.evaluate(first, state=state)) == set()
    second = obs("glucose", 200, at(240))
    [finding] = [f for f in thresholds.evaluate(second, state=state) if f.firing]
    assert finding.rule.id == "glucose.hyper.level1"
    assert finding.evidence == (first.identifier, second.identifier)
    # stateless use decides on the reading alone: a repeat-count rule cannot fire
    assert fired(thresholds.evaluate(second)) == set()


def test_confirmation_is_overridable_per_patient(thresholds: ThresholdDetector) -> None:
    plan = {"bp.hypertensive_crisis.readings": 2.0}
    state = ThresholdState()
    assert fired(thresholds.evaluate(bp(186, 100, at(0)), plan, state)) == set()
    # a second crisis reading two hours later is not a confirmation (60-minute gap limit)
    assert fired(thresholds.evaluate(bp(185, 100, at(120)), plan, state)) == set()
    confirmed = thresholds.evaluate(bp(188, 100, at(125)), plan, state)
    assert fired(confirmed) == {"bp.hypertensive_crisis"}
    assert [f.since for f in confirmed if f.firing] == [at(120)]
    with pytest.raises(ThresholdOverrideError, match="whole number"):
        thresholds.check_override("bp.hypertensive_crisis.readings", 1.5)
    with pytest.raises(ThresholdOverrideError):
        thresholds.check_override("glucose.cgm.hypo.level1.minutes", 5000)


def test_threshold_override_per_patient(thresholds: ThresholdDetector) -> None:
    plan = {"glucose.hypo.level1": thresholds.check_override("glucose.hypo.level1", 75)}
    assert fired(thresholds.evaluate(obs("glucose", 72, at()), plan)) == {"glucose.hypo.level1"}
    assert fired(thresholds.evaluate(obs("glucose", 72, at()))) == set()


@pytest.mark.parametrize(
    ("scale", "spo2", "expected"),
    [
        (1, 92, set()),
        (1, 91, {"spo2.low"}),
        (2, 91, set()),  # scale 2: 88-92% is the target
        (2, 84, set()),
        (2, 83, {"spo2.low.scale2"}),
    ],
)
def test_spo2_limit_follows_the_news2_scale_of_the_care_plan(
    thresholds: ThresholdDetector, scale: int, spo2: float, expected: set[str]
) -> None:
    plan = {"news2.spo2_scale": thresholds.check_override("news2.spo2_scale", scale)}
    assert fired(thresholds.evaluate(obs("spo2", spo2, at()), plan)) == expected


def test_spo2_scale_flag_is_checked(thresholds: ThresholdDetector) -> None:
    with pytest.raises(ThresholdOverrideError, match="not one of 1, 2"):
        thresholds.check_override("news2.spo2_scale", 3)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("heart_rate", 130, set()),
        ("heart_rate", 131, {"heart_rate.high"}),
        ("heart_rate", 41, set()),
        ("heart_rate", 40, {"heart_rate.low"}),
        ("respiratory_rate", 25, {"respiratory_rate.high"}),
        ("respiratory_rate", 8, {"respiratory_rate.low"}),
        ("body_temperature", 38.0, set()),
        ("body_temperature", 38.1, {"temperature.fever"}),
        ("body_temperature", 39.1, {"temperature.fever", "temperature.high"}),
        ("body_temperature", 35.0, {"temperature.low"}),
    ],
)
def test_news2_single_parameter_limits(
    thresholds: ThresholdDetector, kind: str, value: float, expected: set[str]
) -> None:
    assert fired(thresholds.evaluate(obs(kind, value, at()))) == expected


def test_fahrenheit_is_converted(thresholds: ThresholdDetector) -> None:
    assert fired(thresholds.evaluate(obs("body_temperature", 102.6, at(), unit="[degF]"))) == {
        "temperature.fever",
        "temperature.high",
    }


def test_late_reading_older_than_the_window_is_decided_alone(
    thresholds: ThresholdDetector,
) -> None:
    state = ThresholdState()
    for m in range(0, 24 * 60 * 3, 60):  # three days of hourly normal CGM readings
        thresholds.evaluate(obs("cgm_glucose", 110, at(m)), state=state)
    held = state.size()
    late = thresholds.evaluate(obs("cgm_glucose", 50, at(-600)), state=state)
    assert fired(late) == set()  # a CGM low needs its 15 minutes: one old reading cannot
    assert state.size() == held  # and the window is untouched
    assert held <= 27  # bounded: 25 h of hourly readings, not three days


# -- NEWS2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("func", "cases"),
    [
        (score_respiratory_rate, [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (25, 3)]),
        (score_systolic, [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (220, 3)]),
        (score_pulse, [(40, 3), (41, 1), (51, 0), (90, 0), (91, 1), (111, 2), (131, 3)]),
        (score_temperature, [(35.0, 3), (35.1, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.1, 2)]),
    ],
)
def test_news2_chart_bands(func: Any, cases: list[tuple[float, int]]) -> None:
    assert [func(v) for v, _ in cases] == [s for _, s in cases]


def test_news2_spo2_scales() -> None:
    assert [score_spo2(v) for v in (91, 92, 93, 94, 95, 96)] == [3, 2, 2, 1, 1, 0]
    assert [score_spo2(v, 2) for v in (83, 84, 86, 88, 92, 97)] == [3, 2, 1, 0, 0, 0]
    assert [score_spo2(v, 2, on_oxygen=True) for v in (92, 93, 95, 97)] == [0, 1, 2, 3]


def test_news2_aggregate_bands() -> None:
    assert news2_score({"pulse": 70, "spo2": 97}).band == "none"
    assert news2_score({"pulse": 95}).band == "low"
    assert news2_score({"pulse": 70, "respiratory_rate": 26}).band == "low_medium"
    assert news2_score({"pulse": 115, "spo2": 93, "temperature": 38.5}).total == 5
    high = news2_score({"respiratory_rate": 25, "spo2": 91, "pulse": 111})
    assert (high.total, high.band) == (8, "high")
    assert news2_score({"pulse": 70}, on_oxygen=True).parts["air_or_oxygen"] == 2


def _o2(flow: float) -> bytes:
    return json.dumps(
        {
            "resourceType": "Observation",
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "3151-8"}]},
                    "valueQuantity": {"value": flow, "unit": "L/min"},
                }
            ],
        }
    ).encode()


def test_supplemental_oxygen_is_read_from_the_spo2_observation() -> None:
    assert on_supplemental_oxygen(_o2(2.0))
    assert not on_supplemental_oxygen(_o2(0.0))
    assert not on_supplemental_oxygen(b'{"resourceType": "Observation"}')
    detector, state = News2Detector(), News2State()
    [high] = [
        f for f in detector.evaluate(obs("spo2", 90, at(), resource=_o2(3)), {}, state) if f.firing
    ]
    assert high.rule.id == "news2.medium"  # SpO2 90% scores 3, oxygen 2: 5
    assert "oxygen" in high.message


def test_news2_aggregate_from_latest_fresh_vitals() -> None:
    detector, state = News2Detector(), News2State()
    assert fired(detector.evaluate(obs("respiratory_rate", 25, at(0)), {}, state)) == {
        "news2.low_medium"
    }
    detector.evaluate(obs("spo2", 91, at(10)), {}, state)
    findings = detector.evaluate(obs("heart_rate", 112, at(20)), {}, state)
    assert fired(findings) == {"news2.high"}  # 3 + 3 + 2
    [high] = [f for f in findings if f.firing]
    assert high.value == 8
    assert high.rule.severity == "urgent"
    assert "3 of 5 measured parameters fresh" in high.message
    assert len(high.evidence) == 3
    # a day and a half later only the newest reading is fresh: the score falls to 0
    later = detector.evaluate(obs("heart_rate", 80, at(days=1.5)), {}, state)
    assert fired(later) == set()
    assert {"news2.high", "news2.medium", "news2.low_medium"} <= cleared(later)


def test_news2_late_reading_changes_nothing() -> None:
    detector, state = News2Detector(), News2State()
    detector.evaluate(obs("heart_rate", 80, at(10)), {}, state)
    assert detector.evaluate(obs("heart_rate", 150, at(0)), {}, state) == []


def test_news2_scale_2_and_low_band_opt_in() -> None:
    detector = News2Detector()
    scale2 = {"news2.spo2_scale": 2.0}
    assert fired(detector.evaluate(obs("spo2", 89, at()), scale2, News2State())) == set()
    assert fired(detector.evaluate(obs("spo2", 89, at()), {}, News2State())) == {"news2.low_medium"}
    low = {"news2.low.enabled": 1.0}
    assert fired(detector.evaluate(obs("heart_rate", 95, at()), {}, News2State())) == set()
    assert fired(detector.evaluate(obs("heart_rate", 95, at()), low, News2State())) == {"news2.low"}


def test_news2_band_edge_does_not_flap() -> None:
    detector, state = News2Detector(), News2State()
    assert fired(detector.evaluate(obs("spo2", 91, at(0)), {}, state)) == {"news2.low_medium"}
    wobble = detector.evaluate(obs("spo2", 92, at(60)), {}, state)  # spo2 scores 2
    assert "news2.low_medium" not in cleared(wobble)
    assert "news2.low_medium" in cleared(detector.evaluate(obs("spo2", 96, at(120)), {}, state))


# -- weight ------------------------------------------------------------------------------


def _weights(detector: WeightGainDetector, kgs: list[float], state: Any, **kw: Any) -> list[Any]:
    out: list[Any] = []
    for day, kg in enumerate(kgs):
        out = detector.evaluate(obs("body_weight", kg, at(days=day), **kw), {}, state)
    return out


def test_weight_gain_2kg_in_3_days() -> None:
    detector = WeightGainDetector()
    assert "weight.gain.2kg_3d" not in fired(
        _weights(detector, [80.0, 80.7, 81.3, 82.0], detector.new_state())
    )
    findings = _weights(detector, [80.0, 80.7, 81.4, 82.1], detector.new_state())
    assert "weight.gain.2kg_3d" in fired(findings)
    assert "weight.gain.3lb_1d" not in fired(findings)
    [gain] = [f for f in findings if f.rule.id == "weight.gain.2kg_3d"]
    assert gain.value == pytest.approx(2.1)
    assert "+2.1 kg in 3 days (80 -> 82.1 kg)" in gain.message


def test_weight_gain_3lb_in_a_day_in_pounds() -> None:
    detector = WeightGainDetector()
    just_under = _weights(detector, [176.0, 178.9], detector.new_state(), unit="[lb_av]")
    assert "weight.gain.3lb_1d" not in fired(just_under)
    over = _weights(detector, [176.0, 179.2], detector.new_state(), unit="[lb_av]")
    assert fired(over) == {"weight.gain.3lb_1d"}


def test_daily_weight_is_the_first_reading_of_the_day() -> None:
    detector = WeightGainDetector()
    state = detector.new_state()
    detector.evaluate(obs("body_weight", 80.0, at(0)), {}, state)
    morning = obs("body_weight", 80.2, at(days=1))
    detector.evaluate(morning, {}, state)
    evening = obs("body_weight", 82.0, at(12 * 60, days=1))  # after dinner
    assert detector.evaluate(evening, {}, state) == []


def test_weight_macd_fires_on_a_steady_rise_not_on_noise() -> None:
    detector = WeightGainDetector()
    noise = [80.0 + (0.4 if d % 2 else -0.4) for d in range(30)]
    assert "weight.trend.macd" not in fired(_weights(detector, noise, detector.new_state()))
    rise = [80.0] * 16 + [80.0 + 0.15 * d for d in range(1, 15)]  # ~2 kg over 14 days
    state = detector.new_state()
    fired_on = [
        d
        for d, kg in enumerate(rise)
        if "weight.trend.macd"
        in fired(detector.evaluate(obs("body_weight", kg, at(days=d)), {}, state))
    ]
    assert fired_on
    assert "weight.gain.2kg_3d" not in fired(_weights(detector, rise, detector.new_state()))


def test_weight_late_reading_within_the_window_is_judged_on_its_day() -> None:
    detector = WeightGainDetector()
    state = detector.new_state()
    detector.evaluate(obs("body_weight", 80.0, at(days=0)), {}, state)
    detector.evaluate(obs("body_weight", 80.1, at(days=2)), {}, state)
    late = detector.evaluate(obs("body_weight", 81.6, at(days=1)), {}, state)
    assert "weight.gain.3lb_1d" in fired(late)
    [f] = [f for f in late if f.firing]
    assert f.at == at(days=1)


# -- blood-pressure trend ------------------------------------------------------------------


def _bp_days(detector: BloodPressureTrendDetector, values: list[float], state: Any) -> list[Any]:
    out: list[Any] = []
    for day, sbp in enumerate(values):
        out = detector.evaluate(bp(sbp, 85, at(days=day)), {}, state)
    return out


def test_rising_bp_trend_reports_slope_and_confidence() -> None:
    detector = BloodPressureTrendDetector()
    wobble = [3, -2, 1, -3, 2, 0, -1, 3, -2, 1, -3, 2, 0, -1]
    rising = [130 + 2.5 * d + w for d, w in enumerate(wobble)]
    [finding] = _bp_days(detector, rising, detector.new_state())
    assert finding.firing and finding.rule.id == "bp.trend.rising"
    assert finding.value == pytest.approx(2.5, abs=0.3)
    assert "mmHg/day over 14 days (95% CI " in finding.message


def test_flat_or_noisy_bp_does_not_trend() -> None:
    detector = BloodPressureTrendDetector()
    flat = [130 + (8 if d % 3 == 0 else -4) for d in range(14)]
    assert fired(_bp_days(detector, flat, detector.new_state())) == set()
    # a real but uncertain rise: the point slope is above 1, the CI's lower bound is not
    noisy = [130 + 1.5 * d + (12 if d % 2 else -12) for d in range(14)]
    assert fired(_bp_days(detector, noisy, detector.new_state())) == set()
    # too few days for a fit
    assert _bp_days(detector, [130, 140, 150, 160, 170, 180], detector.new_state()) == []


def test_bp_trend_counts_a_reading_once() -> None:
    detector = BloodPressureTrendDetector()
    state = detector.new_state()
    reading = bp(140, 85, at())
    detector.evaluate(reading, {}, state)
    assert detector.evaluate(reading, {}, state) == []
    assert state.days[at().date()].count == 1


# -- CGM rate of change and predicted low -------------------------------------------------


def _cgm(detector: GlucoseTrendDetector, series: list[tuple[float, float]], state: Any) -> Any:
    out: list[Any] = []
    for m, v in series:
        out = detector.evaluate(obs("cgm_glucose", v, at(m)), {}, state)
    return out


def test_falling_fast_and_predicted_low() -> None:
    detector = GlucoseTrendDetector()
    falling = [(m, 150 - 3.5 * m) for m in range(0, 16, 5)]  # 150 -> 97.5 at 3.5/min
    findings = _cgm(detector, falling, detector.new_state())
    assert fired(findings) == {"glucose.rate.falling", "glucose.predicted_low"}
    [low] = [f for f in findings if f.rule.id == "glucose.predicted_low"]
    assert low.value == pytest.approx(97.5 - 70)
    assert low.rule.severity == "urgent"


def test_falling_just_under_the_rate_limit() -> None:
    detector = GlucoseTrendDetector()
    findings = _cgm(detector, [(m, 150 - 2.9 * m) for m in range(0, 16, 5)], detector.new_state())
    # 2.9 mg/dL/min is not "falling fast"; 106.5 now is 48.5 in 20 minutes: predicted low
    assert fired(findings) == {"glucose.predicted_low"}


def test_predicted_low_without_a_fast_fall() -> None:
    detector = GlucoseTrendDetector()
    findings = _cgm(detector, [(m, 100 - 2.0 * m) for m in range(0, 21, 5)], detector.new_state())
    assert fired(findings) == {"glucose.predicted_low"}  # 60 now, 20 predicted
    steady = _cgm(detector, [(m, 100 - 0.5 * m) for m in range(0, 21, 5)], detector.new_state())
    assert "glucose.predicted_low" in cleared(steady)


def test_rising_fast() -> None:
    detector = GlucoseTrendDetector()
    findings = _cgm(detector, [(m, 100 + 4 * m) for m in range(0, 16, 5)], detector.new_state())
    assert fired(findings) == {"glucose.rate.rising"}


def test_one_reading_or_a_short_span_is_no_trend() -> None:
    detector = GlucoseTrendDetector()
    assert _cgm(detector, [(0, 200), (1, 100), (2, 40)], detector.new_state()) == []


# -- the engine: wiring, restart, out of order, work per observation ------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "d.db")
    s.migrate()
    s.upsert_care_team(CareTeam("ward-1", "Ward 1"))
    s.upsert_patient(Patient(PATIENT, "Synthetic Person", "ward-1"))
    yield s
    s.close()


def _engine(store: Any) -> AlertEngine:
    return AlertEngine(store, RecordingNotifier(), lambda: WALL)


def _summary(alerts: list[Alert]) -> list[tuple[str, str, datetime, tuple[str, ...], str]]:
    return sorted((a.rule, a.severity, a.opened_at, a.observations, a.status) for a in alerts)


def _episode() -> list[StoredObservation]:
    """Ten days: a CGM low on day 2, weight gain from day 5, a fever on day 8."""
    rows: list[StoredObservation] = []
    for day in range(10):
        rows.append(obs("body_weight", 80.0 if day < 5 else 80.0 + 1.5 * (day - 4), at(days=day)))
        rows.append(obs("body_temperature", 39.4 if day == 8 else 36.8, at(60, days=day)))
        rows.append(obs("heart_rate", 118 if day == 8 else 72, at(61, days=day)))
        rows.append(bp(128, 80, at(62, days=day)))
    for m in range(0, 60, 5):
        rows.append(obs("cgm_glucose", 100 if m < 20 else 58, at(600 + m, days=2)))
    return sorted(rows, key=lambda r: (r.at, r.identifier))


def test_default_engine_runs_every_detector(store: SqliteStore) -> None:
    engine = _engine(store)
    assert {type(d) for d in engine.detectors} == {type(d) for d in default_detectors()}
    assert all(isinstance(d, IncrementalDetector) for d in engine.detectors)
    rows = _episode()
    store.write_observations(rows)
    engine.process(rows)
    rules = Counter(a.rule for a in store.list_alerts())
    assert rules["glucose.cgm.hypo.level1"] == 1
    assert rules["weight.gain.3lb_1d"] == 1
    assert rules["weight.gain.2kg_3d"] == 1
    assert rules["temperature.high"] == 1
    [hypo] = [a for a in store.list_alerts() if a.rule == "glucose.cgm.hypo.level1"]
    assert hypo.opened_at == at(620, days=2)  # first low reading, not the confirming one
    assert len(hypo.observations) == 8  # the run of four, then each further low reading
    assert hypo.status == "open"
    [fever] = [a for a in store.list_alerts() if a.rule == "temperature.high"]
    assert fever.status == "resolved" and fever.resolved_by == AUTO_CLEAR


def test_restart_rebuilds_state_from_the_store_and_decides_the_same(tmp_path: Path) -> None:
    rows = _episode()
    results = []
    for split in (None, 20, 43):
        s = SqliteStore(tmp_path / f"r{split}.db")
        s.migrate()
        s.upsert_patient(Patient(PATIENT, "Synthetic Person"))
        s.write_observations(rows)
        if split is None:
            _engine(s).process(rows)
        else:
            _engine(s).process(rows[:split])
            _engine(s).process(rows[split:])  # a new engine: state rebuilt from the store
        results.append(_summary(s.list_alerts()))
        s.close()
    assert results[0] and results[0] == results[1] == results[2]


def test_out_of_order_cgm_gives_the_same_alerts(tmp_path: Path) -> None:
    cgm = [obs("cgm_glucose", 100 if m < 20 else 58, at(m)) for m in range(0, 60, 5)]
    shuffled = [cgm[i] for i in (0, 1, 2, 3, 5, 4, 7, 6, 8, 10, 9, 11)]
    results = []
    for name, order in (("in", cgm), ("out", shuffled)):
        s = SqliteStore(tmp_path / f"{name}.db")
        s.migrate()
        engine = _engine(s)
        for row in order:  # one reading per call, as they arrive
            s.write_observations([row])
            engine.process([row])
        results.append(
            [(a.rule, a.opened_at) for a in s.list_alerts() if a.rule.startswith("glucose.cgm")]
        )
        s.close()
    assert results[0] == results[1] == [("glucose.cgm.hypo.level1", at(20))]


class CountingStore:
    """Our store, counting the calls the engine makes (the work, not the time)."""

    def __init__(self, inner: SqliteStore) -> None:
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


def _history(days: int) -> list[StoredObservation]:
    rows: list[StoredObservation] = []
    for d in range(days):
        rows.append(obs("body_weight", 80.0 + 0.1 * (d % 3), at(days=d)))
        rows.append(bp(125 + d % 5, 80, at(30, days=d)))
        rows.append(obs("spo2", 97, at(60, days=d)))
        rows.append(obs("heart_rate", 70, at(61, days=d)))
        for m in range(0, 24 * 60, 15):
            rows.append(obs("cgm_glucose", 110 + (m % 60) / 10, at(m, days=d)))
    return rows


@pytest.mark.parametrize("days", [1, 30])
def test_work_per_observation_does_not_grow_with_history(tmp_path: Path, days: int) -> None:
    inner = SqliteStore(tmp_path / "c.db")
    inner.migrate()
    inner.upsert_patient(Patient(PATIENT, "Synthetic Person"))
    history = _history(days)
    inner.write_observations(history)
    store = CountingStore(inner)
    engine = AlertEngine(store, RecordingNotifier(), lambda: WALL)  # type: ignore[arg-type]
    # first observation: the state is rebuilt with one bounded query per kind
    first = obs("cgm_glucose", 112, at(days=days))
    inner.write_observations([first])
    engine.process([first])
    kinds = {k for d in engine.detectors for k in d.kinds}
    assert store.calls["observations"] == len(kinds)
    # then a day of readings, one per call: no history query at all, O(1) calls each
    store.calls.clear()
    new = [obs("cgm_glucose", 115, at(m, days=days)) for m in range(15, 24 * 60, 15)]
    new += [obs("body_weight", 80.1, at(5, days=days)), bp(126, 80, at(31, days=days))]
    for row in new:
        inner.write_observations([row])
        engine.process([row])
    assert store.calls["observations"] == 0
    assert store.calls["list_alerts"] == 0
    assert sum(store.calls.values()) / len(new) <= 20
    # and the state held is bounded by the detectors' windows, not by the history
    [threshold_state] = [
        s for i, s in engine._states[PATIENT].items() if isinstance(s, ThresholdState)
    ]
    assert threshold_state.size() <= 25 * 4 + 2  # 25 h of 15-minute CGM + a BP or two
    inner.close()


def test_detectors_sharing_a_parameter_must_agree_on_its_default(store: SqliteStore) -> None:
    engine = _engine(store)  # news2.spo2_scale: threshold rules and NEWS2 both read it
    assert sum("news2.spo2_scale" in d.parameters for d in engine.detectors) == 2

    class Other(News2Detector):
        @property
        def parameters(self) -> dict[str, float]:
            return {"news2.spo2_scale": 2.0}

    with pytest.raises(RuleError, match="two detectors"):
        AlertEngine(
            store, RecordingNotifier(), detectors=[ThresholdDetector(CLINICAL_RULES), Other()]
        )


def test_scale_2_care_plan_reaches_both_detectors(store: SqliteStore) -> None:
    store.upsert_patient(Patient("p-copd", "Synthetic COPD", "ward-1", {"news2.spo2_scale": 2}))
    rows = [obs("spo2", 89, at(m), patient="p-copd") for m in (0, 60)]
    store.write_observations(rows)
    assert _engine(store).process(rows) == []
    store.upsert_patient(Patient("p-copd", "Synthetic COPD", "ward-1", {}))
    more = [obs("spo2", 89, at(120), patient="p-copd")]
    store.write_observations(more)
    assert {a.rule for a in _engine(store).process(more)} == {"spo2.low", "news2.low_medium"}


def test_unreadable_observation_is_reported_not_dropped_silently(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    bad = obs("body_weight", 80, at(), unit="stone")
    with pytest.raises(UnusableObservationError):
        WeightGainDetector().evaluate(bad)
    store.write_observations([bad])
    with caplog.at_level("WARNING"):
        assert _engine(store).process([bad]) == []
    assert "unusable-observation" in caplog.text
    assert "80" not in caplog.text.replace(bad.identifier, "")
