"""Our own rules on top of the FHIR shape: units, plausible values, times, enrolment.

Pure functions over the contract's :class:`~wardwatch.fhir.ObservationFacts`; the caller
supplies the registry lookups, so this module does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ingest.errors import ValidationError
from wardwatch.fhir import ObservationFacts
from wardwatch.units import convert
from wardwatch.vocabulary import kind as lookup_kind

#: readings stamped further ahead than this (hub and backend clocks disagree a little) are refused
MAX_FUTURE = timedelta(minutes=10)
#: no connected health device on the market predates this; earlier stamps are unset clocks
EARLIEST = datetime(2005, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Registry:
    """Lookups validation needs: is the patient enrolled, which patient is a device paired to."""

    patient_enrolled: Callable[[str], bool]
    device_patient: Callable[[str], str | None]


def _check_range(kind: str, value: float, unit: str) -> None:
    spec = lookup_kind(kind)
    if spec.plausible is None or spec.canonical_unit is None:
        return
    low, high = spec.plausible
    canonical = convert(value, unit, spec.canonical_unit)
    if not low <= canonical <= high:
        raise ValidationError(
            "implausible-value",
            f"{kind} {value} {unit} is outside the physiologically possible range "
            f"{low:g}-{high:g} {spec.canonical_unit}",
        )


def validate(facts: ObservationFacts, *, now: datetime, registry: Registry) -> None:
    """Raise ValidationError (with a machine-readable code) if the observation breaks a rule."""
    reading = facts.reading
    if reading.at > now + MAX_FUTURE:
        raise ValidationError(
            "time-in-future", f"effective time {reading.at.isoformat()} is in the future"
        )
    if reading.at < EARLIEST:
        raise ValidationError(
            "time-too-early", f"effective time {reading.at.isoformat()} predates any device"
        )
    if reading.value is not None and reading.unit is not None:
        _check_range(reading.kind, reading.value, reading.unit)
    for c in reading.components:
        if c.value is not None and c.unit is not None:
            _check_range(c.kind, c.value, c.unit)
    if not registry.patient_enrolled(facts.patient):
        raise ValidationError("unknown-patient", "subject is not an enrolled patient")
    paired = registry.device_patient(facts.device)
    if paired is None:
        raise ValidationError("unknown-device", f"device {facts.device} is not paired")
    if paired != facts.patient:
        raise ValidationError(
            "device-not-paired", f"device {facts.device} is not paired to this patient"
        )
