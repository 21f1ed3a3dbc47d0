"""Every route of the nurse API refuses the unauthenticated and other teams, and audits.

The routes are enumerated from the app itself, and each must have an entry in
:data:`EXPECT`: a new route without one fails :func:`test_every_route_is_covered`, so no
route can escape these checks.

Policy under test (docs/api.md, "Nurse API"): no credentials → 401 problem; a patient,
alert, proposal or device of another care team → 404 problem, as if it did not exist;
a role that may not take an action → 403 problem; lists leave other teams' data out.
Every patient-data route writes an audit event, refusals included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest
from fastapi.routing import iter_route_contexts

from alerting.api._context import PATIENT_DATA_ROUTES
from tests.test_api import World, assert_problem, build_world
from wardwatch.store import Store

CrossTeam = Literal["not-found", "forbidden", "filtered", "self", "public"]


@dataclass(frozen=True)
class Expect:
    """How one route answers the north nurse asking about the south team's data."""

    cross_team: CrossTeam
    body: dict[str, Any] | None = None
    query: dict[str, str] | None = None
    """Query for the cross-team call (a list filtered to the south patient)."""


EXPECT: dict[str, Expect] = {
    "openapi": Expect("public"),
    "login": Expect("public", body={"username": "x", "password": "y"}),
    "logout": Expect("self"),
    "me": Expect("self"),
    "patients.list": Expect("filtered"),
    "patients.read": Expect("not-found"),
    "care-plan.read": Expect("not-found"),
    "care-plan.write": Expect("not-found", body={"title": "Plan", "thresholds": {}}),
    "observations.search": Expect("not-found", query={"kind": "blood_pressure"}),
    "pairing.read": Expect("not-found"),
    "pairing.write": Expect("not-found", body={"patient": "s-1"}),
    "care-teams.list": Expect("filtered"),
    "alerts.list": Expect("not-found", query={"patient": "s-1"}),
    "alerts.read": Expect("not-found"),
    "alerts.acknowledge": Expect("not-found"),
    "alerts.resolve": Expect("not-found"),
    "alerts.snooze": Expect("not-found", body={"minutes": 10, "comment": "x"}),
    "proposals.list": Expect("not-found", query={"patient": "s-1"}),
    "proposals.accept": Expect("not-found", body={"note": "x"}),
    "proposals.reject": Expect("not-found", body={"note": "x"}),
    "events.subscribe": Expect("filtered"),  # a stream: filtering is tested in test_api.py
    "audit.search": Expect("forbidden"),
}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str


def api_routes(world: World) -> list[Route]:
    """Every (name, method, path) the app serves under /api/v1."""
    found: list[Route] = []
    for context in iter_route_contexts(world.app.routes):
        path = getattr(context, "path", "")
        methods = getattr(context, "methods", None) or set()
        if not path.startswith("/api/"):
            continue
        for method in sorted(methods - {"HEAD"}):
            found.append(Route(str(context.name), method, path))
    return found


GHOST = {"s-1": "zz-9", "alert": "999999", "proposal": "999998", "cuff-s-1": "cuff-zz-9"}
"""What does not exist, in place of the south team's things."""


def concrete(world: World, path: str, *, ghost: bool = False) -> str:
    """The path with its parameters naming the south team's things (or nothing real)."""
    return (
        path.replace("{patient_id}", GHOST["s-1"] if ghost else "s-1")
        .replace("{alert_id}", GHOST["alert"] if ghost else str(world.ids["alert-s-1"]))
        .replace("{proposal_id}", GHOST["proposal"] if ghost else str(world.ids["proposal-s-1"]))
        .replace("{device}", GHOST["cuff-s-1"] if ghost else "cuff-s-1")
    )


def _ghostly(world: World, value: Any) -> Any:
    """``value`` (a body or query) with the south team's ids replaced by ghosts."""
    if isinstance(value, dict):
        return {k: _ghostly(world, v) for k, v in value.items()}
    return GHOST.get(value, value) if isinstance(value, str) else value


@pytest.fixture
def world(store: Store) -> World:
    return build_world(store)


def test_every_route_is_covered(world: World) -> None:
    names = {r.name for r in api_routes(world)}
    assert names == set(EXPECT), "add the new route to EXPECT (and to the checks)"
    for name, expect in EXPECT.items():
        patient_data = expect.cross_team in ("not-found", "forbidden") or name in (
            "patients.list",
            "events.subscribe",
        )
        assert (name in PATIENT_DATA_ROUTES) == patient_data, name


def test_unauthenticated_is_refused_everywhere_and_audited(world: World) -> None:
    for route in api_routes(world):
        expect = EXPECT[route.name]
        if expect.cross_team == "public":
            continue
        before = len(world.store.list_audit(principal="anonymous", action=route.name))
        for headers in (
            {},
            {"Authorization": "Bearer wwa_not-a-token"},
            {"Authorization": "Basic x"},
        ):
            answer = world.client.request(
                route.method,
                concrete(world, route.path),
                json=expect.body,
                params=expect.query,
                headers=headers,
            )
            assert_problem(answer, 401)
            assert answer.headers["www-authenticate"].startswith("Bearer"), route
        audited = world.store.list_audit(principal="anonymous", action=route.name)
        if route.name in PATIENT_DATA_ROUTES:
            assert len(audited) == before + 3, route
            assert {e.outcome for e in audited} == {"refused"}
            if "{patient_id}" in route.path:
                assert {e.patient for e in audited} == {"s-1"}
        else:
            assert len(audited) == before, route


def test_other_teams_data_is_refused_and_audited(world: World) -> None:
    for route in api_routes(world):
        expect = EXPECT[route.name]
        if expect.cross_team not in ("not-found", "forbidden"):
            continue
        before = world.store.list_audit(principal="nurse-north", action=route.name)
        answer = world.client.request(
            route.method,
            concrete(world, route.path),
            json=expect.body,
            params=expect.query,
            headers=world.headers("nurse-north"),
        )
        status = 404 if expect.cross_team == "not-found" else 403
        body = assert_problem(answer, status)
        after = world.store.list_audit(principal="nurse-north", action=route.name)
        (new,) = after[len(before) :]
        assert new.outcome == "refused", route
        assert new.remote == "testclient"
        if status == 404:
            assert new.patient == "s-1", route
        if status == 404:
            # Exactly what a caller gets for something that does not exist at all.
            ghost = world.client.request(
                route.method,
                concrete(world, route.path, ghost=True),
                json=_ghostly(world, expect.body),
                params=_ghostly(world, expect.query),
                headers=world.headers("nurse-north"),
            )
            ghost_body = assert_problem(ghost, 404)
            unghost = {v: k for k, v in GHOST.items()} | {
                GHOST["alert"]: str(world.ids["alert-s-1"]),
                GHOST["proposal"]: str(world.ids["proposal-s-1"]),
            }
            detail = ghost_body["detail"]
            for fake, real in unghost.items():
                detail = detail.replace(fake, real)
            assert detail == body["detail"], route
    # Nothing of the south team changed.
    alert = world.store.get_alert(world.ids["alert-s-1"])
    assert alert is not None and alert.status == "open"
    proposal = world.store.get_proposal(world.ids["proposal-s-1"])
    assert proposal is not None and proposal.status == "proposed"
    assert world.store.get_care_plan("s-1") is None
    assert world.store.device_patient("cuff-s-1") == "s-1"


def test_lists_leave_other_teams_out_and_audit_what_they_show(world: World) -> None:
    patients = world.get("nurse-north", "/api/v1/patients").json()
    assert {p["id"] for p in patients} == {"n-1", "n-2"}
    alerts = world.get("nurse-north", "/api/v1/alerts", params={"status": "all"}).json()
    assert alerts and {a["patient"] for a in alerts} == {"n-1"}
    proposals = world.get("nurse-north", "/api/v1/proposals").json()
    assert {p["patient"] for p in proposals} == {"n-1"}
    teams = world.get("nurse-north", "/api/v1/care-teams").json()
    assert {t["id"] for t in teams} == {"north"}
    shown = world.store.list_audit(principal="nurse-north")
    by_action = {(e.action, e.patient) for e in shown}
    assert {("patients.list", "n-1"), ("patients.list", "n-2")} <= by_action
    assert ("alerts.list", "n-1") in by_action and ("proposals.list", "n-1") in by_action
    assert all(e.patient != "s-1" for e in shown)


def test_every_patient_data_read_and_write_is_audited(world: World) -> None:
    """Allowed calls on the caller's own patient leave a success record."""
    own = {
        "patients.read": ("GET", "/api/v1/patients/n-1", None),
        "observations.search": (
            "GET",
            "/api/v1/patients/n-1/observations?kind=blood_pressure",
            None,
        ),
        "care-plan.write": ("PUT", "/api/v1/patients/n-1/care-plan", {"title": "P"}),
        "care-plan.read": ("GET", "/api/v1/patients/n-1/care-plan", None),
        "pairing.read": ("GET", "/api/v1/devices/cuff-n-1/pairing", None),
        "pairing.write": ("PUT", "/api/v1/devices/cuff-n-1/pairing", {"patient": "n-1"}),
        "alerts.read": ("GET", f"/api/v1/alerts/{world.ids['alert-n-1']}", None),
        "alerts.snooze": (
            "POST",
            f"/api/v1/alerts/{world.ids['alert-n-1']}/snooze",
            {"minutes": 5},
        ),
        "alerts.acknowledge": (
            "POST",
            f"/api/v1/alerts/{world.ids['alert-n-1']}/acknowledge",
            None,
        ),
        "alerts.resolve": ("POST", f"/api/v1/alerts/{world.ids['alert-n-1']}/resolve", None),
        "proposals.accept": ("POST", f"/api/v1/proposals/{world.ids['proposal-n-1']}/accept", None),
        "audit.search": ("GET", "/api/v1/audit?patient=n-1", None),
    }
    for action, (method, url, body) in own.items():
        answer = world.client.request(method, url, json=body, headers=world.headers("admin"))
        assert answer.status_code == 200, (action, answer.text)
        (event,) = world.store.list_audit(principal="admin", action=action)
        assert (event.outcome, event.patient) == ("success", "n-1"), action
    covered = set(own) | {"patients.list", "alerts.list", "proposals.list", "events.subscribe"}
    assert covered | {"proposals.reject"} == PATIENT_DATA_ROUTES
