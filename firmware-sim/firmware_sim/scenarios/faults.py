"""Device and hub fault scenarios: silence, a hub offline, clock drift, duplicates, corruption.

What these check is the chain, not a clinical detector: a silence or an outage is an episode
in the truth (scored against the planned missing-data rules); clock drift, duplicates and
corruption carry no clinical episode beyond their base scenario, and their truth's
``parameters`` say what replay must show (``true_times``, ``duplicate_events``,
``corrupted_packets``). Raw BLE values are built as the devices send them
(:mod:`firmware_sim.encoding`, Current Time from the gateway's CTS encoder). Parameters and
sources: :mod:`firmware_sim.scenarios._physiology`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from firmware_sim.encoding import encode_blood_pressure_measurement
from firmware_sim.feeds.format import BleValue, FeedEvent, format_time
from firmware_sim.feeds.truth import Episode
from firmware_sim.scenarios import _physiology as phys
from firmware_sim.scenarios.library import (
    Rng,
    ScenarioOutput,
    _noise,
    _Patient,
    _routine,
    _u,
    _when,
    _window,
    hypertensive_crisis,
)
from gateway.decoders import encode_current_time

BLOOD_PRESSURE = "2A35"
CURRENT_TIME = "2A2B"
#: ways a raw value is damaged; each is one a decoder can tell (see :func:`corrupt`)
CORRUPTIONS = ("truncated", "flags", "bad_time", "noise")


def bp_value(stamp: datetime, systolic: float, diastolic: float) -> bytes:
    """A Blood Pressure Measurement (0x2A35) in mmHg with its device time stamp."""
    mean = diastolic + (systolic - diastolic) / 3
    return encode_blood_pressure_measurement(
        round(systolic), round(diastolic), round(mean), timestamp=stamp
    )


def ble_event(at: datetime, patient: str, device: str, char: str, data: bytes) -> FeedEvent:
    """A raw BLE value received by the hub at ``at``."""
    return FeedEvent(at, device, patient, ble=BleValue(char, data))


def _bp_of(event: FeedEvent) -> tuple[float, float] | None:
    reading = event.reading
    if reading is None or reading.kind != "blood_pressure":
        return None
    sbp, dbp = reading.component("systolic"), reading.component("diastolic")
    if sbp is None or dbp is None or sbp.value is None or dbp.value is None:
        return None
    return sbp.value, dbp.value


def _delay(rng: Rng) -> timedelta:
    return timedelta(seconds=round(_u(rng, phys.TRANSFER_DELAY_S)))


def device_silent(
    rng: Rng, start: datetime, prefix: str, patients: int, days: int
) -> ScenarioOutput:
    """Stable patients; one device each goes silent for 3-6 days (or to the end).

    Episode ``device_silent``: from the first reading that did not come to the first that
    came again (null: still silent when the feed ends).
    """
    out = ScenarioOutput()
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}")
        own = ScenarioOutput()
        _routine(own, rng, p, start, days)
        device = (p.cuff, p.scale, p.oxi)[int(rng.integers(0, 3))]
        silent_from = start + timedelta(hours=_u(rng, (days * 24 * 0.25, days * 24 * 0.6)))
        to_end = bool(rng.random() < phys.SILENT_TO_END_P)
        until = None if to_end else silent_from + timedelta(days=_u(rng, phys.SILENT_DAYS))

        def silenced(e: FeedEvent, a: datetime = silent_from, b: datetime | None = until) -> bool:
            return e.device == device and e.at >= a and (b is None or e.at < b)  # noqa: B023

        dropped = [e for e in own.events if silenced(e)]
        kept = [e for e in own.events if not silenced(e)]
        out.events += kept
        back = next(
            (e.at for e in kept if e.device == device and until is not None and e.at >= until),
            None,
        )
        first_missing = dropped[0].at if dropped else silent_from
        out.episodes.append(
            Episode(
                "device_silent",
                p.id,
                first_missing,
                back,
                {"device": device, "readings_missing": len(dropped)},
            )
        )
        _window(out, p.id, start, days)
    return out


def hub_offline(rng: Rng, start: datetime, prefix: str, patients: int, days: int) -> ScenarioOutput:
    """Stable patients whose hub is offline for 20-30 hours once.

    The BP cuff keeps its readings and hands them over when the hub is back (raw 0x2A35
    values with their time stamps, received after the outage); the scale's and the
    oximeter's readings in the outage are lost. Episode ``hub_offline``: the outage, with
    ``disconnect``/``reconnect`` events of device ``hub-<patient>``.
    """
    out = ScenarioOutput()
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}")
        hub = f"hub-{p.id}"
        own = ScenarioOutput()
        _routine(own, rng, p, start, days)
        end = start + timedelta(days=days)
        off = start + timedelta(hours=round(_u(rng, (days * 24 * 0.3, days * 24 * 0.6)), 2))
        back = min(off + timedelta(hours=round(_u(rng, phys.HUB_OFFLINE_HOURS), 2)), end)
        late, lost = 0, 0
        handover = back + timedelta(seconds=20)
        for e in own.events:
            if not off <= e.at < back:
                out.events.append(e)
                continue
            bp = _bp_of(e)
            if e.device == p.cuff and bp is not None:
                handover += timedelta(seconds=2)
                out.events.append(
                    ble_event(handover, p.id, p.cuff, BLOOD_PRESSURE, bp_value(e.at, *bp))
                )
                late += 1
            else:
                lost += 1
        out.events.append(FeedEvent(off, hub, p.id, event="disconnect"))
        if back < end:
            out.events.append(FeedEvent(back, hub, p.id, event="reconnect"))
        out.episodes.append(
            Episode(
                "hub_offline",
                p.id,
                off,
                back if back < end else None,
                {"hub": hub, "late_readings": late, "lost_readings": lost},
            )
        )
        _window(out, p.id, start, days)
    return out


class _DeviceClock:
    """A drifting clock set by hand, re-set once: device time minus true time."""

    def __init__(self, rng: Rng, start: datetime, days: int) -> None:
        sign = 1.0 if rng.random() < 0.5 else -1.0
        self.start = start
        self.offset0 = sign * _u(rng, phys.CLOCK_INITIAL_OFFSET_MIN) * 60
        ppm = _u(rng, phys.CLOCK_DRIFT_PPM)
        # drifting away from the true time: the offset only grows, so it stays past the
        # gateway's 60 s tolerance and every stamp is corrected
        self.ppm = sign * ppm
        self.reset_at = start + timedelta(days=_u(rng, (days * 0.3, days * 0.7)))
        sign2 = 1.0 if rng.random() < 0.5 else -1.0
        self.offset1 = sign2 * _u(rng, phys.CLOCK_RESET_OFFSET_MIN) * 60
        self.ppm1 = sign2 * ppm

    def offset_s(self, at: datetime) -> float:
        if at < self.reset_at:
            return self.offset0 + self.ppm * 1e-6 * (at - self.start).total_seconds()
        return self.offset1 + self.ppm1 * 1e-6 * (at - self.reset_at).total_seconds()

    def shows(self, at: datetime) -> datetime:
        return at + timedelta(seconds=self.offset_s(at))


def clock_drift(rng: Rng, start: datetime, prefix: str, patients: int, days: int) -> ScenarioOutput:
    """Controlled patients whose BP cuff's clock drifts (20-100 ppm) and is re-set once.

    Each measurement arrives as the hub sees it: the cuff's Current Time (0x2A2B) read on
    connection, then the 0x2A35 value stamped by the cuff's clock. No clinical episode; the
    truth's ``parameters.true_times`` gives, per device, when each measurement was taken:
    replay must store those times (within a second: Date Time has whole seconds).
    """
    out = ScenarioOutput()
    true_times: dict[str, list[str]] = {}
    clocks: dict[str, dict[str, float | str]] = {}
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}")
        clock = _DeviceClock(rng, start, days)
        times = true_times.setdefault(p.cuff, [])
        for d in range(days):
            day = start + timedelta(days=d)
            for hour in (7.5, 19.5):
                taken = _when(rng, day, hour) + timedelta(seconds=int(rng.integers(0, 60)))
                if rng.random() >= phys.ADHERENCE:
                    continue
                sbp = p.systolic + _noise(rng, phys.BP_SYSTOLIC_DAY_SD)
                dbp = p.diastolic + _noise(rng, phys.BP_DIASTOLIC_DAY_SD)
                read = taken + _delay(rng) + timedelta(milliseconds=int(rng.integers(0, 1000)))
                device_now = clock.shows(read)
                out.events.append(
                    ble_event(
                        read,
                        p.id,
                        p.cuff,
                        CURRENT_TIME,
                        encode_current_time(device_now, adjust_reason=0),
                    )
                )
                stamp = clock.shows(taken).replace(microsecond=0)
                out.events.append(
                    ble_event(
                        read + timedelta(seconds=1),
                        p.id,
                        p.cuff,
                        BLOOD_PRESSURE,
                        bp_value(stamp, sbp, dbp),
                    )
                )
                times.append(format_time(taken))
        jump = clock.offset1 - clock.offset_s(clock.reset_at - timedelta(microseconds=1))
        out.events.append(
            FeedEvent(clock.reset_at, p.cuff, p.id, event="clock_change", offset_s=round(jump, 3))
        )
        clocks[p.cuff] = {
            "initial_offset_s": round(clock.offset0, 3),
            "drift_ppm": round(clock.ppm, 2),
            "reset_at": format_time(clock.reset_at),
            "offset_after_reset_s": round(clock.offset1, 3),
        }
        _window(out, p.id, start, days)
    out.facts = {"true_times": true_times, "device_clocks": clocks}
    return out


def duplicate_transmissions(
    rng: Rng, start: datetime, prefix: str, patients: int, days: int
) -> ScenarioOutput:
    """The hypertensive-crisis scenario with 35 % of its readings sent 2-5 times.

    Cuff readings arrive as raw 0x2A35 values, the copies re-transferred 1-15 minutes later
    (a lost acknowledgement); other readings are repeated as identical lines (a hub
    re-sending its uplink). The truth keeps the crisis episodes: the alerts must be exactly
    those of the feed without the copies. ``parameters.duplicate_events`` counts the copies.
    """
    out = hypertensive_crisis(rng, start, prefix, patients, days)
    events: list[FeedEvent] = []
    copies_total = 0
    for e in out.events:
        copies = 1
        if rng.random() < phys.DUPLICATE_P:
            copies = int(rng.integers(phys.DUPLICATE_COPIES[0], phys.DUPLICATE_COPIES[1] + 1))
        copies_total += copies - 1
        bp = _bp_of(e)
        if bp is None:
            events += [e] * copies
            continue
        assert e.patient is not None
        at = e.at + _delay(rng)
        value = bp_value(e.at, *bp)
        for _ in range(copies):
            events.append(ble_event(at, e.patient, e.device, BLOOD_PRESSURE, value))
            at += timedelta(seconds=round(_u(rng, (60.0, 900.0))))
    out.facts = {"duplicate_events": copies_total, "unique_readings": len(out.events)}
    out.events = events
    return out


def corrupt(rng: Rng, data: bytes) -> tuple[str, bytes]:
    """A damaged copy of a 0x2A35 value with a time stamp, and how it was damaged.

    Only damage a decoder can tell is made: a value cut short, flags announcing fields the
    value does not have, a time stamp whose month is past 12, or a few bytes of noise
    (shorter than the smallest valid value). A bit flip inside a number cannot be told
    from a true reading without a CRC, which 0x2A35 does not carry.
    """
    how = CORRUPTIONS[int(rng.integers(0, len(CORRUPTIONS)))]
    if how == "truncated":
        return how, data[: int(rng.integers(0, len(data)))]
    if how == "flags":
        return how, bytes([data[0] | 0x1C]) + data[1:]
    if how == "bad_time":
        month_at = 7 + 2  # flags (1) + three SFLOATs (6), then year (2)
        return how, data[:month_at] + bytes([int(rng.integers(13, 256))]) + data[month_at + 1 :]
    return how, rng.bytes(int(rng.integers(1, 7)))


def corrupted_packets(
    rng: Rng, start: datetime, prefix: str, patients: int, days: int
) -> ScenarioOutput:
    """Stable patients whose cuff sends raw 0x2A35 values, 15 % of them damaged.

    No episode, no alert: every damaged value is quarantined (``decode-error``) and the
    rest stored. ``parameters.corrupted_packets`` counts them (``corruptions`` by kind).
    """
    out = ScenarioOutput()
    kinds: dict[str, int] = dict.fromkeys(CORRUPTIONS, 0)
    for n in range(1, patients + 1):
        p = _Patient(rng, f"{prefix}-{n:03d}")
        own = ScenarioOutput()
        _routine(own, rng, p, start, days)
        for e in own.events:
            bp = _bp_of(e)
            if bp is None:
                out.events.append(e)
                continue
            value = bp_value(e.at, *bp)
            if rng.random() < phys.CORRUPT_P:
                how, value = corrupt(rng, value)
                kinds[how] += 1
            out.events.append(ble_event(e.at + _delay(rng), p.id, p.cuff, BLOOD_PRESSURE, value))
        _window(out, p.id, start, days)
    out.facts = {"corrupted_packets": sum(kinds.values()), "corruptions": kinds}
    return out
