"""Continuous Glucose Monitoring Service: CGM Measurement (0x2AA7), CGM Feature (0x2AA8),
CGM Session Start Time (0x2AAA).

Layouts from the CGM Service specification (CGMS 1.0.1) and the GSS ("CGM Feature",
"CGM Measurement", "CGM Session Start Time"). A CGM
Measurement notification holds one or more records, each starting with its own Size.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.decoders._base import (
    Decoded,
    DeviceContext,
    Reader,
    bit_names,
    check_layout,
    frozen,
    set_bits,
)
from gateway.decoders._time import DATE_TIME_SIZE
from gateway.decoders.glucose import SAMPLE_TYPES
from gateway.errors import DecodeError
from wardwatch.reading import Reading

#: CGMS Sensor Status Annunciation, one table per octet (bit within the octet)
STATUS_OCTET = {
    0: "session_stopped",
    1: "device_battery_low",
    2: "sensor_type_incorrect",
    3: "sensor_malfunction",
    4: "device_specific_alert",
    5: "general_device_fault",
}
CAL_TEMP_OCTET = {
    0: "time_synchronization_required",
    1: "calibration_not_allowed",
    2: "calibration_recommended",
    3: "calibration_required",
    4: "sensor_temperature_too_high",
    5: "sensor_temperature_too_low",
    6: "calibration_pending",
}
WARNING_OCTET = {
    0: "result_lower_than_patient_low_level",
    1: "result_higher_than_patient_high_level",
    2: "result_lower_than_hypo_level",
    3: "result_higher_than_hyper_level",
    4: "rate_of_decrease_exceeded",
    5: "rate_of_increase_exceeded",
    6: "result_lower_than_device_can_process",
    7: "result_higher_than_device_can_process",
}
# Warning bit -> interpretation: hypo/hyper levels are the critical ones.
_WARNING_INTERPRETATION = {0: "L", 1: "H", 2: "LL", 3: "HH", 6: "L", 7: "H"}

#: CGMS CGM Feature bits
FEATURE_BITS = {
    0: "calibration",
    1: "patient_high_low_alerts",
    2: "hypo_alerts",
    3: "hyper_alerts",
    4: "rate_alerts",
    5: "device_specific_alert",
    6: "sensor_malfunction_detection",
    7: "sensor_temperature_high_low_detection",
    8: "sensor_result_high_low_detection",
    9: "low_battery_detection",
    10: "sensor_type_error_detection",
    11: "general_device_fault",
    12: "e2e_crc",
    13: "multiple_bond",
    14: "multiple_sessions",
    15: "trend_information",
    16: "quality",
}
SAMPLE_LOCATIONS = {
    1: "finger",
    2: "alternate site test",
    3: "earlobe",
    4: "control solution",
    5: "subcutaneous tissue",
    15: "not available",
}

# Flags bit 5/6/7 announce the Warning / Cal-Temp / Status octet; on the wire the octets
# follow the 24-bit field's byte order: Status (bits 0-7), Cal/Temp (8-15), Warning (16-23).
_OCTETS = (
    (0x80, "status_octet", STATUS_OCTET),
    (0x40, "cal_temp_octet", CAL_TEMP_OCTET),
    (0x20, "warning_octet", WARNING_OCTET),
)
_MIN_RECORD = 6


def e2e_crc(data: bytes) -> int:
    """The CGMS E2E-CRC (CGMS 1.0.1): CRC-CCITT, polynomial x^16+x^12+x^5+1,
    seed 0xFFFF, processed LSB first (reflected), no final XOR ("CRC-16/MCRF4XX")."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def _record(rec: bytes, n: int, start: datetime, crc: bool) -> tuple[dict[str, object], Reading]:
    size, flags = rec[0], rec[1]
    octets = [(name, table) for bit, name, table in _OCTETS if flags & bit]
    needed = _MIN_RECORD + len(octets) + 2 * bool(flags & 0x01) + 2 * bool(flags & 0x02)
    needed += 2 if crc else 0
    if size < needed:
        with_crc = " with the E2E-CRC" if crc else ""
        raise DecodeError(
            f"record {n}: flags 0x{flags:02X} announce {needed} bytes{with_crc} but Size is {size}"
        )
    fields: dict[str, object] = {"size": size, "flags": flags}
    if crc:
        carried = int.from_bytes(rec[size - 2 : size], "little")
        computed = e2e_crc(rec[: size - 2])
        if carried != computed:
            raise DecodeError(
                f"record {n}: E2E-CRC mismatch, record carries {carried:#06x}, "
                f"computed {computed:#06x}"
            )
    r = Reader(rec, 2)
    glucose = r.sfloat("CGM Glucose Concentration")
    offset = r.uint(2, "Time Offset")
    fields["glucose_mg_dl"] = glucose.as_field()
    fields["time_offset_minutes"] = offset
    words: list[str] = []
    interpretation: list[str] = []
    annunciation: dict[str, bool] = {}
    for _, name, _table in _OCTETS:
        fields[name] = None
    for name, table in octets:
        octet = r.uint(1, name)
        fields[name] = octet
        annunciation.update(bit_names(octet, table))
        words += [w.replace("_", " ") for w in set_bits(octet, table)]
        if table is WARNING_OCTET:
            for bit, code in _WARNING_INTERPRETATION.items():
                if octet >> bit & 1 and code not in interpretation:
                    interpretation.append(code)
    fields["sensor_status"] = annunciation or None
    trend = r.sfloat("CGM Trend Information") if flags & 0x01 else None
    quality = r.sfloat("CGM Quality") if flags & 0x02 else None
    fields["trend_mg_dl_per_min"] = None if trend is None else trend.as_field()
    fields["quality_percent"] = None if quality is None else quality.as_field()
    fields["e2e_crc"] = int.from_bytes(rec[size - 2 : size], "little") if crc else None
    fields["crc_ok"] = True if crc else None
    notes: tuple[tuple[str, str], ...] = ()
    if trend is not None:
        notes += (("trend", f"{trend.as_field()} mg/dL/min"),)
    if quality is not None:
        notes += (("quality", f"{quality.as_field()} %"),)
    reading = Reading(
        kind="cgm_glucose",
        at=start + timedelta(minutes=offset),
        value=glucose.value,
        unit=None if glucose.special is not None else "mg/dL",
        data_absent=glucose.data_absent,
        interpretation=tuple(interpretation),
        device_status=tuple(words),
        sequence=offset,
        extra=notes,
    )
    return fields, reading


def decode_cgm_measurement(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode CGM Measurement 0x2AA7 (CGMS 1.0.1; GSS "CGM Measurement").

    Each record yields one ``cgm_glucose`` reading (mg/dL) at the session start time
    (``device.cgm_session_start``, required) plus the record's Time Offset in minutes.
    Sensor Status Annunciation bits become device-status words and the warning octet's
    level bits interpretations (patient low/high "L"/"H", hypo/hyper "LL"/"HH"). When
    ``device.cgm_e2e_crc`` is set, every record must end in a matching E2E-CRC.
    ``fields["records"]`` lists each record's fields.
    """
    del received_at
    if not data:
        raise DecodeError("payload is empty; a CGM Measurement record needs at least 6 bytes")
    ctx = device or DeviceContext()
    start = ctx.cgm_session_start
    if start is None or start.utcoffset() is None:
        raise DecodeError(
            "CGM Measurement times are minutes since the session start: pass "
            "DeviceContext(cgm_session_start=...) read from CGM Session Start Time (0x2AAA)"
        )
    records: list[dict[str, object]] = []
    readings: list[Reading] = []
    pos = 0
    while pos < len(data):
        n = len(records) + 1
        size = data[pos]
        if size < _MIN_RECORD:
            raise DecodeError(f"record {n} declares Size {size}; a record needs at least 6 bytes")
        if pos + size > len(data):
            raise DecodeError(
                f"record {n} declares Size {size} but only {len(data) - pos} bytes remain"
            )
        fields, reading = _record(data[pos : pos + size], n, start, ctx.cgm_e2e_crc)
        records.append(fields)
        readings.append(reading)
        pos += size
    out: dict[str, object] = {"records": records, "e2e_crc_checked": ctx.cgm_e2e_crc}
    return Decoded("2AA7", tuple(readings), frozen(out))


def decode_cgm_feature(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode CGM Feature 0x2AA8 (CGMS 1.0.1; GSS "CGM Feature").

    Feature bits (uint24), Type and Sample Location nibbles, E2E-CRC. When the E2E-CRC
    feature bit is set the CRC must match the first four bytes; otherwise it must be 0xFFFF.
    """
    del received_at, device
    check_layout(
        data,
        [("CGM Feature", 3, False), ("Type-Sample Location", 1, False), ("E2E-CRC", 2, False)],
        0,
    )
    raw = int.from_bytes(data[:3], "little")
    crc_field = int.from_bytes(data[4:6], "little")
    supported = bool(raw & 1 << 12)
    if supported and crc_field != e2e_crc(data[:4]):
        raise DecodeError(
            f"E2E-CRC mismatch: CRC field {crc_field:#06x}, computed {e2e_crc(data[:4]):#06x}"
        )
    if not supported and crc_field != 0xFFFF:
        raise DecodeError(
            f"E2E-CRC is not supported, so the CRC field must be 0xFFFF, got {crc_field:#06x}"
        )
    sample_type, location = data[3] & 0x0F, data[3] >> 4
    fields: dict[str, object] = {"features_raw": raw}
    fields.update(bit_names(raw, FEATURE_BITS))
    fields["type"] = sample_type
    fields["type_name"] = SAMPLE_TYPES.get(sample_type, f"reserved ({sample_type})")
    fields["sample_location"] = location
    fields["sample_location_name"] = SAMPLE_LOCATIONS.get(location, f"reserved ({location})")
    fields["crc_field"] = crc_field
    fields["crc_ok"] = True if supported else None
    return Decoded("2AA8", (), frozen(fields))


_DST_MINUTES = {0: 0, 2: 30, 4: 60, 8: 120}


def session_start_utc(data: bytes, *, e2e: bool = False) -> datetime:
    """The UTC start of a CGM session from CGM Session Start Time (CGMS).

    Date Time in the sensor's local time, Time Zone sint8 in 15-minute steps (-128 =
    unknown, taken as UTC), DST Offset uint8 (0, 2, 4, 8 = +0, 0.5, 1, 2 h; 255 unknown,
    taken as none), then the E2E-CRC when the CGM Feature announces it.
    """
    layout = [("Session Start Time", DATE_TIME_SIZE, False), ("Time Zone", 1, False)]
    layout.append(("DST-Offset", 1, False))
    if e2e:
        layout.append(("E2E-CRC", 2, False))
    check_layout(data, layout, 0)
    if e2e:
        carried, computed = int.from_bytes(data[9:11], "little"), e2e_crc(data[:9])
        if carried != computed:
            raise DecodeError(f"E2E-CRC mismatch: carries {carried:#06x}, computed {computed:#06x}")
    r = Reader(data)
    stamp = r.date_time("Session Start Time")
    zone, dst = r.sint(1, "Time Zone"), r.uint(1, "DST-Offset")
    local = stamp.to_datetime(UTC)
    if local is None:
        raise DecodeError("Session Start Time has an unknown date")
    if zone != -128 and not -48 <= zone <= 56:
        raise DecodeError(f"Time Zone {zone} is outside -48..56 (15-minute steps)")
    if dst not in _DST_MINUTES and dst != 255:
        raise DecodeError(f"DST-Offset {dst} is not 0, 2, 4, 8 or 255")
    shift = (0 if zone == -128 else zone * 15) + _DST_MINUTES.get(dst, 0)
    return local - timedelta(minutes=shift)


def decode_cgm_session_start_time(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode CGM Session Start Time 0x2AAA (CGMS 1.0.1; GSS "CGM Session Start Time").

    Fields: start (the device's Date Time), time_zone_minutes, dst_offset_minutes and
    start_utc (ISO 8601), which the gateway passes on as ``DeviceContext.cgm_session_start``.
    """
    del received_at
    ctx = device or DeviceContext()
    start = session_start_utc(data, e2e=ctx.cgm_e2e_crc)
    zone, dst = int.from_bytes(data[7:8], "little", signed=True), data[8]
    fields: dict[str, object] = {
        "start": Reader(data).date_time("Session Start Time").as_field(),
        "time_zone_minutes": None if zone == -128 else zone * 15,
        "dst_offset_minutes": _DST_MINUTES.get(dst),
        "start_utc": start.isoformat(),
    }
    return Decoded("2AAA", (), frozen(fields))
