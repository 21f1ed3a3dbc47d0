"""The ``ble`` and ``mqtt`` paths: devices -> the real Gateway -> uplink -> ingest -> store.

One event loop holds everything: the in-process ingest (HTTP under uvicorn, or an MQTT
worker when a broker is given) on the store with the alert engine as its hook, the real
:class:`gateway.runtime.Gateway` (BLE through :class:`firmware_sim.ble.SimulatedAir`, MQTT
devices through the broker) and the replayer, which plays each event at its time on the
feed clock (shared by gateway, ingest and alerting) and waits until the chain has
stored it before it moves the clock on. So alerts are those real time would give, at
any speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from firmware_sim.ble import SimulatedAir
from firmware_sim.feeds.format import FeedEvent
from firmware_sim.feeds.paths._ble import ClockRead, ReplayPeripheral, address_for
from firmware_sim.feeds.paths._encode import (
    BLE_PROFILE_OF_CHARACTERISTIC,
    Unsupported,
    ble_profile_for,
    cgm_session_start,
    cgm_session_start_value,
    encode_ble,
    encode_mqtt,
    mqtt_profile_for,
    reading_groups,
)
from firmware_sim.feeds.replay import GATEWAY, FeedClock, FeedReplayer, ReplayResult
from gateway.ble import PairedDevice
from gateway.profiles import ProfileRegistry
from gateway.reconnect import ReconnectBackoff
from wardwatch.mqtt import BrokerAddress
from wardwatch.reading import Reading
from wardwatch.store import QuarantineItem, Store

__all__ = ["ChainError", "replay_through_gateway"]

log = logging.getLogger(__name__)

CURRENT_TIME = "2A2B"
#: how long the chain may make no progress before the replay gives up (seconds)
STALL_TIMEOUT = 60.0
AsyncSleep = Callable[[float], Awaitable[None]]


class ChainError(Exception):
    """The chain did not take an event (a device never connected, the uplink stalled)."""


@dataclass(slots=True)
class _Device:
    """One feed device as the path plays it."""

    id: str
    patient: str
    profile: str | None = None
    topic: str | None = None
    peripheral: ReplayPeripheral | None = None
    current_time: bool = False
    session_start: datetime | None = None


@dataclass(slots=True)
class _Step:
    """What to do for one feed event (or one group of readings at one time)."""

    event: FeedEvent
    device: _Device | None = None
    values: list[tuple[str, bytes]] = field(default_factory=list)
    """BLE: (characteristic, bytes) to notify; MQTT: (topic, payload) to publish."""
    readings: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_readings(events: Sequence[FeedEvent], idx: list[int]) -> list[Reading]:
    out = []
    for n in idx:
        reading = events[n].reading
        assert reading is not None
        out.append(reading)
    return out


class _Plan:
    """Which device model plays each feed device, and what each event becomes."""

    def __init__(
        self, events: Sequence[FeedEvent], path: str, replayer: FeedReplayer, store: Store
    ) -> None:
        self.path = path
        self.devices: dict[str, _Device] = {}
        self.steps: list[_Step] = []
        self.gateway_id = GATEWAY
        self.replayer = replayer
        self._store = store
        groups = reading_groups(events)
        grouped = {n for idx in groups.values() for n in idx[1:]}
        for n, event in enumerate(events):
            if n in grouped:
                continue
            try:
                step = self._step(event, events, groups.get(n))
            except Unsupported as exc:
                for k in groups.get(n, [n]):
                    replayer.quarantine(events[k], "unsupported-on-path", f"{path}: {exc}")
                    replayer.result.not_sent += 1
                continue
            self.steps.append(step)

    def _device(self, event: FeedEvent) -> _Device:
        device = self.devices.get(event.device)
        if device is None:
            patient = event.patient or self._store.device_patient(event.device)
            if patient is None:
                raise Unsupported(f"device {event.device} is paired to no patient")
            device = self.devices[event.device] = _Device(event.device, patient)
        return device

    def _use(self, device: _Device, profile: str) -> None:
        if device.profile is None:
            device.profile = profile
        elif device.profile != profile:
            raise Unsupported(
                f"device {device.id} is played as {device.profile}, which does not send this"
            )

    def _step(self, event: FeedEvent, events: Sequence[FeedEvent], idx: list[int] | None) -> _Step:
        if event.care_plan is not None:
            return _Step(event)
        device = self._device(event)
        if event.event is not None:
            if event.event == "connect" and event.profile is not None:
                self._use(device, event.profile)
            if event.gateway is not None:
                self.gateway_id = event.gateway  # a recording names its hub
            return _Step(event, device)
        # as on the store path, a device is paired when it sends something (a hub that
        # only disconnects and reconnects is no patient's device)
        self.replayer.enrol(device.patient, device.id)
        if self.path == "ble":
            return self._ble_step(event, events, idx, device)
        return self._mqtt_step(event, events, idx, device)

    def _ble_step(
        self, event: FeedEvent, events: Sequence[FeedEvent], idx: list[int] | None, device: _Device
    ) -> _Step:
        if event.mqtt is not None:
            raise Unsupported("an MQTT message does not travel over BLE")
        if event.ble is not None:
            char = event.ble.characteristic.upper().removeprefix("0X")
            if char == CURRENT_TIME:
                device.current_time = True
                return _Step(event, device)  # a clock read: scripted at connection
            if device.profile is None:
                if char not in BLE_PROFILE_OF_CHARACTERISTIC:
                    raise Unsupported(f"no simulated BLE device sends characteristic {char}")
                self._use(device, BLE_PROFILE_OF_CHARACTERISTIC[char])
            return _Step(event, device, [(char, event.ble.data)])
        assert idx is not None
        group = _group_readings(events, idx)
        self._use(device, ble_profile_for(group))
        if device.profile == "sig-cgm" and device.session_start is None:
            device.session_start = cgm_session_start(event.at)
        value = encode_ble(group, event.at, device.session_start)
        return _Step(event, device, [(value.characteristic, value.data)], len(group))

    def _mqtt_step(
        self, event: FeedEvent, events: Sequence[FeedEvent], idx: list[int] | None, device: _Device
    ) -> _Step:
        if event.ble is not None:
            raise Unsupported("a BLE value does not travel over MQTT")
        if event.mqtt is not None:
            if device.topic is None:
                device.topic = event.mqtt.topic
            elif device.topic != event.mqtt.topic:
                raise Unsupported(f"device {device.id} already publishes on {device.topic}")
            return _Step(event, device, [(event.mqtt.topic, event.mqtt.payload)])
        assert idx is not None
        group = _group_readings(events, idx)
        encoded = encode_mqtt(group, event.at)
        self._use(device, mqtt_profile_for(group))
        if device.topic is None:
            prefix = {"auralis-wifi-scale": "auralis/scale", "novabeat-band2": "novabeat/v2"}
            suffix = {"auralis-wifi-scale": "measurement", "novabeat-band2": "telemetry"}
            device.topic = f"{prefix[encoded.profile]}/{device.id}/{suffix[encoded.profile]}"
        return _Step(event, device, [(device.topic, encoded.payload)], len(group))

    def paired(self) -> tuple[PairedDevice, ...]:
        """The gateway's [[devices]]."""
        out = []
        for d in self.devices.values():
            if self.path == "ble" and d.profile is not None:
                out.append(
                    PairedDevice(d.id, d.patient, address=address_for(d.id), profile=d.profile)
                )
            elif self.path == "mqtt" and d.topic is not None:
                out.append(PairedDevice(d.id, d.patient, topic=d.topic, profile=d.profile))
        return tuple(out)


class _Run:
    """One replay through the gateway (see the module documentation)."""

    def __init__(
        self,
        plan: _Plan,
        clock: FeedClock,
        replayer: FeedReplayer,
        *,
        speed: float | None,
        sleep: AsyncSleep,
    ) -> None:
        self.plan = plan
        self.clock = clock
        self.replayer = replayer
        self.speed = speed
        self.sleep = sleep
        self.air = SimulatedAir(advertising_interval=0.005)
        self.profiles = ProfileRegistry.load()
        self.sent_values = 0
        self.sent_messages = 0
        #: steps of Current Time reads already scripted into a connection
        self.scripted: set[int] = set()
        #: (device, bytes sent) -> the feed events that sent them, to name what the
        #: gateway quarantined
        self.sent_by: dict[tuple[str, bytes], list[FeedEvent]] = {}
        self.gateway: Any = None

    async def _until(self, done: Callable[[], bool], what: str) -> None:
        """Wait (polling) until ``done()``; ChainError after STALL_TIMEOUT without it."""
        deadline = time.monotonic() + STALL_TIMEOUT
        delay = 0.0005
        while not done():
            if time.monotonic() > deadline:
                raise ChainError(f"the chain stalled waiting for {what}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)

    async def settle(self) -> None:
        """Wait until the gateway handled what was sent and the outbox is empty."""
        gw = self.gateway
        await self._until(
            lambda: gw.collector.values_handled >= self.sent_values,
            "the gateway to decode the BLE values sent",
        )
        if gw.device_input is not None:
            await self._until(
                lambda: gw.device_input.handled >= self.sent_messages,
                "the gateway to take the MQTT messages published",
            )
        deadline = time.monotonic() + STALL_TIMEOUT
        while await asyncio.to_thread(gw.outbox.pending):
            if time.monotonic() > deadline:
                raise ChainError("the uplink stalled: observations left in the gateway outbox")
            await asyncio.sleep(0.002)

    # -- BLE ------------------------------------------------------------------------------

    def _peripheral(self, device: _Device) -> ReplayPeripheral:
        if device.peripheral is None:
            assert device.profile is not None
            profile = self.profiles.get(device.profile)
            if profile is None:
                raise ChainError(f"device {device.id}: unknown profile {device.profile}")
            device.peripheral = ReplayPeripheral(
                profile, address_for(device.id), self.clock, current_time=device.current_time
            )
            if device.session_start is not None:
                device.peripheral.set_value("2AAA", cgm_session_start_value(device.session_start))
            self.air.add(device.peripheral)
        return device.peripheral

    async def connect(self, device: _Device, at: int) -> None:
        """Bring the device in range with this session's clock reads scripted; wait for
        the gateway to have run the profile's session steps."""
        peripheral = self._peripheral(device)
        if peripheral.connected and peripheral.ready.is_set():
            return
        reads, set_at = self._session_clock(device, at)
        peripheral.clock_reads.clear()
        for n, (data, mid) in enumerate(reads):
            after = set_at if (set_at is not None and n == len(reads) - 1) else mid
            peripheral.clock_reads.append(ClockRead(data, mid, after))
        if peripheral.clock_reads:
            self.clock.set(peripheral.clock_reads[0].before)
        peripheral.come_in_range()
        try:
            await asyncio.wait_for(peripheral.ready.wait(), STALL_TIMEOUT)
        except TimeoutError:
            raise ChainError(f"device {device.id}: the gateway did not connect") from None

    def _session_clock(
        self, device: _Device, at: int
    ) -> tuple[list[tuple[bytes, datetime]], datetime | None]:
        """The Current Time reads and the clock write of the session starting at step ``at``."""
        reads: list[tuple[bytes, datetime]] = []
        set_at = None
        for n in range(at, len(self.plan.steps)):
            step = self.plan.steps[n]
            e = step.event
            if step.device is not device:
                continue
            if n > at and e.event in ("disconnect", "connect", "reconnect"):
                break
            if e.ble is not None and e.ble.characteristic.upper() == CURRENT_TIME:
                reads.append((e.ble.data, e.at))
                self.scripted.add(n)
            elif e.event == "clock_set":
                set_at = e.at
            elif step.values:
                break  # values come after the session's set-up steps
        return reads, set_at

    async def disconnect(self, device: _Device) -> None:
        """The device goes away (after the gateway handled what it sent)."""
        if device.peripheral is None or not device.peripheral.connected:
            return
        await self.settle()
        await device.peripheral.go_away()

    async def ble_step(self, n: int, step: _Step) -> None:
        device = step.device
        assert device is not None
        e = step.event
        if e.event in ("connect", "reconnect"):
            await self.connect(device, n)
            return
        if e.event == "disconnect":
            await self.disconnect(device)
            return
        if e.ble is not None and not step.values and n not in self.scripted:
            # a Current Time read no connection has played yet: the hub reads the clock
            # once per connection, so this one starts a session of its own
            if device.profile is not None:
                await self.disconnect(device)
                await self.connect(device, n)
            return
        if not step.values:
            return  # clock reads and writes are scripted at connection; clock_change counts
        await self.connect(device, n)
        assert device.peripheral is not None
        self.clock.set(e.at)
        for char, data in step.values:
            if not await device.peripheral.send(char, data):
                self.replayer.quarantine(
                    e, "unsupported-on-path", f"ble: the gateway does not listen to {char}"
                )
                self.replayer.result.not_sent += 1
                continue
            self.sent_values += 1
            self.sent_by.setdefault((device.id, data), []).append(e)

    # -- MQTT -----------------------------------------------------------------------------

    async def mqtt_step(self, step: _Step, client: Any) -> None:
        if not step.values:
            return
        self.clock.set(step.event.at)
        for topic, payload in step.values:
            await client.publish(topic, payload, qos=1)
            self.sent_messages += 1
            assert step.device is not None
            self.sent_by.setdefault((step.device.id, payload), []).append(step.event)

    # -- the run --------------------------------------------------------------------------

    async def play(self, client: Any) -> None:
        previous: datetime | None = None
        for n, step in enumerate(self.plan.steps):
            e = step.event
            if self.speed is not None and previous is not None:
                gap = (e.at - previous).total_seconds() / self.speed
                if gap > 0:
                    await self.settle()
                    await self.sleep(gap)
            previous = e.at
            if e.care_plan is not None:
                assert e.patient is not None
                await self.settle()
                self.replayer.set_care_plan(e.patient, e.care_plan.thresholds)
                continue
            if e.event is not None:
                self.replayer.result.device_events += 1
            if self.plan.path == "ble":
                await self.ble_step(n, step)
            else:
                await self.mqtt_step(step, client)
            if step.values and self._next_time(n) != e.at:
                await self.settle()
        await self.settle()
        for device in self.plan.devices.values():
            if device.peripheral is not None:
                await device.peripheral.go_away()
        await self.keep_rejected()

    async def keep_rejected(self) -> None:
        """Move what the gateway quarantined (values it could not decode) into the store's
        quarantine, as the feed events that sent them: the gateway's outbox is temporary."""
        held = await asyncio.to_thread(self.gateway.outbox.quarantined)
        for device, source, reason, payload in held:
            sent = self.sent_by.get((device, payload))
            if not sent:  # not sent by this replay: keep it as the gateway did
                item = QuarantineItem(
                    self.clock(), f"gateway:{device}:{source}", "decode-error", reason, payload
                )
                self.replayer.store.quarantine([item])
                self.replayer.result.rejected += 1
                continue
            event = sent.pop(0)
            self.clock.set(event.at)
            self.replayer.quarantine(event, "decode-error", reason)

    def _next_time(self, n: int) -> datetime | None:
        return self.plan.steps[n + 1].event.at if n + 1 < len(self.plan.steps) else None


async def replay_through_gateway(
    events: Sequence[FeedEvent],
    store: Store,
    *,
    path: str,
    replayer: FeedReplayer,
    broker: str | None = None,
    speed: float | None = None,
    sleep: AsyncSleep = asyncio.sleep,
    work_dir: Path | None = None,
) -> ReplayResult:
    """Replay ``events`` along ``path`` (``ble`` or ``mqtt``) into ``store``."""
    import uvicorn

    from gateway.runtime import Gateway, GatewayConfig
    from ingest.http import create_app
    from ingest.mqtt import MqttIngest

    if path == "mqtt" and broker is None:
        raise ChainError("the mqtt path needs a broker (--broker mqtt://HOST:PORT)")
    clock = replayer.clock
    result = replayer.result
    result.path = path
    result.events = len(events)
    if not events:
        return result
    clock.set(events[0].at)
    stored_before = store.count_observations()
    plan = _Plan(events, path, replayer, store)
    run = _Run(plan, clock, replayer, speed=speed, sleep=sleep)
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ww-replay-")))
        async with contextlib.AsyncExitStack() as tasks:
            tg = await tasks.enter_async_context(asyncio.TaskGroup())
            background: list[asyncio.Task[Any]] = []
            if broker is not None:
                ingest = MqttIngest(replayer.pipeline, BrokerAddress.parse(broker))
                background.append(tg.create_task(ingest.run(), name="replay-ingest-mqtt"))
                await asyncio.wait_for(ingest.ready.wait(), STALL_TIMEOUT)
                uplink = broker
            else:
                port = _free_port()
                app = create_app(replayer.pipeline, clock=clock)
                config = uvicorn.Config(
                    app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
                )
                server = uvicorn.Server(config)
                background.append(tg.create_task(server.serve(), name="replay-ingest-http"))
                while not server.started:  # noqa: ASYNC110 (uvicorn sets a flag only)
                    await asyncio.sleep(0.005)
                uplink = f"http://127.0.0.1:{port}"
            gw_config = GatewayConfig(
                gateway_id=plan.gateway_id,
                uplink=uplink,
                outbox_path=work_dir / "outbox.sqlite",
                devices=plan.paired(),
                device_broker=broker if path == "mqtt" else None,
                ack_timeout=5.0,
                # the replayer waits for the outbox to empty after each event's readings, so
                # batching by lingering would only add its wait to every event
                linger=0.0,
            )
            gateway = Gateway(
                gw_config,
                scanner_backend=run.air.scanner_backend(),
                client_backend=run.air.client_backend(),
                profiles=run.profiles,
                clock=clock,
            )
            gateway.collector.backoff = ReconnectBackoff(initial=0.0, maximum=0.0, jitter=0.0)
            run.gateway = gateway
            background.append(tg.create_task(gateway.run(), name="replay-gateway"))
            try:
                if path == "mqtt":
                    assert gateway.device_input is not None
                    assert broker is not None
                    await asyncio.wait_for(gateway.device_input.ready.wait(), STALL_TIMEOUT)
                    async with BrokerAddress.parse(broker).client("wardwatch-sim-replay") as client:
                        await run.play(client)
                else:
                    await run.play(None)
            finally:
                for task in background:
                    task.cancel()
    collector = gateway.collector
    result.readings = collector.readings_in + (
        gateway.device_input.readings_in if gateway.device_input else 0
    )
    result.stored = store.count_observations() - stored_before
    return result
