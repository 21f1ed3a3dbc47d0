"""The nurse API (alerting/api): routes, bucketing on both stores, problems, SSE.

Authorisation and audit of every route: tests/test_api_access.py (it reuses :class:`World`).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerting.access import AccessService
from alerting.api.app import create_app
from alerting.api.observations import AUTO_POINTS, MAX_POINTS, auto_width
from alerting.engine import AlertEngine
from wardwatch.store import CareTeam, Patient, Store, StoredObservation
from wardwatch.store_careplans import CarePlan, Proposal

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PROBLEM = "application/problem+json"


@dataclass
class Clock:
    """A settable clock."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


def obs(
    patient: str,
    kind: str,
    at: datetime,
    value: float | None = None,
    components: dict[str, float] | None = None,
    device: str = "dev-1",
) -> StoredObservation:
    """A stored observation (the document itself is not read by these routes)."""
    unit = {"blood_pressure": "mm[Hg]", "heart_rate": "/min", "body_weight": "kg"}.get(kind)
    ident = f"{patient}-{kind}-{at.isoformat()}"
    return StoredObservation(
        identifier=ident,
        patient=patient,
        device=device,
        kind=kind,
        at=at,
        value=value,
        unit=unit,
        components=components or {},
        resource=orjson.dumps({"resourceType": "Observation", "id": ident}),
        received_at=at,
    )


def bp(patient: str, at: datetime, systolic: float, diastolic: float) -> StoredObservation:
    """A blood-pressure panel."""
    return obs(
        patient,
        "blood_pressure",
        at,
        components={"systolic": systolic, "diastolic": diastolic},
        device=f"cuff-{patient}",
    )


@dataclass
class World:
    """Two care teams, their patients and people, tokens, an engine and the app."""

    store: Store
    clock: Clock
    engine: AlertEngine
    access: AccessService
    app: FastAPI
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def get(self, user: str, url: str, **kw: Any) -> httpx.Response:
        answer: httpx.Response = self.client.get(url, headers=self.headers(user), **kw)
        return answer

    def post(self, user: str, url: str, **kw: Any) -> httpx.Response:
        answer: httpx.Response = self.client.post(url, headers=self.headers(user), **kw)
        return answer

    def put(self, user: str, url: str, **kw: Any) -> httpx.Response:
        answer: httpx.Response = self.client.put(url, headers=self.headers(user), **kw)
        return answer


USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "nurse-north": ("nurse", ("north",)),
    "nurse-north-2": ("nurse", ("north",)),
    "nurse-south": ("nurse", ("south",)),
    "doc-north": ("physician", ("north",)),
    "lead-north": ("care-team-admin", ("north",)),
    "admin": ("system-admin", ()),
    "ehr": ("service", ()),
}


def build_world(store: Store, *, sse_poll_seconds: float = 0.05) -> World:
    """Teams north and south; patients n-1, n-2 (north), s-1 (south); an urgent alert
    for n-1 and for s-1, a proposal for each; devices paired."""
    clock = Clock()
    for team in ("north", "south"):
        store.upsert_care_team(CareTeam(team, f"Team {team}"))
    store.upsert_patient(Patient("n-1", "Ann North", "north"))
    store.upsert_patient(Patient("n-2", "Ben North", "north"))
    store.upsert_patient(Patient("s-1", "Sue South", "south"))
    for patient in ("n-1", "n-2", "s-1"):
        store.pair_device(f"cuff-{patient}", patient)
    access = AccessService(store, clock, hasher=FAST)
    engine = AlertEngine(store, clock=clock)
    app = create_app(
        store,
        engine=engine,
        access=access,
        clock=clock,
        static=False,
        sse_poll_seconds=sse_poll_seconds,
        sse_ping_seconds=1,
    )
    world = World(store, clock, engine, access, app, TestClient(app))
    for username, (role, teams) in USERS.items():
        access.set_user(username, username.title(), role, teams)  # type: ignore[arg-type]
        world.tokens[username] = access.create_api_token(username, "test")
    rows = [
        bp("n-1", T0 - timedelta(hours=2), 130, 80),
        bp("n-1", T0 - timedelta(hours=1), 195, 100),
        bp("s-1", T0 - timedelta(hours=1), 85, 50),
    ]
    store.write_observations(rows)
    engine.process(rows)
    by_patient = {a.patient: a for a in store.list_alerts()}
    world.ids["alert-n-1"] = _id(by_patient["n-1"].id)
    world.ids["alert-s-1"] = _id(by_patient["s-1"].id)
    for patient in ("n-1", "s-1"):
        proposal = store.add_proposal(
            Proposal(
                patient=patient,
                code="bp-twice-daily",
                description="Blood pressure twice daily",
                created_at=T0,
                change={"schedule": {"blood_pressure": 12}},
            )
        )
        world.ids[f"proposal-{patient}"] = _id(proposal.id)
    return world


def _id(value: int | None) -> int:
    assert value is not None
    return value


@pytest.fixture
def world(store: Store) -> World:
    return build_world(store)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with this status; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"]
    assert "instance" in body
    return body


# -- patients --------------------------------------------------------------------------------
def test_patients_list_shows_only_own_team_with_counts(world: World) -> None:
    answer = world.get("nurse-north", "/api/v1/patients")
    assert answer.status_code == 200
    body = answer.json()
    assert [p["id"] for p in body] == ["n-1", "n-2"]
    first = body[0]
    assert first["open_alerts"] == {"urgent": 1, "warning": 0, "info": 0}
    assert first["last_reading_at"] == "2025-03-03T07:00:00Z"
    assert body[1]["last_reading_at"] is None
    everyone = world.get("admin", "/api/v1/patients").json()
    assert [p["id"] for p in everyone] == ["n-1", "n-2", "s-1"]


def test_patient_detail_thresholds_follow_plan_and_patient(world: World) -> None:
    def line(body: dict[str, Any], parameter: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [t for t in body["thresholds"] if t["parameter"] == parameter]
        assert len(found) == 1
        return found[0]

    body = world.get("nurse-north", "/api/v1/patients/n-1").json()
    assert body["care_plan"] is None
    assert [d["device"] for d in body["devices"]] == ["cuff-n-1"]
    crisis = line(body, "bp.hypertensive_crisis.systolic")
    assert crisis == {
        "parameter": "bp.hypertensive_crisis.systolic",
        "kind": "blood_pressure",
        "component": "systolic",
        "value": 180.0,
        "source": "default",
        "direction": "above",
        "severity": "urgent",
        "rule": "bp.hypertensive_crisis",
    }
    assert "spo2.low.scale2" not in {t["parameter"] for t in body["thresholds"]}
    world.store.put_care_plan(
        CarePlan(
            "n-1",
            "COPD plan",
            thresholds={"bp.hypertensive_crisis.systolic": 170, "news2.spo2_scale": 2},
        )
    )
    world.store.upsert_patient(
        Patient("n-1", "Ann North", "north", {"bp.hypotension.systolic": 95})
    )
    body = world.get("nurse-north", "/api/v1/patients/n-1").json()
    assert body["care_plan"]["title"] == "COPD plan"
    assert line(body, "bp.hypertensive_crisis.systolic")["value"] == 170
    assert line(body, "bp.hypertensive_crisis.systolic")["source"] == "care-plan"
    hypotension = line(body, "bp.hypotension.systolic")
    assert (hypotension["value"], hypotension["source"]) == (95.0, "patient")
    parameters = {t["parameter"] for t in body["thresholds"]}
    assert "spo2.low.scale2" in parameters and "spo2.low" not in parameters


def test_care_plan_put_and_get(world: World) -> None:
    url = "/api/v1/patients/n-1/care-plan"
    assert_problem(world.get("doc-north", url), 404)
    plan = {"title": "HF plan", "thresholds": {"bp.hypotension.systolic": 95}}
    answer = world.put("doc-north", url, json={**plan, "schedule": {"body_weight": 24}})
    assert answer.status_code == 200, answer.text
    stored = answer.json()
    assert stored["updated_by"] == "doc-north" and stored["updated_at"] == "2025-03-03T08:00:00Z"
    assert world.get("nurse-north", url).json() == stored
    # Nurses may not edit the plan; a stale version, an unknown parameter are refused.
    assert_problem(world.put("nurse-north", url, json=plan), 403)
    stale = world.put("doc-north", url, json={**plan, "version": stored["version"] + 5})
    assert_problem(stale, 409)
    unknown = world.put("doc-north", url, json={"title": "x", "thresholds": {"no.such": 1}})
    assert "no.such" in assert_problem(unknown, 422)["detail"]
    bad_kind = world.put("doc-north", url, json={"title": "x", "schedule": {"nonsense": 24}})
    assert_problem(bad_kind, 422)
    assert_problem(world.put("doc-north", url, json={"title": ""}), 422)


# -- observations ----------------------------------------------------------------------------
def test_observation_buckets_on_both_stores(world: World) -> None:
    base = datetime(2025, 3, 1, tzinfo=UTC)
    rows = [
        bp("n-2", base + timedelta(minutes=10), 120, 80),
        bp("n-2", base + timedelta(minutes=50), 140, 90),
        bp("n-2", base + timedelta(hours=1, minutes=5), 160, 100),
        bp("n-2", base + timedelta(hours=3), 110, 70),
        obs("n-2", "heart_rate", base + timedelta(minutes=20), 60),
        obs("n-2", "heart_rate", base + timedelta(minutes=40), 90),
        obs("n-2", "heart_rate", base - timedelta(seconds=1), 200),  # before start: out
    ]
    world.store.write_observations(rows)
    query = {"kind": "blood_pressure", "start": "2025-03-01T00:00:00Z", "bucket": "3600"}
    query["end"] = "2025-03-01T03:00:00Z"  # exclusive: the 03:00 reading is out
    body = world.get("nurse-north", "/api/v1/patients/n-2/observations", params=query).json()
    assert body["bucket_seconds"] == 3600 and body["unit"] == "mm[Hg]"
    points = body["points"]
    assert [p["t"] for p in points] == ["2025-03-01T00:00:00Z", "2025-03-01T01:00:00Z"]
    assert [p["count"] for p in points] == [2, 1]
    assert points[0]["mean"] is None  # a panel has no plain value
    assert points[0]["components"]["systolic"] == {"mean": 130.0, "min": 120.0, "max": 140.0}
    assert points[0]["components"]["diastolic"] == {"mean": 85.0, "min": 80.0, "max": 90.0}
    assert points[1]["components"]["systolic"] == {"mean": 160.0, "min": 160.0, "max": 160.0}
    heart = world.get(
        "nurse-north",
        "/api/v1/patients/n-2/observations",
        params={**query, "kind": "heart_rate", "bucket": "1800"},
    ).json()
    assert [(p["t"], p["count"], p["mean"], p["min"], p["max"]) for p in heart["points"]] == [
        ("2025-03-01T00:00:00Z", 1, 60.0, 60.0, 60.0),
        ("2025-03-01T00:30:00Z", 1, 90.0, 90.0, 90.0),
    ]
    # Buckets are aligned on the epoch, not on start: a start at 00:20 still cuts at 00:00.
    shifted = world.get(
        "nurse-north",
        "/api/v1/patients/n-2/observations",
        params={**query, "kind": "heart_rate", "start": "2025-03-01T00:20:00Z"},
    ).json()
    assert [(p["t"], p["count"], p["mean"]) for p in shifted["points"]] == [
        ("2025-03-01T00:00:00Z", 2, 75.0)
    ]


def test_observation_bucket_choice_and_limits(world: World) -> None:
    url = "/api/v1/patients/n-1/observations"
    day = world.get(
        "nurse-north",
        url,
        params={
            "kind": "blood_pressure",
            "start": "2025-03-02T08:00:00Z",
            "end": "2025-03-03T08:00:00Z",
        },
    ).json()
    assert day["bucket_seconds"] == 300  # 288 buckets <= AUTO_POINTS
    assert sum(p["count"] for p in day["points"]) == 2
    default = world.get("nurse-north", url, params={"kind": "blood_pressure"}).json()
    assert default["end"] == "2025-03-03T08:00:00Z" and default["start"] == "2025-02-24T08:00:00Z"
    for span in (timedelta(hours=1), timedelta(days=7), timedelta(days=90), timedelta(days=4000)):
        width = auto_width(span)
        assert span.total_seconds() / width <= AUTO_POINTS
    too_many = {"kind": "blood_pressure", "bucket": "1", "start": "2025-03-01T00:00:00Z"}
    assert (
        str(MAX_POINTS)
        in assert_problem(world.get("nurse-north", url, params=too_many), 422)["detail"]
    )
    for bad in (
        {"kind": "nonsense"},
        {"kind": "blood_pressure", "bucket": "-5"},
        {"kind": "blood_pressure", "bucket": "often"},
        {"kind": "blood_pressure", "start": "2025-03-03T09:00:00Z"},  # after end (now)
        {"kind": "blood_pressure", "start": "2025-03-01T00:00:00"},  # no zone
        {"kind": "blood_pressure", "start": "yesterday"},
    ):
        assert_problem(world.get("nurse-north", url, params=bad), 422)


# -- alerts ------------------------------------------------------------------------------------
def test_alert_worklist_and_person_actions(world: World) -> None:
    # A warning for n-2 opened earlier than the urgent one: urgent still comes first.
    early = obs("n-2", "heart_rate", T0 - timedelta(hours=5), 140)
    world.store.write_observations([early])
    world.engine.process([early])
    listed = world.get("nurse-north", "/api/v1/alerts").json()
    assert (listed[0]["patient"], listed[0]["severity"]) == ("n-1", "urgent")
    assert {(a["patient"], a["severity"]) for a in listed[1:]} == {("n-2", "warning")}
    assert "heart_rate.high" in {a["rule"] for a in listed}
    assert listed[0]["patient_name"] == "Ann North" and listed[0]["opened_at"].endswith("Z")
    only = world.get("nurse-north", "/api/v1/alerts", params={"severity": "warning"}).json()
    assert {a["patient"] for a in only} == {"n-2"}
    alert_id = world.ids["alert-n-1"]
    url = f"/api/v1/alerts/{alert_id}"

    world.clock.now = T0 + timedelta(minutes=3)
    acked = world.post("nurse-north", f"{url}/acknowledge").json()
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "nurse-north"
    assert acked["acknowledged_at"] == "2025-03-03T08:03:00Z"
    seen_by_colleague = world.get("nurse-north-2", url).json()
    assert seen_by_colleague["status"] == "acknowledged"
    snoozed = world.post("nurse-north", f"{url}/snooze", json={"minutes": 30, "comment": "calling"})
    assert snoozed.json()["snoozed_until"] == "2025-03-03T08:33:00Z"
    assert_problem(world.post("nurse-north", f"{url}/snooze", json={"minutes": 0}), 422)
    assert_problem(world.post("nurse-north", f"{url}/snooze", json={"minutes": 5, "x": 1}), 422)
    resolved = world.post("nurse-north", f"{url}/resolve").json()
    assert resolved["status"] == "resolved" and resolved["auto_cleared"] is False
    assert_problem(world.post("nurse-north", f"{url}/acknowledge"), 409)
    assert_problem(world.post("nurse-north", f"{url}/snooze", json={"minutes": 5}), 409)
    detail = world.get("nurse-north", url).json()
    actions = [e["action"] for e in detail["events"]]
    assert actions[0] == "opened"
    assert [a for a in actions if a in {"acknowledged", "snoozed", "resolved"}] == [
        "acknowledged",
        "snoozed",
        "resolved",
    ]
    assert all(
        e["actor"] == "nurse-north" for e in detail["events"][1:] if e["action"] != "updated"
    )
    active = world.get("nurse-north", "/api/v1/alerts").json()
    assert active and alert_id not in [a["id"] for a in active]
    done = world.get("nurse-north", "/api/v1/alerts", params={"status": "resolved"}).json()
    assert [a["id"] for a in done] == [alert_id]
    # The service role reads but does not act.
    assert world.get("ehr", url).status_code == 200
    assert_problem(world.post("ehr", f"/api/v1/alerts/{world.ids['alert-s-1']}/acknowledge"), 403)


def test_unknown_alert_and_bad_ids_are_problems(world: World) -> None:
    assert_problem(world.get("nurse-north", "/api/v1/alerts/999999"), 404)
    assert_problem(world.get("nurse-north", "/api/v1/alerts/abc"), 422)
    assert_problem(world.get("nurse-north", "/api/v1/alerts", params={"status": "x"}), 422)


# -- devices, teams, proposals, audit ---------------------------------------------------------
def test_pairing_and_care_teams(world: World) -> None:
    url = "/api/v1/devices/scale-7/pairing"
    assert_problem(world.get("lead-north", url), 404)
    assert_problem(world.put("nurse-north", url, json={"patient": "n-2"}), 403)
    paired = world.put("lead-north", url, json={"patient": "n-2"})
    assert paired.status_code == 200 and paired.json()["patient"] == "n-2"
    assert world.store.device_patient("scale-7") == "n-2"
    assert world.get("nurse-north", url).json()["device"] == "scale-7"
    devices = world.get(
        "nurse-north", "/api/v1/patients/n-2/devices" if False else "/api/v1/patients/n-2"
    )
    assert [d["device"] for d in devices.json()["devices"]] == ["cuff-n-2", "scale-7"]
    # Moving a device from another team's patient is refused as if it did not exist.
    assert_problem(
        world.put("lead-north", "/api/v1/devices/cuff-s-1/pairing", json={"patient": "n-2"}), 404
    )
    assert world.store.device_patient("cuff-s-1") == "s-1"
    teams = world.get("nurse-north", "/api/v1/care-teams").json()
    assert teams == [{"id": "north", "name": "Team north"}]
    assert [t["id"] for t in world.get("admin", "/api/v1/care-teams").json()] == ["north", "south"]


def test_proposals_accept_and_reject(world: World) -> None:
    listed = world.get("nurse-north", "/api/v1/proposals").json()
    assert [p["patient"] for p in listed] == ["n-1"]
    task = listed[0]["task"]
    assert task["resourceType"] == "Task" and task["intent"] == "proposal"
    pid = world.ids["proposal-n-1"]
    world.clock.now = T0 + timedelta(hours=1)
    accepted = world.post("nurse-north", f"/api/v1/proposals/{pid}/accept", json={"note": "ok"})
    assert accepted.status_code == 200, accepted.text
    assert (
        accepted.json()["status"] == "accepted" and accepted.json()["decided_by"] == "nurse-north"
    )
    plan = world.store.get_care_plan("n-1")
    assert plan is not None and plan.schedule["blood_pressure"] == 12
    assert_problem(world.post("nurse-north", f"/api/v1/proposals/{pid}/reject"), 409)
    assert world.get("nurse-north", "/api/v1/proposals").json() == []
    decided = world.get("nurse-north", "/api/v1/proposals", params={"status": "accepted"}).json()
    assert [p["id"] for p in decided] == [pid]
    other = world.ids["proposal-s-1"]
    rejected = world.post("nurse-south", f"/api/v1/proposals/{other}/reject")
    assert rejected.json()["status"] == "rejected"
    assert world.store.get_care_plan("s-1") is None


def test_audit_query_for_admins(world: World) -> None:
    world.get("nurse-north", "/api/v1/patients/n-1")
    world.get("nurse-south", "/api/v1/patients/s-1")
    events = world.get("admin", "/api/v1/audit", params={"patient": "n-1"}).json()
    reads = [e for e in events if e["action"] == "patients.read"]
    assert [(e["principal"], e["outcome"]) for e in reads] == [("nurse-north", "success")]
    assert reads[0]["remote"] == "testclient" and reads[0]["resource"] == "Patient/n-1"
    lead = world.get("lead-north", "/api/v1/audit").json()
    assert lead and {e["patient"] for e in lead} <= {"n-1", "n-2"}
    assert_problem(world.get("nurse-north", "/api/v1/audit"), 403)
    assert_problem(world.get("lead-north", "/api/v1/audit", params={"patient": "s-1"}), 404)


# -- errors -------------------------------------------------------------------------------------
def test_every_error_is_a_problem(world: World) -> None:
    assert_problem(world.get("nurse-north", "/api/v1/no-such-route"), 404)
    assert_problem(world.client.delete("/api/v1/patients", headers=world.headers("admin")), 405)
    assert_problem(world.put("doc-north", "/api/v1/patients/n-1/care-plan", content=b"{"), 422)
    assert_problem(world.client.get("/api/v1/patients"), 401)


def test_openapi_describes_every_route_with_models(world: World) -> None:
    doc = world.client.get("/api/v1/openapi.json").json()
    paths = doc["paths"]
    assert "/api/v1/patients/{patient_id}/observations" in paths
    listed = paths["/api/v1/alerts"]["get"]["responses"]
    assert "$ref" in str(listed["200"]) and "application/problem+json" in listed["401"]["content"]


# -- Server-Sent Events --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(world: World) -> Iterator[tuple[World, str]]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(world.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield world, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def _next_alert(lines: Iterator[str]) -> dict[str, Any]:
    """Read SSE lines up to the next ``alert`` event; return its id and data."""
    event: dict[str, Any] = {}
    for line in lines:
        if line.startswith("event:"):
            event["event"] = line.partition(":")[2].strip()
        elif line.startswith("id:"):
            event["id"] = int(line.partition(":")[2])
        elif line.startswith("data:"):
            event["data"] = orjson.loads(line.partition(":")[2])
        elif line == "" and event.get("event") == "alert":
            return event
    raise AssertionError("stream ended")


def test_sse_delivers_alert_changes_to_those_who_see_them(served: tuple[World, str]) -> None:
    world, base = served
    with (
        httpx.Client(base_url=base, timeout=30) as client,
        client.stream("GET", "/api/v1/events", headers=world.headers("nurse-north")) as north,
        client.stream("GET", "/api/v1/events", headers=world.headers("nurse-south")) as south,
    ):
        assert north.status_code == 200
        assert north.headers["content-type"].startswith("text/event-stream")
        north_lines, south_lines = north.iter_lines(), south.iter_lines()
        # A south alert first (the north nurse must not get it), then a north one.
        world.clock.now = T0 + timedelta(minutes=1)
        south_obs = obs("s-1", "heart_rate", T0, 150)
        north_obs = obs("n-2", "heart_rate", T0, 30)
        world.store.write_observations([south_obs, north_obs])
        world.engine.process([south_obs])
        world.engine.process([north_obs])
        seen_north = _next_alert(north_lines)
        assert seen_north["data"]["patient"] == "n-2"  # the south alert was not sent
        while seen_north["data"]["rule"] != "heart_rate.low":
            seen_north = _next_alert(north_lines)
            assert seen_north["data"]["patient"] == "n-2"
        assert _next_alert(south_lines)["data"]["patient"] == "s-1"
        # A person's action is a change too.
        world.post("nurse-north-2", f"/api/v1/alerts/{seen_north['data']['id']}/acknowledge")
        acked = _next_alert(north_lines)
        while acked["data"]["id"] != seen_north["data"]["id"]:
            acked = _next_alert(north_lines)
        assert acked["data"]["status"] == "acknowledged" and acked["id"] > seen_north["id"]
    # Reconnecting with Last-Event-ID replays what came after it.
    headers = {**world.headers("nurse-north"), "Last-Event-ID": str(seen_north["id"])}
    with (
        httpx.Client(base_url=base, timeout=30) as client,
        client.stream("GET", "/api/v1/events", headers=headers) as again,
    ):
        replayed = again.iter_lines()
        replay = _next_alert(replayed)
        while replay["id"] < acked["id"]:
            replay = _next_alert(replayed)
        assert replay["id"] == acked["id"] and replay["data"]["acknowledged_by"] == "nurse-north-2"
    pushes = world.store.list_audit(principal="nurse-north", action="events.push")
    assert pushes and {e.patient for e in pushes} == {"n-2"}


# -- wardwatch serve ---------------------------------------------------------------------------
def test_serve_command_serves_api_and_page(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'serve.db'}"
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "wardwatch.cli",
            "serve",
            "--store",
            store,
            "--port",
            "1",
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2 and "--behind-proxy" in refused.stderr
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wardwatch.cli", "serve", "--store", store, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"wardwatch serve: http://127.0.0.1:{port}/"
        base = f"http://127.0.0.1:{port}"
        for _ in range(500):
            try:
                answer = httpx.get(f"{base}/api/v1/openapi.json")
                break
            except httpx.TransportError:
                time.sleep(0.02)
        assert answer.status_code == 200 and "/api/v1/alerts" in answer.json()["paths"]
        page = httpx.get(f"{base}/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert_problem(httpx.get(f"{base}/api/v1/patients"), 401)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
