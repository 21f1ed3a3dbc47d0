"""Pure byte builders for Bluetooth SIG health characteristics (no I/O).

IEEE 11073-20601 number types (SFLOAT, FLOAT), the Bluetooth Date Time field and the
Blood Pressure Measurement characteristic (0x2A35). Everything is little-endian, as sent
over the air.
"""

from __future__ import annotations

import enum
import math
import struct
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

__all__ = [
    "BloodPressureFlags",
    "PressureUnit",
    "SpecialValue",
    "encode_blood_pressure_measurement",
    "encode_date_time",
    "encode_float",
    "encode_sfloat",
]

PressureUnit = Literal["mmHg", "kPa"]


class SpecialValue(enum.Enum):
    """IEEE 11073-20601 special values, expressible in both SFLOAT and FLOAT."""

    NAN = "NaN"
    NRES = "NRes"
    POSITIVE_INFINITY = "+INF"
    NEGATIVE_INFINITY = "-INF"
    RESERVED = "reserved"


# Mantissa bit patterns of the special values (exponent 0), per IEEE 11073-20601 §F.8.
_SFLOAT_SPECIAL = {
    SpecialValue.NAN: 0x07FF,
    SpecialValue.NRES: 0x0800,
    SpecialValue.POSITIVE_INFINITY: 0x07FE,
    SpecialValue.NEGATIVE_INFINITY: 0x0802,
    SpecialValue.RESERVED: 0x0801,
}
_FLOAT_SPECIAL = {
    SpecialValue.NAN: 0x007FFFFF,
    SpecialValue.NRES: 0x00800000,
    SpecialValue.POSITIVE_INFINITY: 0x007FFFFE,
    SpecialValue.NEGATIVE_INFINITY: 0x00800002,
    SpecialValue.RESERVED: 0x00800001,
}

# Largest magnitude a finite mantissa may take: the patterns above it are special values.
_SFLOAT_MANTISSA_MAX = 0x07FD  # 2045
_FLOAT_MANTISSA_MAX = 0x007FFFFD  # 8388605


class BloodPressureFlags(enum.IntFlag):
    """Flags byte of the Blood Pressure Measurement characteristic (0x2A35)."""

    UNIT_KPA = 0x01
    TIMESTAMP = 0x02
    PULSE_RATE = 0x04
    USER_ID = 0x08
    MEASUREMENT_STATUS = 0x10


def _classify(value: float | SpecialValue) -> float | SpecialValue:
    """Map NaN and infinities onto their special values; finite numbers pass through."""
    if isinstance(value, SpecialValue):
        return value
    if math.isnan(value):
        return SpecialValue.NAN
    if math.isinf(value):
        return SpecialValue.POSITIVE_INFINITY if value > 0 else SpecialValue.NEGATIVE_INFINITY
    return float(value)


def _mantissa_exponent(
    value: float, *, mantissa_max: int, exponent_min: int, exponent_max: int, kind: str
) -> tuple[int, int]:
    """Split a finite value into (mantissa, exponent) with value ~= mantissa * 10**exponent.

    Integers whose magnitude fits the mantissa use exponent 0 (120 -> 120e0, as devices
    send it); everything else uses the shortest exact decimal form (18.9 -> 189e-1,
    5.13e9 -> 513e7), rounding half away from zero when the mantissa has too few digits.
    """
    exact = Decimal(repr(value))  # shortest decimal that round-trips the float
    if exact.is_zero():
        return 0, 0
    _, digits, exp = exact.normalize().as_tuple()
    assert isinstance(exp, int)  # finite by construction
    mantissa = int("".join(map(str, digits)))
    if exp > 0 and mantissa * 10**exp <= mantissa_max:
        exp = 0
    exponent = min(max(exp, exponent_min), exponent_max)
    magnitude = abs(exact)
    while True:
        rounded = int(magnitude.scaleb(-exponent).to_integral_value(rounding=ROUND_HALF_UP))
        if rounded <= mantissa_max:
            break
        exponent += 1
    if exponent > exponent_max:
        raise ValueError(f"{value!r} is outside the {kind} range")
    if rounded == 0:
        return 0, 0
    return (-rounded if exact < 0 else rounded), exponent


def encode_sfloat(value: float | SpecialValue) -> bytes:
    """Encode a number as an IEEE 11073 16-bit SFLOAT (4-bit exponent, 12-bit mantissa).

    NaN and infinities map to the special values; values with more than four significant
    digits are rounded. Raises ``ValueError`` if the magnitude exceeds 2045e7.
    """
    number = _classify(value)
    if isinstance(number, SpecialValue):
        raw = _SFLOAT_SPECIAL[number]
    else:
        mantissa, exponent = _mantissa_exponent(
            number,
            mantissa_max=_SFLOAT_MANTISSA_MAX,
            exponent_min=-8,
            exponent_max=7,
            kind="SFLOAT",
        )
        raw = ((exponent & 0x0F) << 12) | (mantissa & 0x0FFF)
    return raw.to_bytes(2, "little")


def encode_float(value: float | SpecialValue) -> bytes:
    """Encode a number as an IEEE 11073 32-bit FLOAT (8-bit exponent, 24-bit mantissa).

    NaN and infinities map to the special values; values with more than seven
    significant digits are rounded. Raises ``ValueError`` if the magnitude is too large.
    """
    number = _classify(value)
    if isinstance(number, SpecialValue):
        raw = _FLOAT_SPECIAL[number]
    else:
        mantissa, exponent = _mantissa_exponent(
            number,
            mantissa_max=_FLOAT_MANTISSA_MAX,
            exponent_min=-128,
            exponent_max=127,
            kind="FLOAT",
        )
        raw = ((exponent & 0xFF) << 24) | (mantissa & 0x00FFFFFF)
    return raw.to_bytes(4, "little")


def encode_date_time(value: datetime) -> bytes:
    """Encode the Bluetooth Date Time field (0x2A08): year u16, month, day, h, m, s.

    The time is taken as given (wall-clock time of the device); any tzinfo is ignored.
    Raises ``ValueError`` for years outside 1582..9999, the range the field allows.
    """
    if not 1582 <= value.year <= 9999:
        raise ValueError(f"year {value.year} is outside the Date Time range 1582..9999")
    return struct.pack(
        "<HBBBBB", value.year, value.month, value.day, value.hour, value.minute, value.second
    )


def encode_blood_pressure_measurement(
    systolic: float | SpecialValue,
    diastolic: float | SpecialValue,
    mean: float | SpecialValue,
    unit: PressureUnit = "mmHg",
    timestamp: datetime | None = None,
    pulse: float | SpecialValue | None = None,
    user_id: int | None = None,
    status: int | None = None,
) -> bytes:
    """Build a Blood Pressure Measurement (0x2A35) value.

    Layout: flags, systolic/diastolic/mean arterial pressure (SFLOAT each), then the
    optional Time Stamp, Pulse Rate (SFLOAT), User ID (u8, 0xFF = unknown user) and
    Measurement Status (u16) fields, each announced by its flag bit.
    """
    if unit not in ("mmHg", "kPa"):
        raise ValueError(f"unit must be 'mmHg' or 'kPa', not {unit!r}")
    flags = BloodPressureFlags(0)
    if unit == "kPa":
        flags |= BloodPressureFlags.UNIT_KPA
    body = encode_sfloat(systolic) + encode_sfloat(diastolic) + encode_sfloat(mean)
    if timestamp is not None:
        flags |= BloodPressureFlags.TIMESTAMP
        body += encode_date_time(timestamp)
    if pulse is not None:
        flags |= BloodPressureFlags.PULSE_RATE
        body += encode_sfloat(pulse)
    if user_id is not None:
        if not 0 <= user_id <= 0xFF:
            raise ValueError(f"user_id {user_id} does not fit one byte")
        flags |= BloodPressureFlags.USER_ID
        body += bytes([user_id])
    if status is not None:
        if not 0 <= status <= 0xFFFF:
            raise ValueError(f"status {status:#x} does not fit 16 bits")
        flags |= BloodPressureFlags.MEASUREMENT_STATUS
        body += status.to_bytes(2, "little")
    return bytes([flags]) + body
