"""``bench/ingest.py --smoke`` runs end to end and ends with its JSON summary line.

Only the shape is checked, never the figures: timings depend on the machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
KEYS = {
    "raw_copy_rows_per_s",
    "full_path_obs_per_s",
    "workers",
    "ratio_to_raw",
    "chart_query_ms_median",
}


def test_ingest_bench_smoke(mosquitto: object, timescale: object) -> None:
    # The fixtures only make the test skip (or fail on CI) where the services are missing;
    # the bench starts its own.
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ingest.py"), "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(summary, dict)
    assert summary.keys() >= KEYS
    assert summary["workers"] in (1, 2, 4)
