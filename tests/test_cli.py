"""The ``wardwatch`` command as a user runs it: the demo's JSON summary, alerts list, config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from gateway.runtime import GatewayConfig

ROOT = Path(__file__).resolve().parents[1]


def wardwatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wardwatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_demo_json_summary_shows_the_crisis(tmp_path: Path) -> None:
    result = wardwatch(
        "demo", "--duration", "8", "--interval", "1", "--json", "--data-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(summary["readings_stored"], int) and summary["readings_stored"] >= 6
    crises = [a for a in summary["alerts"] if a["rule"] == "bp.hypertensive_crisis"]
    assert [a["patient"] for a in crises] == ["p-002"]
    assert crises[0]["severity"] == "urgent" and crises[0]["opened_at"].endswith("Z")
    assert {a["patient"] for a in summary["alerts"]} == {"p-002"}
    # the alert went through apprise's console:// target to the terminal (stderr with --json)
    assert "bp.hypertensive_crisis" in result.stderr and "Synthetic Patient" not in result.stderr

    listed = wardwatch(
        "alerts", "list", "--store", f"sqlite:{tmp_path / 'wardwatch.sqlite'}", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    alerts = orjson.loads(listed.stdout)
    assert [a["rule"] for a in alerts] == ["bp.hypertensive_crisis"]
    for key in (
        "id",
        "patient",
        "rule",
        "kind",
        "severity",
        "opened_at",
        "acknowledged_at",
        "resolved_at",
        "observations",
    ):
        assert key in alerts[0]
    assert alerts[0]["observations"], "the triggering observations are named"


def test_help_lists_the_subcommands() -> None:
    result = wardwatch("--help")
    assert result.returncode == 0
    for name in ("demo", "gateway", "ingest", "alerts"):
        assert name in result.stdout


def test_example_hub_config_loads() -> None:
    config = GatewayConfig.from_toml(ROOT / "deploy" / "gateway" / "hub.example.toml")
    assert config.gateway_id == "gw-0001"
    assert config.devices[0].patient == "p-0001"


def test_ingest_http_on_a_public_address_needs_a_write_token(tmp_path: Path) -> None:
    result = wardwatch(
        "ingest",
        "run",
        "--store",
        f"sqlite:{tmp_path / 'w.sqlite'}",
        "--broker",
        "mqtt://127.0.0.1:1",
        "--http-port",
        "8080",
        "--http-host",
        "0.0.0.0",
    )
    assert result.returncode == 2
    assert "needs a write token" in result.stderr
