"""Gateway exceptions: one base, structured subclasses."""

from __future__ import annotations

from wardwatch.errors import WardwatchError


class GatewayError(WardwatchError):
    """Base of every exception raised by the gateway."""

    code = "gateway"


class DecodeError(GatewayError):
    """Device bytes or a vendor payload that cannot be decoded; the message names why."""

    code = "decode"

    def __init__(self, message: str, *, characteristic: str | None = None) -> None:
        self.characteristic = characteristic
        prefix = f"{characteristic}: " if characteristic else ""
        super().__init__(prefix + message)


class OutboxError(GatewayError):
    """The durable outbox cannot accept or return data."""

    code = "outbox"
