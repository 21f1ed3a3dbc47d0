"""Current Time (0x2A2B): read a device's clock, and the value written to set it.

Layout from the Current Time Service specification (CTS 1.1) and GSS
"Current Time": Exact Time 256 (Day Date Time: Date Time + Day of Week uint8, 0 = unknown,
1 = Monday .. 7 = Sunday; Fractions256 uint8) and Adjust Reason uint8 (bit 0 manual time
update, bit 1 external reference time update, bit 2 change of time zone, bit 3 change of
DST).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from gateway.decoders._base import Decoded, DeviceContext, Reader, bit_names, check_layout, frozen
from gateway.decoders._time import DATE_TIME_SIZE, DateTime, encode_date_time
from gateway.errors import DecodeError

CURRENT_TIME_SIZE = 10

MANUAL_TIME_UPDATE = 0x01
EXTERNAL_REFERENCE_TIME_UPDATE = 0x02
CHANGE_OF_TIME_ZONE = 0x04
CHANGE_OF_DST = 0x08

ADJUST_REASON_BITS = {
    0: "manual_time_update",
    1: "external_reference_time_update",
    2: "change_of_time_zone",
    3: "change_of_dst",
}
DAYS_OF_WEEK = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """A decoded Current Time value."""

    date_time: DateTime
    day_of_week: int | None
    """1 = Monday .. 7 = Sunday, None when the device does not know."""
    fractions256: int
    adjust_reason: int

    def to_datetime(self, tz: tzinfo) -> datetime | None:
        """The device's clock reading in ``tz`` (its wall clock), None if the date is unknown."""
        at = self.date_time.to_datetime(tz)
        if at is None:
            return None
        return at + timedelta(microseconds=self.fractions256 * 1_000_000 // 256)


def decode_current_time(data: bytes) -> CurrentTime:
    """Parse Current Time (CTS 1.1); DecodeError names the bad part."""
    layout = [("Date Time", DATE_TIME_SIZE, False), ("Day of Week", 1, False)]
    layout += [("Fractions256", 1, False), ("Adjust Reason", 1, False)]
    check_layout(data, layout, 0)
    r = Reader(data)
    stamp = r.date_time("Date Time")
    day = r.uint(1, "Day of Week")
    if day > 7:
        raise DecodeError(f"Day of Week {day} is outside 1..7 (0 = not known)")
    return CurrentTime(stamp, day or None, r.uint(1, "Fractions256"), r.uint(1, "Adjust Reason"))


def encode_current_time(at: datetime, *, adjust_reason: int = MANUAL_TIME_UPDATE) -> bytes:
    """The 10 bytes that set a device clock to ``at``'s wall-clock reading (CTS).

    ``at`` should already be in the time zone the device displays; Fractions256 is the
    sub-second part rounded down to 1/256 s.
    """
    if not 0 <= adjust_reason <= 0xFF:
        raise ValueError(f"adjust reason {adjust_reason} is not a uint8")
    fractions = at.microsecond * 256 // 1_000_000
    return encode_date_time(DateTime.from_datetime(at)) + bytes(
        (at.isoweekday(), fractions, adjust_reason)
    )


def encode_current_time_value(value: CurrentTime) -> bytes:
    """Encode a :class:`CurrentTime` (the inverse of :func:`decode_current_time`)."""
    return encode_date_time(value.date_time) + bytes(
        (value.day_of_week or 0, value.fractions256, value.adjust_reason)
    )


def decode_current_time_characteristic(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Current Time 0x2A2B (CTS 1.1; GSS "Current Time"). No readings.

    Fields: year, month, day (None = unknown), hour, minute, second, day_of_week (1-7 or
    None), day_of_week_name, fractions256, adjust_reason_raw and one boolean per adjust
    reason bit.
    """
    del received_at, device
    value = decode_current_time(data)
    fields: dict[str, object] = dict(value.date_time.as_field())
    fields["day_of_week"] = value.day_of_week
    dow = value.day_of_week
    fields["day_of_week_name"] = None if dow is None else DAYS_OF_WEEK[dow - 1]
    fields["fractions256"] = value.fractions256
    fields["adjust_reason_raw"] = value.adjust_reason
    fields.update(bit_names(value.adjust_reason, ADJUST_REASON_BITS))
    return Decoded("2A2B", (), frozen(fields))
