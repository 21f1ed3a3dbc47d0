"""One contract suite for every store: SQLite (embedded) and TimescaleDB (production).

Each test runs against both through ``ingest.stores.open_store(url)``; the data are real
FHIR Observations built by ``wardwatch.fhir.observation_from_reading``. A few tests at the
end check what only TimescaleDB has (hypertable, edition detection, surviving a restart).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest.errors import StoreError
from ingest.stores import open_store
from tests.support.services import TimescaleServer
from wardwatch.fhir import observation_from_reading, reading_id
from wardwatch.reading import Component, Reading
from wardwatch.store import (
    Alert,
    CareTeam,
    GatewayState,
    Patient,
    QuarantineItem,
    Store,
    StoredObservation,
)

T0 = datetime(2024, 3, 10, 8, 0, tzinfo=UTC)
RECEIVED = datetime(2024, 3, 10, 9, 30, 15, 250_000, tzinfo=UTC)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def ts_store(pg_dsn: str) -> Iterator[Any]:
    """The TimescaleDB store (typed Any: it has methods beyond the protocol)."""
    opened = open_store(pg_dsn)
    try:
        yield opened
    finally:
        opened.close()


# -- realistic observations --------------------------------------------------------------


def observation(
    reading: Reading,
    *,
    patient: str = "pat-001",
    device: str = "omron-bp7450-1",
    gateway: str | None = "hub-0001",
    received_at: datetime = RECEIVED,
) -> StoredObservation:
    """A StoredObservation as ingest makes it: flattened columns plus the FHIR document."""
    doc = observation_from_reading(reading, patient=patient, device=device, gateway=gateway)
    # Indented, non-ASCII and in the builder's key order: a store that re-serialises the
    # JSON (jsonb) would not give these bytes back.
    resource = json.dumps(doc, indent=2, ensure_ascii=False).encode()
    return StoredObservation(
        identifier=reading_id(device, reading.at, reading.kind),
        patient=patient,
        device=device,
        kind=reading.kind,
        at=reading.at,
        value=reading.value,
        unit=reading.unit,
        components={c.kind: c.value for c in reading.components if c.value is not None},
        resource=resource,
        received_at=received_at,
        gateway=gateway,
    )


def heart_rate(at: datetime, bpm: float, **kw: Any) -> StoredObservation:
    note = (("context", "après la marche, 3e étage"),)
    return observation(Reading("heart_rate", at, bpm, "/min", extra=note), **kw)


def spo2(at: datetime, percent: float, **kw: Any) -> StoredObservation:
    kw.setdefault("device", "nonin-3230-7")
    return observation(Reading("spo2", at, percent, "%"), **kw)


def blood_pressure(
    at: datetime, sys: float, dia: float, mean: float, **kw: Any
) -> StoredObservation:
    comps = (
        Component("systolic", sys, "mm[Hg]"),
        Component("diastolic", dia, "mm[Hg]"),
        Component("mean_arterial_pressure", mean, "mm[Hg]"),
    )
    return observation(Reading("blood_pressure", at, components=comps), **kw)


def weight_absent(at: datetime, **kw: Any) -> StoredObservation:
    kw.setdefault("device", "withings-body-2")
    return observation(Reading("body_weight", at, data_absent="error"), **kw)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def series(patient: str = "pat-001", n: int = 6) -> list[StoredObservation]:
    """Heart rate every 10 min, SpO2 every 10 min offset by 5, one BP panel.

    Each patient has their own devices (identifiers derive from device, time and kind).
    """
    cuff, oximeter = f"omron-bp7450-{patient}", f"nonin-3230-{patient}"
    rows = [
        heart_rate(T0 + minutes(10 * i), 60 + i, patient=patient, device=cuff) for i in range(n)
    ]
    rows += [
        spo2(T0 + minutes(10 * i + 5), 95 + i % 4, patient=patient, device=oximeter)
        for i in range(n)
    ]
    rows.append(blood_pressure(T0 + minutes(33), 128, 84, 99, patient=patient, device=cuff))
    return rows


def ids(rows: Sequence[StoredObservation]) -> list[str]:
    return [r.identifier for r in rows]


def in_time_order(rows: Sequence[StoredObservation]) -> list[StoredObservation]:
    return sorted(rows, key=lambda r: (r.at, r.identifier))


def assert_utc(at: datetime | None) -> None:
    assert at is not None
    assert at.tzinfo is not None
    assert at.utcoffset() == timedelta(0)


# -- schema ------------------------------------------------------------------------------


def test_migrate_twice_is_harmless(store: Store) -> None:
    rows = series()
    assert store.write_observations(rows) == len(rows)
    store.upsert_care_team(CareTeam("team-a", "Cardiology A"))
    store.migrate()
    store.migrate()
    assert store.count_observations() == len(rows)
    assert store.get_care_team("team-a") == CareTeam("team-a", "Cardiology A")


def test_reopening_an_existing_store_keeps_data(store_url: str) -> None:
    first = open_store(store_url)
    try:
        first.write_observations(series())
    finally:
        first.close()
    again = open_store(store_url)
    try:
        assert again.count_observations() == len(series())
    finally:
        again.close()


# -- registry ----------------------------------------------------------------------------


def test_care_team_round_trip_and_update(store: Store) -> None:
    assert store.get_care_team("team-a") is None
    team = CareTeam("team-a", "Cardiology A", ("mailto://ward-a@example.org", "json://hook"))
    store.upsert_care_team(team)
    assert store.get_care_team("team-a") == team
    changed = CareTeam("team-a", "Cardiology A (nights)", ())
    store.upsert_care_team(changed)
    assert store.get_care_team("team-a") == changed


def test_patients_round_trip_update_and_list(store: Store) -> None:
    store.upsert_care_team(CareTeam("team-a", "A"))
    store.upsert_care_team(CareTeam("team-b", "B"))
    assert store.get_patient("pat-002") is None
    assert store.list_patients() == []
    two = Patient("pat-002", "Synthetic Two", "team-a", {"spo2_low": 92.0, "hr_high": 120})
    one = Patient("pat-001", "Synthetic Één")
    store.upsert_patient(two)
    store.upsert_patient(one)
    assert store.get_patient("pat-002") == two
    assert store.get_patient("pat-001") == one
    assert store.list_patients() == [one, two]
    moved = Patient("pat-002", "Synthetic Two", "team-b", {"spo2_low": 90.5})
    store.upsert_patient(moved)
    assert store.get_patient("pat-002") == moved
    assert store.list_patients() == [one, moved]


def test_device_pairing_round_trip_and_replace(store: Store) -> None:
    store.upsert_patient(Patient("pat-001", "One"))
    store.upsert_patient(Patient("pat-002", "Two"))
    assert store.device_patient("omron-bp7450-1") is None
    store.pair_device("omron-bp7450-1", "pat-001")
    assert store.device_patient("omron-bp7450-1") == "pat-001"
    store.pair_device("omron-bp7450-1", "pat-002")
    assert store.device_patient("omron-bp7450-1") == "pat-002"


def test_pairing_to_an_unknown_patient_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.pair_device("omron-bp7450-1", "pat-nobody")
    assert store.device_patient("omron-bp7450-1") is None


# -- observations: writes ----------------------------------------------------------------


def test_write_returns_the_number_of_new_rows(store: Store) -> None:
    rows = series()
    assert store.write_observations([]) == 0
    assert store.write_observations(rows[:4]) == 4
    assert store.write_observations(rows) == len(rows) - 4
    assert store.write_observations(rows) == 0
    assert store.count_observations() == len(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_duplicates_within_and_across_batches_are_stored_once(store: Store, seed: int) -> None:
    rows = series()
    rng = random.Random(seed)
    batch = rows * 3  # every reading three times in one batch
    rng.shuffle(batch)
    assert store.write_observations(batch) == len(rows)
    again = rows[3:] + rows[:3] + rows[5:7]
    rng.shuffle(again)
    assert store.write_observations(again) == 0
    assert store.count_observations() == len(rows)
    assert ids(store.observations("pat-001")) == ids(in_time_order(rows))


def test_a_reading_resent_later_is_the_same_row(store: Store) -> None:
    first = heart_rate(T0, 72)
    resent = replace(heart_rate(T0, 72), received_at=RECEIVED + timedelta(hours=2))
    assert first.identifier == resent.identifier
    assert store.write_observations([first]) == 1
    assert store.write_observations([resent]) == 0
    assert store.get_observation(first.identifier) == first


def test_first_of_duplicates_in_a_batch_wins(store: Store) -> None:
    first = heart_rate(T0, 72)
    later = replace(first, received_at=RECEIVED + timedelta(seconds=5))
    assert store.write_observations([first, later]) == 1
    assert store.get_observation(first.identifier) == first


def test_mixed_batch_of_new_and_known_rows(store: Store) -> None:
    rows = series()
    store.write_observations(rows[::2])
    assert store.write_observations(list(reversed(rows))) == len(rows[1::2])
    assert store.count_observations() == len(rows)


def test_large_batch(store: Store) -> None:
    rows = [heart_rate(T0 + timedelta(seconds=15 * i), 50 + i % 70) for i in range(2000)]
    assert store.write_observations(rows) == 2000
    assert store.write_observations(rows[1000:] + [heart_rate(T0 - minutes(1), 70)]) == 1
    assert store.count_observations() == 2001


# -- observations: reads -----------------------------------------------------------------


def test_get_observation_round_trips_every_field(store: Store) -> None:
    rows = [
        heart_rate(T0 + timedelta(milliseconds=125), 71.5),
        blood_pressure(T0 + minutes(1), 141, 92, 108, gateway=None),
        weight_absent(T0 + minutes(2)),
    ]
    store.write_observations(rows)
    assert store.get_observation("no-such-reading") is None
    for row in rows:
        got = store.get_observation(row.identifier)
        assert got == row
        assert got is not None
        assert_utc(got.at)
        assert_utc(got.received_at)


def test_resource_bytes_round_trip_exactly(store: Store) -> None:
    row = heart_rate(T0, 64)
    odd = replace(
        spo2(T0, 97),
        # valid JSON, but with spacing, key order and escapes jsonb would normalise
        resource=b'{ "resourceType" : "Observation",\n\t"z": 1.50, "a": "\\u00e9\xc3\xa9" }',
    )
    store.write_observations([row, odd])
    got = store.get_observation(row.identifier)
    assert got is not None
    assert got.resource == row.resource
    assert isinstance(got.resource, bytes)
    assert json.loads(got.resource)["note"][0]["text"].endswith("3e étage")
    got_odd = store.get_observation(odd.identifier)
    assert got_odd is not None
    assert got_odd.resource == odd.resource


def test_components_round_trip(store: Store) -> None:
    row = blood_pressure(T0, 118.5, 76, 90.25)
    store.write_observations([row])
    got = store.get_observation(row.identifier)
    assert got is not None
    assert dict(got.components) == {
        "systolic": 118.5,
        "diastolic": 76.0,
        "mean_arterial_pressure": 90.25,
    }
    assert got.value is None
    assert got.unit is None
    plain = store.observations("pat-001", kind="blood_pressure")
    assert [dict(p.components) for p in plain] == [dict(row.components)]


def test_observations_are_in_time_order(store: Store) -> None:
    rows = series()
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    store.write_observations(shuffled[:5])
    store.write_observations(shuffled[5:])
    got = store.observations("pat-001")
    assert got == in_time_order(rows)
    assert [g.at for g in got] == sorted(g.at for g in got)


def test_observations_filter_by_patient_kind_and_half_open_range(store: Store) -> None:
    mine = series("pat-001")
    theirs = series("pat-002")
    store.write_observations(mine + theirs)
    hr = [r for r in mine if r.kind == "heart_rate"]

    assert ids(store.observations("pat-001")) == ids(in_time_order(mine))
    assert ids(store.observations("pat-002")) == ids(in_time_order(theirs))
    assert store.observations("pat-nobody") == []
    assert ids(store.observations("pat-001", kind="heart_rate")) == ids(hr)
    assert store.observations("pat-001", kind="glucose") == []

    # [start, end): a reading exactly at start is in, one exactly at end is out
    start, end = hr[1].at, hr[4].at
    got = store.observations("pat-001", kind="heart_rate", start=start, end=end)
    assert ids(got) == ids(hr[1:4])
    assert ids(store.observations("pat-001", kind="heart_rate", start=start)) == ids(hr[1:])
    assert ids(store.observations("pat-001", kind="heart_rate", end=end)) == ids(hr[:4])
    everything = store.observations("pat-001", start=start, end=end)
    assert ids(everything) == ids([r for r in in_time_order(mine) if start <= r.at < end])
    assert store.observations("pat-001", start=end, end=start) == []

    # limit keeps the earliest
    assert ids(store.observations("pat-001", kind="heart_rate", limit=2)) == ids(hr[:2])
    assert store.observations("pat-001", limit=0) == []


def test_time_zones_are_normalised_to_utc(store: Store) -> None:
    paris = timezone(timedelta(hours=1))
    local = T0.astimezone(paris)
    row = replace(heart_rate(local, 80), received_at=RECEIVED.astimezone(paris))
    store.write_observations([row])
    got = store.get_observation(row.identifier)
    assert got is not None
    assert got.at == T0
    assert_utc(got.at)
    assert_utc(got.received_at)
    # filter bounds in another zone mean the same instants
    window = store.observations("pat-001", start=local, end=local + timedelta(seconds=1))
    assert ids(window) == [row.identifier]


def test_count_observations(store: Store) -> None:
    assert store.count_observations() == 0
    store.write_observations(series("pat-001") + series("pat-002", n=2))
    assert store.count_observations() == len(series("pat-001")) + len(series("pat-002", n=2))


# -- quarantine --------------------------------------------------------------------------


def test_quarantine_round_trip_in_insertion_order(store: Store) -> None:
    assert store.list_quarantine() == []
    store.quarantine([])
    items = [
        QuarantineItem(
            RECEIVED, "mqtt:wardwatch/v1/gw/hub-0001/obs", "json", "not JSON", b"\x00\xffnot json"
        ),
        QuarantineItem(
            RECEIVED - minutes(5),  # ordered by arrival (id), not by this time
            "http:/fhir/Bundle",
            "unit",
            "unit 'mmHg' is not UCUM",
            json.dumps({"resourceType": "Bundle"}).encode(),
        ),
    ]
    store.quarantine(items[:1])
    store.quarantine(items[1:])
    store.quarantine([replace(items[0], reason_code="again")])
    got = store.list_quarantine()
    assert [g.id for g in got] == sorted(g.id for g in got if g.id is not None)
    assert len({g.id for g in got}) == 3
    assert [replace(g, id=None) for g in got] == [*items, replace(items[0], reason_code="again")]
    for g in got:
        assert_utc(g.received_at)


# -- alerts ------------------------------------------------------------------------------


def alert(patient: str = "pat-001", rule: str = "spo2_low", minute: int = 0) -> Alert:
    return Alert(
        patient=patient,
        rule=rule,
        kind="spo2",
        severity="urgent",
        opened_at=T0 + minutes(minute),
        message="SpO2 88 % below 92 %",
        observations=(reading_id("nonin-3230-7", T0, "spo2"), "second-reading"),
    )


def test_alert_insert_find_update(store: Store) -> None:
    assert store.find_open_alert("pat-001", "spo2_low") is None
    stored = store.insert_alert(alert())
    assert stored.id is not None
    assert stored == replace(alert(), id=stored.id)
    assert store.find_open_alert("pat-001", "spo2_low") == stored
    assert store.find_open_alert("pat-001", "hr_high") is None
    assert store.find_open_alert("pat-002", "spo2_low") is None

    acked = replace(
        stored,
        status="acknowledged",
        acknowledged_at=T0 + minutes(3),
        acknowledged_by="nurse-7",
        updated_at=T0 + minutes(3),
        observations=(*stored.observations, "third-reading"),
    )
    store.update_alert(acked)
    assert store.find_open_alert("pat-001", "spo2_low") == acked
    found = store.find_open_alert("pat-001", "spo2_low")
    assert found is not None
    assert_utc(found.acknowledged_at)
    assert_utc(found.updated_at)
    assert_utc(found.opened_at)

    with pytest.raises(ValueError, match="id"):
        store.update_alert(alert())


def test_alert_without_observations(store: Store) -> None:
    stored = store.insert_alert(replace(alert(), observations=()))
    assert store.list_alerts() == [stored]
    assert stored.observations == ()


def test_a_second_unresolved_alert_for_the_same_rule_is_refused(store: Store) -> None:
    first = store.insert_alert(alert())
    with pytest.raises(StoreError):
        store.insert_alert(alert(minute=5))
    # still refused once acknowledged: only resolved alerts make room
    store.update_alert(replace(first, status="acknowledged", acknowledged_by="nurse-7"))
    with pytest.raises(StoreError):
        store.insert_alert(alert(minute=6))
    assert store.list_alerts() == [replace(first, status="acknowledged", acknowledged_by="nurse-7")]
    # the store is still usable after the refusal
    other = store.insert_alert(alert(rule="hr_high", minute=7))
    assert store.find_open_alert("pat-001", "hr_high") == other


def test_after_resolve_a_new_alert_can_be_opened(store: Store) -> None:
    first = store.insert_alert(alert())
    resolved = replace(
        first, status="resolved", resolved_at=T0 + minutes(20), resolved_by="detector"
    )
    store.update_alert(resolved)
    assert store.find_open_alert("pat-001", "spo2_low") is None
    second = store.insert_alert(alert(minute=30))
    assert second.id is not None
    assert first.id is not None
    assert second.id > first.id
    assert store.find_open_alert("pat-001", "spo2_low") == second
    assert store.list_alerts(status="resolved") == [resolved]
    # re-opening the resolved one would make two unresolved alerts
    with pytest.raises(StoreError):
        store.update_alert(replace(resolved, status="open"))


def test_list_alerts_filters_and_order(store: Store) -> None:
    late = store.insert_alert(alert("pat-001", "spo2_low", minute=50))
    early = store.insert_alert(alert("pat-001", "hr_high", minute=10))
    other = store.insert_alert(alert("pat-002", "spo2_low", minute=30))
    resolved = replace(early, status="resolved", resolved_at=T0 + minutes(60))
    store.update_alert(resolved)

    assert store.list_alerts() == [resolved, other, late]
    assert store.list_alerts(patient="pat-001") == [resolved, late]
    assert store.list_alerts(patient="pat-002") == [other]
    assert store.list_alerts(status="open") == [other, late]
    assert store.list_alerts(status="resolved") == [resolved]
    assert store.list_alerts(patient="pat-002", status="resolved") == []
    assert store.list_alerts(patient="pat-nobody") == []


# -- TimescaleDB only --------------------------------------------------------------------

pg = pytest.mark.postgres


def _scalar(dsn: str, query: Any, args: Sequence[Any] = ()) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, args).fetchone()
        assert row is not None
        return row[0]


@pg
def test_observations_is_a_hypertable(ts_store: Any, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT hypertable_name, d.column_name FROM timescaledb_information.hypertables h "
            "JOIN timescaledb_information.dimensions d USING (hypertable_schema, hypertable_name)"
        ).fetchall()
    assert rows == [("observations", "at")]
    # readings a month apart land in different chunks
    ts_store.write_observations([heart_rate(T0, 70), heart_rate(T0 + timedelta(days=30), 71)])
    chunks = _scalar(
        pg_dsn,
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = %s",
        ("observations",),
    )
    assert chunks == 2


@pg
def test_capabilities_report_the_apache_edition(ts_store: Any) -> None:
    caps = ts_store.capabilities()
    assert caps["license"] == "apache"
    assert str(caps["timescaledb_version"]).startswith("2.")
    assert caps["hypertables"] is True
    assert caps["compression"] is False
    assert caps["continuous_aggregates"] is False
    assert caps["retention_policies"] is False


@pg
def test_migrations_are_recorded(ts_store: Any, pg_dsn: str) -> None:
    from ingest.stores.timescale import migrations

    known = [m.version for m in migrations()]
    assert known[0] == 1
    ts_store.migrate()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert [v for v, _ in rows] == known
    assert all(at is not None for _, at in rows)
    assert ts_store.schema_version() == known[-1]


@pg
def test_concurrent_migrations_do_not_race(pg_dsn: str) -> None:
    errors: list[BaseException] = []
    stores: list[Store] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        try:
            barrier.wait()
            stores.append(open_store(pg_dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert errors == []
        assert len(stores) == 6
        from ingest.stores.timescale import migrations

        count = _scalar(pg_dsn, "SELECT count(*) FROM schema_migrations")
        assert count == len(migrations())
        assert stores[0].write_observations(series()) == len(series())
        assert stores[-1].count_observations() == len(series())
    finally:
        for s in stores:
            s.close()


@pg
def test_concurrent_writers_store_each_reading_once(pg_dsn: str) -> None:
    rows = [heart_rate(T0 + timedelta(seconds=30 * i), 60 + i % 50) for i in range(600)]
    stores = [open_store(pg_dsn) for _ in range(4)]
    counts: list[int] = []
    lock = threading.Lock()

    def write(s: Store, seed: int) -> None:
        mine = rows[:]
        random.Random(seed).shuffle(mine)
        n = sum(s.write_observations(mine[i : i + 100]) for i in range(0, len(mine), 100))
        with lock:
            counts.append(n)

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(stores)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sum(counts) == len(rows)
        assert stores[0].count_observations() == len(rows)
    finally:
        for s in stores:
            s.close()


@pg
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_store_survives_a_database_restart(
    ts_store: Any, timescale: TimescaleServer, mode: str
) -> None:
    ts_store.write_observations(series())
    ts_store.upsert_patient(Patient("pat-001", "One"))
    try:
        timescale.stop(mode)  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="cannot connect"):
            ts_store.count_observations()
        with pytest.raises(StoreError, match="cannot connect"):
            ts_store.write_observations([heart_rate(T0 - minutes(1), 70)])
    finally:
        timescale.start()
    # the first call after the outage reconnects by itself
    assert ts_store.count_observations() == len(series())
    assert ts_store.write_observations([heart_rate(T0 - minutes(1), 70)]) == 1
    assert ts_store.get_patient("pat-001") == Patient("pat-001", "One")


@pg
def test_reconnect_is_transparent_when_the_server_comes_back_between_calls(
    ts_store: Any, timescale: TimescaleServer
) -> None:
    ts_store.write_observations(series())
    try:
        timescale.stop("fast")
    finally:
        timescale.start()
    # the connection the store holds is dead; the call reconnects and retries once,
    # and the temporary staging table is recreated on the new session
    assert ts_store.write_observations([heart_rate(T0 - minutes(2), 71)]) == 1
    assert ts_store.count_observations() == len(series()) + 1
    stored = ts_store.insert_alert(alert())
    assert ts_store.find_open_alert("pat-001", "spo2_low") == stored


@pg
def test_unreachable_database_raises_store_error(timescale: TimescaleServer) -> None:
    from tests.support.services import free_port

    with pytest.raises(StoreError, match="cannot connect"):
        open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/wardwatch")


# -- search (FHIR read API) --------------------------------------------------------------
# (imported here: this section was appended to the suite)
from wardwatch.store import AuditEvent, ObservationQuery  # noqa: E402


def _all_pages(store: Store, query: ObservationQuery, size: int) -> list[StoredObservation]:
    """Follow the (at, identifier) cursor page by page until a short page."""
    got: list[StoredObservation] = []
    after: tuple[datetime, str] | None = None
    for _ in range(1000):  # a cursor that does not advance must fail, not hang
        page = store.search_observations(query, limit=size, after=after)
        got += page
        if len(page) < size:
            return got
        after = (page[-1].at, page[-1].identifier)
    raise AssertionError("paging does not end")


def test_search_pages_return_every_match_once_in_order(store: Store) -> None:
    rows = series("pat-001", n=7) + series("pat-002", n=3)
    store.write_observations(rows)
    mine = in_time_order([r for r in rows if r.patient == "pat-001"])
    for size in (1, 2, 5, 100):
        assert ids(_all_pages(store, ObservationQuery("pat-001"), size)) == ids(mine)
    hr = ObservationQuery("pat-001", kinds=("heart_rate",))
    assert ids(_all_pages(store, hr, 3)) == ids([r for r in mine if r.kind == "heart_rate"])
    two = ObservationQuery("pat-001", kinds=("blood_pressure", "spo2"))
    expected = [r for r in mine if r.kind in ("blood_pressure", "spo2")]
    assert ids(_all_pages(store, two, 2)) == ids(expected)
    assert store.count_matching(two) == len(expected)
    assert store.count_matching(ObservationQuery("pat-003")) == 0
    assert store.search_observations(ObservationQuery("pat-003"), limit=10) == []
    assert store.search_observations(ObservationQuery("pat-001"), limit=0) == []


def test_search_paging_breaks_ties_on_equal_times(store: Store) -> None:
    # twelve devices measuring at the same instant: the cursor must not skip or repeat
    rows = [heart_rate(T0, 60 + i, device=f"strap-{i:02d}") for i in range(12)]
    rows += [heart_rate(T0 + minutes(1), 70, device="strap-00")]
    store.write_observations(rows)
    got = _all_pages(store, ObservationQuery("pat-001"), 5)
    assert ids(got) == ids(in_time_order(rows))
    assert len(set(ids(got))) == len(rows)


def test_search_time_bounds_inclusive_and_exclusive(store: Store) -> None:
    rows = [heart_rate(T0 + minutes(10 * i), 60 + i) for i in range(5)]
    store.write_observations(rows)
    start, end = T0 + minutes(10), T0 + minutes(30)

    def between(start_inclusive: bool, end_inclusive: bool) -> list[str]:
        q = ObservationQuery("pat-001", (), start, start_inclusive, end, end_inclusive)
        assert store.count_matching(q) == len(store.search_observations(q, limit=50))
        return ids(store.search_observations(q, limit=50))

    assert between(True, False) == ids(rows[1:3])
    assert between(True, True) == ids(rows[1:4])
    assert between(False, False) == ids(rows[2:3])
    assert between(False, True) == ids(rows[2:4])
    # other time zones name the same instants
    paris = timezone(timedelta(hours=1))
    q = ObservationQuery("pat-001", start=start.astimezone(paris), end=end.astimezone(paris))
    assert ids(store.search_observations(q, limit=50)) == ids(rows[1:3])
    only_start = ObservationQuery("pat-001", start=T0 + minutes(30))
    assert ids(store.search_observations(only_start, limit=50)) == ids(rows[3:])


# -- quarantine release and retry ------------------------------------------------------------


def test_quarantine_release_keeps_the_record_and_filters(store: Store) -> None:
    store.quarantine(
        [
            QuarantineItem(RECEIVED, "http:/fhir/Bundle", "unknown-patient", "not enrolled", b"1"),
            QuarantineItem(RECEIVED, "http:/fhir/Bundle", "unknown-device", "not paired", b"2"),
            QuarantineItem(RECEIVED, "mqtt:x", "unknown-patient", "not enrolled", b"3"),
        ]
    )
    first, second, third = (i.id for i in store.list_quarantine())
    assert first is not None and second is not None and third is not None
    released_at = RECEIVED + timedelta(days=1)
    assert store.release_quarantine([first, third], released_at) == 2
    assert store.release_quarantine([first], released_at + minutes(1)) == 0  # already released
    assert store.release_quarantine([], released_at) == 0
    everything = store.list_quarantine()
    assert [i.id for i in everything] == [first, second, third]
    assert [i.payload for i in everything] == [b"1", b"2", b"3"]  # evidence kept
    assert everything[0].released_at == released_at
    assert_utc(everything[0].released_at)
    assert [i.id for i in store.list_quarantine(state="held")] == [second]
    assert [i.id for i in store.list_quarantine(state="released")] == [first, third]
    assert [i.id for i in store.list_quarantine(reason_code="unknown-patient")] == [first, third]
    assert [i.id for i in store.list_quarantine(ids=[third, second])] == [second, third]
    assert store.list_quarantine(ids=[]) == []
    assert store.list_quarantine(state="held", reason_code="unknown-patient") == []

    retried = RECEIVED + timedelta(days=2)
    store.requarantine(second, "device-not-paired", "paired to someone else", retried)
    [again] = store.list_quarantine(ids=[second])
    assert (again.reason_code, again.reason, again.retried_at) == (
        "device-not-paired",
        "paired to someone else",
        retried,
    )
    assert again.released_at is None
    store.requarantine(first, "other", "ignored: a released item is not re-quarantined", retried)
    assert store.list_quarantine(ids=[first])[0].reason_code == "unknown-patient"


# -- audit trail ------------------------------------------------------------------------------


def test_audit_events_round_trip_and_filter(store: Store) -> None:
    events = [
        AuditEvent(RECEIVED, "read-service", "search", "success", "pat-001",
                   "Observation?patient=pat-001", "127.0.0.1", "3 entries"),
        AuditEvent(RECEIVED + minutes(1), "anonymous", "read", "refused", None,
                   "Observation/x", "10.0.0.8", "a valid read bearer token is required"),
        AuditEvent(RECEIVED + minutes(2), "cli:ops", "reingest", "success", "pat-002",
                   "Quarantine/4"),
    ]  # fmt: skip
    stored = [store.record_audit(e) for e in events]
    assert all(s.id is not None for s in stored)
    assert len({s.id for s in stored}) == 3
    got = store.list_audit()
    assert got == stored
    assert [replace(g, id=None) for g in got] == events
    for g in got:
        assert_utc(g.at)
    assert store.list_audit(patient="pat-001") == stored[:1]
    assert store.list_audit(principal="anonymous") == stored[1:2]
    assert store.list_audit(action="reingest") == stored[2:]
    assert store.list_audit(since=RECEIVED + minutes(1)) == stored[1:]
    assert store.list_audit(limit=2) == stored[:2]


def _raw_execute(store_url: str, sql: str) -> None:
    if store_url.startswith("sqlite:"):
        import sqlite3

        db = sqlite3.connect(store_url.removeprefix("sqlite:"))
        try:
            db.execute(sql)
            db.commit()
        finally:
            db.close()
    else:
        with psycopg.connect(store_url) as conn:
            conn.execute(sql.encode())


def test_audit_events_are_append_only_in_the_database(store: Store, store_url: str) -> None:
    store.record_audit(AuditEvent(RECEIVED, "read-service", "read", "success", "pat-001"))
    for sql in ("UPDATE audit_events SET principal = 'someone else'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"):
            _raw_execute(store_url, sql)
    assert [e.principal for e in store.list_audit()] == ["read-service"]


def test_sqlite_store_created_before_the_audit_schema_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    from ingest.stores import sqlite as sqlite_store

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(sqlite_store._MIGRATIONS[0])
    db.execute("PRAGMA user_version=1")
    db.execute(
        "INSERT INTO quarantine (received_at, source, reason_code, reason, payload) "
        "VALUES ('2024-03-10T09:30:15.250000+00:00', 'mqtt:x', 'unknown-patient', 'r', x'7b7d')"
    )
    db.commit()
    db.close()
    upgraded = open_store(f"sqlite:{path}")
    try:
        [item] = upgraded.list_quarantine(state="held")
        assert (item.reason_code, item.payload) == ("unknown-patient", b"{}")
        assert item.released_at is None
        upgraded.record_audit(AuditEvent(RECEIVED, "cli:ops", "reingest", "refused"))
        assert len(upgraded.list_audit()) == 1
        upgraded.migrate()  # idempotent at the new version
    finally:
        upgraded.close()


@pg
def test_search_uses_the_patient_kind_at_index(ts_store: Any, pg_dsn: str) -> None:
    from ingest.stores.timescale import search_sql

    ts_store.write_observations(series("pat-001", n=30))
    after = (T0 + minutes(20), "00000000-0000-0000-0000-000000000000")
    for kinds, indexes in (
        (("heart_rate",), ("observations_patient_kind_at",)),
        (("heart_rate", "spo2"), ("observations_patient_kind_at", "observations_patient_at")),
        ((), ("observations_patient_at",)),
    ):
        query = ObservationQuery("pat-001", kinds, T0, True, T0 + timedelta(days=1), False)
        sql, args = search_sql(query, 10, after)
        with psycopg.connect(pg_dsn) as conn:
            conn.execute("SET enable_seqscan = off")  # a 30-row table would be scanned anyway
            plan = "\n".join(r[0] for r in conn.execute(b"EXPLAIN " + sql.encode(), args))
        assert "Seq Scan" not in plan, plan
        assert any(f"chunk_{index} on" in plan for index in indexes), plan
        # patient and the cursor's time are index conditions, not filters over every row
        cond = next(line for line in plan.splitlines() if "Index Cond" in line)
        assert "patient = " in cond and "08:20:00" in cond, plan


# -- gateways ------------------------------------------------------------------------------


def gw_status(
    gateway: str, status: str, at: datetime, *, queued: int | None = 0, **dropped: int
) -> GatewayState:
    return GatewayState(
        id=gateway,
        status="online" if status == "online" else "offline",
        status_at=at,
        updated_at=at + timedelta(milliseconds=40),
        queued=queued,
        dropped=dropped,
    )


def test_gateway_status_round_trip_and_list_order(store: Store) -> None:
    assert store.get_gateway("hub-0002") is None and store.list_gateways() == []
    online = gw_status("hub-0002", "online", RECEIVED, queued=17, thinned=3, refused=1)
    assert store.record_gateway_status(online) is True
    assert store.record_gateway_status(gw_status("HUB-0001", "offline", T0, queued=None))
    assert store.get_gateway("hub-0002") == online
    assert [g.id for g in store.list_gateways()] == ["HUB-0001", "hub-0002"]  # byte order
    offline = store.get_gateway("HUB-0001")
    assert offline is not None and offline.status == "offline" and offline.queued is None
    assert offline.dropped == {} and offline.last_bundle_at is None


def test_an_older_gateway_status_does_not_overwrite_a_newer_one(store: Store) -> None:
    newer = gw_status("hub-0001", "offline", RECEIVED, queued=None)
    store.record_gateway_status(newer)
    older = gw_status("hub-0001", "online", RECEIVED - timedelta(microseconds=1), queued=5)
    assert store.record_gateway_status(older) is False
    assert store.get_gateway("hub-0001") == newer
    # the same status again (a retained message redelivered) is harmless
    assert store.record_gateway_status(newer) is True
    assert store.get_gateway("hub-0001") == newer
    later = gw_status("hub-0001", "online", RECEIVED + minutes(1), queued=0, thinned=2)
    assert store.record_gateway_status(later) is True
    assert store.get_gateway("hub-0001") == later


def test_gateway_status_times_are_utc(store: Store) -> None:
    paris = timezone(timedelta(hours=1))
    store.record_gateway_status(gw_status("hub-0001", "online", RECEIVED.astimezone(paris)))
    state = store.get_gateway("hub-0001")
    assert state is not None and state.status_at == RECEIVED and state.status_at.tzinfo == UTC
    # an older time written in another zone is still older
    earlier = gw_status("hub-0001", "offline", (RECEIVED - minutes(1)).astimezone(paris))
    assert store.record_gateway_status(earlier) is False


def test_last_bundle_only_moves_forward_and_keeps_the_status(store: Store) -> None:
    store.note_gateway_bundle("hub-0001", RECEIVED)  # before any status: known by bundles
    seen = store.get_gateway("hub-0001")
    assert seen == GatewayState("hub-0001", None, None, None, None, {}, RECEIVED)
    status = gw_status("hub-0001", "online", RECEIVED + minutes(1), queued=4)
    store.record_gateway_status(status)
    store.note_gateway_bundle("hub-0001", RECEIVED - minutes(5))  # a late, older batch
    assert store.get_gateway("hub-0001") == replace(status, last_bundle_at=RECEIVED)
    store.note_gateway_bundle("hub-0001", RECEIVED + minutes(2))
    state = store.get_gateway("hub-0001")
    assert state == replace(status, last_bundle_at=RECEIVED + minutes(2))


def test_a_gateway_status_needs_its_status() -> None:
    with pytest.raises(ValueError, match="together"):
        GatewayState("hub-0001", "online", None, RECEIVED)
    with pytest.raises(ValueError, match="online or offline"):
        GatewayState("hub-0001", "asleep", RECEIVED, RECEIVED)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        GatewayState("hub-0001", "online", RECEIVED, RECEIVED, queued=-1)


def test_recording_a_gateway_without_a_status_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="needs a status"):
        store.record_gateway_status(GatewayState("hub-0001", None, None, None))
    assert store.list_gateways() == []


def test_sqlite_store_created_before_the_gateways_schema_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    from ingest.stores import sqlite as sqlite_store

    path = tmp_path / "v2.db"
    db = sqlite3.connect(path)
    for script in sqlite_store._MIGRATIONS[:2]:
        db.executescript(script)
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    upgraded = open_store(f"sqlite:{path}")
    try:
        assert upgraded.list_gateways() == []
        upgraded.note_gateway_bundle("hub-0001", RECEIVED)
        assert [g.last_bundle_at for g in upgraded.list_gateways()] == [RECEIVED]
        upgraded.migrate()  # idempotent at the new version
    finally:
        upgraded.close()
