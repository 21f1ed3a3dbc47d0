"""The shared contract: vocabulary codes, readings, FHIR Observations (validated with R4B)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

from tests.shared import shared_path
from wardwatch.errors import ContractError, ObservationError, UnitError, UnknownKindError
from wardwatch.fhir import (
    bundle,
    facts_from_observation,
    observation_from_reading,
    reading_id,
)
from wardwatch.reading import Component, Reading, TimeCorrection, reading
from wardwatch.units import convert, normalize_unit
from wardwatch.vocabulary import KINDS, kind

AT = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)


def bp(sys_: float = 120, dia: float = 80, mean: float | None = 93) -> Reading:
    comps = [Component("systolic", sys_, "mm[Hg]"), Component("diastolic", dia, "mm[Hg]")]
    if mean is not None:
        comps.append(Component("mean_arterial_pressure", mean, "mm[Hg]"))
    return Reading("blood_pressure", AT, components=tuple(comps))


def test_vocabulary_matches_shared_code_map() -> None:
    code_map = json.loads(shared_path("fhir", "code-map.json").read_text())
    by_mdc = {m["mdc_code"]: m for m in code_map["measurements"] if m["mdc_code"]}
    for spec in KINDS.values():
        if spec.mdc_code is None:
            continue
        row = by_mdc.get(spec.mdc_code)
        assert row is not None, f"{spec.name}: MDC {spec.mdc_code} not in code-map.json"
        assert row["mdc_refid"] == spec.mdc_refid
        assert spec.loinc in row["loinc"] or spec.name == "body_fat", spec.name
        # the canonical unit is the map's; others (kPa from BLE cuffs) are converted
        if spec.canonical_unit is not None:
            assert spec.canonical_unit in (row["ucum"] or ""), spec.name
    # the classic iomt-fhir mistake: diastolic is 8462-4, never 8867-4
    assert kind("diastolic").loinc == "8462-4"


@pytest.mark.parametrize(
    "r",
    [
        bp(),
        bp(mean=None),
        Reading("heart_rate", AT, 72, "/min", mdc_code=149546),
        Reading("spo2", AT, 97, "%"),
        Reading("spo2", AT, None, "%", data_absent="not-a-number"),
        Reading("body_temperature", AT, 37.2, "Cel"),
        Reading("body_weight", AT, 181.4, "[lb_av]"),
        Reading("glucose", AT, 5.4, "mmol/L"),
        Reading("glucose", AT, 98, "mg/dL", interpretation=("N",)),
        Reading("cgm_glucose", AT, 140, "mg/dL"),
        Reading("respiratory_rate", AT, 16, "/min"),
        Reading("steps", AT, 4200, "{steps}"),
        Reading("bmi", AT, 24.1, "kg/m2"),
        Reading(
            "blood_pressure",
            AT,
            components=(
                Component("systolic", None, "mm[Hg]", "not-a-number"),
                Component("diastolic", 80, "mm[Hg]"),
            ),
            device_status=("cuff fit loose",),
        ),
        Reading(
            "heart_rate",
            AT,
            64,
            "/min",
            time_correction=TimeCorrection(AT - timedelta(days=400), AT),
        ),
        Reading(
            "spo2",
            AT,
            97,
            "%",
            time_correction=TimeCorrection(AT - timedelta(seconds=20), AT, corrected=False),
        ),
        Reading(
            "body_weight",
            AT,
            81.5,
            "kg",
            time_correction=TimeCorrection(
                datetime(2000, 1, 1, 0, 7, tzinfo=UTC),
                AT,
                corrected=False,
                fault="device clock not set (reads 2000-01-01T00:07:00Z)",
            ),
        ),
        Reading(
            "body_temperature",
            AT,
            37.0,
            "Cel",
            time_correction=TimeCorrection(
                None, AT, corrected=False, fault="device clock does not know the date"
            ),
        ),
    ],
    ids=lambda r: r.kind,
)
def test_every_observation_validates_and_maps_back(r: Reading) -> None:
    obs = observation_from_reading(r, patient="p-001", device="dev-1", gateway="gw-1")
    Observation.model_validate(obs)
    facts = facts_from_observation(json.loads(json.dumps(obs)))
    assert facts.patient == "p-001" and facts.device == "dev-1" and facts.gateway == "gw-1"
    # identity: the time as the device reported it (the corrected time is the effective one)
    assert facts.identifier == reading_id("dev-1", r.reported_at, r.kind)
    back = facts.reading
    assert (back.kind, back.at, back.value, back.data_absent) == (
        r.kind,
        r.at,
        r.value,
        r.data_absent,
    )
    if r.value is not None:
        assert back.unit == r.unit
    assert {c.kind: (c.value, c.data_absent) for c in back.components} == {
        c.kind: (c.value, c.data_absent) for c in r.components
    }
    assert back.time_correction == r.time_correction


def test_blood_pressure_panel_shape() -> None:
    obs = observation_from_reading(bp(186, 124, 145), patient="p", device="d")
    assert obs["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bp"]
    assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
    assert "valueQuantity" not in obs
    codes = [[c["code"] for c in comp["code"]["coding"]] for comp in obs["component"]]
    assert codes == [["150021", "8480-6"], ["150022", "8462-4"], ["150023", "8478-0"]]
    assert obs["component"][0]["valueQuantity"] == {
        "value": 186,
        "unit": "mm[Hg]",
        "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]",
    }
    assert obs["subject"] == {"reference": "Patient/p"}
    assert obs["device"] == {"reference": "Device/d"}
    assert obs["effectiveDateTime"] == "2026-01-05T08:30:00Z"


def test_glucose_is_laboratory_with_unit_specific_loinc() -> None:
    mg = observation_from_reading(Reading("glucose", AT, 98, "mg/dL"), patient="p", device="d")
    mmol = observation_from_reading(Reading("glucose", AT, 5.4, "mmol/L"), patient="p", device="d")
    assert mg["category"][0]["coding"][0]["code"] == "laboratory"
    assert mg["code"]["coding"][1]["code"] == "41653-7"
    assert mmol["code"]["coding"][1]["code"] == "14743-9"


def test_identifier_is_stable_and_distinguishes_device_time_kind() -> None:
    a = reading_id("d", AT, "blood_pressure")
    assert a == reading_id("d", AT.astimezone(timezone(timedelta(hours=-5))), "blood_pressure")
    assert (
        len(
            {
                a,
                reading_id("e", AT, "blood_pressure"),
                reading_id("d", AT + timedelta(seconds=1), "blood_pressure"),
                reading_id("d", AT, "heart_rate"),
            }
        )
        == 4
    )


def test_bundle_is_a_valid_batch_of_puts() -> None:
    obs = [
        observation_from_reading(r, patient="p", device="d")
        for r in (bp(), Reading("heart_rate", AT, 70, "/min"))
    ]
    doc = bundle(obs, bundle_id="b-1")
    Bundle.model_validate(doc)
    assert doc["type"] == "batch"
    assert [e["request"] for e in doc["entry"]] == [
        {"method": "PUT", "url": f"Observation/{o['id']}"} for o in obs
    ]


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Reading("nonsense", AT, 1, "%"), UnknownKindError),
        (lambda: Reading("heart_rate", AT, 70, "mm[Hg]"), UnitError),
        (lambda: Reading("heart_rate", AT.replace(tzinfo=None), 70, "/min"), ContractError),
        (lambda: Reading("heart_rate", AT, float("nan"), "/min"), ContractError),
        (lambda: Reading("heart_rate", AT, None, "/min"), ContractError),
        (lambda: Reading("heart_rate", AT, 70, None), ContractError),
        (lambda: Reading("blood_pressure", AT, 120, "mm[Hg]"), ContractError),
        (
            lambda: Reading("blood_pressure", AT, components=(Component("heart_rate", 1, "/min"),)),
            ContractError,
        ),
        (lambda: Reading("heart_rate", AT, 70, "/min", interpretation=("BOGUS",)), ContractError),
        (lambda: Reading("spo2", AT, None, "%", data_absent="because"), ContractError),
    ],
)
def test_readings_refuse_what_the_contract_forbids(build: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.update(resourceType="Patient"), "not Observation"),
        (lambda o: o.pop("subject"), "subject"),
        (lambda o: o.update(subject={"reference": "Group/x"}), "Patient/"),
        (lambda o: o.pop("device"), "device"),
        (lambda o: o.update(effectiveDateTime="yesterday"), "ISO 8601"),
        (lambda o: o.update(effectiveDateTime="2026-01-05T08:30:00"), "time zone"),
        (
            lambda o: o.update(code={"coding": [{"system": "http://loinc.org", "code": "0-0"}]}),
            "LOINC",
        ),
        (lambda o: o.pop("identifier"), "identifier"),
        (lambda o: o["valueQuantity"].update(value="72"), "not a number"),
        (lambda o: o["valueQuantity"].update(system="http://example.org"), "UCUM"),
        (lambda o: o["valueQuantity"].update(code="bpm", unit="bpm"), "not allowed"),
        (lambda o: o.pop("valueQuantity"), "neither valueQuantity"),
    ],
)
def test_malformed_observations_are_named(mutate: object, message: str) -> None:
    obs = observation_from_reading(Reading("heart_rate", AT, 72, "/min"), patient="p", device="d")
    mutate(obs)  # type: ignore[operator]
    with pytest.raises(ContractError) as info:
        facts_from_observation(obs)
    assert message in str(info.value)
    if message != "not allowed":
        assert isinstance(info.value, ObservationError)


def test_units() -> None:
    assert normalize_unit("mmHg") == "mm[Hg]"
    assert normalize_unit("bpm") == "/min"
    assert normalize_unit("lb") == "[lb_av]"
    assert convert(1.0, "[lb_av]", "kg") == pytest.approx(0.45359237)
    assert convert(98.6, "[degF]", "Cel") == pytest.approx(37.0)
    assert convert(16.0, "kPa", "mm[Hg]") == pytest.approx(120.01, abs=0.01)
    assert convert(5.5, "mmol/L", "mg/dL") == pytest.approx(99.1, abs=0.1)
    with pytest.raises(UnitError):
        normalize_unit("furlongs")
    with pytest.raises(UnitError):
        convert(1.0, "kg", "Cel")
    assert reading("heart_rate", 70, "bpm", AT).unit == "/min"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o["contained"][0].update(code=[1]), "has no code"),
        (lambda o: o["contained"][0]["code"].update(coding={"code": "x"}), "coding is not a list"),
        (lambda o: o.update(contained=7), "contained is not a list"),
        (lambda o: o.update(derivedFrom="#cts"), "derivedFrom is not a list"),
    ],
)
def test_malformed_coincident_time_stamps_are_named(mutate: object, message: str) -> None:
    corrected = Reading(
        "heart_rate", AT, 64, "/min", time_correction=TimeCorrection(AT - timedelta(hours=2), AT)
    )
    obs = observation_from_reading(corrected, patient="p", device="d")
    mutate(obs)  # type: ignore[operator]
    with pytest.raises(ObservationError, match=message):
        facts_from_observation(obs)
