"""Replay paths through the real chain (store, http, ble, mqtt) and record -> replay.

Every scenario of the library replays through every path: what a path carries is stored
as on the store path (same identifiers and contents, duplicates once, undecodable raw
values quarantined with the same reason, same alerts), what it cannot carry is quarantined
``unsupported-on-path``; fast and accelerated replays give the same alerts; a recording
of what a gateway's devices sent replays to byte-identical stored Observations.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from firmware_sim._clock import DeviceClock
from firmware_sim.ble import SimulatedAir
from firmware_sim.encoding import encode_blood_pressure_measurement
from firmware_sim.feeds.format import FeedEvent, format_event, parse_feed, read_feed
from firmware_sim.feeds.paths import PATHS, replay_path
from firmware_sim.feeds.paths._encode import (
    BLE_PROFILE_OF_CHARACTERISTIC,
    Unsupported,
    ble_profile_for,
    mqtt_profile_for,
    reading_groups,
)
from firmware_sim.feeds.record import FeedRecorder
from firmware_sim.feeds.truth import GroundTruth
from firmware_sim.mqtt_devices import SimulatedMqttDevice, sample_payloads
from firmware_sim.profile_devices import ProfilePeripheral
from firmware_sim.scenarios import SCENARIOS as LIBRARY
from firmware_sim.scenarios import generate
from gateway.ble import PairedDevice
from gateway.profiles import ProfileRegistry
from gateway.runtime import Gateway, GatewayConfig
from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from tests.support.services import MosquittoServer
from wardwatch.cli import main
from wardwatch.store import Patient, Store, StoredObservation


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


def _contents(store: Store) -> dict[str, tuple[object, ...]]:
    """Each stored observation's identifier -> what it says (patient, device, kind, time,
    value, unit, components): an identifier alone does not show a corrected time."""
    return {
        o.identifier: (o.patient, o.device, o.kind, o.at, o.value, o.unit, dict(o.components))
        for o in _observations(store)
    }


def _alerts(store: Store) -> set[tuple[str, str, datetime]]:
    return {(a.rule, a.patient, a.opened_at) for a in store.list_alerts()}


def _scenario(name: str, seed: int, patients: int, days: int) -> list[FeedEvent]:
    events, _truth = generate(name, seed=seed, patients=patients, days=days)
    return list(events)


# -- the scenario library along every path ---------------------------------------------

#: scenarios replayed at another (seed, days) than (1, min_days), so that what they are
#: about happens in the feed (checked in the test): seed 11 over 3 days damages one cuff
#: value in each of the four ways
SIZES = {"corrupted_packets": (11, 3)}


def _library_feed(name: str) -> tuple[list[FeedEvent], GroundTruth]:
    seed, days = SIZES.get(name, (1, LIBRARY[name].min_days))
    events, truth = generate(name, seed=seed, patients=1, days=days)
    return list(events), truth


def _sends(e: FeedEvent) -> bool:
    """A reading or a raw value (not a device happening or a care plan)."""
    return e.reading is not None or e.ble is not None or e.mqtt is not None


def _carried_devices(events: Sequence[FeedEvent], path: str) -> set[str]:
    """The devices all of whose readings and raw values ``path`` carries, judged from the
    events by the path's device models: ``store`` and ``http`` carry everything; ``ble``
    and ``mqtt`` play each device as one model that must send every measurement of it
    (readings of one device at one time) and none of the other transport's raw values."""
    sending = [e for e in events if _sends(e)]
    devices = {e.device for e in sending}
    if path in ("store", "http"):
        return devices
    models: dict[str, set[str | None]] = {d: set() for d in devices}
    for head, idx in reading_groups(events).items():
        group = [r for r in (events[n].reading for n in idx) if r is not None]
        try:
            model = ble_profile_for(group) if path == "ble" else mqtt_profile_for(group)
        except Unsupported:
            model = None
        models[events[head].device].add(model)
    for e in sending:
        if e.ble is not None:
            char = e.ble.characteristic.upper()
            if path == "mqtt":
                models[e.device].add(None)
            elif char != "2A2B":  # a clock read, not a value
                models[e.device].add(BLE_PROFILE_OF_CHARACTERISTIC.get(char))
        elif e.mqtt is not None and path == "ble":
            models[e.device].add(None)
    return {d for d, m in models.items() if len(m) == 1 and None not in m}


def _held(store: Store, *, code: str | None = None) -> Counter[tuple[str, str, bytes]]:
    return Counter(
        (q.reason_code, q.reason, q.payload)
        for q in store.list_quarantine()
        if code is None or q.reason_code == code
    )


def test_the_gateway_paths_cover_every_device_of_the_library() -> None:
    """A scenario whose device no gateway path carries would only replay through
    ``store`` and ``http``: the chain would be untested for it."""
    assert set(SIZES) <= set(LIBRARY)
    for name in LIBRARY:
        events, _truth = _library_feed(name)
        devices = _carried_devices(events, "store")
        assert devices, name
        uncovered = devices - _carried_devices(events, "ble") - _carried_devices(events, "mqtt")
        assert not uncovered, f"{name}: no gateway path carries {sorted(uncovered)}"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_each_scenario_replays_through_each_path(
    stores: dict[str, Store], request: pytest.FixtureRequest, name: str, path: str
) -> None:
    """Nothing lost: what the path carries is stored as on the store path (identifiers,
    duplicates once, raw values decoded or quarantined with the same reason, same alerts);
    what it cannot carry is quarantined ``unsupported-on-path`` and counted ``not_sent``."""
    events, truth = _library_feed(name)
    carried_devices = _carried_devices(events, path)
    not_carried = [e for e in events if _sends(e) and e.device not in carried_devices]
    carried = [e for e in events if not _sends(e) or e.device in carried_devices]
    broker = request.getfixturevalue("mosquitto").url if path == "mqtt" else None

    full = replay_path(events, stores["full"], path="store")
    if not_carried:  # the store path on the events this path carries
        reference, ref = replay_path(carried, stores["ref"], path="store"), stores["ref"]
    else:
        reference, ref = full, stores["full"]
    result = replay_path(events, stores[path], path=path, broker=broker)
    got = stores[path]

    assert result.path == path
    assert result.events == len(events)
    assert result.device_events == sum(e.event is not None for e in events)
    assert sorted(result.paired) == sorted(full.paired)
    # what the path cannot carry: counted and quarantined with the path's reason
    assert result.not_sent == len(not_carried)
    unsupported = [q for q in got.list_quarantine() if q.reason_code == "unsupported-on-path"]
    assert len(unsupported) == len(not_carried)
    assert all(q.reason.startswith(f"{path}: ") for q in unsupported)
    assert sorted(q.payload for q in unsupported) == sorted(
        format_event(e).encode() for e in not_carried
    )
    # what it carries: the same observations (each once), quarantine and alerts
    observations = _observations(got)
    assert len(observations) == len(_identifiers(got)) == result.stored == reference.stored
    assert _contents(got) == _contents(ref)
    held = _held(got) - Counter((q.reason_code, q.reason, q.payload) for q in unsupported)
    assert held == _held(ref)
    assert result.rejected == reference.rejected + result.not_sent
    assert _alerts(got) == _alerts(ref)
    if path == "store":
        assert result.stored > 0

    # what the scenario is about
    facts = truth.parameters
    if "corrupted_packets" in facts:
        damaged = _held(stores["full"], code="decode-error")
        assert sum(damaged.values()) == facts["corrupted_packets"] > 0
        assert all(facts["corruptions"].values())
        for (_code, _reason, payload), n in damaged.items():
            device = orjson.loads(payload)["device"]
            code = "decode-error" if device in carried_devices else "unsupported-on-path"
            assert sum(k for (c, _r, p), k in _held(got).items() if (c, p) == (code, payload)) == n
    if "duplicate_events" in facts:
        assert facts["duplicate_events"] > 0
        assert full.stored == facts["unique_readings"]
        assert full.readings == facts["unique_readings"] + facts["duplicate_events"]
    for device, times in facts.get("true_times", {}).items():
        if device in carried_devices:
            stored = sorted(o.at for o in observations if o.device == device)
            expected = sorted(datetime.fromisoformat(t) for t in times)
            assert len(stored) == len(expected) > 0
            assert all(
                abs(a - b) <= timedelta(seconds=1) for a, b in zip(stored, expected, strict=True)
            )


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
