"""Conversions shared by the store implementations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from wardwatch.store_access import Role, User


def iso(at: datetime) -> str:
    """Fixed-width UTC ISO 8601 text that sorts in time order."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    """Inverse of :func:`iso`."""
    return datetime.fromisoformat(text)


def opt_iso(at: datetime | None) -> str | None:
    """:func:`iso`, or None for None."""
    return None if at is None else iso(at)


def opt_from_iso(text: str | None) -> datetime | None:
    """:func:`from_iso`, or None for None."""
    return None if text is None else from_iso(text)


def utc(at: datetime) -> datetime:
    """A datetime in UTC (naive ones are taken as local time, like :func:`iso`)."""
    return at.astimezone(UTC)


def opt_utc(at: datetime | None) -> datetime | None:
    """:func:`utc`, or None for None."""
    return None if at is None else utc(at)


def dumps(value: object) -> str:
    """Compact JSON text."""
    return orjson.dumps(value).decode()


def loads(text: str | bytes) -> object:
    """Parse JSON text."""
    return orjson.loads(text)


def users(
    rows: Iterable[Sequence[Any]],
    memberships: Iterable[Sequence[Any]],
    when: Callable[[Any], datetime | None],
) -> list[User]:
    """Users from (username, display_name, role, password_hash, active, created_at) rows and
    (username, team) memberships; ``when`` converts the store's time column."""
    teams: dict[str, list[str]] = {}
    for member, team in memberships:
        teams.setdefault(member, []).append(team)
    return [
        User(
            username=name,
            display_name=display,
            role=cast(Role, role),
            teams=tuple(teams.get(name, ())),
            password_hash=password_hash,
            active=bool(active),
            created_at=when(created),
        )
        for name, display, role, password_hash, active, created in rows
    ]
