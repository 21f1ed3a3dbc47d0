"""Health Thermometer Service: Temperature Measurement (0x2A1C), Intermediate Temperature
(0x2A1E).

Layout from the Health Thermometer Service specification (HTS 1.0) and
GSS "Temperature Measurement": Flags uint8 (bit 0 Fahrenheit, bit 1 Time Stamp
present, bit 2 Temperature Type present), Temperature Measurement Value FLOAT, Time Stamp,
Temperature Type uint8.
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
from wardwatch.reading import Reading

#: GSS Temperature Type
TEMPERATURE_TYPES = {
    1: "armpit",
    2: "body (general)",
    3: "ear (usually earlobe)",
    4: "finger",
    5: "gastro-intestinal tract",
    6: "mouth",
    7: "rectum",
    8: "toe",
    9: "tympanum (ear drum)",
}


def _decode(data: bytes, received_at: datetime, characteristic: str) -> Decoded:
    flags = data[0] if data else 0
    layout = [("Flags", 1, False), ("Temperature Measurement Value", 4, False)]
    if flags & 0x02:
        layout.append(("Time Stamp", DATE_TIME_SIZE, True))
    if flags & 0x04:
        layout.append(("Temperature Type", 1, True))
    check_layout(data, layout, flags)
    r = Reader(data, 1)
    value = r.float32("Temperature Measurement Value")
    stamp = r.date_time("Time Stamp") if flags & 0x02 else None
    site = r.uint(1, "Temperature Type") if flags & 0x04 else None
    unit = "[degF]" if flags & 0x01 else "Cel"
    site_name = None if site is None else TEMPERATURE_TYPES.get(site, f"reserved ({site})")
    fields: dict[str, object] = {
        "flags": flags,
        "unit": unit,
        "temperature": value.as_field(),
        "timestamp": None if stamp is None else stamp.as_field(),
        "temperature_type": site,
        "temperature_type_name": site_name,
    }
    if characteristic != "2A1C":
        return Decoded(characteristic, (), frozen(fields))
    at, notes = measurement_time(stamp, received_at)
    if site_name is not None:
        notes += (("body_site", site_name),)
    reading = Reading(
        kind="body_temperature",
        at=at,
        value=value.value,
        unit=None if value.special is not None else unit,
        data_absent=value.data_absent,
        extra=notes,
    )
    return Decoded(characteristic, (reading,), frozen(fields))


def decode_temperature_measurement(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Temperature Measurement 0x2A1C (HTS 1.0; GSS "Temperature Measurement").

    Yields one ``body_temperature`` reading in Cel or [degF] as sent (a FLOAT special
    value becomes its data-absent reason), at the Time Stamp taken as UTC or
    ``received_at``, with the Temperature Type as the body site.
    """
    del device
    return _decode(data, received_at, "2A1C")


def decode_intermediate_temperature(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Intermediate Temperature 0x2A1E (HTS 1.0; GSS "Intermediate Temperature").

    Same layout as 0x2A1C. Intermediate values show a measurement in progress; they yield
    no readings.
    """
    del device
    return _decode(data, received_at, "2A1E")
