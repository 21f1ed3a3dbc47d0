"""Replay paths through the real chain (store, http, ble, mqtt) and record -> replay.

Every scenario replays through each path it supports and gives the same stored
observation identifiers; fast and accelerated replays give the same alerts; a recording
of what a gateway's devices sent replays to byte-identical stored Observations.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from firmware_sim._clock import DeviceClock
from firmware_sim.ble import SimulatedAir
from firmware_sim.encoding import encode_blood_pressure_measurement
from firmware_sim.feeds.format import FeedEvent, parse_feed, read_feed
from firmware_sim.feeds.paths import replay_path
from firmware_sim.feeds.paths._encode import MQTT_PROFILE_KINDS
from firmware_sim.feeds.record import FeedRecorder
from firmware_sim.mqtt_devices import SimulatedMqttDevice, sample_payloads
from firmware_sim.profile_devices import ProfilePeripheral
from firmware_sim.scenarios import generate
from gateway.ble import PairedDevice
from gateway.profiles import ProfileRegistry
from gateway.runtime import Gateway, GatewayConfig
from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from tests.support.services import MosquittoServer
from wardwatch.cli import main
from wardwatch.store import Patient, Store, StoredObservation

#: small seeds of the library: (scenario, seed, patients, days)
SCENARIOS = [
    ("stable", 3, 1, 2),
    ("hypertensive_crisis", 2, 1, 10),
    ("heart_failure", 1, 1, 3),
    ("copd_desaturation", 1, 1, 3),
    ("fever", 1, 1, 10),
]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, Store]]:
    opened: dict[str, Store] = {}

    class _Stores(dict[str, Store]):
        def __missing__(self, key: str) -> Store:
            store = open_store(f"sqlite:{tmp_path / key}.db")
            opened[key] = store
            self[key] = store
            return store

    yield _Stores()
    for store in opened.values():
        store.close()


def _observations(store: Store) -> list[StoredObservation]:
    return [o for p in store.list_patients() for o in store.observations(p.id)]


def _identifiers(store: Store) -> set[str]:
    return {o.identifier for o in _observations(store)}


def _alerts(store: Store) -> set[tuple[str, str, datetime]]:
    return {(a.rule, a.patient, a.opened_at) for a in store.list_alerts()}


def _scenario(name: str, seed: int, patients: int, days: int) -> list[FeedEvent]:
    events, _truth = generate(name, seed=seed, patients=patients, days=days)
    return list(events)


@pytest.mark.parametrize(("name", "seed", "patients", "days"), SCENARIOS)
def test_each_scenario_gives_the_same_observations_on_every_path(
    stores: dict[str, Store], name: str, seed: int, patients: int, days: int
) -> None:
    events = _scenario(name, seed, patients, days)
    results = {p: replay_path(events, stores[p], path=p) for p in ("store", "http", "ble")}
    for path, result in results.items():
        assert result.path == path
        assert result.not_sent == 0, path
        assert result.rejected == 0, path
    expected = _identifiers(stores["store"])
    assert len(expected) == results["store"].stored > 0
    assert _identifiers(stores["http"]) == expected
    assert _identifiers(stores["ble"]) == expected
    assert _alerts(stores["ble"]) == _alerts(stores["store"])


def _mqtt_carried(events: Sequence[FeedEvent]) -> list[FeedEvent]:
    """The events of devices whose every reading an MQTT device profile carries."""
    kinds: dict[str, set[str]] = {}
    for e in events:
        if e.reading is not None:
            kinds.setdefault(e.device, set()).add(e.reading.kind)
    carried = {d for d, k in kinds.items() if any(k <= ks for ks in MQTT_PROFILE_KINDS.values())}
    return [e for e in events if e.device in carried]


@pytest.mark.parametrize("name", ["stable", "copd_desaturation"])
def test_mqtt_path_through_the_gateway_device_input(
    stores: dict[str, Store], mosquitto: MosquittoServer, name: str
) -> None:
    events = _mqtt_carried(_scenario(name, 1, 1, 3))
    assert events  # the oximeters and scales
    replay_path(events, stores["store"], path="store")
    result = replay_path(events, stores["mqtt"], path="mqtt", broker=mosquitto.url)
    assert result.not_sent == 0
    # (readings may count a message twice: the gateway subscribes to the profile's topic
    # filter and to the device's topic, and the broker delivers once per subscription)
    assert result.stored == len(events)
    assert _identifiers(stores["mqtt"]) == _identifiers(stores["store"])


def test_mqtt_path_quarantines_what_it_cannot_carry(
    stores: dict[str, Store], mosquitto: MosquittoServer
) -> None:
    events = _scenario("stable", 1, 1, 2)
    result = replay_path(events, stores["mqtt"], path="mqtt", broker=mosquitto.url)
    cuff = [e for e in events if e.device.startswith("cuff-")]
    assert result.not_sent == len(cuff) > 0
    held = stores["mqtt"].list_quarantine()
    assert {q.reason_code for q in held} == {"unsupported-on-path"}
    assert all("no MQTT device profile publishes blood_pressure" in q.reason for q in held)


def test_ble_path_with_an_mqtt_uplink(stores: dict[str, Store], mosquitto: MosquittoServer) -> None:
    events = _scenario("hypertensive_crisis", 2, 1, 4)
    replay_path(events, stores["store"], path="store")
    result = replay_path(events, stores["ble"], path="ble", broker=mosquitto.url)
    assert result.stored == len(_identifiers(stores["store"]))
    assert _identifiers(stores["ble"]) == _identifiers(stores["store"])


def test_fast_and_accelerated_replays_raise_the_same_alerts(stores: dict[str, Store]) -> None:
    events = _scenario("hypertensive_crisis", 2, 1, 10)
    fast = replay_path(events, stores["fast"], path="ble")
    # 10 days at 2 000 000 x real time: the gaps are slept (about 0.4 s in all)
    paced = replay_path(events, stores["paced"], path="ble", speed=2_000_000)
    assert fast.stored == paced.stored > 0
    alerts = _alerts(stores["fast"])
    assert alerts  # the crisis is detected
    assert alerts == _alerts(stores["paced"])


def test_unsupported_readings_are_quarantined_with_the_reason(stores: dict[str, Store]) -> None:
    feed = "\n".join(
        [
            '{"at": "2026-01-05T08:00:00Z", "patient": "p-1", "device": "patch-1",'
            ' "reading": {"kind": "respiratory_rate", "value": 18, "unit": "/min"}}',
            '{"at": "2026-01-05T08:00:00Z", "patient": "p-1", "device": "scale-1",'
            ' "reading": {"kind": "body_weight", "value": 80.5, "unit": "kg"}}',
        ]
    )
    result = replay_path(list(parse_feed(feed.splitlines())), stores["ble"], path="ble")
    assert (result.stored, result.not_sent) == (1, 1)
    [held] = stores["ble"].list_quarantine()
    assert held.reason_code == "unsupported-on-path"
    assert "respiratory_rate" in held.reason
    assert b"patch-1" in held.payload


# -- record -> replay ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run_recording_gateway(
    store: Store,
    config: GatewayConfig,
    recorder: FeedRecorder,
    drive: object,
    air: SimulatedAir,
    expected: int,
) -> None:
    import uvicorn

    from ingest.http import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(IngestPipeline(store)),
            host="127.0.0.1",
            port=int(config.uplink.rsplit(":", 1)[1]),
            log_level="warning",
            lifespan="off",
        )
    )
    gateway = Gateway(
        config,
        scanner_backend=air.scanner_backend(),
        client_backend=air.client_backend(),
        record=recorder,
    )
    tasks = [asyncio.create_task(server.serve()), asyncio.create_task(gateway.run())]
    try:
        await drive(gateway)  # type: ignore[operator]
        async with asyncio.timeout(60):
            while store.count_observations() < expected:  # noqa: ASYNC110 (a store has no event)
                await asyncio.sleep(0.02)
    finally:
        server.should_exit = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _resources(store: Store) -> dict[str, bytes]:
    return {o.identifier: o.resource for o in _observations(store)}


def _enrol(store: Store, patient: str, device: str) -> None:
    store.upsert_patient(Patient(patient, f"Synthetic {patient}"))
    store.pair_device(device, patient)


def test_ble_recording_replays_to_identical_observations(
    stores: dict[str, Store], tmp_path: Path
) -> None:
    """A cuff with a drifted clock that the hub reads, corrects and sets."""
    profile = ProfileRegistry.load().get("corvalis-bp7-connect")
    assert profile is not None
    cuff = ProfilePeripheral(
        profile, "C0:00:00:00:00:07", clock=DeviceClock(drift=timedelta(minutes=-7))
    )
    # the cuff's memory: two readings stamped by its drifted clock, sent once subscribed
    cuff._pending.clear()
    true_times = [datetime.now(UTC) - timedelta(hours=h) for h in (5, 2)]
    for at in true_times:
        stamp = cuff.device_clock.at(at).replace(microsecond=0)
        cuff._pending["2A35"].append(
            encode_blood_pressure_measurement(
                141, 88, 106, timestamp=stamp.replace(tzinfo=None), pulse=71
            )
        )
    air = SimulatedAir(advertising_interval=0.01)
    air.add(cuff)
    store_a = stores["a"]
    _enrol(store_a, "p-rec", "cuff-rec")
    config = GatewayConfig(
        gateway_id="hub-rec",
        uplink=f"http://127.0.0.1:{_free_port()}",
        outbox_path=tmp_path / "outbox.sqlite",
        devices=(PairedDevice("cuff-rec", "p-rec", address=cuff.address),),
    )
    recording = tmp_path / "recorded.feed.jsonl"

    async def drive(_gateway: Gateway) -> None:
        async with asyncio.timeout(60):
            while len(cuff.sent) < 2:  # noqa: ASYNC110 (the device model has no event)
                await asyncio.sleep(0.01)
        await cuff.disconnect()

    with FeedRecorder(recording, gateway_id="hub-rec") as recorder:
        asyncio.run(_run_recording_gateway(store_a, config, recorder, drive, air, 4))
    events = read_feed(recording)
    happenings = [e.event for e in events if e.event is not None]
    assert happenings[:2] == ["connect", "clock_set"]
    assert any(e.ble is not None and e.ble.characteristic == "2A2B" for e in events)
    original = _resources(store_a)
    assert len(original) == 4  # two panels and two pulses
    assert all(b"Device/hub-rec" in r and b"contained" in r for r in original.values())

    result = replay_path(events, stores["b"], path="ble")
    assert result.rejected == 0
    assert _resources(stores["b"]) == original


def test_mqtt_recording_replays_to_identical_observations(
    stores: dict[str, Store], mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    profiles = ProfileRegistry.load()
    band = profiles.get("novabeat-band2")
    assert band is not None
    topic = "novabeat/v2/band-rec/telemetry"
    store_a = stores["a"]
    _enrol(store_a, "p-band", "band-rec")
    config = GatewayConfig(
        gateway_id="hub-mqtt",
        uplink=f"http://127.0.0.1:{_free_port()}",
        outbox_path=tmp_path / "outbox.sqlite",
        devices=(PairedDevice("band-rec", "p-band", topic=topic),),
        device_broker=mosquitto.url,
    )
    recording = tmp_path / "recorded.feed.jsonl"

    async def drive(gateway: Gateway) -> None:
        assert gateway.device_input is not None
        await gateway.device_input.ready.wait()
        await SimulatedMqttDevice(
            band, mosquitto.host, mosquitto.port, topic=topic
        ).publish_samples()

    with FeedRecorder(recording, gateway_id="hub-mqtt") as recorder:
        asyncio.run(_run_recording_gateway(store_a, config, recorder, drive, SimulatedAir(), 4))
    events = read_feed(recording)
    assert [e.event for e in events][:1] == ["connect"]
    # each sample as the gateway received it (twice: see the mqtt path test above)
    assert {e.mqtt.payload for e in events if e.mqtt is not None} == set(sample_payloads(band))
    original = _resources(store_a)

    result = replay_path(events, stores["b"], path="mqtt", broker=mosquitto.url)
    assert result.rejected == 0
    assert _resources(stores["b"]) == original


def test_cli_replays_along_a_path_and_lists_the_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from firmware_sim.feeds.format import write_feed

    feed = tmp_path / "crisis.feed.jsonl"
    write_feed(feed, _scenario("hypertensive_crisis", 2, 1, 10))
    db = f"sqlite:{tmp_path / 'cli.db'}"
    assert (
        main(["sim", "replay", str(feed), "--store", db, "--path", "ble", "--fast", "--json"]) == 0
    )
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["path"] == "ble"
    assert summary["stored"] > 0
    assert main(["alerts", "list", "--store", db, "--json"]) == 0
    alerts = orjson.loads(capsys.readouterr().out)
    assert {a["rule"] for a in alerts} >= {"bp.hypertensive_crisis"}
    assert main(["sim", "replay", str(feed), "--store", db, "--path", "mqtt"]) == 2
    assert "--broker" in capsys.readouterr().err
