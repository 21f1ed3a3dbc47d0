"""BLE input: scan, connect, subscribe, decode — on bleak's public API only.

The backend seam (``backend=`` on BleakScanner/BleakClient) lets ``firmware_sim`` stand in
for the radio in tests and the demo; on a hub the platform backend (BlueZ) is used.
Which characteristics a device is read through comes from its advertised services
(the Bluetooth SIG health services); device profiles refine that per model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from gateway.decoders import decode_characteristic
from gateway.errors import DecodeError
from wardwatch.reading import Reading

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
    """A device paired to the hub's patient, found by BLE address or local name."""

    device_id: str
    patient: str
    address: str | None = None
    name: str | None = None

    def matches(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        """Whether an advertisement comes from this device."""
        if self.address is not None:
            return device.address.upper() == self.address.upper()
        return self.name is not None and (adv.local_name or device.name) == self.name


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
    ) -> None:
        self.devices = list(devices)
        self.on_readings = on_readings
        self.on_reject = on_reject
        self.scanner_backend = scanner_backend
        self.client_backend = client_backend
        self.clock = clock
        self.reconnect_delay = reconnect_delay
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
                    services = [uuid16(u) for u in adv.service_uuids]
                    self._sessions[paired.device_id] = asyncio.create_task(
                        self._session(paired, device, services),
                        name=f"ble-session-{paired.device_id}",
                    )

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

    def _handler(
        self, paired: PairedDevice, char: str
    ) -> Callable[[Any, bytearray], Awaitable[None]]:
        async def handle(_sender: Any, data: bytearray) -> None:
            payload = bytes(data)
            try:
                decoded = decode_characteristic(char, payload, received_at=self.clock())
            except DecodeError as exc:
                self.rejected += 1
                await self.on_reject(paired, char, payload, exc)
                return
            self.readings_in += len(decoded.readings)
            if decoded.readings:
                await self.on_readings(paired, decoded.readings, char, payload)

        return handle
