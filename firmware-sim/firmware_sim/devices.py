"""Device models built on :class:`~firmware_sim.ble.SimulatedPeripheral`."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from firmware_sim._clock import DeviceClock
from firmware_sim._gatt import SimulatedCharacteristic, SimulatedService, normalize_uuid
from firmware_sim._peripheral import SimulatedPeripheral
from firmware_sim.encoding import PressureUnit, encode_blood_pressure_measurement

__all__ = [
    "BATTERY_LEVEL",
    "BATTERY_SERVICE",
    "BLOOD_PRESSURE_FEATURE",
    "BLOOD_PRESSURE_MEASUREMENT",
    "BLOOD_PRESSURE_SERVICE",
    "DEVICE_INFORMATION_SERVICE",
    "FIRMWARE_REVISION",
    "MANUFACTURER_NAME",
    "MODEL_NUMBER",
    "SERIAL_NUMBER",
    "BloodPressureCuff",
    "BloodPressureReading",
    "BroadcastScale",
    "battery_service",
    "device_information_service",
]

logger = logging.getLogger(__name__)

BLOOD_PRESSURE_SERVICE = normalize_uuid(0x1810)
BLOOD_PRESSURE_MEASUREMENT = normalize_uuid(0x2A35)
BLOOD_PRESSURE_FEATURE = normalize_uuid(0x2A49)
DEVICE_INFORMATION_SERVICE = normalize_uuid(0x180A)
MANUFACTURER_NAME = normalize_uuid(0x2A29)
MODEL_NUMBER = normalize_uuid(0x2A24)
SERIAL_NUMBER = normalize_uuid(0x2A25)
FIRMWARE_REVISION = normalize_uuid(0x2A26)
BATTERY_SERVICE = normalize_uuid(0x180F)
BATTERY_LEVEL = normalize_uuid(0x2A19)


@dataclass(frozen=True, slots=True)
class BloodPressureReading:
    """One cuff measurement, in the cuff's unit; ``at`` is the cuff's clock time.

    (With a cuff ``clock``, ``at`` is the true time the measurement was taken and the cuff
    stamps it with what its own clock showed then.)
    """

    systolic: float
    diastolic: float
    mean: float
    pulse: float | None
    at: datetime
    user_id: int | None = None
    status: int | None = None


def device_information_service(
    manufacturer: str, model_number: str, serial_number: str, firmware_revision: str
) -> SimulatedService:
    """A Device Information service (0x180A) with readable UTF-8 strings."""
    return SimulatedService(
        DEVICE_INFORMATION_SERVICE,
        [
            SimulatedCharacteristic(MANUFACTURER_NAME, ["read"], manufacturer.encode()),
            SimulatedCharacteristic(MODEL_NUMBER, ["read"], model_number.encode()),
            SimulatedCharacteristic(SERIAL_NUMBER, ["read"], serial_number.encode()),
            SimulatedCharacteristic(FIRMWARE_REVISION, ["read"], firmware_revision.encode()),
        ],
    )


def _battery_level(level: int) -> bytes:
    if not 0 <= level <= 100:
        raise ValueError(f"battery level {level} is not a percentage")
    return bytes([level])


def battery_service(level: int) -> SimulatedService:
    """A Battery service (0x180F): Battery Level (0x2A19), read and notify."""
    return SimulatedService(
        BATTERY_SERVICE,
        [SimulatedCharacteristic(BATTERY_LEVEL, ["read", "notify"], _battery_level(level))],
    )


class BloodPressureCuff(SimulatedPeripheral):
    """A Bluetooth SIG Blood Pressure Profile cuff.

    Stores measurements until a central enables indications on Blood Pressure
    Measurement (0x2A35), then indicates every stored one, oldest first, one indication
    each. :meth:`take_measurement` sends a new measurement live when a central is
    subscribed and stores it otherwise.
    """

    def __init__(
        self,
        address: str,
        readings: Iterable[BloodPressureReading] = (),
        *,
        local_name: str | None = None,
        unit: PressureUnit = "mmHg",
        manufacturer: str = "Wardwatch Simulated Devices",
        model_number: str = "BPC-SIM-1",
        serial_number: str | None = None,
        firmware_revision: str = "1.0.0",
        battery_level: int = 100,
        features: int = 0x0000,
        manufacturer_data: Mapping[int, bytes] | None = None,
        rssi: int = -60,
        requires_bonding: bool = False,
        disconnect_after_transfer: bool = False,
        clock: DeviceClock | None = None,
    ) -> None:
        """Create a cuff holding ``readings`` (not yet sent).

        ``requires_bonding`` protects the measurement characteristic (as the Blood
        Pressure Profile asks); ``disconnect_after_transfer`` makes the cuff drop the
        connection once it has sent its stored measurements, as many cuffs do. ``clock``
        (a drifted or never-set :class:`~firmware_sim._clock.DeviceClock`) gives the cuff
        a Current Time Service reporting it (a write sets it) and stamps measurements
        with it.
        """
        compact = address.replace(":", "").upper()
        super().__init__(
            address,
            local_name=local_name or f"BP-Sim-{compact[-4:]}",
            advertised_service_uuids=[BLOOD_PRESSURE_SERVICE],
            manufacturer_data=manufacturer_data,
            rssi=rssi,
            services=[
                SimulatedService(
                    BLOOD_PRESSURE_SERVICE,
                    [
                        SimulatedCharacteristic(
                            BLOOD_PRESSURE_MEASUREMENT,
                            ["indicate"],
                            requires_bonding=requires_bonding,
                        ),
                        SimulatedCharacteristic(
                            BLOOD_PRESSURE_FEATURE, ["read"], features.to_bytes(2, "little")
                        ),
                    ],
                ),
                device_information_service(
                    manufacturer, model_number, serial_number or f"SN{compact}", firmware_revision
                ),
                battery_service(battery_level),
            ],
        )
        self.unit: PressureUnit = unit
        self.disconnect_after_transfer = disconnect_after_transfer
        self._pending = collections.deque(readings)
        self._sent: list[BloodPressureReading] = []
        self._transfer_lock = asyncio.Lock()
        self.clock = clock
        if clock is not None:
            self.add_service(clock.service())

    @property
    def pending(self) -> tuple[BloodPressureReading, ...]:
        """Stored measurements not yet sent, oldest first."""
        return tuple(self._pending)

    @property
    def sent(self) -> tuple[BloodPressureReading, ...]:
        """Measurements delivered to a central, in the order they were sent."""
        return tuple(self._sent)

    def encode(self, reading: BloodPressureReading) -> bytes:
        """The 0x2A35 value this cuff sends for ``reading``."""
        return encode_blood_pressure_measurement(
            reading.systolic,
            reading.diastolic,
            reading.mean,
            unit=self.unit,
            timestamp=reading.at if self.clock is None else self.clock.at(reading.at),
            pulse=reading.pulse,
            user_id=reading.user_id,
            status=reading.status,
        )

    async def take_measurement(self, reading: BloodPressureReading) -> bool:
        """Record a new measurement; True if it was sent live, False if it was stored."""
        self._pending.append(reading)
        await self._send_pending()
        return not any(stored is reading for stored in self._pending)

    async def set_battery_level(self, level: int) -> None:
        """Change the battery level and notify subscribed centrals."""
        value = _battery_level(level)
        self.set_value(BATTERY_LEVEL, value)
        await self.notify(BATTERY_LEVEL, value)

    def on_subscription_changed(
        self, characteristic: SimulatedCharacteristic, *, enabled: bool
    ) -> None:
        """Start the transfer of stored measurements when 0x2A35 indications are enabled."""
        if enabled and characteristic.uuid == BLOOD_PRESSURE_MEASUREMENT:
            self.run_soon(self._transfer_stored())

    async def _transfer_stored(self) -> None:
        sent = await self._send_pending()
        logger.debug("%s: transferred %d stored measurement(s)", self.address, sent)
        if self.disconnect_after_transfer and not self._pending:
            await self.disconnect()

    async def _send_pending(self) -> int:
        """Indicate stored measurements in order until none is left or nobody listens."""
        sent = 0
        async with self._transfer_lock:
            while self._pending and self.is_subscribed(BLOOD_PRESSURE_MEASUREMENT):
                reading = self._pending[0]
                if await self.notify(BLOOD_PRESSURE_MEASUREMENT, self.encode(reading)) == 0:
                    break
                self._sent.append(self._pending.popleft())
                sent += 1
        return sent


class BroadcastScale(SimulatedPeripheral):
    """An advertising-only bathroom scale (the ``levio-fs2`` device profile).

    It never accepts a connection. While its display is on it broadcasts the weight in
    manufacturer data of company id 0xFFFF: a one-byte measurement counter, then the
    Weight Measurement (0x2A9D) format in kilograms (0.005 kg steps, no time stamp); every
    advertisement repeats the same bytes until the next measurement.
    """

    COMPANY_ID = 0xFFFF

    def __init__(self, address: str, *, local_name: str | None = None, rssi: int = -60) -> None:
        compact = address.replace(":", "").upper()
        super().__init__(
            address,
            local_name=local_name or f"FS2-{compact[-4:]}",
            rssi=rssi,
            accepts_connections=False,
        )
        #: the measurement counter (first byte of the broadcast)
        self.counter = 0
        #: advertisements heard by scanners so far
        self.heard = 0

    def on_advertised(self) -> None:
        """Count the advertisements heard (tests wait for repeats with it)."""
        self.heard += 1

    def show_weight(self, kg: float) -> bytes:
        """Someone steps on: broadcast a new measurement (the counter moves on).

        Returns the manufacturer data now advertised.
        """
        raw = round(kg / 0.005)
        if not 0 <= raw < 0xFFFF:
            raise ValueError(f"{kg} kg is outside the scale's range")
        self.counter = (self.counter + 1) % 256
        return self.show_raw(bytes([self.counter, 0x00]) + raw.to_bytes(2, "little"))

    def show_raw(self, payload: bytes) -> bytes:
        """Broadcast ``payload`` as it is (a firmware fault: garbage in the advertisement)."""
        self.manufacturer_data = {self.COMPANY_ID: bytes(payload)}
        return bytes(payload)

    def display_off(self) -> None:
        """The display goes off: the scale advertises its name only."""
        self.manufacturer_data = {}
