"""The GATT table of a simulated peripheral: services, characteristics, descriptors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeAlias

from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.uuids import normalize_uuid_16, normalize_uuid_str

__all__ = [
    "CCCD_UUID",
    "MAX_ATTRIBUTE_LENGTH",
    "ReadHandler",
    "SimulatedCharacteristic",
    "SimulatedDescriptor",
    "SimulatedService",
    "UuidLike",
    "WriteHandler",
    "normalize_uuid",
]

UuidLike: TypeAlias = str | int
"""A UUID as a string (16-, 32- or 128-bit form) or a 16-bit assigned number (0x2A35)."""

ReadHandler: TypeAlias = Callable[[], bytes]
"""Produces a characteristic's value at read time (for values that change on their own)."""

WriteHandler: TypeAlias = Callable[[bytes], Awaitable[None] | None]
"""Reacts to a client write; runs before the write is acknowledged.

May raise :class:`firmware_sim.errors.AttError` to reject the write. To react after the
acknowledgement (e.g. RACP: acknowledge, then send records), schedule the reaction with
:meth:`SimulatedPeripheral.run_soon`.
"""


def normalize_uuid(uuid: UuidLike) -> str:
    """Return the 128-bit lower-case form bleak uses for ``uuid``."""
    if isinstance(uuid, int):
        return normalize_uuid_16(uuid)
    return normalize_uuid_str(uuid)


CCCD_UUID = normalize_uuid(0x2902)
"""Client Characteristic Configuration descriptor."""

MAX_ATTRIBUTE_LENGTH = 512
"""Longest attribute value ATT allows (Core spec Vol 3 Part F 3.2.9)."""

# Order bleak's backends list properties in (the bit order of the properties byte).
_PROPERTY_ORDER: tuple[CharacteristicPropertyName, ...] = (
    "broadcast",
    "read",
    "write-without-response",
    "write",
    "notify",
    "indicate",
    "authenticated-signed-writes",
    "extended-properties",
    "reliable-write",
    "writable-auxiliaries",
)


class SimulatedDescriptor:
    """A descriptor with a static value (the CCCD's value is per connection, see client)."""

    def __init__(self, uuid: UuidLike, value: bytes = b"", *, writable: bool = False) -> None:
        self.uuid = normalize_uuid(uuid)
        self.value = bytes(value)
        self.writable = writable
        self.handle = 0

    def __repr__(self) -> str:
        return f"SimulatedDescriptor({self.uuid}, handle={self.handle})"


class SimulatedCharacteristic:
    """A characteristic: properties, current value, optional read/write handlers.

    A CCCD (0x2902) is added automatically when the characteristic can notify or
    indicate. ``requires_bonding`` makes reads, writes and subscriptions fail with
    Insufficient Authentication on a link to a central that has not bonded.
    """

    def __init__(
        self,
        uuid: UuidLike,
        properties: Iterable[CharacteristicPropertyName],
        value: bytes = b"",
        *,
        on_read: ReadHandler | None = None,
        on_write: WriteHandler | None = None,
        requires_bonding: bool = False,
        descriptors: Iterable[SimulatedDescriptor] = (),
    ) -> None:
        self.uuid = normalize_uuid(uuid)
        wanted = set(properties)
        unknown = wanted.difference(_PROPERTY_ORDER)
        if unknown:
            raise ValueError(f"unsupported characteristic properties: {sorted(unknown)}")
        self.properties: tuple[CharacteristicPropertyName, ...] = tuple(
            p for p in _PROPERTY_ORDER if p in wanted
        )
        self.value = bytes(value)
        self.on_read = on_read
        self.on_write = on_write
        self.requires_bonding = requires_bonding
        self.descriptors = list(descriptors)
        if self.can_subscribe and not any(d.uuid == CCCD_UUID for d in self.descriptors):
            self.descriptors.insert(0, SimulatedDescriptor(CCCD_UUID, b"\x00\x00"))
        self.handle = 0

    @property
    def can_subscribe(self) -> bool:
        """True if the characteristic notifies or indicates."""
        return "notify" in self.properties or "indicate" in self.properties

    def __repr__(self) -> str:
        return f"SimulatedCharacteristic({self.uuid}, {list(self.properties)})"


class SimulatedService:
    """A primary service and its characteristics."""

    def __init__(
        self, uuid: UuidLike, characteristics: Iterable[SimulatedCharacteristic] = ()
    ) -> None:
        self.uuid = normalize_uuid(uuid)
        self.characteristics = list(characteristics)
        self.handle = 0

    def __repr__(self) -> str:
        return f"SimulatedService({self.uuid}, {len(self.characteristics)} characteristics)"


def assign_handles(services: Iterable[SimulatedService]) -> None:
    """Number attributes the way a GATT server lays them out (declaration, value, ...)."""
    handle = 1
    for service in services:
        service.handle = handle
        handle += 1
        for characteristic in service.characteristics:
            # declaration at `handle`, value at `handle + 1`; the client names a
            # characteristic by the first of the two
            characteristic.handle = handle
            handle += 2
            for descriptor in characteristic.descriptors:
                descriptor.handle = handle
                handle += 1
