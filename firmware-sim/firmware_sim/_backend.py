"""bleak backends (scanner and client) that talk to simulated peripherals.

They implement exactly bleak's backend seam, :class:`BaseBleakScanner` and
:class:`BaseBleakClient`; bleak's public ``BleakScanner``/``BleakClient`` wrap them
unchanged. Concrete classes are bound to one :class:`SimulatedAir` by
:meth:`SimulatedAir.scanner_backend` / :meth:`SimulatedAir.client_backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError

from firmware_sim._gatt import SimulatedCharacteristic, SimulatedDescriptor, normalize_uuid
from firmware_sim._peripheral import Link, SimulatedPeripheral
from firmware_sim.errors import AttError, FirmwareSimError

if TYPE_CHECKING:
    from firmware_sim._air import SimulatedAir

__all__ = ["SimulatedBleakClient", "SimulatedBleakScanner"]

logger = logging.getLogger(__name__)


def _bound_air(backend: object) -> SimulatedAir:
    air: SimulatedAir | None = getattr(type(backend), "_air", None)
    if air is None:
        raise BleakError(
            f"{type(backend).__name__} is not bound to a SimulatedAir; pass "
            "air.scanner_backend() / air.client_backend() as bleak's backend="
        )
    return air


class SimulatedBleakScanner(BaseBleakScanner):
    """Scanner backend: while started, hears every advertising peripheral of its air
    once per ``air.advertising_interval``.
    """

    _air: ClassVar[SimulatedAir]

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        # bleak lower-cases the filter but does not expand 16-bit UUIDs; the
        # advertisements carry 128-bit strings, so normalise the filter here
        super().__init__(
            detection_callback,
            None if service_uuids is None else [normalize_uuid(u) for u in service_uuids],
        )
        self.air = _bound_air(self)
        self.scanning_mode = scanning_mode
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start scanning: clear what was seen and listen for advertisements."""
        if self._task is not None:
            raise BleakError("Scanner already started")
        self.seen_devices = {}
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        """Stop scanning."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _listen(self) -> None:
        while True:
            for peripheral in self.air.peripherals:
                # a peripheral stops advertising while its connection slots are full
                if peripheral.audible:
                    self._hear(peripheral)
            await asyncio.sleep(self.air.advertising_interval)

    def _hear(self, peripheral: SimulatedPeripheral) -> None:
        advertisement = AdvertisementData(
            local_name=peripheral.local_name,
            manufacturer_data=dict(peripheral.manufacturer_data),
            service_data=dict(peripheral.service_data),
            service_uuids=list(peripheral.advertised_service_uuids),
            tx_power=peripheral.tx_power,
            rssi=peripheral.rssi,
            platform_data=(),
        )
        if not self.is_allowed_uuid(advertisement.service_uuids):
            return
        device = self.create_or_update_device(
            peripheral.address, peripheral.address, peripheral.local_name, peripheral, advertisement
        )
        try:
            self.call_detection_callbacks(device, advertisement)
        except Exception:
            logger.exception("detection callback failed for %s", peripheral.address)
        peripheral.on_advertised()


class SimulatedBleakClient(BaseBleakClient):
    """Client backend: connects to a peripheral of its air over a simulated link.

    Follows the BlueZ backend where platforms differ: the disconnected callback fires on
    every disconnection, the central's own included; services are discovered during
    ``connect``; notifications are preferred over indications.
    """

    _air: ClassVar[SimulatedAir]

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        services: set[str] | None = None,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self.air = _bound_air(self)
        self._requested_services = (
            None if services is None else {normalize_uuid(s) for s in services}
        )
        self._advertised_name = (
            address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._link: Link | None = None

    # connectivity

    def _peripheral(self) -> SimulatedPeripheral | None:
        return self._link.peripheral if self._link else self.air.get(self.address)

    def _not_found(self) -> BleakDeviceNotFoundError:
        return BleakDeviceNotFoundError(
            self.address, f"Device with address {self.address} was not found."
        )

    @property
    def name(self) -> str:
        """The peripheral's local name, else the address with dashes (as bleak does)."""
        peripheral = self._peripheral()
        name = peripheral.local_name if peripheral else self._advertised_name
        return name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        """The ATT MTU of the connection (23 when not connected)."""
        return self._link.peripheral.mtu if self._link else 23

    @property
    def is_connected(self) -> bool:
        """True while the link to the peripheral is up."""
        return self._link is not None and self._link.is_open

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, optionally pair, and discover services.

        Raises ``BleakDeviceNotFoundError`` at once when the peripheral is out of range,
        not advertising or has no free connection slot.
        """
        if self.is_connected:
            raise BleakError("Client is already connected")
        await asyncio.sleep(0)  # a connection is never established synchronously
        peripheral = self.air.get(self.address)
        if peripheral is None or not peripheral.connectable:
            raise self._not_found()
        if peripheral.refuse_connections > 0:
            peripheral.refuse_connections -= 1
            raise BleakError(f"{self.address}: connection failed to be established (simulated)")
        link = self._link = peripheral.accept_link(on_lost=self._on_link_lost)
        try:
            if pair and not peripheral.bonded:
                await self.pair()
            self.services = self._discover_services(peripheral)
        except BaseException:
            link.close()  # no-op if the link is already gone
            raise
        logger.debug("connected to %s", self.address)

    async def disconnect(self) -> None:
        """Disconnect; a no-op when not connected."""
        if self._link is not None:
            self._link.close()
        await asyncio.sleep(0)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Pair and bond with the connected peripheral."""
        link = self._require_link()
        try:
            link.pair()
        except FirmwareSimError as error:
            raise BleakError(f"Pairing with {self.address} failed: {error}") from error

    async def unpair(self) -> None:
        """Forget the bond; disconnects as well."""
        peripheral = self._peripheral()
        if peripheral is None:
            raise self._not_found()
        peripheral.bonded = False
        await self.disconnect()

    def _on_link_lost(self) -> None:
        self._link = None
        self.services = None
        logger.debug("disconnected from %s", self.address)
        if self._disconnected_callback is not None:
            try:
                self._disconnected_callback()
            except Exception:
                logger.exception("disconnected callback failed for %s", self.address)

    def _require_link(self) -> Link:
        if self._link is None or not self._link.is_open:
            raise BleakError("Not connected")
        return self._link

    def _discover_services(self, peripheral: SimulatedPeripheral) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        max_write = peripheral.mtu - 3
        for service in peripheral.services:
            if self._requested_services and service.uuid not in self._requested_services:
                continue
            bleak_service = BleakGATTService(service, service.handle, service.uuid)
            collection.add_service(bleak_service)
            for char in service.characteristics:
                bleak_char = BleakGATTCharacteristic(
                    char,
                    char.handle,
                    char.uuid,
                    list(char.properties),
                    lambda: max_write,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                for descriptor in char.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor, descriptor.handle, descriptor.uuid, bleak_char
                        )
                    )
        return collection

    # I/O

    def _simulated(
        self, link: Link, characteristic: BleakGATTCharacteristic
    ) -> SimulatedCharacteristic:
        sim = characteristic.obj
        if not isinstance(sim, SimulatedCharacteristic) or not any(
            sim in service.characteristics for service in link.peripheral.services
        ):
            raise BleakError(f"characteristic {characteristic.uuid} is not on {self.address}")
        return sim

    def _simulated_descriptor(self, descriptor: BleakGATTDescriptor) -> SimulatedDescriptor:
        sim = descriptor.obj
        if not isinstance(sim, SimulatedDescriptor):
            raise BleakError(f"descriptor {descriptor.uuid} is not simulated")
        return sim

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a characteristic; ATT errors surface as ``BleakGATTProtocolError``."""
        link = self._require_link()
        sim = self._simulated(link, characteristic)
        try:
            return bytearray(link.read(sim))
        except AttError as error:
            raise BleakGATTProtocolError(error.att_code) from error

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a descriptor (a CCCD reads this connection's subscription state)."""
        link = self._require_link()
        return bytearray(link.read_descriptor(self._simulated_descriptor(descriptor)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        """Write with response (waits for the device's handler) or without."""
        link = self._require_link()
        sim = self._simulated(link, characteristic)
        payload = bytes(data)
        limit = characteristic.max_write_without_response_size
        if not response and len(payload) > limit:
            raise BleakError(f"{len(payload)} bytes exceed max_write_without_response_size {limit}")
        try:
            await link.write(sim, payload, with_response=response)
        except AttError as error:
            raise BleakGATTProtocolError(error.att_code) from error

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        """Write a (non-CCCD) descriptor."""
        link = self._require_link()
        try:
            link.write_descriptor(self._simulated_descriptor(descriptor), bytes(data))
        except AttError as error:
            raise BleakGATTProtocolError(error.att_code) from error

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Enable notifications or indications; both arrive through ``callback``."""
        link = self._require_link()
        sim = self._simulated(link, characteristic)
        try:
            link.subscribe(sim, callback)
        except AttError as error:
            raise BleakGATTProtocolError(error.att_code) from error

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Disable notifications or indications."""
        link = self._require_link()
        link.unsubscribe(self._simulated(link, characteristic))
