"""Operating the hub: configuration and its overrides, pairing, the health endpoint, status."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from firmware_sim.ble import SimulatedAir
from firmware_sim.devices import BloodPressureCuff, BloodPressureReading
from gateway.ble import PairedDevice
from gateway.errors import GatewayError
from gateway.health import prometheus_text
from gateway.outbox import OutboxFullError
from gateway.runtime import Gateway, GatewayConfig, pair_device, parse_size
from tests.support.services import MosquittoServer
from tests.test_e2e import running, wait_for
from wardwatch import cli, topics
from wardwatch.mqtt import BrokerAddress
from wardwatch.reading import Reading

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "deploy" / "gateway" / "hub.example.toml"
WARDWATCH = Path(sys.executable).parent / "wardwatch"
CUFF = "C0:FF:EE:00:00:42"
AT = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)

BASE = """\
# the hub of a synthetic patient
[gateway]
id = "gw-7"  # keep me
uplink = "mqtts://broker.example:8883"
outbox = "{outbox}"

[[devices]]
id = "cuff-1"
patient = "p-1"
address = "C0:FF:EE:00:00:01"
"""


def write(tmp_path: Path, text: str = BASE) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text.format(outbox=tmp_path / "outbox.sqlite"))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- configuration ---------------------------------------------------------------------------


def test_environment_overrides_the_file_and_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    path = write(tmp_path)
    env = {
        "WARDWATCH_GATEWAY_ID": "gw-from-env",
        "WARDWATCH_GATEWAY_USERNAME": "gw-7",
        "WARDWATCH_GATEWAY_PASSWORD": "s3cret-from-env",
        "WARDWATCH_GATEWAY_OUTBOX_MAX_BYTES": "64MiB",
        "WARDWATCH_GATEWAY_HEALTH_PORT": "9477",
        "WARDWATCH_GATEWAY_THIN_KINDS": "cgm_glucose,steps",
        "WARDWATCH_GATEWAY_TOKEN": "",  # empty: not set
    }
    config = GatewayConfig.from_toml(path, env=env)
    assert config.gateway_id == "gw-from-env"
    assert config.outbox_max_bytes == 64 * 1024 * 1024
    assert config.health_port == 9477
    assert config.outbox_budget().thin_kinds == {"cgm_glucose", "steps"}
    broker = config.uplink_broker()
    assert (broker.username, broker.password, broker.tls) == ("gw-7", "s3cret-from-env", True)
    assert "s3cret" not in repr(config) and "s3cret" not in repr(broker)


def test_tls_files_and_credentials_reach_the_broker_address(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "gw.pem", "gw.key"))
    for f in (ca, cert, key):
        f.write_text("synthetic")
    text = BASE.replace(
        'outbox = "{outbox}"',
        f'outbox = "{{outbox}}"\nusername = "gw-7"\npassword = "pw"\n'
        f'ca_file = "{ca}"\ncert_file = "{cert}"\nkey_file = "{key}"',
    )
    broker = GatewayConfig.from_toml(write(tmp_path, text), env={}).uplink_broker()
    assert broker == BrokerAddress(
        "broker.example", 8883, "gw-7", "pw", True, str(ca), str(cert), str(key)
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('uplink = "mqtts', 'uplink = "mqtt'), "need an mqtts:// uplink"),
        (('id = "gw-7"', 'id = "gw-7"\npasword = "x"'), "unknown key 'pasword'"),
        (('id = "gw-7"', 'id = "gw-7"\ntoken = "t"'), "token applies to an HTTP uplink"),
        (('id = "gw-7"', 'id = "gw-7"\noutbox_max_bytes = "lots"'), "is not a size"),
        (('id = "gw-7"', 'id = "gw-7"\nthin_kinds = ["pizza"]'), "unknown measurement kind"),
        (('id = "gw-7"', 'id = "gw-7"\nhealth_port = 70000'), "is not a TCP port"),
        (('address = "C0:FF:EE:00:00:01"', 'topic = "a/b"'), "device_broker is unset"),
        (('address = "C0:FF:EE:00:00:01"', ""), "needs an address, a name or a topic"),
        (('id = "gw-7"  # keep me', ""), "id is required"),
    ],
)
def test_a_bad_configuration_is_refused_with_a_specific_error(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    text = BASE.replace(*edit)
    if "mqtts" not in text:
        text = text.replace('outbox = "{outbox}"', 'outbox = "{outbox}"\nca_file = "/etc/hosts"')
    with pytest.raises(GatewayError, match=message):
        GatewayConfig.from_toml(write(tmp_path, text), env={})


def test_a_password_in_a_bad_value_is_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(GatewayError) as info:
        GatewayConfig.from_toml(write(tmp_path), env={"WARDWATCH_GATEWAY_BATCH_SIZE": "x"})
    assert "batch_size" in str(info.value)
    text = BASE.replace('id = "gw-7"', 'id = "gw-7"\npassword = 12345')
    with pytest.raises(GatewayError) as info:
        GatewayConfig.from_toml(write(tmp_path, text), env={})
    assert "12345" not in str(info.value) and "password" in str(info.value)


def test_sizes() -> None:
    assert parse_size("256MiB") == 256 * 2**20
    assert parse_size("500 MB") == 500 * 10**6
    assert parse_size("1g") == 10**9
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError, match="not a size"):
        parse_size("12 parsecs")


def test_the_example_config_uses_only_known_keys() -> None:
    config = GatewayConfig.from_toml(EXAMPLE, env={})
    assert config.outbox_max_bytes == 256 * 2**20
    assert config.health_port == 9477


# -- pairing -----------------------------------------------------------------------------------


def test_pair_adds_and_replaces_keeping_the_rest_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.chmod(0o600)
    strap = PairedDevice("strap-1", "p-1", name="HRM-Sim-01", profile="sig-heart-rate-strap")
    assert pair_device(path, strap) == "added"
    text = path.read_text()
    assert "# the hub of a synthetic patient" in text and "# keep me" in text
    assert path.stat().st_mode & 0o777 == 0o600
    moved = PairedDevice("cuff-1", "p-2", address="C0:FF:EE:00:00:99")
    assert pair_device(path, moved) == "replaced"
    config = GatewayConfig.from_toml(path, env={})
    assert [(d.device_id, d.patient, d.address, d.name) for d in config.devices] == [
        ("cuff-1", "p-2", "C0:FF:EE:00:00:99", None),
        ("strap-1", "p-1", None, "HRM-Sim-01"),
    ]
    assert tomllib.loads(path.read_text())["gateway"]["id"] == "gw-7"


def test_pair_refuses_an_address_already_paired_or_an_unknown_profile(tmp_path: Path) -> None:
    path = write(tmp_path)
    before = path.read_text()
    with pytest.raises(GatewayError, match="already paired as cuff-1"):
        pair_device(path, PairedDevice("cuff-2", "p-1", address="c0:ff:ee:00:00:01"))
    with pytest.raises(GatewayError, match="unknown device profile 'nope'"):
        pair_device(
            path, PairedDevice("cuff-2", "p-1", address="C0:FF:EE:00:00:02", profile="nope")
        )
    assert path.read_text() == before


def test_pair_and_devices_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path, BASE.replace('id = "gw-7"', 'id = "gw-7"\ndevice_broker = "mqtt://127.0.0.1"')
    )
    code = cli.main(
        ["gateway", "pair", "--config", str(path), "--device-id", "scale-1", "--patient", "p-1"]
        + ["--topic", "auralis/scale/0001/measurement"]
    )
    assert code == 0 and "added device scale-1" in capsys.readouterr().out
    assert cli.main(["gateway", "devices", "--config", str(path), "--json"]) == 0
    devices = orjson.loads(capsys.readouterr().out)
    assert [(d["id"], d["match"], d["queued"]) for d in devices] == [
        ("cuff-1", "address C0:FF:EE:00:00:01", 0),
        ("scale-1", "topic auralis/scale/0001/measurement", 0),
    ]
    assert cli.main(["gateway", "devices", "--config", str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "id", "patient", "match", "last_seen", "battery", "readings_in", "queued", "dropped"
    ]  # fmt: skip
    assert cli.main(["gateway", "pair", "--config", str(path), "--device-id", "x"]
                    + ["--patient", "p", "--address", "C0:FF:EE:00:00:01"]) == 2  # fmt: skip
    assert "already paired" in capsys.readouterr().err


# -- the running gateway: health endpoint, persisted state, status ----------------------------


async def test_health_endpoint_and_persisted_device_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    air = SimulatedAir()
    cuff = BloodPressureCuff(CUFF, battery_level=77)
    air.add(cuff)
    config = GatewayConfig(
        gateway_id="gw-ops",
        uplink=f"http://127.0.0.1:{free_port()}",  # nobody listens: the uplink is down
        outbox_path=tmp_path / "outbox.sqlite",
        devices=(PairedDevice("cuff-42", "p-42", address=CUFF),),
        health_port=free_port(),
    )
    gateway = Gateway(
        config, scanner_backend=air.scanner_backend(), client_backend=air.client_backend()
    )
    assert gateway.health is not None
    url = f"http://127.0.0.1:{config.health_port}"
    async with running(gateway.run()), httpx.AsyncClient(base_url=url) as http:
        await wait_for(lambda: cuff.is_subscribed("00002a35-0000-1000-8000-00805f9b34fb"))
        await cuff.take_measurement(BloodPressureReading(128, 84, 99, 71, AT))
        await wait_for(lambda: gateway.outbox.pending() == 2)
        await wait_for(lambda: gateway.status()["devices"]["cuff-42"]["battery"] == 77)
        health = (await http.get("/healthz")).json()
        assert health["readings_in"] == 2 and health["queued"] == 2 and health["sent"] == 0
        assert health["connected"] is False
        assert health["dropped"] == {"thinned": 0, "refused": 0}
        device = health["devices"]["cuff-42"]
        assert device["battery"] == 77 and device["readings_in"] == 2 and device["queued"] == 2
        assert datetime.fromisoformat(device["last_seen"]).tzinfo is not None
        assert "128" not in orjson.dumps(health).decode(), "no reading values are served"
        metrics = await http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert 'wardwatch_gateway_queued{gateway="gw-ops"} 2' in metrics.text
        assert 'wardwatch_gateway_device_battery_percent{gateway="gw-ops",device="cuff-42"} 77' in (
            metrics.text
        )
        assert (await http.get("/nope")).status_code == 404
        assert (await http.post("/healthz")).status_code == 405
    # the stopped gateway left its device state for other processes
    assert (
        cli.main(["gateway", "devices", "--config", str(_toml_for(config, tmp_path)), "--json"])
        == 0
    )
    [row] = orjson.loads(capsys.readouterr().out)
    assert (row["battery"], row["readings_in"], row["queued"]) == (77, 2, 2)
    assert row["last_seen"] is not None


def _toml_for(config: GatewayConfig, tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[gateway]\nid = "{config.gateway_id}"\nuplink = "{config.uplink}"\n'
        f'outbox = "{config.outbox_path}"\n\n[[devices]]\nid = "cuff-42"\npatient = "p-42"\n'
        f'address = "{CUFF}"\n'
    )
    return path


def test_metrics_text_format_escapes_labels_and_lists_drops() -> None:
    text = prometheus_text(
        {
            "gateway": 'gw"1',
            "queued": 3,
            "connected": True,
            "dropped_by": [{"device": "s-1", "kind": "steps", "reason": "thinned", "count": 4}],
            "devices": {"s-1": {"last_seen": "2026-01-05T07:00:00+00:00", "battery": None}},
        }
    )
    assert 'wardwatch_gateway_queued{gateway="gw\\"1"} 3' in text
    assert 'wardwatch_gateway_uplink_connected{gateway="gw\\"1"} 1' in text
    assert (
        'wardwatch_gateway_dropped_total{gateway="gw\\"1",device="s-1",kind="steps",'
        'reason="thinned"} 4'
    ) in text
    assert 'device_last_seen_timestamp_seconds{gateway="gw\\"1",device="s-1"} 1767596400' in text
    assert "battery_percent{" not in text


@pytest.mark.mqtt
async def test_retained_status_reports_queue_and_drops(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    config = GatewayConfig(
        gateway_id="gw-status",
        uplink=mosquitto.url,
        outbox_path=tmp_path / "outbox.sqlite",
        outbox_max_rows=1,
    )
    gateway = Gateway(config, scanner_backend=SimulatedAir().scanner_backend())
    from tests.test_outbox import bp

    gateway.outbox.admit([bp(0), bp(1)])  # one queued, one refused (no ingest acks it)
    async with running(gateway.run()):
        await asyncio.wait_for(gateway.uplink.connected.wait(), 30)
        async with BrokerAddress.parse(mosquitto.url).client("status-reader") as client:
            await client.subscribe(topics.status_topic("gw-status"), qos=1)
            message = await asyncio.wait_for(anext(aiter(client.messages)), 30)
    status = orjson.loads(message.payload if isinstance(message.payload, bytes) else b"")
    assert status["status"] == "online" and status["queued"] == 1
    assert status["dropped"] == {"thinned": 0, "refused": 1}


# -- systemd -------------------------------------------------------------------------------------


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "deploy" / "systemd" / "wardwatch-gateway.service").read_text()
    assert "ExecStart=/opt/wardwatch/.venv/bin/wardwatch gateway run" in unit
    # verify checks that the binary exists: point it at this checkout's
    copy = tmp_path / "wardwatch-gateway.service"
    copy.write_text(unit.replace("/opt/wardwatch/.venv/bin/wardwatch", str(WARDWATCH)))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"systemd-analyze warns: {result.stderr}"


async def test_a_refused_record_is_not_acknowledged_to_a_record_keeping_device(
    tmp_path: Path,
) -> None:
    meter = PairedDevice("meter-1", "p-1", address="C0:FF:EE:00:00:77")
    config = GatewayConfig(
        gateway_id="gw-full",
        uplink=f"http://127.0.0.1:{free_port()}",
        outbox_path=tmp_path / "outbox.sqlite",
        devices=(meter,),
        outbox_max_rows=1,
    )
    gateway = Gateway(config, scanner_backend=SimulatedAir().scanner_backend())
    first = Reading("glucose", AT, 5.4, "mmol/L")
    second = Reading("glucose", AT + timedelta(minutes=5), 5.9, "mmol/L")
    await gateway._on_readings(meter, [first], "2A18", b"")
    # full: a Glucose Measurement record (RACP-sequenced) is refused and the error keeps the
    # collector from advancing the meter's record sequence, so the record is fetched again
    with pytest.raises(OutboxFullError):
        await gateway._on_readings(meter, [second], "2A18", b"")
    # a live-only value cannot be asked for again: counted, no error
    await gateway._on_readings(meter, [second], "2A35", b"")
    assert gateway.outbox.pending() == 1
    assert gateway.outbox.drop_totals() == {"thinned": 0, "refused": 2}
    gateway.outbox.close()


def test_mqtt_device_input_never_subscribes_twice_to_one_topic() -> None:
    """A broker delivers a message once per matching subscription: no overlapping filters."""
    from gateway.mqtt_devices import MqttDeviceInput
    from gateway.profiles import ProfileRegistry
    from wardwatch.mqtt import BrokerAddress

    async def nothing(*_args: object) -> None:
        return None

    devices = [
        PairedDevice("scale-1", "p-1", topic="auralis/scale/S3-00A1/measurement"),
        PairedDevice(
            "band-1", "p-1", topic="site/bands/band-1/telemetry", profile="novabeat-band2"
        ),
    ]
    profiles = ProfileRegistry.load()
    filters = MqttDeviceInput(
        BrokerAddress.parse("mqtt://127.0.0.1:1"), devices, profiles, nothing, nothing
    ).filters()
    assert "auralis/scale/+/measurement" in filters
    assert "auralis/scale/S3-00A1/measurement" not in filters  # covered by the profile's filter
    assert "site/bands/band-1/telemetry" in filters  # a topic no profile covers
    assert len(filters) == len(set(filters))


@pytest.mark.mqtt
async def test_mqtt_clients_disable_nagle(mosquitto: MosquittoServer) -> None:
    """Nagle + the broker's delayed ACK would put ~40 ms under every QoS 1 publish."""
    import socket as socket_

    from wardwatch.mqtt import BrokerAddress

    async with BrokerAddress.parse(mosquitto.url).client("nodelay-check") as client:
        sock = client._client.socket()
        assert sock is not None
        assert sock.getsockopt(socket_.IPPROTO_TCP, socket_.TCP_NODELAY) == 1
