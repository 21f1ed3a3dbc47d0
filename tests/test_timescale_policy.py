"""The storage policy on the real TimescaleDB we run here (Apache edition, built from
Debian's source): the reported plan, rollup tables against a direct ``time_bucket`` query
(after writes, late readings into old buckets, and a writer whose transaction was open
during a refresh), and ``drop_chunks`` retention removing only chunks older than the cut.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest.stores.timescale import TimescaleStore
from ingest.stores.timescale_policy import (
    Period,
    StorageMaintenance,
    StoragePolicySettings,
    apply_storage_policy,
    plan_for,
)
from wardwatch.store import StoredObservation

pytestmark = pytest.mark.postgres

T0 = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)
KINDS = ("heart_rate", "body_weight", "blood_pressure")


@pytest.fixture
def store(pg_dsn: str) -> Iterator[TimescaleStore]:
    opened = TimescaleStore(pg_dsn)
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()


def obs(n: int, patient: str, kind: str, at: datetime, value: float | None) -> StoredObservation:
    return StoredObservation(
        identifier=f"urn:uuid:synthetic-{patient}-{kind}-{n}",
        patient=patient,
        device=f"dev-{patient}",
        kind=kind,
        at=at,
        value=value,
        unit="1",
        components={"systolic": 120.0} if value is None else {},
        resource=b'{"resourceType": "Observation"}',
        received_at=at,
        gateway="gw-test",
    )


def random_batch(rng: random.Random, start: int, count: int, base: datetime) -> list[Any]:
    rows = []
    for n in range(start, start + count):
        kind = rng.choice(KINDS)
        value = None if kind == "blood_pressure" else round(rng.uniform(40, 140), 1)
        at = base + timedelta(minutes=rng.randrange(0, 3 * 24 * 60), seconds=rng.randrange(60))
        rows.append(obs(n, rng.choice(("p-001", "p-002", "p-003")), kind, at, value))
    return rows


def direct(dsn: str, width: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT patient, kind, time_bucket(%s::interval, at) AS b, avg(value), min(value), "
            "max(value), count(*) FROM observations GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (width,),
        ).fetchall()


def rollup(dsn: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT patient, kind, bucket, avg, min, max, count FROM {table} ORDER BY 1, 2, 3"
        ).fetchall()


def assert_rollups_match(dsn: str) -> None:
    for table, width in (("observations_hourly", "1 hour"), ("observations_daily", "1 day")):
        got, want = rollup(dsn, table), direct(dsn, width)
        assert len(got) == len(want), table
        for g, w in zip(got, want, strict=True):
            assert g[:3] == w[:3]
            assert g[6] == w[6]
            for a, b in zip(g[3:6], w[3:6], strict=True):
                assert (a is None and b is None) or a == pytest.approx(b)


# -- plan ----------------------------------------------------------------------------------


def test_plan_reports_apache_edition_and_logs_it(
    store: TimescaleStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ingest.stores.timescale_policy"):
        plan = apply_storage_policy(store)
    assert plan.as_dict() == {
        "edition": "apache",
        "aggregates": "rollup-tables",
        "refresh": "every 5m",
        "retention": "off",
        "compression": "unavailable",
    }
    assert any("'edition': 'apache'" in r.getMessage() for r in caplog.records)
    # idempotent: a second replica starting later changes nothing and agrees
    assert apply_storage_policy(store) == plan


def test_plan_with_retention_configured(store: TimescaleStore) -> None:
    settings = StoragePolicySettings(retention=Period.parse("5y"))
    plan = apply_storage_policy(store, settings)
    assert plan.retention == "drop_chunks every 1h, older than 5 years"
    assert StorageMaintenance(store.url, plan, settings).needed


def test_plan_for_the_timescale_edition_uses_licensed_features() -> None:
    caps = {
        "hypertables": True,
        "license": "timescale",
        "compression": True,
        "continuous_aggregates": True,
        "retention_policies": True,
    }
    plan = plan_for(caps, StoragePolicySettings(retention=Period.parse("90d")))
    assert plan.as_dict() == {
        "edition": "timescale",
        "aggregates": "continuous-aggregates",
        "refresh": "refresh policy every 5m",
        "retention": "retention policy, older than 90 days",
        "compression": "policy, after 30 days",
    }
    assert not StorageMaintenance("postgresql://unused", plan).needed


@pytest.mark.parametrize(
    ("text", "interval", "short"),
    [("5y", "5 years", "5y"), ("90d", "90 days", "90d"), ("1 hour", "1 hours", "1h")],
)
def test_period_parse(text: str, interval: str, short: str) -> None:
    period = Period.parse(text)
    assert (period.interval, period.short) == (interval, short)


@pytest.mark.parametrize("text", ["", "5", "0d", "-1d", "3 fortnights", "1.5h"])
def test_period_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="positive <number><unit>"):
        Period.parse(text)


# -- rollups ---------------------------------------------------------------------------------


def test_rollups_equal_time_bucket_after_writes_and_late_arrivals(store: TimescaleStore) -> None:
    rng = random.Random(5)
    plan = apply_storage_policy(store)
    maintenance = StorageMaintenance(store.url, plan)

    assert store.write_observations(random_batch(rng, 0, 400, T0)) == 400
    first = maintenance.refresh_rollups()
    assert first.hourly > 0
    assert first.daily > 0
    assert_rollups_match(store.url)

    # New readings, then late ones into buckets that were already rolled up.
    store.write_observations(random_batch(rng, 400, 100, T0 + timedelta(days=3)))
    late = [obs(1000 + n, "p-001", "heart_rate", T0 + timedelta(minutes=7 * n), 200.0 + n)
            for n in range(30)]  # fmt: skip
    store.write_observations(late)
    maintenance.refresh_rollups()
    assert_rollups_match(store.url)
    with psycopg.connect(store.url) as conn:
        row = conn.execute(
            "SELECT max FROM observations_daily WHERE patient='p-001' AND kind='heart_rate' "
            "AND bucket=%s",
            (T0,),
        ).fetchone()
    assert row == (229.0,)

    # Nothing new: the refresh touches (almost) nothing and the rollups stay equal.
    maintenance.refresh_rollups()
    assert_rollups_match(store.url)


def test_refresh_covers_a_writer_whose_transaction_was_open(store: TimescaleStore) -> None:
    plan = apply_storage_policy(store)
    # No safety margin: the watermark alone must hold back for the open transaction.
    maintenance = StorageMaintenance(store.url, plan, margin=timedelta(0))
    store.write_observations([obs(0, "p-009", "heart_rate", T0, 60.0)])
    with psycopg.connect(store.url) as writer:
        # Begins before the refresh, commits after it: invisible to that refresh.
        writer.execute("SELECT 1")
        maintenance.refresh_rollups()
        writer.execute(
            "INSERT INTO observations (identifier, patient, device, kind, at, value, resource, "
            "received_at) VALUES ('urn:uuid:slow', 'p-009', 'd', 'heart_rate', %s, 90.0, "
            "'\\x00', %s)",
            (T0 + timedelta(minutes=5), T0),
        )
        maintenance.refresh_rollups()
        writer.commit()
    assert rollup(store.url, "observations_hourly") == [
        ("p-009", "heart_rate", T0, 60.0, 60.0, 60.0, 1)
    ]
    maintenance.refresh_rollups()
    assert_rollups_match(store.url)
    assert rollup(store.url, "observations_hourly")[0][6] == 2


def test_concurrent_refresh_is_skipped_not_doubled(store: TimescaleStore) -> None:
    from ingest.stores.timescale_policy import REFRESH_LOCK_KEY

    maintenance = StorageMaintenance(store.url, apply_storage_policy(store))
    with psycopg.connect(store.url) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (REFRESH_LOCK_KEY,))
        assert maintenance.refresh_rollups().skipped
    assert not maintenance.refresh_rollups().skipped


# -- retention -------------------------------------------------------------------------------


def chunk_ends(dsn: str) -> list[datetime]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT range_end FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'observations' ORDER BY range_end"
        ).fetchall()
    return [r[0] for r in rows]


def test_drop_chunks_removes_only_chunks_older_than_the_cut(store: TimescaleStore) -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    ages = [400, 250, 120, 101, 100, 99, 30, 1]
    rows = [obs(n, "p-001", "heart_rate", now - timedelta(days=age), float(age))
            for n, age in enumerate(ages)]  # fmt: skip
    store.write_observations(rows)
    settings = StoragePolicySettings(retention=Period.parse("100d"))
    maintenance = StorageMaintenance(store.url, apply_storage_policy(store, settings), settings)
    maintenance.refresh_rollups()
    daily_before = rollup(store.url, "observations_daily")

    cut = now - timedelta(days=100)
    ends = chunk_ends(store.url)
    expected_dropped = sum(1 for end in ends if end <= cut)
    assert expected_dropped >= 2

    assert maintenance.apply_retention(now=now) == expected_dropped
    assert all(end > cut for end in chunk_ends(store.url))
    kept = {o.value for o in store.observations("p-001")}
    assert {float(a) for a in ages if a <= 100} <= kept  # nothing at or after the cut lost
    assert not {400.0, 250.0, 120.0} & kept  # whole chunks older than the cut are gone
    # the rollups of dropped data are kept (clinical history) ...
    assert rollup(store.url, "observations_daily") == daily_before
    # ... and retention off drops nothing
    off = StorageMaintenance(store.url, apply_storage_policy(store))
    assert off.apply_retention(now=now + timedelta(days=3650)) == 0


# -- start-up report -------------------------------------------------------------------------


def test_ingest_run_prints_the_plan_at_start_up(pg_dsn: str) -> None:
    wardwatch = Path(sys.executable).with_name("wardwatch")
    proc = subprocess.Popen(
        [
            str(wardwatch),
            "ingest",
            "run",
            "--store",
            pg_dsn,
            "--workers",
            "0",
            "--retention",
            "10y",
            "--rollup-every",
            "1m",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert line.startswith("storage policy: "), err
    assert json.loads(line.removeprefix("storage policy: ")) == {
        "edition": "apache",
        "aggregates": "rollup-tables",
        "refresh": "every 1m",
        "retention": "drop_chunks every 1h, older than 10 years",
        "compression": "unavailable",
    }
    with psycopg.connect(pg_dsn) as conn:  # the rollup tables exist now
        assert conn.execute("SELECT count(*) FROM observations_daily").fetchone() == (0,)


def test_ingest_run_refuses_a_bad_retention() -> None:
    wardwatch = Path(sys.executable).with_name("wardwatch")
    result = subprocess.run(
        [
            str(wardwatch),
            "ingest",
            "run",
            "--store",
            "sqlite:/nonexistent/x.db",
            "--retention",
            "forever",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "period 'forever' is not a positive <number><unit>" in result.stderr
