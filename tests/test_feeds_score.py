"""Scoring alerts against ground truth."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.feeds.score import (
    ScoredAlert,
    ScoreInputError,
    alerts_from_json,
    detects,
    score,
)
from firmware_sim.feeds.truth import (
    Episode,
    GroundTruth,
    MonitoredPatient,
    TruthError,
    load_truth,
    write_truth,
)
from wardwatch.cli import main

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


TRUTH = GroundTruth(
    scenario="unit",
    patients=(
        MonitoredPatient("a", T0, T0 + timedelta(days=7)),
        MonitoredPatient("b", T0, T0 + timedelta(days=7)),
    ),
    episodes=(
        Episode("crisis", "a", _h(10), _h(12)),
        Episode("crisis", "a", _h(50), _h(51)),
        Episode("crisis", "b", _h(20), None),
        Episode("fever", "b", _h(30), _h(40)),
    ),
)


def test_matching_sensitivity_delay_and_false_alerts() -> None:
    alerts = [
        ScoredAlert("a", "bp.hypertensive_crisis", _h(10.5)),  # crisis a#1, 30 min
        ScoredAlert("a", "bp.hypertensive_crisis", _h(12.9)),  # within the 60 min grace
        ScoredAlert("a", "bp.hypertensive_crisis", _h(14)),  # false
        ScoredAlert("b", "bp.hypertensive_crisis", _h(100)),  # open-ended crisis b, 80 h
        ScoredAlert("c", "bp.hypertensive_crisis", _h(1)),  # not in the truth
    ]
    report = score([TRUTH], alerts)
    crisis = report["episode_types"]["crisis"]
    assert (crisis["episodes"], crisis["detected"]) == (3, 2)
    assert crisis["sensitivity"] == pytest.approx(0.667)
    assert crisis["median_delay_min"] == pytest.approx((30 + 80 * 60) / 2)
    assert crisis["worst_delay_min"] == 80 * 60
    # the b alert at 100 h is past the fever window [30 h, 41 h]
    assert report["episode_types"]["fever"]["detected"] == 0
    assert report["false_alerts"] == 1
    assert report["alerts_outside_truth"] == 1
    assert report["patient_weeks"] == 2.0
    assert report["false_alerts_per_patient_week"] == 0.5
    assert crisis["false_alerts_per_patient_week"] == 0.5


def test_no_alerts_no_detections() -> None:
    report = score([TRUTH], [])
    assert report["episode_types"]["crisis"]["sensitivity"] == 0.0
    assert report["episode_types"]["crisis"]["median_delay_min"] is None
    assert report["false_alerts_per_patient_week"] == 0.0


def test_truth_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    write_truth(path, TRUTH)
    assert load_truth(path) == TRUTH
    path.write_text('{"episodes": [{"type": "x", "patient": "a", "start": "soon"}]}')
    with pytest.raises(TruthError, match=r"episodes\[0\]\.start"):
        load_truth(path)


def test_alerts_json_shapes() -> None:
    one = {"patient": "a", "rule": "r", "opened_at": "2026-01-05T10:00:00Z"}
    assert alerts_from_json([one]) == alerts_from_json({"alerts": [one]})
    with pytest.raises(ScoreInputError, match="opened_at"):
        alerts_from_json([{**one, "opened_at": None}])


def test_cli_score_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = tmp_path / "t.json"
    write_truth(truth, TRUTH)
    alerts = tmp_path / "alerts.json"
    alerts.write_text(
        json.dumps([{"patient": "a", "rule": "r", "opened_at": "2026-01-05T10:30:00Z"}])
    )
    args = ["sim", "score", "--truth", str(truth), "--alerts", str(alerts)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "crisis" in text
    assert "sens." in text
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["episode_types"]["crisis"]["detected"] == 1
    assert doc["episode_types"]["crisis"]["median_delay_min"] == 30
    assert main(["sim", "score", "--truth", str(alerts), "--alerts", str(alerts)]) == 2


def test_only_rules_that_detect_the_episode_type_match_it() -> None:
    truth = GroundTruth(
        scenario="unit",
        patients=(MonitoredPatient("g", T0, T0 + timedelta(days=7)),),
        episodes=(
            Episode("nocturnal_hypoglycaemia", "g", _h(2), _h(3)),
            Episode("sensor_signal_loss", "g", _h(10), _h(12)),
            Episode("device_silent", "g", _h(30), None),
        ),
    )
    alerts = [
        ScoredAlert("g", "glucose.rate.falling", _h(1.9)),  # before the low: false
        ScoredAlert("g", "glucose.predicted_low", _h(2.1)),  # detects the low, 6 min
        ScoredAlert("g", "glucose.cgm.hypo.level2", _h(2.5)),  # the low again
        ScoredAlert("g", "glucose.cgm.hyper.level1", _h(11)),  # in the gap, wrong rule: false
        ScoredAlert("g", "temperature.fever", _h(40)),  # no detector for silence: false
    ]
    report = score([truth], alerts)
    types = report["episode_types"]
    assert types["nocturnal_hypoglycaemia"]["detected"] == 1
    assert types["nocturnal_hypoglycaemia"]["median_delay_min"] == 6.0
    assert types["sensor_signal_loss"]["sensitivity"] == 0.0
    assert types["device_silent"]["sensitivity"] == 0.0
    assert report["false_alerts"] == 3


@pytest.mark.parametrize(
    ("rule", "episode", "expected"),
    [
        ("bp.hypertensive_crisis", "hypertensive_crisis", True),
        ("bp.hypertensive_crisis_x", "hypertensive_crisis", False),
        ("bp.trend.rising", "bp_rising_trend", True),
        ("bp.hypertensive_crisis", "bp_rising_trend", False),
        ("weight.gain.2kg_3d", "heart_failure_decompensation", True),
        ("weight.trend.macd", "heart_failure_decompensation", True),
        ("news2.low_medium", "tachycardia", True),
        ("heart_rate.high", "tachycardia", True),
        ("heart_rate.low", "tachycardia", False),
        ("spo2.low.scale2", "copd_desaturation", True),
        ("glucose.cgm.hyper.level2", "postprandial_hyperglycaemia", True),
        ("glucose.predicted_low", "hypo_level1", True),
        ("glucose.rate.falling", "hypo_level2", False),
        ("data.silent", "hub_offline", False),
        ("anything", "a_type_nobody_listed", True),
    ],
)
def test_detects(rule: str, episode: str, expected: bool) -> None:
    assert detects(rule, episode) is expected
