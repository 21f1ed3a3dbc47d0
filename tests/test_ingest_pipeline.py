"""Ingest pipeline and HTTP API on the embedded store: validation, idempotence, quarantine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from ingest.http import create_app
from ingest.pipeline import IngestPipeline
from ingest.stores.sqlite import SqliteStore
from wardwatch.fhir import bundle, observation_from_reading
from wardwatch.reading import Component, Reading
from wardwatch.store import CareTeam, Patient

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
    pipeline.on_stored.append(lambda rows: 1 / 0)  # type: ignore[func-returns-value]
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
