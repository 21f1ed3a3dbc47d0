"""TimescaleDB side of :mod:`wardwatch.store_alerts` (mixed into
:class:`ingest.stores.timescale.TimescaleStore`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, LiteralString, TypeVar

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")


class TimescaleAlertsMixin:
    """Methods of :class:`wardwatch.store_alerts` on TimescaleDB (schema: migrations/)."""

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
