"""What the store mixins (``sqlite_*.py``, ``timescale_*.py``) may call on the store they are
mixed into: declared once here, for the type checker only."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, LiteralString, TypeVar

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")


class SqliteMixin:
    """Base of the SQLite store's mixins: its connection, lock and query helpers."""

    if TYPE_CHECKING:
        _db: sqlite3.Connection
        _lock: threading.Lock

        def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

        def _exec(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor: ...


class TimescaleMixin:
    """Base of the TimescaleDB store's mixins: its transaction and query helpers."""

    if TYPE_CHECKING:

        def _run(
            self,
            op: str,
            fn: Callable[[psycopg.Cursor[tuple[Any, ...]]], T],
            *,
            idempotent: bool = True,
        ) -> T: ...

        def _query(
            self, op: str, sql: LiteralString, args: Sequence[Any] = ()
        ) -> list[tuple[Any, ...]]: ...

        def _exec(
            self,
            op: str,
            sql: LiteralString,
            args: Sequence[Any] = (),
            *,
            idempotent: bool = True,
        ) -> None: ...
