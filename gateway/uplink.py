"""Uplink over MQTT v5: bundles out at QoS 1, the backend's acknowledgement back.

The outbox is the source of truth. A bundle's entries are deleted only when the backend's
acknowledgement for that bundle arrives on ``wardwatch/v1/gw/{id}/ack``; a bundle that is
not acknowledged within ``ack_timeout`` is sent again (the backend stores by identifier, so
a resend is harmless). Liveness: a retained ``online`` status, a last will ``offline``,
and a heartbeat refreshing the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt
import httpx
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.outbox import Outbox, OutboxEntry
from wardwatch import fhir, topics
from wardwatch.mqtt import BrokerAddress

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _InFlight:
    seqs: list[int]
    sent_at: float


@dataclass(slots=True)
class UplinkStats:
    """Counters for the status endpoint."""

    bundles_sent: int = 0
    bundles_acked: int = 0
    resends: int = 0
    connected: bool = False
    last_ack_at: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


class MqttUplink:
    """Drains an :class:`Outbox` to the backend over MQTT."""

    def __init__(
        self,
        outbox: Outbox,
        broker: BrokerAddress,
        gateway_id: str,
        *,
        batch_size: int = 200,
        max_in_flight: int = 4,
        ack_timeout: float = 10.0,
        heartbeat: float = 60.0,
        linger: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.broker = broker
        self.gateway_id = gateway_id
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.heartbeat = heartbeat
        #: wait this long for more entries before publishing a part-full bundle (batching)
        self.linger = linger
        self._monotonic = monotonic
        self._wakeup = asyncio.Event()
        self._in_flight: dict[str, _InFlight] = {}
        self.stats = UplinkStats()
        self.connected = asyncio.Event()

    def notify(self) -> None:
        """Tell the uplink there is something new in the outbox."""
        self._wakeup.set()

    def _status(self, state: str) -> bytes:
        at = fhir.format_time(datetime.now(UTC))
        doc: dict[str, object] = {"gateway": self.gateway_id, "status": state, "at": at}
        if state == "online":
            # counts only (queued, dropped by reason): the backend sees a hub shedding data
            doc.update(self.outbox.summary())
        return orjson.dumps(doc)

    async def run(self) -> None:
        """Send until cancelled, reconnecting with jittered backoff."""
        delay = 0.5
        while True:
            # The broker publishes the will when the link dies without a DISCONNECT; its `at`
            # is when this connection began (the backend stamps such a will on receipt).
            will = aiomqtt.Will(
                topics.status_topic(self.gateway_id), self._status("offline"), qos=1, retain=True
            )
            try:
                async with self.broker.client(
                    f"wardwatch-gw-{self.gateway_id}", will=will
                ) as client:
                    await client.subscribe(topics.ack_topic(self.gateway_id), qos=1)
                    await client.publish(
                        topics.status_topic(self.gateway_id),
                        self._status("online"),
                        qos=1,
                        retain=True,
                    )
                    log.info("gateway %s uplink connected", self.gateway_id)
                    self.stats.connected = True
                    self.connected.set()
                    delay = 0.5
                    try:
                        async with asyncio.TaskGroup() as tg:
                            tg.create_task(self._receive_acks(client))
                            tg.create_task(self._send_loop(client))
                    except asyncio.CancelledError:
                        # A clean shutdown sends DISCONNECT, so the broker drops the will:
                        # say "offline" ourselves, briefly, then stop.
                        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                            await asyncio.wait_for(
                                client.publish(
                                    topics.status_topic(self.gateway_id),
                                    self._status("offline"),
                                    qos=1,
                                    retain=True,
                                ),
                                timeout=2.0,
                            )
                        raise
            except* aiomqtt.MqttError as group:
                log.warning("uplink lost the broker (%s); retrying", group.exceptions[0])
            self.stats.connected = False
            self.connected.clear()
            # Whatever was in flight is unconfirmed: it goes again on the next connection.
            self._in_flight.clear()
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter)
            delay = min(delay * 2, 30.0)

    async def _receive_acks(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                ack = orjson.loads(message.payload if isinstance(message.payload, bytes) else b"")
                bundle_id = ack["bundle"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("ignoring malformed acknowledgement")
                continue
            flight = self._in_flight.pop(bundle_id, None)
            if flight is None:
                continue  # a late ack of a bundle already resent and confirmed
            removed = await asyncio.to_thread(self.outbox.confirm, flight.seqs)
            self.stats.bundles_acked += 1
            self.stats.last_ack_at = fhir.format_time(datetime.now(UTC))
            log.debug("bundle confirmed, %d entries removed", removed)
            self._wakeup.set()

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        last_beat = self._monotonic()
        while True:
            self._expire()
            if len(self._in_flight) < self.max_in_flight:
                busy = {s for f in self._in_flight.values() for s in f.seqs}
                entries = await asyncio.to_thread(self.outbox.batch, self.batch_size, busy)
                if entries and len(entries) < self.batch_size and self.linger > 0:
                    # like Kafka's linger.ms: a device session hands readings on one by one;
                    # a moment's wait turns many tiny bundles (publish + ack + fsync each)
                    # into one
                    await asyncio.sleep(self.linger)
                    entries = await asyncio.to_thread(self.outbox.batch, self.batch_size, busy)
                if entries:
                    await self._publish(client, entries)
                    continue
            if self._monotonic() - last_beat >= self.heartbeat:
                await client.publish(
                    topics.status_topic(self.gateway_id), self._status("online"), qos=1, retain=True
                )
                last_beat = self._monotonic()
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=min(1.0, self.ack_timeout))

    def _expire(self) -> None:
        now = self._monotonic()
        for bundle_id, flight in list(self._in_flight.items()):
            if now - flight.sent_at > self.ack_timeout:
                del self._in_flight[bundle_id]
                self.stats.resends += 1
                log.info("bundle not acknowledged in %.0f s; will resend", self.ack_timeout)

    async def _publish(self, client: aiomqtt.Client, entries: list[OutboxEntry]) -> None:
        bundle_id = str(uuid.uuid4())
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = topics.CONTENT_TYPE
        seqs = [e.seq for e in entries]
        self._in_flight[bundle_id] = _InFlight(seqs, self._monotonic())
        await client.publish(
            topics.obs_topic(self.gateway_id),
            bundle_bytes(bundle_id, entries),
            qos=1,
            properties=props,
        )
        self.stats.bundles_sent += 1
        await asyncio.to_thread(self.outbox.mark_attempt, seqs)


def bundle_bytes(bundle_id: str, entries: Sequence[OutboxEntry]) -> bytes:
    """A FHIR batch Bundle of queued Observations, spliced from their stored JSON."""
    parts = []
    for e in entries:
        rid = e.identifier.removeprefix("urn:uuid:").encode()
        parts.append(
            b'{"fullUrl":"urn:uuid:'
            + rid
            + b'","resource":'
            + e.body
            + b',"request":{"method":"PUT","url":"Observation/'
            + rid
            + b'"}}'
        )
    return (
        b'{"resourceType":"Bundle","id":"'
        + bundle_id.encode()
        + b'","type":"batch","entry":['
        + b",".join(parts)
        + b"]}"
    )


class HttpUplink:
    """Drains an :class:`Outbox` to ``POST /fhir/Bundle``; a 200 response is the ack."""

    def __init__(
        self,
        outbox: Outbox,
        base_url: str,
        *,
        token: str | None = None,
        batch_size: int = 200,
        timeout: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.batch_size = batch_size
        self.timeout = timeout
        self._wakeup = asyncio.Event()
        self.stats = UplinkStats()

    def notify(self) -> None:
        """Tell the uplink there is something new in the outbox."""
        self._wakeup.set()

    async def run(self) -> None:
        """Send until cancelled; back off with jitter while the backend is unreachable."""
        headers = {"Content-Type": topics.CONTENT_TYPE}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        delay = 0.5
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as http:
            while True:
                entries = await asyncio.to_thread(self.outbox.batch, self.batch_size)
                if not entries:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), timeout=1.0)
                    continue
                body = bundle_bytes(str(uuid.uuid4()), entries)
                try:
                    response = await http.post(f"{self.base_url}/fhir/Bundle", content=body)
                    self.stats.bundles_sent += 1
                    self.stats.connected = response.status_code == 200
                    if response.status_code == 200:
                        await asyncio.to_thread(self.outbox.confirm, [e.seq for e in entries])
                        self.stats.bundles_acked += 1
                        delay = 0.5
                        continue
                    log.warning("backend answered %d; will resend", response.status_code)
                except httpx.HTTPError as exc:
                    self.stats.connected = False
                    log.warning("backend unreachable (%s); will resend", type(exc).__name__)
                self.stats.resends += 1
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter)
                delay = min(delay * 2, 30.0)
