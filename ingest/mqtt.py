"""MQTT receiver: gateway bundles in, acknowledgements out after commit.

Workers share the subscription ``$share/ingest/wardwatch/v1/gw/+/obs`` so that several
split the load. A bundle is confirmed on ``wardwatch/v1/gw/{id}/ack`` only once the store
committed it (or quarantined it); if the store is down nothing is confirmed and the gateway,
which keeps the bundle in its outbox, sends it again.

Bundles that are already waiting in the client's queue when the worker picks up the next
one are ingested together, up to ``max_batch`` bundles in one store transaction (one
commit instead of one per bundle); each of them is still confirmed only after that commit.
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

#: Bundles per store transaction at most (gateway bundles hold up to 200 Observations, so
#: about 10k rows: the batch size where COPY into the hypertable reaches its speed).
DEFAULT_MAX_BATCH = 50


class MqttIngest:
    """One ingest worker on an MQTT broker."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        broker: BrokerAddress,
        *,
        client_id: str | None = None,
        subscription: str = topics.INGEST_SHARED_SUBSCRIPTION,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.pipeline = pipeline
        self.broker = broker
        self.client_id = client_id or f"wardwatch-ingest-{uuid.uuid4().hex[:8]}"
        self.subscription = subscription
        self.max_batch = max(1, max_batch)
        self.ready = asyncio.Event()
        self.bundles = 0

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff when the broker goes away."""
        delay = 0.5
        while True:
            try:
                async with self.broker.client(self.client_id) as client:
                    await client.subscribe(self.subscription, qos=1)
                    log.info("ingest worker %s subscribed", self.client_id)
                    self.ready.set()
                    delay = 0.5
                    messages = client.messages
                    async for message in messages:
                        batch = [message]
                        # take what has already arrived, without waiting for more
                        while len(batch) < self.max_batch and len(messages) > 0:
                            batch.append(await anext(messages))
                        await self._handle(client, batch)
            except aiomqtt.MqttError as exc:
                self.ready.clear()
                log.warning("ingest worker %s lost the broker (%s); retrying", self.client_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _handle(self, client: aiomqtt.Client, messages: list[aiomqtt.Message]) -> None:
        items: list[tuple[bytes, str, str | None]] = []
        for message in messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            items.append((payload, f"mqtt:{topic}", topics.gateway_of(topic)))
        try:
            batch = await asyncio.to_thread(self.pipeline.ingest_bundles, items)
        except (StoreError, OSError) as exc:
            log.warning(
                "store unavailable, %d bundles not confirmed: %s", len(items), type(exc).__name__
            )
            return
        except Exception:
            # The store raised something unexpected (a driver error): nothing was confirmed.
            log.exception("%d bundles not confirmed", len(items))
            return
        self.bundles += len(items)
        for (_payload, _source, gateway), result in zip(items, batch.results, strict=True):
            if gateway is None:
                continue
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = topics.ACK_CONTENT_TYPE
            await client.publish(
                topics.ack_topic(gateway), orjson.dumps(result.ack()), qos=1, properties=props
            )
