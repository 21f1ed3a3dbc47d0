"""Simulated BLE peripherals behind a real bleak backend.

A :class:`SimulatedAir` holds the peripherals in range; its :meth:`~SimulatedAir.scanner_backend`
and :meth:`~SimulatedAir.client_backend` are passed to bleak unchanged::

    air = SimulatedAir()
    air.add(cuff)
    device = await BleakScanner.find_device_by_address(
        cuff.address, backend=air.scanner_backend()
    )
    async with BleakClient(device, backend=air.client_backend()) as client:
        ...
"""

from __future__ import annotations

from firmware_sim._air import SimulatedAir
from firmware_sim._backend import SimulatedBleakClient, SimulatedBleakScanner
from firmware_sim._gatt import (
    CCCD_UUID,
    ReadHandler,
    SimulatedCharacteristic,
    SimulatedDescriptor,
    SimulatedService,
    UuidLike,
    WriteHandler,
    normalize_uuid,
)
from firmware_sim._peripheral import Link, NotificationCallback, SimulatedPeripheral
from firmware_sim.errors import AttError, FirmwareSimError

__all__ = [
    "CCCD_UUID",
    "AttError",
    "FirmwareSimError",
    "Link",
    "NotificationCallback",
    "ReadHandler",
    "SimulatedAir",
    "SimulatedBleakClient",
    "SimulatedBleakScanner",
    "SimulatedCharacteristic",
    "SimulatedDescriptor",
    "SimulatedPeripheral",
    "SimulatedService",
    "UuidLike",
    "WriteHandler",
    "normalize_uuid",
]
