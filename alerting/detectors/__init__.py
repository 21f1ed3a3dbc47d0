"""Detectors beyond single-reading thresholds: trends, NEWS2, the clinical threshold table.

All pure (no I/O), all on event time, all incremental: each keeps a bounded per-patient
state that :class:`alerting.engine.AlertEngine` holds and rebuilds from the store
(:class:`alerting.rules.IncrementalDetector`).

- :mod:`alerting.detectors.thresholds` — ``CLINICAL_RULES``: blood pressure (ACC/AHA),
  glucose meter and CGM (ADA levels, CGM consensus durations), NEWS2 single parameters;
  applied by :class:`alerting.rules.ThresholdDetector`.
- :mod:`alerting.detectors.news2` — :class:`News2Detector`, the aggregate score and bands.
- :mod:`alerting.detectors.weight` — :class:`WeightGainDetector` (2 kg/3 days, 3 lb/day,
  MACD).
- :mod:`alerting.detectors.bp_trend` — :class:`BloodPressureTrendDetector` (14-day slope).
- :mod:`alerting.detectors.glucose` — :class:`GlucoseTrendDetector` (rate of change,
  predicted low).
- :mod:`alerting.detectors.missing` — clock detectors (``default_clock_detectors()``):
  :class:`DeviceSilentDetector` (a device past its expected schedule),
  :class:`HubOfflineDetector` (a hub whose status went offline).

Every rule id, default and source is listed in ``docs/alerting.md``.
"""

from __future__ import annotations

from alerting.detectors.bp_trend import BloodPressureTrendDetector
from alerting.detectors.glucose import GlucoseTrendDetector
from alerting.detectors.missing import (
    DeviceSilentDetector,
    HubOfflineDetector,
    default_clock_detectors,
)
from alerting.detectors.news2 import News2Detector, news2_score
from alerting.detectors.thresholds import CLINICAL_RULES, GLUCOSE_RULES, VITAL_SIGN_RULES
from alerting.detectors.weight import WeightGainDetector
from alerting.rules import Detector, ThresholdDetector


def default_detectors() -> tuple[Detector, ...]:
    """The detectors an engine runs unless told otherwise: every default rule."""
    return (
        ThresholdDetector(CLINICAL_RULES),
        News2Detector(),
        WeightGainDetector(),
        BloodPressureTrendDetector(),
        GlucoseTrendDetector(),
    )


__all__ = [
    "CLINICAL_RULES",
    "GLUCOSE_RULES",
    "VITAL_SIGN_RULES",
    "BloodPressureTrendDetector",
    "DeviceSilentDetector",
    "GlucoseTrendDetector",
    "HubOfflineDetector",
    "News2Detector",
    "WeightGainDetector",
    "default_clock_detectors",
    "default_detectors",
    "news2_score",
]
