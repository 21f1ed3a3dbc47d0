"""What the trend, NEWS2 and missing-data detectors share: rules, parameters, values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import ClassVar

from alerting.errors import RuleError, ThresholdOverrideError, UnusableObservationError
from wardwatch.errors import UnitError
from wardwatch.store import SEVERITIES, Severity, StoredObservation
from wardwatch.units import convert, normalize_unit
from wardwatch.vocabulary import kind as lookup_kind


@dataclass(frozen=True, slots=True)
class TrendRule:
    """A rule decided over several readings (a trend, a score): id, severity, source."""

    id: str
    kind: str
    """What the alert is about: a vocabulary kind (``body_weight``) or ``news2``."""
    title: str
    severity: Severity
    source: str
    """Where the default comes from (guideline, paper, device manual) or whose choice it is."""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise RuleError(f"rule {self.id!r}: unknown severity {self.severity!r}")


@dataclass(frozen=True, slots=True)
class Parameter:
    """One per-patient overridable setting of a detector, with its default and bounds."""

    name: str
    default: float
    low: float
    high: float
    unit: str
    integer: bool = False

    def check(self, value: object) -> float:
        """The usable value of an override; ThresholdOverrideError names what is wrong."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ThresholdOverrideError(self.name, "not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ThresholdOverrideError(self.name, "not a finite number")
        if self.integer and not number.is_integer():
            raise ThresholdOverrideError(self.name, "not a whole number")
        if not self.low <= number <= self.high:
            raise ThresholdOverrideError(
                self.name, f"outside {self.low:g}-{self.high:g} {self.unit}".rstrip()
            )
        return number


class ParameterTable:
    """A detector's parameters: defaults, validation and per-patient lookup."""

    def __init__(self, parameters: Sequence[Parameter]) -> None:
        self._by_name: dict[str, Parameter] = {}
        for p in parameters:
            if p.name in self._by_name:
                raise RuleError(f"parameter {p.name!r} appears twice")
            p.check(p.default)
            self._by_name[p.name] = p
        self.defaults: Mapping[str, float] = MappingProxyType(
            {p.name: p.default for p in parameters}
        )

    def check(self, name: str, value: object) -> float:
        """Validate an override of ``name``."""
        found = self._by_name.get(name)
        if found is None:
            raise ThresholdOverrideError(name, "no rule reads this parameter")
        return found.check(value)

    def get(self, name: str, overrides: Mapping[str, float]) -> float:
        """The patient's value of ``name`` (already validated by the engine) or the default."""
        value = overrides.get(name)
        return self._by_name[name].default if value is None else value


class TableDetector:
    """The plumbing of a detector whose settings are one :class:`ParameterTable`.

    A subclass names the kinds it reads (``KINDS``), its settings (``TABLE``) and how much
    history its state keeps (``KEEP``, loaded from the store on a patient's first reading).
    """

    KINDS: ClassVar[frozenset[str]]
    TABLE: ClassVar[ParameterTable]
    KEEP: ClassVar[timedelta]

    @property
    def kinds(self) -> frozenset[str]:
        """The observation kinds this detector reads."""
        return self.KINDS

    @property
    def parameters(self) -> Mapping[str, float]:
        """Its per-patient settings with their defaults."""
        return self.TABLE.defaults

    def check_override(self, parameter: str, value: object) -> float:
        """A usable per-patient value, or ThresholdOverrideError."""
        return self.TABLE.check(parameter, value)

    def lookback(self, kind: str) -> timedelta:
        """How far back the state reaches for ``kind`` (nothing for other kinds)."""
        return self.KEEP if kind in self.KINDS else timedelta(0)


def canonical_value(obs: StoredObservation, component: str | None = None) -> float | None:
    """The observation's value (or a panel component) in its kind's canonical unit.

    ``None`` when the reading has no such value (data absent, component missing). Raises
    UnusableObservationError for a non-number or a unit that cannot be converted.
    """
    measured = component or obs.kind
    raw = obs.value if component is None else obs.components.get(component)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise UnusableObservationError(obs.identifier, f"{measured} is not a number")
    canonical = lookup_kind(measured).canonical_unit
    if canonical is None or obs.unit is None or obs.unit == canonical:
        return float(raw)
    try:
        return convert(float(raw), normalize_unit(obs.unit), canonical)
    except UnitError:
        raise UnusableObservationError(
            obs.identifier, f"unit {obs.unit!r} cannot be converted to {canonical}"
        ) from None


def least_squares(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Slope and intercept of the least-squares line through (x, y) points (two or more).

    Small, closed-form and dependency-free: CGM windows hold a handful of points, and this
    runs once per reading.
    """
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0, mean_y
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    return slope, mean_y - slope * mean_x


__all__ = ["Parameter", "ParameterTable", "TrendRule", "canonical_value", "least_squares"]
