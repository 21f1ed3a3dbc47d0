"""Hypothesis properties of the decoders: arbitrary bytes never escape as anything but
DecodeError, and whatever decodes maps onto a valid FHIR Observation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.observation import Observation
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.decoders import (
    DECODERS,
    CurrentTime,
    DateTime,
    DeviceContext,
    OpCode,
    Operator,
    RacpRequest,
    RacpResponse,
    decode_characteristic,
    decode_current_time,
    decode_date_time,
    decode_float,
    decode_racp_request,
    decode_racp_response,
    decode_sfloat,
    e2e_crc,
    encode_current_time_value,
    encode_date_time,
    encode_float,
    normalize_uuid16,
)
from gateway.errors import DecodeError
from tests.shared import SHARED
from wardwatch.fhir import observation_from_reading

VECTORS = SHARED / "vectors" / "ble-gatt.json"
RECEIVED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SESSION_START = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
CONTEXTS = (
    DeviceContext(),
    DeviceContext(cgm_session_start=SESSION_START),
    DeviceContext(cgm_session_start=SESSION_START, cgm_e2e_crc=True),
)


def _seeds() -> dict[str, list[bytes]]:
    """Valid vector payloads per characteristic: mutating them reaches deep decode paths
    (a valid Date Time, say) that uniformly random bytes almost never do."""
    seeds: dict[str, list[bytes]] = {}
    if not VECTORS.is_file():
        return seeds
    for entry in json.loads(VECTORS.read_text(encoding="utf-8")):
        if entry["characteristic"] in ("SFLOAT", "FLOAT") or not entry["hex"]:
            continue
        key = normalize_uuid16(entry["characteristic"])
        seeds.setdefault(key, []).append(bytes.fromhex(entry["hex"]))
    # Characteristics the vectors do not cover, or share a layout with one they do.
    seeds.setdefault("2A1E", []).extend(seeds.get("2A1C", []))
    seeds.setdefault("2AAA", []).append(bytes.fromhex("e80701010a00000404"))
    seeds.setdefault("2A5E", []).append(bytes.fromhex("1f61004000e40705150a1e2d00800000000a00"))
    return seeds


SEEDS = _seeds()
FIELD_KEYS: dict[str, set[str]] = {}


def _mutate(seed: bytes, edits: list[tuple[int, int]], cut: int, tail: bytes) -> bytes:
    out = bytearray(seed)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out[:cut] + tail)[:64]


def payloads(uuid: str) -> st.SearchStrategy[bytes]:
    """Random bytes 0..64 long, or a vector payload with a few bytes changed."""
    random = st.binary(max_size=64)
    seeds = SEEDS.get(uuid)
    if not seeds:
        return random
    # Each mutation is often left out, so that small, near-valid changes are common.
    no_edits: list[tuple[int, int]] = []
    edit = st.tuples(st.integers(0, 63), st.integers(0, 255))
    edits = st.just(no_edits) | st.lists(edit, max_size=3)
    cut = st.just(64) | st.integers(0, 64)
    tail = st.just(b"") | st.binary(max_size=8)
    return random | st.builds(_mutate, st.sampled_from(seeds), edits, cut, tail)


@pytest.mark.parametrize("uuid", sorted(DECODERS))
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_only_decode_error_escapes_and_readings_are_valid_fhir(
    uuid: str, data: st.DataObject
) -> None:
    payload = data.draw(payloads(uuid), label="payload")
    device = data.draw(st.sampled_from(CONTEXTS), label="device")
    try:
        decoded = decode_characteristic(uuid, payload, received_at=RECEIVED, device=device)
    except DecodeError as exc:
        error: str | None = str(exc)
    else:
        error = None
    if error is not None:
        assert error.startswith(f"{uuid}: "), error
        return
    assert decoded.characteristic == uuid
    json.dumps(dict(decoded.fields), allow_nan=False)
    # Field names are a contract: every flag combination reports the same keys.
    assert set(decoded.fields) == FIELD_KEYS.setdefault(uuid, set(decoded.fields))
    for reading in decoded.readings:
        document = observation_from_reading(reading, patient="p", device="d")
        Observation.model_validate(document)


@given(st.integers(0, 0xFFFFFFFF))
def test_float_round_trip(raw: int) -> None:
    data = raw.to_bytes(4, "little")
    assert encode_float(decode_float(data)) == data


@given(st.integers(0, 0xFFFF))
def test_sfloat_value_is_mantissa_times_power_of_ten(raw: int) -> None:
    number = decode_sfloat(raw.to_bytes(2, "little"))
    if number.value is not None:
        assert number.value == pytest.approx(number.mantissa * 10.0**number.exponent)


date_times = st.builds(
    DateTime,
    st.none() | st.integers(1582, 9999),
    st.none() | st.integers(1, 12),
    st.none() | st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)


@given(date_times)
def test_date_time_round_trip(stamp: DateTime) -> None:
    assert decode_date_time(encode_date_time(stamp)) == stamp


@given(date_times, st.none() | st.integers(1, 7), st.integers(0, 255), st.integers(0, 15))
def test_current_time_round_trip(
    stamp: DateTime, day: int | None, fractions: int, reason: int
) -> None:
    value = CurrentTime(stamp, day, fractions, reason)
    assert decode_current_time(encode_current_time_value(value)) == value


@given(
    st.sampled_from([op for op in OpCode if op not in (5, 6)]),
    st.sampled_from(list(Operator)),
    st.binary(max_size=6),
)
def test_racp_request_round_trip(op: OpCode, operator: Operator, operand: bytes) -> None:
    request = RacpRequest(op, operator, operand)
    assert decode_racp_request(request.encode()) == request


@given(st.integers(0, 0xFFFF) | st.tuples(st.integers(1, 4), st.integers(1, 255)))
def test_racp_response_round_trip(value: int | tuple[int, int]) -> None:
    if isinstance(value, int):
        response = RacpResponse(OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, number_of_records=value)
    else:
        response = RacpResponse(
            OpCode.RESPONSE_CODE, request_op_code=value[0], response_code=value[1]
        )
    assert decode_racp_response(response.encode()) == response


def _cgm_record(glucose: int, offset: int, crc: bool) -> bytes:
    body = bytes((0,)) + glucose.to_bytes(2, "little") + offset.to_bytes(2, "little")
    size = 1 + len(body) + (2 if crc else 0)
    record = bytes((size,)) + body
    return record + e2e_crc(record).to_bytes(2, "little") if crc else record


@given(
    st.lists(st.tuples(st.integers(1, 0x3FF), st.integers(0, 0xFFFF)), min_size=1, max_size=5),
    st.booleans(),
)
def test_cgm_records_split_by_size(records: list[tuple[int, int]], crc: bool) -> None:
    payload = b"".join(_cgm_record(g, o, crc) for g, o in records)
    device = DeviceContext(cgm_session_start=SESSION_START, cgm_e2e_crc=crc)
    decoded = decode_characteristic("2AA7", payload, received_at=RECEIVED, device=device)
    assert [(r.value, r.at) for r in decoded.readings] == [
        (float(g), SESSION_START + timedelta(minutes=o)) for g, o in records
    ]
