"""Scenario generators: seeded, realistic, with ground truth the alerting can be scored on."""

from __future__ import annotations

import itertools
import json
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from firmware_sim.feeds.format import FeedEvent, format_event, parse_line, read_feed
from firmware_sim.feeds.replay import ReplayResult, replay_feed
from firmware_sim.feeds.score import ScoredAlert, score
from firmware_sim.feeds.truth import load_truth
from firmware_sim.scenarios import SCENARIOS, generate, write_scenario
from firmware_sim.scenarios.faults import CORRUPTIONS, bp_value, corrupt
from gateway.decoders import decode_characteristic
from gateway.errors import DecodeError
from ingest.stores import open_store
from wardwatch.cli import main
from wardwatch.store import Alert, Store

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
        if e.reading.kind == "body_temperature":
            assert e.reading.value is not None
            assert 35.0 < e.reading.value < 38.0
    kinds = {e.reading.kind for e in events if e.reading is not None}
    assert {"blood_pressure", "body_weight", "spo2", "body_temperature"} <= kinds
    measured: dict[str, set[str]] = {}  # every device mix appears
    for e in events:
        assert e.reading is not None
        measured.setdefault(e.patient, set()).add(e.reading.kind)
    assert len({frozenset(kinds) for kinds in measured.values()}) == 4


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
        values = [w for _, w in weights if w is not None]
        day_to_day = [abs(b - a) for a, b in itertools.pairwise(values)]
        assert max(day_to_day) > 0.3  # not a smooth line
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


# -- the rest of the library: slow BP rise, CGM, tachycardia, device and hub faults ---------

#: scenario -> the episode types its truth may hold (every patient has one, unless noted)
NEW_EPISODE_TYPES: dict[str, set[str]] = {
    "bp_slow_rise": {"bp_rising_trend"},
    "glucose_excursions": {"nocturnal_hypoglycaemia", "postprandial_hyperglycaemia"},
    "tachycardia": {"tachycardia"},
    "device_silent": {"device_silent"},
    "hub_offline": {"hub_offline"},
    "clock_drift": set(),
    "duplicate_transmissions": {"hypertensive_crisis"},
    "corrupted_packets": set(),
}
FAR = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def _replay(events: list[FeedEvent], path: Path) -> tuple[ReplayResult, list[Alert], Store]:
    store = open_store(f"sqlite:{path}")
    result = replay_feed(events, store)
    return result, store.list_alerts(), store


def _scored(alerts: list[Alert]) -> list[ScoredAlert]:
    return [ScoredAlert(a.patient, a.rule, a.opened_at) for a in alerts]


def test_the_library_has_every_scenario_of_issue_8() -> None:
    assert set(EPISODE_TYPE) | set(NEW_EPISODE_TYPES) == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(NEW_EPISODE_TYPES))
def test_new_scenarios_are_deterministic_and_in_reception_order(name: str) -> None:
    a, truth_a = generate(name, seed=3)
    b, truth_b = generate(name, seed=3)
    c, _ = generate(name, seed=4)
    assert [format_event(e) for e in a] == [format_event(e) for e in b]
    assert truth_a == truth_b
    assert [format_event(e) for e in a] != [format_event(e) for e in c]
    assert [e.at for e in a] == sorted(e.at for e in a)
    for e in a:  # every generated line is a valid feed line
        assert format_event(parse_line(format_event(e))) == format_event(e)


@pytest.mark.parametrize("name", sorted(NEW_EPISODE_TYPES))
def test_new_scenarios_truth_matches_the_feed(name: str) -> None:
    events, truth = generate(name, seed=2)
    patients = {p.id for p in truth.patients}
    assert patients == {e.patient for e in events}
    types = NEW_EPISODE_TYPES[name]
    assert {e.type for e in truth.episodes} == types
    if types:
        assert {e.patient for e in truth.episodes} == patients
    for e in truth.episodes:
        window = truth.window(e.patient)
        assert window is not None
        assert window.start <= e.start < window.end
        assert e.end is None or e.start < e.end <= window.end


def test_slow_bp_rise_rises_1_to_2_mmhg_a_day_below_the_crisis_limit() -> None:
    events, truth = generate("bp_slow_rise", seed=6, patients=8)
    for ep in truth.episodes:
        assert 0.95 <= ep.details["mmhg_per_day"] <= 2.0
        assert 21 <= ep.details["days"] <= 28
        rows = [(e.at, _systolic(e)) for e in events if e.patient == ep.patient]
        before = [v for at, v in rows if at < ep.start]
        last_week = [v for at, v in rows if ep.end is not None and ep.end - DAY * 7 <= at < ep.end]
        gain = statistics.mean(last_week) - statistics.mean(before)
        expected = ep.details["mmhg_per_day"] * ep.details["days"]
        assert abs(gain - expected) < 12, (gain, expected)
        assert max(v for _, v in rows) <= 180
        days = {at.date() for at, _ in rows}
        assert len(rows) > 1.5 * len(days)  # twice daily, some missed
        morning = [v for at, v in rows if at.hour < 12 and at < ep.start]
        evening = [v for at, v in rows if at.hour >= 12 and at < ep.start]
        assert statistics.pstdev(morning + evening) > 4  # not a smooth line


def _systolic(e: FeedEvent) -> float:
    assert e.reading is not None
    sbp = e.reading.component("systolic")
    assert sbp is not None and sbp.value is not None
    return sbp.value


DAY = timedelta(days=1)


def test_slow_bp_rise_raises_the_trend_alert_and_no_crisis(tmp_path: Path) -> None:
    events, truth = generate("bp_slow_rise", seed=1)
    _, alerts, store = _replay(events, tmp_path / "x.db")
    store.close()
    assert {a.rule for a in alerts} == {"bp.trend.rising"}
    report = score([truth], _scored(alerts))
    assert report["episode_types"]["bp_rising_trend"]["sensitivity"] == 1.0
    assert report["false_alerts"] == 0


def test_tachycardia_is_sustained_above_130_and_alerts(tmp_path: Path) -> None:
    events, truth = generate("tachycardia", seed=1)
    for ep in truth.episodes:
        assert ep.end is not None
        inside = [
            e.reading.value
            for e in events
            if e.patient == ep.patient and e.reading is not None and ep.start <= e.at < ep.end
        ]
        assert (ep.end - ep.start) >= timedelta(hours=3)
        assert statistics.median(v for v in inside if v is not None) > 130
    _, alerts, store = _replay(events, tmp_path / "x.db")
    store.close()
    assert {a.rule for a in alerts} <= {"heart_rate.high", "news2.low_medium", "news2.medium"}
    report = score([truth], _scored(alerts))
    assert report["episode_types"]["tachycardia"]["sensitivity"] == 1.0
    assert report["false_alerts"] == 0


def test_glucose_excursions_are_cgm_every_5_min_and_detected(tmp_path: Path) -> None:
    events, truth = generate("glucose_excursions", seed=1)
    for pid in {p.id for p in truth.patients}:
        times = [e.at for e in events if e.patient == pid]
        assert {b - a for a, b in itertools.pairwise(times)} == {timedelta(minutes=5)}
        assert all(e.reading is not None and e.reading.kind == "cgm_glucose" for e in events)
    for ep in truth.episodes:
        if ep.type == "nocturnal_hypoglycaemia":
            assert ep.start.hour < 7
            assert ep.details["nadir_mgdl"] < 70
        else:
            assert ep.details["peak_mgdl"] > 180
    _, alerts, store = _replay(events, tmp_path / "x.db")
    store.close()
    report = score([truth], _scored(alerts))["episode_types"]
    assert report["nocturnal_hypoglycaemia"]["sensitivity"] >= 0.8
    assert report["postprandial_hyperglycaemia"]["sensitivity"] >= 0.5


def test_copd_patients_carry_the_news2_scale_2_care_plan(tmp_path: Path) -> None:
    events, truth = generate("copd_desaturation", seed=1)
    plans = [e for e in events if e.care_plan is not None]
    assert {e.patient for e in plans} == {p.id for p in truth.patients}
    assert all(e.at == truth.patients[0].start for e in plans)
    result, alerts, store = _replay(events, tmp_path / "x.db")
    try:
        for p in truth.patients:
            patient = store.get_patient(p.id)
            assert patient is not None
            assert patient.thresholds == {"news2.spo2_scale": 2}
    finally:
        store.close()
    assert result.rejected == 0
    # their usual 91-94 % is on target for scale 2: the scale-1 rule must stay quiet
    assert "spo2.low" not in {a.rule for a in alerts}


@pytest.mark.parametrize("name", ["device_silent", "hub_offline"])
def test_silence_and_outage_are_in_the_truth_and_score_zero_without_a_detector(
    name: str, tmp_path: Path
) -> None:
    events, truth = generate(name, seed=1)
    result, alerts, store = _replay(events, tmp_path / "x.db")
    store.close()
    assert result.rejected == 0
    for ep in truth.episodes:
        if name == "device_silent":
            device = ep.details["device"]
            assert ep.details["readings_missing"] > 0
        else:
            device = ep.details["hub"]
            assert result.device_events >= 1
        quiet = [
            e
            for e in events
            if e.device == device
            and e.reading is not None
            and ep.start < e.at < (ep.end or datetime.max.replace(tzinfo=UTC))
        ]
        assert quiet == []
    report = score([truth], _scored(alerts))
    # the missing-data rules (data.silent, hub.offline) are not built yet
    assert report["episode_types"][name]["sensitivity"] == 0.0
    assert alerts == []


def test_hub_offline_late_readings_are_stored_at_their_own_times(tmp_path: Path) -> None:
    events, truth = generate("hub_offline", seed=1)
    result, _, store = _replay(events, tmp_path / "x.db")
    try:
        for ep in truth.episodes:
            assert ep.end is not None
            stored = store.observations(ep.patient, "blood_pressure", ep.start, ep.end)
            assert len(stored) == ep.details["late_readings"] > 0
            assert all(o.received_at >= ep.end for o in stored)  # arrived after the outage
            assert store.observations(ep.patient, "body_weight", ep.start, ep.end) == []
    finally:
        store.close()
    assert result.stored == result.readings


def test_clock_drift_times_are_corrected_by_the_current_time_read(tmp_path: Path) -> None:
    events, truth = generate("clock_drift", seed=1)
    assert {e.ble.characteristic for e in events if e.ble is not None} == {"2A2B", "2A35"}
    assert any(e.event == "clock_change" for e in events)
    result, alerts, store = _replay(events, tmp_path / "x.db")
    try:
        assert result.rejected == 0
        assert alerts == []
        for device, times in truth.parameters["true_times"].items():
            patient = store.device_patient(device)
            assert patient is not None
            rows = store.observations(patient, "blood_pressure", *FAR)
            stored = sorted(o.at for o in rows)
            true = sorted(datetime.fromisoformat(t) for t in times)
            assert len(stored) == len(true) > 20
            errors = [abs((s - t).total_seconds()) for s, t in zip(stored, true, strict=True)]
            assert max(errors) <= 1.5  # Date Time has whole seconds
    finally:
        store.close()
    # the stamps themselves are minutes off: the correction did the work
    stamps = [
        decode_characteristic("2A35", e.ble.data, received_at=e.at).readings[0].at
        for e in events
        if e.ble is not None and e.ble.characteristic == "2A35"
    ]
    first_true = datetime.fromisoformat(next(iter(truth.parameters["true_times"].values()))[0])
    assert min(abs((s - first_true).total_seconds()) for s in stamps) > 60


def test_duplicate_transmissions_store_once_and_raise_no_extra_alert(tmp_path: Path) -> None:
    events, truth = generate("duplicate_transmissions", seed=1)
    expected_copies = truth.parameters["duplicate_events"]
    assert expected_copies > 0
    # one observation per bundle, so that ingest sees (and counts) every copy arrive
    store = open_store(f"sqlite:{tmp_path / 'dup.db'}")
    result = replay_feed(events, store, batch_size=1)
    alerts = store.list_alerts()
    store.close()
    assert result.stored == truth.parameters["unique_readings"]
    assert result.duplicates == expected_copies
    assert result.rejected == 0
    # the same feed with each transmission once
    seen: set[tuple[str, str]] = set()
    once = []
    for e in events:
        key = (e.device, e.ble.data.hex()) if e.ble is not None else ("", format_event(e))
        if key not in seen:
            seen.add(key)
            once.append(e)
    assert len(events) - len(once) == expected_copies
    _, alerts_once, store = _replay(once, tmp_path / "once.db")
    store.close()

    def view(xs: list[Alert]) -> list[tuple[str, str, datetime, datetime | None]]:
        return sorted((a.patient, a.rule, a.opened_at, a.resolved_at) for a in xs)

    assert view(alerts) == view(alerts_once)
    assert len(alerts) >= len(truth.episodes)  # the crises are there, once each


def test_corrupted_packets_are_quarantined_without_alerts(tmp_path: Path) -> None:
    events, truth = generate("corrupted_packets", seed=1)
    corrupted = truth.parameters["corrupted_packets"]
    assert corrupted > 0
    assert sum(truth.parameters["corruptions"].values()) == corrupted
    result, alerts, store = _replay(events, tmp_path / "x.db")
    try:
        held = store.list_quarantine()
    finally:
        store.close()
    assert alerts == []
    assert result.rejected == corrupted
    assert [q.reason_code for q in held] == ["decode-error"] * corrupted
    ble = sum(1 for e in events if e.ble is not None)
    assert result.stored == result.readings == len(events) - corrupted
    assert ble > corrupted


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_each_corruption_is_one_a_decoder_tells(how: str) -> None:
    rng = np.random.default_rng(0)
    value = bp_value(datetime(2026, 1, 5, 7, 30, tzinfo=UTC), 132, 84)
    done = 0
    while done < 50:
        got, damaged = corrupt(rng, value)
        if got != how:
            continue
        done += 1
        with pytest.raises(DecodeError):
            decode_characteristic("2A35", damaged, received_at=datetime.now(UTC))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_generates_at_its_shortest_window(name: str) -> None:
    shortest = SCENARIOS[name].min_days
    for seed in (1, 2, 3):
        generate(name, seed=seed, patients=2, days=shortest)
    if shortest > 1:
        with pytest.raises(ValueError, match="needs at least"):
            generate(name, seed=1, patients=2, days=shortest - 1)
