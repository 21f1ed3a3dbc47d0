"""Device clocks against the hub's (issue 4, "Time"): offsets, corrections, time faults.

Pure tests of ``gateway.timekeeping`` and of the PHD IG coincident time stamp in
``wardwatch.fhir``; then drifted and unset simulated device clocks through the real
gateway (BLE session, profile, outbox, HTTP uplink) and the real ingest into a SQLite store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.observation import Observation

from firmware_sim._clock import UNSET_EPOCH, DeviceClock
from firmware_sim.ble import SimulatedAir
from firmware_sim.devices import BloodPressureCuff, BloodPressureReading
from firmware_sim.encoding import encode_blood_pressure_measurement
from firmware_sim.profile_devices import ProfilePeripheral
from gateway.ble import PairedDevice
from gateway.decoders import DateTime, decode_characteristic, encode_date_time
from gateway.timekeeping import (
    ClockPolicy,
    ClockSample,
    SessionClock,
    UntrustedTimeError,
    device_stamped,
    device_time_fault,
    estimate_offset,
)
from ingest.errors import ValidationError
from ingest.validation import Registry, validate
from tests.shared import shared_path
from tests.test_e2e import running, wait_for
from tests.test_profile_devices import (
    ADDRESS,
    DEVICE,
    GLUCORA_RECORD,
    PATIENT,
    REGISTRY,
    enrolled_store,
    gateway_for,
    ingest_api,
)
from wardwatch.errors import ContractError, ObservationError
from wardwatch.fhir import (
    COINCIDENT_TIME_PROFILE,
    MDC_ATTR_TIME_ABS,
    facts_from_observation,
    observation_from_reading,
    reading_id,
)
from wardwatch.reading import Reading, TimeCorrection
from wardwatch.store import Store

HUB = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
SLOW = timedelta(hours=2, minutes=13)  # the device clock is behind the hub's by this
THREE_YEARS = timedelta(days=3 * 365)
POLICY = ClockPolicy()


def hr(at: datetime) -> Reading:
    return Reading("heart_rate", at, 72, "/min")


def session(device_time: datetime | None, hub_time: datetime = HUB) -> SessionClock:
    return SessionClock(estimate_offset([ClockSample(device_time, hub_time)]))


# -- the estimator ------------------------------------------------------------------------


def test_offset_within_tolerance_is_left_alone_but_recorded() -> None:
    clock = session(HUB - timedelta(seconds=40))
    assert clock.estimate is not None and clock.estimate.offset == timedelta(seconds=40)
    stamp = HUB - timedelta(hours=1)
    placed = clock.place(hr(stamp), received_at=HUB)
    assert placed.at == stamp
    tc = placed.time_correction
    assert tc is not None and not tc.corrected and tc.trusted
    assert tc.device_time == HUB - timedelta(seconds=40) and tc.hub_time == HUB


def test_slow_clock_is_corrected_and_keeps_the_reported_time() -> None:
    clock = session(HUB - SLOW)
    stamp = HUB - SLOW - timedelta(minutes=30)  # taken half an hour ago, on the slow clock
    placed = clock.place(hr(stamp), received_at=HUB)
    assert placed.at == HUB - timedelta(minutes=30)
    tc = placed.time_correction
    assert tc is not None and tc.corrected and tc.offset == SLOW
    assert placed.reported_at == stamp


def test_fast_clock_three_years_off_is_corrected() -> None:
    clock = session(HUB + THREE_YEARS)
    placed = clock.place(hr(HUB + THREE_YEARS - timedelta(days=2)), received_at=HUB)
    assert placed.at == HUB - timedelta(days=2)


@pytest.mark.parametrize(
    ("device_time", "fault"),
    [
        (UNSET_EPOCH + timedelta(minutes=5), "device clock not set (reads 2000-01-01T00:05:00Z)"),
        (datetime(1970, 1, 1, tzinfo=UTC), "device clock not set (reads 1970-01-01T00:00:00Z)"),
        (None, "device clock does not know the date"),
        (datetime(2091, 6, 1, tzinfo=UTC), "device clock is 23824 days off: not a drift"),
    ],
)
def test_untrustworthy_clocks_are_faults(device_time: datetime | None, fault: str) -> None:
    estimate = estimate_offset([ClockSample(device_time, HUB)])
    assert not estimate.trusted and estimate.offset is None and estimate.fault == fault
    stamp = (device_time or HUB) - timedelta(minutes=3)
    placed = SessionClock(estimate).place(hr(stamp), received_at=HUB)
    # kept with the device's own stamp, flagged: never a corrected (or true) time
    assert placed.at == stamp
    tc = placed.time_correction
    assert tc is not None and tc.fault == fault and not tc.corrected and not tc.trusted


def test_several_samples_must_agree_and_the_median_is_kept() -> None:
    samples = [
        ClockSample(HUB - SLOW + timedelta(seconds=n), HUB + timedelta(seconds=n + d))
        for n, d in ((0, 0), (10, 2), (20, 1))
    ]
    estimate = estimate_offset(samples)
    assert estimate.offset == SLOW + timedelta(seconds=1)
    assert estimate.sample == samples[2]
    apart = [ClockSample(HUB - SLOW, HUB), ClockSample(HUB - SLOW, HUB + timedelta(minutes=5))]
    bad = estimate_offset(apart)
    assert bad.fault == "device clock readings disagree by 300 s"
    with pytest.raises(ValueError, match="at least one sample"):
        estimate_offset([])


def test_time_ahead_of_reception_after_correction_is_refused() -> None:
    clock = session(HUB - SLOW)
    # a stamp that, corrected, lies an hour in the hub's future: the record is absurd
    with pytest.raises(UntrustedTimeError, match=r"3600 s ahead of its reception") as info:
        clock.place(hr(HUB - SLOW + timedelta(hours=1)), received_at=HUB)
    assert info.value.code == "time-untrusted"
    # within the tolerance is fine (clocks and radio delays differ a little)
    ok = clock.place(hr(HUB - SLOW + timedelta(seconds=30)), received_at=HUB)
    assert ok.at == HUB + timedelta(seconds=30)


def test_after_the_hub_sets_the_clock_new_stamps_are_not_corrected() -> None:
    clock = session(HUB - SLOW)
    clock.clock_was_set(HUB + timedelta(seconds=1))
    old = clock.place(hr(HUB - SLOW - timedelta(hours=1)), received_at=HUB + timedelta(seconds=3))
    assert old.at == HUB - timedelta(hours=1)  # stamped before: the offset measured before
    live_at = HUB + timedelta(minutes=2)
    live = clock.place(hr(live_at), received_at=live_at + timedelta(seconds=2))
    assert live.at == live_at
    tc = live.time_correction
    assert tc is not None and not tc.corrected and tc.device_time == tc.hub_time


def test_unset_clock_set_by_the_hub_trusts_only_new_stamps() -> None:
    clock = session(UNSET_EPOCH + timedelta(hours=5))
    clock.clock_was_set(HUB)
    stored = clock.place(hr(UNSET_EPOCH + timedelta(hours=4)), received_at=HUB)
    assert stored.time_correction is not None and not stored.time_correction.trusted
    live = clock.place(hr(HUB + timedelta(seconds=20)), received_at=HUB + timedelta(seconds=21))
    assert live.time_correction is not None and live.time_correction.trusted


def test_no_current_time_means_no_correction() -> None:
    r = hr(HUB - timedelta(hours=3))
    assert SessionClock(None).place(r, received_at=HUB) is r


def test_only_device_stamped_values_are_placed() -> None:
    clock = session(HUB - SLOW)
    stamp = HUB - SLOW - timedelta(minutes=10)
    timed = decode_characteristic(
        "2A35",
        encode_blood_pressure_measurement(120, 80, 93, timestamp=stamp, pulse=70),
        received_at=HUB,
    )
    untimed = decode_characteristic(
        "2A35", encode_blood_pressure_measurement(120, 80, 93), received_at=HUB
    )
    assert device_stamped(timed) and not device_stamped(untimed)
    placed = clock.apply(timed, HUB)
    assert [r.at for r in placed.readings] == [HUB - timedelta(minutes=10)] * 2
    assert clock.apply(untimed, HUB) is untimed  # stamped by the hub on reception


def test_glucose_time_fault_bit_flags_the_reading() -> None:
    clock = session(HUB - timedelta(seconds=5))
    record = bytearray.fromhex("0b0100e807030108000000000cc011" + "0008")  # status: time fault
    decoded = decode_characteristic("2A18", bytes(record), received_at=HUB)
    assert device_time_fault(decoded)
    (placed,) = clock.apply(decoded, HUB).readings
    assert placed.time_correction is not None
    assert placed.time_correction.fault == "device reports a time fault"


# -- the PHD IG coincident time stamp in FHIR ----------------------------------------------


def corrected_reading() -> Reading:
    return session(HUB - SLOW).place(hr(HUB - SLOW - timedelta(minutes=30)), received_at=HUB)


def test_correction_is_a_coincident_time_stamp_the_observation_derives_from() -> None:
    r = corrected_reading()
    obs = observation_from_reading(r, patient="p-1", device="dev-1", gateway="gw-1")
    Observation.model_validate(obs)
    assert obs["effectiveDateTime"] == "2026-03-10T08:30:00Z"  # the corrected time
    (cts,) = obs["contained"]
    assert obs["derivedFrom"] == [{"reference": f"#{cts['id']}"}]
    # the IG's own example has this shape: profile, MDC_ATTR_TIME_ABS, PHG time, PHD time
    example = json.loads(
        shared_path(
            "fhir", "phd-ig-examples", "phd-coincident-timestamp-observation.json"
        ).read_text()
    )
    assert cts["meta"] == example["meta"] == {"profile": [COINCIDENT_TIME_PROFILE]}
    assert cts["code"]["coding"][0]["code"] == example["code"]["coding"][0]["code"]
    assert cts["code"]["coding"][0]["code"] == MDC_ATTR_TIME_ABS
    assert cts["effectiveDateTime"] == "2026-03-10T09:00:00Z"
    assert cts["valueDateTime"] == "2026-03-10T06:47:00Z"
    assert cts["device"] == {"reference": "Device/dev-1"}
    assert cts["extension"][0]["valueReference"] == {"reference": "Device/gw-1"}
    assert any(n["text"].startswith("time-corrected: ") for n in obs["note"])
    back = facts_from_observation(orjson.loads(orjson.dumps(obs)))
    assert back.reading.at == r.at and back.reading.time_correction == r.time_correction
    # identity: the time as the device reported it, so a resend is one reading
    assert back.identifier == obs["id"] == reading_id("dev-1", r.reported_at, "heart_rate")


def test_a_reading_resent_after_the_clock_was_set_keeps_its_identity() -> None:
    stamp = HUB - SLOW - timedelta(minutes=30)
    first = session(HUB - SLOW).place(hr(stamp), received_at=HUB)
    later = HUB + timedelta(days=1)
    again = session(later).place(hr(stamp), received_at=later)  # clock now right
    assert first.at != again.at
    ids = {observation_from_reading(r, patient="p", device="d")["id"] for r in (first, again)}
    assert len(ids) == 1


def registry() -> Registry:
    return Registry(lambda p: p == "p-1", lambda d: "p-1" if d == "dev-1" else None)


def test_time_fault_follows_the_ig_and_is_never_stored_as_true() -> None:
    placed = session(UNSET_EPOCH + timedelta(hours=2)).place(
        hr(UNSET_EPOCH + timedelta(hours=1)), received_at=HUB
    )
    obs = observation_from_reading(placed, patient="p-1", device="dev-1", gateway="gw-1")
    Observation.model_validate(obs)
    (cts,) = obs["contained"]
    example = json.loads(
        shared_path(
            "fhir", "phd-ig-examples", "phd-coincident-timestamp-timefault.json"
        ).read_text()
    )
    assert "valueDateTime" not in cts
    assert cts["dataAbsentReason"]["text"] == example["dataAbsentReason"]["text"]
    assert cts["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    facts = facts_from_observation(orjson.loads(orjson.dumps(obs)))
    assert facts.reading.time_correction == placed.time_correction
    with pytest.raises(ValidationError) as info:
        validate(facts, now=HUB, registry=registry())
    assert info.value.code == "time-untrusted"
    assert "device clock not set (reads 2000-01-01T02:00:00Z)" in str(info.value)


def test_malformed_coincident_time_stamp_is_a_specific_error() -> None:
    obs = observation_from_reading(corrected_reading(), patient="p-1", device="dev-1")
    obs["contained"][0]["effectiveDateTime"] = "yesterday"
    with pytest.raises(ObservationError, match="not an ISO 8601 time"):
        facts_from_observation(obs)
    obs = observation_from_reading(corrected_reading(), patient="p-1", device="dev-1")
    obs["contained"][0]["valueDateTime"] = "2026-03-10T06:00:00Z"
    with pytest.raises(ObservationError, match="disagrees with the coincident time stamp"):
        facts_from_observation(obs)


def test_time_correction_rejects_inconsistent_records() -> None:
    with pytest.raises(ContractError, match="must name a fault"):
        TimeCorrection(None, HUB)
    with pytest.raises(ContractError, match="cannot correct"):
        TimeCorrection(HUB, HUB, corrected=True, fault="x")
    with pytest.raises(ContractError, match="no time zone"):
        TimeCorrection(datetime(2026, 1, 1), HUB)


# -- drifted and unset simulated devices through the gateway and ingest --------------------


def now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def stored(store: Store) -> list[dict[str, object]]:
    docs = [orjson.loads(o.resource) for o in store.observations(PATIENT)]
    for doc in docs:
        Observation.model_validate(doc)
    return docs


def assert_corrected(doc: dict[str, object], true_at: datetime, offset: timedelta) -> None:
    facts = facts_from_observation(doc)
    assert abs(facts.reading.at - true_at) < timedelta(seconds=1), (facts.reading.at, true_at)
    tc = facts.reading.time_correction
    assert tc is not None and tc.corrected and tc.offset is not None
    assert abs(tc.offset - offset) < timedelta(seconds=1)
    assert doc["derivedFrom"] == [{"reference": "#coincident-time"}]


async def run_cuff(cuff: BloodPressureCuff, tmp_path: Path, expected: int) -> Store:
    store = enrolled_store(tmp_path)
    air = SimulatedAir()
    air.add(cuff)
    async with ingest_api(store) as url:
        gateway = gateway_for(
            url, tmp_path, PairedDevice(DEVICE, PATIENT, address=ADDRESS), air=air
        )
        async with running(gateway.run()):
            await wait_for(
                lambda: store.count_observations() + len(store.list_quarantine()) >= expected,
                timeout=90,
            )
            await wait_for(lambda: gateway.outbox.pending() == 0, timeout=90)
        assert gateway.collector.rejected == 0
    return store


@pytest.mark.parametrize("drift", [-SLOW, THREE_YEARS], ids=["2h13m-slow", "3y-fast"])
async def test_drifted_cuff_yields_corrected_times_with_the_correction_recorded(
    drift: timedelta, tmp_path: Path
) -> None:
    taken = [now_s() - timedelta(hours=1), now_s() - timedelta(minutes=20)]
    cuff = BloodPressureCuff(
        ADDRESS,
        [BloodPressureReading(128 + n, 84, 99, 70, at) for n, at in enumerate(taken)],
        clock=DeviceClock(drift=drift),
    )
    store = await run_cuff(cuff, tmp_path, expected=4)  # two panels, two pulses
    docs = stored(store)
    assert len(docs) == 4 and store.list_quarantine() == []
    for doc in docs:
        facts = facts_from_observation(doc)
        true_at = min(taken, key=lambda t: abs(t - facts.reading.at))
        assert_corrected(doc, true_at, -drift)
        # the identity is the device's own stamp, not the corrected time
        assert facts.identifier == reading_id(DEVICE, true_at + drift, facts.reading.kind)
    store.close()


async def test_unset_cuff_clock_quarantines_its_readings_with_the_reason(tmp_path: Path) -> None:
    cuff = BloodPressureCuff(
        ADDRESS,
        [BloodPressureReading(131, 85, 100, 72, now_s() - timedelta(minutes=5))],
        clock=DeviceClock(unset=True),
    )
    store = await run_cuff(cuff, tmp_path, expected=2)
    assert store.count_observations() == 0  # never stored as if the time were true
    held = store.list_quarantine(reason_code="time-untrusted")
    assert len(held) == 2
    for item in held:
        assert "device clock not set (reads 2000-01-01T" in item.reason
        doc = orjson.loads(item.payload)  # kept, IG-shaped, for a nurse or a re-ingest
        Observation.model_validate(doc)
        assert doc["contained"][0]["dataAbsentReason"]["text"] == "Sensor Time Fault"
        assert doc["effectiveDateTime"].startswith("1999-12-31T") or doc[
            "effectiveDateTime"
        ].startswith("2000-01-01T")
    store.close()


def glucose_record(sequence: int, stamp: datetime) -> bytes:
    data = bytearray(GLUCORA_RECORD)
    data[1:3] = sequence.to_bytes(2, "little")
    data[3:10] = encode_date_time(DateTime.from_datetime(stamp))
    return bytes(data)


def by_identifier(store: Store, reported: Sequence[datetime]) -> list[dict[str, object]]:
    out = []
    for at in reported:
        row = store.get_observation(reading_id(DEVICE, at, "glucose"))
        assert row is not None, f"record stamped {at} not stored"
        out.append(orjson.loads(row.resource))
    return out


async def test_records_stored_before_the_hub_set_the_clock_get_the_old_offset(
    tmp_path: Path,
) -> None:
    meter = ProfilePeripheral(
        REGISTRY.get("glucora-gm300"), ADDRESS, clock=DeviceClock(drift=-SLOW)
    )
    taken = [now_s() - timedelta(minutes=50), now_s() - timedelta(minutes=20)]
    stamps = [meter.device_clock.at(t) for t in taken]
    for n, stamp in enumerate(stamps, start=8):
        meter.add_record(glucose_record(n, stamp))
    store = enrolled_store(tmp_path)
    paired = PairedDevice(DEVICE, PATIENT, address=ADDRESS)
    air = SimulatedAir()
    air.add(meter)
    async with ingest_api(store) as url:
        gateway = gateway_for(url, tmp_path, paired, air=air)
        async with running(gateway.run()):
            await wait_for(lambda: store.count_observations() == 3, timeout=90)
            # the hub set the clock in that session, after reading it
            assert meter.clock_set is not None
            assert abs(meter.device_clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
            for doc, true_at in zip(by_identifier(store, stamps), taken, strict=True):
                assert_corrected(doc, true_at, SLOW)
            # a record taken now, on the clock the hub set: no correction next session
            later = datetime.now(UTC)  # not rounded down: the clock may have been set this second
            stamp = meter.device_clock.at(later).replace(microsecond=0)  # Date Time: seconds
            meter.add_record(glucose_record(10, stamp))
            await wait_for(lambda: store.count_observations() == 4, timeout=90)
            await wait_for(lambda: gateway.outbox.pending() == 0, timeout=90)
        assert gateway.collector.rejected == 0
    (doc,) = by_identifier(store, [stamp])
    facts = facts_from_observation(doc)
    assert abs(facts.reading.at - later) < timedelta(seconds=1)
    tc = facts.reading.time_correction
    assert tc is not None and tc.trusted and not tc.corrected
    assert tc.offset is not None and abs(tc.offset) < POLICY.tolerance
    store.close()
