"""Shared pytest fixtures. Keep each part in its own section; append new sections below."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from ingest.stores import open_store
from tests.support.services import MosquittoServer, ServiceUnavailable, TimescaleServer
from wardwatch.store import Store

# --------------------------------------------------------------------------------------
# Real services: mosquitto and PostgreSQL + TimescaleDB (tests/support/services.py)
#
# A service that cannot start makes its tests SKIP locally but FAIL when $CI is set:
# CI must never go green by skipping the integration tests.
# --------------------------------------------------------------------------------------


S = TypeVar("S", MosquittoServer, TimescaleServer)


def service_unavailable(message: str) -> NoReturn:
    """Skip the test, or fail it when the ``CI`` environment variable is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}\n(CI is set: a missing service is a failure, not a skip)")
    pytest.skip(message)


def _start(factory: Callable[[], S]) -> S:
    server = factory()
    try:
        server.start()
    except ServiceUnavailable as exc:
        server.close()
        service_unavailable(str(exc))
    return server


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoServer]:
    """A running mosquitto broker on 127.0.0.1 (``.host``, ``.port``, ``.url``)."""
    server = _start(MosquittoServer)
    with server:
        yield server


@pytest.fixture(scope="session")
def timescale() -> Iterator[TimescaleServer]:
    """A running PostgreSQL 15 + TimescaleDB cluster (``.dsn`` is database ``wardwatch``)."""
    server = _start(TimescaleServer)
    with server:
        yield server


@pytest.fixture
def pg_dsn(timescale: TimescaleServer) -> Iterator[str]:
    """DSN of a fresh database with the timescaledb extension, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    dsn = timescale.create_database(name)
    yield dsn
    if timescale.running:
        timescale.drop_database(name)


# -- stores: every store-backed test can run on both (SQLite, TimescaleDB) ------------------


@pytest.fixture(params=["sqlite", pytest.param("timescale", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``sqlite:PATH`` in a temporary directory, or a fresh TimescaleDB database."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'store.db'}"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The store named by ``store_url``, migrated (both kinds, one test each)."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()
