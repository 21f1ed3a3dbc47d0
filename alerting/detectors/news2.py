"""NEWS2: the aggregate score from each patient's latest vital signs, with RCP bands. Pure.

Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising the
assessment of acute-illness severity in the NHS. Updated report of a working party.
London: RCP, 2017. Chart 1 scores seven parameters; chart 2 maps the aggregate to a
clinical response: 0 none; 1-4 low (a registered nurse assesses); 3 in any single
parameter low-medium (urgent ward-based response); 5-6 medium (urgent response); >= 7 high
(emergency response).

At home not every parameter is measured. The aggregate counts the parameters measured
within the freshness window (default 24 h) before the reading that triggers it; the
level of consciousness is not measured by any device and is taken as Alert (score 0);
supplemental oxygen is taken as air unless an SpO2 Observation carries an inhaled-oxygen
component (LOINC 3151-8 flow rate > 0 or 3150-0 concentration > 21%, as the FHIR R4
oxygensat profile allows). The message says which parameters were counted.

Alerts: ``news2.high`` (urgent), ``news2.medium`` and ``news2.low_medium`` (warning), and
``news2.low`` (info). A patient is in one band at a time: the band's rule fires and the
others clear. ``news2.low`` is off unless the care plan sets ``{"news2.low.enabled": 1}``:
at home a score of 1-2 is common in stable patients (SpO2 95%, pulse 91), and the low band
asks for a nurse's routine assessment, which the worklist (not an alert) gives.

State per patient: the latest reading of each parameter (bounded). A late reading older
than the latest of its parameter changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from alerting.detectors._common import (
    Parameter,
    ParameterTable,
    TableDetector,
    TrendRule,
    canonical_value,
)
from alerting.rules import SPO2_SCALE, Finding
from wardwatch.store import StoredObservation

_SOURCE = "RCP NEWS2 2017, chart 2 (clinical response)"
HIGH = TrendRule("news2.high", "news2", "NEWS2 high (>= 7)", "urgent", f"{_SOURCE}: >= 7")
MEDIUM = TrendRule("news2.medium", "news2", "NEWS2 medium (5-6)", "warning", f"{_SOURCE}: 5-6")
LOW_MEDIUM = TrendRule(
    "news2.low_medium",
    "news2",
    "NEWS2 low-medium (3 in one parameter)",
    "warning",
    f"{_SOURCE}: 3 in any single parameter",
)
LOW = TrendRule("news2.low", "news2", "NEWS2 low (1-4)", "info", f"{_SOURCE}: 1-4")
RULES: tuple[TrendRule, ...] = (HIGH, MEDIUM, LOW_MEDIUM, LOW)

PARAMETERS = ParameterTable(
    (
        Parameter(SPO2_SCALE.parameter, SPO2_SCALE.default, 1.0, 2.0, "", True),
        Parameter("news2.freshness_hours", 24.0, 1.0, 72.0, "h"),
        Parameter("news2.low.enabled", 0.0, 0.0, 1.0, "", True),
    )
)
_MAX_FRESHNESS = timedelta(hours=72)

# parameter -> (observation kind, panel component)
_SOURCES: Mapping[str, tuple[str, str | None]] = {
    "respiratory_rate": ("respiratory_rate", None),
    "spo2": ("spo2", None),
    "systolic": ("blood_pressure", "systolic"),
    "pulse": ("heart_rate", None),
    "temperature": ("body_temperature", None),
}
_BY_KIND: Mapping[str, str] = {kind: name for name, (kind, _) in _SOURCES.items()}
_INHALED_O2_FLOW = b"3151-8"
_INHALED_O2_CONCENTRATION = b"3150-0"


# -- chart 1, pure scoring ---------------------------------------------------------------


def score_respiratory_rate(rate: float) -> int:
    """NEWS2 respiration rate (per minute): <=8 3, 9-11 1, 12-20 0, 21-24 2, >=25 3."""
    r = round(rate)
    if r <= 8:
        return 3
    if r <= 11:
        return 1
    if r <= 20:
        return 0
    if r <= 24:
        return 2
    return 3


def score_spo2(spo2: float, scale: int = 1, on_oxygen: bool = False) -> int:
    """NEWS2 SpO2 (%), scale 1 or scale 2 (target 88-92%, hypercapnic respiratory failure)."""
    s = round(spo2)
    if scale == 1:
        if s <= 91:
            return 3
        if s <= 93:
            return 2
        if s <= 95:
            return 1
        return 0
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:
        return 0  # 88-92, or >= 93 on air
    if s <= 94:
        return 1
    if s <= 96:
        return 2
    return 3


def score_air_or_oxygen(on_oxygen: bool) -> int:
    """NEWS2 supplemental oxygen: 2; air: 0."""
    return 2 if on_oxygen else 0


def score_systolic(systolic: float) -> int:
    """NEWS2 systolic (mmHg): <=90 3, 91-100 2, 101-110 1, 111-219 0, >=220 3."""
    s = round(systolic)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    if s <= 219:
        return 0
    return 3


def score_pulse(pulse: float) -> int:
    """NEWS2 pulse (per minute): <=40 3, 41-50 1, 51-90 0, 91-110 1, 111-130 2, >=131 3."""
    p = round(pulse)
    if p <= 40:
        return 3
    if p <= 50:
        return 1
    if p <= 90:
        return 0
    if p <= 110:
        return 1
    if p <= 130:
        return 2
    return 3


def score_temperature(celsius: float) -> int:
    """NEWS2 temperature (degC): <=35.0 3, 35.1-36.0 1, 36.1-38.0 0, 38.1-39.0 1, >=39.1 2."""
    t = round(celsius, 1)
    if t <= 35.0:
        return 3
    if t <= 36.0:
        return 1
    if t <= 38.0:
        return 0
    if t <= 39.0:
        return 1
    return 2


@dataclass(frozen=True, slots=True)
class News2Score:
    """An aggregate NEWS2 and its parts."""

    total: int
    parts: Mapping[str, int]
    """Score per counted parameter (``air_or_oxygen`` always counted)."""

    @property
    def band(self) -> str:
        """``high``, ``medium``, ``low_medium``, ``low`` or ``none`` (RCP chart 2)."""
        if self.total >= 7:
            return "high"
        if self.total >= 5:
            return "medium"
        if any(v == 3 for v in self.parts.values()):
            return "low_medium"
        if self.total >= 1:
            return "low"
        return "none"


def news2_score(
    vitals: Mapping[str, float], *, scale: int = 1, on_oxygen: bool = False
) -> News2Score:
    """Score the parameters present in ``vitals`` (names as in :data:`_SOURCES`).

    Consciousness is taken as Alert (0); supplemental oxygen as ``on_oxygen``.
    """
    parts: dict[str, int] = {}
    if "respiratory_rate" in vitals:
        parts["respiratory_rate"] = score_respiratory_rate(vitals["respiratory_rate"])
    if "spo2" in vitals:
        parts["spo2"] = score_spo2(vitals["spo2"], scale, on_oxygen)
    parts["air_or_oxygen"] = score_air_or_oxygen(on_oxygen)
    if "systolic" in vitals:
        parts["systolic"] = score_systolic(vitals["systolic"])
    if "pulse" in vitals:
        parts["pulse"] = score_pulse(vitals["pulse"])
    if "temperature" in vitals:
        parts["temperature"] = score_temperature(vitals["temperature"])
    return News2Score(sum(parts.values()), parts)


# -- the detector ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Vital:
    at: datetime
    identifier: str
    value: float
    on_oxygen: bool = False


@dataclass(slots=True)
class News2State:
    """Per-patient latest reading of each NEWS2 parameter."""

    latest: dict[str, _Vital] = field(default_factory=dict)


def on_supplemental_oxygen(resource: bytes) -> bool:
    """Whether an SpO2 Observation says the patient breathes supplemental oxygen."""
    if _INHALED_O2_FLOW not in resource and _INHALED_O2_CONCENTRATION not in resource:
        return False  # the common case, without parsing
    try:
        doc = orjson.loads(resource)
    except orjson.JSONDecodeError:
        return False
    for component in doc.get("component", []) if isinstance(doc, dict) else []:
        codes = {c.get("code") for c in component.get("code", {}).get("coding", [])}
        value = component.get("valueQuantity", {}).get("value")
        if not isinstance(value, int | float):
            continue
        if "3151-8" in codes and value > 0:
            return True
        if "3150-0" in codes and value > 21:
            return True
    return False


def _clears(rule: TrendRule, score: News2Score) -> bool:
    """Whether ``score`` ends the band alert of ``rule``: moved up, or down past a margin.

    The margin (wardwatch's choice, about one chart band) keeps a score that wobbles on a
    band's edge, such as SpO2 91-92% on scale 1, from closing and reopening the alert.
    """
    top = max(score.parts.values(), default=0)
    if rule is HIGH:
        return score.total <= 5
    if rule is MEDIUM:
        return score.total <= 3 or score.total >= 7
    if rule is LOW_MEDIUM:
        return top <= 1 or score.total >= 5
    return score.total == 0 or score.band in {"low_medium", "medium", "high"}


class News2Detector(TableDetector):
    """The NEWS2 aggregate over each patient's latest fresh vitals, by RCP band."""

    rules = RULES
    KINDS = frozenset(_BY_KIND)
    TABLE = PARAMETERS
    KEEP = _MAX_FRESHNESS  # the longest freshness window a care plan may set

    def new_state(self) -> News2State:
        """No vitals yet."""
        return News2State()

    def evaluate(
        self,
        observation: StoredObservation,
        thresholds: Mapping[str, float] | None = None,
        state: Any = None,
    ) -> list[Finding]:
        """The band as of this reading, if it is the latest of its parameter."""
        name = _BY_KIND.get(observation.kind)
        if name is None:
            return []
        value = canonical_value(observation, _SOURCES[name][1])
        if value is None:
            return []
        st: News2State = state if state is not None else News2State()
        overrides = thresholds or {}
        current = st.latest.get(name)
        if current is not None and (current.at, current.identifier) >= (
            observation.at,
            observation.identifier,
        ):
            return []  # not newer than what is counted already
        oxygen = name == "spo2" and on_supplemental_oxygen(observation.resource)
        st.latest[name] = _Vital(observation.at, observation.identifier, value, oxygen)
        fresh_for = timedelta(hours=PARAMETERS.get("news2.freshness_hours", overrides))
        fresh = {
            n: v
            for n, v in st.latest.items()
            if observation.at - fresh_for <= v.at <= observation.at
        }
        spo2 = fresh.get("spo2")
        on_oxygen = spo2 is not None and spo2.on_oxygen
        scale = int(PARAMETERS.get(SPO2_SCALE.parameter, overrides))
        score = news2_score(
            {n: v.value for n, v in fresh.items()}, scale=scale, on_oxygen=on_oxygen
        )
        band = score.band
        low_enabled = PARAMETERS.get("news2.low.enabled", overrides) >= 1
        firing = {"high": HIGH, "medium": MEDIUM, "low_medium": LOW_MEDIUM, "low": LOW}.get(band)
        if firing is LOW and not low_enabled:
            firing = None
        counted = ", ".join(f"{n} {s}" for n, s in score.parts.items())
        detail = (
            f"NEWS2 {score.total} ({band.replace('_', '-')}): {counted}; "
            f"{len(fresh)} of 5 measured parameters fresh, SpO2 scale {scale}, "
            f"{'oxygen' if on_oxygen else 'air'}, consciousness assumed alert"
        )
        evidence = tuple(v.identifier for v in sorted(fresh.values(), key=lambda v: v.at))
        findings: list[Finding] = []
        for rule in RULES:
            if rule is firing:
                findings.append(
                    Finding(
                        rule,
                        True,
                        float(score.total),
                        "{score}",
                        f"{rule.title}: {detail}",
                        observation.identifier,
                        observation.at,
                        observations=evidence,
                    )
                )
            elif _clears(rule, score):
                findings.append(
                    Finding(
                        rule,
                        False,
                        float(score.total),
                        "{score}",
                        f"{rule.title} cleared: {detail}",
                        observation.identifier,
                        observation.at,
                    )
                )
        return findings


__all__ = [
    "HIGH",
    "LOW",
    "LOW_MEDIUM",
    "MEDIUM",
    "News2Detector",
    "News2Score",
    "News2State",
    "news2_score",
    "on_supplemental_oxygen",
    "score_air_or_oxygen",
    "score_pulse",
    "score_respiratory_rate",
    "score_spo2",
    "score_systolic",
    "score_temperature",
]
