"""Glucose Service: Glucose Measurement (0x2A18), Glucose Measurement Context (0x2A34),
Glucose Feature (0x2A51).

Layouts from the Glucose Service specification (GLS 1.0.1) and the GATT
Specification Supplement (GSS "Glucose Feature", "Glucose Measurement",
"Glucose Measurement Context").
"""

from __future__ import annotations

from dataclasses import replace
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
from gateway.decoders._time import DATE_TIME_SIZE
from gateway.errors import DecodeError
from wardwatch.reading import Reading

#: GLS Type (low nibble of Type-Sample Location)
SAMPLE_TYPES = {
    1: "capillary whole blood",
    2: "capillary plasma",
    3: "venous whole blood",
    4: "venous plasma",
    5: "arterial whole blood",
    6: "arterial plasma",
    7: "undetermined whole blood",
    8: "undetermined plasma",
    9: "interstitial fluid",
    10: "control solution",
}
#: GLS Sample Location (high nibble of Type-Sample Location)
SAMPLE_LOCATIONS = {
    1: "finger",
    2: "alternate site test",
    3: "earlobe",
    4: "control solution",
    15: "not available",
}
_CONTROL_TYPE = 10
_CONTROL_LOCATION = 4
_ISF_TYPE = 9

#: GLS Sensor Status Annunciation: bit -> field name
SENSOR_STATUS_BITS = {
    0: "device_battery_low",
    1: "sensor_malfunction",
    2: "sample_size_insufficient",
    3: "strip_insertion_error",
    4: "strip_type_incorrect",
    5: "result_higher_than_device_can_process",
    6: "result_lower_than_device_can_process",
    7: "sensor_temperature_too_high",
    8: "sensor_temperature_too_low",
    9: "read_interrupted",
    10: "general_device_fault",
    11: "time_fault",
}
_SENSOR_STATUS_WORDS = {
    0: "device battery low at time of measurement",
    1: "sensor malfunction",
    2: "sample size insufficient",
    3: "strip insertion error",
    4: "strip type incorrect for device",
    5: "result higher than the device can process",
    6: "result lower than the device can process",
    7: "sensor temperature too high for valid test",
    8: "sensor temperature too low for valid test",
    9: "sensor read interrupted (strip pulled too soon)",
    10: "general device fault",
    11: "time fault (time may be inaccurate)",
}

#: GLS Glucose Feature bits
FEATURE_BITS = {
    0: "low_battery_detection",
    1: "sensor_malfunction_detection",
    2: "sensor_sample_size",
    3: "sensor_strip_insertion_error_detection",
    4: "sensor_strip_type_error_detection",
    5: "sensor_result_high_low_detection",
    6: "sensor_temperature_high_low_detection",
    7: "sensor_read_interrupt_detection",
    8: "general_device_fault",
    9: "time_fault",
    10: "multiple_bond",
}

CARBOHYDRATES = {
    1: "breakfast",
    2: "lunch",
    3: "dinner",
    4: "snack",
    5: "drink",
    6: "supper",
    7: "brunch",
}
MEALS = {1: "preprandial", 2: "postprandial", 3: "fasting", 4: "casual", 5: "bedtime"}
TESTERS = {1: "self", 2: "health care professional", 3: "lab test", 15: "not available"}
HEALTH = {
    1: "minor health issues",
    2: "major health issues",
    3: "during menses",
    4: "under stress",
    5: "no health issues",
    15: "not available",
}
MEDICATIONS = {
    1: "rapid acting insulin",
    2: "short acting insulin",
    3: "intermediate acting insulin",
    4: "long acting insulin",
    5: "pre-mixed insulin",
}


def _name(table: dict[int, str], code: int | None) -> str | None:
    if code is None:
        return None
    return table.get(code, f"reserved ({code})")


def glucose_concentration(value: MedFloat, molar: bool) -> tuple[float | None, str]:
    """A wire concentration (kg/L or mol/L) in mg/dL or mmol/L.

    The exponent is shifted rather than the float multiplied, so 90e-5 kg/L is exactly
    90 mg/dL (1 kg/L = 10^5 mg/dL; 1 mol/L = 10^3 mmol/L).
    """
    shift, unit = (3, "mmol/L") if molar else (5, "mg/dL")
    if value.special is not None:
        return None, unit
    return MedFloat(value.mantissa, value.exponent + shift).value, unit


def decode_glucose_measurement(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Glucose Measurement 0x2A18 (GLS 1.0.1; GSS "Glucose Measurement").

    Yields one ``glucose`` reading (``cgm_glucose`` for interstitial fluid) in mg/dL
    (kg/L on the wire) or mmol/L (mol/L), at Base Time + Time Offset taken as UTC, with
    the sequence number, sample type and location. Sensor Status Annunciation bits become
    device-status words; a result beyond what the device can process is marked "H" or "L".
    A control-solution test is not a patient measurement and yields no reading (its fields
    are kept). A record without a concentration yields no reading.
    """
    del device
    flags = data[0] if data else 0
    layout = [("Flags", 1, False), ("Sequence Number", 2, False)]
    layout.append(("Base Time", DATE_TIME_SIZE, False))
    if flags & 0x01:
        layout.append(("Time Offset", 2, True))
    if flags & 0x02:
        layout += [("Glucose Concentration", 2, True), ("Type-Sample Location", 1, True)]
    if flags & 0x08:
        layout.append(("Sensor Status Annunciation", 2, True))
    check_layout(data, layout, flags)
    r = Reader(data, 1)
    sequence = r.uint(2, "Sequence Number")
    base = r.date_time("Base Time")
    offset = r.sint(2, "Time Offset") if flags & 0x01 else None
    concentration = r.sfloat("Glucose Concentration") if flags & 0x02 else None
    type_location = r.uint(1, "Type-Sample Location") if flags & 0x02 else None
    status = r.uint(2, "Sensor Status Annunciation") if flags & 0x08 else None
    molar = bool(flags & 0x04)
    sample_type = None if type_location is None else type_location & 0x0F
    location = None if type_location is None else type_location >> 4
    control = sample_type == _CONTROL_TYPE or location == _CONTROL_LOCATION
    fields: dict[str, object] = {
        "flags": flags,
        "sequence_number": sequence,
        "base_time": base.as_field(),
        "time_offset_minutes": offset,
        "concentration": None if concentration is None else concentration.as_field(),
        "concentration_unit": None if concentration is None else ("mol/L" if molar else "kg/L"),
        "type": sample_type,
        "type_name": _name(SAMPLE_TYPES, sample_type),
        "sample_location": location,
        "sample_location_name": _name(SAMPLE_LOCATIONS, location),
        "sensor_status_raw": status,
        "sensor_status": None if status is None else bit_names(status, SENSOR_STATUS_BITS),
        "context_information_follows": bool(flags & 0x10),
        "control_solution": control,
    }
    readings: tuple[Reading, ...] = ()
    if concentration is not None and not control:
        value, unit = glucose_concentration(concentration, molar)
        at, notes = measurement_time(base, received_at, offset_minutes=offset or 0)
        notes += (("sample_type", str(fields["type_name"])),)
        notes += (("sample_location", str(fields["sample_location_name"])),)
        interpretation: tuple[str, ...] = ()
        if status is not None and status & 0x20:
            interpretation = ("H",)
        elif status is not None and status & 0x40:
            interpretation = ("L",)
        reading = Reading(
            kind="cgm_glucose" if sample_type == _ISF_TYPE else "glucose",
            at=at,
            value=value,
            unit=None if value is None else unit,
            data_absent=concentration.data_absent,
            interpretation=interpretation,
            device_status=() if status is None else set_bits(status, _SENSOR_STATUS_WORDS),
            sequence=sequence,
            extra=notes,
        )
        readings = (reading,)
    return Decoded("2A18", readings, frozen(fields))


def decode_glucose_measurement_context(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Glucose Measurement Context 0x2A34 (GLS 1.0.1; GSS "Glucose Measurement Context").

    Context belongs to the Glucose Measurement with the same sequence number; it yields no
    readings of its own (see :func:`apply_glucose_context`). Carbohydrate is in kilograms,
    medication in kilograms or litres as the units flag says, HbA1c in percent.
    """
    del received_at, device
    flags = data[0] if data else 0
    layout = [("Flags", 1, False), ("Sequence Number", 2, False)]
    if flags & 0x80:
        layout.append(("Extended Flags", 1, True))
    if flags & 0x01:
        layout += [("Carbohydrate ID", 1, True), ("Carbohydrate", 2, True)]
    if flags & 0x02:
        layout.append(("Meal", 1, True))
    if flags & 0x04:
        layout.append(("Tester-Health", 1, True))
    if flags & 0x08:
        layout += [("Exercise Duration", 2, True), ("Exercise Intensity", 1, True)]
    if flags & 0x10:
        layout += [("Medication ID", 1, True), ("Medication", 2, True)]
    if flags & 0x40:
        layout.append(("HbA1c", 2, True))
    check_layout(data, layout, flags)
    r = Reader(data, 1)
    fields: dict[str, object] = {"flags": flags, "sequence_number": r.uint(2, "Sequence Number")}
    fields["extended_flags"] = r.uint(1, "Extended Flags") if flags & 0x80 else None
    carb_id = r.uint(1, "Carbohydrate ID") if flags & 0x01 else None
    fields["carbohydrate_id"] = carb_id
    fields["carbohydrate_name"] = _name(CARBOHYDRATES, carb_id)
    fields["carbohydrate_kg"] = r.sfloat("Carbohydrate").as_field() if flags & 0x01 else None
    meal = r.uint(1, "Meal") if flags & 0x02 else None
    fields["meal"] = meal
    fields["meal_name"] = _name(MEALS, meal)
    tester_health = r.uint(1, "Tester-Health") if flags & 0x04 else None
    tester = None if tester_health is None else tester_health & 0x0F
    health = None if tester_health is None else tester_health >> 4
    fields["tester"] = tester
    fields["tester_name"] = _name(TESTERS, tester)
    fields["health"] = health
    fields["health_name"] = _name(HEALTH, health)
    if flags & 0x08:
        duration = r.uint(2, "Exercise Duration")
        fields["exercise_duration_s"] = duration
        fields["exercise_duration_overrun"] = duration == 0xFFFF
        fields["exercise_intensity_percent"] = r.uint(1, "Exercise Intensity")
    else:
        fields["exercise_duration_s"] = None
        fields["exercise_duration_overrun"] = None
        fields["exercise_intensity_percent"] = None
    medication_id = r.uint(1, "Medication ID") if flags & 0x10 else None
    fields["medication_id"] = medication_id
    fields["medication_name"] = _name(MEDICATIONS, medication_id)
    fields["medication"] = r.sfloat("Medication").as_field() if flags & 0x10 else None
    fields["medication_unit"] = ("L" if flags & 0x20 else "kg") if flags & 0x10 else None
    fields["hba1c_percent"] = r.sfloat("HbA1c").as_field() if flags & 0x40 else None
    return Decoded("2A34", (), frozen(fields))


_CONTEXT_NOTES = (
    ("meal", "meal_name"),
    ("carbohydrate", "carbohydrate_name"),
    ("tester", "tester_name"),
    ("health", "health_name"),
    ("medication", "medication_name"),
)


def apply_glucose_context(measurement: Decoded, context: Decoded) -> Decoded:
    """The measurement with its context (meal, tester, health...) added to each reading.

    GLS: a context record belongs to the measurement with the same sequence number;
    any other pairing raises DecodeError.
    """
    if measurement.characteristic != "2A18" or context.characteristic != "2A34":
        raise DecodeError("apply_glucose_context needs a 2A18 measurement and a 2A34 context")
    seq, ctx_seq = measurement.fields["sequence_number"], context.fields["sequence_number"]
    if seq != ctx_seq:
        raise DecodeError(f"context sequence number {ctx_seq} does not match measurement {seq}")
    notes = tuple(
        (name, str(context.fields[key]))
        for name, key in _CONTEXT_NOTES
        if context.fields.get(key) is not None
    )
    readings = tuple(replace(r, extra=r.extra + notes) for r in measurement.readings)
    fields = dict(measurement.fields)
    fields["context"] = dict(context.fields)
    return Decoded(measurement.characteristic, readings, frozen(fields))


def decode_glucose_feature(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Glucose Feature 0x2A51 (GLS 1.0.1; GSS "Glucose Feature"): uint16 bits."""
    del received_at, device
    if len(data) < 2:
        what = "payload is empty" if not data else f"payload has {len(data)} bytes"
        raise DecodeError(f"{what}; Glucose Feature needs 2 bytes")
    raw = int.from_bytes(data[:2], "little")
    fields: dict[str, object] = {"features_raw": raw}
    fields.update(bit_names(raw, FEATURE_BITS))
    return Decoded("2A51", (), frozen(fields))
