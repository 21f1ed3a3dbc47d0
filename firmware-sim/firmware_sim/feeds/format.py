"""The feed format: JSON Lines, one event per line (``docs/feeds.md``, ``docs/feed.schema.json``).

Every event has ``at`` (ISO 8601 with a time zone), ``device`` and usually ``patient``, and
exactly one of:

- ``reading``: a decoded measurement, ``{"kind", "value", "unit"}`` (blood pressure:
  ``"value": {"systolic": .., "diastolic": .., "mean_arterial_pressure": ..}``);
- ``ble``: a raw GATT value as the device sent it, ``{"characteristic": "2A35", "hex"}``;
- ``mqtt``: a raw MQTT message, ``{"topic", "payload"}`` (payload a string or JSON object);
- ``event``: a device happening, ``disconnect`` | ``reconnect`` | ``clock_change``
  (``clock_change`` may carry ``offset_s``, how far the device clock jumped), or, in
  recorded feeds, ``connect`` (with ``profile`` and ``gateway``) and ``clock_set`` (with
  ``hex``, the Current Time value the hub wrote; a clock *read* is a ``ble`` event on
  ``2A2B`` at the hub's time half-way through the read);
- ``care_plan``: the patient's care-plan threshold overrides, ``{"thresholds": {..}}``
  (``device`` is optional on this one).

Pure: parsing and formatting only, no files beyond :func:`read_feed` / :func:`write_feed`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from firmware_sim.errors import FirmwareSimError
from wardwatch.errors import ContractError
from wardwatch.reading import Component, Reading
from wardwatch.units import normalize_unit
from wardwatch.vocabulary import KINDS

DeviceHappening = Literal["disconnect", "reconnect", "clock_change", "connect", "clock_set"]
DEVICE_HAPPENINGS: tuple[DeviceHappening, ...] = (
    "disconnect",
    "reconnect",
    "clock_change",
    "connect",
    "clock_set",
)
#: optional fields of a device happening (recorded feeds, ``firmware_sim.feeds.record``)
_HAPPENING_FIELDS = ("offset_s", "profile", "gateway", "hex")

#: the kinds a feed reading may name: every vocabulary kind
FEED_KINDS: tuple[str, ...] = tuple(KINDS)

_PAYLOAD_KEYS = ("reading", "ble", "mqtt", "event", "care_plan")
_BP_COMPONENTS = ("systolic", "diastolic", "mean_arterial_pressure")


class FeedError(FirmwareSimError):
    """A feed line that is not a valid event; ``line`` is its 1-based number (0: unknown)."""

    code = "bad-feed"

    def __init__(self, message: str, *, line: int = 0) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True, slots=True)
class BleValue:
    """A raw GATT characteristic value."""

    characteristic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """A raw MQTT message."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class CarePlan:
    """A patient's care-plan threshold overrides (``Patient.thresholds``, docs/alerting.md)."""

    thresholds: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One line of a feed; exactly one of ``reading``, ``ble``, ``mqtt``, ``event``,
    ``care_plan`` is set (``device`` is ``""`` on a care-plan event without one)."""

    at: datetime
    device: str
    patient: str | None = None
    reading: Reading | None = None
    ble: BleValue | None = None
    mqtt: MqttMessage | None = None
    event: DeviceHappening | None = None
    offset_s: float | None = None
    """For ``clock_change``: how far the device clock jumped (seconds, + is ahead)."""
    line: int = 0
    care_plan: CarePlan | None = None
    profile: str | None = None
    """For ``connect`` (recorded): the device profile the hub used."""
    gateway: str | None = None
    """For ``connect`` (recorded): the id of the hub that recorded the feed."""
    data: bytes | None = None
    """For ``clock_set``: the Current Time value the hub wrote (JSON ``hex``) at ``at``."""

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise FeedError(f"time {self.at.isoformat()} has no time zone", line=self.line)
        payloads = (self.reading, self.ble, self.mqtt, self.event, self.care_plan)
        set_ = [x for x in payloads if x is not None]
        if len(set_) != 1:
            raise FeedError(
                "an event has exactly one of reading, ble, mqtt, event, care_plan", line=self.line
            )
        if (self.reading is not None or self.care_plan is not None) and self.patient is None:
            kind = "reading" if self.care_plan is None else "care_plan"
            raise FeedError(f"a {kind} event needs a patient", line=self.line)
        if not self.device and self.care_plan is None:
            raise FeedError("device must be a non-empty string", line=self.line)


def format_time(at: datetime) -> str:
    """``2026-01-05T00:05:00Z`` (milliseconds only when present)."""
    utc = at.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object, *, line: int = 0, what: str = "at") -> datetime:
    """An ISO 8601 time with a time zone; FeedError otherwise."""
    if not isinstance(text, str):
        raise FeedError(f"{what} must be an ISO 8601 string, got {text!r}", line=line)
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FeedError(f"{what} {text!r} is not an ISO 8601 time", line=line) from None
    if at.tzinfo is None:
        raise FeedError(f"{what} {text!r} has no time zone", line=line)
    return at


def _number(value: object, where: str, line: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeedError(f"{where} must be a number, got {value!r}", line=line)
    if not math.isfinite(value):
        raise FeedError(f"{where} is not finite", line=line)
    return float(value)


def _string(doc: Mapping[str, Any], key: str, line: int, where: str = "") -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise FeedError(f"{where}{key} must be a non-empty string, got {value!r}", line=line)
    return value


def _reading(doc: object, at: datetime, line: int) -> Reading:
    if not isinstance(doc, Mapping):
        raise FeedError("reading must be an object", line=line)
    kind = _string(doc, "kind", line, "reading.")
    if kind not in KINDS:
        raise FeedError(f"reading.kind {kind!r} is not a vocabulary kind", line=line)
    unknown = set(doc) - {"kind", "value", "unit"}
    if unknown:
        raise FeedError(f"reading has unknown fields {sorted(unknown)}", line=line)
    try:
        unit = normalize_unit(_string(doc, "unit", line, "reading."))
        value = doc.get("value")
        if KINDS[kind].components:
            if not isinstance(value, Mapping):
                raise FeedError(f"reading.value of {kind} must be an object", line=line)
            extra = set(value) - set(_BP_COMPONENTS)
            if extra or not {"systolic", "diastolic"} <= set(value):
                raise FeedError(
                    f"reading.value of {kind} needs systolic and diastolic"
                    f" (and optionally mean_arterial_pressure), got {sorted(value)}",
                    line=line,
                )
            components = tuple(
                Component(name, _number(value[name], f"reading.value.{name}", line), unit)
                for name in _BP_COMPONENTS
                if name in value
            )
            return Reading(kind=kind, at=at, components=components)
        return Reading(kind=kind, at=at, value=_number(value, "reading.value", line), unit=unit)
    except ContractError as exc:
        raise FeedError(f"reading: {exc}", line=line) from None


def _ble(doc: object, line: int) -> BleValue:
    if not isinstance(doc, Mapping):
        raise FeedError("ble must be an object", line=line)
    char = _string(doc, "characteristic", line, "ble.")
    text = _string(doc, "hex", line, "ble.")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise FeedError(f"ble.hex {text!r} is not hexadecimal bytes", line=line) from None
    return BleValue(char.upper(), data)


def _mqtt(doc: object, line: int) -> MqttMessage:
    if not isinstance(doc, Mapping):
        raise FeedError("mqtt must be an object", line=line)
    topic = _string(doc, "topic", line, "mqtt.")
    payload = doc.get("payload")
    if isinstance(payload, str):
        return MqttMessage(topic, payload.encode())
    if isinstance(payload, Mapping | list):
        return MqttMessage(topic, orjson.dumps(payload))
    raise FeedError("mqtt.payload must be a string or a JSON object", line=line)


def _care_plan(doc: object, line: int) -> CarePlan:
    if not isinstance(doc, Mapping):
        raise FeedError("care_plan must be an object", line=line)
    unknown = set(doc) - {"thresholds"}
    if unknown:
        raise FeedError(f"care_plan has unknown fields {sorted(unknown)}", line=line)
    thresholds = doc.get("thresholds", {})
    if not isinstance(thresholds, Mapping):
        raise FeedError("care_plan.thresholds must be an object", line=line)
    out: dict[str, float] = {}
    for name, value in thresholds.items():
        if not isinstance(name, str) or not name:
            raise FeedError("care_plan.thresholds names must be non-empty strings", line=line)
        out[name] = _number(value, f"care_plan.thresholds.{name}", line)
    return CarePlan(out)


def event_from_json(doc: object, *, line: int = 0) -> FeedEvent:
    """One event from its decoded JSON; FeedError names the line and what is wrong."""
    if not isinstance(doc, Mapping):
        raise FeedError("an event must be a JSON object", line=line)
    present = [k for k in _PAYLOAD_KEYS if k in doc]
    if len(present) != 1:
        raise FeedError(
            f"an event needs exactly one of {', '.join(_PAYLOAD_KEYS)} (found {present})",
            line=line,
        )
    unknown = set(doc) - {"at", "patient", "device", *_HAPPENING_FIELDS, *_PAYLOAD_KEYS}
    if unknown:
        raise FeedError(f"unknown fields {sorted(unknown)}", line=line)
    at = parse_time(doc.get("at"), line=line)
    care_plan_only = present[0] == "care_plan" and "device" not in doc
    device = "" if care_plan_only else _string(doc, "device", line)
    patient = doc.get("patient")
    if patient is not None and (not isinstance(patient, str) or not patient):
        raise FeedError(f"patient must be a non-empty string, got {patient!r}", line=line)
    kind = present[0]
    if kind == "reading":
        if patient is None:
            raise FeedError("a reading event needs a patient", line=line)
        return FeedEvent(at, device, patient, reading=_reading(doc["reading"], at, line), line=line)
    if kind == "ble":
        return FeedEvent(at, device, patient, ble=_ble(doc["ble"], line), line=line)
    if kind == "mqtt":
        return FeedEvent(at, device, patient, mqtt=_mqtt(doc["mqtt"], line), line=line)
    if kind == "care_plan":
        if patient is None:
            raise FeedError("a care_plan event needs a patient", line=line)
        return FeedEvent(
            at, device, patient, care_plan=_care_plan(doc["care_plan"], line), line=line
        )
    happening = doc["event"]
    if happening not in DEVICE_HAPPENINGS:
        raise FeedError(
            f"event {happening!r} is not one of {', '.join(DEVICE_HAPPENINGS)}", line=line
        )
    offset = doc.get("offset_s")
    texts = {k: doc.get(k) for k in ("profile", "gateway", "hex")}
    for key, value in texts.items():
        if value is not None and (not isinstance(value, str) or not value):
            raise FeedError(f"{key} must be a non-empty string, got {value!r}", line=line)
    data = None
    if texts["hex"] is not None:
        try:
            data = bytes.fromhex(str(texts["hex"]))
        except ValueError:
            raise FeedError(f"hex {texts['hex']!r} is not hexadecimal bytes", line=line) from None
    return FeedEvent(
        at,
        device,
        patient,
        event=happening,
        offset_s=None if offset is None else _number(offset, "offset_s", line),
        line=line,
        profile=None if texts["profile"] is None else str(texts["profile"]),
        gateway=None if texts["gateway"] is None else str(texts["gateway"]),
        data=data,
    )


def parse_line(text: str | bytes, *, line: int = 0) -> FeedEvent:
    """Parse one feed line."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FeedError(f"not JSON: {exc}", line=line) from None
    return event_from_json(doc, line=line)


def parse_feed(lines: Iterable[str | bytes]) -> Iterator[FeedEvent]:
    """Parse feed lines (blank lines and lines starting with ``#`` are skipped)."""
    for n, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise FeedError("not UTF-8", line=n) from None
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        yield parse_line(stripped, line=n)


def read_feed(path: str | Path) -> list[FeedEvent]:
    """Every event of the feed file at ``path``."""
    with Path(path).open("rb") as fh:
        return list(parse_feed(fh))


def _json_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)


def _reading_json(reading: Reading) -> dict[str, Any]:
    if reading.components:
        units = {c.unit for c in reading.components}
        if len(units) != 1 or any(c.value is None for c in reading.components):
            raise FeedError(f"{reading.kind}: components need values in one unit")
        value: object = {c.kind: _json_number(c.value or 0.0) for c in reading.components}
        return {"kind": reading.kind, "value": value, "unit": units.pop()}
    if reading.value is None or reading.unit is None:
        raise FeedError(f"{reading.kind}: a feed reading needs a value (no data-absent readings)")
    return {"kind": reading.kind, "value": _json_number(reading.value), "unit": reading.unit}


def event_to_json(event: FeedEvent) -> dict[str, Any]:
    """The JSON object of one event (keys in the documented order)."""
    out: dict[str, Any] = {"at": format_time(event.at)}
    if event.patient is not None:
        out["patient"] = event.patient
    if event.device:
        out["device"] = event.device
    if event.reading is not None:
        out["reading"] = _reading_json(event.reading)
    elif event.ble is not None:
        out["ble"] = {"characteristic": event.ble.characteristic, "hex": event.ble.data.hex()}
    elif event.mqtt is not None:
        try:
            payload: object = orjson.loads(event.mqtt.payload)
        except orjson.JSONDecodeError:
            payload = event.mqtt.payload.decode("utf-8", errors="replace")
        if not isinstance(payload, dict | list):
            payload = event.mqtt.payload.decode("utf-8", errors="replace")
        out["mqtt"] = {"topic": event.mqtt.topic, "payload": payload}
    elif event.care_plan is not None:
        thresholds = {k: _json_number(v) for k, v in event.care_plan.thresholds.items()}
        out["care_plan"] = {"thresholds": thresholds}
    else:
        out["event"] = event.event
        if event.offset_s is not None:
            out["offset_s"] = _json_number(event.offset_s)
        if event.profile is not None:
            out["profile"] = event.profile
        if event.gateway is not None:
            out["gateway"] = event.gateway
        if event.data is not None:
            out["hex"] = event.data.hex()
    return out


def format_event(event: FeedEvent) -> str:
    """One feed line (without the newline)."""
    return orjson.dumps(event_to_json(event)).decode()


def write_feed(path: str | Path, events: Iterable[FeedEvent]) -> int:
    """Write events to ``path`` as JSON Lines; return how many were written."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for event in events:
            fh.write(format_event(event) + "\n")
            n += 1
    return n


def reading_event(
    at: datetime, patient: str, device: str, kind: str, value: float, unit: str
) -> FeedEvent:
    """A reading event of a single-valued kind (unit spellings as devices use them)."""
    return FeedEvent(
        at,
        device,
        patient,
        reading=Reading(kind=kind, at=at, value=value, unit=normalize_unit(unit)),
    )


def blood_pressure_event(
    at: datetime, patient: str, device: str, systolic: float, diastolic: float
) -> FeedEvent:
    """A blood-pressure panel reading event in mm[Hg]."""
    components = (
        Component("systolic", float(systolic), "mm[Hg]"),
        Component("diastolic", float(diastolic), "mm[Hg]"),
    )
    return FeedEvent(
        at, device, patient, reading=Reading(kind="blood_pressure", at=at, components=components)
    )


def care_plan_event(at: datetime, patient: str, thresholds: Mapping[str, float]) -> FeedEvent:
    """A care-plan event: ``patient``'s threshold overrides from ``at`` on."""
    return FeedEvent(at, "", patient, care_plan=CarePlan(dict(thresholds)))
