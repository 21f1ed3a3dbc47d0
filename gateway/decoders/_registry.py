"""The registry: characteristic UUID -> decoder, and the one entry point."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from gateway.decoders import (
    blood_pressure,
    body_composition,
    cgm,
    current_time,
    date_time,
    glucose,
    heart_rate,
    plx,
    racp,
    thermometer,
    weight,
)
from gateway.decoders._base import NO_CONTEXT, Decoded, Decoder, DeviceContext
from gateway.errors import DecodeError

_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"
_UUID16 = re.compile(r"(?:0x)?([0-9a-f]{1,4})")
_UUID128 = re.compile(r"0000([0-9a-f]{4})" + re.escape(_BASE_UUID_TAIL))

#: characteristic (upper-case UUID16 hex, "2A35") -> decoder
DECODERS: Mapping[str, Decoder] = MappingProxyType(
    {
        "2A08": date_time.decode_date_time_characteristic,
        "2A18": glucose.decode_glucose_measurement,
        "2A1C": thermometer.decode_temperature_measurement,
        "2A1E": thermometer.decode_intermediate_temperature,
        "2A2B": current_time.decode_current_time_characteristic,
        "2A34": glucose.decode_glucose_measurement_context,
        "2A35": blood_pressure.decode_blood_pressure_measurement,
        "2A36": blood_pressure.decode_intermediate_cuff_pressure,
        "2A37": heart_rate.decode_heart_rate_measurement,
        "2A51": glucose.decode_glucose_feature,
        "2A52": racp.decode_racp,
        "2A5E": plx.decode_plx_spot_check,
        "2A5F": plx.decode_plx_continuous,
        "2A9C": body_composition.decode_body_composition_measurement,
        "2A9D": weight.decode_weight_measurement,
        "2A9E": weight.decode_weight_scale_feature,
        "2AA7": cgm.decode_cgm_measurement,
        "2AA8": cgm.decode_cgm_feature,
        "2AAA": cgm.decode_cgm_session_start_time,
    }
)


def normalize_uuid16(uuid: str | int) -> str:
    """The 16-bit UUID as four upper-case hex digits ("2A35").

    Accepts 0x2A35, "2A35", "0x2a35" and the Bluetooth Base UUID form
    "00002a35-0000-1000-8000-00805f9b34fb" (Core spec Vol 3 Part B 2.5.1). Anything else
    raises DecodeError.
    """
    if isinstance(uuid, bool) or not isinstance(uuid, int | str):
        raise DecodeError(f"characteristic UUID {uuid!r} is neither an int nor a string")
    if isinstance(uuid, int):
        if not 0 <= uuid <= 0xFFFF:
            raise DecodeError(f"characteristic UUID {uuid:#x} is not a 16-bit UUID")
        return f"{uuid:04X}"
    text = uuid.strip().lower()
    match = _UUID16.fullmatch(text) or _UUID128.fullmatch(text)
    if match is None:
        raise DecodeError(f"characteristic UUID {uuid!r} is not a Bluetooth SIG 16-bit UUID")
    return f"{int(match.group(1), 16):04X}"


def decode_characteristic(
    uuid: str | int,
    data: bytes,
    *,
    received_at: datetime,
    device: DeviceContext = NO_CONTEXT,
) -> Decoded:
    """Decode one value of characteristic ``uuid``; DecodeError names what is wrong.

    ``received_at`` (time-zone aware) stands in for the effective time of readings whose
    payload carries no usable time stamp. ``device`` carries what the gateway learned from
    the device earlier (CGM session start, E2E-CRC support).
    """
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be time-zone aware")
    key = normalize_uuid16(uuid)
    decoder = DECODERS.get(key)
    if decoder is None:
        raise DecodeError(f"no decoder for characteristic 0x{key}", characteristic=key)
    try:
        return decoder(bytes(data), received_at, device)
    except DecodeError as exc:
        if exc.characteristic is not None:
            raise
        raise DecodeError(str(exc), characteristic=key) from exc
