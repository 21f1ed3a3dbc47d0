"""Each ``bench/*.py`` runs end to end in its smallest mode and ends with its JSON summary.

Only the shape is checked, never the figures: timings depend on the machine. The service
fixtures only make a test skip (or fail on CI) where a service is missing; the benches start
their own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_bench(name: str, mode: str) -> dict[str, Any]:
    """Run ``bench/NAME.py MODE``; it must succeed; return its last line's JSON object."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(summary, dict)
    return summary


def assert_positive_numbers(summary: dict[str, Any], keys: set[str]) -> None:
    assert summary.keys() >= keys
    for key in keys:
        value = summary[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)


INGEST_KEYS = {
    "raw_copy_rows_per_s",
    "full_path_obs_per_s",
    "workers",
    "ratio_to_raw",
    "chart_query_ms_median",
}


@pytest.mark.mqtt
@pytest.mark.postgres
def test_ingest_bench_smoke(mosquitto: object, timescale: object) -> None:
    summary = run_bench("ingest", "--smoke")
    assert_positive_numbers(summary, INGEST_KEYS)
    assert summary["workers"] in (1, 2, 4)


GATEWAY_KEYS = {
    "rss_mb",
    "cpu_ms_per_reading",
    "decode_us_per_reading",
    "outbox_writes_per_s",
}


@pytest.mark.mqtt
def test_gateway_bench_smoke(mosquitto: object) -> None:
    # It exits non-zero if a queued reading was not stored exactly once.
    summary = run_bench("gateway", "--smoke")
    assert_positive_numbers(summary, GATEWAY_KEYS)
    assert summary["exactly_once"] is True
    assert summary["devices"] == 20


DETECTION_TYPE_KEYS = {"sensitivity", "false_alerts_per_patient_week", "median_delay_min"}


def test_detection_bench_quick() -> None:
    # Needs no service (SQLite).
    summary = run_bench("detection", "--quick")
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


@pytest.mark.mqtt
@pytest.mark.postgres
def test_alerting_bench_smoke(mosquitto: object, timescale: object) -> None:
    # It exits non-zero if a notification was lost or duplicated, or if the engines on the
    # 1-day and 90-day stores opened different alerts.
    summary = run_bench("alerting", "--smoke")
    assert_positive_numbers(summary, ALERTING_KEYS)
    assert summary["exact"] is True
    assert summary["engines_agree"] is True
