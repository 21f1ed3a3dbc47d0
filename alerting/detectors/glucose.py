"""CGM glucose: rate of change and a predictive low, as CGM systems alarm. Pure.

Both read a least-squares line through the patient's recent CGM readings:

- rate of change over the last :data:`RATE_MINUTES` minutes (mg/dL/min), falling or
  rising faster than 3 mg/dL/min (the "rapidly falling/rising" double arrow and the
  rise/fall rate alerts of CGM systems);
- predicted low: the line's value now, extrapolated :data:`PREDICT_MINUTES` minutes
  ahead over the last :data:`FIT_MINUTES` minutes, below 55 mg/dL (Dexcom's "Urgent Low
  Soon"; Nightscout has similar predictive alarms).

A fit needs :data:`MIN_POINTS` readings spanning :data:`MIN_SPAN_MINUTES` minutes, so one
noisy reading cannot raise either alert.

State per patient: the CGM readings of the last :data:`KEEP_MINUTES` minutes, in time
order (bounded; duplicates recognised by identifier). A late reading inside that window
is placed in order and judged with the readings before it; an older one is ignored.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerting.detectors._common import (
    Parameter,
    ParameterTable,
    TableDetector,
    TrendRule,
    canonical_value,
    least_squares,
)
from alerting.rules import Finding, display_number
from wardwatch.store import StoredObservation

# Dexcom G6 / G7 user guides (Dexcom Inc.), "Rise rate / Fall rate alerts": optional
# alerts at 2 or 3 mg/dL/min; trend arrows: double arrow when the rate is over 3 mg/dL/min.
_RATE_SOURCE = "Dexcom G6/G7 user guide: rise/fall rate alerts and double arrows > 3 mg/dL/min"
FALLING = TrendRule(
    "glucose.rate.falling",
    "cgm_glucose",
    "Glucose falling fast",
    "warning",
    _RATE_SOURCE,
)
RISING = TrendRule(
    "glucose.rate.rising",
    "cgm_glucose",
    "Glucose rising fast",
    "info",
    _RATE_SOURCE,
)
# Dexcom G6 / G7 user guides, "Urgent Low Soon alert": glucose predicted to reach 55 mg/dL
# within 20 minutes. Linear extrapolation of the last 20 minutes is wardwatch's stand-in for
# the vendor's (unpublished) predictor.
PREDICTED_LOW = TrendRule(
    "glucose.predicted_low",
    "cgm_glucose",
    "Glucose predicted low",
    "urgent",
    "Dexcom G6/G7 user guide, Urgent Low Soon: < 55 mg/dL predicted within 20 minutes",
)
RULES: tuple[TrendRule, ...] = (FALLING, RISING, PREDICTED_LOW)

RATE_MINUTES = 15.0
FIT_MINUTES = 20.0
PREDICT_MINUTES = 20.0
MIN_POINTS = 3
MIN_SPAN_MINUTES = 10.0
KEEP_MINUTES = 30.0

_RATE_HYSTERESIS = 1.0  # mg/dL/min under the limit to clear (wardwatch's choice)
_PREDICT_HYSTERESIS = 10.0  # mg/dL above the limit to clear (wardwatch's choice)

PARAMETERS = ParameterTable(
    (
        Parameter("glucose.rate.falling", 3.0, 1.0, 10.0, "mg/dL/min"),
        Parameter("glucose.rate.rising", 3.0, 1.0, 10.0, "mg/dL/min"),
        Parameter("glucose.predicted_low", 55.0, 40.0, 100.0, "mg/dL"),
        Parameter("glucose.predicted_low.minutes", PREDICT_MINUTES, 5.0, 60.0, "min"),
    )
)


@dataclass(frozen=True, slots=True)
class _Point:
    at: datetime
    identifier: str
    mg_dl: float


def _key(p: _Point) -> tuple[datetime, str]:
    return p.at, p.identifier


@dataclass(slots=True)
class GlucoseTrendState:
    """Per-patient CGM readings of the last KEEP_MINUTES minutes, in time order."""

    points: list[_Point] = field(default_factory=list)


class GlucoseTrendDetector(TableDetector):
    """Rate of change and predictive low on CGM readings."""

    rules = RULES
    KINDS = frozenset({"cgm_glucose"})  # meter readings are too sparse for a rate
    TABLE = PARAMETERS
    KEEP = timedelta(minutes=KEEP_MINUTES)

    def new_state(self) -> GlucoseTrendState:
        """No readings yet."""
        return GlucoseTrendState()

    def evaluate(
        self,
        observation: StoredObservation,
        thresholds: Mapping[str, float] | None = None,
        state: Any = None,
    ) -> list[Finding]:
        """Rate and prediction as of the reading's time."""
        if observation.kind != "cgm_glucose":
            return []
        value = canonical_value(observation)
        if value is None:
            return []
        st: GlucoseTrendState = state if state is not None else GlucoseTrendState()
        overrides = thresholds or {}
        points = st.points
        if points and observation.at < points[-1].at - timedelta(minutes=KEEP_MINUTES):
            return []
        if any(p.identifier == observation.identifier for p in points):
            return []  # seen already: its findings were given then
        point = _Point(observation.at, observation.identifier, value)
        bisect.insort(points, point, key=_key)
        cut = points[-1].at - timedelta(minutes=KEEP_MINUTES)
        while points and points[0].at < cut:
            points.pop(0)
        upto = points[: points.index(point) + 1]
        findings: list[Finding] = []
        rate = self._fit(upto, point.at, RATE_MINUTES)
        if rate is not None:
            findings.extend(self._rate(rate[0], point, overrides))
        fit = self._fit(upto, point.at, FIT_MINUTES)
        if fit is not None:
            finding = self._predicted(fit, point, overrides)
            if finding is not None:
                findings.append(finding)
        return findings

    @staticmethod
    def _fit(points: list[_Point], at: datetime, minutes: float) -> tuple[float, float, int] | None:
        """(slope mg/dL/min, fitted value at ``at``, points) over the last ``minutes``."""
        start = at - timedelta(minutes=minutes)
        recent = [p for p in points if p.at >= start]
        if len(recent) < MIN_POINTS:
            return None
        if (recent[-1].at - recent[0].at) < timedelta(minutes=MIN_SPAN_MINUTES):
            return None
        xy = [((p.at - at).total_seconds() / 60.0, p.mg_dl) for p in recent]
        slope, intercept = least_squares(xy)
        return slope, intercept, len(recent)

    def _rate(self, slope: float, point: _Point, overrides: Mapping[str, float]) -> list[Finding]:
        findings: list[Finding] = []
        for rule, sign in ((FALLING, -1.0), (RISING, 1.0)):
            limit = PARAMETERS.get(rule.id, overrides)
            speed = sign * slope  # positive in the rule's direction
            detail = f"{slope:+.1f} mg/dL/min over {display_number(RATE_MINUTES)} min"
            if speed > limit:
                findings.append(
                    Finding(
                        rule,
                        True,
                        slope,
                        "mg/dL/min",
                        f"{rule.title}: {detail} (limit {display_number(limit)})",
                        point.identifier,
                        point.at,
                    )
                )
            elif speed < limit - _RATE_HYSTERESIS:
                findings.append(
                    Finding(
                        rule,
                        False,
                        slope,
                        "mg/dL/min",
                        f"{rule.title} cleared: {detail}",
                        point.identifier,
                        point.at,
                    )
                )
        return findings

    def _predicted(
        self, fit: tuple[float, float, int], point: _Point, overrides: Mapping[str, float]
    ) -> Finding | None:
        slope, now, _ = fit
        horizon = PARAMETERS.get("glucose.predicted_low.minutes", overrides)
        limit = PARAMETERS.get(PREDICTED_LOW.id, overrides)
        predicted = now + slope * horizon
        detail = (
            f"{display_number(predicted)} mg/dL predicted in {display_number(horizon)} min "
            f"({slope:+.1f} mg/dL/min)"
        )
        if slope < 0 and predicted < limit:
            return Finding(
                PREDICTED_LOW,
                True,
                predicted,
                "mg/dL",
                f"{PREDICTED_LOW.title}: {detail} < {display_number(limit)} mg/dL",
                point.identifier,
                point.at,
            )
        if predicted >= limit + _PREDICT_HYSTERESIS:
            return Finding(
                PREDICTED_LOW,
                False,
                predicted,
                "mg/dL",
                f"{PREDICTED_LOW.title} cleared: {detail}",
                point.identifier,
                point.at,
            )
        return None


__all__ = ["FALLING", "PREDICTED_LOW", "RISING", "GlucoseTrendDetector", "GlucoseTrendState"]
