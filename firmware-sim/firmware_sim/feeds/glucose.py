"""The shared UVA/Padova glucose traces (``../shared/feeds/glucose/``) as feeds + ground truth.

Each trace ``<id>`` is a CSV (``time``, ``bg_true_mgdl``, ``cgm_mgdl``) and a JSON with the
episodes computed from the simulator's true glucose (international consensus CGM
definitions, Danne 2017 / Battelino 2019) and the sensor's signal losses. An alerting
system sees only the sensor: the feed carries ``cgm_mgdl`` alone, as ``cgm_glucose``
(interstitial fluid, LOINC 99504-3) in mg/dL; missing rows stay missing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from firmware_sim.errors import FirmwareSimError
from firmware_sim.feeds.format import FeedError, FeedEvent, parse_time, reading_event, write_feed
from firmware_sim.feeds.truth import Episode, GroundTruth, MonitoredPatient, write_truth

KIND = "cgm_glucose"
UNIT = "mg/dL"
#: episode facts kept from the source beside type/patient/start/end
_EPISODE_DETAILS = ("duration_min", "peak_mgdl", "peak_time", "ongoing_at_trace_end")


class GlucoseTraceError(FirmwareSimError):
    """A glucose trace that cannot be converted."""

    code = "bad-glucose-trace"


def device_for(trace_id: str) -> str:
    """The CGM device id of a trace's patient."""
    return f"cgm-{trace_id}"


def trace_events(csv_path: Path, patient: str) -> Iterator[FeedEvent]:
    """The feed events of one trace CSV (sensor values only)."""
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh)
        if rows.fieldnames is None or not {"time", "cgm_mgdl"} <= set(rows.fieldnames):
            raise GlucoseTraceError(f"{csv_path}: needs columns time and cgm_mgdl")
        for n, row in enumerate(rows, start=2):
            text = (row.get("cgm_mgdl") or "").strip()
            if not text:
                continue  # a signal loss: no reading, as the sensor sent none
            try:
                at = parse_time(row.get("time"), line=n, what="time")
                value = float(text)
            except (FeedError, ValueError) as exc:
                raise GlucoseTraceError(f"{csv_path}:{n}: {exc}") from None
            yield reading_event(at, patient, device_for(patient), KIND, value, UNIT)


def _episode(doc: Mapping[str, Any], patient: str, type_: str | None = None) -> Episode:
    start = parse_time(doc.get("start"), what="episode start")
    end = None if doc.get("end") is None else parse_time(doc.get("end"), what="episode end")
    details = {k: doc[k] for k in _EPISODE_DETAILS if k in doc}
    return Episode(type_ or str(doc.get("type")), patient, start, end, details)


def trace_truth(meta: Mapping[str, Any], patient: str) -> GroundTruth:
    """The ground truth of one trace from its JSON."""
    try:
        start = parse_time(meta.get("start"), what="start")
        end = parse_time(meta.get("end_exclusive"), what="end_exclusive")
        episodes = [_episode(e, patient) for e in meta.get("episodes") or []]
        episodes += [
            _episode(g, patient, "sensor_signal_loss") for g in meta.get("data_gaps") or []
        ]
    except FeedError as exc:
        raise GlucoseTraceError(f"{patient}: {exc}") from None
    return GroundTruth(
        scenario=f"glucose:{patient}",
        patients=(MonitoredPatient(patient, start, end),),
        episodes=tuple(sorted(episodes, key=lambda e: (e.start, e.type))),
        seed=None,
        parameters={
            "source": "simglucose 0.2.11 (UVA/Padova), ../shared/feeds/glucose",
            "simulator_patient": meta.get("patient"),
            "definitions": "Danne 2017 / Battelino 2019 consensus, on bg_true_mgdl",
        },
    )


def convert_trace(csv_path: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Convert ``<id>.csv`` (with ``<id>.json`` beside it) to a feed and a truth file."""
    src = Path(csv_path)
    meta_path = src.with_suffix(".json")
    if not meta_path.exists():
        raise GlucoseTraceError(f"{src}: no {meta_path.name} beside it")
    try:
        meta = orjson.loads(meta_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise GlucoseTraceError(f"{meta_path}: not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise GlucoseTraceError(f"{meta_path}: not a JSON object")
    patient = str(meta.get("trace_id") or src.stem)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    feed = out / f"{patient}.feed.jsonl"
    truth = out / f"{patient}.truth.json"
    write_feed(feed, trace_events(src, patient))
    write_truth(truth, trace_truth(meta, patient))
    return feed, truth


def convert_glucose_traces(src: str | Path, out_dir: str | Path) -> list[tuple[Path, Path]]:
    """Convert every trace in directory ``src`` (or the one CSV ``src``)."""
    path = Path(src)
    csvs = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not csvs:
        raise GlucoseTraceError(f"{src}: no .csv traces")
    return [convert_trace(c, out_dir) for c in csvs]
