"""Replaying feeds into an embedded store: ingest + alerting in-process on the feed's clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.feeds.format import read_feed
from firmware_sim.feeds.replay import GATEWAY, replay_feed
from ingest.stores import open_store
from wardwatch.cli import main
from wardwatch.store import Store

CRISIS_FEED = """\
# p-htn: a hypertensive crisis on the morning of the second day; p-ok stays well
{"at": "2026-01-05T08:00:00Z", "patient": "p-htn", "device": "cuff-htn", "reading": {"kind": "blood_pressure", "value": {"systolic": 148, "diastolic": 92}, "unit": "mmHg"}}
{"at": "2026-01-05T08:00:00Z", "patient": "p-ok", "device": "cuff-ok", "reading": {"kind": "blood_pressure", "value": {"systolic": 122, "diastolic": 78}, "unit": "mmHg"}}
{"at": "2026-01-05T08:01:00Z", "patient": "p-ok", "device": "scale-ok", "reading": {"kind": "body_weight", "value": 72.4, "unit": "kg"}}
{"at": "2026-01-05T08:02:00Z", "patient": "p-ok", "device": "oxi-ok", "reading": {"kind": "spo2", "value": 97, "unit": "%"}}
{"at": "2026-01-05T20:00:00Z", "patient": "p-htn", "device": "cuff-htn", "event": "disconnect"}
{"at": "2026-01-06T07:00:00Z", "patient": "p-htn", "device": "cuff-htn", "event": "reconnect"}
{"at": "2026-01-06T07:30:00Z", "patient": "p-htn", "device": "cuff-htn", "reading": {"kind": "systolic", "value": 196, "unit": "mmHg"}}
{"at": "2026-01-06T07:30:00Z", "patient": "p-htn", "device": "cuff-htn", "reading": {"kind": "diastolic", "value": 118, "unit": "mmHg"}}
{"at": "2026-01-06T07:35:00Z", "patient": "p-htn", "device": "cuff-htn", "ble": {"characteristic": "2A35", "hex": "00c0007c009300"}}
{"at": "2026-01-06T07:40:00Z", "patient": "p-htn", "device": "cuff-htn", "ble": {"characteristic": "2A35", "hex": "00"}}
"""  # noqa: E501


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:{tmp_path / 'replay.db'}")
    yield s
    s.close()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feed.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


def test_hypertensive_crisis_is_raised_for_that_patient(tmp_path: Path, store: Store) -> None:
    result = replay_feed(read_feed(_write(tmp_path, CRISIS_FEED)), store)
    assert sorted(result.enrolled) == ["p-htn", "p-ok"]
    assert result.device_events == 2
    # systolic + diastolic at one time become one panel; the BLE value decodes to one more
    assert result.readings == 6
    assert result.stored == 6
    assert result.rejected == 1  # the truncated BLE value, quarantined
    assert [q.reason_code for q in store.list_quarantine()] == ["decode-error"]
    alerts = store.list_alerts()
    assert [(a.patient, a.rule) for a in alerts] == [("p-htn", "bp.hypertensive_crisis")]
    assert alerts[0].opened_at.isoformat() == "2026-01-06T07:30:00+00:00"
    assert len(alerts[0].observations) == 2
    obs = store.observations("p-htn", "blood_pressure")
    assert all(o.gateway == GATEWAY for o in obs)
    # received at the feed time of the last event batched with it, not the wall clock
    assert obs[-1].received_at.isoformat() == "2026-01-06T07:40:00+00:00"


def test_replaying_twice_stores_each_observation_once(tmp_path: Path, store: Store) -> None:
    events = read_feed(_write(tmp_path, CRISIS_FEED))
    first = replay_feed(events, store)
    count = store.count_observations()
    second = replay_feed(events, store)
    assert second.stored == 0
    assert second.duplicates == first.stored
    assert second.enrolled == []
    assert store.count_observations() == count
    assert len(store.list_alerts()) == 1
    assert len(store.list_alerts()[0].observations) == 2


def test_unpaired_device_of_another_patient_is_quarantined(tmp_path: Path, store: Store) -> None:
    feed = CRISIS_FEED + (
        '{"at": "2026-01-06T09:00:00Z", "patient": "p-ok", "device": "cuff-htn", '
        '"reading": {"kind": "heart_rate", "value": 70, "unit": "bpm"}}\n'
    )
    result = replay_feed(read_feed(_write(tmp_path, feed)), store)
    assert "device-not-paired" in [q.reason_code for q in store.list_quarantine()]
    assert result.rejected == 2


def test_speed_multiplier_sleeps_on_the_feed_clock(tmp_path: Path, store: Store) -> None:
    slept: list[float] = []
    replay_feed(read_feed(_write(tmp_path, CRISIS_FEED)), store, speed=3600.0, sleep=slept.append)
    # 08:00 -> 07:40 next day is 23h40m of feed time: 23.67 s at 3600x
    assert sum(slept) == pytest.approx(23 + 40 / 60)


def test_cli_replay_then_alerts_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feed = _write(tmp_path, CRISIS_FEED)
    db = f"sqlite:{tmp_path / 'cli.db'}"
    assert main(["sim", "replay", str(feed), "--store", db, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stored"] == 6
    assert main(["alerts", "list", "--store", db, "--json"]) == 0
    alerts = json.loads(capsys.readouterr().out)
    assert [(a["patient"], a["rule"]) for a in alerts] == [("p-htn", "bp.hypertensive_crisis")]


def test_cli_replay_names_the_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feed = _write(tmp_path, CRISIS_FEED + "{oops\n")
    assert main(["sim", "replay", str(feed), "--store", f"sqlite:{tmp_path / 'x.db'}"]) == 2
    assert "line 12" in capsys.readouterr().err
