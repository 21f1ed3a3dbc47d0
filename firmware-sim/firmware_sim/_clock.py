"""A simulated device's own clock: drifted, never set, or set by a central.

Real devices stamp their measurements with a clock of their own. This one runs at the
true time's rate (``clock``, injectable) plus an offset that changes when the clock is set;
:meth:`DeviceClock.at` tells what the device's clock showed at a given true time, so a
record taken before the clock was set keeps the stamp it had.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bleak.exc import BleakGATTProtocolErrorCode

from firmware_sim._gatt import SimulatedCharacteristic, SimulatedService
from firmware_sim.errors import AttError
from gateway.decoders import decode_current_time, encode_current_time
from gateway.errors import DecodeError

__all__ = ["CURRENT_TIME", "CURRENT_TIME_SERVICE", "UNSET_EPOCH", "DeviceClock"]

CURRENT_TIME = "2A2B"
CURRENT_TIME_SERVICE = 0x1805
#: where a clock that was never set starts when the device powers up (a common default)
UNSET_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class DeviceClock:
    """A device's clock: ``drift`` off the true time, or (``unset``) started at 2000-01-01.

    ``clock`` is the true time (wall clock by default). Times are UTC-aware.
    """

    def __init__(
        self,
        *,
        drift: timedelta = timedelta(0),
        unset: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.true_time = clock
        initial = UNSET_EPOCH - clock() if unset else drift
        self._since: list[datetime] = []
        """True times at which the clock was set, in order."""
        self._offsets: list[timedelta] = [initial]
        """Offsets (device minus true): before the first set, then after each."""

    @property
    def offset(self) -> timedelta:
        """What the device's clock shows now minus the true time."""
        return self._offsets[-1]

    def at(self, true_time: datetime) -> datetime:
        """What the device's clock showed at ``true_time`` (its stamp for a record then)."""
        return true_time + self._offsets[bisect.bisect_right(self._since, true_time)]

    def now(self) -> datetime:
        """What the device's clock shows now."""
        return self.at(self.true_time())

    def set(self, shown: datetime) -> None:
        """A central set the clock: from now on it shows ``shown`` plus the time elapsed."""
        now = self.true_time()
        self._since.append(now)
        self._offsets.append(shown - now)

    def current_time(self) -> bytes:
        """The Current Time (0x2A2B) value the device reports now."""
        return encode_current_time(self.now(), adjust_reason=0)

    def on_write(self, data: bytes) -> None:
        """Set the clock from a Current Time write; a malformed value is an ATT error."""
        try:
            value = decode_current_time(data)
        except DecodeError as exc:
            raise AttError(BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH) from exc
        shown = value.to_datetime(UTC)
        if shown is None:
            raise AttError(BleakGATTProtocolErrorCode.VALUE_NOT_ALLOWED)
        self.set(shown)

    def service(self) -> SimulatedService:
        """A Current Time Service (0x1805) whose Current Time reads and sets this clock."""
        return SimulatedService(
            CURRENT_TIME_SERVICE,
            [
                SimulatedCharacteristic(
                    CURRENT_TIME,
                    ["read", "write"],
                    self.current_time(),
                    on_read=self.current_time,
                    on_write=self.on_write,
                )
            ],
        )
