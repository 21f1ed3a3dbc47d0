"""Devices that only advertise: where in the advertisement a measurement is, and repeats.

A scale that broadcasts its weight puts it in the advertisement's service data (keyed by a
service UUID) or manufacturer data (keyed by a company id), and repeats the same packet
many times while it shows the weight. A profile's ``advertisement`` section names those
sources and the standard decoder for each; :class:`RepeatFilter` turns the repeats into
one measurement. Both are pure: no radio, no clock of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gateway.decoders import normalize_uuid16
from gateway.errors import DecodeError
from gateway.profiles._quirks import Quirks

#: seconds within which the same bytes from the same source are one measurement
DEFAULT_REPEAT_WINDOW = 60.0


def _uuid_key(uuid: str) -> str:
    try:
        return normalize_uuid16(uuid)
    except DecodeError:
        return uuid.strip().lower()


@dataclass(frozen=True, slots=True)
class AdvertisementSource:
    """One place a measurement is advertised: service data of a UUID or manufacturer data
    of a company id; ``offset`` bytes (a vendor header) come before the decoder's format."""

    decoder: str
    service_data: str | None = None
    manufacturer_id: int | None = None
    offset: int = 0
    quirks: Quirks = field(default_factory=Quirks)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AdvertisementSource:
        """The source from its (schema-valid) document."""
        uuid = doc.get("service_data")
        return cls(
            decoder=doc["decoder"],
            service_data=None if uuid is None else _uuid_key(uuid),
            manufacturer_id=doc.get("manufacturer_id"),
            offset=int(doc.get("offset", 0)),
            quirks=Quirks.from_doc(doc.get("quirks", {})),
        )

    @property
    def key(self) -> str:
        """What the source is called in quarantine records and logs."""
        if self.service_data is not None:
            return f"service-data:{self.service_data}"
        return f"manufacturer:0x{self.manufacturer_id or 0:04X}"

    def payload(self, data: bytes) -> bytes:
        """The measurement bytes of an advertised value (the vendor header cut off)."""
        if len(data) < self.offset:
            raise DecodeError(
                f"{len(data)} bytes advertised, fewer than the {self.offset}-byte header",
                characteristic=self.key,
            )
        return data[self.offset :]


@dataclass(frozen=True, slots=True)
class AdvertisementSpec:
    """The ``advertisement`` section of a profile."""

    sources: tuple[AdvertisementSource, ...]
    repeat_window: float = DEFAULT_REPEAT_WINDOW

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AdvertisementSpec:
        """The section from its (schema-valid) document."""
        return cls(
            tuple(AdvertisementSource.from_doc(s) for s in doc["sources"]),
            float(doc.get("repeat_window", DEFAULT_REPEAT_WINDOW)),
        )

    def source(
        self, *, service_data: str | None = None, manufacturer_id: int | None = None
    ) -> AdvertisementSource:
        """The source named by a service-data UUID or a company id (the only one if neither)."""
        if service_data is None and manufacturer_id is None:
            if len(self.sources) == 1:
                return self.sources[0]
            known = ", ".join(s.key for s in self.sources)
            raise DecodeError(f"the advertisement has several sources ({known}): name one")
        key = None if service_data is None else _uuid_key(service_data)
        for s in self.sources:
            if (key is not None and s.service_data == key) or (
                manufacturer_id is not None and s.manufacturer_id == manufacturer_id
            ):
                return s
        wanted = f"service data {key}" if key is not None else f"manufacturer {manufacturer_id}"
        raise DecodeError(f"the advertisement has no source for {wanted}")


class RepeatFilter:
    """Same bytes from the same source within a window of their last sighting: a repeat.

    The window slides: a scale that keeps broadcasting one weight gives one measurement,
    however long it broadcasts; the same bytes after a silence longer than the window are
    a new measurement (stepping on the scale again).
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[bytes, datetime]] = {}

    def fresh(
        self, device: str, source: str, payload: bytes, at: datetime, window: timedelta
    ) -> bool:
        """True when ``payload`` is a new measurement (not a repeat); remembers it."""
        key = (device, source)
        previous = self._last.get(key)
        self._last[key] = (payload, at)
        if previous is None:
            return True
        data, seen = previous
        return data != payload or at - seen > window
