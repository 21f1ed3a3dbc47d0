"""Gateway liveness in the store: status messages (ingest.gateway_status) and last bundles.

Real mosquitto, a real ``gateway.uplink.MqttUplink`` (its last will fired by cutting its
network path: a TCP proxy in between), real SQLite and TimescaleDB stores. The broker is
shared by the session and keeps retained statuses, so every test uses its own gateway ids
and clears the retained messages it leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiomqtt
import orjson
import pytest

from gateway.outbox import Outbox
from gateway.uplink import MqttUplink
from ingest.errors import StoreError
from ingest.gateway_status import GatewayStatusWatcher, StatusError, parse_status
from ingest.mqtt import MqttIngest
from ingest.pipeline import IngestPipeline
from ingest.service import run_ingest
from ingest.stores import open_store
from tests.support.services import MosquittoServer
from tests.test_e2e import running, wait_for
from wardwatch import fhir, topics
from wardwatch.cli import main as cli_main
from wardwatch.mqtt import BrokerAddress
from wardwatch.reading import Reading
from wardwatch.store import CareTeam, GatewayState, Patient, Store

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 1, 5, 8, 0, 1, 500_000, tzinfo=UTC)


def status(gateway: str, state: str, at: datetime, **extra: Any) -> bytes:
    return orjson.dumps({"gateway": gateway, "status": state, "at": fhir.format_time(at), **extra})


def new_gateway() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


# -- parsing (pure) ------------------------------------------------------------------------


def test_a_gateway_status_as_the_uplink_sends_it() -> None:
    payload = status("hub-1", "online", T0, queued=12, dropped={"thinned": 3, "refused": 0})
    state = parse_status(topics.status_topic("hub-1"), payload, RECEIVED)
    assert state == GatewayState(
        "hub-1", "online", T0, RECEIVED, 12, {"thinned": 3, "refused": 0}, None
    )
    will = parse_status(topics.status_topic("hub-1"), status("hub-1", "offline", T0), RECEIVED)
    assert (will.status, will.queued, will.dropped) == ("offline", None, {})


@pytest.mark.parametrize(
    ("payload", "code", "says"),
    [
        (b"{not json", "malformed-json", "not JSON"),
        (b"[1, 2]", "contract", "not a JSON object"),
        (b'{"status": "online", "at": "2026-01-05T08:00:00Z"}', "contract", "no 'gateway'"),
        (status("hub-2", "online", T0), "gateway-mismatch", "'hub-2' on the topic of 'hub-1'"),
        (status("hub-1", "asleep", T0), "contract", "'asleep' is not 'online' or 'offline'"),
        (b'{"gateway": "hub-1", "status": "online"}', "contract", "no 'at'"),
        (
            b'{"gateway": "hub-1", "status": "online", "at": "yesterday"}',
            "contract",
            "not an ISO 8601 time",
        ),
        (
            b'{"gateway": "hub-1", "status": "online", "at": "2026-01-05T08:00:00"}',
            "contract",
            "no time zone",
        ),
        (status("hub-1", "online", T0, queued=-1), "contract", "'queued' must be a count"),
        (status("hub-1", "online", T0, queued=True), "contract", "'queued' must be a count"),
        (status("hub-1", "online", T0, dropped=[1]), "contract", "'dropped' must be an object"),
        (
            status("hub-1", "online", T0, dropped={"thinned": 1.5}),
            "contract",
            "'dropped.thinned' must be a count",
        ),
        (b" " * (64 * 1024 + 1), "too-large", "65537 bytes"),
    ],
)
def test_a_bad_status_is_refused_with_a_reason(payload: bytes, code: str, says: str) -> None:
    with pytest.raises(StatusError, match=says) as refused:
        parse_status(topics.status_topic("hub-1"), payload, RECEIVED)
    assert refused.value.code == code


def test_only_status_topics_are_statuses() -> None:
    with pytest.raises(StatusError, match="not a gateway status topic"):
        parse_status(topics.obs_topic("hub-1"), status("hub-1", "online", T0), RECEIVED)


# -- on a real broker ----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("timescale", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        f"sqlite:{tmp_path / 'store.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_dsn")
    )
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:{tmp_path / 'store.db'}")
    try:
        yield opened
    finally:
        opened.close()


class Clock:
    """The watcher's clock: fixed until moved."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class CuttableLink:
    """A TCP proxy to the broker; :meth:`cut` drops every connection without an MQTT
    DISCONNECT (as a power cut or a lost uplink would) and accepts no new one."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.broker = broker
        self.server: asyncio.Server | None = None
        self.transports: list[asyncio.WriteTransport] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"mqtt://127.0.0.1:{port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.broker.host, self.broker.port)
        self.transports += [writer.transport, up_writer.transport]

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for transport in self.transports:
            transport.abort()


@contextlib.asynccontextmanager
async def publisher(broker: MosquittoServer) -> AsyncIterator[aiomqtt.Client]:
    """A client publishing statuses; clears the retained ones it published when done."""
    published: set[str] = set()
    async with BrokerAddress.parse(broker.url).client(f"test-{uuid.uuid4().hex[:8]}") as client:
        real_publish = client.publish

        async def publish(topic: str, payload: bytes, **kw: Any) -> None:
            published.add(topic)
            await real_publish(topic, payload, **kw)

        client.publish = publish  # type: ignore[method-assign]
        try:
            yield client
        finally:
            for topic in published:
                await real_publish(topic, b"", qos=1, retain=True)


def readings(gateway: str, count: int) -> list[dict[str, Any]]:
    return [
        fhir.observation_from_reading(
            Reading("heart_rate", T0 + timedelta(minutes=n), 60 + n, "/min"),
            patient="p-1",
            device="hr-1",
            gateway=gateway,
        )
        for n in range(count)
    ]


@pytest.mark.mqtt
async def test_a_connected_gateway_is_online_and_its_last_will_makes_it_offline(
    mosquitto: MosquittoServer, store: Store, tmp_path: Path
) -> None:
    gw = new_gateway()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox.put(readings(gw, 3))  # nobody acknowledges them: they stay queued
    link = CuttableLink(mosquitto)
    uplink = MqttUplink(outbox, BrokerAddress.parse(await link.start()), gw, ack_timeout=600)
    watcher = GatewayStatusWatcher(store, BrokerAddress.parse(mosquitto.url))

    def state() -> GatewayState | None:
        return store.get_gateway(gw)

    try:
        async with running(watcher.run(), uplink.run()):
            await wait_for(lambda: (s := state()) is not None and s.status == "online")
            online = state()
            assert online is not None and online.queued == 3
            assert online.dropped == {"thinned": 0, "refused": 0}
            assert online.status_at is not None and online.updated_at is not None

            # The broker publishes the will (retained, QoS 1), composed when the uplink
            # started: its `at` is older than the online status, and it still counts.
            link.cut()
            await wait_for(lambda: (s := state()) is not None and s.status == "offline")
            offline = state()
            assert offline is not None and offline.status_at is not None
            assert offline.status_at >= online.status_at and offline.queued is None

        # A new watcher (an ingest restart) gets the retained will again: nothing moves.
        again = GatewayStatusWatcher(store, BrokerAddress.parse(mosquitto.url))
        async with running(again.run()):
            await asyncio.wait_for(again.ready.wait(), 30)
            # retained statuses come at subscription: a later message comes after the will
            async with publisher(mosquitto) as client:
                marker = new_gateway()
                await client.publish(
                    topics.status_topic(marker), status(marker, "online", T0), qos=1, retain=True
                )
                await wait_for(lambda: store.get_gateway(marker) is not None)
        assert state() == offline and again.stats.stale >= 1
    finally:
        outbox.close()
        async with publisher(mosquitto) as client:
            await client.publish(topics.status_topic(gw), b"", qos=1, retain=True)


@pytest.mark.mqtt
async def test_statuses_are_ordered_by_their_time_and_bad_ones_quarantined(
    mosquitto: MosquittoServer, sqlite_store: Store
) -> None:
    store = sqlite_store
    gw, other = new_gateway(), new_gateway()
    clock = Clock(RECEIVED)
    watcher = GatewayStatusWatcher(store, BrokerAddress.parse(mosquitto.url), clock=clock)
    topic = topics.status_topic(gw)
    async with running(watcher.run()), publisher(mosquitto) as client:
        await asyncio.wait_for(watcher.ready.wait(), 30)
        newer = T0 + timedelta(minutes=5)
        await client.publish(topic, status(gw, "online", newer, queued=7), qos=1, retain=True)
        await client.publish(topic, status(gw, "online", T0, queued=1), qos=1, retain=True)
        # bad ones do not stop the watcher
        await client.publish(topic, b"{not json", qos=1, retain=True)
        await client.publish(topic, status(other, "offline", T0 + timedelta(hours=1)), qos=1)
        await wait_for(lambda: watcher.stats.quarantined == 2)
        state = store.get_gateway(gw)
        assert state is not None and (state.status, state.status_at, state.queued) == (
            "online",
            newer,
            7,
        )
        assert store.get_gateway(other) is None  # the mismatched status recorded nothing

        # an offline published as the last will is (retained, QoS 1), newer: offline
        clock.now = RECEIVED + timedelta(minutes=10)
        will_at = T0 + timedelta(minutes=6)
        await client.publish(topic, status(gw, "offline", will_at), qos=1, retain=True)
        await wait_for(lambda: (s := store.get_gateway(gw)) is not None and s.status == "offline")
        offline = store.get_gateway(gw)
        assert offline is not None
        assert (offline.status_at, offline.updated_at) == (will_at, clock.now)
        # and an older online after it does not bring the gateway back
        await client.publish(topic, status(gw, "online", newer, queued=7), qos=1, retain=True)
        await wait_for(lambda: watcher.stats.stale == 2)
        assert store.get_gateway(gw) == offline

    mine = [q for q in store.list_quarantine() if q.source == f"mqtt:{topic}"]
    assert [(q.reason_code, q.payload) for q in mine] == [
        ("malformed-json", b"{not json"),
        ("gateway-mismatch", status(other, "offline", T0 + timedelta(hours=1))),
    ]
    assert all(q.received_at == RECEIVED for q in mine)
    assert f"names gateway '{other}' on the topic of '{gw}'" in mine[1].reason


@pytest.mark.mqtt
async def test_last_bundle_at_is_set_when_ingest_commits_a_gateways_bundle(
    mosquitto: MosquittoServer, store: Store, tmp_path: Path
) -> None:
    gw, silent = new_gateway(), new_gateway()
    store.upsert_care_team(CareTeam("t", "Team"))
    store.upsert_patient(Patient("p-1", "Synthetic One", "t"))
    store.pair_device("hr-1", "p-1")
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox.put(readings(gw, 5))
    arrived = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    worker = MqttIngest(
        IngestPipeline(store, clock=lambda: arrived), BrokerAddress.parse(mosquitto.url)
    )
    uplink = MqttUplink(outbox, BrokerAddress.parse(mosquitto.url), gw)
    try:
        async with running(worker.run()):
            await asyncio.wait_for(worker.ready.wait(), 30)
            async with running(uplink.run()):
                await wait_for(lambda: outbox.pending() == 0)
            # a bundle quarantined whole still says the hub is sending
            async with publisher(mosquitto) as client:
                await client.publish(topics.obs_topic(silent), b"{broken", qos=1)
                await wait_for(lambda: store.get_gateway(silent) is not None)
    finally:
        outbox.close()
        async with publisher(mosquitto) as client:
            await client.publish(topics.status_topic(gw), b"", qos=1, retain=True)

    assert store.count_observations() == 5
    sent = store.get_gateway(gw)
    assert sent is not None and sent.last_bundle_at == arrived
    assert sent.status is None  # no status watcher ran: known by its bundles only
    broken = store.get_gateway(silent)
    assert broken is not None and broken.last_bundle_at == arrived


@pytest.mark.mqtt
async def test_gateways_list_cli(
    mosquitto: MosquittoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:{tmp_path / 'store.db'}"
    store = open_store(url)
    gw = new_gateway()
    watcher = GatewayStatusWatcher(store, BrokerAddress.parse(mosquitto.url), clock=Clock(RECEIVED))
    async with running(watcher.run()), publisher(mosquitto) as client:
        payload = status(gw, "online", T0, queued=2, dropped={"thinned": 1, "refused": 0})
        await client.publish(topics.status_topic(gw), payload, qos=1, retain=True)
        await wait_for(lambda: store.get_gateway(gw) is not None)
    store.note_gateway_bundle(gw, RECEIVED)
    store.close()

    assert cli_main(["gateways", "list", "--store", url, "--json"]) == 0
    listed = {g["id"]: g for g in orjson.loads(capsys.readouterr().out)}
    assert listed[gw] == {
        "id": gw,
        "status": "online",
        "status_at": "2026-01-05T08:00:00+00:00",
        "updated_at": "2026-01-05T08:00:01.500000+00:00",
        "queued": 2,
        "dropped": {"thinned": 1, "refused": 0},
        "last_bundle_at": "2026-01-05T08:00:01.500000+00:00",
    }
    assert cli_main(["gateways", "list", "--store", url]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(gw))
    assert "online" in line and "queued 2" in line and "refused=0,thinned=1" in line


class FlakyStore:
    """A real SQLite store that fails its first ``failures`` status writes (database down)."""

    def __init__(self, inner: Store, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def record_gateway_status(self, state: GatewayState) -> bool:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("record_gateway_status failed: simulated outage")
        return self.inner.record_gateway_status(state)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.mqtt
async def test_a_status_is_held_while_the_store_is_down(
    mosquitto: MosquittoServer, sqlite_store: Store
) -> None:
    gw = new_gateway()
    flaky = FlakyStore(sqlite_store, failures=2)
    watcher = GatewayStatusWatcher(
        cast(Store, flaky), BrokerAddress.parse(mosquitto.url), retry_delay=0.01
    )
    async with running(watcher.run()), publisher(mosquitto) as client:
        await asyncio.wait_for(watcher.ready.wait(), 30)
        await client.publish(topics.status_topic(gw), status(gw, "online", T0), qos=1, retain=True)
        await wait_for(lambda: sqlite_store.get_gateway(gw) is not None)
    assert watcher.stats.store_failures >= 2 and flaky.failures == 0


@pytest.mark.mqtt
async def test_ingest_run_records_gateway_statuses(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    url = f"sqlite:{tmp_path / 'store.db'}"
    reader = open_store(url)
    gw = new_gateway()
    try:
        async with running(run_ingest(url, mosquitto.url)), publisher(mosquitto) as client:
            payload = status(gw, "online", T0, queued=4)
            await client.publish(topics.status_topic(gw), payload, qos=1, retain=True)
            # the watcher may subscribe after the publish: the status is retained
            await wait_for(lambda: reader.get_gateway(gw) is not None)
        state = reader.get_gateway(gw)
        assert state is not None and (state.status, state.queued) == ("online", 4)
    finally:
        reader.close()


@pytest.mark.mqtt
async def test_a_gateway_shut_down_cleanly_says_it_is_offline(
    mosquitto: MosquittoServer, sqlite_store: Store, tmp_path: Path
) -> None:
    """A clean DISCONNECT makes the broker drop the will: the uplink says "offline" itself."""
    gw = new_gateway()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    uplink = MqttUplink(outbox, BrokerAddress.parse(mosquitto.url), gw)
    watcher = GatewayStatusWatcher(sqlite_store, BrokerAddress.parse(mosquitto.url))

    def status_now() -> str | None:
        s = sqlite_store.get_gateway(gw)
        return s.status if s is not None else None

    try:
        async with running(watcher.run()):
            async with running(uplink.run()):
                await wait_for(lambda: status_now() == "online")
            await wait_for(lambda: status_now() == "offline")
    finally:
        outbox.close()
        async with publisher(mosquitto) as client:
            await client.publish(topics.status_topic(gw), b"", qos=1, retain=True)
