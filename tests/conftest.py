"""Shared pytest fixtures. Keep each part in its own section; append new sections below."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import pytest

from tests.support.services import MosquittoServer, ServiceUnavailable, TimescaleServer

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
