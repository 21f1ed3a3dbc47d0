"""Pure, I/O-free decoders for the Bluetooth SIG health characteristics.

Each decoder turns one characteristic value into a :class:`Decoded`: readings in the shared
vocabulary (:mod:`wardwatch.reading`) plus the characteristic's own fields. Bad bytes raise
:class:`gateway.errors.DecodeError` naming what is wrong; no other exception escapes.

Public API:

- :func:`decode_characteristic` (the registry entry point), :func:`normalize_uuid16`,
  :data:`DECODERS`, :class:`Decoded`, :class:`DeviceContext`;
- IEEE 11073 numbers: :class:`MedFloat`, :class:`Special`, :func:`decode_sfloat`,
  :func:`decode_float`, :func:`encode_sfloat`, :func:`encode_float`;
- Bluetooth time: :class:`DateTime`, :func:`decode_date_time`, :func:`encode_date_time`,
  :class:`CurrentTime`, :func:`decode_current_time`, :func:`encode_current_time`;
- Record Access Control Point requests and responses (:mod:`gateway.decoders.racp`);
- multi-part helpers: :func:`apply_glucose_context`, :func:`combine_body_composition`,
  :func:`session_start_utc` (CGM session start for :class:`DeviceContext`).
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
from gateway.decoders.body_composition import combine_body_composition
from gateway.decoders.cgm import e2e_crc, session_start_utc
from gateway.decoders.current_time import (
    CurrentTime,
    decode_current_time,
    encode_current_time,
    encode_current_time_value,
)
from gateway.decoders.glucose import apply_glucose_context
from gateway.decoders.racp import (
    OpCode,
    Operator,
    RacpRequest,
    RacpResponse,
    ResponseCode,
    abort_operation,
    decode_racp_request,
    decode_racp_response,
    report_all_records,
    report_number_of_records,
    report_records_from,
)

__all__ = [
    "DECODERS",
    "NO_CONTEXT",
    "CurrentTime",
    "DateTime",
    "Decoded",
    "Decoder",
    "DeviceContext",
    "MedFloat",
    "OpCode",
    "Operator",
    "RacpRequest",
    "RacpResponse",
    "ResponseCode",
    "Special",
    "abort_operation",
    "apply_glucose_context",
    "combine_body_composition",
    "decode_characteristic",
    "decode_current_time",
    "decode_date_time",
    "decode_float",
    "decode_racp_request",
    "decode_racp_response",
    "decode_sfloat",
    "e2e_crc",
    "encode_current_time",
    "encode_current_time_value",
    "encode_date_time",
    "encode_float",
    "encode_sfloat",
    "float_from_raw",
    "normalize_uuid16",
    "report_all_records",
    "report_number_of_records",
    "report_records_from",
    "session_start_utc",
    "sfloat_from_raw",
]
