"""Store implementations and the URL that selects one.

``sqlite:PATH`` opens the embedded SQLite store; ``postgresql://...`` (or ``postgres://``)
opens the TimescaleDB store.
"""

from __future__ import annotations

from ingest.errors import StoreError
from wardwatch.store import Store


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open the store named by ``url`` and (by default) bring its schema up to date."""
    store: Store
    if url.startswith("sqlite:"):
        from ingest.stores.sqlite import SqliteStore

        store = SqliteStore(url.removeprefix("sqlite:").removeprefix("//"))
    elif url.startswith(("postgresql://", "postgres://")):
        from ingest.stores.timescale import TimescaleStore

        store = TimescaleStore(url)
    else:
        raise StoreError(f"unknown store {url!r}: use sqlite:PATH or postgresql://...")
    if migrate:
        store.migrate()
    return store
