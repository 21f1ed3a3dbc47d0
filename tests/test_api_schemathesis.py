"""Schemathesis against the nurse API's own OpenAPI document, as a logged-in user.

Issue 7: "schemathesis against the OpenAPI document with an authenticated user finds no
server error". Each run builds the real app (``create_app``) over a SQLite store seeded the
way the system fills it (tests/support/browser.py: care teams, nurses, patients with
readings through the ingest pipeline and the alert engine, a care-plan proposal), logs in
through ``POST /api/v1/auth/login`` and sends ``Authorization: Bearer <token>`` with every
generated request. Every operation of ``/api/v1/openapi.json`` is exercised, valid and
invalid inputs (schemathesis' positive and negative modes), with its built-in checks (all
but one, see :data:`EXCLUDED_CHECKS`): no server error, status codes, content types,
headers and response bodies as documented, invalid input refused, 405 with a true
``Allow`` for other methods, and that dropping or spoiling the token is refused
(``ignored_auth``). Once as a nurse of team A, once as a system admin.

- Random identifiers almost never name a seeded patient, alert, device or proposal, so
  path, query and body values are mixed with the seeded ones (own team's and the other
  team's); every patient has a care plan. A run must answer each read with a 2xx at
  least once (:class:`Tally`), so a token that stopped working cannot pass on 401s.
- ``POST /api/v1/auth/logout`` revokes the token it is sent, so its cases get a fresh
  session each (logged in through the same access service); the run's token stays valid.
- ``GET /api/v1/events`` is excluded: it is a Server-Sent Events stream that only ends
  when the client goes away, and schemathesis reads a response to its end. It is covered
  by tests/test_api.py (what each caller receives, Last-Event-ID replay) and
  tests/test_api_access.py (refusals and audit).

The run is bounded and deterministic (Hypothesis derandomised, no example database):
``MAX_EXAMPLES`` per operation and generation mode.
"""

from __future__ import annotations

import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.support.browser import TEAMS, Ward, seed_ward
from wardwatch.store import Store
from wardwatch.store_careplans import CarePlan

MAX_EXAMPLES = 25
EVENTS_PATH = "/api/v1/events"
LOGOUT_PATH = "/api/v1/auth/logout"

ADMIN = ("admin-1", "Synthetic Admin")


def _seeded(tmp: Path) -> tuple[Any, Store, Any, Ward]:
    """The app over a freshly seeded store, its access service, and what was seeded."""
    from argon2 import PasswordHasher

    from alerting.access import AccessService
    from alerting.api.app import create_app
    from alerting.engine import AlertEngine
    from ingest.stores import open_store

    store = open_store(f"sqlite:{tmp / 'ward.db'}")
    # Cheap argon2 parameters keep seeding and the logout cases' logins quick.
    access = AccessService(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024))
    engine = AlertEngine(store)
    ward = seed_ward(store, access, engine)
    for patient in ward.patients.values():
        store.put_care_plan(
            CarePlan(
                patient=patient.id,
                title="Synthetic hypertension plan",
                schedule={"blood_pressure": 24.0},
                updated_at=datetime.now(UTC),
                updated_by="test-seed",
            )
        )
    app = create_app(store, engine=engine, access=access, static=True)
    return app, store, access, ward


def _login(app: Any, username: str, password: str) -> str:
    """A session token from the real login route."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        answer = client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    assert isinstance(token, str)
    return token


def _known_values(store: Store, ward: Ward) -> dict[str, list[Any]]:
    """Seeded identifiers per parameter name (own team's and the other team's)."""
    alerts = store.list_alerts()
    assert alerts, "the seed raised no alerts"
    assert ward.proposal_id is not None
    patients = sorted(ward.patients)
    return {
        "patient_id": patients,
        "patient": patients,
        "alert_id": [a.id for a in alerts if a.id is not None],
        "proposal_id": [ward.proposal_id],
        "device": sorted({f"cuff-{p}" for p in patients} | {f"ox-{patients[0]}"}),
        "kind": ["blood_pressure", "heart_rate", "spo2", "body_weight", "glucose"],
    }


def _fits(value: Any, known: Any) -> bool:
    """Whether ``value`` has the type of the seeded value it could be replaced with.

    A negative-mode case whose value was mutated to another type (or an empty or
    over-long string) keeps it: replacing it with a valid value would make the case positive.
    """
    if isinstance(known, bool) or isinstance(value, bool):
        return False
    if isinstance(known, int):
        return isinstance(value, int)
    return isinstance(value, str) and 1 <= len(value) <= 128


def _mix_in(known: Mapping[str, list[Any]]) -> Callable[[Any], st.SearchStrategy[Any]]:
    """A flatmap hook body: the generated values, or one of them swapped for a seeded one."""

    def mix(values: Any) -> st.SearchStrategy[Any]:
        if not isinstance(values, dict):
            return st.just(values)
        variants: list[dict[str, Any]] = [values]
        for name, value in values.items():
            for seeded in known.get(name, ()):
                if _fits(value, seeded):
                    variants.append({**values, name: seeded})
        return st.sampled_from(variants)

    return mix


def _schema(
    app: Any, access: Any, username: str, password: str, known: Mapping[str, list[Any]]
) -> OpenApiSchema:
    """The app's OpenAPI document as a schemathesis schema, authenticated as ``username``."""
    token = _login(app, username, password)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    mix = _mix_in(known)

    class SessionAuth:
        """The run's token; a fresh session for each logout case (logout revokes it)."""

        def get(self, case: Case[Any], ctx: schemathesis.AuthContext) -> str:
            if case.operation.path == LOGOUT_PATH:
                fresh, _record = access.login(username, password, "127.0.0.2")
                return str(fresh)
            return token

        def set(self, case: Case[Any], data: str, ctx: schemathesis.AuthContext) -> None:
            if case.headers is None:
                case.headers = CaseInsensitiveDict()
            case.headers["Authorization"] = f"Bearer {data}"

    schema.auth(refresh_interval=None)(SessionAuth)

    @schema.hook
    def flatmap_path_parameters(
        context: schemathesis.HookContext, path_parameters: Any
    ) -> st.SearchStrategy[Any]:
        return mix(path_parameters)

    @schema.hook
    def flatmap_query(context: schemathesis.HookContext, query: Any) -> st.SearchStrategy[Any]:
        return mix(query)

    @schema.hook
    def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
        return mix(body)  # PUT .../pairing {"patient": ...}

    return schema


class Tally:
    """Status codes answered per operation, to show the run reached real data: a run
    whose token stopped working would pass every check on 401s alone."""

    def __init__(self) -> None:
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)

    def add(self, case: Case[Any], status: int) -> None:
        self.statuses[case.operation.label][status] += 1

    def assert_succeeded(self, labels: Iterable[str]) -> None:
        missed = {
            label: dict(self.statuses[label])
            for label in labels
            if not any(200 <= status < 300 for status in self.statuses[label])
        }
        assert not missed, f"no 2xx answer for {missed}"


READS = (
    "GET /api/v1/me",
    "GET /api/v1/patients",
    "GET /api/v1/patients/{patient_id}",
    "GET /api/v1/patients/{patient_id}/care-plan",
    "GET /api/v1/patients/{patient_id}/observations",
    "GET /api/v1/devices/{device}/pairing",
    "GET /api/v1/care-teams",
    "GET /api/v1/alerts",
    "GET /api/v1/alerts/{alert_id}",
    "GET /api/v1/proposals",
)
"""Operations each run must have answered with a 2xx at least once (besides logout)."""


@pytest.fixture(scope="module")
def nurse_tally() -> Tally:
    return Tally()


@pytest.fixture(scope="module")
def admin_tally() -> Tally:
    return Tally()


@pytest.fixture(scope="module")
def nurse_api(
    tmp_path_factory: pytest.TempPathFactory, nurse_tally: Tally
) -> Iterator[OpenApiSchema]:
    """The API as nurse A1 (team A): team B's patient must answer 404, never 500."""
    app, store, access, ward = _seeded(tmp_path_factory.mktemp("nurse"))
    nurse = ward.nurses["nurse-a1"]
    try:
        yield _schema(app, access, nurse.username, nurse.password, _known_values(store, ward))
    finally:
        store.close()
    nurse_tally.assert_succeeded((*READS, "POST /api/v1/auth/logout"))


@pytest.fixture(scope="module")
def admin_api(
    tmp_path_factory: pytest.TempPathFactory, admin_tally: Tally
) -> Iterator[OpenApiSchema]:
    """The API as a system admin (sees every patient, reads the audit trail)."""
    app, store, access, ward = _seeded(tmp_path_factory.mktemp("admin"))
    password = secrets.token_urlsafe(18)
    access.set_user(ADMIN[0], ADMIN[1], "system-admin", password=password, by="test-seed")
    assert {t.id for t in TEAMS} == {p.care_team for p in ward.patients.values()}
    try:
        yield _schema(app, access, ADMIN[0], password, _known_values(store, ward))
    finally:
        store.close()
    admin_tally.assert_succeeded((*READS, "POST /api/v1/auth/logout", "GET /api/v1/audit"))


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's ``from_fixture`` reads and rewrites ``Node._nodeid`` (to name
    each operation in reports); pytest 9.2 keeps the id elsewhere. Give it the attribute."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


EXCLUDED_CHECKS: list[schemathesis.CheckFunction] = [positive_data_acceptance]
"""``positive_data_acceptance`` wants every schema-valid request answered 2xx/404...; the
API also refuses with 422 what a schema cannot say (``start`` after ``end``, more than
2000 buckets, a time without a zone): those refusals are correct, not failures."""

RUN = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
)

as_nurse = schemathesis.pytest.from_fixture("nurse_api").exclude(path=EVENTS_PATH)
as_admin = schemathesis.pytest.from_fixture("admin_api").exclude(path=EVENTS_PATH)


@as_nurse.parametrize()
@RUN
def test_api_as_nurse_passes_every_check(case: Case[Any], nurse_tally: Tally) -> None:
    response = case.call_and_validate(excluded_checks=EXCLUDED_CHECKS)
    nurse_tally.add(case, response.status_code)


@as_admin.parametrize()
@RUN
def test_api_as_system_admin_passes_every_check(case: Case[Any], admin_tally: Tally) -> None:
    response = case.call_and_validate(excluded_checks=EXCLUDED_CHECKS)
    admin_tally.add(case, response.status_code)


# What the runs above found, pinned down as plain requests (the fuzzer's draws may change).
FOUND = (
    # An id beyond SQLite's/PostgreSQL's 64-bit integers was a 500 (OverflowError).
    ("POST", "/api/v1/alerts/9223372036854775808/snooze", {"minutes": 5}, 422, None),
    ("POST", "/api/v1/proposals/9223372036854775808/accept", None, 422, None),
    ("GET", "/api/v1/alerts/-9223372036854775809", None, 422, None),
    # A bare number was read as Unix time.
    ("GET", "/api/v1/patients/pa-1/observations?kind=heart_rate&start=0.5", None, 422, None),
    # Another method on an API path: the page's mount answered 404 or "Allow: GET, HEAD",
    # the router named one route's methods.
    ("GET", "/api/v1/auth/login", None, 405, "POST"),
    ("OPTIONS", "/api/v1/alerts/1/acknowledge", None, 405, "POST"),
    ("OPTIONS", "/api/v1/patients/pa-1/care-plan", None, 405, "GET, PUT"),
    ("DELETE", "/api/v1/devices/cuff-pa-1/pairing", None, 405, "GET, PUT"),
)


@pytest.fixture(scope="module")
def nurse_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    from fastapi.testclient import TestClient

    app, store, _access, ward = _seeded(tmp_path_factory.mktemp("found"))
    nurse = ward.nurses["nurse-a1"]
    try:
        with TestClient(app) as client:
            yield client, _login(app, nurse.username, nurse.password)
    finally:
        store.close()


@pytest.mark.parametrize(("method", "path", "body", "status", "allow"), FOUND)
def test_what_schemathesis_found_stays_fixed(
    nurse_client: tuple[Any, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    allow: str | None,
) -> None:
    client, token = nurse_client
    answer = client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers.get("allow") == allow


def test_a_body_that_is_not_json_is_a_documented_400(nurse_client: tuple[Any, str]) -> None:
    client, token = nurse_client
    answer = client.put(
        "/api/v1/devices/cuff-pa-1/pairing",
        content=b"\xff{",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["status"] == 400
    documented = client.get("/api/v1/openapi.json").json()
    assert "400" in documented["paths"]["/api/v1/devices/{device}/pairing"]["put"]["responses"]
