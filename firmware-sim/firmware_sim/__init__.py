"""firmware_sim: simulated devices for wardwatch, without Bluetooth hardware.

Public API:

- :mod:`firmware_sim.ble`: :class:`SimulatedAir` (the radio: peripherals in range, and
  ``scanner_backend()`` / ``client_backend()`` classes for bleak's ``backend=``),
  :class:`SimulatedPeripheral`, :class:`SimulatedService`,
  :class:`SimulatedCharacteristic`, :class:`SimulatedDescriptor`.
- :mod:`firmware_sim.devices`: device models, :class:`BloodPressureCuff` with
  :class:`BloodPressureReading`.
- :mod:`firmware_sim.encoding`: pure byte builders (IEEE 11073 SFLOAT/FLOAT, Date Time,
  Blood Pressure Measurement).
- :mod:`firmware_sim.errors`: :class:`FirmwareSimError`, :class:`AttError`.
"""

from __future__ import annotations

from firmware_sim.ble import (
    SimulatedAir,
    SimulatedCharacteristic,
    SimulatedDescriptor,
    SimulatedPeripheral,
    SimulatedService,
)
from firmware_sim.devices import BloodPressureCuff, BloodPressureReading
from firmware_sim.errors import AttError, FirmwareSimError

__all__ = [
    "AttError",
    "BloodPressureCuff",
    "BloodPressureReading",
    "FirmwareSimError",
    "SimulatedAir",
    "SimulatedCharacteristic",
    "SimulatedDescriptor",
    "SimulatedPeripheral",
    "SimulatedService",
]
