"""The simulated radio: which peripherals are in range, and bleak backends bound to it."""

from __future__ import annotations

import logging

from firmware_sim._backend import SimulatedBleakClient, SimulatedBleakScanner
from firmware_sim._peripheral import SimulatedPeripheral

__all__ = ["SimulatedAir"]

logger = logging.getLogger(__name__)


class SimulatedAir:
    """The peripherals within radio range of one central (e.g. one home hub).

    bleak instantiates backends itself, from a class; :meth:`scanner_backend` and
    :meth:`client_backend` return backend classes bound to this air, to pass as
    ``BleakScanner(backend=...)`` and ``BleakClient(..., backend=...)``.
    """

    def __init__(self, *, advertising_interval: float = 0.05) -> None:
        if advertising_interval <= 0:
            raise ValueError("advertising_interval must be positive")
        #: seconds between two advertisements of each peripheral, as a scanner sees them
        self.advertising_interval = advertising_interval
        self._peripherals: dict[str, SimulatedPeripheral] = {}
        self._scanner_backend: type[SimulatedBleakScanner] | None = None
        self._client_backend: type[SimulatedBleakClient] | None = None

    def __contains__(self, peripheral: object) -> bool:
        return (
            isinstance(peripheral, SimulatedPeripheral)
            and self._peripherals.get(peripheral.address) is peripheral
        )

    @property
    def peripherals(self) -> tuple[SimulatedPeripheral, ...]:
        """The peripherals in range, in the order they were added."""
        return tuple(self._peripherals.values())

    def add(self, *peripherals: SimulatedPeripheral) -> None:
        """Bring peripherals into range."""
        for peripheral in peripherals:
            if peripheral.air is not None and peripheral.air is not self:
                raise ValueError(f"{peripheral.address} is already in another air")
            existing = self._peripherals.get(peripheral.address)
            if existing is not None and existing is not peripheral:
                raise ValueError(f"another peripheral already uses {peripheral.address}")
            self._peripherals[peripheral.address] = peripheral
            peripheral.air = self
            logger.debug("%s: in range", peripheral.address)

    def remove(self, peripheral: SimulatedPeripheral) -> None:
        """Take a peripheral out of range; its connections drop (supervision timeout)."""
        if self._peripherals.get(peripheral.address) is not peripheral:
            raise ValueError(f"{peripheral.address} is not in this air")
        del self._peripherals[peripheral.address]
        peripheral.air = None
        logger.debug("%s: out of range", peripheral.address)
        for link in list(peripheral.links):
            peripheral.drop_link(link)

    def get(self, address: str) -> SimulatedPeripheral | None:
        """The peripheral in range with ``address`` (any case), or ``None``."""
        return self._peripherals.get(address.upper())

    def scanner_backend(self) -> type[SimulatedBleakScanner]:
        """A :class:`bleak.backends.scanner.BaseBleakScanner` subclass that scans this air."""
        if self._scanner_backend is None:
            air = self

            class BoundSimulatedBleakScanner(SimulatedBleakScanner):
                _air = air

            self._scanner_backend = BoundSimulatedBleakScanner
        return self._scanner_backend

    def client_backend(self) -> type[SimulatedBleakClient]:
        """A :class:`bleak.backends.client.BaseBleakClient` subclass that connects in this air."""
        if self._client_backend is None:
            air = self

            class BoundSimulatedBleakClient(SimulatedBleakClient):
                _air = air

            self._client_backend = BoundSimulatedBleakClient
        return self._client_backend
