"""Conversions shared by the store implementations."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson


def iso(at: datetime) -> str:
    """Fixed-width UTC ISO 8601 text that sorts in time order."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    """Inverse of :func:`iso`."""
    return datetime.fromisoformat(text)


def dumps(value: object) -> str:
    """Compact JSON text."""
    return orjson.dumps(value).decode()


def loads(text: str | bytes) -> object:
    """Parse JSON text."""
    return orjson.loads(text)
