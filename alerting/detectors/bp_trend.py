"""A rising blood-pressure trend over days: the slope of daily mean systolic. Pure.

Daily mean systolic per UTC day; over the last :data:`WINDOW_DAYS` days (the reading's
own day and the days before it) a least-squares line (``scipy.stats.linregress``) gives
the slope in mmHg/day and its standard error. The rule fires when the lower bound of the
slope's 95% confidence interval is above the limit, so a noisy fortnight does not look
like a trend; it clears when the slope itself is back under the limit by the margin.

State per patient: per-day sums over the window (bounded); duplicates are recognised by
identifier. A reading older than the window is ignored (it cannot change the current
trend); a late reading inside it is added to its day and judged as of that day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from scipy import stats

from alerting.detectors._common import (
    Parameter,
    ParameterTable,
    TableDetector,
    TrendRule,
    canonical_value,
)
from alerting.rules import Finding, display_number
from wardwatch.store import StoredObservation

# No guideline fixes a slope limit for home readings; wardwatch's choice, reasoned: home
# systolic varies day to day with an SD of about 8 mmHg (Juhanoja EP et al., Hypertension
# 2017;69:599-607), so a 14-day fit of daily means has a slope SE of about 0.5 mmHg/day; a
# lower 95% bound above 1 mmHg/day (14 mmHg in two weeks) is a sustained rise worth a
# nurse's review and more frequent readings (ESH 2021 home BP practice guideline, Stergiou
# GS et al., J Hypertens 2021;39:1742-67: 7 days of duplicate morning/evening readings).
RISING = TrendRule(
    "bp.trend.rising",
    "blood_pressure",
    "Rising blood pressure",
    "info",
    "wardwatch: 14-day linear regression of daily mean systolic, lower 95% CI > 1 mmHg/day",
)
RULES: tuple[TrendRule, ...] = (RISING,)

WINDOW_DAYS = 14
CONFIDENCE = 0.95
_HYSTERESIS = 0.5  # mmHg/day: the slope must fall this far under the limit to clear

PARAMETERS = ParameterTable(
    (
        Parameter("bp.trend.rising", 1.0, 0.1, 20.0, "mmHg/day"),
        Parameter("bp.trend.rising.min_days", 7.0, 3.0, float(WINDOW_DAYS), "days", True),
    )
)


@lru_cache(maxsize=64)
def _t(dof: int) -> float:
    """Two-sided Student t quantile for the confidence level (cached: called per reading)."""
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof))


@dataclass(slots=True)
class _Day:
    total: float = 0.0
    count: int = 0
    identifiers: set[str] = field(default_factory=set)


@dataclass(slots=True)
class BloodPressureTrendState:
    """Per-patient daily systolic sums over the last WINDOW_DAYS days."""

    days: dict[date, _Day] = field(default_factory=dict)


class BloodPressureTrendDetector(TableDetector):
    """Fires on a rising 14-day trend of daily mean systolic pressure."""

    rules = RULES
    KINDS = frozenset({"blood_pressure"})
    TABLE = PARAMETERS
    KEEP = timedelta(days=WINDOW_DAYS + 1)  # the window, plus today

    def new_state(self) -> BloodPressureTrendState:
        """No days yet."""
        return BloodPressureTrendState()

    def evaluate(
        self,
        observation: StoredObservation,
        thresholds: Mapping[str, float] | None = None,
        state: Any = None,
    ) -> list[Finding]:
        """The trend as of the reading's day, once the window has enough days."""
        if observation.kind != "blood_pressure":
            return []
        systolic = canonical_value(observation, "systolic")
        if systolic is None:
            return []
        st: BloodPressureTrendState = state if state is not None else BloodPressureTrendState()
        overrides = thresholds or {}
        day = observation.at.date()
        newest = max(st.days, default=day)
        if day <= newest - timedelta(days=WINDOW_DAYS):
            return []
        bucket = st.days.setdefault(day, _Day())
        if observation.identifier in bucket.identifiers:
            return []  # seen already: its findings were given then
        bucket.total += systolic
        bucket.count += 1
        bucket.identifiers.add(observation.identifier)
        oldest = max(st.days) - timedelta(days=WINDOW_DAYS)
        for old in [d for d in st.days if d <= oldest]:
            del st.days[old]
        first = day - timedelta(days=WINDOW_DAYS - 1)
        points = sorted(
            (d.toordinal(), b.total / b.count) for d, b in st.days.items() if first <= d <= day
        )
        if len(points) < PARAMETERS.get("bp.trend.rising.min_days", overrides):
            return []
        fit = stats.linregress([x for x, _ in points], [y for _, y in points])
        slope = float(fit.slope)
        margin = _t(len(points) - 2) * float(fit.stderr)
        low, high = slope - margin, slope + margin
        limit = PARAMETERS.get(RISING.id, overrides)
        detail = (
            f"systolic {slope:+.1f} mmHg/day over {len(points)} days "
            f"(95% CI {low:.1f} to {high:.1f})"
        )
        if low > limit:
            return [
                Finding(
                    RISING,
                    True,
                    slope,
                    "mm[Hg]/d",
                    f"{RISING.title}: {detail}, lower bound > {display_number(limit)} mmHg/day",
                    observation.identifier,
                    observation.at,
                )
            ]
        if slope < limit - _HYSTERESIS:
            return [
                Finding(
                    RISING,
                    False,
                    slope,
                    "mm[Hg]/d",
                    f"{RISING.title} cleared: {detail}",
                    observation.identifier,
                    observation.at,
                )
            ]
        return []


__all__ = ["RISING", "BloodPressureTrendDetector", "BloodPressureTrendState"]
