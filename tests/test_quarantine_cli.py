"""`wardwatch quarantine list|reingest`: refused input is re-run through ingest after a fix.

Bundles come in as an MQTT worker hands them to the pipeline (source ``mqtt:<topic>``,
gateway from the topic); some entries are refused (unknown patient, unknown device, wrong
gateway, not JSON). The patient is then enrolled and the device paired, and the CLI
re-ingests: what now passes is stored and released (kept as evidence), the rest stays held
with its new reason, and every attempt is in the audit trail.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from wardwatch import topics
from wardwatch.cli import main
from wardwatch.fhir import bundle, observation_from_reading
from wardwatch.reading import Component, Reading
from wardwatch.store import CareTeam, Patient, Store

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
AT = NOW - timedelta(minutes=5)
TOPIC = topics.obs_topic("gw-1")


@pytest.fixture(params=["sqlite", pytest.param("timescale", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'q.db'}"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    opened.upsert_care_team(CareTeam("t", "Team"))
    opened.upsert_patient(Patient("p-001", "Synthetic One", "t"))
    opened.pair_device("cuff-1", "p-001")
    try:
        yield opened
    finally:
        opened.close()


def bp(
    patient: str, device: str, sys_: float, *, gateway: str = "gw-1", at: datetime = AT
) -> dict[str, Any]:
    r = Reading(
        "blood_pressure",
        at,
        components=(Component("systolic", sys_, "mm[Hg]"), Component("diastolic", 80, "mm[Hg]")),
    )
    return observation_from_reading(r, patient=patient, device=device, gateway=gateway)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """Exit code, stdout (parsed when --json and successful) and stderr of one command."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, orjson.loads(out) if "--json" in argv and code == 0 else out, err


def test_reingest_after_enrolling_and_pairing_releases_what_now_passes(
    store: Store, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stored_first = bp("p-001", "cuff-1", 120)
    new_patient = bp("p-002", "cuff-2", 131)
    new_device = bp("p-001", "cuff-9", 142)
    wrong_gateway = bp("p-001", "cuff-1", 125, gateway="gw-2", at=AT + timedelta(minutes=1))
    payload = orjson.dumps(bundle([stored_first, new_patient, new_device, wrong_gateway]))
    pipeline = IngestPipeline(store, clock=lambda: NOW)
    pipeline.ingest_bundles([(payload, f"mqtt:{TOPIC}", "gw-1"), (b"{not json", "mqtt:x", None)])
    assert store.count_observations() == 1

    code, held, _ = cli(capsys, "quarantine", "list", "--store", store_url, "--json")
    assert code == 0
    assert [(h["reason_code"], h["state"]) for h in held] == [
        ("unknown-patient", "held"),
        ("unknown-device", "held"),
        ("wrong-gateway", "held"),
        ("malformed-json", "held"),
    ]
    assert "payload" not in held[0]  # patient data only on request
    ids = [h["id"] for h in held]

    # the fix: p-002 enrolled with their cuff, cuff-9 paired to p-001
    store.upsert_patient(Patient("p-002", "Synthetic Two", "t"))
    store.pair_device("cuff-2", "p-002")
    store.pair_device("cuff-9", "p-001")

    code, report, _ = cli(capsys, "quarantine", "reingest", "--store", store_url, "--all", "--json")
    assert code == 0
    assert report["released"] == ids[:2]
    assert [(h["id"], h["reason_code"]) for h in report["held"]] == [
        (ids[2], "wrong-gateway"),
        (ids[3], "malformed-json"),
    ]
    assert report["stored"] == 2

    for doc in (new_patient, new_device):
        row = store.get_observation(doc["id"])
        assert row is not None
        assert orjson.loads(row.resource) == doc
        assert row.received_at == NOW  # judged and stamped as of its arrival
    assert store.get_observation(wrong_gateway["id"]) is None
    assert store.count_observations() == 3

    code, after, _ = cli(capsys, "quarantine", "list", "--store", store_url, "--json", "--payload")
    assert code == 0
    assert [a["state"] for a in after] == ["released", "released", "held", "held"]
    assert all(a["released_at"] for a in after[:2])
    assert all(a["retried_at"] and not a["released_at"] for a in after[2:])
    assert orjson.loads(after[0]["payload"]) == new_patient  # the evidence is kept
    assert after[3]["payload"] == "{not json"

    events = store.list_audit(action="reingest")
    assert [(e.resource, e.outcome) for e in events] == [
        (f"Quarantine/{ids[0]}", "success"),
        (f"Quarantine/{ids[1]}", "success"),
        (f"Quarantine/{ids[2]}", "refused"),
        (f"Quarantine/{ids[3]}", "refused"),
    ]
    assert {e.principal for e in events} == {f"cli:{getpass.getuser()}"}
    assert [e.patient for e in events] == ["p-002", "p-001", None, None]
    assert events[0].detail == "released (was unknown-patient)"
    assert events[2].detail == "wrong-gateway -> wrong-gateway"

    # a released item is not re-ingested again
    code, _, err = cli(capsys, "quarantine", "reingest", "--store", store_url, str(ids[0]))
    assert code == 2
    assert f"(unknown or already released): {ids[0]}" in err


def test_reingest_by_id_and_reason_code(
    store: Store, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = IngestPipeline(store, clock=lambda: NOW)
    docs = [bp("p-002", "cuff-2", 130), bp("p-003", "cuff-3", 131), bp("p-001", "cuff-7", 132)]
    pipeline.ingest_bundle(orjson.dumps(bundle(docs)), source="http:/fhir/Bundle")
    first, second, third = (i.id for i in store.list_quarantine())
    for n in (2, 3):
        store.upsert_patient(Patient(f"p-00{n}", f"Synthetic {n}", "t"))
        store.pair_device(f"cuff-{n}", f"p-00{n}")
    store.pair_device("cuff-7", "p-001")

    # only the unknown-device item, although all three would now pass
    code, report, _ = cli(
        capsys,
        "quarantine",
        "reingest",
        "--store",
        store_url,
        "--all",
        "--reason-code",
        "unknown-device",
        "--json",
    )
    assert (code, report["released"], report["held"]) == (0, [third], [])
    code, report, _ = cli(capsys, "quarantine", "reingest", "--store", store_url, str(second))
    assert code == 0
    assert "1 released (1 observations newly stored), 0 still held" in report
    assert [i.id for i in store.list_quarantine(state="held")] == [first]

    code, _, err = cli(capsys, "quarantine", "reingest", "--store", store_url)
    assert code == 2
    assert "give the IDs to re-ingest, or --all" in err
    code, _, err = cli(capsys, "quarantine", "reingest", "--store", store_url, str(first), "999")
    assert code == 2
    assert err.endswith("(unknown or already released): 999\n")
    assert [i.id for i in store.list_quarantine(state="held")] == [first]  # nothing done

    code, text, _ = cli(capsys, "quarantine", "list", "--store", store_url, "--state", "held")
    assert code == 0
    [line, reason] = text.splitlines()
    assert line.split()[0] == str(first)
    assert "unknown-patient" in line
    assert "held" in line
    assert reason.strip() == "subject is not an enrolled patient"


def test_reingest_with_alerting_raises_the_alert_a_held_reading_warrants(
    store: Store, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = IngestPipeline(store, clock=lambda: NOW)
    crisis = bp("p-002", "cuff-2", 196)
    pipeline.ingest_bundle(orjson.dumps(bundle([crisis])), source="http:/fhir/Bundle")
    store.upsert_patient(Patient("p-002", "Synthetic Two", "t"))
    store.pair_device("cuff-2", "p-002")
    code, report, _ = cli(
        capsys, "quarantine", "reingest", "--store", store_url, "--all", "--with-alerting", "--json"
    )
    assert (code, report["stored"]) == (0, 1)
    alerts = store.list_alerts(patient="p-002")
    assert len(alerts) == 1
    assert crisis["id"] in alerts[0].observations
