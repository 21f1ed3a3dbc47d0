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


GATEWAY_KEYS = {
    "rss_mb",
    "cpu_ms_per_reading",
    "decode_us_per_reading",
    "outbox_writes_per_s",
}


def test_gateway_bench_smoke(mosquitto: object) -> None:
    # ``bench/gateway.py`` starts its own mosquitto; the fixture makes the test skip (or
    # fail on CI) where there is none. It exits non-zero if a queued reading was not stored
    # exactly once.
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gateway.py"), "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(summary, dict)
    assert summary.keys() >= GATEWAY_KEYS
    for key in GATEWAY_KEYS:
        value = summary[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)
    assert summary["exactly_once"] is True
    assert summary["devices"] == 20


DETECTION_TYPE_KEYS = {"sensitivity", "false_alerts_per_patient_week", "median_delay_min"}


def test_detection_bench_quick() -> None:
    # Needs no service (SQLite); the module's mqtt/postgres marks are only labels here.
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "detection.py"), "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    types = summary["episode_types"]
    assert {"hypertensive_crisis", "tachycardia", "device_silent", "hub_offline"} <= set(types)
    for row in types.values():
        assert row.keys() >= DETECTION_TYPE_KEYS
        assert 0.0 <= row["sensitivity"] <= 1.0
    # the fault scenarios' chain checks: every copy counted, every corrupt value held
    checks = summary["checks"]
    assert checks["stored_once"] is True
    assert checks["duplicates_counted"] == checks["duplicates_expected"] > 0
    assert checks["quarantined"] == checks["corrupted_expected"] > 0
    assert checks["clock_max_error_s"] <= 1.5


ALERTING_KEYS = {
    "latency_p50_ms",
    "latency_p99_ms",
    "detector_cost_ratio_90d_to_1d",
    "detector_us_per_obs_1d",
    "detector_us_per_obs_90d",
    "first_touch_ms_90d",
}


def test_alerting_bench_smoke(mosquitto: object, timescale: object) -> None:
    # ``bench/alerting.py`` starts its own services and `wardwatch ingest run
    # --with-alerting`; it exits non-zero if a notification was lost or duplicated, or if
    # the engines on the 1-day and 90-day stores opened different alerts.
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "alerting.py"), "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(summary, dict)
    assert summary.keys() >= ALERTING_KEYS
    for key in ALERTING_KEYS:
        value = summary[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)
    assert summary["exact"] is True
    assert summary["engines_agree"] is True
    assert summary["crises"] == 20
