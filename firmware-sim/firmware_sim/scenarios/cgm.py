"""CGM scenario: nocturnal hypoglycaemia and post-meal hyperglycaemia (type 1 diabetes).

The true glucose is a wandering between-meal level plus meal excursions minus night-time
insulin-driven falls; the sensor reports it every 5 minutes with a MARD of ~9.5 %. As in the
shared UVA/Padova traces, the episodes are computed from the *true* glucose with the
consensus CGM definitions, and the feed carries the sensor only. Parameters and sources:
:mod:`firmware_sim.scenarios._physiology`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from firmware_sim.feeds.format import reading_event
from firmware_sim.feeds.truth import Episode
from firmware_sim.scenarios import _physiology as phys
from firmware_sim.scenarios.library import Rng, ScenarioOutput, _u, _window

_KIND, _UNIT = "cgm_glucose", "mg/dL"


def _meal_shape(minutes: float, peak: float, length: float) -> float:
    """0..1: a gamma-like rise to the peak, then a slower return by ``length``."""
    if minutes <= 0 or minutes >= length:
        return 0.0
    if minutes <= peak:
        return 0.5 - 0.5 * math.cos(math.pi * minutes / peak)
    return 0.5 + 0.5 * math.cos(math.pi * (minutes - peak) / (length - peak))


def _runs(
    start: datetime, values: np.ndarray, below: bool, limit: float
) -> list[tuple[datetime, datetime | None, float]]:
    """Consensus episodes: >= 15 min past ``limit``, ended by >= 15 min back.

    Returns (start, exclusive end or None if still open, extreme value) per episode, on
    the 5-minute grid.
    """
    need = phys.EPISODE_MIN_MINUTES // phys.CGM_MINUTES
    past = values < limit if below else values > limit
    step = timedelta(minutes=phys.CGM_MINUTES)
    out: list[tuple[datetime, datetime | None, float]] = []
    i, n = 0, len(values)
    while i + need <= n:
        if not past[i : i + need].all():
            i += 1
            continue
        j = i + need
        while j < n and past[j : j + need].any():
            j += 1
        segment = values[i:j]
        extreme = float(segment.min() if below else segment.max())
        out.append((start + i * step, start + j * step if j < n else None, extreme))
        i = j
    return out


def _in_night(at: datetime) -> bool:
    return at.hour < 7


def glucose_excursions(
    rng: Rng, start: datetime, prefix: str, patients: int, days: int
) -> ScenarioOutput:
    """T1D patients on CGM: post-meal highs and nocturnal lows, episodes from true glucose.

    ``nocturnal_hypoglycaemia``: < 70 mg/dL for >= 15 min starting between 00:00 and 07:00;
    ``postprandial_hyperglycaemia``: > 180 mg/dL for >= 15 min (any other run past a limit is
    left out of the truth, as none is generated on purpose).
    """
    out = ScenarioOutput()
    step_min = phys.CGM_MINUTES
    n_points = days * 24 * 60 // step_min
    minutes = np.arange(n_points, dtype=float) * step_min
    for n in range(1, patients + 1):
        pid = f"{prefix}-{n:03d}"
        base = _u(rng, phys.GLUCOSE_BASE)
        # slow wander: AR(1) on the grid with a 3-hour time constant
        phi = math.exp(-step_min / (phys.GLUCOSE_WANDER_HOURS * 60))
        shocks = rng.normal(0.0, phys.GLUCOSE_WANDER_SD * math.sqrt(1 - phi * phi), n_points)
        wander = np.empty(n_points)
        level = 0.0
        for i in range(n_points):
            level = phi * level + shocks[i]
            wander[i] = level
        true = base + np.clip(wander, -2.5 * phys.GLUCOSE_WANDER_SD, 2.5 * phys.GLUCOSE_WANDER_SD)
        for d in range(days):
            for hour in phys.MEAL_HOURS:
                at_min = d * 1440 + hour * 60 + float(np.clip(rng.normal(0, 30), -60, 60))
                peak = _u(rng, phys.MEAL_PEAK_MINUTES)
                length = _u(rng, phys.MEAL_LENGTH_HOURS) * 60
                rise = _u(rng, phys.MEAL_RISE)
                true += rise * np.array([_meal_shape(m - at_min, peak, length) for m in minutes])
        sure_night = int(rng.integers(0, days))
        for d in range(days):
            if d != sure_night and rng.random() >= phys.NIGHT_HYPO_P:
                continue
            onset = d * 1440 + _u(rng, phys.NIGHT_HYPO_ONSET_HOURS) * 60
            fall = _u(rng, phys.NIGHT_HYPO_FALL_MINUTES)
            length = _u(rng, phys.NIGHT_HYPO_LENGTH_HOURS) * 60 + fall
            nadir = _u(rng, phys.NIGHT_HYPO_NADIR)
            shape = np.array([_meal_shape(m - onset, fall, length) for m in minutes])
            # fall from the level at onset to the nadir (never lifts glucose)
            i0 = min(int(onset // step_min), n_points - 1)
            true -= max(float(true[i0]) - nadir, 0.0) * shape
        true = np.clip(true, 20.0, 600.0)
        # sensor: autocorrelated relative error with the stated MARD (normal: MAD = 0.8 SD)
        sd = phys.CGM_MARD / math.sqrt(2 / math.pi)
        err_shocks = rng.normal(0.0, sd * math.sqrt(1 - phys.CGM_ERROR_PHI**2), n_points)
        err, e = np.empty(n_points), 0.0
        for i in range(n_points):
            e = phys.CGM_ERROR_PHI * e + err_shocks[i]
            err[i] = e
        sensor = np.clip(true * (1 + np.clip(err, -2.5 * sd, 2.5 * sd)), *phys.CGM_RANGE)
        device = f"cgm-{pid}"
        for i in range(n_points):
            at = start + timedelta(minutes=float(minutes[i]))
            out.events.append(reading_event(at, pid, device, _KIND, round(sensor[i]), _UNIT))
        for s, e_, low in _runs(start, true, True, phys.HYPO_BELOW):
            if _in_night(s):
                details = {"nadir_mgdl": round(low), "level2": low < 54}
                out.episodes.append(Episode("nocturnal_hypoglycaemia", pid, s, e_, details))
        for s, e_, high in _runs(start, true, False, phys.HYPER_ABOVE):
            details = {"peak_mgdl": round(high), "level2": high > 250}
            out.episodes.append(Episode("postprandial_hyperglycaemia", pid, s, e_, details))
        _window(out, pid, start, days)
    return out
