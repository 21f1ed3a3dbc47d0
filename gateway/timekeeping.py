"""Device clocks against the hub's: offsets, corrections and time faults (pure, no I/O).

A personal health device stamps its measurements with its own clock, which may drift, be
set by hand, or never have been set. The hub (better synchronised, over NTP) reads the
device's clock once per connection — Current Time 0x2A2B, before setting it — and places
the device's time stamps on its own timeline, as the PHD IG's coincident time stamp
describes:

- within :attr:`ClockPolicy.tolerance` of the hub: stamps are kept as they are;
- further off: stamps taken on that clock get the measured offset added;
- a clock that is not set (a date before :attr:`ClockPolicy.earliest`, an unknown date),
  off by more than :attr:`ClockPolicy.max_offset`, or read inconsistently, cannot be
  trusted: readings keep the device's own stamp and carry the time fault, so that they
  are never stored as if their time were true (ingest quarantines them);
- a stamp still ahead of the hub after correction is refused (:class:`UntrustedTimeError`).

When the hub sets the device's clock in the session, the records stored before were
stamped on the old clock and get the offset measured before setting; a measurement taken
after (its stamp within the tolerance of its reception) is on the new clock and is not
corrected. Readings the hub stamps itself on reception are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from gateway.decoders import Decoded
from gateway.errors import DecodeError
from wardwatch.reading import Reading, TimeCorrection

__all__ = [
    "ClockEstimate",
    "ClockPolicy",
    "ClockSample",
    "SessionClock",
    "UntrustedTimeError",
    "device_stamped",
    "device_time_fault",
    "estimate_offset",
]


class UntrustedTimeError(DecodeError):
    """A device time stamp that cannot be placed on the hub's timeline (quarantined)."""

    code = "time-untrusted"


@dataclass(frozen=True, slots=True)
class ClockPolicy:
    """When a device clock is corrected, and when it is not trusted."""

    tolerance: timedelta = timedelta(seconds=60)
    """Offsets up to this are left alone; also how far ahead of the hub a stamp may be."""
    max_offset: timedelta = timedelta(days=3653)
    """Offsets beyond this (about ten years) are not a drift but a broken clock."""
    earliest: datetime = datetime(2005, 1, 1, tzinfo=UTC)
    """A device clock showing an earlier date was never set (factory 2000-01-01, 1970)."""


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One reading of a device's clock (None: the device did not know the date)."""

    device_time: datetime | None
    hub_time: datetime


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    """A device clock's offset from the hub's, or why it cannot be trusted."""

    sample: ClockSample
    """The coincident time stamp the estimate rests on (the median sample)."""
    offset: timedelta | None
    """Hub time minus device time; None when the clock is not trusted."""
    fault: str | None = None

    @property
    def trusted(self) -> bool:
        """True when the offset can be used to correct time stamps."""
        return self.fault is None


def _ms(at: datetime) -> datetime:
    """``at`` in UTC to the millisecond (the precision FHIR times carry here)."""
    utc = at.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def estimate_offset(
    samples: Sequence[ClockSample], policy: ClockPolicy = ClockPolicy()
) -> ClockEstimate:
    """Estimate a device clock's offset from one or more coincident readings.

    Several samples (Current Time read twice, or a live measurement's stamp against its
    reception) must agree within the tolerance; the median one is kept.
    """
    if not samples:
        raise ValueError("estimate_offset needs at least one sample")
    clean = [
        ClockSample(None if s.device_time is None else _ms(s.device_time), _ms(s.hub_time))
        for s in samples
    ]
    unknown = [s for s in clean if s.device_time is None]
    if unknown:
        return ClockEstimate(unknown[0], None, "device clock does not know the date")
    early = [s for s in clean if s.device_time is not None and s.device_time < policy.earliest]
    if early:
        device_time = early[0].device_time
        assert device_time is not None
        return ClockEstimate(early[0], None, f"device clock not set (reads {_stamp(device_time)})")
    offsets = [s.hub_time - s.device_time for s in clean if s.device_time is not None]
    spread = max(offsets) - min(offsets)
    ordered = sorted(zip(offsets, range(len(clean)), strict=True))
    median_offset, index = ordered[(len(ordered) - 1) // 2]
    sample = clean[index]
    if spread > policy.tolerance:
        return ClockEstimate(
            sample,
            None,
            f"device clock readings disagree by {spread.total_seconds():.0f} s",
        )
    if abs(median_offset) > policy.max_offset:
        days = abs(median_offset).total_seconds() / 86400
        return ClockEstimate(sample, None, f"device clock is {days:.0f} days off: not a drift")
    return ClockEstimate(sample, median_offset)


def _complete(stamp: object) -> bool:
    if not isinstance(stamp, Mapping):
        return False
    return all(stamp.get(k) is not None for k in ("year", "month", "day"))


def device_stamped(decoded: Decoded) -> bool:
    """True when the readings' times come from the device's clock, not from reception.

    Blood pressure, weight, body composition, thermometer and pulse oximeter values carry
    ``timestamp``, glucose records ``base_time``; an incomplete date, or a clock the device
    itself says is not set, means the decoder used the reception time instead.
    """
    fields = decoded.fields
    if fields.get("device_clock_not_set"):
        return False
    return _complete(fields.get("timestamp")) or _complete(fields.get("base_time"))


def device_time_fault(decoded: Decoded) -> bool:
    """True when the device flags its own time as faulty (glucose sensor status bit 11)."""
    status = decoded.fields.get("sensor_status")
    return isinstance(status, Mapping) and bool(status.get("time_fault"))


class SessionClock:
    """One connection's view of a device clock: measured once, maybe set, then applied."""

    def __init__(self, estimate: ClockEstimate | None, policy: ClockPolicy = ClockPolicy()) -> None:
        self.estimate = estimate
        self.policy = policy
        self.set_at: datetime | None = None
        """Hub time at which the hub set the device's clock in this session."""

    def clock_was_set(self, hub_time: datetime) -> None:
        """The hub wrote ``hub_time`` to the device's clock: new stamps are on the hub's."""
        self.set_at = _ms(hub_time)

    def _coincident(self) -> TimeCorrection | None:
        estimate = self.estimate
        if estimate is None:
            return None
        s = estimate.sample
        if estimate.fault is not None:
            return TimeCorrection(s.device_time, s.hub_time, corrected=False, fault=estimate.fault)
        return TimeCorrection(s.device_time, s.hub_time, corrected=False)

    def place(
        self, reading: Reading, *, received_at: datetime, time_fault: bool = False
    ) -> Reading:
        """A device-stamped reading placed on the hub's timeline, the correction recorded.

        Raises UntrustedTimeError when the (corrected) time is ahead of the reception.
        """
        tol = self.policy.tolerance
        stamp = reading.at
        on_new_clock = self.set_at is not None and abs(stamp - received_at) <= tol
        if on_new_clock:
            assert self.set_at is not None
            placed = reading.with_time(
                stamp, TimeCorrection(self.set_at, self.set_at, corrected=False)
            )
        elif time_fault:
            base = self._coincident()
            hub = base.hub_time if base is not None else _ms(received_at)
            device = base.device_time if base is not None else None
            placed = reading.with_time(
                stamp,
                TimeCorrection(device, hub, corrected=False, fault="device reports a time fault"),
            )
        elif self.estimate is None:
            return reading  # clock not readable: nothing to compare with
        elif not self.estimate.trusted:
            placed = reading.with_time(stamp, self._coincident())
        else:
            offset = self.estimate.offset
            assert offset is not None
            s = self.estimate.sample
            if abs(offset) <= tol:
                placed = reading.with_time(stamp, self._coincident())
            else:
                placed = reading.with_time(
                    stamp + offset, TimeCorrection(s.device_time, s.hub_time, corrected=True)
                )
        if placed.time_correction is not None and placed.time_correction.trusted:
            ahead = placed.at - received_at
            if ahead > tol:
                raise UntrustedTimeError(
                    f"{reading.kind} time stamp {_stamp(stamp)} is "
                    f"{ahead.total_seconds():.0f} s ahead of its reception "
                    f"({'after' if placed.time_correction.corrected else 'without'} "
                    "clock correction)"
                )
        return placed

    def apply(self, decoded: Decoded, received_at: datetime) -> Decoded:
        """``decoded`` with its device-stamped readings placed (see :meth:`place`)."""
        if not decoded.readings or not device_stamped(decoded):
            return decoded
        fault = device_time_fault(decoded)
        readings = tuple(
            self.place(r, received_at=received_at, time_fault=fault) for r in decoded.readings
        )
        return replace(decoded, readings=readings)
