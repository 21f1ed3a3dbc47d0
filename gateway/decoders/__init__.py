"""Pure, I/O-free decoders for the Bluetooth SIG health characteristics.

Each decoder turns one characteristic value into a :class:`Decoded`: readings in the shared
vocabulary (:mod:`wardwatch.reading`) plus the characteristic's own fields. Bad bytes raise
:class:`gateway.errors.DecodeError` naming what is wrong; no other exception escapes.

Public API: :func:`decode_characteristic`, :func:`normalize_uuid16`, :data:`DECODERS`,
:class:`Decoded`, :class:`DeviceContext`; the IEEE 11073 number types (:class:`MedFloat`,
:class:`Special`, :func:`decode_sfloat`, :func:`decode_float` and their encoders); the
Bluetooth time types (:class:`DateTime`, :func:`decode_date_time`, :func:`encode_date_time`).
"""

from __future__ import annotations

from gateway.decoders._base import NO_CONTEXT, Decoded, Decoder, DeviceContext
from gateway.decoders._registry import DECODERS, decode_characteristic, normalize_uuid16
from gateway.decoders._sfloat import (
    MedFloat,
    Special,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
    float_from_raw,
    sfloat_from_raw,
)
from gateway.decoders._time import DateTime, decode_date_time, encode_date_time

__all__ = [
    "DECODERS",
    "NO_CONTEXT",
    "DateTime",
    "Decoded",
    "Decoder",
    "DeviceContext",
    "MedFloat",
    "Special",
    "decode_characteristic",
    "decode_date_time",
    "decode_float",
    "decode_sfloat",
    "encode_date_time",
    "encode_float",
    "encode_sfloat",
    "float_from_raw",
    "normalize_uuid16",
    "sfloat_from_raw",
]
