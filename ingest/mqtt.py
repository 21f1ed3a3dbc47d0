"""MQTT receiver: gateway bundles in, acknowledgements out after commit.

Workers share the subscription ``$share/ingest/wardwatch/v1/gw/+/obs`` so that several
split the load. A bundle is confirmed on ``wardwatch/v1/gw/{id}/ack`` only once the store
committed it (or quarantined it); if the store is down nothing is confirmed and the gateway,
which keeps the bundle in its outbox, sends it again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.errors import StoreError
from ingest.pipeline import IngestPipeline
from wardwatch import topics
from wardwatch.mqtt import BrokerAddress

log = logging.getLogger(__name__)


class MqttIngest:
    """One ingest worker on an MQTT broker."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        broker: BrokerAddress,
        *,
        client_id: str | None = None,
        subscription: str = topics.INGEST_SHARED_SUBSCRIPTION,
    ) -> None:
        self.pipeline = pipeline
        self.broker = broker
        self.client_id = client_id or f"wardwatch-ingest-{uuid.uuid4().hex[:8]}"
        self.subscription = subscription
        self.ready = asyncio.Event()
        self.bundles = 0

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff when the broker goes away."""
        delay = 0.5
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.broker.username,
                    password=self.broker.password,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    tls_context=self.broker.ssl_context(),
                    keepalive=30,
                ) as client:
                    await client.subscribe(self.subscription, qos=1)
                    log.info("ingest worker %s subscribed", self.client_id)
                    self.ready.set()
                    delay = 0.5
                    async for message in client.messages:
                        await self._handle(client, message)
            except aiomqtt.MqttError as exc:
                self.ready.clear()
                log.warning("ingest worker %s lost the broker (%s); retrying", self.client_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        gateway = topics.gateway_of(topic)
        payload = message.payload if isinstance(message.payload, bytes) else b""
        try:
            result = await asyncio.to_thread(
                self.pipeline.ingest_bundle, payload, source=f"mqtt:{topic}", gateway=gateway
            )
        except (StoreError, OSError) as exc:
            log.warning(
                "store unavailable, bundle on %s not confirmed: %s", topic, type(exc).__name__
            )
            return
        except Exception:
            # The store raised something unexpected (a driver error): nothing was confirmed.
            log.exception("bundle on %s not confirmed", topic)
            return
        self.bundles += 1
        if gateway is None:
            return
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = topics.ACK_CONTENT_TYPE
        await client.publish(
            topics.ack_topic(gateway), orjson.dumps(result.ack()), qos=1, properties=props
        )
