"""Scenario generators: seeded, realistic, with ground truth the alerting can be scored on."""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

import pytest

from firmware_sim.feeds.format import format_event, read_feed
from firmware_sim.feeds.replay import replay_feed
from firmware_sim.feeds.truth import load_truth
from firmware_sim.scenarios import SCENARIOS, generate, write_scenario
from ingest.stores import open_store
from wardwatch.cli import main

EPISODE_TYPE = {
    "stable": None,
    "hypertensive_crisis": "hypertensive_crisis",
    "heart_failure": "heart_failure_decompensation",
    "fever": "fever",
    "copd_desaturation": "copd_desaturation",
}


def test_the_library_has_the_required_scenarios() -> None:
    assert set(EPISODE_TYPE) <= set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(EPISODE_TYPE))
def test_same_seed_same_feed_other_seed_other_feed(name: str) -> None:
    a, truth_a = generate(name, seed=7)
    b, truth_b = generate(name, seed=7)
    c, _ = generate(name, seed=8)
    assert [format_event(e) for e in a] == [format_event(e) for e in b]
    assert truth_a == truth_b
    assert [format_event(e) for e in a] != [format_event(e) for e in c]
    assert [e.at for e in a] == sorted(e.at for e in a)


@pytest.mark.parametrize("name", sorted(EPISODE_TYPE))
def test_episodes_inside_the_window_one_per_patient(name: str) -> None:
    events, truth = generate(name, seed=2)
    patients = {p.id for p in truth.patients}
    assert patients == {e.patient for e in events}
    kind = EPISODE_TYPE[name]
    if kind is None:
        assert truth.episodes == ()
        return
    assert [e.type for e in truth.episodes] == [kind] * len(patients)
    for e in truth.episodes:
        window = truth.window(e.patient)
        assert window is not None
        assert e.end is not None
        assert window.start <= e.start < e.end <= window.end


def test_stable_patients_stay_inside_every_alert_limit() -> None:
    events, _ = generate("stable", seed=5, patients=20, days=28)
    for e in events:
        assert e.reading is not None
        if e.reading.kind == "blood_pressure":
            sbp = e.reading.component("systolic")
            assert sbp is not None
            assert sbp.value is not None
            assert 90 < sbp.value < 180
    kinds = {e.reading.kind for e in events if e.reading is not None}
    assert {"blood_pressure", "body_weight", "spo2"} <= kinds


def test_heart_failure_weight_rises_about_1_kg_over_14_days() -> None:
    events, truth = generate("heart_failure", seed=4, patients=6, days=30)
    for ep in truth.episodes:
        weights = [
            (e.at, e.reading.value)
            for e in events
            if e.patient == ep.patient and e.reading is not None and e.reading.kind == "body_weight"
        ]
        before = [w for at, w in weights if at < ep.start and w is not None]
        last_days = [
            w for at, w in weights if ep.end is not None and at < ep.end and (ep.end - at).days < 3
        ]
        gain = statistics.mean(x for x in last_days if x is not None) - statistics.mean(before)
        assert 0.4 < gain < 1.8, gain
        day_to_day = [abs(b - a) for (_, a), (_, b) in itertools.pairwise(weights)]
        assert max(x for x in day_to_day if x is not None) > 0.3  # not a smooth line
        assert 0.8 <= ep.details["weight_gain_kg"] <= 1.3


def test_fever_and_copd_readings_show_their_episodes() -> None:
    events, truth = generate("fever", seed=3)
    for ep in truth.episodes:
        temps = [
            e.reading.value
            for e in events
            if e.patient == ep.patient
            and e.reading is not None
            and e.reading.kind == "body_temperature"
            and ep.end is not None
            and ep.start <= e.at < ep.end
        ]
        assert temps
        assert max(t for t in temps if t is not None) >= 38.0
    events, truth = generate("copd_desaturation", seed=3)
    for ep in truth.episodes:
        sats = [
            e.reading.value
            for e in events
            if e.patient == ep.patient
            and e.reading is not None
            and e.reading.kind == "spo2"
            and ep.end is not None
            and ep.start <= e.at < ep.end
        ]
        assert sats
        assert min(s for s in sats if s is not None) < 89


@pytest.mark.parametrize("name", sorted(EPISODE_TYPE))
def test_every_scenario_replays_without_rejections(name: str, tmp_path: Path) -> None:
    feed, truth_path = write_scenario(name, tmp_path, seed=1)
    store = open_store(f"sqlite:{tmp_path / 'x.db'}")
    try:
        result = replay_feed(read_feed(feed), store)
        assert result.rejected == 0
        assert result.stored == result.readings > 0
        alerts = store.list_alerts()
    finally:
        store.close()
    truth = load_truth(truth_path)
    if name == "hypertensive_crisis":
        assert {a.patient for a in alerts} == {e.patient for e in truth.episodes}
    if name == "stable":
        assert alerts == []


def test_cli_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "scenario", "fever", str(tmp_path), "--seed", "9"]) == 0
    feed, truth = capsys.readouterr().out.split()
    assert json.loads(Path(truth).read_text(encoding="utf-8"))["seed"] == 9
    assert read_feed(feed)
    assert main(["sim", "scenario", "--list"]) == 0
    assert "heart_failure" in capsys.readouterr().out
    assert main(["sim", "scenario", "nope", str(tmp_path)]) == 2
