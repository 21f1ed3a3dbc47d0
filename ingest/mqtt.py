"""MQTT receiver: gateway bundles in, acknowledgements out after commit.

Workers share the subscription ``$share/ingest/wardwatch/v1/gw/+/obs`` so that several
split the load. A bundle is confirmed on ``wardwatch/v1/gw/{id}/ack`` only once the store
committed it (or quarantined it); if the store is down nothing is confirmed and the gateway,
which keeps the bundle in its outbox, sends it again.

Throughput: bundles that are already waiting when the worker takes the next one are
ingested together, up to ``max_batch`` bundles in one store transaction; two stages
overlap: while one batch is being written (the database's work), what arrives meanwhile is
parsed and validated (ours) and joins the next batch; and a batch's confirmations are
published together (one at a time, each waiting for the broker's PUBACK, they used to
cost more than the commit). Every bundle is still confirmed only after its batch's commit.

Backpressure, without losing what was acknowledged
---------------------------------------------------
A bounded client queue alone is the classic silent-loss trap: the client library
acknowledges (PUBACK) each QoS 1 message as it arrives, so a full queue throws away
messages the broker already forgot. Here:

- Acknowledgement is **manual** (paho-mqtt's ``manual_ack``): a message is PUBACKed only
  after its batch was committed (stored or quarantined) and its confirmation published
  on the gateway's ack topic.
- The worker connects with MQTT v5 **Receive Maximum** = ``receive_maximum``: a broker
  that honours it sends at most that many messages the worker has not acknowledged; the
  rest wait at the broker (and at the gateways, which hold a few unconfirmed bundles each).
- The worker **counts what it holds** (received, not yet acknowledged: in the client's
  queue, in the batch being validated, in the one being written) and takes no message
  beyond ``receive_maximum``. A message refused that way was never acknowledged, neither
  to the broker nor to the gateway, so the gateway, which keeps it in its outbox until
  confirmed, sends it again after its acknowledgement timeout. With a broker that
  honours Receive Maximum this never happens. Mosquitto before 2.0.13 does not (measured
  with 2.0.11: every PUBACK releases another ``receive_maximum`` messages; 2.0.13 fixed
  "inflight quota management"), which is why the count is ours and not the broker's.
- ``stats`` reports the most messages held at once (``max_held`` <= ``receive_maximum``),
  the client queue's high-water mark (``max_queued``) and the messages refused over the
  bound (``over_bound``).

So everything the worker holds is bounded, and every message it holds or refuses is still
someone else's responsibility (the broker's session or the gateway's outbox): if the worker
dies, nothing acknowledged is lost.

A store that fails keeps its batch *held*: the worker retries with backoff and takes
nothing new meanwhile (so a database outage stops intake at ``receive_maximum``
messages instead of piling up work). A batch that fails is then committed bundle by
bundle; a bundle the store refuses on its own twice while it still accepts a quarantine
entry is quarantined whole (``store-rejected``) and confirmed as rejected, so one
poisoned bundle cannot stall a worker. If the broker connection drops, unacknowledged
messages are not confirmed; the gateway resends them after its acknowledgement timeout
and the store keeps each reading once.

aiomqtt 2.5 has no parameter for manual acknowledgement, and ``BrokerAddress.client`` none
for CONNECT properties or the queue type: :meth:`MqttIngest._client` sets them on the
client it builds (``tests/test_ingest_load.py`` fails if that stops working).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.pipeline import IngestPipeline, PreparedBatch, PreparedBundle, Submission
from wardwatch import topics
from wardwatch.mqtt import BrokerAddress

log = logging.getLogger(__name__)

#: Bundles per store transaction at most (gateway bundles hold up to 200 Observations, so
#: about 10k rows: the batch size where COPY into the hypertable reaches its speed).
DEFAULT_MAX_BATCH = 50
#: Unacknowledged messages the broker may send a worker (MQTT v5 Receive Maximum): room for
#: one batch being written and the next one being validated.
DEFAULT_RECEIVE_MAXIMUM = 2 * DEFAULT_MAX_BATCH
#: How many times a bundle that fails alone is retried before it is deemed refused by the store.
STORE_REJECT_ATTEMPTS = 2


@dataclass(slots=True)
class IngestStats:
    """What one worker did, for tests, benchmarks and operators."""

    bundles: int = 0
    """Bundles committed (stored or quarantined) and confirmed."""
    batches: int = 0
    """Store transactions they took (bundles / batches: the mean batch size)."""
    held: int = 0
    """Messages received and not yet acknowledged to the broker, now."""
    max_held: int = 0
    """The most messages held at once."""
    max_queued: int = 0
    """The most messages waiting in the client's queue at once."""
    over_bound: int = 0
    """Messages refused unacknowledged because ``receive_maximum`` were held."""
    store_failures: int = 0
    """Failed commit attempts (each retried)."""
    store_rejected: int = 0
    """Bundles quarantined because the store refused them on their own."""


def _content_type(message: aiomqtt.Message) -> str | None:
    value = getattr(message.properties, "ContentType", None)
    return value if isinstance(value, str) else None


class _HeldQueue(asyncio.Queue[aiomqtt.Message]):
    """The client's incoming queue, refusing a message once ``bound`` are held (received and
    not yet acknowledged). aiomqtt logs and skips a refused message; with manual
    acknowledgement it stays unacknowledged, so its gateway sends it again."""

    def __init__(self, stats: IngestStats, bound: int) -> None:
        super().__init__()
        self.stats = stats
        self.bound = bound

    def put_nowait(self, item: aiomqtt.Message) -> None:
        stats = self.stats
        if stats.held >= self.bound:
            stats.over_bound += 1
            if stats.over_bound % 1000 == 1:  # once, then every thousandth
                log.warning(
                    "broker sent more than the receive maximum (%d held): %d messages left "
                    "unacknowledged so far, for their gateways to send again",
                    stats.held,
                    stats.over_bound,
                )
            raise asyncio.QueueFull
        super().put_nowait(item)
        stats.held += 1
        stats.max_held = max(stats.max_held, stats.held)
        stats.max_queued = max(stats.max_queued, self.qsize())


@dataclass(slots=True)
class _NextBatch:
    """Validated bundles waiting for the committer, with their messages."""

    messages: list[aiomqtt.Message] = field(default_factory=list)
    bundles: list[PreparedBundle] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    taken: asyncio.Event = field(default_factory=asyncio.Event)


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
        receive_maximum: int | None = None,
        retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
    ) -> None:
        self.pipeline = pipeline
        self.broker = broker
        self.client_id = client_id or f"wardwatch-ingest-{uuid.uuid4().hex[:8]}"
        self.subscription = subscription
        self.max_batch = max(1, max_batch)
        bound = receive_maximum if receive_maximum is not None else 2 * self.max_batch
        self.receive_maximum = min(65535, max(1, bound))  # 65535: the MQTT v5 maximum
        self.max_batch = min(self.max_batch, self.receive_maximum)
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.ready = asyncio.Event()
        self.stats = IngestStats()
        self._last_error: Exception | None = None

    def _client(self) -> aiomqtt.Client:
        """An MQTT v5 client with manual acknowledgement, Receive Maximum and a queue that
        counts what this worker holds (see the module docstring)."""
        client = self.broker.client(self.client_id)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = self.receive_maximum
        client._properties = props  # aiomqtt hands these to paho's connect()
        client._client.manual_ack_set(True)  # paho-mqtt 2.x
        client._queue = _HeldQueue(self.stats, self.receive_maximum)
        # a batch's confirmations are published together (aiomqtt warns above this)
        client.pending_calls_threshold = self.receive_maximum + 10
        self.stats.held = 0  # a new session: what the last one held is not ours to ack
        return client

    @property
    def bundles(self) -> int:
        """Bundles committed and confirmed so far."""
        return self.stats.bundles

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff when the broker goes away."""
        delay = 0.5
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe(self.subscription, qos=1)
                    log.info(
                        "ingest worker %s subscribed (receive maximum %d)",
                        self.client_id,
                        self.receive_maximum,
                    )
                    self.ready.set()
                    delay = 0.5
                    await self._consume(client)
            except* aiomqtt.MqttError as group:
                self.ready.clear()
                log.warning(
                    "ingest worker %s lost the broker (%s); retrying",
                    self.client_id,
                    group.exceptions[0],
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _consume(self, client: aiomqtt.Client) -> None:
        """Receive and validate in one task, commit and confirm in another. What is
        validated while a commit runs waits in ``next_up`` and grows (up to ``max_batch``
        bundles) until the committer takes it all: a busy store gets bigger batches."""
        next_up = _NextBatch()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._receive(client, next_up))
            tg.create_task(self._commit_loop(client, next_up))

    async def _receive(self, client: aiomqtt.Client, next_up: _NextBatch) -> None:
        messages = client.messages
        async for message in messages:
            batch = [message]
            # take what has already arrived, without waiting for more
            room = max(1, self.max_batch - len(next_up.messages))
            while len(batch) < room and len(messages) > 0:
                batch.append(await anext(messages))
            items = [
                Submission(
                    m.payload if isinstance(m.payload, bytes) else b"",
                    f"mqtt:{m.topic.value}",
                    topics.gateway_of(m.topic.value),
                    _content_type(m),
                )
                for m in batch
            ]
            prepared = await asyncio.to_thread(self.pipeline.prepare, items)
            next_up.messages.extend(batch)
            next_up.bundles.extend(prepared.bundles)
            next_up.ready.set()
            while len(next_up.messages) >= self.max_batch:  # full: wait for the committer
                next_up.taken.clear()
                await next_up.taken.wait()

    async def _commit_loop(self, client: aiomqtt.Client, next_up: _NextBatch) -> None:
        while True:
            await next_up.ready.wait()
            batch, prepared = next_up.messages, PreparedBatch(next_up.bundles)
            next_up.messages, next_up.bundles = [], []
            next_up.ready.clear()
            next_up.taken.set()
            await self._commit(prepared)
            self.stats.batches += 1
            # all at once: one round trip to the broker, not one per bundle
            await asyncio.gather(
                self._note_gateways(prepared),
                *(
                    self._confirm(client, m, b)
                    for m, b in zip(batch, prepared.bundles, strict=True)
                ),
            )
            self.stats.bundles += len(batch)

    async def _note_gateways(self, prepared: PreparedBatch) -> None:
        """Record each gateway's latest committed bundle of the batch (one store write per
        gateway and batch). Liveness only: a failure here is logged, never holds the batch."""
        latest: dict[str, datetime] = {}
        for b in prepared.bundles:
            gateway = b.submission.gateway
            if gateway is not None:
                latest[gateway] = max(b.received_at, latest.get(gateway, b.received_at))
        if not latest:
            return
        store = self.pipeline.store

        def note() -> None:
            for gateway, at in latest.items():
                store.note_gateway_bundle(gateway, at)

        try:
            await asyncio.to_thread(note)
        except Exception as exc:  # StoreError, or a driver error the store did not wrap
            log.warning(
                "could not record the last bundle of %d gateways: %s",
                len(latest),
                type(exc).__name__,
            )

    async def _confirm(
        self, client: aiomqtt.Client, message: aiomqtt.Message, bundle: PreparedBundle
    ) -> None:
        """Tell the gateway what became of its bundle, then acknowledge it to the broker."""
        gateway = bundle.submission.gateway
        if gateway is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = topics.ACK_CONTENT_TYPE
            await client.publish(
                topics.ack_topic(gateway),
                orjson.dumps(bundle.result.ack()),
                qos=1,
                properties=props,
            )
        # committed and confirmed: only now may the broker forget it
        client._client.ack(message.mid, message.qos)
        self.stats.held -= 1

    async def _commit(self, prepared: PreparedBatch) -> None:
        """Commit the batch; if that fails, commit its bundles one by one (holding them,
        with backoff, while the store is unavailable)."""
        if await self._try_commit(prepared):
            return
        if len(prepared.bundles) > 1:
            log.warning("committing %d bundles one by one", len(prepared.bundles))
        for bundle in prepared.bundles:
            await self._commit_alone(bundle)

    async def _commit_alone(self, bundle: PreparedBundle) -> None:
        """Commit one bundle, retrying with backoff while the store is unavailable.

        After ``STORE_REJECT_ATTEMPTS`` failures in a row, if the store answers a read, one
        more attempt; if that fails too it is this bundle the store refuses, not the store
        that is down: quarantine it whole (``store-rejected``)."""
        batch = PreparedBatch([bundle])
        delay = self.retry_delay
        failures = 0
        while not await self._try_commit(batch):
            failures += 1
            if failures >= STORE_REJECT_ATTEMPTS and await self._store_answers():
                if await self._try_commit(batch):
                    return
                reason = f"the store refused the bundle: {self._last_error}"[:500]
                try:
                    await asyncio.to_thread(self.pipeline.reject, bundle, "store-rejected", reason)
                except Exception:  # then the store is down after all
                    failures = 0
                else:
                    self.stats.store_rejected += 1
                    return
            log.warning("store unavailable, a bundle is held; retrying in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_delay)

    async def _store_answers(self) -> bool:
        """Does the store answer a cheap read right now?"""
        try:
            await asyncio.to_thread(self.pipeline.store.device_patient, "")
        except Exception:  # any failure means "not now"
            return False
        return True

    async def _try_commit(self, batch: PreparedBatch) -> bool:
        try:
            await asyncio.to_thread(self.pipeline.commit, batch)
        except Exception as exc:  # StoreError, or a driver error the store did not wrap
            self.stats.store_failures += 1
            self._last_error = exc
            log.warning("commit of %d bundles failed: %s", len(batch.bundles), type(exc).__name__)
            return False
        return True
