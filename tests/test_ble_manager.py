"""The BLE manager through the real BleCollector and SimulatedAir: connections through
bleak-retry-connector with per-device backoff, advertising-only devices, RACP transfers
resumed after a disconnect, battery level, and each fault the simulated devices offer.

Readings go into a real outbox (as the gateway runtime does); the last test runs the whole
chain (mosquitto, ingest, TimescaleDB) with a meter that drops the link mid-transfer.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.ble import SimulatedAir
from firmware_sim.devices import (
    BATTERY_LEVEL,
    BloodPressureCuff,
    BloodPressureReading,
    BroadcastScale,
)
from firmware_sim.profile_devices import ProfilePeripheral
from gateway.ble import BleCollector, PairedDevice
from gateway.decoders import DateTime, Operator, encode_current_time, encode_date_time
from gateway.errors import DecodeError
from gateway.outbox import Outbox
from gateway.profiles import ProfileRegistry
from gateway.profiles._advertisement import RepeatFilter
from gateway.reconnect import ReconnectBackoff
from tests.support.services import MosquittoServer
from tests.test_e2e import running, wait_for
from wardwatch.fhir import observation_from_reading, reading_id
from wardwatch.reading import Reading

REGISTRY = ProfileRegistry.load(env={})
GM300 = REGISTRY.get("glucora-gm300")
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
FAST = ReconnectBackoff(initial=0.05, factor=2.0, maximum=0.4, jitter=0.5)
METER, METER_2, CUFF, SCALE = (
    "C0:DE:00:00:00:01",
    "C0:DE:00:00:00:02",
    "C0:DE:00:00:00:03",
    "C0:DE:00:00:00:04",
)


def glucose_record(sequence: int, mg_dl: int = 98) -> bytes:
    """A Glucose Measurement record: ``sequence``, taken ``sequence`` minutes after T0."""
    at = T0 + timedelta(minutes=sequence)
    concentration = (0xB << 12) | mg_dl  # SFLOAT mg_dl * 10^-5 kg/L
    return (
        b"\x03"
        + sequence.to_bytes(2, "little")
        + encode_date_time(DateTime.from_datetime(at))
        + b"\x00\x00"
        + concentration.to_bytes(2, "little")
        + b"\x11"
    )


def glucose_ids(device: str, sequences: Sequence[int]) -> set[str]:
    return {reading_id(device, T0 + timedelta(minutes=n), "glucose") for n in sequences}


def meter(address: str, sequences: Sequence[int], **faults: object) -> ProfilePeripheral:
    """A GM-300 meter holding records ``sequences``, with its clock already set (so that
    its time stamps are taken as they are, see gateway.timekeeping)."""
    device = ProfilePeripheral(GM300, address, **faults)  # type: ignore[arg-type]
    device.records.clear()  # not the profile's sample record
    for n in sequences:
        device.add_record(glucose_record(n))
    device.set_value("2A2B", encode_current_time(datetime.now(UTC)))
    return device


class Sink:
    """The gateway's side of the collector: readings into a real outbox, rejects into its
    quarantine (as ``gateway.runtime.Gateway`` does)."""

    def __init__(self, path: Path) -> None:
        self.outbox = Outbox(path)
        self.readings: list[tuple[str, Reading]] = []
        self.ids: list[str] = []
        self.rejects: list[tuple[str, str, bytes, str]] = []

    async def on_readings(
        self, device: PairedDevice, readings: Sequence[Reading], source: str, payload: bytes
    ) -> None:
        observations = [
            observation_from_reading(
                r, patient=device.patient, device=device.device_id, gateway="gw-test"
            )
            for r in readings
        ]
        await asyncio.to_thread(self.outbox.put, observations)
        self.readings += [(device.device_id, r) for r in readings]
        self.ids += [str(o["id"]) for o in observations]

    async def on_reject(
        self, device: PairedDevice, source: str, payload: bytes, error: DecodeError
    ) -> None:
        await asyncio.to_thread(
            self.outbox.quarantine, device.device_id, source, str(error), payload
        )
        self.rejects.append((device.device_id, source, payload, str(error)))


@pytest.fixture
def sink(tmp_path: Path) -> Sink:
    return Sink(tmp_path / "outbox.sqlite")


def collector(
    air: SimulatedAir,
    sink: Sink,
    *devices: PairedDevice,
    profiles: ProfileRegistry | None = REGISTRY,
    **options: object,
) -> BleCollector:
    return BleCollector(
        devices,
        sink.on_readings,
        sink.on_reject,
        scanner_backend=air.scanner_backend(),
        client_backend=air.client_backend(),
        profiles=profiles,
        sequences=sink.outbox,
        backoff=FAST,
        rng=random.Random(7),
        **options,  # type: ignore[arg-type]
    )


def lower_bounds(device: ProfilePeripheral) -> list[int | None]:
    """Per RACP request: the 'records >= n' bound, None for 'all records'."""
    return [
        int.from_bytes(r.operand[1:3], "little")
        if r.operator is Operator.GREATER_THAN_OR_EQUAL_TO
        else None
        for r in device.racp_requests
    ]


# -- pure parts ------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    backoff = ReconnectBackoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.5)
    rng = random.Random(3)
    for failures, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (5, 30.0), (10_000, 30.0)]:
        delays = [backoff.delay(failures, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered, not lock-step
    assert ReconnectBackoff(jitter=0).delay(2, rng) == 4.0
    with pytest.raises(ValueError, match="jitter"):
        ReconnectBackoff(jitter=1.5)
    with pytest.raises(ValueError, match="initial"):
        ReconnectBackoff(initial=10, maximum=5)


def test_repeat_filter_window_slides_per_device_and_source() -> None:
    window = timedelta(seconds=60)
    seen = RepeatFilter()
    assert seen.fresh("d", "s", b"\x01", T0, window)
    # repeated for five minutes, 30 s apart: one measurement
    for n in range(1, 11):
        assert not seen.fresh("d", "s", b"\x01", T0 + timedelta(seconds=30 * n), window)
    assert seen.fresh("d", "s", b"\x02", T0 + timedelta(seconds=330), window)
    assert seen.fresh("d", "other", b"\x02", T0 + timedelta(seconds=331), window)
    assert seen.fresh("e", "s", b"\x02", T0 + timedelta(seconds=331), window)
    # the same bytes after a silence longer than the window: stepped on again
    assert seen.fresh("d", "s", b"\x02", T0 + timedelta(seconds=400), window)


# -- connections -----------------------------------------------------------------------


async def test_transient_connect_failures_are_retried_within_one_session_attempt(
    sink: Sink,
) -> None:
    air = SimulatedAir()
    device = meter(METER, [1, 2])
    device.refuse_connections = 2
    air.add(device)
    ble = collector(air, sink, PairedDevice("gm", "p", address=METER), connect_attempts=3)
    failures: list[int] = []

    def session_over() -> bool:
        failures.append(ble.connect_failures.get("gm", -1))
        return "gm" in ble.connect_failures

    async with running(ble.run()):
        await wait_for(lambda: sink.outbox.pending() == 2)
        await wait_for(session_over)
    assert device.refuse_connections == 0
    assert max(failures) == 0  # bleak-retry-connector absorbed both within the attempt
    assert lower_bounds(device)[0] is None


async def test_failed_sessions_back_off_then_reset(sink: Sink) -> None:
    air = SimulatedAir()
    device = meter(METER, [1, 2])
    device.refuse_connections = 4  # two whole session attempts of two connects each
    air.add(device)
    ble = collector(air, sink, PairedDevice("gm", "p", address=METER), connect_attempts=2)
    failures: list[int] = []

    def record_failures() -> bool:
        failures.append(ble.connect_failures.get("gm", -1))
        return sink.outbox.pending() == 2

    async with running(ble.run()):
        await wait_for(record_failures)
        await wait_for(lambda: ble.connect_failures.get("gm") == 0)
    assert 2 in failures and max(failures) == 2
    assert device.refuse_connections == 0


async def test_several_devices_at_once_each_with_its_fault(sink: Sink) -> None:
    air = SimulatedAir(advertising_interval=0.01)
    cut = meter(METER, range(1, 9), drop_after_records=3)
    noisy = meter(METER_2, range(1, 5), garbage=b"\x03\x05")
    cuff = BloodPressureCuff(
        CUFF, [BloodPressureReading(120 + n, 80, 93, 70, T0 + timedelta(hours=n)) for n in range(3)]
    )
    scale = BroadcastScale(SCALE)
    scale.show_weight(71.2)
    air.add(cut, noisy, cuff, scale)
    ble = collector(
        air,
        sink,
        PairedDevice("gm-a", "p", address=METER),
        PairedDevice("gm-b", "p", address=METER_2),
        PairedDevice("cuff", "p", address=CUFF),
        PairedDevice("scale", "p", address=SCALE),
    )
    # 8 + 4 glucose, 3 x (panel + pulse), 1 weight
    async with running(ble.run()):
        await wait_for(lambda: sink.outbox.pending() == 8 + 4 + 6 + 1)
        await wait_for(lambda: sink.outbox.last_sequence("gm-a") == 8)
    assert set(sink.ids) >= glucose_ids("gm-a", range(1, 9)) | glucose_ids("gm-b", range(1, 5))
    assert [s for d, s, _, _ in sink.rejects] == ["2A18"] and sink.rejects[0][0] == "gm-b"
    assert sink.outbox.last_sequence("gm-b") == 4
    assert not scale.connected and "scale" not in ble.connect_failures


# -- RACP transfers and their faults ---------------------------------------------------


async def test_disconnect_mid_transfer_resumes_after_the_last_queued_record(
    sink: Sink,
) -> None:
    air = SimulatedAir()
    device = meter(METER, range(1, 11), drop_after_records=4)
    air.add(device)
    ble = collector(air, sink, PairedDevice("gm", "p", address=METER))
    async with running(ble.run()):
        await wait_for(lambda: sink.outbox.pending() == 10)
        await wait_for(lambda: sink.outbox.last_sequence("gm") == 10)
    bounds = lower_bounds(device)
    assert bounds[:2] == [None, 5]  # all records; then after record 4, the last queued
    assert device.sent_sequences()[:10] == list(range(1, 11))  # none twice, none skipped
    assert len(sink.ids) == 10 and set(sink.ids) == glucose_ids("gm", range(1, 11))


async def test_records_resent_after_reconnect_are_queued_once(sink: Sink) -> None:
    air = SimulatedAir()
    device = meter(METER, range(1, 6), resend_after_reconnect=2)
    air.add(device)
    ble = collector(air, sink, PairedDevice("gm", "p", address=METER))
    async with running(ble.run()):
        await wait_for(lambda: sink.outbox.pending() == 5)
        for n in (6, 7, 8):
            device.add_record(glucose_record(n))
        await wait_for(lambda: sink.outbox.pending() == 8)
        await wait_for(lambda: sink.outbox.last_sequence("gm") == 8)
    sent = device.sent_sequences()
    assert sent[:5] == [1, 2, 3, 4, 5] and len(sent) > len(set(sent))  # it did re-send
    assert len(sink.ids) > 8  # the re-sends reached the gateway...
    assert set(sink.ids) == glucose_ids("gm", range(1, 9))  # ...and are queued once
    assert 6 in lower_bounds(device)


async def test_garbage_on_a_measurement_is_quarantined_and_the_transfer_goes_on(
    sink: Sink,
) -> None:
    air = SimulatedAir()
    device = meter(METER, range(1, 6), garbage=b"\x03\x07")
    air.add(device)
    ble = collector(air, sink, PairedDevice("gm", "p", address=METER))
    async with running(ble.run()):
        await wait_for(lambda: sink.outbox.pending() == 5)
        await wait_for(lambda: sink.outbox.last_sequence("gm") == 5)
    assert ble.rejected == 1
    ((device_id, source, reason, payload),) = sink.outbox.quarantined()
    assert (device_id, source, payload) == ("gm", "2A18", b"\x03\x07")
    assert "2A18" in reason and "Sequence Number" in reason
    assert set(sink.ids) == glucose_ids("gm", range(1, 6))


async def test_silent_racp_times_out_keeps_notifications_and_asks_again(
    sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    air = SimulatedAir()
    device = meter(METER, [1, 2, 3], racp_silent=True, disconnect_after_racp=False)
    air.add(device)
    ble = collector(air, sink, PairedDevice("gm", "p", address=METER), racp_timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="gateway.ble"):
        async with running(ble.run()):
            await wait_for(lambda: "not answered" in caplog.text)
            assert device.connected and sink.outbox.pending() == 0
            # the link stays up: a new measurement, sent live, still arrives
            device.add_record(glucose_record(4))
            assert await device.notify("2A18", glucose_record(4)) == 1
            await wait_for(lambda: sink.outbox.pending() == 1)
            # a live record is no RACP answer: records 1-3 were never read, keep asking
            assert sink.outbox.last_sequence("gm") is None
            device.racp_silent = False
            await device.disconnect()
            await wait_for(lambda: sink.outbox.pending() == 4)
            await wait_for(lambda: sink.outbox.last_sequence("gm") == 4)
    assert lower_bounds(device)[:2] == [None, None]
    assert set(sink.ids) == glucose_ids("gm", range(1, 5))
    assert "RACP" in caplog.text and "98" not in caplog.text  # no reading values logged


# -- battery ---------------------------------------------------------------------------


@pytest.mark.parametrize("with_profiles", [True, False], ids=["profile", "fallback"])
async def test_battery_level_read_at_connect_and_followed(sink: Sink, with_profiles: bool) -> None:
    air = SimulatedAir()
    cuff = BloodPressureCuff(CUFF, [BloodPressureReading(121, 81, 94, 70, T0)], battery_level=87)
    air.add(cuff)
    ble = collector(
        air,
        sink,
        PairedDevice("cuff", "p", address=CUFF),
        profiles=REGISTRY if with_profiles else None,
    )
    assert ble.battery == {}
    async with running(ble.run()):
        await wait_for(lambda: ble.battery.get("cuff") == 87)
        await wait_for(lambda: cuff.is_subscribed(BATTERY_LEVEL))
        await cuff.set_battery_level(55)
        await wait_for(lambda: ble.battery.get("cuff") == 55)
        await cuff.notify(BATTERY_LEVEL, bytes([150]))  # not a percentage
        await wait_for(lambda: len(sink.rejects) == 1)
        await wait_for(lambda: sink.outbox.pending() == 2)
    assert ble.battery == {"cuff": 55}
    ((_, source, reason, payload),) = sink.outbox.quarantined()
    assert (source, payload) == ("2A19", bytes([150])) and "0-100" in reason
    assert "cuff" in ble.last_seen


# -- advertising-only devices ----------------------------------------------------------


async def test_advertising_scale_repeats_are_one_reading(sink: Sink) -> None:
    air = SimulatedAir(advertising_interval=0.01)
    scale = BroadcastScale(SCALE)
    air.add(scale)
    ble = collector(air, sink, PairedDevice("scale", "p", address=SCALE))

    async def heard(more: int) -> None:
        mark = scale.heard
        await wait_for(lambda: scale.heard >= mark + more)

    async with running(ble.run()):
        await heard(5)  # its name only: nothing to read
        assert sink.readings == []
        scale.show_weight(70.0)
        await wait_for(lambda: sink.outbox.pending() == 1)
        await heard(20)
        assert sink.outbox.pending() == 1 and ble.readings_in == 1
        scale.show_weight(70.0)  # stepped on again: the counter moved on
        await wait_for(lambda: sink.outbox.pending() == 2)
        scale.show_raw(b"\x09\x00\xb0")  # a packet cut short, repeated
        await wait_for(lambda: len(sink.rejects) == 1)
        await heard(20)
        scale.display_off()
        await heard(10)
    assert ble.rejected == 1 and ble.readings_in == 2
    assert [(r.kind, r.value, r.unit) for _, r in sink.readings] == [
        ("body_weight", 70.0, "kg")
    ] * 2
    ((_, source, reason, payload),) = sink.outbox.quarantined()
    assert (source, payload) == ("manufacturer:0xFFFF", b"\x09\x00\xb0")
    assert "no room for Weight" in reason
    assert not scale.connected and ble.connect_failures == {}


# -- the whole chain -------------------------------------------------------------------


@pytest.mark.mqtt
@pytest.mark.postgres
async def test_disconnect_mid_transfer_end_to_end_stores_each_reading_once(
    mosquitto: MosquittoServer, pg_dsn: str, tmp_path: Path
) -> None:
    """A meter dropping the link mid-transfer, then re-sending records it had delivered,
    beside a cuff: the database holds every reading exactly once."""
    from gateway.runtime import Gateway, GatewayConfig
    from ingest.mqtt import MqttIngest
    from ingest.pipeline import IngestPipeline
    from ingest.stores import open_store
    from wardwatch.mqtt import BrokerAddress
    from wardwatch.store import CareTeam, Patient

    store = open_store(pg_dsn)
    store.upsert_care_team(CareTeam("t", "Team"))
    store.upsert_patient(Patient("p-7", "Synthetic Seven", "t"))
    store.pair_device("gm-7", "p-7")
    store.pair_device("cuff-7", "p-7")
    worker = MqttIngest(IngestPipeline(store), BrokerAddress.parse(mosquitto.url))
    air = SimulatedAir()
    device = meter(METER, range(1, 13), drop_after_records=5, resend_after_reconnect=2)
    cuff_times = [T0 + timedelta(hours=n) for n in range(3)]
    cuff = BloodPressureCuff(CUFF, [BloodPressureReading(118, 79, 92, 66, t) for t in cuff_times])
    air.add(device, cuff)
    gateway = Gateway(
        GatewayConfig(
            gateway_id="gw-ble-fault",
            uplink=mosquitto.url,
            outbox_path=tmp_path / "outbox.sqlite",
            devices=(
                PairedDevice("gm-7", "p-7", address=METER),
                PairedDevice("cuff-7", "p-7", address=CUFF),
            ),
            ack_timeout=2.0,
        ),
        scanner_backend=air.scanner_backend(),
        client_backend=air.client_backend(),
        profiles=REGISTRY,
    )
    expected = glucose_ids("gm-7", range(1, 13)) | {
        reading_id("cuff-7", t, kind)
        for t in cuff_times
        for kind in ("blood_pressure", "heart_rate")
    }
    async with running(worker.run(), gateway.run()):
        await wait_for(lambda: store.count_observations() >= len(expected), timeout=120)
        await wait_for(lambda: gateway.outbox.pending() == 0, timeout=120)
        await wait_for(lambda: gateway.outbox.last_sequence("gm-7") == 12)
    assert lower_bounds(device)[:2] == [None, 6]
    assert device.sent_sequences()[5:7] == [4, 5]  # the re-sent records
    assert store.count_observations() == len(expected) == 18
    assert {o.identifier for o in store.observations("p-7")} == expected
    store.close()
