"""SQLite side of :mod:`wardwatch.store_access` (a SqliteStore mixin)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any


class SqliteAccessMixin:
    """Methods of :class:`wardwatch.store_access` on SQLite (schema: migrations/sqlite)."""

    if TYPE_CHECKING:
        _db: sqlite3.Connection
        _lock: threading.Lock

        def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

        def _exec(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor: ...
