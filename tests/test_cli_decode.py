"""``wardwatch decode`` run as a real command: one JSON document on stdout, exit 0 or 2."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.observation import Observation

BP_HEX = "1f790051006a00e40705150a1e2d4800010600"
AT = "2024-03-01T08:00:00Z"


def run_decode(*args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "wardwatch.cli", "decode", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    return proc.returncode, orjson.loads(lines[0])


def assert_valid(doc: dict[str, Any]) -> list[dict[str, Any]]:
    assert set(doc) == {"observations"}
    observations: list[dict[str, Any]] = doc["observations"]
    for obs in observations:
        Observation.model_validate(obs)
    return observations


@pytest.mark.parametrize("uuid", ["2A35", "0x2A35", "2a35", "00002a35-0000-1000-8000-00805f9b34fb"])
def test_standard_characteristic_every_uuid_spelling(uuid: str) -> None:
    code, doc = run_decode("--characteristic", uuid, "--hex", BP_HEX, "--at", AT)
    assert code == 0
    observations = assert_valid(doc)
    assert [o["code"]["coding"][-1]["code"] for o in observations] == ["85354-9", "8867-4"]
    panel = observations[0]
    assert panel["subject"] == {"reference": "Patient/example-patient"}
    assert panel["device"] == {"reference": "Device/example-device"}
    values = [c["valueQuantity"]["value"] for c in panel["component"]]
    assert values == [121, 81, 106]


def test_patient_device_and_reception_time_are_used() -> None:
    # no time stamp in the payload: the --at time stands in
    code, doc = run_decode(
        "--characteristic", "2A37", "--hex", "0048", "--at", AT,
        "--patient", "p-7", "--device", "strap-1",
    )  # fmt: skip
    assert code == 0
    (obs,) = assert_valid(doc)
    assert obs["effectiveDateTime"] == "2024-03-01T08:00:00Z"
    assert obs["subject"]["reference"] == "Patient/p-7"
    assert obs["device"]["reference"] == "Device/strap-1"
    assert obs["valueQuantity"]["value"] == 72


def test_default_time_is_now() -> None:
    code, doc = run_decode("--characteristic", "2A37", "--hex", "0048")
    assert code == 0
    assert_valid(doc)


def test_nan_gives_data_absent_reason() -> None:
    # weight 0xFFFF: measurement unsuccessful
    code, doc = run_decode("--characteristic", "2A9D", "--hex", "00ffff", "--at", AT)
    assert code == 0
    (obs,) = assert_valid(doc)
    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "error"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--characteristic", "2A35", "--hex", "1f79"), "Systolic"),
        (("--characteristic", "2A35", "--hex", "zz"), "not a hexadecimal"),
        (("--characteristic", "2A99", "--hex", "00"), "no decoder for characteristic 0x2A99"),
        (("--characteristic", "bogus-uuid", "--hex", "00"), "not a Bluetooth SIG"),
        (("--characteristic", "2A37", "--hex", "0048", "--at", "yesterday"), "ISO 8601"),
        (
            (
                "--hex",
                "0048",
            ),
            "--characteristic or --profile",
        ),
    ],
)
def test_undecodable_payload_prints_error_and_exits_2(args: tuple[str, ...], needle: str) -> None:
    code, doc = run_decode(*args)
    assert code == 2
    assert set(doc) == {"error"}
    assert needle in doc["error"]


# -- through a device profile ----------------------------------------------------------


def test_profile_ble_with_quirks() -> None:
    code, doc = run_decode(
        "--profile", "pulvena-bp88", "--hex", "14780050005d000048010004", "--at", AT
    )
    assert code == 0
    panel, pulse = assert_valid(doc)
    assert [c["valueQuantity"]["value"] for c in panel["component"]] == [120, 80, 93]
    assert pulse["valueQuantity"]["value"] == 72
    assert pulse["effectiveDateTime"] == "2024-03-01T08:00:00Z"


def test_profile_ble_names_the_characteristic_when_it_has_several() -> None:
    code, doc = run_decode(
        "--profile", "sig-weight-scale", "--characteristic", "0x2A9D", "--hex", "00b036",
        "--at", AT,
    )  # fmt: skip
    assert code == 0
    (obs,) = assert_valid(doc)
    assert obs["valueQuantity"]["value"] == 70
    code, doc = run_decode("--profile", "sig-weight-scale", "--hex", "00b036")
    assert code == 2
    assert "several characteristics" in doc["error"]


def test_profile_mqtt_json_payload() -> None:
    payload = orjson.dumps(
        {
            "Body": [
                {"heartRate": "78", "endDate": "2019-02-01T20:46:01.875Z"},
                {"spo2": 97, "steps": 1200, "endDate": "2019-02-01T21:00:00Z"},
            ]
        }
    ).decode()
    code, doc = run_decode("--profile", "novabeat-band2", "--json-payload", payload)
    assert code == 0
    observations = assert_valid(doc)
    assert [o["valueQuantity"]["value"] for o in observations] == [78, 97, 1200]
    assert observations[0]["effectiveDateTime"] == "2019-02-01T20:46:01.875Z"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--profile", "no-such-model", "--hex", "00"), "no device profile 'no-such-model'"),
        (("--profile", "novabeat-band2", "--json-payload", "{not json"), "not JSON"),
        (("--profile", "novabeat-band2", "--json-payload", '{"Body": []}'), "no measurement"),
        (("--profile", "novabeat-band2", "--hex", "00"), "MQTT profile"),
        (("--profile", "sig-heart-rate-strap", "--json-payload", "{}"), "BLE profile"),
        (("--profile", "sig-heart-rate-strap", "--hex", ""), "empty"),
    ],
)
def test_profile_undecodable(args: tuple[str, ...], needle: str) -> None:
    code, doc = run_decode(*args)
    assert code == 2
    assert needle in doc["error"]
