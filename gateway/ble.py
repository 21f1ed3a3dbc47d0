"""BLE input: scan, connect, subscribe, decode — on bleak's public API only.

The backend seam (``backend=`` on BleakScanner/BleakClient) lets ``firmware_sim`` stand in
for the radio in tests and the demo; on a hub the platform backend (BlueZ) is used.
A device's profile (``gateway.profiles``) is chosen from its advertisement (or pinned with
``PairedDevice.profile``) and its ``session`` steps are run in order: bond, set the clock
(Current Time 0x2A2B), read feature characteristics, subscribe, and Record Access Control
Point requests (records after the last sequence number, which is kept per device in the
outbox database). Values are decoded through the profile, quirks applied. A device no
profile matches falls back to its advertised SIG health services (``SERVICE_MEASUREMENTS``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_str

from gateway.decoders import (
    NO_CONTEXT,
    Decoded,
    DeviceContext,
    RacpResponse,
    decode_characteristic,
    decode_racp_response,
    encode_current_time,
    report_all_records,
    report_number_of_records,
    report_records_from,
    session_start_utc,
)
from gateway.errors import DecodeError
from gateway.profiles import Advertisement, Profile, ProfileRegistry
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


@dataclass(slots=True)
class _Session:
    """What one connection to a profiled device keeps."""

    paired: PairedDevice
    profile: Profile
    queue: asyncio.Queue[tuple[str, bytes, datetime]]
    disconnected: asyncio.Event
    context: DeviceContext = NO_CONTEXT
    racp_waiter: asyncio.Future[RacpResponse] | None = None


ReadingsHandler = Callable[[PairedDevice, Sequence[Reading], str, bytes], Awaitable[None]]
RejectHandler = Callable[[PairedDevice, str, bytes, DecodeError], Awaitable[None]]


class BleCollector:
    """Keeps paired BLE devices connected and hands their decoded readings on."""

    def __init__(
        self,
        devices: Sequence[PairedDevice],
        on_readings: ReadingsHandler,
        on_reject: RejectHandler,
        *,
        scanner_backend: type[Any] | None = None,
        client_backend: type[Any] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reconnect_delay: float = 1.0,
        profiles: ProfileRegistry | None = None,
        sequences: SequenceStore | None = None,
        racp_timeout: float = 30.0,
    ) -> None:
        self.devices = list(devices)
        self.on_readings = on_readings
        self.on_reject = on_reject
        self.scanner_backend = scanner_backend
        self.client_backend = client_backend
        self.clock = clock
        self.reconnect_delay = reconnect_delay
        self.profiles = profiles
        self.sequences: SequenceStore = sequences if sequences is not None else MemorySequences()
        self.racp_timeout = racp_timeout
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self.last_seen: dict[str, datetime] = {}
        self.readings_in = 0
        self.rejected = 0

    async def run(self) -> None:
        """Scan continuously and keep a session open to every paired device in range."""
        scanner = BleakScanner(detection_callback=self._detected, backend=self.scanner_backend)
        await scanner.start()
        try:
            await asyncio.Event().wait()
        finally:
            await scanner.stop()
            for task in self._sessions.values():
                task.cancel()
            await asyncio.gather(*self._sessions.values(), return_exceptions=True)

    def _detected(self, device: BLEDevice, adv: AdvertisementData) -> None:
        for paired in self.devices:
            if paired.matches(device, adv):
                self.last_seen[paired.device_id] = self.clock()
                task = self._sessions.get(paired.device_id)
                if task is None or task.done():
                    profile = self.profile_for(paired, adv)
                    if profile is not None:
                        coro = self._profile_session(paired, device, profile)
                    else:
                        services = [uuid16(u) for u in adv.service_uuids]
                        coro = self._session(paired, device, services)
                    self._sessions[paired.device_id] = asyncio.create_task(
                        coro, name=f"ble-session-{paired.device_id}"
                    )

    def profile_for(self, paired: PairedDevice, adv: AdvertisementData) -> Profile | None:
        """The device's profile: the pinned one, else the best match of its advertisement."""
        if self.profiles is None:
            return None
        if paired.profile is not None:
            return self.profiles.get(paired.profile)
        profile = self.profiles.match_ble(advertisement(adv))
        return profile if profile is not None and profile.transport == "ble" else None

    async def _session(self, paired: PairedDevice, device: BLEDevice, services: list[str]) -> None:
        wanted = [c for s in services for c in SERVICE_MEASUREMENTS.get(s, ())]
        if not wanted:
            log.warning("device %s advertises no supported health service", paired.device_id)
            await asyncio.sleep(60)
            return
        disconnected = asyncio.Event()
        try:
            async with BleakClient(
                device,
                disconnected_callback=lambda _c: disconnected.set(),
                backend=self.client_backend,
            ) as client:
                log.info("connected to device %s", paired.device_id)
                for char in wanted:
                    await client.start_notify(char, self._handler(paired, char))
                await disconnected.wait()
                log.info("device %s disconnected", paired.device_id)
        except (BleakError, TimeoutError, OSError) as exc:
            log.info("session with device %s ended: %s", paired.device_id, type(exc).__name__)
        await asyncio.sleep(self.reconnect_delay)

    # profile-driven sessions

    async def _profile_session(
        self, paired: PairedDevice, device: BLEDevice, profile: Profile
    ) -> None:
        """Connect and run the profile's session steps; decode what arrives, in order."""
        disconnected = asyncio.Event()
        session = _Session(paired, profile, asyncio.Queue(), disconnected)
        worker = asyncio.create_task(self._drain(session), name=f"ble-decode-{paired.device_id}")
        try:
            async with BleakClient(
                device,
                disconnected_callback=lambda _c: disconnected.set(),
                backend=self.client_backend,
            ) as client:
                log.info("connected to device %s (profile %s)", paired.device_id, profile.id)
                for step in profile.session:
                    if disconnected.is_set():
                        break
                    await self._step(client, session, step)
                await disconnected.wait()
                log.info("device %s disconnected", paired.device_id)
        except (BleakError, TimeoutError, OSError) as exc:
            log.info("session with device %s ended: %s", paired.device_id, type(exc).__name__)
        finally:
            try:
                await asyncio.wait_for(session.queue.join(), timeout=5)
            except TimeoutError:
                log.warning("device %s: values left undecoded", paired.device_id)
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        await asyncio.sleep(self.reconnect_delay)

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
        if step.step == "set_current_time":
            char = self._characteristic(client, CURRENT_TIME)
            if char is None:
                log.warning("device %s has no Current Time characteristic", paired.device_id)
                return
            await client.write_gatt_char(char, encode_current_time(self.clock()), response=True)
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
                queue.put_nowait((uuid, bytes(data), self.clock()))

            await client.start_notify(char, on_value)
        else:
            log.warning("device %s: unknown session step %r", paired.device_id, step.step)

    async def _read_value(self, session: _Session, uuid: str, value: bytes) -> None:
        """A value read during the session: feature and session-start values set context."""
        profile, paired = session.profile, session.paired
        try:
            decoded = profile.decode_ble_value(
                value, characteristic=uuid, received_at=self.clock(), device=session.context
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
        await client.write_gatt_char(char, data, response=True)
        gone = asyncio.ensure_future(session.disconnected.wait())
        try:
            await asyncio.wait(
                {waiter, gone}, timeout=self.racp_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
        if waiter.done():
            log.info(
                "device %s: RACP %s answered %s", paired.device_id, data.hex(), waiter.result()
            )
        else:
            log.info("device %s: RACP %s not answered on this link", paired.device_id, data.hex())

    async def _drain(self, session: _Session) -> None:
        """Decode queued values one at a time, in the order they arrived."""
        while True:
            uuid, payload, received_at = await session.queue.get()
            try:
                await self._value(session, uuid, payload, received_at)
            except Exception:
                log.exception("device %s: handling %s failed", session.paired.device_id, uuid)
            finally:
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
            waiter = session.racp_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(response)
            return
        decoded = await self._hand_on(
            paired,
            uuid,
            payload,
            lambda: session.profile.decode_ble_value(
                payload, characteristic=uuid, received_at=received_at, device=session.context
            ),
        )
        if decoded is None:
            return
        sequence = decoded.fields.get("sequence_number")
        if uuid in SEQUENCED and isinstance(sequence, int):
            # after the readings are durably queued: a crash re-reads, never skips
            await asyncio.to_thread(self.sequences.set_last_sequence, paired.device_id, sequence)

    def _handler(
        self, paired: PairedDevice, char: str
    ) -> Callable[[Any, bytearray], Awaitable[None]]:
        async def handle(_sender: Any, data: bytearray) -> None:
            payload = bytes(data)
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
