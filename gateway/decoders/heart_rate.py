"""Heart Rate Measurement (0x2A37).

Layout from the Heart Rate Service specification (HRS 1.0) and GSS
"Heart Rate Measurement": Flags uint8 (bit 0 value format uint8/uint16, bits 1-2 Sensor
Contact Status, bit 3 Energy Expended present, bit 4 RR-Interval present), Heart Rate
Measurement Value, Energy Expended uint16 (kJ), then zero or more RR-Intervals uint16 in
1/1024 s.
"""

from __future__ import annotations

from datetime import datetime

from gateway.decoders._base import Decoded, DeviceContext, Reader, check_layout, frozen
from gateway.errors import DecodeError
from wardwatch.reading import Reading

_CONTACT = ("not_supported", "not_supported", "not_detected", "detected")


def decode_heart_rate_measurement(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Heart Rate Measurement 0x2A37 (HRS 1.0; GSS "Heart Rate Measurement").

    Yields one ``heart_rate`` reading (/min) at ``received_at`` (the characteristic has no
    time stamp). When the sensor supports contact detection and reports no contact, the
    value does not describe the patient: the reading carries data-absent reason "error"
    and the device status "sensor contact not detected" (the value stays in ``fields``).
    RR-intervals are kept in ``fields`` in 1/1024 s and in milliseconds.
    """
    del device
    flags = data[0] if data else 0
    wide = bool(flags & 0x01)
    layout = [("Flags", 1, False), ("Heart Rate Measurement Value", 2 if wide else 1, False)]
    if flags & 0x08:
        layout.append(("Energy Expended", 2, True))
    if flags & 0x10:
        layout.append(("RR-Interval", 2, True))
    check_layout(data, layout, flags)
    r = Reader(data, 1)
    rate = r.uint(2 if wide else 1, "Heart Rate Measurement Value")
    energy = r.uint(2, "Energy Expended") if flags & 0x08 else None
    rr: list[int] | None = None
    if flags & 0x10:
        if r.remaining % 2:
            raise DecodeError(
                f"RR-Interval values are uint16 but {r.remaining} bytes remain after offset {r.pos}"
            )
        rr = [r.uint(2, "RR-Interval") for _ in range(r.remaining // 2)]
    contact = _CONTACT[flags >> 1 & 0b11]
    fields: dict[str, object] = {
        "flags": flags,
        "heart_rate_bpm": rate,
        "value_format": "uint16" if wide else "uint8",
        "sensor_contact": contact,
        "energy_expended_kj": energy,
        "rr_intervals_1_1024s": rr,
        "rr_intervals_ms": None if rr is None else [v * 1000 / 1024 for v in rr],
    }
    if contact == "not_detected":
        status = ("sensor contact not detected",)
        reading = Reading("heart_rate", received_at, data_absent="error", device_status=status)
    else:
        reading = Reading("heart_rate", received_at, float(rate), "/min")
    return Decoded("2A37", (reading,), frozen(fields))
