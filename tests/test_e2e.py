"""The whole chain on real services: simulated BLE cuff -> gateway -> mosquitto -> ingest
-> TimescaleDB -> alerting -> apprise json:// -> a local HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.observation import Observation

from alerting.wiring import alerting_hook
from firmware_sim.ble import SimulatedAir
from firmware_sim.devices import BloodPressureCuff, BloodPressureReading
from gateway.ble import PairedDevice
from gateway.runtime import Gateway, GatewayConfig
from ingest.mqtt import MqttIngest
from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from tests.support.receiver import JsonReceiver
from tests.support.services import MosquittoServer
from wardwatch.fhir import reading_id
from wardwatch.mqtt import BrokerAddress
from wardwatch.store import CareTeam, Patient, Store

pytestmark = [pytest.mark.e2e, pytest.mark.mqtt, pytest.mark.postgres]

CUFF = "C0:FF:EE:00:00:01"
AT = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)


async def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(*coros: object) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coros]  # type: ignore[arg-type]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        # generous under CI load: aiomqtt alone may wait 10 s for a disconnect acknowledgement
        _done, pending = await asyncio.wait(tasks, timeout=60)
        if pending:
            stacks = "\n".join(f"{t.get_name()}: {t.get_stack()}" for t in pending)
            raise AssertionError(f"services did not stop when cancelled:\n{stacks}")


def enrol(store: Store, notify_url: str) -> None:
    store.upsert_care_team(CareTeam("team-a", "Team A", (notify_url,)))
    store.upsert_patient(Patient("p-001", "Synthetic Person One", "team-a"))
    store.pair_device("cuff-001", "p-001")


async def test_crisis_reading_flows_end_to_end(
    mosquitto: MosquittoServer, pg_dsn: str, tmp_path: Path
) -> None:
    store = open_store(pg_dsn)
    with JsonReceiver() as receiver:
        enrol(store, receiver.url)
        hook, alert_tasks = alerting_hook(store)
        pipeline = IngestPipeline(store, on_stored=[hook])
        worker = MqttIngest(pipeline, BrokerAddress.parse(mosquitto.url))

        air = SimulatedAir()
        cuff = BloodPressureCuff(CUFF, [BloodPressureReading(186, 124, 145, 88, AT)])
        air.add(cuff)
        gateway = Gateway(
            GatewayConfig(
                gateway_id="gw-e2e",
                uplink=mosquitto.url,
                outbox_path=tmp_path / "outbox.sqlite",
                devices=(PairedDevice("cuff-001", "p-001", address=CUFF),),
            ),
            scanner_backend=air.scanner_backend(),
            client_backend=air.client_backend(),
        )
        async with running(worker.run(), gateway.run()):
            await wait_for(lambda: store.count_observations() == 2)
            await wait_for(receiver.event.is_set)
            await wait_for(lambda: gateway.outbox.pending() == 0)
            await alert_tasks.drain()

    # The Observation in TimescaleDB: values, codes, units, identifier.
    rid = reading_id("cuff-001", AT, "blood_pressure")
    stored = store.get_observation(rid)
    assert stored is not None
    assert stored.patient == "p-001" and stored.device == "cuff-001" and stored.gateway == "gw-e2e"
    assert stored.kind == "blood_pressure" and stored.at == AT
    assert stored.components == {
        "systolic": 186.0,
        "diastolic": 124.0,
        "mean_arterial_pressure": 145.0,
    }
    doc = orjson.loads(stored.resource)
    Observation.model_validate(doc)
    assert doc["identifier"] == [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{rid}"}]
    assert doc["code"]["coding"][0] == {
        "system": "urn:iso:std:iso:11073:10101",
        "code": "150020",
        "display": "MDC_PRESS_BLD_NONINV",
    }
    assert {
        "system": "http://loinc.org",
        "code": "85354-9",
        "display": "Blood pressure panel",
    } in doc["code"]["coding"]
    systolic = doc["component"][0]
    assert systolic["code"]["coding"][1]["code"] == "8480-6"
    assert systolic["valueQuantity"] == {
        "value": 186,
        "unit": "mm[Hg]",
        "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]",
    }
    pulse = store.get_observation(reading_id("cuff-001", AT, "heart_rate"))
    assert pulse is not None and pulse.value == 88.0 and pulse.unit == "/min"
    assert orjson.loads(pulse.resource)["code"]["coding"][0]["code"] == "149546"

    # The alert in the store and at the receiver (through real apprise).
    alerts = store.list_alerts()
    assert [(a.patient, a.rule, a.severity) for a in alerts] == [
        ("p-001", "bp.hypertensive_crisis", "urgent")
    ]
    assert alerts[0].observations == (rid,)
    assert len(receiver.received) == 1
    delivered = orjson.dumps(receiver.received[0]).decode()
    assert "bp.hypertensive_crisis" in delivered and "p-001" in delivered
    assert "Synthetic Person One" not in delivered
    store.close()


async def test_duplicate_and_malformed_bundles_over_mqtt(
    mosquitto: MosquittoServer, pg_dsn: str, tmp_path: Path
) -> None:
    """The same reading twice is stored once; a malformed payload is quarantined with a
    reason and ingest keeps going."""
    import aiomqtt

    from wardwatch import topics
    from wardwatch.fhir import bundle, observation_from_reading
    from wardwatch.reading import Component, Reading

    store = open_store(pg_dsn)
    enrol(store, "json://127.0.0.1:9/unused")
    pipeline = IngestPipeline(store)
    worker = MqttIngest(pipeline, BrokerAddress.parse(mosquitto.url))
    reading = Reading(
        "blood_pressure",
        AT,
        components=(Component("systolic", 120, "mm[Hg]"), Component("diastolic", 80, "mm[Hg]")),
    )
    obs = observation_from_reading(reading, patient="p-001", device="cuff-001", gateway="gw-x")
    acks: list[dict[str, object]] = []
    async with running(worker.run()):
        await asyncio.wait_for(worker.ready.wait(), 10)
        async with aiomqtt.Client(
            "127.0.0.1", mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as c:
            await c.subscribe(topics.ack_topic("gw-x"), qos=1)
            for payload in (
                orjson.dumps(bundle([obs], bundle_id="b1")),
                b'{"resourceType": "Bundle", "type": "batch", "entry": [',
                orjson.dumps(bundle([obs, obs], bundle_id="b2")),
            ):
                await c.publish(topics.obs_topic("gw-x"), payload, qos=1)
            async with asyncio.timeout(15):
                async for message in c.messages:
                    acks.append(orjson.loads(message.payload))  # type: ignore[arg-type]
                    if len(acks) == 3:
                        break
    assert store.count_observations() == 1
    assert [a["bundle"] for a in acks] == ["b1", None, "b2"]
    quarantined = store.list_quarantine()
    assert len(quarantined) == 1
    assert quarantined[0].reason_code == "malformed-json"
    assert quarantined[0].source == "mqtt:wardwatch/v1/gw/gw-x/obs"
    assert quarantined[0].payload.startswith(b'{"resourceType": "Bundle"')
    store.close()
