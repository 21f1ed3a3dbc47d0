"""Blood Pressure Service: Blood Pressure Measurement (0x2A35), Intermediate Cuff Pressure
(0x2A36).

Layouts from the Blood Pressure Service specification (BLS 1.1) and the
GATT Specification Supplement (GSS "Blood Pressure Measurement", "Intermediate
Cuff Pressure"): Flags uint8, three SFLOATs (systolic, diastolic, mean arterial pressure;
for 0x2A36 the current cuff pressure and two unused slots), then, as the flags announce,
Time Stamp (Date Time), Pulse Rate SFLOAT, User ID uint8, Measurement Status uint16.
"""

from __future__ import annotations

from datetime import datetime

from gateway.decoders._base import (
    Decoded,
    DeviceContext,
    Reader,
    bit_names,
    check_layout,
    frozen,
    measurement_time,
)
from gateway.decoders._sfloat import MedFloat
from gateway.decoders._time import DATE_TIME_SIZE, DateTime
from wardwatch.reading import Component, Reading

#: MDC code of a pulse rate measured by a blood pressure cuff (MDC_PULS_RATE_NON_INV)
PULSE_RATE_NONINVASIVE_MDC = 149546

UNKNOWN_USER = 0xFF

_FLAG_KPA = 0x01
_FLAG_TIME_STAMP = 0x02
_FLAG_PULSE_RATE = 0x04
_FLAG_USER_ID = 0x08
_FLAG_STATUS = 0x10

# BLS Measurement Status: bits 3-4 are a two-bit field, the rest single flags.
_STATUS_BITS = {
    0: "body_movement",
    1: "cuff_fit_loose",
    2: "irregular_pulse",
    5: "improper_measurement_position",
}
_STATUS_WORDS = {
    "body_movement": "body movement detected",
    "cuff_fit_loose": "cuff fit too loose",
    "irregular_pulse": "irregular pulse detected",
    "improper_measurement_position": "improper measurement position",
}
_PULSE_RANGE = ("within", "exceeds_upper_limit", "below_lower_limit", "reserved")
_PULSE_RANGE_WORDS = {
    "exceeds_upper_limit": "pulse rate exceeds upper limit",
    "below_lower_limit": "pulse rate below lower limit",
    "reserved": "pulse rate range detection: reserved value",
}


def _layout(flags: int, names: tuple[str, str, str]) -> list[tuple[str, int, bool]]:
    layout = [("Flags", 1, False)] + [(name, 2, False) for name in names]
    if flags & _FLAG_TIME_STAMP:
        layout.append(("Time Stamp", DATE_TIME_SIZE, True))
    if flags & _FLAG_PULSE_RATE:
        layout.append(("Pulse Rate", 2, True))
    if flags & _FLAG_USER_ID:
        layout.append(("User ID", 1, True))
    if flags & _FLAG_STATUS:
        layout.append(("Measurement Status", 2, True))
    return layout


class _Parsed:
    """The fields common to 0x2A35 and 0x2A36, read in wire order."""

    def __init__(self, data: bytes, names: tuple[str, str, str]) -> None:
        flags = data[0] if data else 0
        check_layout(data, _layout(flags, names), flags)
        r = Reader(data, 1)
        self.flags = flags
        self.unit = "kPa" if flags & _FLAG_KPA else "mm[Hg]"
        self.first = r.sfloat(names[0])
        self.diastolic = r.sfloat(names[1])
        self.mean = r.sfloat(names[2])
        self.stamp: DateTime | None = (
            r.date_time("Time Stamp") if flags & _FLAG_TIME_STAMP else None
        )
        self.pulse: MedFloat | None = r.sfloat("Pulse Rate") if flags & _FLAG_PULSE_RATE else None
        self.user: int | None = r.uint(1, "User ID") if flags & _FLAG_USER_ID else None
        self.status: int | None = r.uint(2, "Measurement Status") if flags & _FLAG_STATUS else None

    def status_fields(self) -> dict[str, object] | None:
        if self.status is None:
            return None
        out: dict[str, object] = dict(bit_names(self.status, _STATUS_BITS))
        out["pulse_rate_range"] = _PULSE_RANGE[self.status >> 3 & 0b11]
        return out

    def common_fields(self) -> dict[str, object]:
        return {
            "timestamp": None if self.stamp is None else self.stamp.as_field(),
            "pulse_rate": None if self.pulse is None else self.pulse.as_field(),
            "user_id": self.user,
            "measurement_status_raw": self.status,
            "measurement_status": self.status_fields(),
        }

    def status_words(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(words about the measurement, words about the pulse) from Measurement Status."""
        status = self.status_fields()
        if status is None:
            return (), ()
        words = tuple(_STATUS_WORDS[k] for k in _STATUS_WORDS if status[k])
        pulse_range = _PULSE_RANGE_WORDS.get(str(status["pulse_rate_range"]))
        pulse_words: tuple[str, ...] = ()
        if status["irregular_pulse"]:
            pulse_words = (_STATUS_WORDS["irregular_pulse"],)
        if pulse_range is not None:
            words += (pulse_range,)
            pulse_words += (pulse_range,)
        return words, pulse_words

    def pulse_interpretation(self) -> tuple[str, ...]:
        if self.status is None:
            return ()
        codes: list[str] = []
        if self.status & 0x04:
            codes.append("A")
        pulse_range = self.status >> 3 & 0b11
        if pulse_range == 1:
            codes.append("H")
        elif pulse_range == 2:
            codes.append("L")
        return tuple(codes)


def _component(kind: str, value: MedFloat, unit: str) -> Component:
    if value.special is not None:
        return Component(kind, None, None, value.special.data_absent)
    return Component(kind, value.value, unit)


def _user_extra(user: int | None) -> tuple[tuple[str, str], ...]:
    if user is None:
        return ()
    return (("user_id", "unknown user" if user == UNKNOWN_USER else str(user)),)


def decode_blood_pressure_measurement(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Blood Pressure Measurement 0x2A35 (BLS 1.1; GSS "Blood Pressure Measurement").

    Yields one ``blood_pressure`` panel (systolic, diastolic and mean arterial pressure
    components in the unit sent, mm[Hg] or kPa; an SFLOAT special value becomes that
    component's data-absent reason) and, when Pulse Rate is present, a ``heart_rate``
    reading with MDC code 149546 (pulse rate from a cuff). Measurement Status bits become
    device-status words on both; irregular pulse marks the pulse "A", a pulse above or
    below the device's range "H" or "L". The effective time is the Time Stamp taken as UTC
    when it has a full date (correcting the device's local clock is the gateway's job),
    else ``received_at``.
    """
    p = _Parsed(data, ("Systolic", "Diastolic", "Mean Arterial Pressure"))
    at, notes = measurement_time(p.stamp, received_at)
    notes += _user_extra(p.user)
    words, pulse_words = p.status_words()
    panel = Reading(
        kind="blood_pressure",
        at=at,
        components=(
            _component("systolic", p.first, p.unit),
            _component("diastolic", p.diastolic, p.unit),
            _component("mean_arterial_pressure", p.mean, p.unit),
        ),
        device_status=words,
        extra=notes,
    )
    readings = [panel]
    if p.pulse is not None:
        readings.append(
            Reading(
                kind="heart_rate",
                at=at,
                value=p.pulse.value,
                unit=None if p.pulse.special is not None else "/min",
                data_absent=p.pulse.data_absent,
                interpretation=p.pulse_interpretation(),
                device_status=pulse_words,
                mdc_code=PULSE_RATE_NONINVASIVE_MDC,
                extra=notes,
            )
        )
    fields: dict[str, object] = {
        "flags": p.flags,
        "unit": p.unit,
        "systolic": p.first.as_field(),
        "diastolic": p.diastolic.as_field(),
        "mean_arterial_pressure": p.mean.as_field(),
    }
    fields.update(p.common_fields())
    return Decoded("2A35", tuple(readings), frozen(fields))


def decode_intermediate_cuff_pressure(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Intermediate Cuff Pressure 0x2A36 (BLS 1.1; GSS "Intermediate Cuff Pressure").

    The cuff pressure while a measurement runs is progress, not a result, so it yields no
    readings; ``fields["cuff_pressure"]`` carries it for display. The diastolic and mean
    arterial pressure slots are unused (the server fills them with NaN) and are ignored.
    """
    del received_at, device  # no readings: nothing is timed
    p = _Parsed(data, ("Current Cuff Pressure", "unused Diastolic", "unused MAP"))
    fields: dict[str, object] = {
        "flags": p.flags,
        "unit": p.unit,
        "cuff_pressure": p.first.as_field(),
    }
    fields.update(p.common_fields())
    return Decoded("2A36", (), frozen(fields))
