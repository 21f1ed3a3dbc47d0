"""Bluetooth Date Time (0x2A08) and the time fields built on it.

GSS "Date Time": year uint16 (1582..9999, 0 = not known), month uint8
(1..12, 0 = not known), day uint8 (1..31, 0 = not known), hours 0..23, minutes 0..59,
seconds 0..59. Blood pressure, glucose, weight, thermometer and PLX time stamps all embed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from gateway.errors import DecodeError

DATE_TIME_SIZE = 7


@dataclass(frozen=True, slots=True)
class DateTime:
    """A Bluetooth Date Time; ``None`` in year/month/day means the device sent "not known"."""

    year: int | None
    month: int | None
    day: int | None
    hour: int
    minute: int
    second: int

    @property
    def is_complete(self) -> bool:
        """True when year, month and day are all known."""
        return self.year is not None and self.month is not None and self.day is not None

    def to_datetime(self, tz: tzinfo = UTC) -> datetime | None:
        """The time in ``tz`` (UTC by default), or None when the date is not fully known."""
        if self.year is None or self.month is None or self.day is None:
            return None
        return datetime(self.year, self.month, self.day, self.hour, self.minute, self.second, 0, tz)

    def as_field(self) -> dict[str, int | None]:
        """The time as it goes in ``Decoded.fields``."""
        return {
            "year": self.year,
            "month": self.month,
            "day": self.day,
            "hour": self.hour,
            "minute": self.minute,
            "second": self.second,
        }

    @classmethod
    def from_datetime(cls, at: datetime) -> DateTime:
        """The Date Time showing ``at``'s wall-clock reading (its own time zone)."""
        return cls(at.year, at.month, at.day, at.hour, at.minute, at.second)


def decode_date_time(data: bytes, offset: int = 0, *, what: str = "Date Time") -> DateTime:
    """Decode the 7-byte Date Time at ``offset`` (GSS "Date Time")."""
    end = offset + DATE_TIME_SIZE
    if len(data) < end:
        raise DecodeError(f"{what} needs 7 bytes at offset {offset}, payload has {len(data)} bytes")
    year = int.from_bytes(data[offset : offset + 2], "little")
    month, day, hour, minute, second = data[offset + 2 : end]
    if year != 0 and not 1582 <= year <= 9999:
        raise DecodeError(f"{what} year {year} is outside 1582..9999 (0 = not known)")
    if month > 12:
        raise DecodeError(f"{what} month {month} is outside 1..12 (0 = not known)")
    if day > 31:
        raise DecodeError(f"{what} day {day} is outside 1..31 (0 = not known)")
    if hour > 23 or minute > 59 or second > 59:
        raise DecodeError(f"{what} time {hour:02d}:{minute:02d}:{second:02d} is not a valid time")
    stamp = DateTime(year or None, month or None, day or None, hour, minute, second)
    if stamp.is_complete:
        try:
            stamp.to_datetime()
        except ValueError:
            raise DecodeError(
                f"{what} {year:04d}-{month:02d}-{day:02d} is not a calendar date"
            ) from None
    return stamp


def encode_date_time(stamp: DateTime) -> bytes:
    """Encode a Date Time (GSS "Date Time"), writing 0 for unknown year/month/day."""
    return (stamp.year or 0).to_bytes(2, "little") + bytes(
        (stamp.month or 0, stamp.day or 0, stamp.hour, stamp.minute, stamp.second)
    )
