"""Store contract for people and services: users, roles, care-team membership, tokens.

Part of :class:`wardwatch.store.Store` (it inherits :class:`AccessStore`).
Implemented by ``ingest/stores/sqlite_access.py`` and ``ingest/stores/timescale_access.py``.
Password and token hashing live in ``alerting/access.py``; the store only keeps hashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Role = Literal["nurse", "physician", "care-team-admin", "system-admin", "service"]
ROLES: tuple[Role, ...] = ("nurse", "physician", "care-team-admin", "system-admin", "service")
TokenKind = Literal["session", "api"]


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


class AccessStore(Protocol):
    """Users, memberships, tokens and failed-login bookkeeping."""

    def upsert_user(self, user: User) -> None:
        """Create or replace a user (with their team memberships)."""
        ...

    def get_user(self, username: str) -> User | None:
        """One user by name."""
        ...

    def list_users(self) -> list[User]:
        """Every user, ordered by name."""
        ...

    def add_token(self, token: AccessToken) -> None:
        """Store a token's hash."""
        ...

    def get_token(self, token_hash: str) -> AccessToken | None:
        """The token with this hash, if any (expired or revoked ones too)."""
        ...

    def revoke_token(self, token_hash: str, at: datetime) -> bool:
        """Revoke a token; return whether it existed and was not revoked."""
        ...

    def record_login_failure(self, username: str, remote: str | None, at: datetime) -> None:
        """Count one failed login for rate limiting."""
        ...

    def count_login_failures(self, username: str, since: datetime) -> int:
        """Failed logins for ``username`` at or after ``since``."""
        ...


__all__ = ["ROLES", "AccessStore", "AccessToken", "Role", "TokenKind", "User"]
