"""Feed readings as devices send them: GATT values (BLE) and vendor JSON (MQTT). Pure.

Readings of one device at one time are one measurement (a cuff's panel and pulse, an
oximeter's SpO2 and pulse); each group is encoded the way the device model the path plays
would send it, or refused with the reason (:class:`Unsupported`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from firmware_sim.encoding import (
    SpecialValue,
    encode_blood_pressure_measurement,
    encode_date_time,
    encode_float,
    encode_sfloat,
)
from firmware_sim.feeds.format import FeedEvent, format_time
from wardwatch.errors import ContractError
from wardwatch.reading import Reading
from wardwatch.units import convert

__all__ = [
    "BLE_PROFILE_OF_CHARACTERISTIC",
    "EncodedValue",
    "MqttEncoded",
    "Unsupported",
    "ble_profile_for",
    "encode_ble",
    "encode_mqtt",
    "mqtt_profile_for",
]


class Unsupported(Exception):  # noqa: N818 (a verdict, not an error of ours)
    """A measurement the path's device models cannot carry; the message says why."""


@dataclass(frozen=True, slots=True)
class EncodedValue:
    """One GATT value of a device: the characteristic (16-bit UUID) and its bytes."""

    characteristic: str
    data: bytes


#: the packaged profile a characteristic's values are played with (no bonding, no clock)
BLE_PROFILE_OF_CHARACTERISTIC: dict[str, str] = {
    "2A35": "sig-blood-pressure-monitor",
    "2A36": "sig-blood-pressure-monitor",
    "2A5E": "sig-pulse-oximeter",
    "2A5F": "sig-pulse-oximeter",
    "2A9D": "sig-weight-scale",
    "2A1C": "sig-thermometer",
    "2A1E": "sig-thermometer",
    "2A37": "sig-heart-rate-strap",
    "2AA7": "sig-cgm",
    "2A9C": "sig-body-composition-scale",
}

_BP = {"blood_pressure", "systolic", "diastolic", "mean_arterial_pressure"}


def _kinds(group: Sequence[Reading]) -> set[str]:
    return {r.kind for r in group}


def ble_profile_for(group: Sequence[Reading]) -> str:
    """The profile whose device sends this measurement; Unsupported if none does."""
    kinds = _kinds(group)
    if kinds & _BP and kinds <= _BP | {"heart_rate"}:
        return "sig-blood-pressure-monitor"
    if kinds == {"spo2", "heart_rate"}:
        return "sig-pulse-oximeter"
    if kinds == {"body_weight"}:
        return "sig-weight-scale"
    if kinds == {"body_temperature"}:
        return "sig-thermometer"
    if kinds == {"heart_rate"}:
        return "sig-heart-rate-strap"
    if kinds == {"cgm_glucose"}:
        return "sig-cgm"
    raise Unsupported(
        f"no simulated BLE device sends {' + '.join(sorted(kinds))} as one measurement"
        " (BLE carries blood pressure [+ pulse], SpO2 + pulse, weight, temperature,"
        " heart rate, CGM glucose)"
    )


def _one(group: Sequence[Reading], kind: str) -> Reading | None:
    found = [r for r in group if r.kind == kind]
    if len(found) > 1:
        raise Unsupported(f"two {kind} readings of one device at one time")
    return found[0] if found else None


def _value(reading: Reading, unit: str) -> float:
    if reading.value is None or reading.unit is None:
        raise Unsupported(f"{reading.kind} has no value")
    try:
        return convert(reading.value, reading.unit, unit)
    except ContractError as exc:
        raise Unsupported(f"{reading.kind}: {exc}") from None


def _utc_wall(at: datetime) -> datetime:
    """``at`` as the UTC wall time a device clock on UTC shows (whole seconds only)."""
    utc = at.astimezone(UTC)
    if utc.microsecond:
        raise Unsupported(
            f"time {format_time(at)} has a fraction of a second; a device time stamp"
            " (Date Time) carries whole seconds"
        )
    return utc.replace(tzinfo=None)


def _stamp(at: datetime) -> bytes:
    return encode_date_time(_utc_wall(at))


def _integer(value: float, what: str, maximum: int) -> int:
    if value != int(value) or not 0 <= value <= maximum:
        raise Unsupported(f"{what} {value:g} is not a whole number in 0..{maximum}")
    return int(value)


def _blood_pressure(group: Sequence[Reading], at: datetime) -> EncodedValue:
    parts: dict[str, float] = {}
    unit = "mm[Hg]"
    for r in group:
        if r.kind == "blood_pressure":
            for c in r.components:
                if c.value is None or c.unit is None:
                    raise Unsupported("a blood-pressure component has no value")
                parts[c.kind] = convert(c.value, c.unit, unit)
        elif r.kind in _BP:
            parts[r.kind] = _value(r, unit)
    if not {"systolic", "diastolic"} <= set(parts):
        raise Unsupported("a cuff measurement needs systolic and diastolic")
    pulse = _one(group, "heart_rate")
    data = encode_blood_pressure_measurement(
        parts["systolic"],
        parts["diastolic"],
        parts.get("mean_arterial_pressure", SpecialValue.NAN),
        unit="mmHg",
        timestamp=_utc_wall(at),
        pulse=None if pulse is None else _value(pulse, "/min"),
    )
    return EncodedValue("2A35", data)


def encode_ble(
    group: Sequence[Reading], at: datetime, session_start: datetime | None
) -> EncodedValue:
    """The GATT value the device of ``ble_profile_for(group)`` sends for ``group``.

    ``session_start``: a CGM's session start (its values carry minutes since then).
    """
    profile = ble_profile_for(group)
    if profile == "sig-blood-pressure-monitor":
        return _blood_pressure(group, at)
    if profile == "sig-pulse-oximeter":
        spo2, pulse = _one(group, "spo2"), _one(group, "heart_rate")
        assert spo2 is not None
        assert pulse is not None
        body = encode_sfloat(_value(spo2, "%")) + encode_sfloat(_value(pulse, "/min"))
        return EncodedValue("2A5E", b"\x01" + body + _stamp(at))
    if profile == "sig-weight-scale":
        weight = _one(group, "body_weight")
        assert weight is not None
        raw = round(_value(weight, "kg") / 0.005)
        if not 0 <= raw < 0xFFFF:
            raise Unsupported(f"weight {weight.value} is outside the scale's range")
        if abs(raw * 0.005 - _value(weight, "kg")) > 1e-9:
            raise Unsupported(f"weight {weight.value} {weight.unit} is not in 5 g steps")
        return EncodedValue("2A9D", b"\x02" + struct.pack("<H", raw) + _stamp(at))
    if profile == "sig-thermometer":
        temp = _one(group, "body_temperature")
        assert temp is not None
        fahrenheit = temp.unit == "[degF]"
        value = _value(temp, "[degF]" if fahrenheit else "Cel")
        flags = 0x02 | (0x01 if fahrenheit else 0)
        return EncodedValue("2A1C", bytes([flags]) + encode_float(value) + _stamp(at))
    if profile == "sig-heart-rate-strap":
        rate = _one(group, "heart_rate")
        assert rate is not None
        return EncodedValue(
            "2A37", bytes([0x00, _integer(_value(rate, "/min"), "heart rate", 255)])
        )
    glucose = _one(group, "cgm_glucose")
    assert glucose is not None
    assert session_start is not None
    minutes, rest = divmod((at - session_start).total_seconds(), 60)
    if rest or not 0 <= minutes <= 0xFFFF:
        raise Unsupported(
            f"CGM value at {format_time(at)} is not a whole number of minutes (<= 65535)"
            f" after its session start {format_time(session_start)}"
        )
    body = encode_sfloat(_value(glucose, "mg/dL")) + struct.pack("<H", int(minutes))
    return EncodedValue("2AA7", bytes([6, 0x00]) + body)


def cgm_session_start(first: datetime) -> datetime:
    """A CGM session start for a device whose first value is at ``first``: that minute."""
    utc = first.astimezone(UTC)
    return utc - timedelta(seconds=utc.second, microseconds=utc.microsecond)


def cgm_session_start_value(start: datetime) -> bytes:
    """CGM Session Start Time (0x2AAA): Date Time (UTC), time zone 0, DST 0."""
    return encode_date_time(start.astimezone(UTC).replace(tzinfo=None)) + b"\x00\x00"


# -- MQTT device messages --------------------------------------------------------------

#: MQTT device profile -> the kinds its messages carry
MQTT_PROFILE_KINDS: dict[str, frozenset[str]] = {
    "auralis-wifi-scale": frozenset({"body_weight", "body_fat", "bmi"}),
    "novabeat-band2": frozenset({"heart_rate", "spo2", "steps"}),
}


def mqtt_profile_for(group: Sequence[Reading]) -> str:
    """The MQTT device profile whose device publishes ``group``; Unsupported if none."""
    kinds = _kinds(group)
    if kinds <= MQTT_PROFILE_KINDS["auralis-wifi-scale"] and "body_weight" in kinds:
        return "auralis-wifi-scale"
    if kinds <= MQTT_PROFILE_KINDS["novabeat-band2"]:
        return "novabeat-band2"
    raise Unsupported(
        f"no MQTT device profile publishes {' + '.join(sorted(kinds))}"
        " (MQTT devices carry weight [+ body fat, BMI], heart rate, SpO2, steps)"
    )


@dataclass(frozen=True, slots=True)
class MqttEncoded:
    """One device message: the profile it follows and its JSON payload."""

    profile: str
    payload: bytes


def encode_mqtt(group: Sequence[Reading], at: datetime) -> MqttEncoded:
    """The vendor JSON the device of ``mqtt_profile_for(group)`` publishes for ``group``."""
    profile = mqtt_profile_for(group)
    if profile == "auralis-wifi-scale":
        seconds = at.timestamp()
        if seconds != int(seconds):
            raise Unsupported(f"time {format_time(at)}: the scale sends whole epoch seconds")
        weight = _one(group, "body_weight")
        assert weight is not None
        doc: dict[str, object] = {
            "measuredAt": int(seconds),
            "weight": {"value": _value(weight, "kg"), "unit": "kg"},
        }
        composition: dict[str, float] = {}
        fat, bmi = _one(group, "body_fat"), _one(group, "bmi")
        if fat is not None:
            composition["fatPercent"] = _value(fat, "%")
        if bmi is not None:
            composition["bmi"] = _value(bmi, "kg/m2")
        if composition:
            doc["composition"] = composition
        return MqttEncoded(profile, orjson.dumps(doc))
    record: dict[str, object] = {"endDate": format_time(at)}
    names = {
        "heart_rate": ("heartRate", "/min"),
        "spo2": ("spo2", "%"),
        "steps": ("steps", "{steps}"),
    }
    for r in group:
        key, unit = names[r.kind]
        if key in record:
            raise Unsupported(f"two {r.kind} readings of one device at one time")
        record[key] = _value(r, unit)
    return MqttEncoded(profile, orjson.dumps({"Body": [record], "Properties": {}}))


def reading_groups(events: Sequence[FeedEvent]) -> dict[int, list[int]]:
    """Reading events of one device at one time, by the index of the first of them.

    A reading equal to one already in its group is a copy (a hub or device sending it
    again): it goes to the next group of that device and time, sent as a measurement of
    its own, as the copy was.
    """
    heads: dict[tuple[str, datetime], list[int]] = {}
    groups: dict[int, list[int]] = {}
    for n, event in enumerate(events):
        if event.reading is None:
            continue
        same_time = heads.setdefault((event.device, event.at), [])
        for head in same_time:
            if all(events[k].reading != event.reading for k in groups[head]):
                groups[head].append(n)
                break
        else:
            same_time.append(n)
            groups[n] = [n]
    return groups
