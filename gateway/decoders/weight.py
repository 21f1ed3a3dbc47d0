"""Weight Scale Service: Weight Measurement (0x2A9D), Weight Scale Feature (0x2A9E).

Layouts from the Weight Scale Service specification (WSS 1.0) and the
GATT Specification Supplement (GSS "Weight Measurement", "Weight Scale
Feature"). Weight is a uint16 in 0.005 kg (SI) or 0.01 lb (imperial); BMI a uint16 in 0.1
kg/m2; height a uint16 in 0.001 m (SI) or 0.1 in (imperial).
"""

from __future__ import annotations

from datetime import datetime

from gateway.decoders._base import (
    Decoded,
    DeviceContext,
    Reader,
    check_layout,
    frozen,
    measurement_time,
)
from gateway.decoders._time import DATE_TIME_SIZE
from gateway.errors import DecodeError
from wardwatch.reading import Reading

#: WSS: a weight of 0xFFFF means "Measurement Unsuccessful"
MEASUREMENT_UNSUCCESSFUL = 0xFFFF
UNKNOWN_USER = 0xFF

# (unit, resolution as a fraction n/d) kept as integers so 14000 x 5/1000 is exactly 70.0
_MASS = {False: ("kg", 5, 1000), True: ("[lb_av]", 1, 100)}
_LENGTH = {False: ("m", 1, 1000), True: ("[in_i]", 1, 10)}


def scale(raw: int, num: int, den: int) -> float:
    """``raw`` x num/den as the float nearest the exact decimal."""
    return raw * num / den


def user_note(user: int | None) -> tuple[tuple[str, str], ...]:
    """The user id as a reading note (255 is the unknown user)."""
    if user is None:
        return ()
    return (("user_id", "unknown user" if user == UNKNOWN_USER else str(user)),)


def decode_weight_measurement(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Weight Measurement 0x2A9D (WSS 1.0; GSS "Weight Measurement").

    Yields ``body_weight`` (kg or [lb_av]) and, when present, ``bmi`` (kg/m2) and
    ``body_height`` (m or [in_i]), at the Time Stamp taken as UTC or ``received_at``.
    A weight of 0xFFFF ("Measurement Unsuccessful") yields a ``body_weight`` reading with
    data-absent reason "error" and no BMI or height.
    """
    del device
    flags = data[0] if data else 0
    layout = [("Flags", 1, False), ("Weight", 2, False)]
    if flags & 0x02:
        layout.append(("Time Stamp", DATE_TIME_SIZE, True))
    if flags & 0x04:
        layout.append(("User ID", 1, True))
    if flags & 0x08:
        layout += [("BMI", 2, True), ("Height", 2, True)]
    check_layout(data, layout, flags)
    imperial = bool(flags & 0x01)
    r = Reader(data, 1)
    raw_weight = r.uint(2, "Weight")
    stamp = r.date_time("Time Stamp") if flags & 0x02 else None
    user = r.uint(1, "User ID") if flags & 0x04 else None
    raw_bmi = r.uint(2, "BMI") if flags & 0x08 else None
    raw_height = r.uint(2, "Height") if flags & 0x08 else None
    mass_unit, mn, md = _MASS[imperial]
    length_unit, ln, ld = _LENGTH[imperial]
    unsuccessful = raw_weight == MEASUREMENT_UNSUCCESSFUL
    weight = None if unsuccessful else scale(raw_weight, mn, md)
    bmi = None if raw_bmi is None or unsuccessful else raw_bmi / 10
    height = None if raw_height is None or unsuccessful else scale(raw_height, ln, ld)
    fields: dict[str, object] = {
        "flags": flags,
        "unit_system": "imperial" if imperial else "SI",
        "weight": weight,
        "weight_unit": mass_unit,
        "measurement_unsuccessful": unsuccessful,
        "timestamp": None if stamp is None else stamp.as_field(),
        "user_id": user,
        "bmi": bmi,
        "height": height,
        "height_unit": None if height is None else length_unit,
    }
    at, notes = measurement_time(stamp, received_at)
    notes += user_note(user)
    readings: list[Reading] = []
    if weight is None:
        status = ("measurement unsuccessful",)
        readings.append(
            Reading("body_weight", at, data_absent="error", device_status=status, extra=notes)
        )
    else:
        readings.append(Reading("body_weight", at, weight, mass_unit, extra=notes))
    if bmi is not None:
        readings.append(Reading("bmi", at, bmi, "kg/m2", extra=notes))
    if height is not None:
        readings.append(Reading("body_height", at, height, length_unit, extra=notes))
    return Decoded("2A9D", tuple(readings), frozen(fields))


#: WSS Weight Measurement Resolution code -> (kg, lb)
WEIGHT_RESOLUTIONS = {
    1: (0.5, 1.0),
    2: (0.2, 0.5),
    3: (0.1, 0.2),
    4: (0.05, 0.1),
    5: (0.02, 0.05),
    6: (0.01, 0.02),
    7: (0.005, 0.01),
}
#: WSS Height Measurement Resolution code -> (m, in)
HEIGHT_RESOLUTIONS = {1: (0.01, 1.0), 2: (0.005, 0.5), 3: (0.001, 0.1)}


def decode_weight_scale_feature(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Weight Scale Feature 0x2A9E (WSS 1.0; GSS "Weight Scale Feature"): uint32 bits.

    Fields: features_raw, timestamp_supported, multiple_users_supported, bmi_supported,
    weight_resolution_code / weight_resolution_kg / weight_resolution_lb and
    height_resolution_code / height_resolution_m / height_resolution_in (None = not
    specified).
    """
    del received_at, device
    if len(data) < 4:
        what = "payload is empty" if not data else f"payload has {len(data)} bytes"
        raise DecodeError(f"{what}; Weight Scale Feature needs 4 bytes")
    raw = int.from_bytes(data[:4], "little")
    weight_code = raw >> 3 & 0x0F
    height_code = raw >> 7 & 0x07
    weight_res = WEIGHT_RESOLUTIONS.get(weight_code)
    height_res = HEIGHT_RESOLUTIONS.get(height_code)
    fields: dict[str, object] = {
        "features_raw": raw,
        "timestamp_supported": bool(raw & 0x01),
        "multiple_users_supported": bool(raw & 0x02),
        "bmi_supported": bool(raw & 0x04),
        "weight_resolution_code": weight_code,
        "weight_resolution_kg": None if weight_res is None else weight_res[0],
        "weight_resolution_lb": None if weight_res is None else weight_res[1],
        "height_resolution_code": height_code,
        "height_resolution_m": None if height_res is None else height_res[0],
        "height_resolution_in": None if height_res is None else height_res[1],
    }
    return Decoded("2A9E", (), frozen(fields))
