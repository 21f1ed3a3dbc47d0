"""SQLite side of :mod:`wardwatch.store_access` (a SqliteStore mixin)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Final, cast

from ingest.errors import StoreError
from ingest.stores._mixins import SqliteMixin
from ingest.stores._rows import from_iso, iso, opt_from_iso, opt_iso, users
from wardwatch.store_access import AccessToken, TokenKind, User

if TYPE_CHECKING:
    from datetime import datetime

_USER_COLUMNS: Final = "username, display_name, role, password_hash, active, created_at"
_GRANT_COLUMNS: Final = "token_hash, username, kind, created_at, expires_at, name, revoked_at"


def _token(row: tuple[Any, ...]) -> AccessToken:
    token_hash, username, kind, created, expires, name, revoked = row
    return AccessToken(
        token_hash=token_hash,
        username=username,
        kind=cast(TokenKind, kind),
        created_at=from_iso(created),
        expires_at=opt_from_iso(expires),
        name=name,
        revoked_at=opt_from_iso(revoked),
    )


class SqliteAccessMixin(SqliteMixin):
    """Methods of :class:`wardwatch.store_access` on SQLite (schema: migrations/sqlite)."""

    # -- users ---------------------------------------------------------------------------
    def upsert_user(self, user: User) -> None:
        """Create or replace a user and their memberships in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (username) DO UPDATE SET display_name=excluded.display_name, "
                    "role=excluded.role, password_hash=excluded.password_hash, "
                    "active=excluded.active, "
                    "created_at=coalesce(excluded.created_at, users.created_at)",
                    (
                        user.username,
                        user.display_name,
                        user.role,
                        user.password_hash,
                        int(user.active),
                        opt_iso(user.created_at),
                    ),
                )
                self._db.execute("DELETE FROM team_members WHERE username=?", (user.username,))
                self._db.executemany(
                    "INSERT INTO team_members (username, team) VALUES (?, ?)",
                    [(user.username, team) for team in user.teams],
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"user {user.username!r}: {exc}") from exc
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _users(self, username: str | None) -> list[User]:
        where, args = ("WHERE username=?", (username,)) if username is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_USER_COLUMNS} FROM users {where} ORDER BY username", args
            ).fetchall()
            memberships = self._db.execute(
                f"SELECT username, team FROM team_members {where} ORDER BY username, team", args
            ).fetchall()
        return users(rows, memberships, opt_from_iso)

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
            f"INSERT INTO access_tokens ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                token.token_hash,
                token.username,
                token.kind,
                iso(token.created_at),
                opt_iso(token.expires_at),
                token.name,
                opt_iso(token.revoked_at),
            ),
        )

    def get_token(self, token_hash: str) -> AccessToken | None:
        """The token with this hash, if any."""
        rows = self._query(
            f"SELECT {_GRANT_COLUMNS} FROM access_tokens WHERE token_hash=?", (token_hash,)
        )
        return _token(rows[0]) if rows else None

    def list_tokens(
        self, username: str | None = None, kind: TokenKind | None = None
    ) -> list[AccessToken]:
        """Tokens, oldest first, optionally of one user and kind."""
        sql = f"SELECT {_GRANT_COLUMNS} FROM access_tokens WHERE 1=1"
        args: list[Any] = []
        if username is not None:
            sql += " AND username=?"
            args.append(username)
        if kind is not None:
            sql += " AND kind=?"
            args.append(kind)
        return [_token(r) for r in self._query(sql + " ORDER BY created_at, token_hash", args)]

    def revoke_token(self, token_hash: str, at: datetime) -> bool:
        """Revoke a token; return whether it existed and was not revoked."""
        cur = self._exec(
            "UPDATE access_tokens SET revoked_at=? WHERE token_hash=? AND revoked_at IS NULL",
            (iso(at), token_hash),
        )
        return cur.rowcount == 1

    def prune_tokens(self, before: datetime) -> int:
        """Delete tokens that expired or were revoked before ``before``."""
        cur = self._exec(
            "DELETE FROM access_tokens WHERE expires_at < ? OR revoked_at < ?",
            (iso(before), iso(before)),
        )
        return cur.rowcount

    # -- failed logins ---------------------------------------------------------------------
    def record_login_failure(self, username: str, remote: str | None, at: datetime) -> None:
        """Count one failed login."""
        self._exec(
            "INSERT INTO login_failures (username, remote, at) VALUES (?, ?, ?)",
            (username, remote, iso(at)),
        )

    def count_login_failures(self, username: str, since: datetime) -> int:
        """Failed logins for ``username`` at or after ``since``."""
        rows = self._query(
            "SELECT count(*) FROM login_failures WHERE username=? AND at>=?",
            (username, iso(since)),
        )
        return int(rows[0][0])

    def login_failure_times(
        self, *, since: datetime, username: str | None = None, remote: str | None = None
    ) -> list[datetime]:
        """Times of failed logins at or after ``since``, oldest first."""
        sql = "SELECT at FROM login_failures WHERE at>=?"
        args: list[Any] = [iso(since)]
        if username is not None:
            sql += " AND username=?"
            args.append(username)
        if remote is not None:
            sql += " AND remote=?"
            args.append(remote)
        return [from_iso(at) for (at,) in self._query(sql + " ORDER BY at, id", args)]

    def clear_login_failures(self, username: str) -> int:
        """Forget the failed logins of ``username``."""
        return self._exec("DELETE FROM login_failures WHERE username=?", (username,)).rowcount

    def prune_login_failures(self, before: datetime) -> int:
        """Delete failed-login records older than ``before``."""
        return self._exec("DELETE FROM login_failures WHERE at<?", (iso(before),)).rowcount
