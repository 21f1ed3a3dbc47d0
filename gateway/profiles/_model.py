"""The device profile: one device model, parsed from its (schema-valid) YAML document."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.decoders import DECODERS, Decoded, Decoder, DeviceContext, normalize_uuid16
from gateway.errors import DecodeError
from gateway.profiles._advertisement import AdvertisementSource, AdvertisementSpec
from gateway.profiles._mqtt import JsonMapping, topic_matches, topic_specificity
from gateway.profiles._quirks import Quirks
from wardwatch.reading import Reading

#: standard decoder name ("blood_pressure_measurement") -> characteristic ("2A35")
DECODER_NAMES: Mapping[str, str] = {
    fn.__name__.removeprefix("decode_"): uuid for uuid, fn in DECODERS.items()
}


def characteristic_key(uuid: str) -> str:
    """A characteristic UUID as the profile keys it: "2A35", or a lower-case 128-bit UUID."""
    try:
        return normalize_uuid16(uuid)
    except DecodeError:
        return uuid.strip().lower()


@dataclass(frozen=True, slots=True)
class Advertisement:
    """What a BLE device advertises, as far as matching needs it."""

    local_name: str | None = None
    service_uuids: frozenset[str] = frozenset()
    manufacturer_ids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class BleMatch:
    """A BLE match rule: every given criterion must hold."""

    local_name: str | None = None
    local_name_example: str | None = None
    service_uuids: tuple[str, ...] = ()
    manufacturer_id: int | None = None

    @property
    def specificity(self) -> int:
        """Criteria given: the more, the more specific (a model beats its generic profile)."""
        return (
            (self.local_name is not None)
            + bool(self.service_uuids)
            + (self.manufacturer_id is not None)
        )

    def matches(self, adv: Advertisement) -> bool:
        """True when ``adv`` satisfies every criterion."""
        if self.local_name is not None and (
            adv.local_name is None or re.match(self.local_name, adv.local_name) is None
        ):
            return False
        if not set(self.service_uuids) <= adv.service_uuids:
            return False
        return self.manufacturer_id is None or self.manufacturer_id in adv.manufacturer_ids

    def example(self) -> Advertisement:
        """The advertisement this rule is written for."""
        ids = frozenset() if self.manufacturer_id is None else frozenset({self.manufacturer_id})
        return Advertisement(self.local_name_example, frozenset(self.service_uuids), ids)


@dataclass(frozen=True, slots=True)
class MqttMatch:
    """An MQTT match rule: a topic filter and a topic the device really publishes on."""

    topic: str
    topic_example: str

    @property
    def specificity(self) -> int:
        """Literal topic levels."""
        return topic_specificity(self.topic)


@dataclass(frozen=True, slots=True)
class SessionStep:
    """One step of the BLE session the gateway runs with the device."""

    step: str
    characteristic: str | None = None
    mode: str | None = None
    request: str | None = None

    def describe(self) -> str:
        """The step in words, for the supported-devices page."""
        if self.step == "bond":
            return "bond (pair)"
        if self.step == "set_current_time":
            return "set time (Current Time 0x2A2B)"
        if self.step == "racp":
            return f"RACP: {self.request or ''}".replace("_", " ")
        return f"{self.step} {self.mode + ' ' if self.mode else ''}0x{self.characteristic}"


@dataclass(frozen=True, slots=True)
class CharacteristicSpec:
    """Which standard decoder a characteristic uses, and its quirks."""

    uuid: str
    decoder: str
    quirks: Quirks = field(default_factory=Quirks)

    @property
    def standard_uuid(self) -> str | None:
        """The characteristic whose decoder is used, or None for an unknown decoder name."""
        return DECODER_NAMES.get(self.decoder)


@dataclass(frozen=True, slots=True)
class ExpectedReading:
    """One reading a sample must decode to (panels are listed as their components)."""

    kind: str
    value: float | None
    unit: str | None
    absent: str | None = None
    at: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """A payload in and the readings (or the error) it must give."""

    name: str
    characteristic: str | None
    hex: str | None
    json: object
    received_at: str
    cgm_session_start: str | None
    expect: tuple[ExpectedReading, ...] | None
    error: str | None
    service_data: str | None = None
    manufacturer_id: int | None = None


DEFAULT_SAMPLE_TIME = "2024-01-01T00:00:00Z"

#: transports: a connectable BLE device, a BLE device that only advertises, vendor MQTT
BLE, BLE_ADVERTISEMENT, MQTT = "ble", "ble-advertisement", "mqtt"


@dataclass(frozen=True, slots=True)
class Profile:
    """One device model."""

    id: str
    vendor: str
    model: str
    version: int
    transport: str
    path: Path
    description: str = ""
    ble: BleMatch | None = None
    mqtt: MqttMatch | None = None
    session: tuple[SessionStep, ...] = ()
    characteristics: tuple[CharacteristicSpec, ...] = ()
    mapping: JsonMapping | None = None
    advertisement: AdvertisementSpec | None = None
    samples: tuple[Sample, ...] = ()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], path: Path) -> Profile:
        """The profile from its schema-valid document."""
        match = doc["match"]
        ble = match.get("ble")
        mqtt = match.get("mqtt")
        return cls(
            id=doc["id"],
            vendor=doc["vendor"],
            model=doc["model"],
            version=doc["version"],
            transport=doc["transport"],
            path=path,
            description=doc.get("description", "").strip(),
            ble=None
            if ble is None
            else BleMatch(
                ble.get("local_name"),
                ble.get("local_name_example"),
                tuple(characteristic_key(u) for u in ble.get("service_uuids", ())),
                ble.get("manufacturer_id"),
            ),
            mqtt=None if mqtt is None else MqttMatch(mqtt["topic"], mqtt["topic_example"]),
            session=tuple(
                SessionStep(
                    s["step"],
                    characteristic_key(s["characteristic"]) if "characteristic" in s else None,
                    s.get("mode"),
                    s.get("request"),
                )
                for s in doc.get("session", ())
            ),
            characteristics=tuple(
                CharacteristicSpec(
                    characteristic_key(c["uuid"]),
                    c["decoder"],
                    Quirks.from_doc(c.get("quirks", {})),
                )
                for c in doc.get("characteristics", ())
            ),
            mapping=JsonMapping.from_doc(doc["mapping"]) if "mapping" in doc else None,
            advertisement=AdvertisementSpec.from_doc(doc["advertisement"])
            if "advertisement" in doc
            else None,
            samples=tuple(_sample(s) for s in doc["samples"]),
        )

    def characteristic(self, uuid: str | None) -> CharacteristicSpec:
        """The characteristic ``uuid`` (the only one with readings when None)."""
        if uuid is None:
            if len(self.characteristics) == 1:
                return self.characteristics[0]
            known = ", ".join(c.uuid for c in self.characteristics)
            raise DecodeError(f"profile {self.id} has several characteristics ({known}): name one")
        key = characteristic_key(uuid)
        for spec in self.characteristics:
            if spec.uuid == key:
                return spec
        raise DecodeError(f"profile {self.id} has no characteristic {key}")

    def decode_ble(
        self,
        data: bytes,
        *,
        characteristic: str | None,
        received_at: datetime,
        device: DeviceContext | None = None,
    ) -> tuple[Reading, ...]:
        """Readings from one characteristic value, quirks applied, standard decoder run."""
        return self.decode_ble_value(
            data, characteristic=characteristic, received_at=received_at, device=device
        ).readings

    def decode_ble_value(
        self,
        data: bytes,
        *,
        characteristic: str | None,
        received_at: datetime,
        device: DeviceContext | None = None,
    ) -> Decoded:
        """The whole decoded value (readings and fields), quirks applied.

        For an advertising-only profile ``characteristic`` names the service-data UUID of
        the source (None: its only source).
        """
        if self.transport == BLE_ADVERTISEMENT:
            return self.decode_advertisement(
                data, service_data=characteristic, received_at=received_at
            )
        if self.transport != BLE:
            raise DecodeError(f"profile {self.id} is an MQTT profile: give --json-payload")
        spec = self.characteristic(characteristic)
        standard = spec.standard_uuid
        if standard is None:
            raise DecodeError(f"profile {self.id}: unknown decoder {spec.decoder!r}")
        decoder: Decoder = DECODERS[standard]
        fixed = spec.quirks.apply(standard, bytes(data))
        try:
            return decoder(fixed, received_at, device or DeviceContext())
        except DecodeError as exc:
            if exc.characteristic is not None:
                raise
            raise DecodeError(str(exc), characteristic=spec.uuid) from exc

    def advertisement_source(
        self, *, service_data: str | None = None, manufacturer_id: int | None = None
    ) -> AdvertisementSource:
        """The advertised source named (the only one if neither is given)."""
        if self.advertisement is None:
            raise DecodeError(f"profile {self.id} does not decode advertisements")
        return self.advertisement.source(service_data=service_data, manufacturer_id=manufacturer_id)

    def decode_advertisement(
        self,
        data: bytes,
        *,
        received_at: datetime,
        service_data: str | None = None,
        manufacturer_id: int | None = None,
    ) -> Decoded:
        """One advertised value (service or manufacturer data) through its source's decoder."""
        source = self.advertisement_source(
            service_data=service_data, manufacturer_id=manufacturer_id
        )
        standard = DECODER_NAMES.get(source.decoder)
        if standard is None:
            raise DecodeError(f"profile {self.id}: unknown decoder {source.decoder!r}")
        fixed = source.quirks.apply(standard, source.payload(bytes(data)))
        try:
            return DECODERS[standard](fixed, received_at, DeviceContext())
        except DecodeError as exc:
            raise DecodeError(str(exc), characteristic=source.key) from exc

    def decode_json(self, payload: str | bytes | object) -> tuple[Reading, ...]:
        """Readings from one vendor JSON message (text, bytes or already parsed)."""
        if self.mapping is None:
            raise DecodeError(f"profile {self.id} is a BLE profile: give --hex")
        if isinstance(payload, str | bytes):
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"payload is not JSON: {exc}") from None
        return self.mapping.decode(payload)

    def matches_topic(self, topic: str) -> bool:
        """True when this MQTT profile's topic filter matches ``topic``."""
        return self.mqtt is not None and topic_matches(self.mqtt.topic, topic)

    def kinds(self) -> list[str]:
        """The measurement kinds the profile yields, for the supported-devices page."""
        if self.mapping is not None:
            names = [m.kind for m in self.mapping.measurements]
        else:
            names = [e.kind for s in self.samples for e in (s.expect or ())]
        return list(dict.fromkeys(names))


def _sample(doc: Mapping[str, Any]) -> Sample:
    expect = doc.get("expect")
    return Sample(
        name=doc["name"],
        characteristic=doc.get("characteristic"),
        hex=doc.get("hex"),
        json=doc.get("json"),
        received_at=doc.get("received_at", DEFAULT_SAMPLE_TIME),
        cgm_session_start=doc.get("cgm_session_start"),
        expect=None
        if expect is None
        else tuple(
            ExpectedReading(e["kind"], e.get("value"), e.get("unit"), e.get("absent"), e.get("at"))
            for e in expect
        ),
        error=doc.get("error"),
        service_data=doc.get("service_data"),
        manufacturer_id=doc.get("manufacturer_id"),
    )


def flatten(readings: Sequence[Reading]) -> list[ExpectedReading]:
    """Readings as samples list them: a panel becomes its components."""
    from wardwatch.fhir import format_time

    out: list[ExpectedReading] = []
    for r in readings:
        at = format_time(r.at)
        if r.components:
            out.extend(
                ExpectedReading(c.kind, c.value, c.unit, c.data_absent, at) for c in r.components
            )
        else:
            out.append(ExpectedReading(r.kind, r.value, r.unit, r.data_absent, at))
    return out
