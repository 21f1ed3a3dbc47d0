"""Store contract for people and services: users, roles, care-team membership, tokens.

Part of :class:`wardwatch.store.Store` (it inherits :class:`AccessStore`).
Implemented by ``ingest/stores/sqlite_access.py`` and ``ingest/stores/timescale_access.py``.
Password and token hashing live in ``alerting/access.py``; the store only keeps hashes
(argon2 for passwords, SHA-256 for tokens), never a password or a token itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, Protocol

Role = Literal["nurse", "physician", "care-team-admin", "system-admin", "service"]
ROLES: tuple[Role, ...] = ("nurse", "physician", "care-team-admin", "system-admin", "service")
TokenKind = Literal["session", "api"]
TOKEN_KINDS: tuple[TokenKind, ...] = ("session", "api")

_USERNAME: Final = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
_TOKEN_HASH: Final = re.compile(r"^[0-9a-f]{64}$")


def check_username(username: str) -> str:
    """``username`` if it is a valid user name (lower case, 1-64 of ``a-z0-9._@-``)."""
    if not _USERNAME.match(username):
        raise ValueError(
            f"user name {username!r} must be 1-64 characters of a-z, 0-9, '.', '_', '@', '-' "
            "starting with a letter or digit"
        )
    return username


@dataclass(frozen=True, slots=True)
class User:
    """A person or service account. Care-team roles see only their teams' patients."""

    username: str
    display_name: str
    role: Role
    teams: tuple[str, ...] = ()
    password_hash: str | None = None
    """argon2 hash; None: cannot log in with a password (service accounts use API tokens)."""
    active: bool = True
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        check_username(self.username)
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if not self.display_name.strip():
            raise ValueError("a user needs a display name")
        if len(set(self.teams)) != len(self.teams):
            raise ValueError(f"user {self.username!r} lists a care team twice")


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A session (short-lived, from a login) or API token, kept as a SHA-256 hash only."""

    token_hash: str
    username: str
    kind: TokenKind
    created_at: datetime
    expires_at: datetime | None
    name: str | None = None
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        if not _TOKEN_HASH.match(self.token_hash):
            raise ValueError("a token hash is 64 lower-case hex digits (SHA-256)")
        if self.kind not in TOKEN_KINDS:
            raise ValueError(f"token kind {self.kind!r} is not session or api")
        if self.kind == "session" and self.expires_at is None:
            raise ValueError("a session token must expire")
        if self.kind == "api" and not self.name:
            raise ValueError("an API token needs a name")

    def valid_at(self, at: datetime) -> bool:
        """Whether the token authenticates at ``at`` (not revoked, not expired)."""
        if self.revoked_at is not None and self.revoked_at <= at:
            return False
        return self.expires_at is None or at < self.expires_at


class AccessStore(Protocol):
    """Users, memberships, tokens and failed-login bookkeeping."""

    def upsert_user(self, user: User) -> None:
        """Create or replace a user (with their team memberships, which must exist).

        ``created_at`` None keeps the stored creation time of an existing user.
        """
        ...

    def get_user(self, username: str) -> User | None:
        """One user by name."""
        ...

    def list_users(self) -> list[User]:
        """Every user, ordered by name."""
        ...

    def add_token(self, token: AccessToken) -> None:
        """Store a token's hash (StoreError if the user does not exist or the hash is taken)."""
        ...

    def get_token(self, token_hash: str) -> AccessToken | None:
        """The token with this hash, if any (expired or revoked ones too)."""
        ...

    def list_tokens(
        self, username: str | None = None, kind: TokenKind | None = None
    ) -> list[AccessToken]:
        """Tokens (hashes and metadata), oldest first, optionally of one user and kind."""
        ...

    def revoke_token(self, token_hash: str, at: datetime) -> bool:
        """Revoke a token; return whether it existed and was not revoked."""
        ...

    def prune_tokens(self, before: datetime) -> int:
        """Delete tokens that expired or were revoked before ``before``; return how many."""
        ...

    def record_login_failure(self, username: str, remote: str | None, at: datetime) -> None:
        """Count one failed login for rate limiting."""
        ...

    def count_login_failures(self, username: str, since: datetime) -> int:
        """Failed logins for ``username`` at or after ``since``."""
        ...

    def login_failure_times(
        self, *, since: datetime, username: str | None = None, remote: str | None = None
    ) -> list[datetime]:
        """Times of failed logins at or after ``since``, oldest first, for one user name
        and/or one remote address (both None: all)."""
        ...

    def clear_login_failures(self, username: str) -> int:
        """Forget the failed logins of ``username`` (after a successful login)."""
        ...

    def prune_login_failures(self, before: datetime) -> int:
        """Delete failed-login records older than ``before``; return how many."""
        ...


__all__ = [
    "ROLES",
    "TOKEN_KINDS",
    "AccessStore",
    "AccessToken",
    "Role",
    "TokenKind",
    "User",
    "check_username",
]
