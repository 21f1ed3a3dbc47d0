"""Heart-failure weight gain: the rules of thumb and a MACD trend on daily weights. Pure.

Daily weight: the first reading of each UTC day (heart-failure patients are taught to
weigh every morning, after voiding and before breakfast; a later reading the same day is
kept out of the trend). The patient's local day is not known to the backend yet: UTC
days are used, which for Europe puts the morning weighing on the right day.

State per patient: the daily weights of the last :data:`HISTORY_DAYS` days (bounded). Each
reading is evaluated as of its own day with the days before it, so a late reading of an
earlier day is judged as it would have been on time; a reading older than the kept days
is ignored (it cannot change any current trend).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from alerting.detectors._common import (
    Parameter,
    ParameterTable,
    TableDetector,
    TrendRule,
    canonical_value,
)
from alerting.rules import Finding, display_number
from wardwatch.store import StoredObservation

# McDonagh TA et al. 2021 ESC Guidelines for the diagnosis and treatment of acute and chronic
# heart failure. Eur Heart J 2021;42:3599-726, table 31 (patient self-care): "in case of
# ... sudden unexpected weight gain of > 2 kg in 3 days, patients should increase their
# diuretic dose and/or alert their healthcare team".
GAIN_3_DAYS = TrendRule(
    "weight.gain.2kg_3d",
    "body_weight",
    "Weight gain over 3 days",
    "warning",
    "ESC 2021 heart failure guideline, table 31: > 2 kg in 3 days",
)
# American Heart Association / Heart Failure Society of America patient guidance ("Managing
# heart failure symptoms", heart.org; HFSA module "Self-care: following your treatment
# plan"): report a gain of more than 2-3 lb in a day or 5 lb in a week. The 3 lb/day rule
# of thumb is also the one tested by Zhang et al. 2009 (below). 3 lb = 1.36 kg.
GAIN_1_DAY = TrendRule(
    "weight.gain.3lb_1d",
    "body_weight",
    "Weight gain over 1 day",
    "warning",
    "AHA/HFSA patient guidance: > 3 lb (1.36 kg) in 1 day",
)
# Moving-average convergence-divergence on daily weight: Zhang J, Goode KM, Cuddihy PE,
# Cleland JGF. Predicting hospitalization due to worsening heart failure using daily weight
# measurement (TEN-HMS). Eur J Heart Fail 2009;11:420-7: more specific than the rules of
# thumb (9% vs 54-58% false alerts). Spans and limit are wardwatch's choice: a 3-day
# fast and a 14-day slow average (the 14 days in which weight rises before a heart-failure
# admission, Chaudhry SI et al., Circulation 2007;116:1549-54), a 5-day signal line, and
# an alert when the fast average is 0.5 kg above the slow one (about 3 SD of that difference
# for a day-to-day weight SD of 0.4 kg).
MACD = TrendRule(
    "weight.trend.macd",
    "body_weight",
    "Rising weight trend (MACD)",
    "warning",
    "Zhang et al. 2009 (TEN-HMS) MACD on daily weight; 3/14/5-day spans, 0.5 kg (wardwatch)",
)

RULES: tuple[TrendRule, ...] = (GAIN_3_DAYS, GAIN_1_DAY, MACD)

FAST_DAYS = 3
SLOW_DAYS = 14
SIGNAL_DAYS = 5
MIN_MACD_DAYS = 10
"""Daily weights needed (within the kept days) before the MACD may fire."""
HISTORY_DAYS = 60
"""Days of daily weights kept: the slow average's weight of older days is below 1e-4."""

_LB = 0.45359237  # kg, exactly (international avoirdupois pound)
_ROT_HYSTERESIS = 0.5  # kg under the limit to clear (wardwatch's choice, ~1 SD of a day)
_MACD_HYSTERESIS = 0.2

PARAMETERS = ParameterTable(
    (
        Parameter("weight.gain.2kg_3d", 2.0, 0.5, 10.0, "kg"),
        Parameter("weight.gain.3lb_1d", 3 * _LB, 0.3, 10.0, "kg"),
        Parameter("weight.trend.macd", 0.5, 0.1, 5.0, "kg"),
    )
)


@dataclass(frozen=True, slots=True)
class _Daily:
    at: datetime
    identifier: str
    kg: float


@dataclass(slots=True)
class WeightState:
    """Per-patient daily weights (first reading of each UTC day), last HISTORY_DAYS days."""

    days: dict[date, _Daily] = field(default_factory=dict)


def _ema(values: list[float], span: int) -> list[float]:
    alpha = 2.0 / (span + 1)
    out: list[float] = []
    for v in values:
        out.append(v if not out else out[-1] + alpha * (v - out[-1]))
    return out


class WeightGainDetector(TableDetector):
    """Weight gain over 1 and 3 days and a MACD trend, per patient, on daily weights."""

    rules = RULES
    KINDS = frozenset({"body_weight"})
    TABLE = PARAMETERS
    KEEP = timedelta(days=HISTORY_DAYS + 1)  # the kept days, plus today

    def new_state(self) -> WeightState:
        """No daily weights yet."""
        return WeightState()

    def evaluate(
        self,
        observation: StoredObservation,
        thresholds: Mapping[str, float] | None = None,
        state: Any = None,
    ) -> list[Finding]:
        """Findings as of the reading's day, if it is (or becomes) that day's weight."""
        if observation.kind != "body_weight":
            return []
        kg = canonical_value(observation)
        if kg is None:
            return []
        st: WeightState = state if state is not None else WeightState()
        overrides = thresholds or {}
        day = observation.at.date()
        newest = max(st.days, default=day)
        if day < newest - timedelta(days=HISTORY_DAYS):
            return []  # older than every kept day: no current trend depends on it
        current = st.days.get(day)
        if current is not None and (current.at, current.identifier) <= (
            observation.at,
            observation.identifier,
        ):
            if current.identifier != observation.identifier:
                return []  # a later reading the same day: not the daily weight
        else:
            st.days[day] = _Daily(observation.at, observation.identifier, kg)
            oldest = max(st.days) - timedelta(days=HISTORY_DAYS)
            for old in [d for d in st.days if d < oldest]:
                del st.days[old]
        today = st.days[day]
        findings = [
            self._gain(GAIN_1_DAY, st, day, today, 1, overrides),
            self._gain(GAIN_3_DAYS, st, day, today, 3, overrides),
            self._macd(st, day, today, overrides),
        ]
        return [f for f in findings if f is not None]

    def _gain(
        self,
        rule: TrendRule,
        st: WeightState,
        day: date,
        today: _Daily,
        days: int,
        overrides: Mapping[str, float],
    ) -> Finding | None:
        before = [
            st.days[d]
            for d in (day - timedelta(days=n) for n in range(1, days + 1))
            if d in st.days
        ]
        if not before:
            return None
        base = min(before, key=lambda w: w.kg)
        gain = today.kg - base.kg
        limit = PARAMETERS.get(rule.id, overrides)
        span = f"{days} day" if days == 1 else f"{days} days"
        if gain > limit:
            return Finding(
                rule,
                True,
                gain,
                "kg",
                f"{rule.title}: +{display_number(gain)} kg in {span} "
                f"({display_number(base.kg)} -> {display_number(today.kg)} kg) "
                f"> {display_number(limit)} kg",
                today.identifier,
                today.at,
                observations=(base.identifier, today.identifier),
            )
        if gain < limit - _ROT_HYSTERESIS:
            return Finding(
                rule,
                False,
                gain,
                "kg",
                f"{rule.title} cleared: {display_number(gain)} kg in {span} "
                f"< {display_number(limit - _ROT_HYSTERESIS)} kg",
                today.identifier,
                today.at,
            )
        return None

    def _macd(
        self, st: WeightState, day: date, today: _Daily, overrides: Mapping[str, float]
    ) -> Finding | None:
        series = [st.days[d] for d in sorted(st.days) if d <= day]
        if len(series) < MIN_MACD_DAYS:
            return None
        values = [w.kg for w in series]
        macd = [
            f - s for f, s in zip(_ema(values, FAST_DAYS), _ema(values, SLOW_DAYS), strict=True)
        ]
        signal = _ema(macd, SIGNAL_DAYS)[-1]
        now = macd[-1]
        limit = PARAMETERS.get(MACD.id, overrides)
        detail = (
            f"{FAST_DAYS}-day average {display_number(now)} kg above the {SLOW_DAYS}-day "
            f"(signal {display_number(signal)} kg)"
        )
        if now > limit:
            return Finding(
                MACD,
                True,
                now,
                "kg",
                f"{MACD.title}: {detail} > {display_number(limit)} kg",
                today.identifier,
                today.at,
            )
        if now < limit - _MACD_HYSTERESIS:
            return Finding(
                MACD,
                False,
                now,
                "kg",
                f"{MACD.title} cleared: {detail}",
                today.identifier,
                today.at,
            )
        return None


__all__ = ["GAIN_1_DAY", "GAIN_3_DAYS", "MACD", "WeightGainDetector", "WeightState"]
