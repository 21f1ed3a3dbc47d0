"""Every shipped device profile, end to end: its simulated device -> the real gateway
(profile chosen from the advertisement or topic, session steps run, decoding through the
profile) -> HTTP uplink -> ingest (uvicorn, in-process) -> SQLite store.

BLE profiles run through ``SimulatedAir``; MQTT ones publish to the real mosquitto broker.
The store must hold exactly the Observations the profile's valid samples expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import uvicorn
from bleak import BleakClient
from bleak.exc import BleakError
from fhir.resources.R4B.observation import Observation

from firmware_sim.ble import SimulatedAir, SimulatedPeripheral
from firmware_sim.mqtt_devices import SimulatedMqttDevice
from firmware_sim.profile_devices import (
    AdvertisingProfilePeripheral,
    ProfilePeripheral,
    peripheral_for_profile,
)
from gateway.ble import PairedDevice, uuid16
from gateway.decoders import DeviceContext, Operator, decode_racp_request
from gateway.profiles import Advertisement, Profile, ProfileRegistry
from gateway.profiles._model import ExpectedReading, flatten
from gateway.runtime import Gateway, GatewayConfig
from ingest.http import create_app
from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from tests.support.services import MosquittoServer
from tests.test_e2e import running, wait_for
from wardwatch.fhir import facts_from_observation
from wardwatch.reading import Reading
from wardwatch.store import CareTeam, Patient, Store

REGISTRY = ProfileRegistry.load(env={})
BLE_PROFILES = [p for p in REGISTRY if p.transport == "ble"]
ADVERTISING_PROFILES = [p for p in REGISTRY if p.transport == "ble-advertisement"]
MQTT_PROFILES = [p for p in REGISTRY if p.transport == "mqtt"]
ADDRESS = "C0:DE:00:00:00:01"
PATIENT = "p-prof"
DEVICE = "dev-prof"
GLUCORA_RECORD = bytes.fromhex("030700e8070301081e00000062b011")  # record 7, 98 mg/dL


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def increasing_clock() -> Callable[[], datetime]:
    """Wall-clock time, strictly increasing (untimed readings never share an identity)."""
    last = [datetime.now(UTC)]

    def clock() -> datetime:
        last[0] = max(datetime.now(UTC), last[0] + timedelta(milliseconds=1))
        return last[0]

    return clock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def ingest_api(store: Store) -> AsyncIterator[str]:
    """The ingest HTTP API on a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(IngestPipeline(store)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or task.done(), timeout=60)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=60)


def enrolled_store(tmp_path: Path) -> Store:
    store = open_store(f"sqlite:{tmp_path / 'store.sqlite'}")
    store.upsert_care_team(CareTeam("team", "Team"))
    store.upsert_patient(Patient(PATIENT, "Synthetic Patient", "team"))
    store.pair_device(DEVICE, PATIENT)
    return store


def gateway_for(
    url: str,
    tmp_path: Path,
    device: PairedDevice,
    *,
    air: SimulatedAir | None = None,
    device_broker: str | None = None,
) -> Gateway:
    return Gateway(
        GatewayConfig(
            gateway_id="gw-prof",
            uplink=url,
            outbox_path=tmp_path / "outbox.sqlite",
            devices=(device,),
            device_broker=device_broker,
        ),
        scanner_backend=air.scanner_backend() if air else None,
        client_backend=air.client_backend() if air else None,
        profiles=REGISTRY,
        clock=increasing_clock(),
    )


def decoded_samples(profile: Profile) -> list[Reading]:
    """What the profile's valid samples decode to, as the gateway will queue them: one
    Observation per reading, a reading the device sends twice (same kind and device time)
    stored once."""
    out: list[Reading] = []
    for n, sample in enumerate(profile.samples):
        if sample.error is not None:
            continue
        if sample.hex is not None:
            start = sample.cgm_session_start
            ctx = DeviceContext(cgm_session_start=_time(start) if start else None)
            received = _time(sample.received_at) + timedelta(seconds=n)
            out += profile.decode_ble(
                bytes.fromhex(sample.hex),
                characteristic=sample.characteristic,
                received_at=received,
                device=ctx,
            )
        else:
            out += profile.decode_json(orjson.dumps(sample.json))
    if profile.transport == "mqtt":  # timed by the device: identities are known
        unique = {(r.kind, r.at): r for r in reversed(out)}
        out = [r for r in out if unique[(r.kind, r.at)] is r]
    return out


def _key(e: ExpectedReading) -> tuple[str, str, str, str]:
    value = "absent:" + str(e.absent) if e.value is None else f"{e.value:.6f}"
    return (e.kind, value, str(e.unit), "")


def stored_readings(store: Store) -> list[ExpectedReading]:
    """The stored Observations, each validated as FHIR R4B, flattened as samples are."""
    out: list[ExpectedReading] = []
    for stored in store.observations(PATIENT):
        doc = orjson.loads(stored.resource)
        Observation.model_validate(doc)
        facts = facts_from_observation(doc)
        assert facts.device == DEVICE and facts.patient == PATIENT
        assert stored.kind == facts.reading.kind
        out += flatten([facts.reading])
    return out


def assert_store_matches(store: Store, profile: Profile) -> None:
    want = flatten(decoded_samples(profile))
    got = stored_readings(store)
    assert sorted(map(_key, got)) == sorted(map(_key, want))
    # ...and each expectation the samples state directly (times included) is there
    for sample in profile.samples:
        for e in sample.expect or ():
            assert any(
                _key(g) == _key(e) and (e.at is None or _time(g.at or "") == _time(e.at))
                for g in got
            ), f"{sample.name}: {e} not stored"


async def run_ble_profile(profile: Profile, tmp_path: Path) -> ProfilePeripheral:
    store = enrolled_store(tmp_path)
    air = SimulatedAir()
    peripheral = peripheral_for_profile(profile, ADDRESS)
    assert isinstance(peripheral, ProfilePeripheral)
    air.add(peripheral)
    expected = len(decoded_samples(profile))
    async with ingest_api(store) as url:
        gateway = gateway_for(
            url, tmp_path, PairedDevice(DEVICE, PATIENT, address=ADDRESS), air=air
        )
        async with running(gateway.run()):
            await wait_for(lambda: store.count_observations() >= expected, timeout=90)
            await wait_for(lambda: gateway.outbox.pending() == 0, timeout=90)
            await asyncio.sleep(0.3)  # nothing more arrives
        assert gateway.collector.rejected == 0
    assert store.count_observations() == expected
    assert_store_matches(store, profile)
    store.close()
    return peripheral


def test_every_shipped_profile_is_covered() -> None:
    covered = len(BLE_PROFILES) + len(ADVERTISING_PROFILES) + len(MQTT_PROFILES)
    assert covered == len(REGISTRY) >= 15
    assert MQTT_PROFILES and BLE_PROFILES and ADVERTISING_PROFILES


@pytest.mark.parametrize("profile", ADVERTISING_PROFILES, ids=lambda p: p.id)
async def test_advertising_profile_end_to_end(profile: Profile, tmp_path: Path) -> None:
    """Each valid sample is advertised several times; each is stored exactly once."""
    store = enrolled_store(tmp_path)
    air = SimulatedAir(advertising_interval=0.01)
    broadcaster = peripheral_for_profile(profile, ADDRESS)
    assert isinstance(broadcaster, AdvertisingProfilePeripheral)
    air.add(broadcaster)
    expected = len(decoded_samples(profile))
    last = len(broadcaster.payloads) - 1
    async with ingest_api(store) as url:
        gateway = gateway_for(
            url, tmp_path, PairedDevice(DEVICE, PATIENT, address=ADDRESS), air=air
        )
        async with running(gateway.run()):
            await wait_for(lambda: store.count_observations() >= expected, timeout=90)
            await wait_for(lambda: gateway.outbox.pending() == 0, timeout=90)
            # the last payload keeps repeating: still one reading
            await wait_for(lambda: broadcaster.heard > (last + 3) * broadcaster.repeats)
        assert gateway.collector.rejected == 0
        assert gateway.collector.readings_in == expected
    assert not broadcaster.connected
    assert REGISTRY.match_ble(_advertisement(broadcaster)) is profile
    assert store.count_observations() == expected
    assert_store_matches(store, profile)
    store.close()


@pytest.mark.parametrize("profile", BLE_PROFILES, ids=lambda p: p.id)
async def test_ble_profile_end_to_end(profile: Profile, tmp_path: Path) -> None:
    peripheral = await run_ble_profile(profile, tmp_path)
    # the gateway chose this profile from the advertisement and ran its session
    assert REGISTRY.match_ble(_advertisement(peripheral)) is profile
    steps = {s.step for s in profile.session}
    assert peripheral.bonded == ("bond" in steps)
    assert (peripheral.clock_set is not None) == ("set_current_time" in steps)
    assert bool(peripheral.racp_requests) == ("racp" in steps)


def _advertisement(peripheral: SimulatedPeripheral) -> Advertisement:
    return Advertisement(
        peripheral.local_name,
        frozenset(uuid16(u) for u in peripheral.advertised_service_uuids),
        frozenset(peripheral.manufacturer_data),
    )


@pytest.mark.mqtt
@pytest.mark.parametrize("profile", MQTT_PROFILES, ids=lambda p: p.id)
async def test_mqtt_profile_end_to_end(
    profile: Profile, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    assert profile.mqtt is not None
    store = enrolled_store(tmp_path)
    device = SimulatedMqttDevice(profile, mosquitto.host, mosquitto.port)
    expected = len(decoded_samples(profile))
    paired = PairedDevice(DEVICE, PATIENT, topic=profile.mqtt.topic_example)
    async with ingest_api(store) as url:
        # an empty air: no BLE radio on the test host
        gateway = gateway_for(
            url, tmp_path, paired, air=SimulatedAir(), device_broker=mosquitto.url
        )
        assert gateway.device_input is not None
        async with running(gateway.run()):
            await asyncio.wait_for(gateway.device_input.ready.wait(), 15)
            await device.publish_samples()
            await wait_for(lambda: store.count_observations() >= expected, timeout=90)
            await wait_for(lambda: gateway.outbox.pending() == 0, timeout=90)
            await asyncio.sleep(0.3)
        assert gateway.device_input.rejected == 0
    assert store.count_observations() == expected
    assert_store_matches(store, profile)
    store.close()


async def test_bonding_bp_monitor_sends_nothing_before_bond_and_clock(tmp_path: Path) -> None:
    profile = REGISTRY.get("corvalis-bp7-connect")
    air = SimulatedAir()
    cuff = ProfilePeripheral(profile, ADDRESS)
    air.add(cuff)
    received: list[bytes] = []

    def on_value(_sender: object, data: bytearray) -> None:
        received.append(bytes(data))

    # not bonded: the measurement is protected
    async with BleakClient(ADDRESS, backend=air.client_backend()) as client:
        with pytest.raises(BleakError):
            await client.start_notify("2A35", on_value)
    # bonded, clock never set: the cuff hangs up without indicating
    async with BleakClient(ADDRESS, backend=air.client_backend()) as client:
        await client.pair()
        await client.start_notify("2A35", on_value)
        await cuff.settle()
        assert not client.is_connected
    assert received == [] and cuff.sent == [] and cuff.clock_set is None

    # the gateway bonds, writes Current Time, subscribes: the stored reading follows
    cuff.bonded = False
    store = enrolled_store(tmp_path)
    async with ingest_api(store) as url:
        gateway = gateway_for(
            url, tmp_path, PairedDevice(DEVICE, PATIENT, address=ADDRESS), air=air
        )
        async with running(gateway.run()):
            await wait_for(lambda: store.count_observations() == 2, timeout=90)
    assert cuff.bonded and cuff.clock_set is not None
    assert abs(cuff.clock_set - datetime.now(UTC)) < timedelta(minutes=1)
    assert_store_matches(store, profile)
    store.close()


def glucora_record(sequence: int) -> bytes:
    """Record ``sequence``: the sample record re-numbered, a minute later per number."""
    data = bytearray(GLUCORA_RECORD)
    data[1:3] = sequence.to_bytes(2, "little")
    data[8] = 30 + sequence - 7  # minutes
    return bytes(data)


async def test_racp_glucose_meter_reads_only_new_records(tmp_path: Path) -> None:
    profile = REGISTRY.get("glucora-gm300")
    air = SimulatedAir()
    meter = ProfilePeripheral(profile, ADDRESS)
    air.add(meter)
    store = enrolled_store(tmp_path)
    paired = PairedDevice(DEVICE, PATIENT, address=ADDRESS)

    def after(n: int) -> list[int | None]:
        """Lower bounds of the 'report records >= n' requests (None: all records)."""
        out: list[int | None] = []
        for r in meter.racp_requests:
            assert r.op_code == 1
            out.append(
                int.from_bytes(r.operand[1:3], "little")
                if r.operator is Operator.GREATER_THAN_OR_EQUAL_TO
                else None
            )
        return out[n:]

    async with ingest_api(store) as url:
        gateway = gateway_for(url, tmp_path, paired, air=air)
        async with running(gateway.run()):
            await wait_for(lambda: store.count_observations() == 1, timeout=90)
            assert after(0)[0] is None  # first contact: all records
            # the meter takes two readings; the hub reconnects and asks for >= 8
            meter.add_record(glucora_record(8))
            meter.add_record(glucora_record(9))
            await wait_for(lambda: store.count_observations() == 3, timeout=90)
            await wait_for(lambda: gateway.outbox.pending() == 0, timeout=90)
            await wait_for(lambda: gateway.outbox.last_sequence(DEVICE) == 9, timeout=10)
        assert 8 in after(1)
        # a new gateway process on the same outbox resumes after 9
        seen = len(meter.racp_requests)
        meter.add_record(glucora_record(10))
        gateway = gateway_for(url, tmp_path, paired, air=air)
        async with running(gateway.run()):
            await wait_for(lambda: store.count_observations() == 4, timeout=90)
        assert after(seen)[0] == 10
    assert meter.sent_sequences() == [7, 8, 9, 10]  # nothing sent twice, nothing skipped
    values = sorted((r.at, r.value) for r in stored_readings(store))
    assert [v for _, v in values] == [98, 98, 98, 98]
    assert len({at for at, _ in values}) == 4
    assert all(decode_racp_request(r.encode()) == r for r in meter.racp_requests)
    store.close()
