"""TimescaleDB side of :mod:`wardwatch.store_access` (mixed into
:class:`ingest.stores.timescale.TimescaleStore`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from ingest.stores._mixins import TimescaleMixin
from ingest.stores._rows import opt_utc, users, utc
from wardwatch.store_access import AccessToken, TokenKind, User

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
Row = tuple[Any, ...]

_USER_COLUMNS: Final = "username, display_name, role, password_hash, active, created_at"
_GRANT_COLUMNS: Final = "token_hash, username, kind, created_at, expires_at, name, revoked_at"


def _token(row: Row) -> AccessToken:
    token_hash, username, kind, created, expires, name, revoked = row
    return AccessToken(
        token_hash=token_hash,
        username=username,
        kind=cast(TokenKind, kind),
        created_at=utc(created),
        expires_at=opt_utc(expires),
        name=name,
        revoked_at=opt_utc(revoked),
    )


class TimescaleAccessMixin(TimescaleMixin):
    """Methods of :class:`wardwatch.store_access` on TimescaleDB (schema: migrations/)."""

    # -- users ---------------------------------------------------------------------------
    def upsert_user(self, user: User) -> None:
        """Create or replace a user and their memberships in one transaction."""

        def run(cur: psycopg.Cursor[Row]) -> None:
            cur.execute(
                f"INSERT INTO users ({_USER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (username) DO UPDATE SET display_name=excluded.display_name, "
                "role=excluded.role, password_hash=excluded.password_hash, "
                "active=excluded.active, "
                "created_at=coalesce(excluded.created_at, users.created_at)",
                (
                    user.username,
                    user.display_name,
                    user.role,
                    user.password_hash,
                    user.active,
                    opt_utc(user.created_at),
                ),
            )
            cur.execute("DELETE FROM team_members WHERE username=%s", (user.username,))
            if user.teams:
                cur.executemany(
                    "INSERT INTO team_members (username, team) VALUES (%s, %s)",
                    [(user.username, team) for team in user.teams],
                )

        self._run("upsert_user", run)

    def _users(self, username: str | None) -> list[User]:
        def run(cur: psycopg.Cursor[Row]) -> tuple[list[Row], list[Row]]:
            if username is None:
                cur.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")
                users = cur.fetchall()
                cur.execute("SELECT username, team FROM team_members ORDER BY username, team")
            else:
                cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username=%s", (username,))
                users = cur.fetchall()
                cur.execute(
                    "SELECT username, team FROM team_members WHERE username=%s ORDER BY team",
                    (username,),
                )
            return users, cur.fetchall()

        rows, memberships = self._run("get_users", run)
        return users(rows, memberships, opt_utc)

    def get_user(self, username: str) -> User | None:
        """One user by name."""
        found = self._users(username)
        return found[0] if found else None

    def list_users(self) -> list[User]:
        """Every user, ordered by name."""
        return self._users(None)

    # -- tokens --------------------------------------------------------------------------
    def add_token(self, token: AccessToken) -> None:
        """Store a token's hash."""
        self._exec(
            "add_token",
            f"INSERT INTO access_tokens ({_GRANT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                token.token_hash,
                token.username,
                token.kind,
                utc(token.created_at),
                opt_utc(token.expires_at),
                token.name,
                opt_utc(token.revoked_at),
            ),
            idempotent=False,
        )

    def get_token(self, token_hash: str) -> AccessToken | None:
        """The token with this hash, if any."""
        rows = self._query(
            "get_token",
            f"SELECT {_GRANT_COLUMNS} FROM access_tokens WHERE token_hash=%s",
            (token_hash,),
        )
        return _token(rows[0]) if rows else None

    def list_tokens(
        self, username: str | None = None, kind: TokenKind | None = None
    ) -> list[AccessToken]:
        """Tokens, oldest first, optionally of one user and kind."""
        rows = self._query(
            "list_tokens",
            f"SELECT {_GRANT_COLUMNS} FROM access_tokens "
            "WHERE (%s::text IS NULL OR username=%s) AND (%s::text IS NULL OR kind=%s) "
            "ORDER BY created_at, token_hash",
            (username, username, kind, kind),
        )
        return [_token(r) for r in rows]

    def revoke_token(self, token_hash: str, at: datetime) -> bool:
        """Revoke a token; return whether it existed and was not revoked."""

        def run(cur: psycopg.Cursor[Row]) -> bool:
            cur.execute(
                "UPDATE access_tokens SET revoked_at=%s WHERE token_hash=%s AND revoked_at IS NULL",
                (utc(at), token_hash),
            )
            return cur.rowcount == 1

        return self._run("revoke_token", run)

    def prune_tokens(self, before: datetime) -> int:
        """Delete tokens that expired or were revoked before ``before``."""

        def run(cur: psycopg.Cursor[Row]) -> int:
            cur.execute(
                "DELETE FROM access_tokens WHERE expires_at < %s OR revoked_at < %s",
                (utc(before), utc(before)),
            )
            return cur.rowcount

        return self._run("prune_tokens", run)

    # -- failed logins ---------------------------------------------------------------------
    def record_login_failure(self, username: str, remote: str | None, at: datetime) -> None:
        """Count one failed login."""
        self._exec(
            "record_login_failure",
            "INSERT INTO login_failures (username, remote, at) VALUES (%s, %s, %s)",
            (username, remote, utc(at)),
            idempotent=False,
        )

    def count_login_failures(self, username: str, since: datetime) -> int:
        """Failed logins for ``username`` at or after ``since``."""
        rows = self._query(
            "count_login_failures",
            "SELECT count(*) FROM login_failures WHERE username=%s AND at>=%s",
            (username, utc(since)),
        )
        return int(rows[0][0])

    def login_failure_times(
        self, *, since: datetime, username: str | None = None, remote: str | None = None
    ) -> list[datetime]:
        """Times of failed logins at or after ``since``, oldest first."""
        rows = self._query(
            "login_failure_times",
            "SELECT at FROM login_failures WHERE at>=%s "
            "AND (%s::text IS NULL OR username=%s) AND (%s::text IS NULL OR remote=%s) "
            "ORDER BY at, id",
            (utc(since), username, username, remote, remote),
        )
        return [utc(at) for (at,) in rows]

    def clear_login_failures(self, username: str) -> int:
        """Forget the failed logins of ``username``."""

        def run(cur: psycopg.Cursor[Row]) -> int:
            cur.execute("DELETE FROM login_failures WHERE username=%s", (username,))
            return cur.rowcount

        return self._run("clear_login_failures", run)

    def prune_login_failures(self, before: datetime) -> int:
        """Delete failed-login records older than ``before``."""

        def run(cur: psycopg.Cursor[Row]) -> int:
            cur.execute("DELETE FROM login_failures WHERE at<%s", (utc(before),))
            return cur.rowcount

        return self._run("prune_login_failures", run)
