"""Device profiles: the shipped registry, each registry check, docs, drop-in directories."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from fhir.resources.R4B.observation import Observation

from gateway.decoders import decode_characteristic
from gateway.profiles import (
    PROFILE_DIRS_ENV,
    Advertisement,
    ProfileError,
    ProfileRegistry,
    check,
    packaged_profile_dir,
    run_samples,
)
from gateway.profiles._commands import default_docs_path, render_docs

SHIPPED_DIR = packaged_profile_dir()
SHIPPED = sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))
AT = datetime(2024, 1, 1, tzinfo=UTC)


def wardwatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != PROFILE_DIRS_ENV}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "wardwatch.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=full_env,
    )


# -- the shipped registry --------------------------------------------------------------


def test_shipped_registry_passes_every_check() -> None:
    profiles, problems = check([SHIPPED_DIR])
    assert [str(p) for p in problems] == []
    assert len(profiles) == len(SHIPPED) >= 14


@pytest.mark.parametrize("profile_id", SHIPPED)
def test_every_shipped_profile_sample_passes(profile_id: str) -> None:
    registry = ProfileRegistry.load(env={})
    profile = registry.get(profile_id)
    assert profile.path.stem == profile_id, "file name is the profile id"
    results = run_samples(profile)
    assert [r.diff for r in results if not r.passed] == []
    assert any(s.error for s in profile.samples), "at least one invalid sample"


def test_validate_command_passes_on_shipped_set() -> None:
    proc = wardwatch("profiles", "validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"ok: {len(SHIPPED)} profiles")


def test_required_models_are_shipped() -> None:
    registry = ProfileRegistry.load(env={})
    generic = {p.id for p in registry if p.id.startswith("sig-")}
    assert generic == {
        "sig-glucose-meter",
        "sig-blood-pressure-monitor",
        "sig-weight-scale",
        "sig-body-composition-scale",
        "sig-heart-rate-strap",
        "sig-pulse-oximeter",
        "sig-thermometer",
        "sig-cgm",
    }
    bp7 = registry.get("corvalis-bp7-connect")
    assert [s.step for s in bp7.session][:2] == ["bond", "set_current_time"]
    gm = registry.get("glucora-gm300")
    assert gm.session[-1].request == "records_after_last_sequence"
    assert registry.get("libra-ls20").characteristics[0].quirks.unit_override == "[lb_av]"
    quirks = registry.get("pulvena-bp88").characteristics[0].quirks
    assert quirks.big_endian and quirks.user_id_without_flag
    assert {registry.get(i).transport for i in ("auralis-wifi-scale", "novabeat-band2")} == {"mqtt"}
    assert set(registry.get("novabeat-band2").kinds()) == {"heart_rate", "spo2", "steps"}


# -- quirks do what they say ----------------------------------------------------------


def test_pound_scale_quirk_changes_the_reading() -> None:
    data = bytes.fromhex("00463c")
    standard = decode_characteristic("2A9D", data, received_at=AT).readings[0]
    assert (standard.value, standard.unit) == (77.15, "kg")  # what a naive hub would store
    profile = ProfileRegistry.load(env={}).get("libra-ls20")
    (quirked,) = profile.decode_ble(data, characteristic="2A9D", received_at=AT)
    assert (quirked.value, quirked.unit) == (154.3, "[lb_av]")


def test_big_endian_and_unflagged_user_id_quirks() -> None:
    data = bytes.fromhex("14780050005d000048010004")
    profile = ProfileRegistry.load(env={}).get("pulvena-bp88")
    panel, pulse = profile.decode_ble(data, characteristic=None, received_at=AT)
    assert pulse.value == 72
    assert pulse.interpretation == ("A",)  # irregular pulse, read from the swapped status
    assert ("user_id", "1") in panel.extra
    standard = decode_characteristic("2A35", data, received_at=AT).readings
    assert standard[1].value != 72


# -- matching --------------------------------------------------------------------------


def test_ble_matching_prefers_the_model_over_the_generic_profile() -> None:
    registry = ProfileRegistry.load(env={})
    bp = frozenset({"1810"})
    assert registry.match_ble(Advertisement("Some Cuff", bp)).id == "sig-blood-pressure-monitor"  # type: ignore[union-attr]
    named = Advertisement("PBP88_77", bp)
    assert registry.match_ble(named).id == "pulvena-bp88"  # type: ignore[union-attr]
    # BP7 also needs its manufacturer id
    assert registry.match_ble(Advertisement("BP7-00AA", bp)).id == "sig-blood-pressure-monitor"  # type: ignore[union-attr]
    full = Advertisement("BP7-00AA", bp, frozenset({0x0F2A}))
    assert registry.match_ble(full).id == "corvalis-bp7-connect"  # type: ignore[union-attr]
    assert registry.match_ble(Advertisement("Toaster")) is None


def test_less_specific_rule_does_not_shadow(tmp_path: Path) -> None:
    mqtt = _base_mqtt()
    mqtt["match"]["mqtt"] = {"topic": "auralis/#", "topic_example": "auralis/other"}
    _write(tmp_path, mqtt)
    profiles, problems = check([SHIPPED_DIR, tmp_path])
    assert problems == []
    registry = ProfileRegistry(profiles)
    assert registry.match_mqtt("auralis/scale/S3-1/measurement").id == "auralis-wifi-scale"  # type: ignore[union-attr]
    assert registry.match_mqtt("auralis/other").id == "test-scale"  # type: ignore[union-attr]


def test_mqtt_matching_with_wildcards() -> None:
    registry = ProfileRegistry.load(env={})
    scale = registry.match_mqtt("auralis/scale/S3-1/measurement")
    assert scale is not None and scale.id == "auralis-wifi-scale"
    assert registry.match_mqtt("auralis/scale/S3-1/measurement/extra") is None
    band = registry.match_mqtt("novabeat/v2/b-1/telemetry")
    assert band is not None and band.id == "novabeat-band2"


# -- each registry check, on a broken profile ------------------------------------------


def _base_ble() -> dict[str, Any]:
    return {
        "id": "test-cuff",
        "vendor": "Testco",
        "model": "TC-1",
        "version": 1,
        "transport": "ble",
        "match": {
            "ble": {"local_name": "^TC1", "local_name_example": "TC1-A", "service_uuids": ["1810"]}
        },
        "session": [{"step": "subscribe", "characteristic": "2A35", "mode": "indicate"}],
        "characteristics": [{"uuid": "2A35", "decoder": "blood_pressure_measurement"}],
        "samples": [
            {
                "name": "plain",
                "characteristic": "2A35",
                "hex": "00780050005d00",
                "expect": [
                    {"kind": "systolic", "value": 120, "unit": "mm[Hg]"},
                    {"kind": "diastolic", "value": 80, "unit": "mm[Hg]"},
                    {"kind": "mean_arterial_pressure", "value": 93, "unit": "mm[Hg]"},
                ],
            },
            {"name": "short", "characteristic": "2A35", "hex": "0078", "error": "minimum"},
        ],
    }


def _base_mqtt() -> dict[str, Any]:
    return {
        "id": "test-scale",
        "vendor": "Testco",
        "model": "WS-1",
        "version": 1,
        "transport": "mqtt",
        "match": {"mqtt": {"topic": "testco/+/weight", "topic_example": "testco/ws1/weight"}},
        "mapping": {
            "time": "t",
            "time_format": "epoch_millis",
            "measurements": [{"kind": "body_weight", "value": "kg", "unit": "kg"}],
        },
        "samples": [
            {
                "name": "ok",
                "json": {"t": 1704067200000, "kg": 70.5},
                "expect": [
                    {
                        "kind": "body_weight",
                        "value": 70.5,
                        "unit": "kg",
                        "at": "2024-01-01T00:00:00Z",
                    }
                ],
            },
            {"name": "no time", "json": {"kg": 70.5}, "error": "time 't' is missing"},
        ],
    }


def _write(directory: Path, doc: dict[str, Any], name: str | None = None) -> Path:
    path = directory / f"{name or doc['id']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_valid_test_profiles_pass(tmp_path: Path) -> None:
    _write(tmp_path, _base_ble())
    _write(tmp_path, _base_mqtt())
    proc = wardwatch("profiles", "validate", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout
    assert f"ok: {len(SHIPPED) + 2} profiles" in proc.stdout


def _broken(kind: str) -> tuple[dict[str, Any], str]:
    """A broken profile and the problem text the validator must print."""
    ble, mqtt = _base_ble(), _base_mqtt()
    if kind == "schema":
        del ble["vendor"]
        return ble, "schema: at (top level): 'vendor' is a required property"
    if kind == "schema-uuid":
        ble["match"]["ble"]["service_uuids"] = [1810]
        return ble, "schema: at match/ble/service_uuids/0: 1810 is not of type 'string'"
    if kind == "duplicate-id":
        ble["id"] = "sig-thermometer"
        return ble, "duplicate profile id 'sig-thermometer'"
    if kind == "unknown-kind":
        mqtt["mapping"]["measurements"][0]["kind"] = "blood_sugar"
        return mqtt, "mapping: unknown measurement kind 'blood_sugar'"
    if kind == "bad-unit":
        mqtt["mapping"]["measurements"][0]["unit"] = "lbs"
        return mqtt, "mapping: body_weight: unit 'lbs' is not allowed for body_weight"
    if kind == "sample-unit":
        ble["samples"][0]["expect"][0]["unit"] = "mmHg"
        return ble, "sample 'plain': systolic: unit 'mmHg' is not allowed"
    if kind == "unknown-decoder":
        ble["characteristics"][0]["decoder"] = "blood_pressure_v2"
        return ble, "characteristic 2A35: unknown decoder 'blood_pressure_v2'"
    if kind == "quirk":
        ble["characteristics"][0]["quirks"] = {"unit_override": "kg"}
        return ble, "quirk unit_override 'kg' is not a unit of characteristic 2A35"
    if kind == "bad-jmespath":
        mqtt["mapping"]["measurements"][0]["value"] = "kg[["
        return mqtt, "mapping: bad JMESPath 'kg[['"
    if kind == "name-example":
        ble["match"]["ble"]["local_name_example"] = "XX-1"
        return ble, "local_name_example 'XX-1' does not match local_name '^TC1'"
    if kind == "shadow-ble":
        ble["match"]["ble"]["local_name"] = "^PBP"
        ble["match"]["ble"]["local_name_example"] = "PBP-9"
        return ble, "match rule shadows pulvena-bp88"
    if kind == "shadow-mqtt":
        mqtt["match"]["mqtt"] = {
            "topic": "auralis/+/S3-00A1/measurement",
            "topic_example": "auralis/other/S3-00A1/measurement",
        }
        return mqtt, "match rule shadows auralis-wifi-scale"
    if kind == "sample-mismatch":
        ble["samples"][0]["expect"][0]["value"] = 121
        return ble, "-systolic = 121 mm[Hg]\n+systolic = 120 mm[Hg]"
    if kind == "sample-error-mismatch":
        mqtt["samples"][1]["error"] = "no such error"
        return mqtt, "expected error containing 'no such error', got error"
    if kind == "no-invalid-sample":
        ble["samples"][1] = copy.deepcopy(ble["samples"][0]) | {"name": "again"}
        return ble, "at least one invalid sample (with error:) is required"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "schema",
        "schema-uuid",
        "duplicate-id",
        "unknown-kind",
        "bad-unit",
        "sample-unit",
        "unknown-decoder",
        "quirk",
        "bad-jmespath",
        "name-example",
        "shadow-ble",
        "shadow-mqtt",
        "sample-mismatch",
        "sample-error-mismatch",
        "no-invalid-sample",
    ],
)
def test_validate_names_file_and_problem(tmp_path: Path, kind: str) -> None:
    doc, problem = _broken(kind)
    path = _write(tmp_path, doc, name="broken")
    proc = wardwatch("profiles", "validate", "--dir", str(tmp_path))
    assert proc.returncode == 1, proc.stdout
    assert problem in proc.stdout
    # the problem is reported under the broken file's name (multi-line diffs follow it)
    assert f"\n{path}: " in "\n" + proc.stdout, proc.stdout
    assert proc.stdout.index(f"{path}: ") < proc.stdout.index(problem)


def test_unreadable_yaml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "garbled.yaml"
    path.write_text("id: [unclosed\n", encoding="utf-8")
    proc = wardwatch("profiles", "validate", "--dir", str(tmp_path))
    assert proc.returncode == 1
    assert f"{path}: cannot read YAML" in proc.stdout


def test_load_raises_naming_the_file(tmp_path: Path) -> None:
    doc, _ = _broken("schema")
    path = _write(tmp_path, doc)
    with pytest.raises(ProfileError) as info:
        ProfileRegistry.load([tmp_path], env={})
    assert info.value.problems[0].path == path


# -- profiles test ---------------------------------------------------------------------


def test_profiles_test_passes_a_shipped_profile() -> None:
    proc = wardwatch("profiles", "test", "sig-weight-scale")
    assert proc.returncode == 0, proc.stdout
    assert "PASS  70 kg" in proc.stdout
    assert "3 passed, 0 failed" in proc.stdout


def test_profiles_test_prints_a_readable_diff(tmp_path: Path) -> None:
    doc, _ = _broken("sample-mismatch")
    _write(tmp_path, doc)
    proc = wardwatch("profiles", "test", "test-cuff", "--dir", str(tmp_path))
    assert proc.returncode == 1
    assert "FAIL  plain" in proc.stdout
    assert "--- expected" in proc.stdout and "+++ decoded" in proc.stdout
    assert "-systolic = 121 mm[Hg]" in proc.stdout
    assert "+systolic = 120 mm[Hg]" in proc.stdout
    assert "1 passed, 1 failed" in proc.stdout


def test_profiles_test_unknown_profile() -> None:
    proc = wardwatch("profiles", "test", "no-such-profile")
    assert proc.returncode == 1
    assert "no usable device profile 'no-such-profile'" in proc.stdout


# -- docs ------------------------------------------------------------------------------


def test_devices_page_is_not_stale() -> None:
    committed = default_docs_path().read_text(encoding="utf-8")
    assert committed == render_docs(), "run `wardwatch profiles docs` and commit docs/devices.md"


def test_docs_command_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "devices.md"
    proc = wardwatch("profiles", "docs", "--output", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text(encoding="utf-8")
    assert text == render_docs()
    for profile_id in SHIPPED:
        assert f"`{profile_id}`" in text


# -- a new device model is one YAML file -----------------------------------------------


def test_new_model_is_one_yaml_file_in_a_drop_in_dir(tmp_path: Path) -> None:
    dropin = tmp_path / "site-profiles"
    dropin.mkdir()
    _write(dropin, _base_ble())
    env = {PROFILE_DIRS_ENV: str(dropin)}

    # it validates with the shipped set ...
    assert wardwatch("profiles", "validate", env=env).returncode == 0
    # ... matches its advertisement ahead of the generic profile ...
    registry = ProfileRegistry.load(env=env)
    profile = registry.match_ble(Advertisement("TC1-XYZ", frozenset({"1810"})))
    assert profile is not None and profile.id == "test-cuff"
    # ... and decodes through the real command
    hex_payload = "00780050005d00"
    proc = wardwatch("decode", "--profile", "test-cuff", "--hex", hex_payload, env=env)
    assert proc.returncode == 0, proc.stdout
    (obs,) = orjson.loads(proc.stdout)["observations"]
    Observation.model_validate(obs)
    assert [c["valueQuantity"]["value"] for c in obs["component"]] == [120, 80, 93]


def test_worked_example_in_the_authoring_guide_validates(tmp_path: Path) -> None:
    guide = (default_docs_path().parent / "profiles.md").read_text(encoding="utf-8")
    example = guide.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "testco-tc1.yaml").write_text(example, encoding="utf-8")
    profiles, problems = check([SHIPPED_DIR, tmp_path])
    assert [str(p) for p in problems] == []
    assert "testco-tc1" in {p.id for p in profiles}
