"""Ingest pipeline and HTTP API on the embedded store: validation, idempotence, quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import ValidationError
from ingest.http import create_app
from ingest.pipeline import IngestPipeline, stored_row
from ingest.stores.sqlite import SqliteStore
from ingest.validation import Registry, lean_row, validate
from wardwatch.errors import ContractError
from wardwatch.fhir import bundle, facts_from_observation, observation_from_reading
from wardwatch.reading import Component, Reading
from wardwatch.store import CareTeam, Patient, StoredObservation
from wardwatch.vocabulary import KINDS

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
AT = NOW - timedelta(minutes=5)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "w.sqlite")
    s.migrate()
    s.upsert_care_team(CareTeam("t", "Team"))
    s.upsert_patient(Patient("p-1", "Synthetic One", "t"))
    s.upsert_patient(Patient("p-2", "Synthetic Two", "t"))
    s.pair_device("cuff-1", "p-1")
    s.pair_device("cuff-2", "p-2")
    return s


@pytest.fixture
def pipeline(store: SqliteStore) -> IngestPipeline:
    return IngestPipeline(store, clock=lambda: NOW)


def obs(
    sys_: float = 120,
    at: datetime = AT,
    device: str = "cuff-1",
    patient: str = "p-1",
    unit: str = "mm[Hg]",
) -> dict[str, object]:
    r = Reading(
        "blood_pressure",
        at,
        components=(
            Component("systolic", sys_, unit),
            Component("diastolic", 80 if unit == "mm[Hg]" else 10.7, unit),
        ),
    )
    return observation_from_reading(r, patient=patient, device=device, gateway="gw-1")


def test_bundle_is_stored_once_however_often_it_is_sent(
    pipeline: IngestPipeline, store: SqliteStore
) -> None:
    payload = orjson.dumps(
        bundle([obs(), obs(), obs(130, AT + timedelta(minutes=1))], bundle_id="b")
    )
    first = pipeline.ingest_bundle(payload, source="test")
    second = pipeline.ingest_bundle(payload, source="test")
    assert (first.stored, first.duplicates, first.bundle_id) == (2, 0, "b")
    assert (second.stored, second.duplicates) == (0, 2)
    assert store.count_observations() == 2
    assert first.ack()["accepted"] == second.ack()["accepted"]


def test_values_are_stored_in_the_canonical_unit(
    pipeline: IngestPipeline, store: SqliteStore
) -> None:
    pipeline.ingest_bundle(orjson.dumps(bundle([obs(16.0, unit="kPa")])), source="t")
    [row] = store.observations("p-1")
    assert row.components["systolic"] == pytest.approx(120.01, abs=0.01)
    assert orjson.loads(row.resource)["component"][0]["valueQuantity"]["code"] == "kPa"


@pytest.mark.parametrize(
    ("observation", "code"),
    [
        (obs(400), "implausible-value"),
        (obs(at=NOW + timedelta(days=2)), "time-in-future"),
        (obs(at=datetime(2000, 1, 1, tzinfo=UTC)), "time-too-early"),
        (obs(patient="p-404"), "unknown-patient"),
        (obs(device="cuff-404"), "unknown-device"),
        (obs(device="cuff-2"), "device-not-paired"),
        ({"resourceType": "Observation"}, "bad-observation"),
        ("not an object", "contract"),
    ],
)
def test_bad_observations_are_quarantined_with_their_reason(
    pipeline: IngestPipeline, store: SqliteStore, observation: object, code: str
) -> None:
    good = obs(125, AT - timedelta(minutes=1))
    payload = orjson.dumps(bundle([good])).replace(
        b'"entry":[', b'"entry":[{"resource":' + orjson.dumps(observation) + b"},"
    )
    result = pipeline.ingest_bundle(payload, source="mqtt:x")
    assert result.stored == 1, "the good observation beside the bad one is stored"
    [item] = store.list_quarantine()
    assert item.reason_code == code and item.source == "mqtt:x"
    assert orjson.loads(item.payload) == observation
    assert [r[1] for r in result.rejected] == [code]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x00\xffgarbage", "malformed-json"),
        (b'{"resourceType": "Patient"}', "bad-observation"),
        (b"[1, 2]", "contract"),
        (b'{"resourceType": "Bundle", "type": "searchset"}', "bad-observation"),
    ],
)
def test_unreadable_payloads_are_quarantined_whole(
    pipeline: IngestPipeline, store: SqliteStore, payload: bytes, code: str
) -> None:
    result = pipeline.ingest_bundle(payload, source="http:/fhir/Bundle")
    assert result.stored == 0
    [item] = store.list_quarantine()
    assert (item.reason_code, item.payload) == (code, payload)


def test_on_stored_hooks_see_rows_and_cannot_break_ingest(
    pipeline: IngestPipeline, store: SqliteStore
) -> None:
    seen: list[str] = []
    pipeline.on_stored.append(lambda rows: seen.extend(r.identifier for r in rows))

    def broken(rows: Sequence[StoredObservation]) -> None:
        raise ZeroDivisionError

    pipeline.on_stored.append(broken)
    result = pipeline.ingest_bundle(orjson.dumps(bundle([obs()])), source="t")
    assert result.stored == 1 and seen == result.accepted


def test_http_api(pipeline: IngestPipeline, store: SqliteStore) -> None:
    client = TestClient(create_app(pipeline, token="s3cret"))
    headers = {"Authorization": "Bearer s3cret"}
    body = orjson.dumps(bundle([obs(), obs(400, AT + timedelta(minutes=2))]))
    assert client.post("/fhir/Bundle", content=body).status_code == 401
    response = client.post("/fhir/Bundle", content=body, headers=headers)
    assert response.status_code == 200
    doc = response.json()
    assert doc["type"] == "batch-response"
    assert [e["response"]["status"] for e in doc["entry"]] == [
        "201 Created",
        "422 Unprocessable Entity",
    ]
    single = orjson.dumps(obs(121, AT + timedelta(minutes=3)))
    assert client.post("/fhir/Observation", content=single, headers=headers).status_code == 201
    assert client.post("/fhir/Observation", content=single, headers=headers).status_code == 200
    bad = client.post("/fhir/Observation", content=b"{", headers=headers)
    assert bad.status_code == 422 and bad.json()["resourceType"] == "OperationOutcome"
    assert store.count_observations() == 2
    assert [q.reason_code for q in store.list_quarantine()] == [
        "implausible-value",
        "malformed-json",
    ]


@pytest.mark.parametrize(
    ("content_type", "code"),
    [
        ("text/plain", "unsupported-content-type"),
        ("application/xml; charset=utf-8", "unsupported-content-type"),
        ("application/fhir+json; fhirVersion=4.0", None),
        ("Application/JSON", None),
        (None, None),
    ],
)
def test_declared_content_type_must_be_json(
    pipeline: IngestPipeline, store: SqliteStore, content_type: str | None, code: str | None
) -> None:
    payload = orjson.dumps(bundle([obs()]))
    result = pipeline.ingest_bundle(payload, source="mqtt:x", content_type=content_type)
    if code is None:
        assert result.stored == 1 and store.list_quarantine() == []
    else:
        assert result.stored == 0 and [r[1] for r in result.rejected] == [code]
        [item] = store.list_quarantine()
        assert (item.reason_code, item.payload) == (code, payload)


def test_oversized_payloads_are_quarantined_whole_unparsed(store: SqliteStore) -> None:
    pipeline = IngestPipeline(store, clock=lambda: NOW, max_payload_bytes=4096)
    payload = orjson.dumps(bundle([obs(120 + n % 10, AT - timedelta(minutes=n)) for n in range(8)]))
    assert len(payload) > 4096
    result = pipeline.ingest_bundle(payload, source="mqtt:x")
    assert result.stored == 0 and store.count_observations() == 0
    [item] = store.list_quarantine()
    assert item.reason_code == "too-large" and item.payload == payload
    assert str(len(payload)) in item.reason


def test_identifiers_must_be_uuids(pipeline: IngestPipeline, store: SqliteStore) -> None:
    """The identifier is a store key: only the contract's urn:uuid form gets there."""
    doc = obs()
    doc["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:abc\u0000"}]
    result = pipeline.ingest_bundle(
        orjson.dumps(bundle([doc, obs(121, AT - timedelta(1))])), source="t"
    )
    assert result.stored == 1
    assert [r[1] for r in result.rejected] == ["bad-observation"]


# -- the lean hot path never accepts what the reference path refuses ----------------------

REGISTRY = Registry(
    patient_enrolled=lambda p: p in {"p-1", "p-2"},
    device_patient={"dev-1": "p-1", "dev-2": "p-2", "dev-3": "p-9"}.get,
)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(
        [
            "Patient/p-1", "Patient/", "Device/dev-2", "Device/gw-2", "Observation", "Bundle",
            "mm[Hg]", "kPa", "/min", "%", "Cel", "mg/dL", "8480-6", "8867-4", "85354-9",
            "http://loinc.org", "http://unitsofmeasure.org", "urn:ietf:rfc:3986",
            "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8", "2026-01-05T08:00:00",
            "2026-01-05T08:00:00+01:00", "2036-01-05T08:00:00Z", "H", "Q", "unknown",
            "time-corrected: device clock 2026-01-05T08:00:00Z at hub time x (offset +0 s)",
        ]
    ),
    st.just([]),
    st.just({}),
    st.just([{"reference": "#coincident-time"}]),
)  # fmt: skip


def _reference(doc: object, gateway: str | None) -> StoredObservation | None:
    """What the reference path (facts + validate) makes of ``doc``: its row, or None."""
    try:
        if not isinstance(doc, dict):
            return None
        facts = facts_from_observation(doc)
        if gateway is not None and facts.gateway not in (None, gateway):
            return None
        validate(facts, now=NOW, registry=REGISTRY)
        return stored_row(facts, orjson.dumps(doc), NOW)
    except (ContractError, ValidationError):
        return None


@st.composite
def observations(draw: st.DrawFn) -> dict[str, object]:
    spec = KINDS[draw(st.sampled_from(sorted(KINDS)))]
    minutes = draw(st.integers(-60 * 24 * 365 * 30, 30))
    at = NOW + timedelta(minutes=minutes, seconds=draw(st.integers(0, 59)))
    device, patient = draw(
        st.sampled_from([("dev-1", "p-1"), ("dev-2", "p-2"), ("dev-2", "p-1"), ("dev-3", "p-9")])
    )

    def value(kind: str) -> tuple[float, str]:
        k = KINDS[kind]
        unit = draw(st.sampled_from(k.units))
        low, high = k.plausible or (0.0, 1000.0)
        return draw(st.floats(low - 10, high * 1.2, allow_nan=False)), unit

    if spec.components:
        comps = []
        for name in spec.components:
            v, u = value(name)
            comps.append(Component(name, v, u))
        reading = Reading(spec.name, at, components=tuple(comps))
    else:
        v, u = value(spec.name)
        reading = Reading(spec.name, at, value=v, unit=u)
    gateway = draw(st.sampled_from([None, "gw-1", "gw-2"]))
    return observation_from_reading(reading, patient=patient, device=device, gateway=gateway)


def _paths(doc: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out: list[tuple[str | int, ...]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


@settings(max_examples=400, deadline=None)
@given(doc=observations(), data=st.data())
def test_lean_path_accepts_only_what_the_reference_path_accepts_and_stores_the_same_row(
    doc: dict[str, object], data: st.DataObject
) -> None:
    sender = data.draw(st.sampled_from([None, "gw-1"]))
    # unchanged: both agree, and a valid reading takes the lean path
    assert lean_row(doc, gateway=sender, now=NOW, registry=REGISTRY) == _reference(doc, sender)
    # mutated anywhere, up to three times: the lean path accepts only what the reference does
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JUNK)
        lean = lean_row(doc, gateway=sender, now=NOW, registry=REGISTRY)
        if lean is not None:
            assert lean == _reference(doc, sender)


def test_an_entry_the_mapper_chokes_on_is_quarantined_not_fatal(
    pipeline: IngestPipeline, store: SqliteStore
) -> None:
    odd = obs()
    odd["contained"] = [{"resourceType": "Observation", "id": "x", "code": [1]}]
    odd["derivedFrom"] = [{"reference": "#x"}]
    payload = orjson.dumps(bundle([odd, obs(121, AT - timedelta(minutes=1))]))
    result = pipeline.ingest_bundle(payload, source="mqtt:x")
    assert result.stored == 1
    [item] = store.list_quarantine()
    assert item.reason_code in {"bad-observation", "contract"}
    assert orjson.loads(item.payload) == odd
