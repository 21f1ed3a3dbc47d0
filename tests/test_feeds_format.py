"""The feed format: the documented examples, the schema, parsing and writing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from firmware_sim.feeds.format import (
    FeedError,
    blood_pressure_event,
    format_event,
    parse_feed,
    parse_line,
    read_feed,
    reading_event,
    write_feed,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
SIMPLEST = (
    '{"at": "2026-01-05T00:05:00Z", "patient": "p-001", "device": "cgm-001", '
    '"reading": {"kind": "glucose", "value": 93, "unit": "mg/dL"}}'
)


def _doc_examples() -> list[str]:
    text = (DOCS / "feeds.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```jsonl\n(.*?)```", text, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def _schema() -> dict[str, object]:
    doc: dict[str, object] = json.loads((DOCS / "feed.schema.json").read_text(encoding="utf-8"))
    return doc


def test_the_simplest_event_is_accepted_exactly() -> None:
    event = parse_line(SIMPLEST, line=1)
    assert event.patient == "p-001"
    assert event.device == "cgm-001"
    assert event.at == datetime(2026, 1, 5, 0, 5, tzinfo=UTC)
    assert event.reading is not None
    assert (event.reading.kind, event.reading.value, event.reading.unit) == (
        "glucose",
        93.0,
        "mg/dL",
    )
    assert json.loads(format_event(event)) == json.loads(SIMPLEST)


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(_schema())


def test_every_documented_example_validates_and_parses() -> None:
    examples = _doc_examples()
    assert SIMPLEST in examples
    assert len(examples) >= 10
    validator = jsonschema.Draft202012Validator(_schema())
    for n, line in enumerate(examples, start=1):
        validator.validate(json.loads(line))
        parse_line(line, line=n)


@pytest.mark.parametrize(
    ("kind", "value", "unit", "canonical"),
    [
        ("glucose", 5.2, "mmol/L", "mmol/L"),
        ("systolic", 150, "mmHg", "mm[Hg]"),
        ("diastolic", 95, "mm[Hg]", "mm[Hg]"),
        ("heart_rate", 72, "bpm", "/min"),
        ("spo2", 97, "%", "%"),
        ("body_weight", 180.5, "lbs", "[lb_av]"),
        ("body_temperature", 37.1, "°C", "Cel"),
        ("body_temperature", 99.1, "°F", "[degF]"),
        ("respiratory_rate", 16, "breaths/min", "/min"),
    ],
)
def test_kinds_and_unit_spellings(kind: str, value: float, unit: str, canonical: str) -> None:
    line = json.dumps(
        {
            "at": "2026-01-05T00:05:00Z",
            "patient": "p",
            "device": "d",
            "reading": {"kind": kind, "value": value, "unit": unit},
        },
        ensure_ascii=False,
    )
    event = parse_line(line)
    assert event.reading is not None
    assert event.reading.unit == canonical
    assert event.reading.value == value


def test_blood_pressure_panel() -> None:
    event = parse_line(
        '{"at": "2026-01-05T08:00:00+01:00", "patient": "p", "device": "cuff", "reading": '
        '{"kind": "blood_pressure", "value": {"systolic": 192, "diastolic": 124}, '
        '"unit": "mmHg"}}'
    )
    assert event.reading is not None
    assert event.reading.component("systolic") is not None
    assert event.at == datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"at": "2026-01-05T00:05:00Z", "device": "d"}', "exactly one of"),
        ('{"at": "2026-01-05T00:05:00", "device": "d", "event": "disconnect"}', "time zone"),
        ('{"at": "yesterday", "device": "d", "event": "disconnect"}', "not an ISO 8601"),
        ('{"at": "2026-01-05T00:05:00Z", "device": "d", "event": "reboot"}', "reboot"),
        (
            '{"at": "2026-01-05T00:05:00Z", "device": "d", '
            '"reading": {"kind": "glucose", "value": 93, "unit": "mg/dL"}}',
            "needs a patient",
        ),
        (
            '{"at": "2026-01-05T00:05:00Z", "patient": "p", "device": "d", '
            '"reading": {"kind": "sugar", "value": 93, "unit": "mg/dL"}}',
            "'sugar' is not a vocabulary kind",
        ),
        (
            '{"at": "2026-01-05T00:05:00Z", "patient": "p", "device": "d", '
            '"reading": {"kind": "glucose", "value": 93, "unit": "furlongs"}}',
            "unknown unit",
        ),
        (
            '{"at": "2026-01-05T00:05:00Z", "patient": "p", "device": "d", '
            '"reading": {"kind": "glucose", "value": 93, "unit": "mmHg"}}',
            "not allowed for glucose",
        ),
        (
            '{"at": "2026-01-05T00:05:00Z", "patient": "p", "device": "d", '
            '"reading": {"kind": "glucose", "value": "93", "unit": "mg/dL"}}',
            "must be a number",
        ),
        (
            '{"at": "2026-01-05T00:05:00Z", "patient": "p", "device": "d", '
            '"reading": {"kind": "blood_pressure", "value": {"systolic": 120}, "unit": "mmHg"}}',
            "needs systolic and diastolic",
        ),
        (
            '{"at": "2026-01-05T00:05:00Z", "device": "d", "ble": {"characteristic": "2A35", '
            '"hex": "zz"}}',
            "not hexadecimal",
        ),
        (
            '{"at": "2026-01-05T00:05:00Z", "device": "d", "event": "reconnect", "x": 1}',
            "unknown fields",
        ),
    ],
)
def test_bad_lines_name_the_line_and_the_fault(line: str, message: str) -> None:
    with pytest.raises(FeedError, match=message) as info:
        list(parse_feed(["# a comment", "", line]))
    assert info.value.line == 3
    assert str(info.value).startswith("line 3: ")


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    at = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    events = [
        reading_event(at, "p-1", "scale-1", "body_weight", 81.4, "kg"),
        blood_pressure_event(at, "p-1", "cuff-1", 141, 88),
        parse_line(
            '{"at": "2026-01-05T08:00:00Z", "device": "d", "event": "clock_change", '
            '"offset_s": -3600}'
        ),
        parse_line(
            '{"at": "2026-01-05T08:00:00Z", "device": "d", "mqtt": {"topic": "t", '
            '"payload": "hello"}}'
        ),
        parse_line(
            '{"at": "2026-01-05T08:00:00Z", "device": "d", "ble": {"characteristic": '
            '"2a35", "hex": "00c0007c009300"}}'
        ),
    ]
    path = tmp_path / "feed.jsonl"
    assert write_feed(path, events) == len(events)
    again = read_feed(path)
    assert [format_event(e) for e in again] == [format_event(e) for e in events]
    validator = jsonschema.Draft202012Validator(_schema())
    for line in path.read_text(encoding="utf-8").splitlines():
        validator.validate(json.loads(line))
