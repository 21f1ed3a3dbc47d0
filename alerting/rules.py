"""Threshold rules and the :class:`ThresholdDetector` that applies them. Pure: no I/O.

A rule reads one observation kind and fires when any of its criteria is past its
threshold. It clears only when every criterion is back past its threshold by the
hysteresis margin, so a reading that wobbles around the limit neither floods the nurse
with alerts nor closes and reopens one. Between the two (inside the hysteresis band) a
reading changes nothing.

Thresholds and hysteresis are in the canonical unit of the measured kind (vocabulary:
``mm[Hg]`` for blood pressure); a reading in another unit (``kPa``) is converted first.
Each criterion names a parameter under which ``Patient.thresholds`` (the care plan)
overrides the threshold for one patient, e.g. ``{"bp.hypertensive_crisis.systolic": 170}``.

Detectors decide on the observation alone and stamp findings with the observation's own
time (event time), never the wall clock, so a replayed feed gives the same alerts.

The defaults below cite their clinical source. They are screening limits for a nurse's
attention, to be reviewed by the clinical lead of each deployment, not diagnoses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Literal, Protocol

from alerting.errors import RuleError, ThresholdOverrideError, UnusableObservationError
from wardwatch.errors import UnitError, UnknownKindError
from wardwatch.store import SEVERITIES, Severity, StoredObservation
from wardwatch.units import convert, normalize_unit
from wardwatch.vocabulary import kind as lookup_kind

Comparison = Literal["above", "below"]
"""``above``: fires when the value is greater than the threshold; ``below``: less than."""

#: how units are shown to people (UCUM codes otherwise)
_UNIT_DISPLAY: Mapping[str, str] = MappingProxyType({"mm[Hg]": "mmHg", "Cel": "°C"})


@dataclass(frozen=True, slots=True)
class Criterion:
    """One measured value compared with one threshold."""

    parameter: str
    """Name under which ``Patient.thresholds`` overrides ``threshold`` for one patient."""
    component: str | None
    """The panel component read (``systolic``); ``None`` reads the observation's value."""
    comparison: Comparison
    threshold: float
    """Default threshold, in the canonical unit of the measured kind."""
    hysteresis: float
    """How far back past the threshold the value must come to clear (same unit)."""

    def fires(self, value: float, threshold: float) -> bool:
        """Whether ``value`` is past ``threshold``."""
        return value > threshold if self.comparison == "above" else value < threshold

    def clears(self, value: float, threshold: float) -> bool:
        """Whether ``value`` is back past ``threshold`` by the hysteresis margin."""
        if self.comparison == "above":
            return value < threshold - self.hysteresis
        return value > threshold + self.hysteresis

    def clear_limit(self, threshold: float) -> float:
        """The value this criterion must come back past to clear."""
        if self.comparison == "above":
            return threshold - self.hysteresis
        return threshold + self.hysteresis


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """A rule over one observation kind: fires when any criterion fires."""

    id: str
    kind: str
    """The observation kind the rule reads (``blood_pressure``)."""
    title: str
    severity: Severity
    criteria: tuple[Criterion, ...]
    source: str
    """Where the default thresholds come from (guideline, section)."""

    def measured(self, criterion: Criterion) -> str:
        """The vocabulary kind a criterion of this rule measures (``systolic``)."""
        return criterion.component if criterion.component is not None else self.kind


class Rule(Protocol):
    """What the engine needs from any rule (threshold rules now, trend rules later)."""

    @property
    def id(self) -> str: ...  # pragma: no cover

    @property
    def kind(self) -> str: ...  # pragma: no cover

    @property
    def title(self) -> str: ...  # pragma: no cover

    @property
    def severity(self) -> Severity: ...  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector concluded from one observation for one rule."""

    rule: Rule
    firing: bool
    """True: the rule fires. False: the rule has cleared (past the hysteresis margin)."""
    value: float
    """The deciding value, in ``unit`` (the first criterion that fired, or the first read)."""
    unit: str
    message: str
    """Short, for the nurse: what was measured against which limit. Holds values: not for logs."""
    observation: str
    """Identifier of the observation."""
    at: datetime
    """The observation's effective time (event time)."""


class Detector(Protocol):
    """A detector turns one stored observation into findings. Pure, no I/O."""

    @property
    def kinds(self) -> frozenset[str]:
        """Observation kinds the detector reads; others are not offered to it."""
        ...  # pragma: no cover

    @property
    def parameters(self) -> Mapping[str, float]:
        """Every threshold parameter it reads, with its default value."""
        ...  # pragma: no cover

    def check_override(self, parameter: str, value: object) -> float:
        """The usable value of a per-patient override; raise ThresholdOverrideError if none."""
        ...  # pragma: no cover

    def evaluate(
        self, observation: StoredObservation, thresholds: Mapping[str, float]
    ) -> list[Finding]:
        """Findings for one observation given the patient's threshold overrides."""
        ...  # pragma: no cover


# -- the default rule table -----------------------------------------------------------

# Whelton PK, Carey RM, Aronow WS, et al. 2017 ACC/AHA/AAPA/ABC/ACPM/AGS/APhA/ASH/ASPC/
# NMA/PCNA Guideline for the Prevention, Detection, Evaluation, and Management of High
# Blood Pressure in Adults. Hypertension 2018;71:e13-e115, section 11.2 "Hypertensive
# Crises - Emergencies and Urgencies": severe elevations in BP, SBP > 180 mm Hg and/or
# DBP > 120 mm Hg. The 10 mm Hg clearing margin is wardwatch's own choice (not from the
# guideline): about the spread of repeated home cuff readings, so one reading just under
# the limit does not close the alert.
HYPERTENSIVE_CRISIS = ThresholdRule(
    id="bp.hypertensive_crisis",
    kind="blood_pressure",
    title="Hypertensive crisis",
    severity="urgent",
    criteria=(
        Criterion("bp.hypertensive_crisis.systolic", "systolic", "above", 180.0, 10.0),
        Criterion("bp.hypertensive_crisis.diastolic", "diastolic", "above", 120.0, 10.0),
    ),
    source="ACC/AHA 2017 high blood pressure guideline, section 11.2: SBP > 180 and/or "
    "DBP > 120 mm Hg",
)

# Hypotension as the conventional adult cut-off SBP < 90 mm Hg: the 2001 SCCM/ESICM/
# ACCP/ATS/SIS International Sepsis Definitions Conference (Levy MM et al., Crit Care Med
# 2003;31:1250-6, "arterial hypotension: SBP < 90 mm Hg"), also the band NEWS2 (Royal
# College of Physicians, 2017) scores highest (SBP <= 90). Clearing margin 10 mm Hg as
# above (wardwatch's choice).
HYPOTENSION = ThresholdRule(
    id="bp.hypotension",
    kind="blood_pressure",
    title="Hypotension",
    severity="urgent",
    criteria=(Criterion("bp.hypotension.systolic", "systolic", "below", 90.0, 10.0),),
    source="Levy et al. 2003 (International Sepsis Definitions Conference): SBP < 90 mm Hg",
)

DEFAULT_RULES: tuple[ThresholdRule, ...] = (HYPERTENSIVE_CRISIS, HYPOTENSION)


# -- the detector ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reading:
    criterion: Criterion
    measured: str
    value: float
    threshold: float
    unit: str


class ThresholdDetector:
    """Applies a table of :class:`ThresholdRule` to single observations."""

    def __init__(self, rules: Sequence[ThresholdRule] = DEFAULT_RULES) -> None:
        self.rules: tuple[ThresholdRule, ...] = tuple(rules)
        self._criteria: dict[str, tuple[ThresholdRule, Criterion]] = {}
        self._units: dict[str, str] = {}
        ids: set[str] = set()
        for rule in self.rules:
            if rule.id in ids:
                raise RuleError(f"rule id {rule.id!r} appears twice")
            ids.add(rule.id)
            self._check_rule(rule)
            for c in rule.criteria:
                if c.parameter in self._criteria:
                    raise RuleError(f"threshold parameter {c.parameter!r} appears twice")
                self._criteria[c.parameter] = (rule, c)
        self._kinds = frozenset(r.kind for r in self.rules)
        self._parameters: Mapping[str, float] = MappingProxyType(
            {p: c.threshold for p, (_, c) in self._criteria.items()}
        )

    def _check_rule(self, rule: ThresholdRule) -> None:
        if rule.severity not in SEVERITIES:
            raise RuleError(f"rule {rule.id!r}: unknown severity {rule.severity!r}")
        if not rule.criteria:
            raise RuleError(f"rule {rule.id!r} has no criteria")
        try:
            spec = lookup_kind(rule.kind)
            for c in rule.criteria:
                if c.component is not None and c.component not in spec.components:
                    raise RuleError(
                        f"rule {rule.id!r}: {rule.kind} has no component {c.component!r}"
                    )
                if c.component is None and spec.components:
                    raise RuleError(f"rule {rule.id!r}: {rule.kind} is a panel; name a component")
                unit = lookup_kind(rule.measured(c)).canonical_unit
                if unit is None:
                    raise RuleError(f"rule {rule.id!r}: {rule.measured(c)} has no unit")
                if not (math.isfinite(c.threshold) and math.isfinite(c.hysteresis)):
                    raise RuleError(f"rule {rule.id!r}: {c.parameter} is not finite")
                if c.hysteresis < 0:
                    raise RuleError(f"rule {rule.id!r}: {c.parameter} has negative hysteresis")
                self._units[c.parameter] = unit
        except UnknownKindError as exc:
            raise RuleError(f"rule {rule.id!r}: {exc}") from exc

    @property
    def kinds(self) -> frozenset[str]:
        """Observation kinds the rules read."""
        return self._kinds

    @property
    def parameters(self) -> Mapping[str, float]:
        """Every threshold parameter of the table with its default (canonical unit)."""
        return self._parameters

    def rule(self, rule_id: str) -> ThresholdRule | None:
        """The rule with this id, if the table has it."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None

    def check_override(self, parameter: str, value: object) -> float:
        """The usable value of a per-patient override of ``parameter``.

        Refuses unknown parameters, non-numbers and values outside the measured kind's
        physiologically possible range (a typo such as 1700 must not silence a rule).
        """
        found = self._criteria.get(parameter)
        if found is None:
            raise ThresholdOverrideError(parameter, "no rule reads this parameter")
        rule, criterion = found
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ThresholdOverrideError(parameter, "not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ThresholdOverrideError(parameter, "not a finite number")
        plausible = lookup_kind(rule.measured(criterion)).plausible
        if plausible is not None and not plausible[0] <= number <= plausible[1]:
            raise ThresholdOverrideError(
                parameter,
                f"outside {plausible[0]:g}-{plausible[1]:g} {self._units[parameter]}",
            )
        return number

    def evaluate(
        self, observation: StoredObservation, thresholds: Mapping[str, float] | None = None
    ) -> list[Finding]:
        """Findings for one observation: per rule of its kind, firing, cleared or nothing.

        ``thresholds`` holds the patient's overrides (parameters absent from it keep their
        defaults). Raises ThresholdOverrideError for an unusable override and
        UnusableObservationError for a value that cannot be read in the canonical unit.
        """
        overrides = thresholds or {}
        findings: list[Finding] = []
        for rule in self.rules:
            if rule.kind != observation.kind:
                continue
            finding = self._evaluate_rule(rule, observation, overrides)
            if finding is not None:
                findings.append(finding)
        return findings

    def _evaluate_rule(
        self, rule: ThresholdRule, obs: StoredObservation, overrides: Mapping[str, float]
    ) -> Finding | None:
        readings: list[_Reading] = []
        for c in rule.criteria:
            value = self._value(rule, c, obs)
            if value is None:
                continue
            threshold = (
                self.check_override(c.parameter, overrides[c.parameter])
                if c.parameter in overrides
                else c.threshold
            )
            readings.append(
                _Reading(c, rule.measured(c), value, threshold, self._units[c.parameter])
            )
        if not readings:
            return None
        fired = [r for r in readings if r.criterion.fires(r.value, r.threshold)]
        if fired:
            detail = ", ".join(
                f"{r.measured} {_number(r.value)} {_unit(r.unit)} "
                f"{'>' if r.criterion.comparison == 'above' else '<'} "
                f"{_number(r.threshold)} {_unit(r.unit)}"
                for r in fired
            )
            return Finding(
                rule,
                True,
                fired[0].value,
                fired[0].unit,
                f"{rule.title}: {detail}",
                obs.identifier,
                obs.at,
            )
        # Clearing needs every criterion read: a panel missing its diastolic value says
        # nothing about whether a diastolic crisis is over.
        if len(readings) == len(rule.criteria) and all(
            r.criterion.clears(r.value, r.threshold) for r in readings
        ):
            detail = ", ".join(
                f"{r.measured} {_number(r.value)} {_unit(r.unit)} "
                f"{'<' if r.criterion.comparison == 'above' else '>'} "
                f"{_number(r.criterion.clear_limit(r.threshold))} {_unit(r.unit)}"
                for r in readings
            )
            return Finding(
                rule,
                False,
                readings[0].value,
                readings[0].unit,
                f"{rule.title} cleared: {detail}",
                obs.identifier,
                obs.at,
            )
        return None

    def _value(self, rule: ThresholdRule, c: Criterion, obs: StoredObservation) -> float | None:
        """The criterion's value in the canonical unit, or None if the reading lacks it.

        For a panel, ``StoredObservation.unit`` is taken as the unit of its components and
        ``None`` as "canonical" (ingest stores panels that way).
        """
        raw = obs.value if c.component is None else obs.components.get(c.component)
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise UnusableObservationError(obs.identifier, f"{rule.measured(c)} is not a number")
        canonical = self._units[c.parameter]
        if obs.unit is None or obs.unit == canonical:
            return float(raw)
        try:
            return convert(float(raw), normalize_unit(obs.unit), canonical)
        except UnitError:
            raise UnusableObservationError(
                obs.identifier, f"unit {obs.unit!r} cannot be converted to {canonical}"
            ) from None


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _unit(code: str) -> str:
    return _UNIT_DISPLAY.get(code, code)


__all__ = [
    "DEFAULT_RULES",
    "HYPERTENSIVE_CRISIS",
    "HYPOTENSION",
    "Comparison",
    "Criterion",
    "Detector",
    "Finding",
    "Rule",
    "ThresholdDetector",
    "ThresholdRule",
]
