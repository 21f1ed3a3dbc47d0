"""Scenario library: seeded generators of synthetic feeds with ground truth.

Public API: :data:`SCENARIOS` (name -> :class:`Scenario`), :func:`generate`,
:func:`write_scenario`. ``wardwatch sim scenario NAME OUT_DIR --seed N`` writes
``NAME.feed.jsonl`` and ``NAME.truth.json`` (``docs/feeds.md``). Physiological parameters
and their sources: :mod:`firmware_sim.scenarios._physiology`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np

from firmware_sim.feeds.format import FeedEvent, write_feed
from firmware_sim.feeds.truth import GroundTruth, write_truth
from firmware_sim.scenarios import cgm, faults, library
from firmware_sim.scenarios.library import Generator

#: every scenario starts here (the Monday the shared glucose traces start too)
START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named generator with its default size."""

    name: str
    prefix: str
    """Patient id prefix."""
    summary: str
    generator: Generator
    patients: int
    days: int
    min_days: int = 1
    """The shortest monitoring window the generator can place its episodes in."""


SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        s.name: s
        for s in (
            Scenario(
                "stable",
                "stb",
                "each device mix in turn (cuff+scale+oximeter, cuff+thermometer, "
                "scale+oximeter+thermometer, cuff alone); no episodes",
                library.stable,
                4,
                14,
            ),
            Scenario(
                "hypertensive_crisis",
                "htn",
                "uncontrolled hypertension, one crisis > 180/120 mmHg per patient",
                library.hypertensive_crisis,
                2,
                14,
                min_days=2,
            ),
            Scenario(
                "heart_failure",
                "hf",
                "daily weight rising ~1 kg over 14 days before decompensation",
                library.heart_failure,
                2,
                28,
            ),
            Scenario(
                "fever",
                "fev",
                "febrile illness >= 38.0 °C for 2-4.5 days, pulse rising with it",
                library.fever,
                2,
                14,
                min_days=3,
            ),
            Scenario(
                "copd_desaturation",
                "copd",
                "COPD exacerbation, SpO2 below 88 % for days",
                library.copd_desaturation,
                2,
                21,
            ),
            Scenario(
                "bp_slow_rise",
                "bpr",
                "systolic rising 1-2 mmHg/day over 3-4 weeks, twice-daily home readings",
                library.bp_slow_rise,
                3,
                42,
            ),
            Scenario(
                "glucose_excursions",
                "glu",
                "T1D on CGM (5 min): nocturnal hypoglycaemia and post-meal hyperglycaemia",
                cgm.glucose_excursions,
                2,
                14,
            ),
            Scenario(
                "tachycardia",
                "tac",
                "wearable resting HR every 10 min; fast AF > 130/min for 4-30 h (NEWS2 3)",
                library.tachycardia,
                2,
                10,
                min_days=2,
            ),
            Scenario(
                "device_silent",
                "sil",
                "one device per patient silent for 3-6 days (or to the end)",
                faults.device_silent,
                3,
                21,
            ),
            Scenario(
                "hub_offline",
                "hub",
                "hub offline 20-30 h; the cuff's stored readings arrive late, the rest lost",
                faults.hub_offline,
                2,
                14,
            ),
            Scenario(
                "clock_drift",
                "clk",
                "raw BLE cuff with a drifting clock (Current Time read): times corrected",
                faults.clock_drift,
                2,
                28,
            ),
            Scenario(
                "duplicate_transmissions",
                "dup",
                "hypertensive crisis feed with readings sent 2-5 times: no extra alerts",
                faults.duplicate_transmissions,
                2,
                14,
                min_days=2,
            ),
            Scenario(
                "corrupted_packets",
                "cor",
                "raw BLE cuff values, 15 % damaged: quarantined, no alerts",
                faults.corrupted_packets,
                2,
                14,
            ),
        )
    }
)


def generate(
    name: str, *, seed: int = 1, patients: int | None = None, days: int | None = None
) -> tuple[list[FeedEvent], GroundTruth]:
    """The feed events (time order) and ground truth of scenario ``name``."""
    scenario = SCENARIOS[name]
    n = patients if patients is not None else scenario.patients
    d = days if days is not None else scenario.days
    if n < 1 or d < 1:
        raise ValueError("patients and days must be at least 1")
    if d < scenario.min_days:
        raise ValueError(f"scenario {name} needs at least {scenario.min_days} days (--days)")
    rng = np.random.default_rng(seed)
    out = scenario.generator(rng, START, f"{scenario.prefix}{seed}", n, d)
    events = sorted(
        out.events,
        key=lambda e: (e.at, e.device, e.reading.kind if e.reading is not None else ""),
    )
    truth = GroundTruth(
        scenario=name,
        patients=tuple(out.patients),
        episodes=tuple(sorted(out.episodes, key=lambda e: (e.start, e.patient))),
        seed=seed,
        parameters={"patients": n, "days": d, "start": START.isoformat(), **out.facts},
    )
    return events, truth


def write_scenario(
    name: str,
    out_dir: str | Path,
    *,
    seed: int = 1,
    patients: int | None = None,
    days: int | None = None,
) -> tuple[Path, Path]:
    """Write ``NAME.feed.jsonl`` and ``NAME.truth.json`` into ``out_dir``."""
    events, truth = generate(name, seed=seed, patients=patients, days=days)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    feed_path, truth_path = out / f"{name}.feed.jsonl", out / f"{name}.truth.json"
    write_feed(feed_path, events)
    write_truth(truth_path, truth)
    return feed_path, truth_path


__all__ = ["SCENARIOS", "START", "Scenario", "generate", "write_scenario"]
