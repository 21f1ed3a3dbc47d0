"""The one-process wiring (demo, ``ingest run --with-alerting``): readings reach the engine,
alert changes reach the dispatcher and the proposal generator, and the ticker runs the clock
detectors and the outreach check on the clock it is given."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.notify import RecordingNotifier
from alerting.proposals import OUTREACH_CALL
from alerting.wiring import alerting_hook
from ingest.stores import open_store
from wardwatch.store import CareTeam, Patient, Store, StoredObservation

T0 = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:{tmp_path / 'store.db'}")
    store.upsert_care_team(CareTeam("team-a", "Team A"))
    store.upsert_patient(Patient("p-1", "Synthetic One", "team-a"))
    store.pair_device("cuff-1", "p-1")
    try:
        yield store
    finally:
        store.close()


def bp(at: datetime, systolic: float) -> StoredObservation:
    return StoredObservation(
        identifier=f"cuff-1-{at.isoformat()}",
        patient="p-1",
        device="cuff-1",
        kind="blood_pressure",
        at=at,
        value=None,
        unit="mm[Hg]",
        components={"systolic": systolic, "diastolic": 80.0, "mean": 100.0},
        resource=b"{}",
        received_at=at,
        gateway="hub-1",
    )


async def test_a_crisis_reading_is_notified_through_the_dispatcher(db: Store) -> None:
    clock = FakeClock(T0)
    notifier = RecordingNotifier()
    hook, tasks = alerting_hook(db, notifier, clock=clock, tick_every=3600)
    try:
        rows = [bp(T0, 192.0)]
        db.write_observations(rows)
        await asyncio.to_thread(hook, rows)
        await tasks.dispatcher.run_once(clock())
    finally:
        await tasks.drain()
    (alert,) = db.list_alerts()
    assert alert.rule == "bp.hypertensive_crisis"
    assert [n.patient for n in notifier.delivered] == ["p-1"]
    assert [a.alert.id for a in notifier.delivered[0].alerts] == [alert.id]


async def test_the_ticker_runs_clock_detectors_and_the_outreach_check(db: Store) -> None:
    clock = FakeClock(T0)
    hook, tasks = alerting_hook(db, RecordingNotifier(), clock=clock, tick_every=0.01)
    try:
        rows = [bp(T0, 128.0)]
        db.write_observations(rows)
        await asyncio.to_thread(hook, rows)
        await asyncio.sleep(0.05)  # ticks at T0: nothing is missing yet
        assert db.list_alerts() == [] and db.list_proposals() == []
        clock.now = T0 + timedelta(days=4)  # a daily cuff silent for 4 days
        for _ in range(500):  # the ticker, not this test, must notice
            if db.list_alerts() and db.list_proposals():
                break
            await asyncio.sleep(0.01)
    finally:
        await tasks.drain()
    (alert,) = db.list_alerts()
    assert alert.rule == "data.silent.blood_pressure" and alert.status == "open"
    (proposal,) = db.list_proposals()
    assert proposal.code == OUTREACH_CALL and proposal.patient == "p-1"
    assert proposal.status == "proposed"
