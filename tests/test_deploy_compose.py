"""deploy/compose.yaml checked without a Docker engine: it loads, everything it refers to
exists in the repository, its commands are real ``wardwatch`` sub-commands and options,
and the broker config it mounts keeps our no-silent-loss settings (and starts on the real
mosquitto installed here).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import MosquittoServer, free_port
from wardwatch.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
WARDWATCH = Path(sys.executable).with_name("wardwatch")
DROP_LIMITS = ("max_queued_messages", "max_queued_bytes")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def conf(path: Path) -> dict[str, list[str]]:
    """mosquitto.conf as {option: [values]} (comments and blank lines dropped)."""
    options: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options.setdefault(key, []).append(value.strip())
    return options


def test_services_are_the_backend(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {"timescaledb", "mosquitto", "ingest", "api"}
    assert services(compose)["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services(compose)["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services(compose)["ingest"]["deploy"]["replicas"] >= 2


def test_build_context_dockerfile_and_copied_paths_exist(compose: dict[str, Any]) -> None:
    built = [s for s in services(compose).values() if "build" in s]
    assert {s["command"][1] for s in built} == {"ingest"}
    for service in built:
        context = (DEPLOY / service["build"]["context"]).resolve()
        dockerfile = context / service["build"]["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        copies = [
            line.split()[1:-1]
            for line in dockerfile.read_text().splitlines()
            if line.startswith("COPY ")
        ]
        assert copies
        for sources in copies:
            for source in sources:
                assert (context / source).exists(), f"{dockerfile}: COPY {source} is missing"
        # the packages the image installs are the ones pyproject declares
        assert {"wardwatch/", "gateway/", "ingest/", "alerting/"} <= {s for c in copies for s in c}


def test_bind_mounts_exist_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"


def test_commands_are_real_wardwatch_subcommands(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDWATCH_STORE", "postgresql://wardwatch@timescaledb/wardwatch")
    parser = build_parser()
    commands = [s["command"] for s in services(compose).values() if "command" in s]
    assert len(commands) == 2
    for command in commands:
        assert command[0] == "wardwatch"
        words = [w for w in command[1:] if not w.startswith("-")][:2]
        help_text = subprocess.run(
            [str(WARDWATCH), *words, "--help"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for option in (w for w in command if w.startswith("--")):
            assert option in help_text, f"{' '.join(words)} has no {option}"
        args = parser.parse_args(command[1:])  # values of the right types, too
        assert args.handler.__name__ == "_cmd_ingest_run"


def test_environment_is_read_by_the_cli_and_documented(compose: dict[str, Any]) -> None:
    help_text = subprocess.run(
        [str(WARDWATCH), "ingest", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    example = (DEPLOY / "backend" / "env.example").read_text()
    for name in ("ingest", "api"):
        for key in services(compose)[name]["environment"]:
            assert key in help_text, f"{key} is not read by `wardwatch ingest run`"
    required = set(re.findall(r"\$\{([A-Z_]+)[:?-]", COMPOSE.read_text()))
    assert required
    for variable in required:
        assert re.search(rf"^{variable}=", example, re.M), f"{variable} not in env.example"


# -- broker configuration -------------------------------------------------------------------


@pytest.mark.mqtt
def test_mosquitto_config_refuses_anonymous_persists_and_drops_nothing(
    compose: dict[str, Any], mosquitto: MosquittoServer
) -> None:
    options = conf(DEPLOY / "mosquitto" / "mosquitto.conf")
    assert options["allow_anonymous"] == ["false"]
    assert options["persistence"] == ["true"]
    for key in DROP_LIMITS:
        assert options[key] == ["0"], key
    # the same limits as the broker every test runs on
    tested = {k: v for k, v in conf(mosquitto.config_path).items() if k.startswith("max_")}
    assert tested == {k: v for k, v in options.items() if k.startswith("max_")}
    # the files it names are inside what compose mounts, and exist in the repo
    mounts = dict(v.split(":")[:2] for v in services(compose)["mosquitto"]["volumes"] if ":" in v)
    config_source = next(src for src, dst in mounts.items() if dst == "/mosquitto/config")
    assert options["acl_file"] == ["/mosquitto/config/acl"]
    assert (DEPLOY / config_source / "acl").is_file()
    assert options["password_file"] == ["/mosquitto/config/passwd"]
    assert options["persistence_location"][0].startswith("/mosquitto/data")
    assert "/mosquitto/data" in mounts.values()


def test_mosquitto_config_starts_on_the_real_broker(tmp_path: Path) -> None:
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if binary is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto not installed: run `make services`")
    port = free_port()
    (tmp_path / "data").mkdir()
    text = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    text = text.replace("/mosquitto/config/passwd", str(tmp_path / "passwd"))
    text = text.replace("/mosquitto/config/", f"{DEPLOY / 'mosquitto'}/")
    text = text.replace("/mosquitto/data/", f"{tmp_path / 'data'}/")
    text = re.sub(r"^listener 1883$", f"listener {port} 127.0.0.1", text, flags=re.M)
    text = text.replace("log_dest stdout", f"log_dest file {tmp_path / 'log'}")
    if os.geteuid() == 0:
        text = "user root\n" + text
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(tmp_path / "passwd"), "ingest", "x" * 20], check=True
    )
    (tmp_path / "mosquitto.conf").write_text(text)
    proc = subprocess.Popen(
        [binary, "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(500):
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else b""
                pytest.fail(f"mosquitto refused the config: {out!r}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        else:
            pytest.fail("mosquitto did not listen")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    log = (tmp_path / "log").read_text()
    assert "Error" not in log, log


# -- add-gateway.sh ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gw/+"], "must be 1-64 of"),
        (["#"], "must be 1-64 of"),
        (["ingest"], "use --ingest"),
        (["gw-1", "short"], "at least 16 characters"),
        ([], "usage"),
    ],
)
def test_add_gateway_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        ["sh", str(DEPLOY / "mosquitto" / "add-gateway.sh"), *args],
        env={**os.environ, "WARDWATCH_PASSWD_FILE": str(tmp_path / "passwd")},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "passwd").exists()
