"""A simulated BLE peripheral (the GATT server side) and its connections to centrals."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from bleak.exc import BleakGATTProtocolErrorCode

from firmware_sim._gatt import (
    CCCD_UUID,
    MAX_ATTRIBUTE_LENGTH,
    SimulatedCharacteristic,
    SimulatedDescriptor,
    SimulatedService,
    UuidLike,
    assign_handles,
    normalize_uuid,
)
from firmware_sim.errors import AttError, FirmwareSimError

if TYPE_CHECKING:
    from firmware_sim._air import SimulatedAir

__all__ = ["Link", "NotificationCallback", "SimulatedPeripheral"]

logger = logging.getLogger(__name__)

NotificationCallback: TypeAlias = Callable[[bytearray], None]
"""Receives the value of one notification or indication (bleak's backend callback shape)."""

_ADDRESS = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_CCCD_NOTIFY = b"\x01\x00"
_CCCD_INDICATE = b"\x02\x00"
_CCCD_OFF = b"\x00\x00"


class Link:
    """One connection between a central and a :class:`SimulatedPeripheral`.

    The simulated bleak client drives the peripheral through this object; it holds
    what the Bluetooth spec keeps per connection (the CCCD subscriptions).
    """

    def __init__(self, peripheral: SimulatedPeripheral, on_lost: Callable[[], None]) -> None:
        self.peripheral = peripheral
        self.subscriptions: dict[SimulatedCharacteristic, NotificationCallback] = {}
        self.is_open = True
        self._on_lost = on_lost

    def _require_open(self) -> None:
        if not self.is_open:
            raise FirmwareSimError("link is closed")

    def _check_access(self, characteristic: SimulatedCharacteristic) -> None:
        self._require_open()
        needs_bond = self.peripheral.requires_bonding or characteristic.requires_bonding
        if needs_bond and not self.peripheral.bonded:
            raise AttError(BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION)

    def read(self, characteristic: SimulatedCharacteristic) -> bytes:
        """Serve an ATT Read Request."""
        self._check_access(characteristic)
        if "read" not in characteristic.properties:
            raise AttError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED)
        if characteristic.on_read is not None:
            return bytes(characteristic.on_read())
        return characteristic.value

    async def write(
        self, characteristic: SimulatedCharacteristic, data: bytes, *, with_response: bool
    ) -> None:
        """Serve an ATT Write Request (``with_response``) or Write Command.

        Errors of a Write Command are logged, never reported: the central gets no answer.
        """
        try:
            self._check_access(characteristic)
            wanted = "write" if with_response else "write-without-response"
            if wanted not in characteristic.properties:
                raise AttError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)
            if len(data) > MAX_ATTRIBUTE_LENGTH:
                raise AttError(BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH)
            if characteristic.on_write is None:
                characteristic.value = data
            else:
                result = characteristic.on_write(data)
                if inspect.isawaitable(result):
                    await result
        except AttError:
            if with_response:
                raise
            logger.debug(
                "%s: write command to %s dropped", self.peripheral.address, characteristic.uuid
            )

    def read_descriptor(self, descriptor: SimulatedDescriptor) -> bytes:
        """Serve a Read Request on a descriptor; a CCCD reads this link's subscription."""
        self._require_open()
        if descriptor.uuid != CCCD_UUID:
            return descriptor.value
        for characteristic in self.subscriptions:
            if descriptor in characteristic.descriptors:
                return _CCCD_NOTIFY if "notify" in characteristic.properties else _CCCD_INDICATE
        return _CCCD_OFF

    def write_descriptor(self, descriptor: SimulatedDescriptor, data: bytes) -> None:
        """Serve a Write Request on a (non-CCCD) descriptor."""
        self._require_open()
        if not descriptor.writable or descriptor.uuid == CCCD_UUID:
            raise AttError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)
        descriptor.value = data

    def subscribe(
        self, characteristic: SimulatedCharacteristic, callback: NotificationCallback
    ) -> None:
        """Enable notifications (preferred, as bleak does) or indications via the CCCD."""
        self._check_access(characteristic)
        if not characteristic.can_subscribe:
            raise AttError(
                BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED,
                f"characteristic {characteristic.uuid} does not notify or indicate",
            )
        self.subscriptions[characteristic] = callback
        logger.debug("%s: %s subscribed", self.peripheral.address, characteristic.uuid)
        self.peripheral.on_subscription_changed(characteristic, enabled=True)

    def unsubscribe(self, characteristic: SimulatedCharacteristic) -> None:
        """Disable notifications/indications (CCCD back to 0)."""
        if self.subscriptions.pop(characteristic, None) is not None:
            self.peripheral.on_subscription_changed(characteristic, enabled=False)

    def pair(self) -> None:
        """Pair and bond with the peripheral."""
        self._require_open()
        if not self.peripheral.pairable:
            raise FirmwareSimError(f"{self.peripheral.address} rejected pairing")
        self.peripheral.bonded = True

    def close(self) -> None:
        """Disconnect from the central's side."""
        self.peripheral.drop_link(self)

    def lost(self) -> None:
        """Tell the central its connection is gone (called once, by the peripheral)."""
        self._on_lost()


class SimulatedPeripheral:
    """A BLE peripheral: advertising data, a GATT table and the device's behaviour.

    Device models subclass it, build their services in ``__init__`` and override the
    ``on_*`` hooks. Put it into a :class:`SimulatedAir` to bring it in range.
    """

    def __init__(
        self,
        address: str,
        *,
        local_name: str | None = None,
        services: Iterable[SimulatedService] = (),
        advertised_service_uuids: Iterable[UuidLike] = (),
        manufacturer_data: Mapping[int, bytes] | None = None,
        service_data: Mapping[UuidLike, bytes] | None = None,
        rssi: int = -60,
        tx_power: int | None = None,
        requires_bonding: bool = False,
        pairable: bool = True,
        mtu: int = 23,
        max_connections: int = 1,
        accepts_connections: bool = True,
    ) -> None:
        """``accepts_connections=False`` makes a broadcaster: it advertises (non-connectable
        advertising) but refuses every connection, as advertising-only scales do."""
        address = address.upper()
        if not _ADDRESS.match(address):
            raise ValueError(f"not a Bluetooth address: {address!r}")
        if mtu < 23:
            raise ValueError("ATT_MTU is at least 23")
        self.address = address
        self.local_name = local_name
        self.advertised_service_uuids = [normalize_uuid(u) for u in advertised_service_uuids]
        self.manufacturer_data = dict(manufacturer_data or {})
        self.service_data = {normalize_uuid(k): v for k, v in (service_data or {}).items()}
        self.rssi = rssi
        self.tx_power = tx_power
        self.requires_bonding = requires_bonding
        self.pairable = pairable
        self.mtu = mtu
        self.max_connections = max_connections
        #: False for a broadcaster (non-connectable advertising)
        self.accepts_connections = accepts_connections
        #: fault: how many coming connection attempts fail (the link is never established)
        self.refuse_connections = 0
        #: whether the device sends advertisements (and so can be found and connected)
        self.advertising = True
        #: whether the device holds a bond with the central
        self.bonded = False
        #: the air the device is in range of, set by :meth:`SimulatedAir.add`
        self.air: SimulatedAir | None = None
        self._services = list(services)
        assign_handles(self._services)
        self._links: list[Link] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r}, local_name={self.local_name!r})"

    # GATT table

    @property
    def services(self) -> tuple[SimulatedService, ...]:
        """The GATT services, in handle order."""
        return tuple(self._services)

    def add_service(self, service: SimulatedService) -> None:
        """Append a service to the GATT table (renumbers handles)."""
        self._services.append(service)
        assign_handles(self._services)

    def characteristic(self, uuid: UuidLike) -> SimulatedCharacteristic:
        """The characteristic with ``uuid``; ``KeyError`` if the table has none."""
        wanted = normalize_uuid(uuid)
        for service in self._services:
            for characteristic in service.characteristics:
                if characteristic.uuid == wanted:
                    return characteristic
        raise KeyError(f"{self.address} has no characteristic {wanted}")

    def set_value(self, uuid: UuidLike, value: bytes) -> None:
        """Set the value a client reads from characteristic ``uuid``."""
        self.characteristic(uuid).value = bytes(value)

    # state

    @property
    def in_range(self) -> bool:
        """True while the device is in some :class:`SimulatedAir`."""
        return self.air is not None

    @property
    def connected(self) -> bool:
        """True while at least one central is connected."""
        return bool(self._links)

    @property
    def links(self) -> tuple[Link, ...]:
        """The open connections to centrals."""
        return tuple(self._links)

    @property
    def connectable(self) -> bool:
        """True if a central could connect now (in range, advertising, a free slot)."""
        return (
            self.in_range
            and self.advertising
            and self.accepts_connections
            and len(self._links) < self.max_connections
        )

    @property
    def audible(self) -> bool:
        """True if a scanner hears the device now: a broadcaster whenever it advertises in
        range, a connectable device only while it has a free connection slot."""
        if not self.accepts_connections:
            return self.in_range and self.advertising
        return self.connectable

    def subscriber_count(self, uuid: UuidLike) -> int:
        """How many connected centrals have enabled notifications/indications on ``uuid``."""
        characteristic = self.characteristic(uuid)
        return sum(characteristic in link.subscriptions for link in self._links)

    def is_subscribed(self, uuid: UuidLike) -> bool:
        """True if any connected central has enabled notifications/indications on ``uuid``."""
        return self.subscriber_count(uuid) > 0

    # device-side actions

    async def notify(self, uuid: UuidLike, data: bytes) -> int:
        """Send ``data`` as a notification/indication to every subscribed central.

        Indications are confirmed before the next one goes out. Returns the number of
        centrals the value was delivered to (0: nobody listening, nothing sent).
        """
        characteristic = self.characteristic(uuid)
        if not characteristic.can_subscribe:
            raise ValueError(f"{characteristic.uuid} does not notify or indicate")
        payload = bytes(data)
        if len(payload) > self.mtu - 3:
            raise ValueError(f"{len(payload)} bytes do not fit ATT_MTU {self.mtu}")
        delivered = 0
        for link in list(self._links):
            callback = link.subscriptions.get(characteristic)
            if callback is None or not link.is_open:
                continue
            try:
                callback(bytearray(payload))
            except Exception:
                logger.exception("%s: notification callback failed", self.address)
            delivered += 1
            # the central's confirmation round trip: lets its tasks run in between
            await asyncio.sleep(0)
        logger.debug("%s: %s sent to %d central(s)", self.address, characteristic.uuid, delivered)
        return delivered

    async def disconnect(self) -> None:
        """Drop every connection from the device's side (e.g. the device powers off)."""
        for link in list(self._links):
            self.drop_link(link)
        await asyncio.sleep(0)

    def run_soon(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a reaction of the device in the background (after the current ATT reply).

        Failures are logged. :meth:`settle` waits for everything scheduled so far.
        """
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def settle(self) -> None:
        """Wait until every reaction scheduled with :meth:`run_soon` has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("%s: device reaction failed", self.address, exc_info=error)

    # hooks for device models

    def on_advertised(self) -> None:
        """Called after a scanner heard one advertisement (to change the next one)."""

    def on_connected(self) -> None:
        """Called after a central connected."""

    def on_disconnected(self) -> None:
        """Called after a central's connection is gone (either side)."""

    def on_subscription_changed(
        self, characteristic: SimulatedCharacteristic, *, enabled: bool
    ) -> None:
        """Called when a central enables or disables notifications/indications."""

    # connection management (used by the air and the simulated bleak client)

    def accept_link(self, on_lost: Callable[[], None]) -> Link:
        """Accept a connection from a central; ``on_lost`` is called when it drops."""
        if not self.connectable:
            raise FirmwareSimError(f"{self.address} is not connectable")
        link = Link(self, on_lost)
        self._links.append(link)
        logger.debug("%s: central connected", self.address)
        self.on_connected()
        return link

    def drop_link(self, link: Link) -> None:
        """End ``link`` and tell the central; a no-op if it has already ended."""
        if not link.is_open:
            return
        link.is_open = False
        self._links.remove(link)
        for characteristic in list(link.subscriptions):
            link.unsubscribe(characteristic)
        logger.debug("%s: central disconnected", self.address)
        try:
            link.lost()
        finally:
            self.on_disconnected()
