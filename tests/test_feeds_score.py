"""Scoring alerts against ground truth."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.feeds.score import ScoredAlert, ScoreInputError, alerts_from_json, score
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
