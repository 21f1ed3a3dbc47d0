"""The shared UVA/Padova glucose traces as feeds with ground truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from firmware_sim.feeds.format import read_feed
from firmware_sim.feeds.glucose import GlucoseTraceError, convert_glucose_traces
from firmware_sim.feeds.replay import replay_feed
from firmware_sim.feeds.truth import load_truth
from ingest.stores import open_store
from wardwatch.cli import main

TRACES = Path(__file__).resolve().parents[2] / "shared" / "feeds" / "glucose"

pytestmark = pytest.mark.skipif(not TRACES.is_dir(), reason="../shared/feeds/glucose missing")


def test_every_trace_converts_with_its_episodes(tmp_path: Path) -> None:
    written = convert_glucose_traces(TRACES, tmp_path)
    assert len(written) == len(list(TRACES.glob("*.csv"))) == 12
    for feed, truth_path in written:
        trace_id = feed.name.removesuffix(".feed.jsonl")
        meta = json.loads((TRACES / f"{trace_id}.json").read_text(encoding="utf-8"))
        with (TRACES / f"{trace_id}.csv").open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r["cgm_mgdl"].strip()]
        events = read_feed(feed)
        assert len(events) == len(rows)
        assert all(e.reading is not None and e.reading.kind == "cgm_glucose" for e in events)
        assert events[0].reading is not None
        assert events[0].reading.value == float(rows[0]["cgm_mgdl"])
        truth = load_truth(truth_path)
        kinds = [e.type for e in truth.episodes]
        assert kinds.count("sensor_signal_loss") == len(meta["data_gaps"])
        assert len(kinds) == len(meta["episodes"]) + len(meta["data_gaps"])
        assert {e.patient for e in truth.episodes} <= {trace_id}
        assert truth.patients[0].weeks == pytest.approx(3 / 7)


def test_a_trace_with_a_signal_loss_replays_cleanly(tmp_path: Path) -> None:
    [(feed, _)] = convert_glucose_traces(TRACES / "adult_008.csv", tmp_path)
    store = open_store(f"sqlite:{tmp_path / 'g.db'}")
    try:
        result = replay_feed(read_feed(feed), store)
        assert result.rejected == 0
        assert result.stored == store.count_observations() == 846
    finally:
        store.close()


def test_cli_convert_glucose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "convert-glucose", str(TRACES), str(tmp_path / "out")]) == 0
    assert len(capsys.readouterr().out.split()) == 24


def test_missing_metadata_is_an_error(tmp_path: Path) -> None:
    lone = tmp_path / "x.csv"
    lone.write_text("time,bg_true_mgdl,cgm_mgdl\n", encoding="utf-8")
    with pytest.raises(GlucoseTraceError, match=r"no x\.json"):
        convert_glucose_traces(lone, tmp_path / "out")
