"""Decoders against the shared Bluetooth test vectors, plus round trips and edge cases.

Every ``"conformance": "standard"`` entry of ``shared/vectors/ble-gatt.json`` is a case.
The vectors name fields as their source projects do; the adapters below map each source
name onto where our :class:`~gateway.decoders.Decoded` keeps it. A source name with no
adapter fails the test, so nothing in a vector is silently ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.decoders import (
    DECODERS,
    CurrentTime,
    DateTime,
    Decoded,
    DeviceContext,
    MedFloat,
    OpCode,
    Operator,
    RacpRequest,
    RacpResponse,
    ResponseCode,
    Special,
    abort_operation,
    apply_glucose_context,
    combine_body_composition,
    decode_characteristic,
    decode_current_time,
    decode_date_time,
    decode_float,
    decode_racp_request,
    decode_racp_response,
    decode_sfloat,
    e2e_crc,
    encode_current_time,
    encode_current_time_value,
    encode_date_time,
    encode_float,
    encode_sfloat,
    normalize_uuid16,
    report_all_records,
    report_number_of_records,
    report_records_from,
    session_start_utc,
)
from gateway.errors import DecodeError
from tests.shared import SHARED
from wardwatch.reading import Reading
from wardwatch.units import convert, normalize_unit

VECTORS = SHARED / "vectors" / "ble-gatt.json"
RECEIVED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SESSION_START = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)


def _load() -> list[tuple[int, dict[str, Any]]]:
    if not VECTORS.is_file():
        return []
    entries = json.loads(VECTORS.read_text(encoding="utf-8"))
    return [(i, e) for i, e in enumerate(entries) if e.get("conformance") == "standard"]


def _cases() -> list[Any]:
    loaded = _load()
    if not loaded:
        return [pytest.param(None, None, id="vectors-file-missing")]
    return [pytest.param(i, e, id=f"{e['characteristic']}-{i}") for i, e in loaded]


# --- adapters: source field name -> getter on our result ------------------------------------

Getter = Callable[[Decoded], object]


def _f(*path: str) -> Getter:
    def get(d: Decoded) -> object:
        value: object = d.fields
        for key in path:
            assert isinstance(value, Mapping), f"{path}: {value!r} is not a mapping"
            value = value[key]
        return value

    return get


def _status(name: str) -> Getter:
    def get(d: Decoded) -> object:
        status = d.fields["measurement_status"]
        return None if status is None else status[name]  # type: ignore[index]

    return get


_UNITS = {"mmHg": "mm[Hg]", "kPa": "kPa", "C": "Cel", "F": "[degF]", "kg": "kg", "m": "m"}

_BP_COMMON: dict[str, Getter] = {
    "unit": _f("unit"),
    "timestamp": _f("timestamp"),
    "pulse_rate_bpm": _f("pulse_rate"),
    "user_id": _f("user_id"),
    "measurement_status_raw": _f("measurement_status_raw"),
    "body_movement": _status("body_movement"),
    "cuff_too_loose": _status("cuff_fit_loose"),
    "irregular_pulse": _status("irregular_pulse"),
    "pulse_rate_range": _status("pulse_rate_range"),
    "improper_position": _status("improper_measurement_position"),
}


def _glucose_minute(d: Decoded) -> object:
    return d.readings[0].at.minute


def _celsius(d: Decoded) -> object:
    value = d.fields["temperature"]
    assert isinstance(value, float)
    return round(convert(value, str(d.fields["unit"]), "Cel"), 6)


ADAPTERS: dict[str, dict[str, Getter]] = {
    "0x2A35": {
        **_BP_COMMON,
        "systolic": _f("systolic"),
        "diastolic": _f("diastolic"),
        "mean_arterial_pressure": _f("mean_arterial_pressure"),
    },
    "0x2A36": {**_BP_COMMON, "cuff_pressure": _f("cuff_pressure")},
    "0x2A08": {k: _f(k) for k in ("year", "month", "day", "hour", "minute", "second")},
    "0x2A18": {
        "sequence_number": _f("sequence_number"),
        "base_time": _f("base_time"),
        "time_offset_minutes": _f("time_offset_minutes"),
        "concentration": _f("concentration"),
        "unit": _f("concentration_unit"),
        "type": _f("type"),
        "sample_location": _f("sample_location"),
        "sensor_status_raw": _f("sensor_status_raw"),
        "device_battery_low": _f("sensor_status", "device_battery_low"),
        "general_device_fault": _f("sensor_status", "general_device_fault"),
        "context_information_follows": _f("context_information_follows"),
        "nordic_reported_time_minute_after_offset": _glucose_minute,
    },
    "0x2A34": {
        **{
            k: _f(k)
            for k in (
                "sequence_number",
                "extended_flags",
                "carbohydrate_id",
                "carbohydrate_kg",
                "meal",
                "tester",
                "health",
                "exercise_duration_s",
                "exercise_intensity_percent",
                "medication_id",
                "medication",
                "hba1c_percent",
            )
        },
        "medication_unit": _f("medication_unit"),
    },
    "0x2A51": {
        "low_battery_detection": _f("low_battery_detection"),
        "sensor_malfunction_detection": _f("sensor_malfunction_detection"),
        "sample_size": _f("sensor_sample_size"),
        "strip_insertion_error_detection": _f("sensor_strip_insertion_error_detection"),
        "strip_type_error_detection": _f("sensor_strip_type_error_detection"),
        "result_high_low_detection": _f("sensor_result_high_low_detection"),
        "temperature_high_low_detection": _f("sensor_temperature_high_low_detection"),
        "read_interrupt_detection": _f("sensor_read_interrupt_detection"),
        "general_device_fault": _f("general_device_fault"),
        "time_fault": _f("time_fault"),
        "multiple_bond": _f("multiple_bond"),
    },
    "0x2A52": {
        k: _f(k)
        for k in ("op_code", "request_op_code", "response_code", "response", "number_of_records")
    },
    "0x2A37": {
        k: _f(k)
        for k in (
            "heart_rate_bpm",
            "sensor_contact",
            "energy_expended_kj",
            "rr_intervals_1_1024s",
        )
    },
    "0x2A1C": {
        "unit": _f("unit"),
        "temperature": _f("temperature"),
        "timestamp": _f("timestamp"),
        "temperature_type": _f("temperature_type"),
        "library_temperature_c": _celsius,
    },
    "0x2AA7": {
        "crc_present": _f("e2e_crc_checked"),
        "secured": _f("e2e_crc_checked"),
    },
    "0x2AA8": {
        "features_raw": _f("features_raw"),
        "temp_high_low_detection": _f("sensor_temperature_high_low_detection"),
        "result_high_low_detection": _f("sensor_result_high_low_detection"),
        **{
            k: _f(k)
            for k in (
                "calibration",
                "patient_high_low_alerts",
                "hypo_alerts",
                "hyper_alerts",
                "rate_alerts",
                "device_specific_alert",
                "sensor_malfunction_detection",
                "low_battery_detection",
                "sensor_type_error_detection",
                "general_device_fault",
                "e2e_crc",
                "multiple_bond",
                "multiple_sessions",
                "trend_information",
                "quality",
                "type",
                "sample_location",
                "crc_ok",
                "crc_field",
            )
        },
    },
    "0x2A9D": {
        "unit": _f("weight_unit"),
        "weight": _f("weight"),
        "timestamp": _f("timestamp"),
        "user_id": _f("user_id"),
        "bmi": _f("bmi"),
        "height": _f("height"),
        "height_unit": _f("height_unit"),
        "measurement_unsuccessful": _f("measurement_unsuccessful"),
    },
    "0x2A9E": {
        k: _f(k)
        for k in (
            "timestamp_supported",
            "multiple_users_supported",
            "bmi_supported",
            "weight_resolution_code",
            "height_resolution_code",
        )
    },
    "0x2A9C": {
        k: _f(k)
        for k in (
            "unit_system",
            "body_fat_percent",
            "user_id",
            "basal_metabolism_kj",
            "fat_free_mass",
            "soft_lean_mass",
            "body_water_mass",
            "muscle_percent",
            "muscle_mass",
        )
    },
    "0x2A5F": {"spo2_percent": _f("spo2_percent"), "pulse_rate_bpm": _f("pulse_rate_bpm")},
    "0x2A2B": {
        **{
            k: _f(k)
            for k in (
                "year",
                "month",
                "day",
                "hour",
                "minute",
                "second",
                "day_of_week",
                "fractions256",
                "manual_time_update",
                "external_reference_time_update",
                "change_of_time_zone",
            )
        },
        "adjust_reason": _f("adjust_reason_raw"),
    },
}

# Source record-field names (Nordic CGM) -> ours. Nordic calls the octet announced by flag
# bit 5 the "warning" octet but reads it first and gives it the Status-octet meanings
# (session stopped, battery low); CGMS/GSS put Status, Cal/Temp, Warning on the wire in
# that order and name them so. With all three present (the only such vector) the meanings
# agree; only the names swap.
_CGM_RECORD = {
    "warning_octet": "status_octet",
    "status_octet": "warning_octet",
    "sensor_temperature_too_high": ("sensor_status", "sensor_temperature_too_high"),
    "sensor_temperature_too_low": ("sensor_status", "sensor_temperature_too_low"),
    "calibration_recommended": ("sensor_status", "calibration_recommended"),
    "device_battery_low": ("sensor_status", "device_battery_low"),
    "session_stopped": ("sensor_status", "session_stopped"),
}

# Values spelt differently by the sources.
_VALUE_MAP: dict[tuple[str, str], Callable[[object], object]] = {
    ("0x2A35", "unit"): lambda v: _UNITS[str(v)],
    ("0x2A36", "unit"): lambda v: _UNITS[str(v)],
    ("0x2A1C", "unit"): lambda v: _UNITS[str(v)],
    ("0x2A9D", "unit"): lambda v: normalize_unit(str(v)),
    ("0x2A9D", "height_unit"): lambda v: normalize_unit(str(v)),
    ("0x2A34", "medication_unit"): lambda v: {"liter": "L", "kilogram": "kg"}[str(v)],
    # RACP response code 10 is reserved; Nordic surfaces it as a generic error.
    ("0x2A52", "response"): lambda v: "reserved (10)" if v == "unknown (reported as error)" else v,
}

# Keywords each invalid vector's DecodeError message must contain (from its reason).
INVALID_KEYWORDS: dict[int, tuple[str, ...]] = {
    1: ("0x1B", "Time Offset", "15 of 17"),
    4: ("0xFF", "5 of 17"),
    6: ("empty",),
    20: ("3 bytes", "uint16"),
    21: ("request",),
    22: ("op code 1", "not a response op code"),
    23: ("operator must be Null",),
    27: ("6 bytes", "7-byte minimum"),
    28: ("Time Stamp", "7 of 14"),
    32: ("6 bytes",),
    33: ("Time Stamp",),
    38: ("RR-Interval",),
    40: ("Temperature Type",),
    44: ("E2E-CRC mismatch", "0x6f58", "0x6f59"),
    45: ("Size 6", "5 bytes"),
    46: ("0xE3", "13 bytes", "Size is 7"),
    49: ("E2E-CRC mismatch",),
    50: ("4 bytes", "E2E-CRC"),
    51: ("0xFFFF",),
    54: ("empty",),
    55: ("6 bytes",),
    76: ("9 bytes", "10-byte minimum"),
    80: ("3 bytes",),
    81: ("empty",),
    88: ("2 bytes", "3-byte minimum"),
    100: ("Heart Rate Measurement Value", "2 bytes"),
}


def _device_for(entry: Mapping[str, Any]) -> DeviceContext:
    """CGM vectors with an E2E-CRC need the context that CGM Feature announces it."""
    text = json.dumps(entry["expected"])
    crc = entry["characteristic"] == "0x2AA7" and ("e2e_crc" in text or "CRC" in text)
    return DeviceContext(cgm_session_start=SESSION_START, cgm_e2e_crc=crc)


def _number(expected: object) -> object:
    return {"RFU": "reserved"}.get(expected, expected) if isinstance(expected, str) else expected


def _same(actual: object, expected: object, where: str) -> None:
    if isinstance(expected, float) and isinstance(actual, int | float):
        assert actual == pytest.approx(expected, abs=1e-9), where
    else:
        assert actual == expected, where


def _check_cgm_records(decoded: Decoded, expected: list[dict[str, Any]]) -> None:
    records = decoded.fields["records"]
    assert isinstance(records, list)
    assert len(records) == len(expected)
    for n, (ours, theirs) in enumerate(zip(records, expected, strict=True)):
        for key, value in theirs.items():
            target = _CGM_RECORD.get(key, key)
            actual = ours[target] if isinstance(target, str) else ours[target[0]][target[1]]
            _same(actual, value, f"record {n} {key}")


@pytest.mark.parametrize(("index", "entry"), _cases())
def test_vector(index: int | None, entry: dict[str, Any] | None) -> None:
    if entry is None:
        pytest.fail(f"test vectors not found at {VECTORS.resolve()} (expected shared/vectors/)")
    characteristic, data = entry["characteristic"], bytes.fromhex(entry["hex"])
    expected = entry["expected"]
    if characteristic in ("SFLOAT", "FLOAT"):
        number = (decode_sfloat if characteristic == "SFLOAT" else decode_float)(data)
        _same(number.as_field(), _number(expected["value"]), "value")
        return
    if normalize_uuid16(characteristic) not in DECODERS:
        pytest.xfail(f"characteristic {characteristic} is out of the decoders' scope")
    device = _device_for(entry)
    if expected.get("valid") is False:
        with pytest.raises(DecodeError) as raised:
            decode_characteristic(characteristic, data, received_at=RECEIVED, device=device)
        message = str(raised.value)
        assert message.startswith(normalize_uuid16(characteristic) + ": ")
        assert index in INVALID_KEYWORDS, f"no keywords for invalid vector {index}: {message}"
        for word in INVALID_KEYWORDS[index]:
            assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
        return
    decoded = decode_characteristic(characteristic, data, received_at=RECEIVED, device=device)
    adapter = ADAPTERS[characteristic]
    for key, value in expected.items():
        if key == "valid":
            continue
        if characteristic == "0x2AA7" and key == "records":
            _check_cgm_records(decoded, value)
            continue
        assert key in adapter, f"no adapter for {characteristic} field {key!r}"
        mapping = _VALUE_MAP.get((characteristic, key))
        want = value if mapping is None else mapping(value)
        _same(adapter[key](decoded), want, key)


def test_library_scaled_glucose_vector_follows_the_specification() -> None:
    """The one non-standard vector: 0x1134 is 308e1 mol/L by GLS; the source shows 3.08."""
    data = bytes.fromhex("060400d0070102030405341134")
    decoded = decode_characteristic("2A18", data, received_at=RECEIVED)
    assert decoded.fields["concentration"] == 3080.0
    (reading,) = decoded.readings
    assert (reading.value, reading.unit) == (3_080_000.0, "mmol/L")


# --- readings made from the vectors ----------------------------------------------------------


def _decode(uuid: str, hexstr: str, device: DeviceContext | None = None) -> Decoded:
    return decode_characteristic(
        uuid, bytes.fromhex(hexstr), received_at=RECEIVED, device=device or DeviceContext()
    )


def test_blood_pressure_readings() -> None:
    d = _decode("2A35", "1f790051006a00e40705150a1e2d4800010600")
    panel, pulse = d.readings
    assert panel.kind == "blood_pressure"
    assert panel.at == datetime(2020, 5, 21, 10, 30, 45, tzinfo=UTC)
    values = [(c.kind, c.value, c.unit) for c in panel.components]
    assert values == [
        ("systolic", 121.0, "kPa"),
        ("diastolic", 81.0, "kPa"),
        ("mean_arterial_pressure", 106.0, "kPa"),
    ]
    assert panel.device_status == ("cuff fit too loose", "irregular pulse detected")
    assert ("user_id", "1") in panel.extra
    assert (pulse.kind, pulse.value, pulse.unit, pulse.mdc_code) == (
        "heart_rate",
        72.0,
        "/min",
        149546,
    )
    assert pulse.interpretation == ("A",)


def test_blood_pressure_unknown_year_falls_back_to_reception_time() -> None:
    d = _decode("2A35", "1e8a00580078000000041114293b3c00012700")
    assert all(r.at == RECEIVED for r in d.readings)
    assert ("device_time", "time stamp has an unknown date; reception time used") in d.readings[
        0
    ].extra


def test_blood_pressure_special_values_become_data_absent() -> None:
    # systolic NaN, diastolic NRes, MAP +INF, pulse -INF; status: pulse above range
    d = _decode("2A35", "14" + "ff07" + "0008" + "fe07" + "0208" + "0800")
    panel, pulse = d.readings
    assert [c.data_absent for c in panel.components] == [
        "not-a-number",
        "error",
        "positive-infinity",
    ]
    assert (pulse.value, pulse.data_absent, pulse.interpretation) == (
        None,
        "negative-infinity",
        ("H",),
    )
    assert d.fields["systolic"] == "NaN"


def test_intermediate_cuff_pressure_has_no_readings() -> None:
    d = _decode("2A36", "00d7f000000000")
    assert d.readings == ()
    assert d.fields["cuff_pressure"] == 21.5


def test_glucose_reading_in_mg_dl_at_base_time_plus_offset() -> None:
    # 90e-5 kg/L = 90 mg/dL exactly; capillary whole blood, finger
    d = _decode("2A18", "030700e307021b0b0a1efbff5ab011")
    (r,) = d.readings
    assert (r.kind, r.value, r.unit, r.sequence) == ("glucose", 90.0, "mg/dL", 7)
    assert r.at == datetime(2019, 2, 27, 11, 5, 30, tzinfo=UTC)
    assert ("sample_type", "capillary whole blood") in r.extra


def test_glucose_molar_and_control_solution() -> None:
    # 55e-4 mol/L = 5.5 mmol/L, venous plasma at earlobe
    molar = _decode("2A18", "060400d0070102030405" + "37c0" + "34")
    (r,) = molar.readings
    assert (r.value, r.unit) == (5.5, "mmol/L")
    control = _decode("2A18", "060400d00701020304055ab04a")
    assert control.readings == ()
    assert control.fields["control_solution"] is True


def test_glucose_context_is_applied_by_sequence_number() -> None:
    measurement = _decode("2A18", "1b0000e307021b0b0a1efbff5ab0110501")
    context = _decode("2A34", "06000001" + "12")
    joined = apply_glucose_context(measurement, context)
    assert ("meal", "preprandial") in joined.readings[0].extra
    assert ("tester", "health care professional") in joined.readings[0].extra
    other = _decode("2A34", "060100" + "0112")
    with pytest.raises(DecodeError, match="does not match"):
        apply_glucose_context(measurement, other)


def test_heart_rate_without_skin_contact_is_data_absent() -> None:
    d = _decode("2A37", "04ff")
    (r,) = d.readings
    assert (r.value, r.data_absent, r.device_status) == (
        None,
        "error",
        ("sensor contact not detected",),
    )
    assert d.fields["heart_rate_bpm"] == 255


def test_heart_rate_odd_rr_bytes_rejected() -> None:
    with pytest.raises(DecodeError, match="RR-Interval"):
        _decode("2A37", "1055040102")


def test_weight_imperial_resolution_and_height() -> None:
    # 15000 x 0.01 lb = 150 lb; BMI 22.1; height 700 x 0.1 in = 70 in
    d = _decode("2A9D", "09983add00bc02")
    weight, bmi, height = d.readings
    assert (weight.value, weight.unit) == (150.0, "[lb_av]")
    assert (bmi.value, bmi.unit) == (22.1, "kg/m2")
    assert (height.value, height.unit) == (70.0, "[in_i]")


def test_weight_unsuccessful_is_kept_as_data_absent() -> None:
    (r,) = _decode("2A9D", "00ffff").readings
    assert (r.kind, r.data_absent, r.device_status) == (
        "body_weight",
        "error",
        ("measurement unsuccessful",),
    )


def test_body_composition_two_packets_combine() -> None:
    # packet 1: fat 20.0 %, weight 70 kg; packet 2: fat repeated, height 1.75 m
    first = bytes.fromhex("0014c800b036")
    second = bytes.fromhex("0018c800d606")
    d = combine_body_composition(first, second, received_at=RECEIVED)
    kinds = {r.kind: r.value for r in d.readings}
    assert kinds == {"body_fat": 20.0, "body_weight": 70.0, "body_height": 1.75}
    with pytest.raises(DecodeError, match="Multiple Packet"):
        combine_body_composition(bytes.fromhex("0004c800b036"), second, received_at=RECEIVED)


def test_plx_spot_check_status_and_clock() -> None:
    # SpO2 97, PR 64, time stamp, measurement status bit 15 (invalid), clock not set
    data = "13" + "6100" + "4000" + "e40705150a1e2d" + "0080"
    spo2, pr = _decode("2A5E", data).readings
    assert spo2.at == RECEIVED
    assert (spo2.value, spo2.data_absent) == (None, "error")
    assert "invalid measurement detected" in spo2.device_status
    assert pr.mdc_code == 149530


def test_thermometer_fahrenheit_and_site() -> None:
    (r,) = _decode("2A1C", "05382700fe06").readings
    assert (r.value, r.unit) == (100.4, "[degF]")
    assert ("body_site", "mouth") in r.extra


def test_cgm_readings_need_a_session_start() -> None:
    with pytest.raises(DecodeError, match="session start"):
        decode_characteristic("2AA7", bytes.fromhex("060078001e00"), received_at=RECEIVED)
    d = _decode("2AA7", "060078001e00", DeviceContext(cgm_session_start=SESSION_START))
    (r,) = d.readings
    assert (r.kind, r.value, r.unit) == ("cgm_glucose", 120.0, "mg/dL")
    assert r.at == SESSION_START + timedelta(minutes=30)


def test_cgm_e2e_crc_is_required_when_announced() -> None:
    device = DeviceContext(cgm_session_start=SESSION_START, cgm_e2e_crc=True)
    with pytest.raises(DecodeError, match="E2E-CRC"):
        _decode("2AA7", "060078001e00", device)
    record = bytes.fromhex("080078001e00")
    signed = record + e2e_crc(record).to_bytes(2, "little")
    assert _decode("2AA7", signed.hex(), device).fields["records"][0]["crc_ok"] is True  # type: ignore[index]


def test_cgm_session_start_time_to_utc() -> None:
    # 2024-01-01 10:00 local, UTC+1 (4 x 15 min), daylight time (+1 h) -> 08:00 UTC
    data = bytes.fromhex("e80701010a0000" + "04" + "04")
    assert session_start_utc(data) == datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
    d = _decode("2AAA", data.hex())
    assert d.fields["start_utc"] == "2024-01-01T08:00:00+00:00"


# --- numbers, time, uuids -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hexstr", "value"),
    [("ff07", Special.NAN), ("0008", Special.NRES), ("fe07", Special.POSITIVE_INFINITY)],
)
def test_sfloat_specials(hexstr: str, value: Special) -> None:
    number = decode_sfloat(bytes.fromhex(hexstr))
    assert number.special is value
    assert number.value is None
    assert encode_sfloat(number) == bytes.fromhex(hexstr)


def test_sfloat_nonzero_exponent_with_special_mantissa_is_a_number() -> None:
    assert decode_sfloat(bytes.fromhex("fff7")).value == 204.7


def test_sfloat_and_float_exhaustive_small_round_trip() -> None:
    for raw in range(0x10000):
        data = raw.to_bytes(2, "little")
        assert encode_sfloat(decode_sfloat(data)) == data
    for raw in (0, 1, 0x007FFFFF, 0x00800000, 0xFE12D687, 0xFFFFFFFF, 0x80000001):
        data = raw.to_bytes(4, "little")
        assert encode_float(decode_float(data)) == data


def test_encoder_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="mantissa"):
        encode_sfloat(MedFloat(5000, 0))
    with pytest.raises(ValueError, match="special"):
        encode_sfloat(MedFloat(2047, 0))


@pytest.mark.parametrize(
    ("uuid", "expected"),
    [
        (0x2A35, "2A35"),
        ("2A35", "2A35"),
        ("0x2a35", "2A35"),
        ("00002a35-0000-1000-8000-00805f9b34fb", "2A35"),
        ("00002A35-0000-1000-8000-00805F9B34FB", "2A35"),
    ],
)
def test_normalize_uuid16(uuid: str | int, expected: str) -> None:
    assert normalize_uuid16(uuid) == expected


@pytest.mark.parametrize("uuid", ["", "2A35X", 0x12345, "00002a35-0000-1000-8000-00805f9b34fc"])
def test_normalize_uuid16_rejects(uuid: str | int) -> None:
    with pytest.raises(DecodeError, match="UUID"):
        normalize_uuid16(uuid)


def test_unknown_characteristic() -> None:
    with pytest.raises(DecodeError, match="no decoder for characteristic 0x2A19"):
        decode_characteristic(0x2A19, b"\x64", received_at=RECEIVED)


def test_naive_reception_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="time-zone aware"):
        decode_characteristic("2A37", b"\x00\x50", received_at=datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("hexstr", "word"),
    [
        ("e2070d110f3300", "month 13"),
        ("e207021e0f3300", "calendar date"),
        ("e20704111800", "7 bytes"),
        ("0a0004110f3300", "year 10"),
        ("e20704110f3c00", "not a valid time"),
    ],
)
def test_date_time_rejects(hexstr: str, word: str) -> None:
    with pytest.raises(DecodeError, match=word):
        decode_date_time(bytes.fromhex(hexstr))


def test_date_time_round_trip() -> None:
    stamp = DateTime(None, 4, 17, 20, 41, 59)
    assert decode_date_time(encode_date_time(stamp)) == stamp


# --- round trips: RACP and Current Time ------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (report_all_records(), RacpRequest(OpCode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS)),
        (
            report_records_from(258),
            RacpRequest(
                OpCode.REPORT_STORED_RECORDS,
                Operator.GREATER_THAN_OR_EQUAL_TO,
                bytes((0x01, 0x02, 0x01)),
            ),
        ),
        (
            report_number_of_records(),
            RacpRequest(OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.ALL_RECORDS),
        ),
        (abort_operation(), RacpRequest(OpCode.ABORT_OPERATION, Operator.NULL)),
    ],
)
def test_racp_request_round_trip(request_bytes: bytes, expected: RacpRequest) -> None:
    assert decode_racp_request(request_bytes) == expected
    assert expected.encode() == request_bytes


def test_racp_request_bytes() -> None:
    assert report_all_records() == b"\x01\x01"
    assert report_records_from(5) == b"\x01\x03\x01\x05\x00"
    assert report_number_of_records() == b"\x04\x01"
    assert report_number_of_records(5) == b"\x04\x03\x01\x05\x00"
    assert abort_operation() == b"\x03\x00"
    with pytest.raises(ValueError, match="uint16"):
        report_records_from(70000)


@pytest.mark.parametrize(
    "response",
    [
        RacpResponse(OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, number_of_records=258),
        RacpResponse(OpCode.RESPONSE_CODE, request_op_code=1, response_code=ResponseCode.SUCCESS),
        RacpResponse(
            OpCode.RESPONSE_CODE, request_op_code=1, response_code=ResponseCode.NO_RECORDS_FOUND
        ),
    ],
)
def test_racp_response_round_trip(response: RacpResponse) -> None:
    assert decode_racp_response(response.encode()) == response
    decoded = decode_characteristic("2A52", response.encode(), received_at=RECEIVED)
    assert decoded.fields["success"] is response.succeeded


def test_current_time_round_trip() -> None:
    at = datetime(2025, 1, 15, 14, 30, 45, 128_000, tzinfo=timezone(timedelta(hours=1)))
    data = encode_current_time(at)
    assert data.hex() == "e907010f0e1e2d032001"
    value = decode_current_time(data)
    assert value == CurrentTime(DateTime(2025, 1, 15, 14, 30, 45), 3, 32, 1)
    assert encode_current_time_value(value) == data
    back = value.to_datetime(at.tzinfo or UTC)
    assert back is not None
    assert abs(back - at) < timedelta(seconds=1 / 256)
    fields = decode_characteristic("2A2B", data, received_at=RECEIVED).fields
    assert fields["day_of_week_name"] == "wednesday"
    assert fields["manual_time_update"] is True


def test_current_time_rejects_bad_day_of_week() -> None:
    with pytest.raises(DecodeError, match="Day of Week 8"):
        decode_current_time(bytes.fromhex("e907010f0e1e2d082001"))


def test_readings_are_readings() -> None:
    for uuid, hexstr in [("2A35", "00bdf00b009ff0"), ("2A37", "0055"), ("2A5F", "00e8f384f3")]:
        assert all(isinstance(r, Reading) for r in _decode(uuid, hexstr).readings)
