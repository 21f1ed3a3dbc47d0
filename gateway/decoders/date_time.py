"""Date Time (0x2A08) as a characteristic of its own (GSS "Date Time")."""

from __future__ import annotations

from datetime import datetime

from gateway.decoders._base import Decoded, DeviceContext, frozen
from gateway.decoders._time import DATE_TIME_SIZE, decode_date_time
from gateway.errors import DecodeError


def decode_date_time_characteristic(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Date Time 0x2A08 (GSS "Date Time"): exactly 7 bytes; 0 in year/month/day = unknown.

    Fields: year, month, day (None when not known), hour, minute, second. No readings.
    """
    del received_at, device
    if len(data) != DATE_TIME_SIZE:
        what = "payload is empty" if not data else f"payload has {len(data)} bytes"
        raise DecodeError(f"{what}; Date Time is exactly {DATE_TIME_SIZE} bytes")
    return Decoded("2A08", (), frozen(decode_date_time(data).as_field()))
