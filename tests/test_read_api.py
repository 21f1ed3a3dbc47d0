"""The audited FHIR read API (GET /fhir/Observation, GET /fhir/Observation/{id}).

Runs on the SQLite store and on TimescaleDB. Observations go in through the real write
path (POST /fhir/Bundle -> IngestPipeline), come out through the read API and are checked
against what was sent and against the fhir.resources R4B models.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle as R4BBundle
from fhir.resources.R4B.observation import Observation as R4BObservation

from ingest.fhir_search import SearchParameterError, date_range, parse_search
from ingest.http import create_app
from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from wardwatch.fhir import bundle, observation_from_reading
from wardwatch.reading import Component, Reading
from wardwatch.store import CareTeam, Patient, Store

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
T0 = datetime(2026, 1, 4, 0, 0, tzinfo=UTC)
WRITE_TOKEN = "write-token-0123456789"
READ_TOKEN = "read-token-abcdefghijklmnop"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
AUDIT_AT = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("timescale", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:{tmp_path / 'read.db'}"
    if request.param == "timescale":
        url = request.getfixturevalue("pg_dsn")
    opened = open_store(url)
    opened.upsert_care_team(CareTeam("t", "Team"))
    for n in (1, 2):
        opened.upsert_patient(Patient(f"p-00{n}", f"Synthetic {n}", "t"))
        opened.pair_device(f"strap-{n}", f"p-00{n}")
        opened.pair_device(f"oxi-{n}", f"p-00{n}")
        opened.pair_device(f"cuff-{n}", f"p-00{n}")
    try:
        yield opened
    finally:
        opened.close()


def _app(store: Store, read_token: str | None = READ_TOKEN) -> TestClient:
    pipeline = IngestPipeline(store, clock=lambda: NOW)
    app = create_app(
        pipeline,
        token=WRITE_TOKEN,
        read_token=read_token,
        read_principal="nurse-station-7",
        clock=lambda: AUDIT_AT,
    )
    return TestClient(app)


def _readings(patient: int) -> list[dict[str, Any]]:
    docs = []
    for i in range(25):  # heart rate every 10 minutes from T0
        r = Reading("heart_rate", T0 + timedelta(minutes=10 * i), 60.0 + i, "/min")
        docs.append(
            observation_from_reading(r, patient=f"p-00{patient}", device=f"strap-{patient}")
        )
    for i in range(6):  # SpO2 hourly, on the half hour
        r = Reading("spo2", T0 + timedelta(minutes=60 * i + 30), 95.0 + i % 3, "%")
        docs.append(observation_from_reading(r, patient=f"p-00{patient}", device=f"oxi-{patient}"))
    bp = Reading(
        "blood_pressure",
        NOW - timedelta(hours=1),
        components=(Component("systolic", 131, "mm[Hg]"), Component("diastolic", 84, "mm[Hg]")),
    )
    docs.append(observation_from_reading(bp, patient=f"p-00{patient}", device=f"cuff-{patient}"))
    return docs


@pytest.fixture
def client(store: Store) -> TestClient:
    c = _app(store)
    for patient in (1, 2):
        payload = orjson.dumps(bundle(_readings(patient), bundle_id=f"b-{patient}"))
        answer = c.post(
            "/fhir/Bundle", content=payload, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}
        )
        assert answer.status_code == 200
        assert all(e["response"]["status"] == "201 Created" for e in answer.json()["entry"])
    return c


def _search(client: TestClient, **params: Any) -> dict[str, Any]:
    answer = client.get("/fhir/Observation", params=params, headers=READ)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    doc: dict[str, Any] = answer.json()
    return doc


def _ids(doc: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in doc.get("entry", []) if e["search"]["mode"] == "match"]


def _expected(patient: int, kinds: tuple[str, ...] = ()) -> list[str]:
    """Ids of a patient's readings in (time, id) order, as the API must return them."""
    docs = [
        d
        for d in _readings(patient)
        if not kinds or any(c["code"] in kinds for c in d["code"]["coding"])
    ]
    return [d["id"] for d in sorted(docs, key=lambda d: (d["effectiveDateTime"], d["id"]))]


# -- search -----------------------------------------------------------------------------------


def test_paging_returns_every_row_exactly_once(client: TestClient) -> None:
    doc = _search(client, patient="p-001", _count=4)
    seen: list[str] = []
    pages = 0
    while pages < 20:  # a cursor that does not advance must fail, not hang
        pages += 1
        R4BBundle.model_validate(doc)
        assert doc["type"] == "searchset"
        assert doc["total"] == 32
        links = {link["relation"]: link["url"] for link in doc["link"]}
        assert dict(parse_qsl(urlsplit(links["self"]).query))["patient"] == "p-001"
        for entry in doc["entry"]:
            assert entry["search"] == {"mode": "match"}
            assert entry["fullUrl"].endswith(f"/fhir/Observation/{entry['resource']['id']}")
            R4BObservation.model_validate(entry["resource"])
            assert entry["resource"]["subject"] == {"reference": "Patient/p-001"}
        seen += _ids(doc)
        if "next" not in links:
            break
        parts = urlsplit(links["next"])
        answer = client.get(f"{parts.path}?{parts.query}", headers=READ)
        assert answer.status_code == 200, answer.text
        doc = answer.json()
    assert pages == 8
    assert seen == _expected(1)


def test_search_by_code_in_every_accepted_form(client: TestClient) -> None:
    heart = _expected(1, ("8867-4",))
    spo2 = _expected(1, ("59408-5", "2708-6"))
    forms = {
        "http://loinc.org|8867-4": heart,
        "8867-4": heart,
        "urn:iso:std:iso:11073:10101|147842": heart,
        "147842": heart,
        "149530": heart,  # pulse rate from an oximeter is stored as heart rate
        "http://loinc.org|2708-6": spo2,
        "http://loinc.org|8867-4,150456": _expected(1, ("8867-4", "59408-5")),
    }
    for code, expected in forms.items():
        doc = _search(client, patient="Patient/p-001", code=code, _count=100)
        assert _ids(doc) == expected, code
        assert doc["total"] == len(expected)
    # a code we never store: no match, and an outcome saying why
    doc = _search(client, patient="p-001", code="http://loinc.org|1234-5")
    assert doc["total"] == 0
    [outcome] = doc["entry"]
    assert outcome["search"]["mode"] == "outcome"
    assert "1234-5" in outcome["resource"]["issue"][0]["details"]["text"]
    # repeated code parameters are ANDed
    assert _search(client, patient="p-001", code=["8867-4", "59408-5"])["total"] == 0


def test_search_by_date_with_prefixes(client: TestClient) -> None:
    every = _expected(1)
    times = {d["id"]: d["effectiveDateTime"] for d in _readings(1)}

    def ids_for(*dates: str) -> list[str]:
        return _ids(_search(client, patient="p-001", date=list(dates), _count=1000))

    def where(test: Any) -> list[str]:
        return [i for i in every if test(times[i])]

    assert ids_for("ge2026-01-04T01:00:00Z", "le2026-01-04T02:00:00Z") == where(
        lambda t: "2026-01-04T01:00:00Z" <= t <= "2026-01-04T02:00:00Z"
    )
    assert ids_for("gt2026-01-04T01:00:00Z", "lt2026-01-04T02:00:00Z") == where(
        lambda t: "2026-01-04T01:00:00Z" < t < "2026-01-04T02:00:00Z"
    )
    # a day is [00:00, 24:00) UTC; eq on a day, and gt/le of a day's whole range
    assert ids_for("2026-01-05") == where(lambda t: t.startswith("2026-01-05"))
    assert ids_for("eq2026-01-04") == where(lambda t: t.startswith("2026-01-04"))
    assert ids_for("gt2026-01-04") == where(lambda t: t >= "2026-01-05")
    assert ids_for("le2026-01-04") == where(lambda t: t < "2026-01-05")
    assert ids_for("lt2026-01-04") == []
    # an offset names the same instant (+ must be sent encoded: %2B)
    assert ids_for("eq2026-01-04T02:30:00+02:00") == where(lambda t: t == "2026-01-04T00:30:00Z")
    assert ids_for("ge2026-01-05", "lt2026-01-04") == []


def test_count_zero_gives_the_total_only_and_total_none_skips_it(client: TestClient) -> None:
    doc = _search(client, patient="p-002", _count=0)
    assert doc["total"] == 32
    assert "entry" not in doc
    doc = _search(client, patient="p-002", _total="none", _count=5)
    assert "total" not in doc
    assert len(_ids(doc)) == 5
    assert "_total=none" in next(x["url"] for x in doc["link"] if x["relation"] == "next")


# -- read by id --------------------------------------------------------------------------------


def test_read_by_id_returns_the_stored_observation(client: TestClient) -> None:
    sent = _readings(2)[3]
    answer = client.get(f"/fhir/Observation/{sent['id']}", headers=READ)
    assert answer.status_code == 200
    assert answer.json() == sent  # as received, with id set to the reading id
    R4BObservation.model_validate(answer.json())
    missing = client.get("/fhir/Observation/00000000-0000-0000-0000-000000000000", headers=READ)
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    assert missing.json()["issue"][0]["code"] == "not-found"


# -- authentication and audit ------------------------------------------------------------------


def test_reads_need_the_read_token_and_every_attempt_is_audited(
    client: TestClient, store: Store
) -> None:
    wrong = [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {WRITE_TOKEN}"},  # the write token does not read
        {"Authorization": READ_TOKEN},
    ]
    for headers in wrong:
        answer = client.get("/fhir/Observation", params={"patient": "p-001"}, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert "entry" not in answer.json()
    sent = _readings(1)[0]
    assert client.get(f"/fhir/Observation/{sent['id']}").status_code == 401
    assert client.get(f"/fhir/Observation/{sent['id']}", headers=READ).status_code == 200
    _search(client, patient="p-001", code="8867-4", _count=2)

    events = store.list_audit()
    refused = [e for e in events if e.outcome == "refused"]
    assert len(refused) == 5
    assert {e.principal for e in refused} == {"anonymous"}
    assert [e.patient for e in refused] == ["p-001"] * 4 + [None]
    assert refused[-1].resource == f"Observation/{sent['id']}"
    assert all(e.detail == "a valid read bearer token is required" for e in refused)
    read, search = [e for e in events if e.outcome == "success"]
    assert (read.principal, read.action, read.patient) == ("nurse-station-7", "read", "p-001")
    assert read.resource == f"Observation/{sent['id']}"
    assert (search.principal, search.action, search.patient) == (
        "nurse-station-7",
        "search",
        "p-001",
    )
    assert search.resource == "Observation?patient=p-001&code=8867-4&_count=2"
    assert search.detail == "2 entries"
    assert {e.remote for e in events} == {"testclient"}
    assert {e.at for e in events} == {AUDIT_AT}
    assert store.list_audit(patient="p-002") == []


def test_without_a_read_token_every_read_is_refused(store: Store) -> None:
    client = _app(store, read_token=None)
    for url in ("/fhir/Observation?patient=p-001", "/fhir/Observation/abc"):
        answer = client.get(url, headers=READ)
        assert answer.status_code == 403
        assert answer.json()["issue"][0]["code"] == "forbidden"
    events = store.list_audit()
    assert [(e.action, e.outcome, e.principal) for e in events] == [
        ("search", "refused", "anonymous"),
        ("read", "refused", "anonymous"),
    ]


def test_weak_or_shared_read_tokens_are_refused_at_start(store: Store) -> None:
    pipeline = IngestPipeline(store)
    with pytest.raises(ValueError, match="at least 16"):
        create_app(pipeline, read_token="short")
    with pytest.raises(ValueError, match="differ from the write token"):
        create_app(pipeline, token=READ_TOKEN, read_token=READ_TOKEN)


# -- invalid requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("patient=p-001&subject=p-001", "unknown or unsupported parameter 'subject'"),
        ("code=8867-4", "patient is required"),
        ("patient=p-001&patient=p-002", "patient may be given once"),
        ("patient=p-001,p-002", "is not a Patient id"),
        ("patient=p-001&date=2026-13-01", "not a valid time"),
        ("patient=p-001&date=ge2026-01-04T10:00:00", "no time zone"),
        ("patient=p-001&date=ge2026-01-04T10:00:00+01:00", "encode '+'"),
        ("patient=p-001&date=ne2026-01-04", "prefix 'ne' is not supported"),
        ("patient=p-001&_count=-1", "not a non-negative integer"),
        ("patient=p-001&_total=maybe", "_total 'maybe'"),
        ("patient=p-001&code=|8867-4", "give system|code"),
        ("patient=p-001&_page=garbage", "_page is not a page token"),
        ("patient=p-001&code:text=pulse", "unknown or unsupported parameter 'code:text'"),
    ],
)
def test_invalid_searches_are_400_with_an_operation_outcome(
    client: TestClient, store: Store, query: str, message: str
) -> None:
    answer = client.get(f"/fhir/Observation?{query}", headers=READ)
    assert answer.status_code == 400
    doc = answer.json()
    assert doc["resourceType"] == "OperationOutcome"
    assert message in doc["issue"][0]["details"]["text"]
    [event] = store.list_audit()
    assert (event.outcome, event.principal) == ("invalid", "nurse-station-7")


def test_a_page_token_only_continues_its_own_search(client: TestClient) -> None:
    doc = _search(client, patient="p-001", code="8867-4", _count=2)
    next_url = next(x["url"] for x in doc["link"] if x["relation"] == "next")
    token = dict(parse_qsl(urlsplit(next_url).query))["_page"]
    other = client.get(
        "/fhir/Observation", params={"patient": "p-002", "_page": token}, headers=READ
    )
    assert other.status_code == 400
    assert "different search" in other.text
    # a different page size continues the same search
    more = _search(client, patient="p-001", code="8867-4", _count=10, _page=token)
    assert _ids(more) == _expected(1, ("8867-4",))[2:12]


def test_lenient_handling_ignores_unknown_parameters(client: TestClient) -> None:
    answer = client.get(
        "/fhir/Observation",
        params={"patient": "p-001", "_sort": "-date", "_count": "1"},
        headers={**READ, "Prefer": "return=minimal, handling=lenient"},
    )
    assert answer.status_code == 200
    doc = answer.json()
    assert "_sort" not in doc["link"][0]["url"]
    assert doc["entry"][-1]["search"]["mode"] == "outcome"
    assert "'_sort' is not supported" in doc["entry"][-1]["resource"]["issue"][0]["details"]["text"]


# -- FHIR date precision (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-02", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        (
            "2026-01-04T10:15Z",
            datetime(2026, 1, 4, 10, 15, tzinfo=UTC),
            datetime(2026, 1, 4, 10, 16, tzinfo=UTC),
        ),
        (
            "2026-01-04T10:15:30-05:00",
            datetime(2026, 1, 4, 15, 15, 30, tzinfo=UTC),
            datetime(2026, 1, 4, 15, 15, 31, tzinfo=UTC),
        ),
        (
            "2026-01-04T10:15:30.25Z",
            datetime(2026, 1, 4, 10, 15, 30, 250_000, tzinfo=UTC),
            datetime(2026, 1, 4, 10, 15, 30, 260_000, tzinfo=UTC),
        ),
    ],
)
def test_date_values_cover_their_precision(text: str, low: datetime, high: datetime) -> None:
    assert date_range(text) == (low, high)
    got_low, _ = date_range(text)
    assert got_low.utcoffset() == timedelta(0)


def test_parse_search_rejects_fractions_beyond_microseconds() -> None:
    with pytest.raises(SearchParameterError, match="microseconds"):
        parse_search([("patient", "p-1"), ("date", "2026-01-04T10:15:30.1234567Z")])


def test_ingest_run_refuses_a_short_read_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wardwatch.cli import main

    code = main(
        ["ingest", "run", "--store", f"sqlite:{tmp_path / 'x.db'}", "--read-token", "short"]
    )
    assert code == 2
    assert "read token must be at least 16 characters" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()  # refused before anything started
