"""firmware_sim exceptions: one base, structured subclasses."""

from __future__ import annotations

from bleak.exc import PROTOCOL_ERROR_CODES, BleakGATTProtocolErrorCode

from wardwatch.errors import WardwatchError

__all__ = ["AttError", "FirmwareSimError"]


class FirmwareSimError(WardwatchError):
    """Base of every exception raised by the device simulator."""

    code = "firmware-sim"


class AttError(FirmwareSimError):
    """A simulated peripheral refuses an ATT request with an ATT error code.

    Device models raise it from read/write handlers; the simulated bleak client turns it
    into :class:`bleak.exc.BleakGATTProtocolError` carrying the same code.
    """

    code = "att"

    def __init__(self, att_code: int, message: str | None = None) -> None:
        self.att_code = BleakGATTProtocolErrorCode(att_code)
        super().__init__(message or PROTOCOL_ERROR_CODES.get(att_code, f"ATT error {att_code:#x}"))
