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

A rule may also ask for confirmation (:class:`Confirmation`): fire only after ``readings``
consecutive readings past the threshold spanning at least ``minutes`` (CGM hypoglycaemia
must persist 15 minutes, as CGM systems and the international CGM consensus count an
event). The alert then opens at the first reading of the confirmed run (as Prometheus
dates a ``for:`` alert from when it became pending) and holds every reading of the run.
Those two numbers are per-patient overridable too: ``{"<rule id>.readings": 2}``,
``{"<rule id>.minutes": 30}``. A rule may apply only under a care-plan flag
(:class:`Flag`), e.g. the SpO2 limits of NEWS2 scale 2 for patients with hypercapnic
respiratory failure (``{"news2.spo2_scale": 2}``).

Detectors stamp findings with the observation's own time (event time), never the wall
clock, so a replayed feed gives the same alerts. :class:`ThresholdDetector` keeps, per
patient and kind, a short time-ordered window of recent readings (the
:class:`ThresholdState` the engine holds) for the confirmation conditions; called without
a state it decides on the observation alone.

The defaults below cite their clinical source. They are screening limits for a nurse's
attention, to be reviewed by the clinical lead of each deployment, not diagnoses.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

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
class Confirmation:
    """How long a threshold must stay crossed before the rule fires."""

    readings: int = 1
    """Consecutive readings past the threshold (1: the reading itself)."""
    minutes: float = 0.0
    """Minutes from the first to the latest reading of that run."""
    max_gap: timedelta | None = None
    """Readings further apart than this do not make one run (a sensor gap breaks it)."""

    @property
    def trivial(self) -> bool:
        """Whether a single reading is enough."""
        return self.readings <= 1 and self.minutes <= 0


#: the most a per-patient override may ask for (keeps the per-patient window bounded)
MAX_CONFIRM_READINGS = 12
MAX_CONFIRM_MINUTES = 24 * 60.0


@dataclass(frozen=True, slots=True)
class Flag:
    """A care-plan switch read from ``Patient.thresholds`` (e.g. the NEWS2 SpO2 scale)."""

    parameter: str
    default: float
    allowed: tuple[float, ...]

    def check(self, value: object) -> float:
        """The usable value of an override of this flag; ThresholdOverrideError if none."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ThresholdOverrideError(self.parameter, "not a number")
        if float(value) not in self.allowed:
            allowed = ", ".join(f"{a:g}" for a in self.allowed)
            raise ThresholdOverrideError(self.parameter, f"not one of {allowed}")
        return float(value)

    def value(self, overrides: Mapping[str, float]) -> float:
        """The flag's value for a patient (the default unless the care plan sets it)."""
        return overrides.get(self.parameter, self.default)


# NEWS2 (Royal College of Physicians 2017, chart 1): SpO2 scale 2 is for patients with a
# prescribed oxygen saturation target of 88-92%, e.g. hypercapnic respiratory failure;
# the decision is a clinician's and is recorded in the care plan.
SPO2_SCALE = Flag("news2.spo2_scale", 1.0, (1.0, 2.0))


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
    confirm: Confirmation = field(default_factory=Confirmation)
    """Default confirmation (a single reading unless the rule says otherwise)."""
    when: tuple[Flag, float] | None = None
    """The rule applies only to patients whose care-plan flag has this value."""

    @property
    def readings_parameter(self) -> str:
        """Per-patient override of ``confirm.readings``."""
        return f"{self.id}.readings"

    @property
    def minutes_parameter(self) -> str:
        """Per-patient override of ``confirm.minutes``."""
        return f"{self.id}.minutes"

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
    since: datetime | None = None
    """When the condition began (first reading of a confirmed run); ``None``: ``at``."""
    observations: tuple[str, ...] = ()
    """Every reading behind a firing finding (a confirmed run); empty: ``observation``."""

    @property
    def evidence(self) -> tuple[str, ...]:
        """The identifiers an alert opened from this finding holds."""
        return self.observations or (self.observation,)


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


@runtime_checkable
class IncrementalDetector(Protocol):
    """A detector with bounded per-patient state (trends, confirmation windows). Pure.

    The engine keeps one state per patient (:meth:`new_state`), rebuilds it on first use
    from the store (the observations of each kind within :meth:`lookback` before the first
    observation it is given) by feeding them to :meth:`evaluate` and dropping the findings,
    then feeds every new observation once, in event-time order.
    """

    @property
    def kinds(self) -> frozenset[str]: ...  # pragma: no cover

    @property
    def parameters(self) -> Mapping[str, float]: ...  # pragma: no cover

    def check_override(self, parameter: str, value: object) -> float: ...  # pragma: no cover

    def new_state(self) -> Any:
        """An empty per-patient state."""
        ...  # pragma: no cover

    def lookback(self, kind: str) -> timedelta:
        """How much history of ``kind`` rebuilding a patient's state needs."""
        ...  # pragma: no cover

    def evaluate(
        self,
        observation: StoredObservation,
        thresholds: Mapping[str, float] | None = None,
        state: Any = None,
    ) -> list[Finding]:
        """Findings for one observation; updates ``state`` (a fresh one when None)."""
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
    # AHA patient guidance ("Understanding Blood Pressure Readings", heart.org): above
    # 180/120 "wait five minutes and test again", but with symptoms call 911 at once. A home
    # cuff cannot see symptoms, so one reading reaches the nurse (readings=1, which the
    # end-to-end contract relies on); a care plan may ask for the confirming second reading
    # with {"bp.hypertensive_crisis.readings": 2}: it must come within 60 minutes.
    confirm=Confirmation(readings=1, max_gap=timedelta(minutes=60)),
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

_WINDOW_MARGIN = timedelta(minutes=60)
"""Kept beyond the longest confirmation, so a run that began earlier is still seen whole."""


@dataclass(frozen=True, slots=True)
class _Reading:
    criterion: Criterion
    measured: str
    value: float
    threshold: float
    unit: str


@dataclass(frozen=True, slots=True)
class _Point:
    """One reading in a window: its criterion values in canonical units."""

    at: datetime
    identifier: str
    values: Mapping[str, float]
    """Criterion parameter -> value (absent: the reading lacks that component)."""


def _point_key(point: _Point) -> tuple[datetime, str]:
    return point.at, point.identifier


@dataclass(slots=True)
class ThresholdState:
    """Per-patient state of a :class:`ThresholdDetector`: a short window per kind.

    Bounded: a window keeps the readings of the longest confirmation (plus a margin) and at
    least the number of readings the longest repeat-count condition needs.
    """

    windows: dict[str, list[_Point]] = field(default_factory=dict)

    def window(self, kind: str) -> list[_Point]:
        """The time-ordered window of ``kind`` (created empty)."""
        return self.windows.setdefault(kind, [])

    def size(self) -> int:
        """Readings held, all kinds together."""
        return sum(len(w) for w in self.windows.values())


class ThresholdDetector:
    """Applies a table of :class:`ThresholdRule` to observations.

    Without a state (``evaluate(obs)``) every rule decides on the observation alone, and a
    rule that needs confirmation never fires. With a :class:`ThresholdState` (the engine
    keeps one per patient) the confirmation conditions are checked on its window.
    """

    def __init__(self, rules: Sequence[ThresholdRule] = DEFAULT_RULES) -> None:
        self.rules: tuple[ThresholdRule, ...] = tuple(rules)
        self._criteria: dict[str, tuple[ThresholdRule, Criterion]] = {}
        self._units: dict[str, str] = {}
        self._flags: dict[str, Flag] = {}
        self._by_kind: dict[str, list[ThresholdRule]] = {}
        self._confirm_parameters: dict[str, tuple[ThresholdRule, str]] = {}
        ids: set[str] = set()
        for rule in self.rules:
            if rule.id in ids:
                raise RuleError(f"rule id {rule.id!r} appears twice")
            ids.add(rule.id)
            self._check_rule(rule)
            for c in rule.criteria:
                seen = self._criteria.get(c.parameter)
                # Rules may share a parameter (meter and CGM read one hypoglycaemia limit)
                # only when they agree on what it means.
                if seen is not None and (
                    seen[1].threshold != c.threshold
                    or seen[1].comparison != c.comparison
                    or seen[0].id == rule.id
                    or self._unit_of(seen[0], seen[1]) != self._unit_of(rule, c)
                ):
                    raise RuleError(f"threshold parameter {c.parameter!r} appears twice")
                if seen is None:
                    self._criteria[c.parameter] = (rule, c)
            if rule.when is not None:
                flag = rule.when[0]
                if self._flags.get(flag.parameter, flag) != flag:
                    raise RuleError(f"flag {flag.parameter!r} is defined twice differently")
                self._flags[flag.parameter] = flag
            self._confirm_parameters[rule.readings_parameter] = (rule, "readings")
            self._confirm_parameters[rule.minutes_parameter] = (rule, "minutes")
            self._by_kind.setdefault(rule.kind, []).append(rule)
        clash = (set(self._criteria) | set(self._flags)) & set(self._confirm_parameters)
        if clash:
            raise RuleError(f"parameters {sorted(clash)} are both a threshold and a confirmation")
        self._kinds = frozenset(r.kind for r in self.rules)
        parameters: dict[str, float] = {p: c.threshold for p, (_, c) in self._criteria.items()}
        parameters.update({p: f.default for p, f in self._flags.items()})
        for p, (rule, what) in self._confirm_parameters.items():
            parameters[p] = float(
                rule.confirm.readings if what == "readings" else rule.confirm.minutes
            )
        self._parameters: Mapping[str, float] = MappingProxyType(parameters)

    @staticmethod
    def _unit_of(rule: ThresholdRule, c: Criterion) -> str | None:
        return lookup_kind(rule.measured(c)).canonical_unit

    def _check_rule(self, rule: ThresholdRule) -> None:
        if rule.severity not in SEVERITIES:
            raise RuleError(f"rule {rule.id!r}: unknown severity {rule.severity!r}")
        if not rule.criteria:
            raise RuleError(f"rule {rule.id!r} has no criteria")
        confirm = rule.confirm
        if not 1 <= confirm.readings <= MAX_CONFIRM_READINGS:
            raise RuleError(f"rule {rule.id!r}: confirmation readings out of range")
        if not 0 <= confirm.minutes <= MAX_CONFIRM_MINUTES:
            raise RuleError(f"rule {rule.id!r}: confirmation minutes out of range")
        if rule.when is not None and rule.when[1] not in rule.when[0].allowed:
            raise RuleError(f"rule {rule.id!r}: flag value {rule.when[1]:g} is not allowed")
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
        """Every parameter of the table with its default: thresholds (canonical unit),
        care-plan flags, and each rule's ``.readings`` / ``.minutes`` confirmation."""
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
        physiologically possible range (a typo such as 1700 must not silence a rule);
        flags must take one of their values, confirmations stay within bounds.
        """
        flag = self._flags.get(parameter)
        if flag is not None:
            return flag.check(value)
        confirm = self._confirm_parameters.get(parameter)
        found = self._criteria.get(parameter)
        if found is None and confirm is None:
            raise ThresholdOverrideError(parameter, "no rule reads this parameter")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ThresholdOverrideError(parameter, "not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ThresholdOverrideError(parameter, "not a finite number")
        if confirm is not None:
            if confirm[1] == "readings":
                if not number.is_integer() or not 1 <= number <= MAX_CONFIRM_READINGS:
                    raise ThresholdOverrideError(
                        parameter, f"not a whole number from 1 to {MAX_CONFIRM_READINGS}"
                    )
            elif not 0 <= number <= MAX_CONFIRM_MINUTES:
                raise ThresholdOverrideError(parameter, f"outside 0-{MAX_CONFIRM_MINUTES:g} min")
            return number
        assert found is not None
        rule, criterion = found
        plausible = lookup_kind(rule.measured(criterion)).plausible
        if plausible is not None and not plausible[0] <= number <= plausible[1]:
            raise ThresholdOverrideError(
                parameter,
                f"outside {plausible[0]:g}-{plausible[1]:g} {self._units[parameter]}",
            )
        return number

    # -- state --------------------------------------------------------------------------

    def new_state(self) -> ThresholdState:
        """An empty per-patient state."""
        return ThresholdState()

    def lookback(self, kind: str) -> timedelta:
        """History that rebuilds a window exactly: the longest confirmation allowed."""
        if kind not in self._kinds:
            return timedelta(0)
        return timedelta(minutes=MAX_CONFIRM_MINUTES) + _WINDOW_MARGIN

    def _confirmation(self, rule: ThresholdRule, overrides: Mapping[str, float]) -> Confirmation:
        readings = overrides.get(rule.readings_parameter)
        minutes = overrides.get(rule.minutes_parameter)
        if readings is None and minutes is None:
            return rule.confirm
        return Confirmation(
            int(readings) if readings is not None else rule.confirm.readings,
            minutes if minutes is not None else rule.confirm.minutes,
            rule.confirm.max_gap,
        )

    def _applies(self, rule: ThresholdRule, overrides: Mapping[str, float]) -> bool:
        return rule.when is None or rule.when[0].value(overrides) == rule.when[1]

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(
        self,
        observation: StoredObservation,
        thresholds: Mapping[str, float] | None = None,
        state: ThresholdState | None = None,
    ) -> list[Finding]:
        """Findings for one observation: per rule of its kind, firing, cleared or nothing.

        ``thresholds`` holds the patient's overrides (parameters absent from it keep their
        defaults). Raises ThresholdOverrideError for an unusable override and
        UnusableObservationError for a value that cannot be read in the canonical unit.

        A reading older than the state's window (late by more than the longest
        confirmation) is decided on alone and leaves the window untouched.
        """
        overrides = thresholds or {}
        rules = self._by_kind.get(observation.kind, [])
        if not rules:
            return []
        values: dict[str, float] = {}
        for rule in rules:
            for c in rule.criteria:
                value = self._value(rule, c, observation)
                if value is not None:
                    values[c.parameter] = value
        point = _Point(observation.at, observation.identifier, values)
        confirms = {r.id: self._confirmation(r, overrides) for r in rules}
        window, index = self._place(
            (state or ThresholdState()).window(observation.kind), point, confirms.values()
        )
        findings: list[Finding] = []
        for rule in rules:
            if not self._applies(rule, overrides):
                continue
            finding = self._evaluate_rule(rule, window, index, overrides, confirms[rule.id])
            if finding is not None:
                findings.append(finding)
        return findings

    @staticmethod
    def _place(
        window: list[_Point], point: _Point, confirms: Iterable[Confirmation]
    ) -> tuple[list[_Point], int]:
        """Insert ``point`` in time order and prune; return the window to read and its index."""
        confirms = list(confirms)
        horizon = timedelta(minutes=max(c.minutes for c in confirms)) + _WINDOW_MARGIN
        keep = max(c.readings for c in confirms)
        for i in range(len(window) - 1, -1, -1):
            if window[i].identifier == point.identifier:  # seen already: read it in place
                return window, i
        newest = window[-1].at if window else point.at
        older = sum(1 for p in window if p.at > point.at)
        if point.at < newest - horizon and older >= keep:
            return [point], 0  # too late to matter to any run: decided on alone
        bisect.insort(window, point, key=_point_key)
        newest = window[-1].at
        cut = 0
        while len(window) - cut > keep and window[cut].at < newest - horizon:
            cut += 1
        if cut:
            del window[:cut]
        return window, window.index(point)

    def _thresholds(self, rule: ThresholdRule, overrides: Mapping[str, float]) -> dict[str, float]:
        return {
            c.parameter: (
                self.check_override(c.parameter, overrides[c.parameter])
                if c.parameter in overrides
                else c.threshold
            )
            for c in rule.criteria
        }

    def _evaluate_rule(
        self,
        rule: ThresholdRule,
        window: Sequence[_Point],
        index: int,
        overrides: Mapping[str, float],
        confirm: Confirmation,
    ) -> Finding | None:
        point = window[index]
        limits = self._thresholds(rule, overrides)
        readings = [
            _Reading(
                c,
                rule.measured(c),
                point.values[c.parameter],
                limits[c.parameter],
                self._units[c.parameter],
            )
            for c in rule.criteria
            if c.parameter in point.values
        ]
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
            if confirm.trivial:
                return Finding(
                    rule,
                    True,
                    fired[0].value,
                    fired[0].unit,
                    f"{rule.title}: {detail}",
                    point.identifier,
                    point.at,
                )
            run = self._run(rule, window, index, limits, confirm)
            first = run[-1]
            span = point.at - first.at
            if len(run) < confirm.readings or span < timedelta(minutes=confirm.minutes):
                return None  # pending: not yet confirmed
            minutes = span.total_seconds() / 60
            return Finding(
                rule,
                True,
                fired[0].value,
                fired[0].unit,
                f"{rule.title}: {detail} ({len(run)} readings over {_number(minutes)} min)",
                point.identifier,
                point.at,
                since=first.at,
                observations=tuple(p.identifier for p in reversed(run)),
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
                point.identifier,
                point.at,
            )
        return None

    @staticmethod
    def _run(
        rule: ThresholdRule,
        window: Sequence[_Point],
        index: int,
        limits: Mapping[str, float],
        confirm: Confirmation,
    ) -> list[_Point]:
        """The consecutive readings past the threshold ending at ``index``, newest first."""
        run: list[_Point] = []
        for i in range(index, -1, -1):
            p = window[i]
            read = [c for c in rule.criteria if c.parameter in p.values]
            if not read:
                continue  # says nothing about this rule (a panel without the component)
            if not any(c.fires(p.values[c.parameter], limits[c.parameter]) for c in read):
                break
            if run and confirm.max_gap is not None and run[-1].at - p.at > confirm.max_gap:
                break
            run.append(p)
        return run

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


display_number = _number
"""A value as shown to people (one decimal at most)."""
display_unit = _unit
"""A UCUM unit as shown to people (``mmHg``, ``°C``)."""


__all__ = [
    "DEFAULT_RULES",
    "HYPERTENSIVE_CRISIS",
    "HYPOTENSION",
    "MAX_CONFIRM_MINUTES",
    "MAX_CONFIRM_READINGS",
    "SPO2_SCALE",
    "Comparison",
    "Confirmation",
    "Criterion",
    "Detector",
    "Finding",
    "Flag",
    "IncrementalDetector",
    "Rule",
    "ThresholdDetector",
    "ThresholdRule",
    "ThresholdState",
    "display_number",
    "display_unit",
]
