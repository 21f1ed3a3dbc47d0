"""MQTT device input: devices that publish vendor JSON to a broker at the site.

The gateway subscribes to the topic filter of every MQTT device profile (and the topic of
every paired MQTT device), picks the paired device a message is from by its ``topic``
(``PairedDevice.topic``: an MQTT topic or filter, matched with MQTT wildcard rules), picks
the profile (the device's pinned ``profile``, else the most specific profile matching the
topic), decodes the JSON through the profile's mapping and hands the readings on exactly as
the BLE collector does. Messages from topics no paired device claims are ignored;
undecodable ones are handed to the reject handler (quarantined by the gateway).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import aiomqtt

from gateway.ble import DeviceRecorder, PairedDevice, ReadingsHandler, RejectHandler
from gateway.errors import DecodeError
from gateway.profiles import Profile, ProfileRegistry
from gateway.profiles._mqtt import topic_matches
from wardwatch.mqtt import BrokerAddress

log = logging.getLogger(__name__)


class MqttDeviceInput:
    """Subscribes to the site broker and hands decoded device readings on."""

    def __init__(
        self,
        broker: BrokerAddress,
        devices: Sequence[PairedDevice],
        profiles: ProfileRegistry,
        on_readings: ReadingsHandler,
        on_reject: RejectHandler,
        *,
        client_id: str = "wardwatch-gw-devices",
        reconnect_delay: float = 1.0,
        record: DeviceRecorder | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.broker = broker
        self.devices = [d for d in devices if d.topic is not None]
        self.profiles = profiles
        self.on_readings = on_readings
        self.on_reject = on_reject
        self.client_id = client_id
        self.reconnect_delay = reconnect_delay
        #: where paired devices' messages are recorded, with ``clock``'s time (None: not)
        self.record = record
        self.clock = clock
        #: set while subscribed to every filter
        self.ready = asyncio.Event()
        self.messages_in = 0
        self.readings_in = 0
        self.rejected = 0
        self.ignored = 0
        #: messages handled to the end (handed on, rejected or ignored)
        self.handled = 0

    def filters(self) -> list[str]:
        """The topic filters subscribed to: every MQTT profile's and every device's."""
        found = {p.mqtt.topic for p in self.profiles if p.mqtt is not None}
        for d in self.devices:
            # A broker delivers a message once per matching subscription: a device topic a
            # profile's filter already covers would arrive twice.
            if d.topic is not None and not any(
                not _has_wildcard(d.topic) and topic_matches(f, d.topic) for f in found
            ):
                found.add(d.topic)
        return sorted(found)

    def device_for(self, topic: str) -> PairedDevice | None:
        """The paired device whose ``topic`` matches ``topic``."""
        for d in self.devices:
            if d.topic is not None and topic_matches(d.topic, topic):
                return d
        return None

    def profile_for(self, device: PairedDevice, topic: str) -> Profile | None:
        """The device's pinned profile, else the most specific one matching ``topic``."""
        if device.profile is not None:
            return self.profiles.get(device.profile)
        return self.profiles.match_mqtt(topic)

    async def run(self) -> None:
        """Stay subscribed until cancelled, reconnecting after broker outages."""
        filters = self.filters()
        if not filters:
            log.info("no MQTT device profiles or devices: MQTT device input idle")
            await asyncio.Event().wait()
        while True:
            try:
                async with self.broker.client(self.client_id) as client:
                    for f in filters:
                        await client.subscribe(f, qos=1)
                    self.ready.set()
                    log.info("MQTT device input subscribed to %s", ", ".join(filters))
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload).encode()
                        await self.handle(str(message.topic), data)
            except aiomqtt.MqttError as exc:
                self.ready.clear()
                log.info("MQTT device input lost the broker: %s", exc)
                await asyncio.sleep(self.reconnect_delay)

    async def handle(self, topic: str, payload: bytes) -> None:
        """One message: find its device and profile, decode, hand on."""
        self.messages_in += 1
        try:
            await self._handle(topic, payload)
        finally:
            self.handled += 1

    async def _handle(self, topic: str, payload: bytes) -> None:
        device = self.device_for(topic)
        if device is None:
            self.ignored += 1
            log.debug("message on %s from no paired device: ignored", topic)
            return
        source = f"mqtt:{topic}"
        if self.record is not None:
            self.record.message(device, self.clock(), topic, payload)
        profile = self.profile_for(device, topic)
        if profile is None:
            self.ignored += 1
            log.warning("device %s: no MQTT profile for topic %s", device.device_id, topic)
            return
        try:
            readings = profile.decode_json(payload)
        except DecodeError as exc:
            self.rejected += 1
            await self.on_reject(device, source, payload, exc)
            return
        self.readings_in += len(readings)
        await self.on_readings(device, readings, source, payload)


def _has_wildcard(topic: str) -> bool:
    return "+" in topic.split("/") or "#" in topic.split("/")
