"""Faults on the real chain: the broker goes away mid-stream, the database restarts.

After each, the database holds every reading exactly once (count and identifiers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.ble import SimulatedAir
from firmware_sim.devices import BloodPressureCuff, BloodPressureReading
from gateway.ble import PairedDevice
from gateway.runtime import Gateway, GatewayConfig
from ingest.mqtt import MqttIngest
from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from tests.support.services import MosquittoServer, TimescaleServer
from tests.test_e2e import running, wait_for
from wardwatch.fhir import reading_id
from wardwatch.mqtt import BrokerAddress
from wardwatch.store import CareTeam, Patient, Store

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]

CUFF = "C0:FF:EE:00:00:09"
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


@pytest.fixture
def broker() -> Iterator[MosquittoServer]:
    """A broker of this test's own, so that stopping it disturbs no other test."""
    from tests.conftest import _start

    server = _start(MosquittoServer)
    try:
        yield server
    finally:
        server.close()


def enrol(store: Store) -> None:
    store.upsert_care_team(CareTeam("t", "Team"))
    store.upsert_patient(Patient("p-9", "Synthetic Nine", "t"))
    store.pair_device("cuff-9", "p-9")


def reading(n: int) -> BloodPressureReading:
    return BloodPressureReading(120 + n % 10, 80, 93, 70, T0 + timedelta(minutes=n))


def expected_ids(count: int) -> set[str]:
    return {
        reading_id("cuff-9", T0 + timedelta(minutes=n), kind)
        for n in range(count)
        for kind in ("blood_pressure", "heart_rate")
    }


def stored_ids(store: Store) -> set[str]:
    return {o.identifier for o in store.observations("p-9")}


def chain(
    dsn: str, broker_url: str, tmp_path: Path
) -> tuple[Store, MqttIngest, BloodPressureCuff, Gateway]:
    """Store, ingest worker, a cuff in range and the gateway paired to it (not started)."""
    store = open_store(dsn)
    enrol(store)
    worker = MqttIngest(IngestPipeline(store), BrokerAddress.parse(broker_url))
    air = SimulatedAir()
    cuff = BloodPressureCuff(CUFF)
    air.add(cuff)
    gateway = Gateway(
        GatewayConfig(
            gateway_id="gw-fault",
            uplink=broker_url,
            outbox_path=tmp_path / "outbox.sqlite",
            devices=(PairedDevice("cuff-9", "p-9", address=CUFF),),
            ack_timeout=2.0,
        ),
        scanner_backend=air.scanner_backend(),
        client_backend=air.client_backend(),
    )
    return store, worker, cuff, gateway


async def test_broker_outage_mid_stream_loses_and_duplicates_nothing(
    broker: MosquittoServer, pg_dsn: str, tmp_path: Path
) -> None:
    store, worker, cuff, gateway = chain(pg_dsn, broker.url, tmp_path)
    async with running(worker.run(), gateway.run()):
        for n in range(10):
            await cuff.take_measurement(reading(n))
        await wait_for(lambda: store.count_observations() == 20)
        await wait_for(lambda: gateway.outbox.pending() == 0)  # acknowledged, not just stored
        broker.stop()
        for n in range(10, 30):  # the hub keeps reading its devices while the uplink is down
            await cuff.take_measurement(reading(n))
        await wait_for(lambda: gateway.outbox.pending() == 40)
        await asyncio.sleep(2.5)  # longer than the ack timeout: resends are attempted, and fail
        broker.start()
        await wait_for(lambda: gateway.outbox.pending() == 0, timeout=120)
    assert store.count_observations() == 60
    assert stored_ids(store) == expected_ids(30)
    store.close()


async def test_database_restart_mid_stream_loses_and_duplicates_nothing(
    mosquitto: MosquittoServer, timescale: TimescaleServer, pg_dsn: str, tmp_path: Path
) -> None:
    store, worker, cuff, gateway = chain(pg_dsn, mosquitto.url, tmp_path)
    async with running(worker.run(), gateway.run()):
        for n in range(10):
            await cuff.take_measurement(reading(n))
        await wait_for(lambda: store.count_observations() == 20)
        await asyncio.to_thread(timescale.stop, "immediate")
        for n in range(10, 25):
            await cuff.take_measurement(reading(n))
        await asyncio.sleep(3)  # bundles arrive at ingest, fail to commit, are not acknowledged
        assert gateway.outbox.pending() > 0
        await asyncio.to_thread(timescale.start)
        await wait_for(lambda: gateway.outbox.pending() == 0, timeout=120)
    assert store.count_observations() == 50
    assert stored_ids(store) == expected_ids(25)
    store.close()
