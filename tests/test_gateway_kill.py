"""The gateway process killed with SIGKILL while bundles are in flight, then restarted.

Real mosquitto, real ingest into TimescaleDB; the gateway runs in a subprocess
(``tests/support/gateway_proc.py``). The database must end with every reading exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

import pytest

from gateway.outbox import Outbox
from ingest.mqtt import MqttIngest
from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from tests.support.gateway_proc import reading
from tests.support.services import MosquittoServer
from tests.test_e2e import running, wait_for
from wardwatch.fhir import reading_id
from wardwatch.mqtt import BrokerAddress
from wardwatch.store import CareTeam, Patient

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]

ROOT = Path(__file__).parents[1]
START = "2026-01-05T06:00:00+00:00"
READINGS = 400  # 800 Observations, 80 bundles of 10: a wide window to kill in


def spawn(tmp_path: Path, broker: str, readings: int, log: IO[bytes]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.gateway_proc"]
        + ["--outbox", str(tmp_path / "outbox.sqlite"), "--uplink", broker]
        + ["--readings", str(readings), "--start", START],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def expect_line(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 120)
    assert line.strip() == word, f"gateway process said {line!r}, expected {word!r}"


@pytest.fixture
def child_log(tmp_path: Path) -> Iterator[IO[bytes]]:
    with (tmp_path / "gateway.log").open("wb") as f:
        yield f


async def test_sigkill_mid_batch_then_restart_stores_every_reading_once(
    mosquitto: MosquittoServer, pg_dsn: str, tmp_path: Path, child_log: IO[bytes]
) -> None:
    store = open_store(pg_dsn)
    store.upsert_care_team(CareTeam("t", "Team"))
    store.upsert_patient(Patient("p-9", "Synthetic Nine", "t"))
    store.pair_device("cuff-9", "p-9")
    worker = MqttIngest(IngestPipeline(store), BrokerAddress.parse(mosquitto.url))
    total = 2 * READINGS  # blood pressure panel + pulse per measurement
    start = datetime.fromisoformat(START)
    expected = {
        reading_id("cuff-9", reading(start, n).at, kind)
        for n in range(READINGS)
        for kind in ("blood_pressure", "heart_rate")
    }
    first = spawn(tmp_path, mosquitto.url, READINGS, child_log)
    second: subprocess.Popen[str] | None = None
    try:
        async with running(worker.run()):
            await expect_line(first, "queued")  # the cuff's records are in the outbox
            await expect_line(first, "running")
            # a quarter stored: some bundles confirmed, some in flight, most still queued
            await wait_for(lambda: store.count_observations() >= total // 4, timeout=120)
            first.send_signal(signal.SIGKILL)
            first.wait()
            stored_at_kill = store.count_observations()
            box = Outbox(tmp_path / "outbox.sqlite")
            left = box.pending()
            assert 0 < stored_at_kill < total and left > 0, "the kill landed mid-stream"
            assert left + box.sent() == total, "every reading is still queued or was confirmed"

            second = spawn(tmp_path, mosquitto.url, 0, child_log)  # the cuff has nothing new
            await expect_line(second, "running")
            await wait_for(lambda: box.pending() == 0, timeout=180)
            await wait_for(lambda: store.count_observations() == total, timeout=60)
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 60)
            box.close()
        assert store.count_observations() == total
        assert {o.identifier for o in store.observations("p-9")} == expected
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        store.close()
