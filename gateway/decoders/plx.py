"""Pulse Oximeter Service: PLX Spot-check Measurement (0x2A5E), PLX Continuous Measurement
(0x2A5F).

Layouts from the Pulse Oximeter Service specification (PLXS 1.0.1)
and the GSS. SpO2 (%) and pulse rate (/min) are SFLOATs; Measurement Status is a
uint16, Device and Sensor Status a uint24, Pulse Amplitude Index an SFLOAT (%).
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
    set_bits,
)
from gateway.decoders._sfloat import MedFloat
from gateway.decoders._time import DATE_TIME_SIZE, DateTime
from wardwatch.reading import Reading

#: MDC code of a pulse rate measured by a pulse oximeter (MDC_PULS_OXIM_PULS_RATE)
PULSE_RATE_OXIMETER_MDC = 149530

#: PLXS Measurement Status bits (0-4 reserved)
MEASUREMENT_STATUS_BITS = {
    5: "measurement_ongoing",
    6: "early_estimated_data",
    7: "validated_data",
    8: "fully_qualified_data",
    9: "data_from_measurement_storage",
    10: "data_for_demonstration",
    11: "data_for_testing",
    12: "calibration_ongoing",
    13: "measurement_unavailable",
    14: "questionable_measurement_detected",
    15: "invalid_measurement_detected",
}
#: PLXS Device and Sensor Status bits (16-23 reserved)
DEVICE_STATUS_BITS = {
    0: "extended_display_update_ongoing",
    1: "equipment_malfunction_detected",
    2: "signal_processing_irregularity_detected",
    3: "inadequate_signal_detected",
    4: "poor_signal_detected",
    5: "low_perfusion_detected",
    6: "erratic_signal_detected",
    7: "nonpulsatile_signal_detected",
    8: "questionable_pulse_detected",
    9: "signal_analysis_ongoing",
    10: "sensor_interference_detected",
    11: "sensor_unconnected_to_user",
    12: "unknown_sensor_connected",
    13: "sensor_displaced",
    14: "sensor_malfunctioning",
    15: "sensor_disconnected",
}
# Status that says nothing about the quality of this value stays out of device_status.
_QUIET = {"validated_data", "fully_qualified_data", "extended_display_update_ongoing"}
_MEASUREMENT_WORDS = {
    bit: name.replace("_", " ")
    for bit, name in MEASUREMENT_STATUS_BITS.items()
    if name not in _QUIET
}
_DEVICE_WORDS = {
    bit: name.replace("_", " ") for bit, name in DEVICE_STATUS_BITS.items() if name not in _QUIET
}
_INVALID = 1 << 15
_UNAVAILABLE = 1 << 13


class _Status:
    def __init__(self) -> None:
        self.measurement: int | None = None
        self.device: int | None = None
        self.pai: MedFloat | None = None

    def read(self, r: Reader, flags: int, ms_bit: int, ds_bit: int, pai_bit: int) -> None:
        if flags & ms_bit:
            self.measurement = r.uint(2, "Measurement Status")
        if flags & ds_bit:
            self.device = r.uint(3, "Device and Sensor Status")
        if flags & pai_bit:
            self.pai = r.sfloat("Pulse Amplitude Index")

    def fields(self) -> dict[str, object]:
        ms, ds = self.measurement, self.device
        return {
            "measurement_status_raw": ms,
            "measurement_status": None if ms is None else bit_names(ms, MEASUREMENT_STATUS_BITS),
            "device_and_sensor_status_raw": ds,
            "device_and_sensor_status": None if ds is None else bit_names(ds, DEVICE_STATUS_BITS),
            "pulse_amplitude_index_percent": None if self.pai is None else self.pai.as_field(),
        }

    def words(self) -> tuple[str, ...]:
        out: tuple[str, ...] = ()
        if self.measurement is not None:
            out += set_bits(self.measurement, _MEASUREMENT_WORDS)
        if self.device is not None:
            out += set_bits(self.device, _DEVICE_WORDS)
        return out

    def absent(self) -> str | None:
        """A data-absent reason when the device itself says the value is not usable."""
        ms = self.measurement or 0
        if ms & _INVALID:
            return "error"
        if ms & _UNAVAILABLE:
            return "unknown"
        return None


def _reading(
    kind: str,
    value: MedFloat,
    unit: str,
    at: datetime,
    status: _Status,
    notes: tuple[tuple[str, str], ...],
    mdc: int | None = None,
) -> Reading:
    absent = value.data_absent or status.absent()
    return Reading(
        kind=kind,
        at=at,
        value=None if absent else value.value,
        unit=None if absent else unit,
        data_absent=absent,
        device_status=status.words(),
        mdc_code=mdc,
        extra=notes,
    )


def _pair(spo2: MedFloat, pr: MedFloat) -> dict[str, object]:
    return {"spo2_percent": spo2.as_field(), "pulse_rate_bpm": pr.as_field()}


def decode_plx_spot_check(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode PLX Spot-check Measurement 0x2A5E (PLXS 1.0.1; GSS "PLX Spot-check Measurement").

    Yields ``spo2`` (%) and ``heart_rate`` (/min, MDC 149530) at the Time Stamp taken as
    UTC or ``received_at``. Status bits become device-status words; "invalid measurement
    detected" and "measurement unavailable" turn the values into data-absent readings.
    """
    del device
    flags = data[0] if data else 0
    layout = [("Flags", 1, False), ("SpO2", 2, False), ("PR", 2, False)]
    if flags & 0x01:
        layout.append(("Time Stamp", DATE_TIME_SIZE, True))
    if flags & 0x02:
        layout.append(("Measurement Status", 2, True))
    if flags & 0x04:
        layout.append(("Device and Sensor Status", 3, True))
    if flags & 0x08:
        layout.append(("Pulse Amplitude Index", 2, True))
    check_layout(data, layout, flags)
    r = Reader(data, 1)
    spo2, pr = r.sfloat("SpO2"), r.sfloat("PR")
    stamp: DateTime | None = r.date_time("Time Stamp") if flags & 0x01 else None
    status = _Status()
    status.read(r, flags, 0x02, 0x04, 0x08)
    clock_not_set = bool(flags & 0x10)
    fields: dict[str, object] = {"flags": flags, **_pair(spo2, pr)}
    fields["timestamp"] = None if stamp is None else stamp.as_field()
    fields["device_clock_not_set"] = clock_not_set
    fields.update(status.fields())
    # A time stamp from a clock the device says is not set is no time at all.
    at, notes = measurement_time(None if clock_not_set else stamp, received_at)
    if clock_not_set and stamp is not None:
        notes += (("device_time", "device clock not set; reception time used"),)
    readings = (
        _reading("spo2", spo2, "%", at, status, notes),
        _reading("heart_rate", pr, "/min", at, status, notes, PULSE_RATE_OXIMETER_MDC),
    )
    return Decoded("2A5E", readings, frozen(fields))


def decode_plx_continuous(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode PLX Continuous Measurement 0x2A5F (PLXS 1.0.1; GSS "PLX Continuous Measurement").

    Yields ``spo2`` and ``heart_rate`` (MDC 149530) from SpO2PR-Normal at ``received_at``;
    the Fast and Slow averages stay in ``fields``. Status handling as for 0x2A5E.
    """
    del device
    flags = data[0] if data else 0
    layout = [("Flags", 1, False), ("SpO2PR-Normal", 4, False)]
    if flags & 0x01:
        layout.append(("SpO2PR-Fast", 4, True))
    if flags & 0x02:
        layout.append(("SpO2PR-Slow", 4, True))
    if flags & 0x04:
        layout.append(("Measurement Status", 2, True))
    if flags & 0x08:
        layout.append(("Device and Sensor Status", 3, True))
    if flags & 0x10:
        layout.append(("Pulse Amplitude Index", 2, True))
    check_layout(data, layout, flags)
    r = Reader(data, 1)
    spo2, pr = r.sfloat("SpO2 (Normal)"), r.sfloat("PR (Normal)")
    fields: dict[str, object] = {"flags": flags, **_pair(spo2, pr)}
    for bit, name in ((0x01, "fast"), (0x02, "slow")):
        if flags & bit:
            pair = _pair(r.sfloat(f"SpO2 ({name})"), r.sfloat(f"PR ({name})"))
            fields[f"spo2_percent_{name}"] = pair["spo2_percent"]
            fields[f"pulse_rate_bpm_{name}"] = pair["pulse_rate_bpm"]
        else:
            fields[f"spo2_percent_{name}"] = fields[f"pulse_rate_bpm_{name}"] = None
    status = _Status()
    status.read(r, flags, 0x04, 0x08, 0x10)
    fields.update(status.fields())
    readings = (
        _reading("spo2", spo2, "%", received_at, status, ()),
        _reading("heart_rate", pr, "/min", received_at, status, (), PULSE_RATE_OXIMETER_MDC),
    )
    return Decoded("2A5F", readings, frozen(fields))
