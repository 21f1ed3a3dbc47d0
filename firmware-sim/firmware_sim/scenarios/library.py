"""The scenario generators: synthetic patients, their devices' feed and the ground truth.

Each generator takes a seeded :class:`numpy.random.Generator`, the start time, the number of
patients and days, and returns a :class:`ScenarioOutput`. Same seed, same output. The
parameters and their sources are in :mod:`firmware_sim.scenarios._physiology`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from firmware_sim.feeds.format import (
    FeedEvent,
    blood_pressure_event,
    care_plan_event,
    reading_event,
)
from firmware_sim.feeds.truth import Episode, MonitoredPatient
from firmware_sim.scenarios import _physiology as phys

Rng = np.random.Generator


@dataclass(slots=True)
class ScenarioOutput:
    """What a generator produced."""

    events: list[FeedEvent] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    patients: list[MonitoredPatient] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """What the truth's ``parameters`` also say (expected counts, true times, ...)."""


Generator = Callable[[Rng, datetime, str, int, int], ScenarioOutput]


def _u(rng: Rng, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _noise(rng: Rng, sd: float) -> float:
    # clipped at 2.5 SD so a stable patient never crosses an alert limit by noise alone
    return float(np.clip(rng.normal(0.0, sd), -2.5 * sd, 2.5 * sd))


def _when(rng: Rng, day: datetime, hour: float, jitter_min: float = 20.0) -> datetime:
    """A scheduled measurement time, jittered, to the minute."""
    minutes = hour * 60 + float(np.clip(rng.normal(0.0, jitter_min), -60, 60))
    return day + timedelta(minutes=round(minutes))


def _bump(t: float, onset: float, rise: float, length: float) -> float:
    """0 before onset, rising (raised cosine) over ``rise`` to 1, back to 0 by onset+length."""
    x = t - onset
    if x <= 0 or x >= length:
        return 0.0
    if x < rise:
        return 0.5 - 0.5 * math.cos(math.pi * x / rise)
    fall = length - rise
    return 0.5 + 0.5 * math.cos(math.pi * (x - rise) / fall)


@dataclass(frozen=True, slots=True)
class _Bump:
    """``amplitude * bump(hour) ** power``: an episode's excursion from baseline."""

    onset: float
    rise: float
    length: float
    amplitude: float
    power: float = 1.0

    def __call__(self, hour: float) -> float:
        shape = _bump(hour, self.onset, self.rise, self.length)
        return self.amplitude * math.pow(shape, self.power)


@dataclass(frozen=True, slots=True)
class _Ramp:
    """Extra weight on day ``d``: rising from day ``first`` over ``days`` to ``gain``."""

    first: int
    days: int
    gain: float

    def __call__(self, d: int) -> float:
        # accelerating towards the event (Chaudhry 2007)
        x = min(max(d - self.first, 0), self.days) / self.days
        return self.gain * math.pow(x, 1.5)


_STEP_MIN = 5


def _grid(days: int) -> list[float]:
    """Hours from the start on a 5-minute grid over ``days``."""
    return [i * _STEP_MIN / 60 for i in range(days * 24 * 60 // _STEP_MIN)]


def _span(start: datetime, flags: list[bool]) -> tuple[datetime, datetime] | None:
    """First flagged grid time and the grid time after the last (exclusive end)."""
    hits = [i for i, f in enumerate(flags) if f]
    if not hits:
        return None
    step = timedelta(minutes=_STEP_MIN)
    return start + hits[0] * step, start + (hits[-1] + 1) * step


class _Patient:
    """One synthetic patient's baseline and devices."""

    def __init__(self, rng: Rng, pid: str, *, hypertensive: bool = False, copd: bool = False):
        self.id = pid
        suffix = pid
        self.cuff, self.scale, self.oxi, self.thermo = (
            f"cuff-{suffix}",
            f"scale-{suffix}",
            f"oxi-{suffix}",
            f"thermo-{suffix}",
        )
        sys_range = phys.BP_UNCONTROLLED_SYSTOLIC if hypertensive else phys.BP_CONTROLLED_SYSTOLIC
        dia_range = phys.BP_UNCONTROLLED_DIASTOLIC if hypertensive else phys.BP_CONTROLLED_DIASTOLIC
        self.systolic = _u(rng, sys_range)
        self.diastolic = _u(rng, dia_range)
        self.heart_rate = _u(rng, phys.HR_REST)
        self.weight = _u(rng, phys.WEIGHT_BASELINE)
        self.spo2 = _u(rng, phys.SPO2_COPD if copd else phys.SPO2_NORMAL)
        self.temperature = _u(rng, phys.TEMP_NORMAL)


def _present(rng: Rng) -> bool:
    return bool(rng.random() < phys.ADHERENCE)


def _bp(out: ScenarioOutput, rng: Rng, p: _Patient, at: datetime, sbp: float, dbp: float) -> None:
    out.events.append(blood_pressure_event(at, p.id, p.cuff, round(sbp), round(dbp)))


def _routine(
    out: ScenarioOutput,
    rng: Rng,
    p: _Patient,
    start: datetime,
    days: int,
    *,
    bp: bool = True,
    weight: bool = True,
    spo2: bool = True,
    temperature: bool = False,
    weight_extra: Callable[[int], float] = lambda _d: 0.0,
    spo2_drop: Callable[[float], float] = lambda _h: 0.0,
    temp_rise: Callable[[float], float] = lambda _h: 0.0,
    bp_skip: Callable[[datetime], bool] = lambda _at: False,
) -> None:
    """Daily home measurements: BP twice, weight once, SpO2 (with pulse) and temperature."""
    for d in range(days):
        day = start + timedelta(days=d)
        if bp:
            for hour in (7.5, 19.5):
                at = _when(rng, day, hour)
                if _present(rng) and not bp_skip(at):
                    sbp = p.systolic + _noise(rng, phys.BP_SYSTOLIC_DAY_SD)
                    dbp = p.diastolic + _noise(rng, phys.BP_DIASTOLIC_DAY_SD)
                    _bp(out, rng, p, at, sbp, dbp)
        if weight and _present(rng):
            at = _when(rng, day, 7.0, 15.0)
            weekend = phys.WEIGHT_WEEKEND_KG if day.weekday() >= 5 else 0.0
            kg = p.weight + weekend + weight_extra(d) + _noise(rng, phys.WEIGHT_DAY_SD)
            out.events.append(reading_event(at, p.id, p.scale, "body_weight", round(kg, 1), "kg"))
        hours = (8.0, 20.0) if spo2 or temperature else ()
        for hour in hours:
            if not _present(rng):
                continue
            at = _when(rng, day, hour)
            h = (at - start).total_seconds() / 3600
            rise = temp_rise(h)
            if spo2:
                value = min(100.0, p.spo2 - spo2_drop(h) + _noise(rng, phys.SPO2_DAY_SD))
                pulse = p.heart_rate + phys.HR_PER_DEG_C * rise + _noise(rng, phys.HR_DAY_SD)
                out.events.append(reading_event(at, p.id, p.oxi, "spo2", round(value), "%"))
                out.events.append(reading_event(at, p.id, p.oxi, "heart_rate", round(pulse), "bpm"))
            if temperature:
                celsius = p.temperature + rise + _noise(rng, phys.THERMOMETER_SD)
                out.events.append(
                    reading_event(at, p.id, p.thermo, "body_temperature", round(celsius, 1), "Cel")
                )


def _window(out: ScenarioOutput, pid: str, start: datetime, days: int) -> None:
    out.patients.append(MonitoredPatient(pid, start, start + timedelta(days=days)))


#: the device mixes of stable patients, in turn: (bp, weight, spo2, temperature)
STABLE_MIXES: tuple[tuple[bool, bool, bool, bool], ...] = (
    (True, True, True, False),  # hypertension + heart failure kit: cuff, scale, oximeter
    (True, False, False, True),  # cuff and thermometer
    (False, True, True, True),  # scale, oximeter, thermometer
    (True, False, False, False),  # a cuff alone
)


def stable(rng: Rng, start: datetime, prefix: str, patients: int, days: int) -> ScenarioOutput:
    """Well-controlled patients, each with one of the device mixes in turn: no episodes."""
    out = ScenarioOutput()
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}")
        bp, weight, spo2, temperature = STABLE_MIXES[(n - 1) % len(STABLE_MIXES)]
        _routine(out, rng, p, start, days, bp=bp, weight=weight, spo2=spo2, temperature=temperature)
        _window(out, p.id, start, days)
    return out


def hypertensive_crisis(
    rng: Rng, start: datetime, prefix: str, patients: int, days: int
) -> ScenarioOutput:
    """Uncontrolled hypertension with one crisis (> 180 and/or > 120 mmHg) per patient.

    During the crisis the patient, feeling unwell, re-measures every 30 minutes.
    """
    out = ScenarioOutput()
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}", hypertensive=True)
        day = int(rng.integers(max(1, days // 3), max(2, days - 1)))
        onset = day * 24 + _u(rng, (6.0, 16.0))
        length = _u(rng, phys.CRISIS_HOURS)
        peak_sbp = _u(rng, phys.CRISIS_PEAK_SYSTOLIC)
        peak_dbp = _u(rng, phys.CRISIS_PEAK_DIASTOLIC)
        sbp = _Bump(onset, 0.35 * length, length, peak_sbp - p.systolic, 0.3)
        dbp = _Bump(onset, 0.35 * length, length, peak_dbp - p.diastolic, 0.3)
        flags = [
            p.systolic + sbp(h) > phys.CRISIS_SYSTOLIC
            or p.diastolic + dbp(h) > phys.CRISIS_DIASTOLIC
            for h in _grid(days)
        ]
        span = _span(start, flags)
        assert span is not None  # the peak is above the limit by construction
        crisis_start, crisis_end = span
        _routine(
            out,
            rng,
            p,
            start,
            days,
            spo2=False,
            bp_skip=lambda at, a=crisis_start, b=crisis_end: a <= at < b,  # type: ignore[misc]
        )
        at = crisis_start + timedelta(minutes=int(rng.integers(5, 30)))
        while at < crisis_end:
            h = (at - start).total_seconds() / 3600
            systolic = p.systolic + sbp(h) + _noise(rng, 4.0)
            diastolic = p.diastolic + dbp(h) + _noise(rng, 3.0)
            _bp(out, rng, p, at, systolic, diastolic)
            at += timedelta(minutes=30)
        details = {"peak_systolic": round(peak_sbp), "peak_diastolic": round(peak_dbp)}
        out.episodes.append(Episode("hypertensive_crisis", p.id, crisis_start, crisis_end, details))
        _window(out, p.id, start, days)
    return out


def heart_failure(
    rng: Rng, start: datetime, prefix: str, patients: int, days: int
) -> ScenarioOutput:
    """Heart failure: daily weight rising ~1 kg over the 14 days before a decompensation."""
    out = ScenarioOutput()
    rise = phys.HF_RISE_DAYS
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}")
        event_day = int(rng.integers(min(rise + 2, days - 1), days))
        first = max(0, event_day - rise)
        ramp = _Ramp(first, rise, _u(rng, phys.HF_GAIN_KG))
        _routine(out, rng, p, start, days, spo2=False, weight_extra=ramp)
        out.episodes.append(
            Episode(
                "heart_failure_decompensation",
                p.id,
                start + timedelta(days=first),
                start + timedelta(days=event_day),
                {"weight_gain_kg": round(ramp.gain, 2), "decompensation_day": event_day},
            )
        )
        _window(out, p.id, start, days)
    return out


def fever(rng: Rng, start: datetime, prefix: str, patients: int, days: int) -> ScenarioOutput:
    """A febrile illness (>= 38.0 °C) of 2-4.5 days; pulse rises with temperature."""
    out = ScenarioOutput()
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}")
        onset = _u(rng, (24.0, max(48.0, (days - 5) * 24.0)))
        length = _u(rng, phys.FEVER_DAYS) * 24
        peak = _u(rng, phys.FEVER_PEAK)
        rise = _Bump(onset, 0.3 * length, length, peak - p.temperature)
        span = _span(start, [p.temperature + rise(h) >= phys.FEVER_AT for h in _grid(days)])
        assert span is not None  # the peak is above 38.0 by construction
        _routine(out, rng, p, start, days, bp=False, weight=False, temperature=True, temp_rise=rise)
        out.episodes.append(Episode("fever", p.id, span[0], span[1], {"peak_c": round(peak, 1)}))
        _window(out, p.id, start, days)
    return out


def copd_desaturation(
    rng: Rng, start: datetime, prefix: str, patients: int, days: int
) -> ScenarioOutput:
    """COPD with an exacerbation: SpO2 falls 5-8 points, below 88 %, for days.

    The patients are at risk of hypercapnic respiratory failure: their care plan uses the
    NEWS2 SpO2 scale 2 (target 88-92 %, BTS 2017), set by a ``care_plan`` event at the start.
    """
    out = ScenarioOutput()
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}", copd=True)
        out.events.append(care_plan_event(start, p.id, {"news2.spo2_scale": 2}))
        onset = _u(rng, (48.0, max(72.0, (days - 8) * 24.0)))
        length = _u(rng, phys.COPD_DAYS) * 24
        drop = _Bump(onset, _u(rng, phys.COPD_ONSET_HOURS), length, _u(rng, phys.COPD_DROP))
        flags = [p.spo2 - drop(h) < phys.COPD_DESATURATION_BELOW for h in _grid(days)]
        span = _span(start, flags)
        _routine(out, rng, p, start, days, bp=False, weight=False, temperature=True, spo2_drop=drop)
        if span is not None:
            nadir = {"nadir_spo2": round(p.spo2 - drop.amplitude, 1)}
            out.episodes.append(Episode("copd_desaturation", p.id, span[0], span[1], nadir))
        _window(out, p.id, start, days)
    return out


def bp_slow_rise(
    rng: Rng, start: datetime, prefix: str, patients: int, days: int
) -> ScenarioOutput:
    """Systolic rising 1-2 mmHg/day over 3-4 weeks (twice-daily home readings).

    Each reading is the day's level (day-to-day SD) plus the reading's own spread (within
    the day) plus a small morning excess; the episode is the rise, from its first day to
    its last (or the end of the feed).
    """
    out = ScenarioOutput()
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}")
        p.systolic = _u(rng, phys.BP_RISE_BASELINE_SYSTOLIC)
        length = int(rng.integers(phys.BP_RISE_DAYS[0], phys.BP_RISE_DAYS[1] + 1))
        # a baseline week first when the feed is long enough
        lo = min(7, max(0, days - length))
        first = int(rng.integers(lo, max(lo + 1, days - length + 1)))
        rate = _u(rng, phys.BP_RISE_PER_DAY)
        noise_clip = 2.5 * (phys.BP_DAY_LEVEL_SD + phys.BP_READING_SD)
        cap = phys.BP_RISE_CEILING - noise_clip - phys.BP_MORNING_EXCESS - p.systolic
        rate = min(rate, cap / length)
        for d in range(days):
            day = start + timedelta(days=d)
            rise = rate * min(max(d - first, 0), length)
            level_sbp = p.systolic + rise + _noise(rng, phys.BP_DAY_LEVEL_SD)
            level_dbp = (
                p.diastolic
                + phys.BP_RISE_DIASTOLIC_FRACTION * rise
                + _noise(rng, phys.BP_DIASTOLIC_DAY_SD * 0.75)
            )
            for hour, excess in ((7.5, phys.BP_MORNING_EXCESS), (19.5, 0.0)):
                at = _when(rng, day, hour)
                if not _present(rng):
                    continue
                sbp = level_sbp + excess + _noise(rng, phys.BP_READING_SD)
                dbp = level_dbp + excess / 2 + _noise(rng, phys.BP_DIASTOLIC_DAY_SD * 0.66)
                _bp(out, rng, p, at, sbp, dbp)
        end_day = first + length
        out.episodes.append(
            Episode(
                "bp_rising_trend",
                p.id,
                start + timedelta(days=first),
                start + timedelta(days=end_day) if end_day <= days else None,
                {"mmhg_per_day": round(rate, 2), "days": length},
            )
        )
        _window(out, p.id, start, days)
    return out


def tachycardia(rng: Rng, start: datetime, prefix: str, patients: int, days: int) -> ScenarioOutput:
    """A wearable's resting heart rate every 10 min; one tachycardia > 130/min per patient.

    A paroxysm of fast atrial fibrillation: abrupt onset, an irregular rate of 140-165/min
    for 4-30 hours, then back to sinus rhythm. The episode runs from the paroxysm's onset
    (the rhythm change; the rate passes 130 within minutes) to the rate's return below 130.
    """
    out = ScenarioOutput()
    step = timedelta(minutes=phys.WEARABLE_HR_MINUTES)
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}")
        patch = f"patch-{p.id}"
        onset = _u(rng, (24.0, max(36.0, (days - 2) * 24.0)))
        length = _u(rng, phys.TACHY_HOURS)
        peak = _u(rng, phys.TACHY_PEAK)
        rise_h = _u(rng, phys.TACHY_ONSET_MINUTES) / 60
        fast = _Bump(onset, rise_h, length, peak - p.heart_rate, 0.2)
        flags = [p.heart_rate + fast(h) > phys.TACHY_AT for h in _grid(days)]
        span = _span(start, flags)
        assert span is not None  # the peak is above 130 by construction
        onset_at = start + timedelta(minutes=math.floor(onset * 60))
        at = start + timedelta(minutes=int(rng.integers(0, phys.WEARABLE_HR_MINUTES)))
        end = start + timedelta(days=days)
        while at < end:
            h = (at - start).total_seconds() / 3600
            night = phys.HR_NIGHT_DIP * math.cos(2 * math.pi * (h % 24 - 3.0) / 24)
            extra = fast(h)
            sd = phys.TACHY_SD if extra > 10 else phys.HR_DAY_SD
            bpm = p.heart_rate - max(night, 0.0) + extra + _noise(rng, sd)
            out.events.append(reading_event(at, p.id, patch, "heart_rate", round(bpm), "bpm"))
            at += step
        out.episodes.append(
            Episode("tachycardia", p.id, onset_at, span[1], {"peak_bpm": round(peak)})
        )
        _window(out, p.id, start, days)
    return out
