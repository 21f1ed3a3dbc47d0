"""BLE input: scan, connect, subscribe, decode — on bleak's public API only.

The backend seam (``backend=`` on BleakScanner/BleakClient) lets ``firmware_sim`` stand in
for the radio in tests and the demo; on a hub the platform backend (BlueZ) is used.
A device's profile (``gateway.profiles``) is chosen from its advertisement (or pinned with
``PairedDevice.profile``) and its ``session`` steps are run in order: bond, set the clock
(Current Time 0x2A2B), read feature characteristics, subscribe, and Record Access Control
Point requests (records after the last sequence number, which is kept per device in the
outbox database). Values are decoded through the profile, quirks applied. A device no
profile matches falls back to its advertised SIG health services (``SERVICE_MEASUREMENTS``).
Before the first step after bonding, a device's Current Time (if it has one) is read against
the hub's clock, before the hub sets it; its time stamps are then placed on the hub's
timeline and the coincident time stamp recorded (``gateway.timekeeping``).

Connections go through ``bleak-retry-connector`` (``establish_connection``: its retries
within one attempt; ``backend=`` passes through to ``BleakClient``). Between session
attempts each device waits its own exponential backoff with jitter
(:class:`gateway.reconnect.ReconnectBackoff`). Battery Level (0x2A19) is read at connect
and followed while it notifies (``collector.battery``). A device whose profile is
advertising-only (``transport: ble-advertisement``) is never connected: its measurements
are decoded from the advertisement, repeats of the same bytes within the profile's window
being one reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_str
from bleak_retry_connector import establish_connection

from gateway.decoders import (
    NO_CONTEXT,
    Decoded,
    DeviceContext,
    RacpResponse,
    decode_characteristic,
    decode_current_time,
    decode_racp_response,
    encode_current_time,
    report_all_records,
    report_number_of_records,
    report_records_from,
    session_start_utc,
)
from gateway.errors import DecodeError
from gateway.profiles import Advertisement, Profile, ProfileRegistry
from gateway.profiles._advertisement import AdvertisementSource, RepeatFilter
from gateway.reconnect import ReconnectBackoff
from gateway.timekeeping import ClockPolicy, ClockSample, SessionClock, estimate_offset
from wardwatch.reading import Reading

if TYPE_CHECKING:
    from gateway.profiles._model import SessionStep

log = logging.getLogger(__name__)

#: SIG health service (16-bit) -> measurement characteristics to subscribe to
SERVICE_MEASUREMENTS: Mapping[str, tuple[str, ...]] = {
    "1810": ("2A35",),  # Blood Pressure -> Blood Pressure Measurement (indicate)
}


def uuid16(uuid: str) -> str:
    """The 16-bit part of a SIG UUID, upper-case (``00001810-...`` -> ``1810``)."""
    u = uuid.lower()
    if len(u) == 36 and u.endswith("-0000-1000-8000-00805f9b34fb"):
        return u[4:8].upper()
    return u.upper()


@dataclass(frozen=True, slots=True)
class PairedDevice:
    """A device paired to the hub's patient.

    A BLE device is found by ``address`` or local ``name``; an MQTT device by ``topic``
    (an MQTT topic or filter its messages arrive on, see ``gateway.mqtt_devices``).
    ``profile`` pins the device profile; without it the profile is chosen from the
    advertisement (BLE) or the topic (MQTT).
    """

    device_id: str
    patient: str
    address: str | None = None
    name: str | None = None
    topic: str | None = None
    profile: str | None = None

    def matches(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        """Whether an advertisement comes from this device."""
        if self.address is not None:
            return device.address.upper() == self.address.upper()
        return self.name is not None and (adv.local_name or device.name) == self.name


class SequenceStore(Protocol):
    """Where the last RACP record sequence number of each device is kept (the outbox)."""

    def last_sequence(self, device: str) -> int | None:
        """The highest record sequence number stored for ``device``, None if none."""
        ...

    def set_last_sequence(self, device: str, sequence: int) -> None:
        """Remember ``sequence`` for ``device`` if it is higher than the one kept."""
        ...


class MemorySequences:
    """A :class:`SequenceStore` in memory (when the collector runs without an outbox)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def last_sequence(self, device: str) -> int | None:
        """The highest sequence number seen for ``device``."""
        return self._last.get(device)

    def set_last_sequence(self, device: str, sequence: int) -> None:
        """Keep the higher of ``sequence`` and the one kept."""
        self._last[device] = max(sequence, self._last.get(device, sequence))


def advertisement(adv: AdvertisementData) -> Advertisement:
    """The profile-matching view of a bleak advertisement."""
    return Advertisement(
        adv.local_name,
        frozenset(uuid16(u) for u in adv.service_uuids),
        frozenset(adv.manufacturer_data),
    )


#: the measurement characteristics whose Sequence Number is the RACP record number
SEQUENCED = frozenset({"2A18"})
RACP = "2A52"
CURRENT_TIME = "2A2B"
BATTERY_LEVEL = "2A19"
#: profile transports the BLE collector serves
BLE_TRANSPORTS = frozenset({"ble", "ble-advertisement"})


@dataclass(slots=True)
class _Session:
    """What one connection to a profiled device keeps."""

    paired: PairedDevice
    profile: Profile
    queue: asyncio.Queue[tuple[str, bytes, datetime]]
    disconnected: asyncio.Event
    context: DeviceContext = NO_CONTEXT
    racp_waiter: asyncio.Future[RacpResponse] | None = None
    in_transfer: bool = False
    """An RACP request is outstanding: sequenced records now are its answer, in order, and
    move the last sequence number; a live notification outside a transfer does not (the
    records before it may never have been read)."""
    transfer_cut: bool = False
    """The link dropped while an RACP transfer was under way."""
    sequence_held: bool = False
    """Handing on a sequenced record failed: later records must not move the last sequence
    number past it (the next session asks again from there)."""
    clock: SessionClock | None = None
    """The device clock against the hub's, measured before the first step after bonding."""


ReadingsHandler = Callable[[PairedDevice, Sequence[Reading], str, bytes], Awaitable[None]]
RejectHandler = Callable[[PairedDevice, str, bytes, DecodeError], Awaitable[None]]


class DeviceRecorder(Protocol):
    """Keeps what devices actually sent, as it arrived (``wardwatch gateway run --record``).

    ``at`` is the hub's clock. Implemented by ``firmware_sim.feeds.record.FeedRecorder``;
    a recorder must not block (it is called on the event loop).
    """

    def value(self, device: PairedDevice, at: datetime, characteristic: str, data: bytes) -> None:
        """A GATT value notified, indicated or read (16-bit UUID, as received)."""
        ...

    def message(self, device: PairedDevice, at: datetime, topic: str, payload: bytes) -> None:
        """An MQTT device message of a paired device."""
        ...

    def happening(
        self,
        device: PairedDevice,
        at: datetime,
        what: str,
        *,
        profile: str | None = None,
        data: bytes | None = None,
    ) -> None:
        """``connect`` (with the profile), ``disconnect``, ``clock_set`` (the Current Time
        value written). A clock read is a :meth:`value` of ``2A2B`` at the hub's time
        half-way through the read."""
        ...


class BleCollector:
    """Keeps paired BLE devices connected and hands their decoded readings on.

    ``backoff`` spaces session attempts per device (``rng`` draws its jitter);
    ``connect_attempts`` is bleak-retry-connector's ``max_attempts`` within one session
    attempt. ``battery`` holds the last Battery Level (%) per device id, ``last_seen`` the
    time each device was last heard, ``connect_failures`` its consecutive failed sessions.
    """

    #: when a device clock is corrected or not trusted (see ``gateway.timekeeping``)
    clock_policy = ClockPolicy()

    def __init__(
        self,
        devices: Sequence[PairedDevice],
        on_readings: ReadingsHandler,
        on_reject: RejectHandler,
        *,
        scanner_backend: type[Any] | None = None,
        client_backend: type[Any] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backoff: ReconnectBackoff | None = None,
        rng: random.Random | None = None,
        connect_attempts: int = 3,
        profiles: ProfileRegistry | None = None,
        sequences: SequenceStore | None = None,
        racp_timeout: float = 30.0,
        record: DeviceRecorder | None = None,
    ) -> None:
        self.devices = list(devices)
        #: where what devices send is recorded (None: not recorded)
        self.record = record
        self.on_readings = on_readings
        self.on_reject = on_reject
        self.scanner_backend = scanner_backend
        self.client_backend = client_backend
        self.clock = clock
        self.backoff = backoff if backoff is not None else ReconnectBackoff()
        # jitter only spreads retries out: no need for a cryptographic source
        self.rng = rng if rng is not None else random.Random()  # noqa: S311
        self.connect_attempts = connect_attempts
        self.profiles = profiles
        self.sequences: SequenceStore = sequences if sequences is not None else MemorySequences()
        self.racp_timeout = racp_timeout
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._profile_of: dict[str, Profile] = {}
        self._repeats = RepeatFilter()
        self._advertised: asyncio.Queue[
            tuple[PairedDevice, Profile, AdvertisementSource, bytes, datetime]
        ] = asyncio.Queue()
        self.last_seen: dict[str, datetime] = {}
        self.battery: dict[str, int] = {}
        self.connect_failures: dict[str, int] = {}
        self.readings_in = 0
        self.rejected = 0
        #: values taken off the session queues and handled (decoded and handed on, or not)
        self.values_handled = 0

    async def run(self) -> None:
        """Scan continuously and keep a session open to every paired device in range."""
        scanner = BleakScanner(detection_callback=self._detected, backend=self.scanner_backend)
        advertised = asyncio.create_task(self._drain_advertised(), name="ble-advertisements")
        await scanner.start()
        try:
            await asyncio.Event().wait()
        finally:
            await scanner.stop()
            for task in (*self._sessions.values(), advertised):
                task.cancel()
            await asyncio.gather(*self._sessions.values(), advertised, return_exceptions=True)

    def _detected(self, device: BLEDevice, adv: AdvertisementData) -> None:
        for paired in self.devices:
            if paired.matches(device, adv):
                self.last_seen[paired.device_id] = self.clock()
                profile = self._profile_of.get(paired.device_id) or self.profile_for(paired, adv)
                if profile is not None:
                    # a device does not change model: keep its profile even when a later
                    # advertisement lacks what matched it (a scale with its display off)
                    self._profile_of[paired.device_id] = profile
                if profile is not None and profile.advertisement is not None:
                    self._advertisement(paired, profile, adv)
                    continue
                task = self._sessions.get(paired.device_id)
                if task is None or task.done():
                    if profile is not None:
                        coro = self._profile_session(paired, device, profile)
                    else:
                        services = [uuid16(u) for u in adv.service_uuids]
                        coro = self._session(paired, device, services)
                    self._sessions[paired.device_id] = asyncio.create_task(
                        self._attempt(paired, coro), name=f"ble-session-{paired.device_id}"
                    )

    def profile_for(self, paired: PairedDevice, adv: AdvertisementData) -> Profile | None:
        """The device's profile: the pinned one, else the best match of its advertisement."""
        if self.profiles is None:
            return None
        if paired.profile is not None:
            return self.profiles.get(paired.profile)
        profile = self.profiles.match_ble(advertisement(adv))
        return profile if profile is not None and profile.transport in BLE_TRANSPORTS else None

    async def _attempt(self, paired: PairedDevice, session: Awaitable[bool]) -> None:
        """Run one session, then wait the device's backoff before the next may start."""
        device_id = paired.device_id
        try:
            completed = await session
        except Exception:
            log.exception("device %s: session failed", device_id)
            completed = False
        failures = 0 if completed else self.connect_failures.get(device_id, 0) + 1
        self.connect_failures[device_id] = failures
        delay = self.backoff.delay(failures, self.rng)
        if failures:
            log.info(
                "device %s: %d failed session(s) in a row; next attempt in %.1f s",
                device_id,
                failures,
                delay,
            )
        await asyncio.sleep(delay)

    async def _connect(
        self, paired: PairedDevice, device: BLEDevice, disconnected: asyncio.Event
    ) -> BleakClient:
        """Connect through bleak-retry-connector; ``backend=`` reaches BleakClient."""
        extra: dict[str, Any] = {}
        if self.client_backend is not None:
            extra["backend"] = self.client_backend
        return await establish_connection(
            BleakClient,
            device,
            paired.device_id,
            disconnected_callback=lambda _c: disconnected.set(),
            max_attempts=self.connect_attempts,
            **extra,
        )

    @staticmethod
    async def _disconnect(client: BleakClient) -> None:
        with contextlib.suppress(BleakError, TimeoutError, OSError):
            await client.disconnect()

    async def _session(self, paired: PairedDevice, device: BLEDevice, services: list[str]) -> bool:
        """The fallback session (no profile): subscribe to the SIG measurements advertised."""
        wanted = [c for s in services for c in SERVICE_MEASUREMENTS.get(s, ())]
        if not wanted:
            log.warning("device %s advertises no supported health service", paired.device_id)
            await asyncio.sleep(60)
            return True
        disconnected = asyncio.Event()
        try:
            client = await self._connect(paired, device, disconnected)
            try:
                log.info("connected to device %s", paired.device_id)
                await self._battery(client, paired)
                for char in wanted:
                    await client.start_notify(char, self._handler(paired, char))
                await disconnected.wait()
                log.info("device %s disconnected", paired.device_id)
            finally:
                await self._disconnect(client)
        except (BleakError, TimeoutError, OSError) as exc:
            log.info("session with device %s ended: %s", paired.device_id, type(exc).__name__)
            return False
        return True

    # advertising-only devices

    def _advertisement(
        self, paired: PairedDevice, profile: Profile, adv: AdvertisementData
    ) -> None:
        """Queue each new measurement of an advertisement (repeats are dropped here)."""
        if profile.advertisement is None:
            return
        now = self.clock()
        window = timedelta(seconds=profile.advertisement.repeat_window)
        for source in profile.advertisement.sources:
            if source.service_data is not None:
                data = adv.service_data.get(normalize_uuid_str(source.service_data))
            else:
                data = adv.manufacturer_data.get(source.manufacturer_id or 0)
            if data is None:
                continue
            payload = bytes(data)
            if self._repeats.fresh(paired.device_id, source.key, payload, now, window):
                self._advertised.put_nowait((paired, profile, source, payload, now))

    async def _drain_advertised(self) -> None:
        """Decode advertised measurements and hand them on, in the order heard."""
        while True:
            paired, profile, source, payload, heard_at = await self._advertised.get()
            decode = functools.partial(
                profile.decode_advertisement,
                payload,
                received_at=heard_at,
                service_data=source.service_data,
                manufacturer_id=source.manufacturer_id,
            )
            try:
                await self._hand_on(paired, source.key, payload, decode)
            except Exception:
                log.exception("device %s: handling %s failed", paired.device_id, source.key)

    # battery

    async def _battery(self, client: BleakClient, paired: PairedDevice) -> None:
        """Read Battery Level if the device has it, and follow it if it notifies."""
        char = self._characteristic(client, BATTERY_LEVEL)
        if char is None:
            return

        async def on_level(_sender: Any, data: bytearray) -> None:
            await self._battery_level(paired, bytes(data))

        try:
            if "read" in char.properties:
                await self._battery_level(paired, bytes(await client.read_gatt_char(char)))
            if "notify" in char.properties:
                await client.start_notify(char, on_level)
        except BleakError as exc:
            log.info("device %s: battery level not available (%s)", paired.device_id, exc)

    async def _battery_level(self, paired: PairedDevice, value: bytes) -> None:
        if len(value) != 1 or value[0] > 100:
            self.rejected += 1
            error = DecodeError(
                f"battery level must be one byte of 0-100 %, got {len(value)} byte(s)"
                + (f" starting {value[0]}" if value else ""),
                characteristic=BATTERY_LEVEL,
            )
            await self.on_reject(paired, BATTERY_LEVEL, value, error)
            return
        self.battery[paired.device_id] = value[0]

    # profile-driven sessions

    async def _profile_session(
        self, paired: PairedDevice, device: BLEDevice, profile: Profile
    ) -> bool:
        """Connect and run the profile's session steps; decode what arrives, in order.

        True when every step ran on the link (the device may hang up afterwards, as many
        do); False when the connection failed or dropped before (a transfer cut short).
        """
        disconnected = asyncio.Event()
        session = _Session(paired, profile, asyncio.Queue(), disconnected)
        worker = asyncio.create_task(self._drain(session), name=f"ble-decode-{paired.device_id}")
        completed = False
        try:
            client = await self._connect(paired, device, disconnected)
            try:
                log.info("connected to device %s (profile %s)", paired.device_id, profile.id)
                if self.record is not None:
                    self.record.happening(paired, self.clock(), "connect", profile=profile.id)
                completed = await self._run_steps(client, session)
                await disconnected.wait()
                log.info("device %s disconnected", paired.device_id)
                if self.record is not None:
                    self.record.happening(paired, self.clock(), "disconnect")
            finally:
                await self._disconnect(client)
        except (BleakError, TimeoutError, OSError) as exc:
            log.info("session with device %s ended: %s", paired.device_id, type(exc).__name__)
        finally:
            try:
                await asyncio.wait_for(session.queue.join(), timeout=5)
            except TimeoutError:
                log.warning("device %s: values left undecoded", paired.device_id)
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        return completed

    async def _run_steps(self, client: BleakClient, session: _Session) -> bool:
        """The profile's steps in order, Battery Level read after bonding; True if all ran."""
        battery_read = False
        for step in session.profile.session:
            if session.disconnected.is_set():
                return False
            if not battery_read and step.step != "bond":
                battery_read = True
                await self._battery(client, session.paired)
            await self._step(client, session, step)
        if not battery_read:
            await self._battery(client, session.paired)
        return not session.transfer_cut

    @staticmethod
    def _characteristic(client: BleakClient, uuid: str) -> BleakGATTCharacteristic | None:
        try:
            full = normalize_uuid_str(uuid)
        except ValueError:
            full = uuid
        return client.services.get_characteristic(full)

    async def _step(self, client: BleakClient, session: _Session, step: SessionStep) -> None:
        paired = session.paired
        if step.step == "bond":
            await client.pair()
            return
        if session.clock is None:
            session.clock = await self._measure_clock(client, session)
        if step.step == "set_current_time":
            char = self._characteristic(client, CURRENT_TIME)
            if char is None:
                log.warning("device %s has no Current Time characteristic", paired.device_id)
                return
            now = self.clock()
            value = encode_current_time(now)
            await client.write_gatt_char(char, value, response=True)
            session.clock.clock_was_set(now)
            if self.record is not None:
                self.record.happening(paired, now, "clock_set", data=value)
            return
        if step.step == "racp":
            await self._racp(client, session, step.request or "all_records")
            return
        uuid = step.characteristic or ""
        char = self._characteristic(client, uuid)
        if char is None:
            log.info("device %s has no characteristic %s; step skipped", paired.device_id, uuid)
            return
        if step.step == "read":
            value = bytes(await client.read_gatt_char(char))
            await self._read_value(session, uuid, value)
        elif step.step == "subscribe":
            queue = session.queue

            def on_value(_sender: Any, data: bytearray) -> None:
                received_at = self.clock()
                if self.record is not None:
                    self.record.value(paired, received_at, uuid, bytes(data))
                queue.put_nowait((uuid, bytes(data), received_at))

            await client.start_notify(char, on_value)
        else:
            log.warning("device %s: unknown session step %r", paired.device_id, step.step)

    async def _read_value(self, session: _Session, uuid: str, value: bytes) -> None:
        """A value read during the session: feature and session-start values set context."""
        profile, paired = session.profile, session.paired
        received_at = self.clock()
        if self.record is not None:
            self.record.value(paired, received_at, uuid, value)
        try:
            decoded = profile.decode_ble_value(
                value, characteristic=uuid, received_at=received_at, device=session.context
            )
            if uuid == "2AA8":
                e2e = bool(decoded.fields.get("e2e_crc"))
                session.context = DeviceContext(session.context.cgm_session_start, e2e)
            elif uuid == "2AAA":
                start = session_start_utc(value, e2e=session.context.cgm_e2e_crc)
                session.context = DeviceContext(start, session.context.cgm_e2e_crc)
        except DecodeError as exc:
            self.rejected += 1
            await self.on_reject(paired, uuid, value, exc)
            return
        if decoded.readings:
            self.readings_in += len(decoded.readings)
            await self.on_readings(paired, decoded.readings, uuid, value)

    async def _racp(self, client: BleakClient, session: _Session, request: str) -> None:
        paired = session.paired
        char = self._characteristic(client, RACP)
        if char is None:
            log.warning("device %s has no Record Access Control Point", paired.device_id)
            return
        if request == "records_after_last_sequence":
            last = await asyncio.to_thread(self.sequences.last_sequence, paired.device_id)
            data = (
                report_all_records() if last is None else report_records_from(min(last + 1, 0xFFFF))
            )
        elif request == "number_of_records":
            data = report_number_of_records()
        else:
            data = report_all_records()
        waiter = session.racp_waiter = asyncio.get_running_loop().create_future()
        session.in_transfer = True
        await client.write_gatt_char(char, data, response=True)
        gone = asyncio.ensure_future(session.disconnected.wait())
        try:
            await asyncio.wait(
                {waiter, gone}, timeout=self.racp_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
        if not waiter.done() and session.disconnected.is_set():
            # the response may be among the values received before the link dropped
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.queue.join(), timeout=5)
        if waiter.done():
            log.info(
                "device %s: RACP %s answered %s", paired.device_id, data.hex(), waiter.result()
            )
        elif session.disconnected.is_set():
            # what arrived is queued; the next session asks after the last one stored
            session.transfer_cut = True
            log.info("device %s: link lost during RACP %s", paired.device_id, data.hex())
        else:
            session.in_transfer = False
            log.warning(
                "device %s: RACP %s not answered in %.0f s; carrying on with notifications, "
                "asking again next session",
                paired.device_id,
                data.hex(),
                self.racp_timeout,
            )

    async def _drain(self, session: _Session) -> None:
        """Decode queued values one at a time, in the order they arrived."""
        while True:
            uuid, payload, received_at = await session.queue.get()
            try:
                await self._value(session, uuid, payload, received_at)
            except Exception:
                if uuid in SEQUENCED:
                    session.sequence_held = True
                log.exception("device %s: handling %s failed", session.paired.device_id, uuid)
            finally:
                self.values_handled += 1
                session.queue.task_done()

    async def _value(
        self, session: _Session, uuid: str, payload: bytes, received_at: datetime
    ) -> None:
        paired = session.paired
        if uuid == RACP:
            try:
                response = decode_racp_response(payload)
            except DecodeError as exc:
                self.rejected += 1
                await self.on_reject(paired, uuid, payload, exc)
                return
            session.in_transfer = False  # the response follows the records it answers
            waiter = session.racp_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(response)
            return
        decoded = await self._hand_on(
            paired,
            uuid,
            payload,
            lambda: self._place(
                session,
                session.profile.decode_ble_value(
                    payload, characteristic=uuid, received_at=received_at, device=session.context
                ),
                received_at,
            ),
        )
        if decoded is None:
            return
        sequence = decoded.fields.get("sequence_number")
        if (
            uuid in SEQUENCED
            and isinstance(sequence, int)
            and session.in_transfer
            and not session.sequence_held
        ):
            # after the readings are durably queued: a crash re-reads, never skips
            await asyncio.to_thread(self.sequences.set_last_sequence, paired.device_id, sequence)

    async def _measure_clock(self, client: BleakClient, session: _Session) -> SessionClock:
        """Read the device's Current Time (before the hub sets it) against the hub's clock."""
        char = self._characteristic(client, CURRENT_TIME)
        if char is None or "read" not in char.properties:
            return SessionClock(None, self.clock_policy)
        device_id = session.paired.device_id
        before = self.clock()
        try:
            data = bytes(await client.read_gatt_char(char))
            after = self.clock()
            current = decode_current_time(data)
        except (BleakError, DecodeError) as exc:
            log.warning("device %s: Current Time unreadable (%s)", device_id, exc)
            return SessionClock(None, self.clock_policy)
        # the hub's time half-way through the read stands for the device's reading
        sample = ClockSample(current.to_datetime(UTC), before + (after - before) / 2)
        if self.record is not None:
            self.record.value(session.paired, sample.hub_time, CURRENT_TIME, data)
        estimate = estimate_offset([sample], self.clock_policy)
        if estimate.fault is not None:
            log.warning("device %s: clock not trusted: %s", device_id, estimate.fault)
        elif estimate.offset is not None and abs(estimate.offset) > self.clock_policy.tolerance:
            log.info(
                "device %s: clock off by %.0f s; its time stamps are corrected",
                device_id,
                estimate.offset.total_seconds(),
            )
        return SessionClock(estimate, self.clock_policy)

    @staticmethod
    def _place(session: _Session, decoded: Decoded, received_at: datetime) -> Decoded:
        """Device-stamped readings placed on the hub's timeline (``gateway.timekeeping``)."""
        if session.clock is None:
            return decoded
        return session.clock.apply(decoded, received_at)

    def _handler(
        self, paired: PairedDevice, char: str
    ) -> Callable[[Any, bytearray], Awaitable[None]]:
        async def handle(_sender: Any, data: bytearray) -> None:
            payload = bytes(data)
            if self.record is not None:
                self.record.value(paired, self.clock(), char, payload)
            await self._hand_on(
                paired,
                char,
                payload,
                lambda: decode_characteristic(char, payload, received_at=self.clock()),
            )

        return handle

    async def _hand_on(
        self, paired: PairedDevice, char: str, payload: bytes, decode: Callable[[], Decoded]
    ) -> Decoded | None:
        """Decode a value and hand its readings on; quarantine it if it cannot be decoded."""
        try:
            decoded = decode()
        except DecodeError as exc:
            self.rejected += 1
            await self.on_reject(paired, char, payload, exc)
            return None
        self.readings_in += len(decoded.readings)
        if decoded.readings:
            await self.on_readings(paired, decoded.readings, char, payload)
        return decoded
