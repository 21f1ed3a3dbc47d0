"""Recording: what a gateway's devices actually sent, written as a feed (``gateway run --record``).

:class:`FeedRecorder` implements the gateway's :class:`gateway.ble.DeviceRecorder`: every
GATT value (notified, indicated or read) becomes a ``ble`` event, every MQTT message of a
paired device an ``mqtt`` event, and the device-level happenings are kept too: ``connect``
(with the profile the hub used and the hub's id), ``disconnect``, ``clock_read`` (the
Current Time value read, at the hub's time half-way through the read) and ``clock_set``
(the value written). Times are the hub's clock, to the microsecond, so that replaying the
feed (``wardwatch sim replay --path ble|mqtt``) gives the gateway the very times it had
and the stored Observations come out byte for byte the same.

Each event is written (and flushed) as it happens: a recording cut by a power loss keeps
everything up to its last line.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast, get_args

import orjson

from firmware_sim.feeds.format import (
    BleValue,
    DeviceHappening,
    FeedError,
    FeedEvent,
    MqttMessage,
    event_to_json,
)
from gateway.ble import PairedDevice

__all__ = ["FeedRecorder", "precise_time"]

log = logging.getLogger(__name__)

_HAPPENINGS = frozenset(get_args(DeviceHappening))


def precise_time(at: datetime) -> str:
    """``2026-01-05T00:05:00.123456Z``: UTC, fraction only when there is one, to the µs."""
    utc = at.astimezone(UTC)
    if not utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    if utc.microsecond % 1000 == 0:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FeedRecorder:
    """Writes device traffic to a feed file (JSON Lines), one flushed line per event.

    ``gateway_id`` is written on ``connect`` events, so that a replay names the same hub
    on its Observations. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, gateway_id: str, append: bool = False) -> None:
        self.path = Path(path)
        self.gateway_id = gateway_id
        self._fh: IO[str] = self.path.open("a" if append else "w", encoding="utf-8")
        self._lock = threading.Lock()
        #: events written so far
        self.events = 0
        self._seen: set[str] = set()

    def __enter__(self) -> FeedRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            if not self._fh.closed:
                self._fh.close()

    def _write(self, event: FeedEvent) -> None:
        doc: dict[str, Any] = event_to_json(event)
        doc["at"] = precise_time(event.at)
        line = orjson.dumps(doc).decode() + "\n"
        with self._lock:
            if self._fh.closed:
                log.warning("recording closed: an event of device %s not recorded", event.device)
                return
            self._fh.write(line)
            self._fh.flush()
            self.events += 1

    # gateway.ble.DeviceRecorder

    def value(self, device: PairedDevice, at: datetime, characteristic: str, data: bytes) -> None:
        """A GATT value, as received."""
        char = characteristic.upper()
        if len(char) == 36 and char.endswith("-0000-1000-8000-00805F9B34FB"):
            char = char[4:8]
        self._write(
            FeedEvent(at, device.device_id, device.patient, ble=BleValue(char, bytes(data)))
        )

    def message(self, device: PairedDevice, at: datetime, topic: str, payload: bytes) -> None:
        """An MQTT device message, as received (the first of a device after a ``connect``
        naming the hub, as a BLE connection does)."""
        if device.device_id not in self._seen:
            self._seen.add(device.device_id)
            self.happening(device, at, "connect", profile=device.profile)
        self._write(
            FeedEvent(at, device.device_id, device.patient, mqtt=MqttMessage(topic, bytes(payload)))
        )

    def happening(
        self,
        device: PairedDevice,
        at: datetime,
        what: str,
        *,
        profile: str | None = None,
        data: bytes | None = None,
    ) -> None:
        """A device-level happening (``connect``, ``disconnect``, ``clock_read``, ...)."""
        if what not in _HAPPENINGS:
            raise FeedError(f"{what!r} is not a device happening the feed format knows")
        self._write(
            FeedEvent(
                at,
                device.device_id,
                device.patient,
                event=cast("DeviceHappening", what),
                profile=profile,
                gateway=self.gateway_id if what == "connect" else None,
                data=None if data is None else bytes(data),
            )
        )
