"""Who may do what: principals, roles and actions, passwords, sessions and API tokens.

- **Roles and actions.** A :class:`Principal` is an authenticated user as the API sees
  them. ``can(action)`` answers from the role alone (:data:`ROLE_ACTIONS`), ``sees(patient)``
  from care-team membership: nurses, physicians and care-team admins see the patients of
  their teams; system admins and the service role (EHR pulls, read-only) see every patient.
  ``may(action, patient)`` is both.
- **Passwords** are argon2id hashes (argon2-cffi, its RFC 9106 default parameters); a hash
  made with older parameters is replaced at the next successful login.
- **Tokens** are 256-bit random strings with a kind prefix (``wws_`` session, ``wwa_`` API);
  the store keeps only their SHA-256 hash. A session token comes from a login and has a
  fixed lifetime (12 hours by default: one shift; no idle timeout). API tokens are for
  services: named, long-lived (optionally expiring) and revocable.
- **Failed logins** are rate limited: 5 per user name and 20 per remote address in 15
  minutes; beyond that :class:`~alerting.errors.LoginThrottledError` says when to retry. A
  successful login clears the user name's failures. An unknown user name costs the same
  argon2 verification as a known one, so response times do not reveal which names exist.
- Every login (success, failure, throttled), logout and token change is appended to the
  audit trail (``store.record_audit``), never with the password or token.

Time comes from an injected ``clock`` (tests use a fake one).
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from alerting.errors import (
    AccessDeniedError,
    AccessSetupError,
    AuthenticationError,
    LoginFailedError,
    LoginThrottledError,
)
from wardwatch.store import AuditEvent, Patient
from wardwatch.store_access import ROLES, AccessToken, Role, TokenKind, User, check_username

if TYPE_CHECKING:
    from wardwatch.store import Store

log = logging.getLogger(__name__)

Action = Literal[
    "read-patient",
    "act-on-alert",
    "decide-proposal",
    "edit-care-plan",
    "pair-device",
    "read-audit",
    "admin-users",
]
ACTIONS: tuple[Action, ...] = get_args(Action)

_NURSE: Final[frozenset[Action]] = frozenset({"read-patient", "act-on-alert", "decide-proposal"})
_PHYSICIAN: Final[frozenset[Action]] = _NURSE | frozenset[Action]({"edit-care-plan"})
_TEAM_ADMIN: Final[frozenset[Action]] = _PHYSICIAN | frozenset[Action](
    {"pair-device", "read-audit"}
)
ROLE_ACTIONS: Mapping[Role, frozenset[Action]] = {
    "nurse": _NURSE,
    "physician": _PHYSICIAN,
    "care-team-admin": _TEAM_ADMIN,
    "system-admin": frozenset(ACTIONS),
    "service": frozenset({"read-patient"}),
}
"""What each role may do (on the patients it sees). Care-team admins read the audit trail
of their teams' patients; system admins all of it."""

ALL_PATIENTS_ROLES: frozenset[Role] = frozenset({"system-admin", "service"})
"""Roles that see every patient (the others see their care teams' patients)."""

Via = Literal["session", "api"]

SESSION_TTL: Final = timedelta(hours=12)
FAILURE_WINDOW: Final = timedelta(minutes=15)
MAX_FAILURES_PER_USER: Final = 5
MAX_FAILURES_PER_REMOTE: Final = 20
MIN_PASSWORD_LENGTH: Final = 12
MAX_PASSWORD_LENGTH: Final = 1024
"""Longer input is refused before hashing (it would only cost the server time)."""
TOKEN_PREFIX: Mapping[TokenKind, str] = {"session": "wws_", "api": "wwa_"}
AUDIT_PRINCIPAL_UNKNOWN: Final = "anonymous"


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user or service, as the API sees them."""

    username: str
    display_name: str
    role: Role
    teams: frozenset[str]
    via: Via

    @classmethod
    def of(cls, user: User, via: Via) -> Principal:
        """The principal for ``user`` authenticated through a session or an API token."""
        return cls(user.username, user.display_name, user.role, frozenset(user.teams), via)

    @property
    def all_patients(self) -> bool:
        """Whether this principal sees every patient (system admin, service)."""
        return self.role in ALL_PATIENTS_ROLES

    def sees_team(self, team: str | None) -> bool:
        """Whether the patients of care team ``team`` are visible (None: no team)."""
        return self.all_patients or (team is not None and team in self.teams)

    def sees(self, patient: Patient) -> bool:
        """Whether this principal may see ``patient`` at all."""
        return self.sees_team(patient.care_team)

    def can(self, action: str) -> bool:
        """Whether the role allows ``action`` (one of :data:`ACTIONS`; ValueError otherwise)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        return action in ROLE_ACTIONS[self.role]

    def may(self, action: str, patient: Patient) -> bool:
        """Whether the role allows ``action`` and ``patient`` is visible."""
        return self.can(action) and self.sees(patient)

    def require(self, action: str, patient: Patient | None = None) -> None:
        """Raise :class:`~alerting.errors.AccessDeniedError` unless :meth:`can` (and
        :meth:`sees` ``patient``, when given)."""
        if not self.can(action) or (patient is not None and not self.sees(patient)):
            raise AccessDeniedError(self.username, action)

    def actions(self) -> list[Action]:
        """What the role allows, in :data:`ACTIONS` order (for the page's menus)."""
        return [a for a in ACTIONS if a in ROLE_ACTIONS[self.role]]


# -- passwords and tokens ---------------------------------------------------------------

_DEFAULT_HASHER: Final = PasswordHasher()


def hash_password(password: str, hasher: PasswordHasher = _DEFAULT_HASHER) -> str:
    """An argon2id hash of ``password`` (with a fresh random salt)."""
    return hasher.hash(password)


def verify_password(
    password_hash: str, password: str, hasher: PasswordHasher = _DEFAULT_HASHER
) -> bool:
    """Whether ``password`` matches ``password_hash`` (False for a malformed hash too)."""
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_new_password(password: str) -> None:
    """Refuse a password too short or too long to set (AccessSetupError)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccessSetupError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccessSetupError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def new_token(kind: TokenKind) -> str:
    """A fresh random token (256 bits) with its kind's prefix."""
    return TOKEN_PREFIX[kind] + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _normalise(username: str) -> str:
    return username.strip().lower()


# -- the service ------------------------------------------------------------------------


class AccessService:
    """Logins, sessions, API tokens and user administration over a store.

    ``hasher`` is argon2-cffi's :class:`~argon2.PasswordHasher` (tests pass cheap
    parameters); stored hashes made with other parameters are upgraded at login.
    """

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime] = utcnow,
        *,
        session_ttl: timedelta = SESSION_TTL,
        failure_window: timedelta = FAILURE_WINDOW,
        max_failures_per_user: int = MAX_FAILURES_PER_USER,
        max_failures_per_remote: int = MAX_FAILURES_PER_REMOTE,
        hasher: PasswordHasher | None = None,
    ) -> None:
        if session_ttl <= timedelta(0) or failure_window <= timedelta(0):
            raise ValueError("session_ttl and failure_window must be positive")
        if max_failures_per_user < 1 or max_failures_per_remote < 1:
            raise ValueError("the failed-login limits must be at least 1")
        self.store = store
        self.clock = clock
        self.session_ttl = session_ttl
        self.failure_window = failure_window
        self.max_failures_per_user = max_failures_per_user
        self.max_failures_per_remote = max_failures_per_remote
        self.hasher = hasher or _DEFAULT_HASHER
        self._dummy_hash: str | None = None

    # -- passwords ------------------------------------------------------------------------
    def hash_password(self, password: str) -> str:
        """Hash with this service's parameters."""
        return hash_password(password, self.hasher)

    def _verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification (for unknown or password-less users)."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        verify_password(self._dummy_hash, password, self.hasher)

    # -- login ----------------------------------------------------------------------------
    def _retry_after(self, times: list[datetime], limit: int, now: datetime) -> int | None:
        """Seconds until fewer than ``limit`` of ``times`` fall in the window (None: now).

        A failure counts while ``now - window < t``: once ``retry_after`` seconds have
        passed, the oldest failure that mattered no longer does.
        """
        times = [t for t in times if t > now - self.failure_window]
        if len(times) < limit:
            return None
        # Allowed again once the limit-th most recent failure leaves the window.
        free_at = times[-limit] + self.failure_window
        return max(1, math.ceil((free_at - now).total_seconds()))

    def _audit(
        self,
        principal: str,
        action: str,
        outcome: str,
        at: datetime,
        *,
        remote: str | None = None,
        detail: str | None = None,
        resource: str | None = None,
    ) -> None:
        self.store.record_audit(
            AuditEvent(
                at=at,
                principal=principal,
                action=action,
                outcome=outcome,
                remote=remote,
                detail=detail,
                resource=resource,
            )
        )

    def check_throttle(self, username: str, remote: str | None) -> None:
        """Raise LoginThrottledError if ``username`` or ``remote`` failed too often lately."""
        now = self.clock()
        since = now - self.failure_window
        user_wait = self._retry_after(
            self.store.login_failure_times(since=since, username=username),
            self.max_failures_per_user,
            now,
        )
        if user_wait is not None:
            raise LoginThrottledError(user_wait, "user name")
        if remote is not None:
            remote_wait = self._retry_after(
                self.store.login_failure_times(since=since, remote=remote),
                self.max_failures_per_remote,
                now,
            )
            if remote_wait is not None:
                raise LoginThrottledError(remote_wait, "address")

    def login(self, username: str, password: str, remote: str | None) -> tuple[str, AccessToken]:
        """Check a password; return a new session token and its record.

        LoginThrottledError before any password check when over a limit; LoginFailedError
        for a wrong name or password, an inactive or password-less account (one error for
        all, audited with the precise reason).
        """
        name = _normalise(username)[:64]
        now = self.clock()
        try:
            self.check_throttle(name, remote)
        except LoginThrottledError as exc:
            self._audit(name, "login", "throttled", now, remote=remote, detail=str(exc))
            raise
        user = self.store.get_user(name)
        reason: str | None = None
        if len(password) > MAX_PASSWORD_LENGTH:
            reason = "password too long"
        elif user is None or user.password_hash is None:
            self._verify_dummy(password)
            reason = "unknown user" if user is None else "no password set"
        elif not verify_password(user.password_hash, password, self.hasher):
            reason = "wrong password"
        elif not user.active:
            reason = "account inactive"
        if reason is not None or user is None:
            self.store.record_login_failure(name, remote, now)
            self._audit(name, "login", "refused", now, remote=remote, detail=reason)
            log.info("login refused (%s)", reason)
            raise LoginFailedError(reason or "unknown user")
        assert user.password_hash is not None
        if self.hasher.check_needs_rehash(user.password_hash):
            self.store.upsert_user(replace(user, password_hash=self.hash_password(password)))
        self.store.clear_login_failures(name)
        token = new_token("session")
        record = AccessToken(
            token_hash=token_hash(token),
            username=user.username,
            kind="session",
            created_at=now,
            expires_at=now + self.session_ttl,
        )
        self.store.add_token(record)
        self._audit(user.username, "login", "success", now, remote=remote)
        self._housekeeping(now)
        return token, record

    def _housekeeping(self, now: datetime) -> None:
        """Drop records nobody needs any more (expired or revoked a day ago, old failures)."""
        self.store.prune_tokens(now - timedelta(days=1))
        self.store.prune_login_failures(now - self.failure_window)

    # -- tokens ---------------------------------------------------------------------------
    def authenticate_token(self, token: str) -> tuple[Principal, AccessToken]:
        """The principal a token stands for, and its record (AuthenticationError if none)."""
        if not token.startswith(tuple(TOKEN_PREFIX.values())) or len(token) > 128:
            raise AuthenticationError("malformed token")
        record = self.store.get_token(token_hash(token))
        if record is None:
            raise AuthenticationError("unknown token")
        now = self.clock()
        if record.revoked_at is not None and record.revoked_at <= now:
            raise AuthenticationError("token revoked")
        if not record.valid_at(now):
            raise AuthenticationError("token expired")
        user = self.store.get_user(record.username)
        if user is None or not user.active:
            raise AuthenticationError("account inactive")
        return Principal.of(user, record.kind), record

    def authenticate(self, token: str) -> Principal:
        """The principal a token stands for (AuthenticationError if none)."""
        return self.authenticate_token(token)[0]

    def logout(self, token: str, remote: str | None = None) -> bool:
        """End a session (API tokens are revoked by :meth:`revoke_api_token`, not here).

        Return whether a live session was ended.
        """
        principal, record = self.authenticate_token(token)
        if record.kind != "session":
            return False
        now = self.clock()
        ended = self.store.revoke_token(record.token_hash, now)
        self._audit(principal.username, "logout", "success", now, remote=remote)
        return ended

    def create_api_token(
        self,
        username: str,
        name: str,
        ttl: timedelta | None = None,
        *,
        by: str = "admin-cli",
    ) -> str:
        """A new API token for ``username`` (returned once; only its hash is kept).

        ``ttl`` None: it never expires (revoke it when done). One live token per user and
        name (AccessSetupError otherwise).
        """
        user = self.store.get_user(username)
        if user is None:
            raise AccessSetupError(f"no user {username!r}")
        if not user.active:
            raise AccessSetupError(f"user {username!r} is inactive")
        if not name.strip():
            raise AccessSetupError("an API token needs a name")
        now = self.clock()
        if ttl is not None and ttl <= timedelta(0):
            raise AccessSetupError("an API token's lifetime must be positive")
        if any(t.name == name and t.revoked_at is None for t in self.live_api_tokens(username)):
            raise AccessSetupError(f"user {username!r} already has a live API token {name!r}")
        token = new_token("api")
        self.store.add_token(
            AccessToken(
                token_hash=token_hash(token),
                username=username,
                kind="api",
                created_at=now,
                expires_at=None if ttl is None else now + ttl,
                name=name,
            )
        )
        self._audit(by, "create-token", "success", now, resource=f"User/{username}", detail=name)
        return token

    def live_api_tokens(self, username: str | None = None) -> list[AccessToken]:
        """API tokens not revoked (expired ones included: revoke those too)."""
        return [t for t in self.store.list_tokens(username, "api") if t.revoked_at is None]

    def revoke_api_token(self, username: str, name: str, *, by: str = "admin-cli") -> bool:
        """Revoke the live API token ``name`` of ``username``; return whether there was one."""
        now = self.clock()
        for record in self.live_api_tokens(username):
            if record.name == name and self.store.revoke_token(record.token_hash, now):
                self._audit(
                    by, "revoke-token", "success", now, resource=f"User/{username}", detail=name
                )
                return True
        return False

    # -- users ----------------------------------------------------------------------------
    def set_user(
        self,
        username: str,
        display_name: str,
        role: Role,
        teams: tuple[str, ...] = (),
        *,
        password: str | None = None,
        active: bool = True,
        by: str = "admin-cli",
    ) -> User:
        """Create or update a user; ``password`` None keeps the stored hash (if any).

        The password must pass :func:`check_new_password`; team roles need a team.
        """
        try:
            check_username(username)
            if role not in ROLES:
                raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        except ValueError as exc:
            raise AccessSetupError(str(exc)) from exc
        if role not in ALL_PATIENTS_ROLES and not teams:
            raise AccessSetupError(f"a {role} needs at least one care team")
        for team in teams:
            if self.store.get_care_team(team) is None:
                raise AccessSetupError(f"no care team {team!r}")
        existing = self.store.get_user(username)
        if password is not None:
            check_new_password(password)
            password_hash: str | None = self.hash_password(password)
        else:
            password_hash = existing.password_hash if existing is not None else None
        now = self.clock()
        try:
            user = User(
                username=username,
                display_name=display_name,
                role=role,
                teams=tuple(teams),
                password_hash=password_hash,
                active=active,
                created_at=existing.created_at if existing is not None else now,
            )
        except ValueError as exc:
            raise AccessSetupError(str(exc)) from exc
        self.store.upsert_user(user)
        self._audit(
            by,
            "update-user" if existing is not None else "create-user",
            "success",
            now,
            resource=f"User/{username}",
            detail=f"role {role}" + ("; password set" if password is not None else ""),
        )
        return user


__all__ = [
    "ACTIONS",
    "ALL_PATIENTS_ROLES",
    "ROLE_ACTIONS",
    "AccessService",
    "Action",
    "Principal",
    "Via",
    "check_new_password",
    "hash_password",
    "new_token",
    "token_hash",
    "verify_password",
]
