"""The reading model: what a device said, decoded and named, before any FHIR mapping.

Decoders (BLE characteristics, vendor JSON) produce :class:`Reading` objects in the
vocabulary's kinds and UCUM units; :mod:`wardwatch.fhir` maps them onto Observations. Keeping
the two steps apart (as microsoft/iomt-fhir does) lets a vendor profile change without
touching the FHIR mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from wardwatch.errors import ContractError
from wardwatch.units import normalize_unit
from wardwatch.vocabulary import kind as lookup_kind

#: FHIR data-absent-reason codes a decoder may report (IEEE-11073 NaN/NRes map here)
DATA_ABSENT_REASONS = frozenset(
    {
        "unknown",
        "asked-unknown",
        "not-a-number",
        "error",
        "not-performed",
        "negative-infinity",
        "positive-infinity",
        "masked",
        "unsupported",
    }
)
#: HL7 v3 ObservationInterpretation codes a decoder may set from device status bits
INTERPRETATIONS = frozenset({"H", "L", "HH", "LL", "A", "AA", "N", "HU", "LU"})


@dataclass(frozen=True, slots=True)
class Component:
    """One part of a panel reading (systolic within blood pressure)."""

    kind: str
    value: float | None
    unit: str | None
    data_absent: str | None = None

    def __post_init__(self) -> None:
        _check_value(self.kind, self.value, self.unit, self.data_absent)


@dataclass(frozen=True, slots=True)
class TimeCorrection:
    """A device clock measured against the hub's: the PHD IG coincident time stamp.

    ``corrected`` says whether the reading's effective time had the offset added (its
    time stamp came from the measured clock); ``fault`` says why the device's time cannot
    be trusted (clock not set, unreadable, absurd), in which case the effective time is the
    device's own, uncorrected, and the reading must not be stored as if it were true.
    """

    device_time: datetime | None
    """What the device's clock said at the moment the hub read it (None: not known)."""
    hub_time: datetime
    """The hub's clock at that same moment."""
    corrected: bool = True
    fault: str | None = None

    def __post_init__(self) -> None:
        for name in ("device_time", "hub_time"):
            at = getattr(self, name)
            if at is not None and (at.tzinfo is None or at.utcoffset() is None):
                raise ContractError(f"time correction: {name} {at!r} has no time zone")
        if self.fault is None and self.device_time is None:
            raise ContractError("time correction without a device time must name a fault")
        if self.fault is not None and self.corrected:
            raise ContractError("a faulty device clock cannot correct a time")

    @property
    def offset(self) -> timedelta | None:
        """Hub time minus device time (None when the device time is not known)."""
        if self.device_time is None:
            return None
        return self.hub_time - self.device_time

    @property
    def offset_seconds(self) -> float:
        """Hub time minus device time in seconds: added to device-stamped times to correct them."""
        offset = self.offset
        return 0.0 if offset is None else offset.total_seconds()

    @property
    def trusted(self) -> bool:
        """False when the device's time cannot be trusted (a PHD IG time fault)."""
        return self.fault is None


@dataclass(frozen=True, slots=True)
class Reading:
    """A decoded measurement: one kind, one effective time, a value or why there is none."""

    kind: str
    at: datetime
    value: float | None = None
    unit: str | None = None
    components: tuple[Component, ...] = ()
    data_absent: str | None = None
    interpretation: tuple[str, ...] = ()
    device_status: tuple[str, ...] = ()
    """Device annunciations in words (cuff fit loose, battery low...), kept, not dropped."""
    sequence: int | None = None
    mdc_code: int | None = None
    """A more specific MDC code than the kind's default (pulse rate from a cuff: 149546)."""
    time_correction: TimeCorrection | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())
    """Further context as (name, text) pairs (meal context, sample location...)."""

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ContractError(f"{self.kind}: effective time {self.at!r} has no time zone")
        spec = lookup_kind(self.kind)
        if spec.components:
            if self.value is not None:
                raise ContractError(f"{self.kind} is a panel: its values go in components")
            names = {c.kind for c in self.components}
            unknown = names - set(spec.components)
            if unknown:
                raise ContractError(f"{self.kind} cannot have components {sorted(unknown)}")
            if not self.components and self.data_absent is None:
                raise ContractError(f"{self.kind} has neither components nor a data-absent reason")
        else:
            if self.components:
                raise ContractError(f"{self.kind} is not a panel and cannot have components")
            _check_value(self.kind, self.value, self.unit, self.data_absent)
        bad = set(self.interpretation) - INTERPRETATIONS
        if bad:
            raise ContractError(f"unknown interpretation codes {sorted(bad)}")

    def at_utc(self) -> datetime:
        """The effective time in UTC."""
        return self.at.astimezone(UTC)

    def component(self, name: str) -> Component | None:
        """The component of this panel with kind ``name``, if present."""
        for c in self.components:
            if c.kind == name:
                return c
        return None

    @property
    def reported_at(self) -> datetime:
        """The time as the device reported it, before any correction (the identity's time).

        A reading the device sends again later, after its clock was set, keeps its
        identity although the correction the hub applies to it may differ.
        """
        tc = self.time_correction
        if tc is None or not tc.corrected or tc.offset is None:
            return self.at
        return self.at - tc.offset

    def with_time(self, at: datetime, correction: TimeCorrection | None) -> Reading:
        """This reading at a corrected effective time, recording the correction."""
        return replace(self, at=at, time_correction=correction)


def _check_value(kind: str, value: float | None, unit: str | None, absent: str | None) -> None:
    spec = lookup_kind(kind)
    if value is None:
        if absent is None:
            raise ContractError(f"{kind}: no value and no data-absent reason")
    else:
        if absent is not None:
            raise ContractError(f"{kind}: both a value and a data-absent reason")
        if not math.isfinite(value):
            raise ContractError(f"{kind}: value {value!r} is not a finite number")
    if absent is not None and absent not in DATA_ABSENT_REASONS:
        raise ContractError(f"{kind}: unknown data-absent reason {absent!r}")
    if unit is None:
        if value is not None:
            raise ContractError(f"{kind}: value {value} has no unit")
    else:
        spec.check_unit(unit)


def reading(kind: str, value: float, unit: str, at: datetime, **kw: object) -> Reading:
    """Convenience constructor that accepts device unit spellings (``mmHg``, ``bpm``)."""
    return Reading(kind=kind, value=float(value), unit=normalize_unit(unit), at=at, **kw)  # type: ignore[arg-type]
