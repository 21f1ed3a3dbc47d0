"""MQTT devices: topic filters and the JMESPath mapping of vendor JSON to readings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jmespath
import jmespath.exceptions

from gateway.errors import DecodeError
from wardwatch.errors import ContractError
from wardwatch.reading import Reading


def topic_matches(pattern: str, topic: str) -> bool:
    """True when MQTT ``topic`` matches filter ``pattern`` (``+`` one level, ``#`` the rest)."""
    want = pattern.split("/")
    have = topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or (level not in ("+", have[i])):
            return False
    return len(have) == len(want)


def topic_specificity(pattern: str) -> int:
    """How specific a topic filter is: its literal levels."""
    return sum(1 for level in pattern.split("/") if level not in ("+", "#"))


def topic_problems(pattern: str) -> list[str]:
    """What is wrong with an MQTT topic filter (empty: nothing)."""
    levels = pattern.split("/")
    out: list[str] = []
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            out.append(f"topic {pattern!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            out.append(f"topic {pattern!r}: '+' must be a whole level")
    return out


@dataclass(frozen=True, slots=True)
class MeasurementMap:
    """One measurement taken out of each record."""

    kind: str
    value: str
    unit: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class JsonMapping:
    """Vendor JSON -> readings: records, their time, and the measurements in each."""

    measurements: tuple[MeasurementMap, ...]
    time: str
    time_format: str = "iso8601"
    records: str | None = None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> JsonMapping:
        """The mapping from a profile's (schema-valid) ``mapping``."""
        return cls(
            measurements=tuple(
                MeasurementMap(m["kind"], m["value"], m["unit"], bool(m.get("required", False)))
                for m in doc["measurements"]
            ),
            time=doc["time"],
            time_format=doc.get("time_format", "iso8601"),
            records=doc.get("records"),
        )

    def expressions(self) -> list[str]:
        """Every JMESPath expression of the mapping."""
        out = [self.time, *(m.value for m in self.measurements)]
        return [*out, self.records] if self.records else out

    def decode(self, payload: object) -> tuple[Reading, ...]:
        """Readings from one decoded JSON message; DecodeError names what is wrong."""
        records: object = payload
        if self.records is not None:
            records = _search(self.records, payload, "records")
            if records is None:
                raise DecodeError(f"records expression {self.records!r} found nothing")
        items: Sequence[object] = records if isinstance(records, list) else [records]
        readings: list[Reading] = []
        for n, record in enumerate(items):
            where = f"record {n}"
            at = self._time(record, where)
            for m in self.measurements:
                raw = _search(m.value, record, f"{where} {m.kind}")
                if raw is None:
                    if m.required:
                        raise DecodeError(f"{where}: {m.kind} value {m.value!r} is missing")
                    continue
                value = _number(raw, f"{where}: {m.kind} value {m.value!r}")
                try:
                    readings.append(Reading(kind=m.kind, at=at, value=value, unit=m.unit))
                except ContractError as exc:
                    raise DecodeError(f"{where}: {exc}") from exc
        if not readings:
            raise DecodeError("message holds no measurement the mapping knows")
        return tuple(readings)

    def _time(self, record: object, where: str) -> datetime:
        raw = _search(self.time, record, f"{where} time")
        if raw is None:
            raise DecodeError(f"{where}: time {self.time!r} is missing")
        if self.time_format == "iso8601":
            if not isinstance(raw, str):
                raise DecodeError(f"{where}: time {raw!r} is not an ISO 8601 string")
            try:
                at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise DecodeError(f"{where}: time {raw!r} is not ISO 8601") from None
            if at.tzinfo is None:
                raise DecodeError(f"{where}: time {raw!r} has no time zone")
            return at
        seconds = _number(raw, f"{where}: time {self.time!r}")
        if self.time_format == "epoch_millis":
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise DecodeError(f"{where}: time {raw!r} is out of range") from None


def _search(expression: str, data: object, what: str) -> Any:
    try:
        return jmespath.search(expression, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise DecodeError(f"{what}: JMESPath {expression!r} failed: {exc}") from None


def _number(raw: object, what: str) -> float:
    if isinstance(raw, bool):
        raise DecodeError(f"{what} is a boolean, not a number")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            raise DecodeError(f"{what} is {raw!r}, not a number") from None
    else:
        raise DecodeError(f"{what} is {raw!r}, not a number")
    if not math.isfinite(value):
        raise DecodeError(f"{what} is {raw!r}, not a finite number")
    return value
