"""Users and access: the store's access part (both stores), roles and actions, logins,
tokens and rate limits (alerting/access.py), the HTTP edge (alerting/api/auth.py) and the
append-only audit trail for the application's database role."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from alerting.access import (
    ACTIONS,
    AccessService,
    Principal,
    check_new_password,
    hash_password,
    token_hash,
    verify_password,
)
from alerting.api.auth import CSRF_HEADER, SESSION_COOKIE, PrincipalDep, router
from alerting.api.problems import install_problem_handlers
from alerting.errors import (
    AccessDeniedError,
    AccessSetupError,
    AuthenticationError,
    LoginFailedError,
    LoginThrottledError,
)
from ingest.errors import StoreError
from ingest.stores import open_store
from wardwatch.store import AuditEvent, CareTeam, Patient, Store
from wardwatch.store_access import ROLES, AccessToken, Role, User

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
# Cheap argon2 parameters so the suite stays fast; production uses argon2-cffi's defaults.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class Clock:
    """A settable clock."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class CountingHasher(PasswordHasher):
    """argon2's hasher, counting verifications (to see that unknown users cost one too)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # type: ignore[override]
        self.verified.append(str(hash))
        return super().verify(hash, password)


def _teams(store: Store) -> None:
    store.upsert_care_team(CareTeam("ward-a", "Ward A"))
    store.upsert_care_team(CareTeam("ward-b", "Ward B"))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- the store's access part (SQLite and TimescaleDB) -------------------------------------


def test_users_round_trip_with_memberships(store: Store) -> None:
    _teams(store)
    ann = User("ann", "Ann Example", "nurse", ("ward-a",), "argon-hash", created_at=T0)
    store.upsert_user(ann)
    store.upsert_user(User("bob", "Bob Example", "physician", ("ward-a", "ward-b")))
    store.upsert_user(User("ehr", "EHR pull", "service"))
    assert store.get_user("ann") == ann
    assert store.get_user("nobody") is None
    assert [u.username for u in store.list_users()] == ["ann", "bob", "ehr"]
    bob = store.get_user("bob")
    assert bob is not None
    assert sorted(bob.teams) == ["ward-a", "ward-b"]
    assert bob.password_hash is None
    assert store.get_user("ehr") == User("ehr", "EHR pull", "service")

    # Replacing a user replaces the memberships and keeps the creation time.
    store.upsert_user(User("ann", "Ann E.", "care-team-admin", ("ward-b",), None, active=False))
    assert store.get_user("ann") == User(
        "ann", "Ann E.", "care-team-admin", ("ward-b",), None, active=False, created_at=T0
    )


def test_a_membership_of_an_unknown_team_stores_nothing(store: Store) -> None:
    _teams(store)
    with pytest.raises(StoreError):
        store.upsert_user(User("ann", "Ann", "nurse", ("ward-a", "no-such-ward")))
    assert store.get_user("ann") is None
    store.upsert_user(User("ann", "Ann", "nurse", ("ward-a",)))
    with pytest.raises(StoreError):
        store.upsert_user(User("ann", "Ann", "nurse", ("no-such-ward",)))
    assert store.get_user("ann") == User("ann", "Ann", "nurse", ("ward-a",))


def test_tokens_are_kept_by_hash_and_revoked_once(store: Store) -> None:
    _teams(store)
    store.upsert_user(User("ann", "Ann", "nurse", ("ward-a",)))
    session = AccessToken(_hash("s1"), "ann", "session", T0, T0 + timedelta(hours=12))
    api = AccessToken(_hash("a1"), "ann", "api", T0 + timedelta(seconds=1), None, name="ehr-pull")
    store.add_token(session)
    store.add_token(api)
    assert store.get_token(_hash("s1")) == session
    assert store.get_token(_hash("nope")) is None
    assert store.list_tokens() == [session, api]
    assert store.list_tokens("ann", "api") == [api]
    assert store.list_tokens("bob") == []
    with pytest.raises(StoreError):  # the same hash twice
        store.add_token(session)
    with pytest.raises(StoreError):  # no such user
        store.add_token(AccessToken(_hash("x"), "bob", "session", T0, T0 + timedelta(hours=1)))
    with pytest.raises(StoreError):  # one live API token per user and name
        store.add_token(AccessToken(_hash("a2"), "ann", "api", T0, None, name="ehr-pull"))

    later = T0 + timedelta(minutes=5)
    assert store.revoke_token(_hash("a1"), later) is True
    assert store.revoke_token(_hash("a1"), later + timedelta(minutes=1)) is False
    assert store.revoke_token(_hash("nope"), later) is False
    revoked = store.get_token(_hash("a1"))
    assert revoked is not None
    assert revoked.revoked_at == later
    assert not revoked.valid_at(later)
    # A revoked name can be issued again.
    store.add_token(AccessToken(_hash("a2"), "ann", "api", later, None, name="ehr-pull"))

    # Pruning drops what expired or was revoked before the cut, nothing else.
    assert store.prune_tokens(T0 + timedelta(hours=1)) == 1  # a1, revoked at +5 min
    assert {t.token_hash for t in store.list_tokens()} == {_hash("s1"), _hash("a2")}
    assert store.prune_tokens(T0 + timedelta(hours=13)) == 1  # the session expired at +12 h
    assert [t.token_hash for t in store.list_tokens()] == [_hash("a2")]


def test_login_failures_count_by_user_and_address(store: Store) -> None:
    for minute, (name, remote) in enumerate(
        [("ann", "10.0.0.1"), ("ann", "10.0.0.2"), ("bob", "10.0.0.1"), ("ann", None)]
    ):
        store.record_login_failure(name, remote, T0 + timedelta(minutes=minute))
    assert store.count_login_failures("ann", T0) == 3
    assert store.count_login_failures("ann", T0 + timedelta(minutes=1)) == 2
    assert store.count_login_failures("carol", T0) == 0
    assert store.login_failure_times(since=T0, username="ann") == [
        T0,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=3),
    ]
    assert store.login_failure_times(since=T0, remote="10.0.0.1") == [
        T0,
        T0 + timedelta(minutes=2),
    ]
    assert len(store.login_failure_times(since=T0)) == 4
    assert store.clear_login_failures("ann") == 3
    assert store.count_login_failures("ann", T0) == 0
    assert store.prune_login_failures(T0 + timedelta(minutes=3)) == 1  # bob's
    assert store.login_failure_times(since=T0) == []


def test_records_refuse_what_cannot_be_right() -> None:
    with pytest.raises(ValueError, match="role"):
        User("ann", "Ann", "matron")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user name"):
        User("Ann Smith", "Ann", "nurse")
    with pytest.raises(ValueError, match="SHA-256"):
        AccessToken("not-a-hash", "ann", "api", T0, None, name="x")
    with pytest.raises(ValueError, match="must expire"):
        AccessToken(_hash("s"), "ann", "session", T0, None)
    with pytest.raises(ValueError, match="name"):
        AccessToken(_hash("a"), "ann", "api", T0, None)


# -- roles and actions ---------------------------------------------------------------------

EXPECTED_ACTIONS: dict[Role, set[str]] = {
    "nurse": {"read-patient", "act-on-alert", "decide-proposal"},
    "physician": {"read-patient", "act-on-alert", "decide-proposal", "edit-care-plan"},
    "care-team-admin": {
        "read-patient",
        "act-on-alert",
        "decide-proposal",
        "edit-care-plan",
        "pair-device",
        "read-audit",
    },
    "system-admin": set(ACTIONS),
    "service": {"read-patient"},
}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_take_exactly_its_actions(role: Role) -> None:
    principal = Principal("someone", "Someone", role, frozenset({"ward-a"}), "session")
    assert {a for a in ACTIONS if principal.can(a)} == EXPECTED_ACTIONS[role]
    assert set(principal.actions()) == EXPECTED_ACTIONS[role]
    with pytest.raises(ValueError, match="unknown action"):
        principal.can("delete-everything")


def test_team_roles_see_only_their_teams_patients() -> None:
    mine = Patient("p-1", "Patient One", "ward-a")
    theirs = Patient("p-2", "Patient Two", "ward-b")
    unassigned = Patient("p-3", "Patient Three", None)
    team_roles: tuple[Role, ...] = ("nurse", "physician", "care-team-admin")
    for role in team_roles:
        principal = Principal("ann", "Ann", role, frozenset({"ward-a"}), "session")
        assert principal.sees(mine)
        assert not principal.sees(theirs)
        assert not principal.sees(unassigned)
        assert principal.may("read-patient", mine)
        assert not principal.may("read-patient", theirs)
        with pytest.raises(AccessDeniedError):
            principal.require("read-patient", theirs)
        principal.require("act-on-alert", mine)
    everyone_roles: tuple[Role, ...] = ("system-admin", "service")
    for role in everyone_roles:
        principal = Principal("root", "Root", role, frozenset(), "api")
        assert all(principal.sees(p) for p in (mine, theirs, unassigned))
    service = Principal("ehr", "EHR", "service", frozenset(), "api")
    assert service.may("read-patient", theirs)
    assert not service.may("act-on-alert", theirs)
    with pytest.raises(AccessDeniedError, match="ehr may not act-on-alert"):
        service.require("act-on-alert")


def test_passwords_are_argon2_hashes() -> None:
    hashed = hash_password(PASSWORD, FAST)
    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert verify_password(hashed, PASSWORD, FAST)
    assert not verify_password(hashed, PASSWORD + "!", FAST)
    assert not verify_password("not a hash", PASSWORD, FAST)
    assert hash_password(PASSWORD, FAST) != hashed  # salted
    with pytest.raises(AccessSetupError, match="at least 12"):
        check_new_password("short")


# -- the access service --------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:{tmp_path / 'access.db'}")
    try:
        yield opened
    finally:
        opened.close()


def _service(store: Store, clock: Clock, hasher: PasswordHasher = FAST) -> AccessService:
    _teams(store)
    service = AccessService(store, clock, hasher=hasher)
    service.set_user("ann", "Ann Example", "nurse", ("ward-a",), password=PASSWORD)
    service.set_user("bea", "Bea Example", "nurse", ("ward-b",), password=PASSWORD)
    service.set_user("ehr", "EHR pull", "service")
    return service


def test_login_gives_a_session_for_the_users_teams(store: Store, clock: Clock) -> None:
    service = _service(store, clock)
    token, record = service.login("Ann ", PASSWORD, "10.0.0.7")  # names are case-insensitive
    assert token.startswith("wws_")
    assert record == AccessToken(token_hash(token), "ann", "session", T0, T0 + timedelta(hours=12))
    assert store.get_token(token_hash(token)) == record
    assert service.authenticate(token) == Principal(
        "ann", "Ann Example", "nurse", frozenset({"ward-a"}), "session"
    )
    logins = store.list_audit(action="login")
    assert [(e.principal, e.outcome, e.remote) for e in logins] == [("ann", "success", "10.0.0.7")]
    for event in store.list_audit():
        assert PASSWORD not in repr(event)
        assert token not in repr(event)


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [
        ("ann", "wrong password!", "wrong password"),
        ("nobody", PASSWORD, "unknown user"),
        ("ehr", PASSWORD, "no password set"),
    ],
)
def test_a_refused_login_is_counted_and_audited(
    sqlite_store: Store, clock: Clock, username: str, password: str, reason: str
) -> None:
    hasher = CountingHasher()
    service = _service(sqlite_store, clock, hasher)
    with pytest.raises(LoginFailedError) as caught:
        service.login(username, password, "10.0.0.7")
    assert caught.value.reason == reason
    # Known or not, every refusal costs one argon2 verification.
    assert len(hasher.verified) == 1
    assert sqlite_store.count_login_failures(username, T0) == 1
    [event] = sqlite_store.list_audit(action="login")
    assert (event.principal, event.outcome, event.detail) == (username, "refused", reason)
    assert password not in repr(event)


def test_an_inactive_user_cannot_log_in_nor_use_a_session(
    sqlite_store: Store, clock: Clock
) -> None:
    service = _service(sqlite_store, clock)
    token, _ = service.login("ann", PASSWORD, None)
    service.set_user("ann", "Ann Example", "nurse", ("ward-a",), active=False)
    with pytest.raises(AuthenticationError, match="inactive"):
        service.authenticate(token)
    with pytest.raises(LoginFailedError, match="inactive"):
        service.login("ann", PASSWORD, None)


def test_failed_logins_are_throttled_per_user_name(store: Store, clock: Clock) -> None:
    service = _service(store, clock)
    for _ in range(5):
        with pytest.raises(LoginFailedError):
            service.login("ann", "not the password", "10.0.0.7")
        clock.advance(minutes=1)
    # Now even the right password waits, and the wait is counted from the first failure.
    with pytest.raises(LoginThrottledError) as caught:
        service.login("ann", PASSWORD, "10.0.0.8")
    assert caught.value.scope == "user name"
    assert caught.value.retry_after == 10 * 60  # first failure at T0 + 15 min - now (T0+5)
    assert store.count_login_failures("ann", T0) == 5  # a throttled try is not counted
    # Another user is not affected.
    service.login("bea", PASSWORD, "10.0.0.8")
    clock.advance(minutes=10)
    token, _ = service.login("ann", PASSWORD, "10.0.0.8")
    assert service.authenticate(token).username == "ann"
    assert store.count_login_failures("ann", T0) == 0  # a success clears them
    outcomes = [e.outcome for e in store.list_audit(principal="ann", action="login")]
    assert outcomes == ["refused"] * 5 + ["throttled", "success"]


def test_failed_logins_are_throttled_per_address(sqlite_store: Store, clock: Clock) -> None:
    service = _service(sqlite_store, clock)
    for i in range(20):
        with pytest.raises(LoginFailedError):
            service.login(f"guess{i}", "not the password", "192.0.2.9")
    with pytest.raises(LoginThrottledError) as caught:
        service.login("ann", PASSWORD, "192.0.2.9")
    assert caught.value.scope == "address"
    assert caught.value.retry_after == 15 * 60
    service.login("ann", PASSWORD, "192.0.2.10")  # from elsewhere


def test_sessions_expire_and_end_at_logout(store: Store, clock: Clock) -> None:
    service = _service(store, clock)
    token, _ = service.login("ann", PASSWORD, None)
    clock.advance(hours=12, seconds=-1)
    assert service.authenticate(token).username == "ann"
    clock.advance(seconds=1)
    with pytest.raises(AuthenticationError, match="expired"):
        service.authenticate(token)

    token, _ = service.login("ann", PASSWORD, None)
    assert service.logout(token, "10.0.0.7") is True
    with pytest.raises(AuthenticationError, match="revoked"):
        service.authenticate(token)
    with pytest.raises(AuthenticationError, match="unknown"):
        service.authenticate("wws_" + "x" * 43)
    with pytest.raises(AuthenticationError, match="malformed"):
        service.authenticate("Bearer something")
    assert [e.action for e in store.list_audit(principal="ann")] == ["login", "login", "logout"]


def test_a_stale_hash_is_upgraded_at_login(sqlite_store: Store, clock: Clock) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1)
    _service(sqlite_store, clock, weak)
    before = sqlite_store.get_user("ann")
    assert before is not None
    assert before.password_hash is not None
    assert "m=512" in before.password_hash
    service = AccessService(sqlite_store, clock, hasher=FAST)
    service.login("ann", PASSWORD, None)
    after = sqlite_store.get_user("ann")
    assert after is not None
    assert after.password_hash is not None
    assert "m=1024" in after.password_hash
    assert not FAST.check_needs_rehash(after.password_hash)
    service.login("ann", PASSWORD, None)  # the new hash verifies


def test_api_tokens_are_named_revocable_and_kept_as_hashes(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "tokens.db"
    store = open_store(f"sqlite:{path}")
    try:
        service = _service(store, clock)
        token = service.create_api_token("ehr", "nightly-pull")
        assert token.startswith("wwa_")
        clock.advance(days=400)
        principal = service.authenticate(token)
        assert (principal.role, principal.via) == ("service", "api")
        with pytest.raises(AccessSetupError, match="already has"):
            service.create_api_token("ehr", "nightly-pull")
        with pytest.raises(AccessSetupError, match="no user"):
            service.create_api_token("nobody", "x")
        short = service.create_api_token("ehr", "one-off", timedelta(days=1))
        clock.advance(days=1)
        with pytest.raises(AuthenticationError, match="expired"):
            service.authenticate(short)
        assert service.logout(token) is False  # an API token is not a session
        assert service.authenticate(token).username == "ehr"
        assert service.revoke_api_token("ehr", "nightly-pull") is True
        assert service.revoke_api_token("ehr", "nightly-pull") is False
        with pytest.raises(AuthenticationError, match="revoked"):
            service.authenticate(token)
        actions = [e.action for e in store.list_audit(principal="admin-cli")]
        assert actions.count("create-token") == 2
        assert actions.count("revoke-token") == 1
    finally:
        store.close()
    # Only hashes reach the disk.
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("tokens"))
    assert token.encode() not in data
    assert token_hash(token).encode() in data
    assert PASSWORD.encode() not in data


def test_user_administration_refuses_what_would_not_work(sqlite_store: Store, clock: Clock) -> None:
    service = _service(sqlite_store, clock)
    with pytest.raises(AccessSetupError, match="at least 12"):
        service.set_user("cat", "Cat", "nurse", ("ward-a",), password="short")
    with pytest.raises(AccessSetupError, match="needs at least one care team"):
        service.set_user("cat", "Cat", "nurse", (), password=PASSWORD)
    with pytest.raises(AccessSetupError, match="no care team"):
        service.set_user("cat", "Cat", "physician", ("ward-z",), password=PASSWORD)
    with pytest.raises(AccessSetupError, match="user name"):
        service.set_user("Cat Smith", "Cat", "system-admin", password=PASSWORD)
    assert sqlite_store.get_user("cat") is None
    # Updating without a password keeps the hash.
    before = sqlite_store.get_user("ann")
    service.set_user("ann", "Ann B.", "physician", ("ward-a", "ward-b"))
    after = sqlite_store.get_user("ann")
    assert before is not None
    assert after is not None
    assert after.password_hash == before.password_hash
    assert (after.role, after.teams) == ("physician", ("ward-a", "ward-b"))


# -- the HTTP edge ------------------------------------------------------------------------


def _app(store: Store, clock: Clock) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    app.state.access = _service(store, clock)

    @app.get("/api/v1/whoami")
    def whoami(principal: PrincipalDep) -> dict[str, str]:
        return {"username": principal.username, "via": principal.via}

    @app.post("/api/v1/poke")
    def poke(principal: PrincipalDep) -> dict[str, str]:
        return {"poked_by": principal.username}

    return app


@pytest.fixture
def app(sqlite_store: Store, clock: Clock) -> FastAPI:
    return _app(sqlite_store, clock)


def _set_cookie(response: object) -> str:
    headers = response.headers  # type: ignore[attr-defined]
    values: list[str] = headers.get_list("set-cookie")
    assert len(values) == 1, values
    return values[0]


def _problem(response: object, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["type"] == f"https://wardwatch.invalid/problems/{slug}"
    assert body["status"] == status
    return body


def test_login_answers_a_token_and_sets_a_strict_cookie(app: FastAPI) -> None:
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        response = client.post("/api/v1/auth/login", json={"username": "ann", "password": PASSWORD})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["expires_at"] == "2025-03-01T20:00:00Z"
        assert body["user"] == {
            "username": "ann",
            "display_name": "Ann Example",
            "role": "nurse",
            "teams": ["ward-a"],
        }
        assert response.headers["cache-control"] == "no-store"
        cookie = _set_cookie(response)
        assert cookie.split("; ") == [
            f"{SESSION_COOKIE}={body['token']}",
            "Path=/",
            "Max-Age=43200",
            "HttpOnly",
            "SameSite=Strict",
        ]  # no Secure: plain http on loopback
        me = client.get("/api/v1/me")  # through the cookie
        assert me.status_code == 200
        assert me.json() == {
            "username": "ann",
            "display_name": "Ann Example",
            "role": "nurse",
            "teams": ["ward-a"],
            "actions": ["read-patient", "act-on-alert", "decide-proposal"],
            "via": "session",
            "expires_at": "2025-03-01T20:00:00Z",
        }


@pytest.mark.parametrize("base_url", ["https://127.0.0.1", "http://wardwatch.example"])
def test_the_cookie_is_secure_unless_plain_http_on_loopback(app: FastAPI, base_url: str) -> None:
    with TestClient(app, base_url=base_url) as client:
        response = client.post("/api/v1/auth/login", json={"username": "ann", "password": PASSWORD})
        assert response.status_code == 200
        assert _set_cookie(response).endswith("; HttpOnly; SameSite=Strict; Secure")


def test_requests_without_valid_credentials_get_401_problems(app: FastAPI) -> None:
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/api/v1/whoami")
        _problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == 'Bearer realm="wardwatch"'

        response = client.get("/api/v1/whoami", headers={"Authorization": "Bearer wws_forged"})
        _problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"].endswith('error="invalid_token"')

        token = client.post(
            "/api/v1/auth/login", json={"username": "ann", "password": PASSWORD}
        ).json()["token"]
        # A malformed Authorization header is refused, not replaced by the valid cookie.
        response = client.get("/api/v1/whoami", headers={"Authorization": f"Basic {token}"})
        _problem(response, 401, "unauthenticated")
        assert client.get("/api/v1/whoami").json() == {"username": "ann", "via": "session"}

        # A cookie that no longer works is cleared.
        client.cookies.set(SESSION_COOKIE, "wws_" + "y" * 43)
        response = client.get("/api/v1/whoami")
        _problem(response, 401, "unauthenticated")
        assert _set_cookie(response).startswith(f'{SESSION_COOKIE}=""; Path=/; Max-Age=0')


def test_cookie_writes_need_the_csrf_header_bearer_writes_do_not(app: FastAPI) -> None:
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token = client.post(
            "/api/v1/auth/login", json={"username": "ann", "password": PASSWORD}
        ).json()["token"]
        body = _problem(client.post("/api/v1/poke"), 403, "csrf-header-missing")
        assert CSRF_HEADER in str(body["detail"])
        response = client.post("/api/v1/poke", headers={CSRF_HEADER: "1"})
        assert response.json() == {"poked_by": "ann"}
    with TestClient(app, base_url="http://127.0.0.1") as fresh:  # no cookie
        response = fresh.post("/api/v1/poke", headers={"Authorization": f"Bearer {token}"})
        assert response.json() == {"poked_by": "ann"}


def test_failed_and_throttled_logins_over_http(
    app: FastAPI, sqlite_store: Store, clock: Clock
) -> None:
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for _ in range(5):
            response = client.post(
                "/api/v1/auth/login", json={"username": "ann", "password": "guess-guess"}
            )
            body = _problem(response, 401, "login-failed")
            assert body["detail"] == "wrong user name or password"
            assert "set-cookie" not in response.headers
        clock.advance(minutes=3)
        response = client.post("/api/v1/auth/login", json={"username": "ann", "password": PASSWORD})
        _problem(response, 429, "login-throttled")
        assert response.headers["retry-after"] == str(12 * 60)
        unknown = client.post(
            "/api/v1/auth/login", json={"username": "nobody", "password": PASSWORD}
        )
        assert unknown.json()["detail"] == "wrong user name or password"  # same answer
    events = sqlite_store.list_audit(action="login")
    assert [(e.principal, e.outcome, e.remote) for e in events] == [
        *[("ann", "refused", "testclient")] * 5,
        ("ann", "throttled", "testclient"),
        ("nobody", "refused", "testclient"),
    ]


def test_logout_ends_the_session_and_clears_the_cookie(app: FastAPI) -> None:
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token = client.post(
            "/api/v1/auth/login", json={"username": "ann", "password": PASSWORD}
        ).json()["token"]
        _problem(client.post("/api/v1/auth/logout"), 403, "csrf-header-missing")
        response = client.post("/api/v1/auth/logout", headers={CSRF_HEADER: "1"})
        assert response.status_code == 204
        assert _set_cookie(response).startswith(f'{SESSION_COOKIE}=""; Path=/; Max-Age=0')
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        _problem(response, 401, "unauthenticated")


def test_an_api_token_authenticates_as_a_bearer(app: FastAPI) -> None:
    service: AccessService = app.state.access
    token = service.create_api_token("ehr", "pull")
    with TestClient(app, base_url="https://api.example") as client:
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert response.json()["via"] == "api"
        assert response.json()["actions"] == ["read-patient"]
        assert response.json()["expires_at"] is None


# -- the audit trail is append-only for the application's database role --------------------


def _documented_grants() -> list[str]:
    """The grants of the application role, as docs/security.md gives them."""
    text = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
    block = text.split("```sql\n", 1)[1].split("```", 1)[0]
    code = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
    statements = [s.strip() for s in code.split(";") if s.strip()]
    grants = [s for s in statements if s.split()[0] in {"GRANT", "REVOKE"}]
    assert len(grants) == 4, block
    return grants


def _tamper(store: Store, sql: str) -> None:
    """Run ``sql`` on the store's own connection, in its own transaction."""

    def run(cur: Any) -> None:
        cur.execute(sql)

    store._run("tamper", run)  # type: ignore[attr-defined]


@pytest.mark.postgres
def test_the_application_role_cannot_change_the_audit_trail(pg_dsn: str) -> None:
    store = open_store(pg_dsn)
    event = store.record_audit(AuditEvent(T0, "ann", "read", "success", patient="p-1"))
    # 1. The connection the store itself uses (here the schema owner): the triggers refuse.
    for statement in (
        "UPDATE audit_events SET outcome = 'refused'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ):
        with pytest.raises(StoreError, match="append-only"):
            _tamper(store, statement)
    store.close()

    # 2. The application role as docs/security.md sets it up: not the owner, not a superuser.
    role = f"ww_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app-password-for-test'")
        for grant in _documented_grants():
            admin.execute(grant.replace("wardwatch_app", role))
    try:
        given = conninfo_to_dict(pg_dsn)
        app_dsn = (
            f"postgresql://{role}:app-password-for-test@{given['host']}:{given['port']}/"
            f"{given['dbname']}"
        )
        app_store = open_store(app_dsn)  # migrate() finds nothing to do, as the app
        try:
            app_store.record_audit(AuditEvent(T0, "bea", "read", "success", patient="p-2"))
            for statement in (
                "UPDATE audit_events SET outcome = 'refused'",
                "DELETE FROM audit_events",
                "TRUNCATE audit_events",
                "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change",
                "DROP TRIGGER audit_events_no_change ON audit_events",
                "SET session_replication_role = replica",
            ):
                with pytest.raises(StoreError, match=r"permission denied|must be owner"):
                    _tamper(app_store, statement)
            # ...while the rest of its work goes on (a login writes users, tokens, audit).
            service = _service(app_store, Clock())
            token, _ = service.login("ann", PASSWORD, "10.0.0.7")
            assert service.authenticate(token).username == "ann"
            trail = app_store.list_audit(action="read")
            assert [(e.principal, e.outcome) for e in trail] == [
                ("ann", "success"),
                ("bea", "success"),
            ]
            assert trail[0] == event
        finally:
            app_store.close()
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")
