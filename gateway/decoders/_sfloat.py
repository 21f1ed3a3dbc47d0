"""IEEE 11073-20601 SFLOAT (medfloat16) and FLOAT (medfloat32).

GATT Specification Supplement (GSS) "medfloat16"/"medfloat32", after
IEEE 11073-20601 (MDER FLOAT-Type and SFLOAT-Type): a signed base-10 exponent in the top bits
(4 of 16, 8 of 32) and a signed mantissa below it. Five mantissa values with exponent 0 are
special values (NaN, NRes, +INF, -INF, reserved) that no number may use.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import DecodeError


class Special(enum.Enum):
    """The IEEE 11073 special values; the enum value is how they are spelt in fields."""

    NAN = "NaN"
    NRES = "NRes"
    POSITIVE_INFINITY = "+INF"
    NEGATIVE_INFINITY = "-INF"
    RESERVED = "reserved"

    @property
    def data_absent(self) -> str:
        """The FHIR data-absent-reason code a reading uses for this special value."""
        return _DATA_ABSENT[self]


# PHD IG (IEEE 11073 FLOATs and SFLOATs): NaN -> not-a-number, +/-INF -> positive/negative
# infinity; NRes ("not at this resolution") and the reserved value carry no usable number.
_DATA_ABSENT = {
    Special.NAN: "not-a-number",
    Special.NRES: "error",
    Special.POSITIVE_INFINITY: "positive-infinity",
    Special.NEGATIVE_INFINITY: "negative-infinity",
    Special.RESERVED: "error",
}

# Mantissa offsets from 2^(bits-1): the special values sit at both ends of the range.
_SFLOAT_SPECIAL = {
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x07FE: Special.POSITIVE_INFINITY,
    0x0802: Special.NEGATIVE_INFINITY,
    0x0801: Special.RESERVED,
}
_FLOAT_SPECIAL = {
    0x007FFFFF: Special.NAN,
    0x00800000: Special.NRES,
    0x007FFFFE: Special.POSITIVE_INFINITY,
    0x00800002: Special.NEGATIVE_INFINITY,
    0x00800001: Special.RESERVED,
}
_SFLOAT_BY_SPECIAL = {v: k for k, v in _SFLOAT_SPECIAL.items()}
_FLOAT_BY_SPECIAL = {v: k for k, v in _FLOAT_SPECIAL.items()}


@dataclass(frozen=True, slots=True)
class MedFloat:
    """A decoded SFLOAT/FLOAT: a number (mantissa x 10^exponent) or a special value."""

    mantissa: int
    exponent: int
    special: Special | None = None

    @property
    def is_number(self) -> bool:
        """True when this is an ordinary finite number."""
        return self.special is None

    @property
    def value(self) -> float | None:
        """The number, or None for a special value.

        Negative exponents divide (189 / 10 == 18.9) so that the float is the one nearest
        to the decimal the device meant, not 189 * 0.1 == 18.900000000000002.
        """
        if self.special is not None:
            return None
        if self.exponent >= 0:
            return float(self.mantissa * _pow10(self.exponent))
        return self.mantissa / _pow10(-self.exponent)

    @property
    def data_absent(self) -> str | None:
        """FHIR data-absent-reason for a special value, None for a number."""
        return None if self.special is None else self.special.data_absent

    def as_field(self) -> float | str:
        """The value as it goes in ``Decoded.fields``: a float, or the special value's name."""
        value = self.value
        if value is None:
            return self.special.value if self.special is not None else "NaN"
        return value


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def sfloat_from_raw(raw: int) -> MedFloat:
    """Decode a 16-bit SFLOAT given as an unsigned integer (GSS "medfloat16")."""
    if not 0 <= raw <= 0xFFFF:
        raise DecodeError(f"SFLOAT raw value {raw:#x} does not fit in 16 bits")
    mantissa = raw & 0x0FFF
    if mantissa in _SFLOAT_SPECIAL and raw >> 12 == 0:
        return MedFloat(0, 0, _SFLOAT_SPECIAL[mantissa])
    return MedFloat(_signed(mantissa, 12), _signed(raw >> 12, 4))


def float_from_raw(raw: int) -> MedFloat:
    """Decode a 32-bit FLOAT given as an unsigned integer (GSS "medfloat32")."""
    if not 0 <= raw <= 0xFFFFFFFF:
        raise DecodeError(f"FLOAT raw value {raw:#x} does not fit in 32 bits")
    mantissa = raw & 0x00FFFFFF
    if mantissa in _FLOAT_SPECIAL and raw >> 24 == 0:
        return MedFloat(0, 0, _FLOAT_SPECIAL[mantissa])
    return MedFloat(_signed(mantissa, 24), _signed(raw >> 24, 8))


def decode_sfloat(data: bytes, offset: int = 0) -> MedFloat:
    """Decode the little-endian SFLOAT at ``offset`` of ``data`` (GSS "medfloat16")."""
    if len(data) < offset + 2:
        raise DecodeError(f"SFLOAT needs 2 bytes at offset {offset}, payload has {len(data)}")
    return sfloat_from_raw(int.from_bytes(data[offset : offset + 2], "little"))


def decode_float(data: bytes, offset: int = 0) -> MedFloat:
    """Decode the little-endian FLOAT at ``offset`` of ``data`` (GSS "medfloat32")."""
    if len(data) < offset + 4:
        raise DecodeError(f"FLOAT needs 4 bytes at offset {offset}, payload has {len(data)}")
    return float_from_raw(int.from_bytes(data[offset : offset + 4], "little"))


def _pow10(n: int) -> int:
    result: int = 10**n
    return result


def _encode(
    mantissa: int, exponent: int, mbits: int, ebits: int, specials: Mapping[int, Special]
) -> int:
    mmin, mmax = -(1 << (mbits - 1)), (1 << (mbits - 1)) - 1
    emin, emax = -(1 << (ebits - 1)), (1 << (ebits - 1)) - 1
    if not mmin <= mantissa <= mmax:
        raise ValueError(f"mantissa {mantissa} outside {mmin}..{mmax}")
    if not emin <= exponent <= emax:
        raise ValueError(f"exponent {exponent} outside {emin}..{emax}")
    raw = ((exponent & ((1 << ebits) - 1)) << mbits) | (mantissa & ((1 << mbits) - 1))
    if raw in specials:
        raise ValueError(
            f"mantissa {mantissa} with exponent 0 is the special value {specials[raw].value}"
        )
    return raw


def encode_sfloat(value: MedFloat | Special) -> bytes:
    """Encode an SFLOAT (little-endian, 2 bytes); the inverse of :func:`decode_sfloat`.

    Raises ValueError when the mantissa or exponent does not fit, or when they spell a
    special value (a caller's mistake, not device input).
    """
    if isinstance(value, Special):
        return _SFLOAT_BY_SPECIAL[value].to_bytes(2, "little")
    if value.special is not None:
        return _SFLOAT_BY_SPECIAL[value.special].to_bytes(2, "little")
    raw = _encode(value.mantissa, value.exponent, 12, 4, _SFLOAT_SPECIAL)
    return raw.to_bytes(2, "little")


def encode_float(value: MedFloat | Special) -> bytes:
    """Encode a FLOAT (little-endian, 4 bytes); the inverse of :func:`decode_float`."""
    if isinstance(value, Special):
        return _FLOAT_BY_SPECIAL[value].to_bytes(4, "little")
    if value.special is not None:
        return _FLOAT_BY_SPECIAL[value.special].to_bytes(4, "little")
    raw = _encode(value.mantissa, value.exponent, 24, 8, _FLOAT_SPECIAL)
    return raw.to_bytes(4, "little")
