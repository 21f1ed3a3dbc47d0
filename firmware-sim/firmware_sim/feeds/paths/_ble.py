"""A simulated BLE device that plays a feed's values to the real gateway, on the feed clock."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from datetime import datetime

from firmware_sim._clock import DeviceClock
from firmware_sim.feeds.replay import FeedClock
from firmware_sim.profile_devices import CURRENT_TIME, RACP, ProfilePeripheral
from gateway.decoders import encode_current_time
from gateway.profiles import Profile

__all__ = ["ClockRead", "ReplayPeripheral", "address_for"]

log = logging.getLogger(__name__)


def address_for(device: str) -> str:
    """A stable Bluetooth address for a feed device id (locally administered, random)."""
    digest = bytearray(hashlib.sha256(device.encode()).digest()[:6])
    digest[0] |= 0xC0  # static random address: the two top bits set
    return ":".join(f"{b:02X}" for b in digest)


class ClockRead:
    """A scripted Current Time read: the value the device shows and the hub's times.

    The gateway takes the hub's time before and after the read and keeps the midpoint:
    the replayer sets the feed clock to ``before`` first, the read moves it to ``after``,
    so the midpoint is the recorded one and ``after`` is the time the hub goes on with
    (a clock write that follows, say).
    """

    def __init__(self, data: bytes, mid: datetime, after: datetime) -> None:
        self.data = data
        self.after = after
        self.before = mid - (after - mid)


class ReplayPeripheral(ProfilePeripheral):
    """The device a profile describes, sending only what the replayer tells it to.

    It stays silent (no samples), does not advertise until :meth:`come_in_range`, answers
    Current Time reads from a script (or with the feed clock's time), and sets ``ready``
    once the central has subscribed to every characteristic the profile's session
    subscribes to (and, for a record-store device, written its RACP request).
    """

    def __init__(
        self, profile: Profile, address: str, clock: FeedClock, *, current_time: bool = False
    ) -> None:
        super().__init__(
            profile,
            address,
            disconnect_after_racp=False,
            clock=DeviceClock(clock=clock) if current_time else None,
        )
        self.feed_clock = clock
        self.records.clear()
        self._pending.clear()
        self.advertising = False
        self.ready = asyncio.Event()
        self.clock_reads: collections.deque[ClockRead] = collections.deque()
        self._racp_written = False
        self._subscribe = {s.characteristic or "" for s in profile.session if s.step == "subscribe"}
        if self.needs_clock or current_time:
            self.characteristic(CURRENT_TIME).on_read = self._read_clock

    def come_in_range(self) -> None:
        """Start advertising (a central may connect)."""
        self.ready.clear()
        self.advertising = True

    async def go_away(self) -> None:
        """Stop advertising and drop the connection."""
        self.advertising = False
        await self.disconnect()

    def _read_clock(self) -> bytes:
        if self.clock_reads:
            read = self.clock_reads.popleft()
            self.feed_clock.set(read.after)
            return read.data
        return encode_current_time(self.feed_clock(), adjust_reason=0)

    def _check_ready(self) -> None:
        subscribed = all(self.is_subscribed(c) for c in self._subscribe)
        if subscribed and (not self.uses_racp or self._racp_written):
            self.ready.set()

    def on_connected(self) -> None:
        """A new connection: not ready until the session's steps are done."""
        self._racp_written = False
        self.ready.clear()

    def on_disconnected(self) -> None:
        """The connection is gone."""
        self.ready.clear()

    def on_subscription_changed(self, characteristic: object, *, enabled: bool) -> None:
        """Readiness follows the subscriptions; nothing is sent on its own."""
        del characteristic, enabled
        self._check_ready()

    def _on_racp_write(self, data: bytes) -> None:
        # the recorded values (records, then the RACP response) are the answer
        log.debug("%s: RACP request %s", self.address, data.hex())
        self._racp_written = True
        self._check_ready()

    async def send(self, characteristic: str, data: bytes) -> bool:
        """Notify/indicate ``data`` on ``characteristic``; False if nobody listened."""
        if characteristic not in {c.uuid for c in self.profile.characteristics}:
            return False
        if characteristic == RACP or self.is_subscribed(characteristic):
            return await self.notify(characteristic, data) > 0
        return False
