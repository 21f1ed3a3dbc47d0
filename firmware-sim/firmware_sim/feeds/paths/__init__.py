"""Replay paths: how far through the real chain a feed's events travel (``docs/feeds.md``).

- ``store``: straight into the ingest pipeline on the store (:mod:`firmware_sim.feeds.replay`);
- ``http``: FHIR batch Bundles POSTed to the ingest HTTP API (in-process on the store, or a
  running ingest at ``url``);
- ``ble``: each reading encoded as the device sends it (raw BLE values as given), played
  by simulated peripherals to the real Gateway -> outbox -> uplink (HTTP to an in-process
  ingest, or MQTT through ``broker``) -> ingest -> store -> alerting;
- ``mqtt``: readings published as MQTT device messages (the packaged MQTT device profiles;
  raw MQTT device messages as given) to ``broker``, where the real Gateway's MQTT device
  input takes them -> outbox -> MQTT uplink -> in-process ingest -> store -> alerting.

Time is the feed's own on every path (:class:`~firmware_sim.feeds.replay.FeedClock`, read
by gateway, ingest and alerting); ``speed`` only paces the replay against the wall clock.
An event a path cannot carry is quarantined in the store (``unsupported-on-path``, with
the reason) and counted in ``not_sent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson

from alerting.notify import Notifier
from firmware_sim.feeds.format import FeedEvent
from firmware_sim.feeds.paths._chain import ChainError, replay_through_gateway
from firmware_sim.feeds.replay import FeedReplayer, ReplayResult
from ingest.pipeline import IngestResult
from wardwatch.store import Store

__all__ = ["PATHS", "ChainError", "replay_path"]

PATHS = ("store", "http", "ble", "mqtt")


class _HttpIngest:
    """The ingest HTTP API under uvicorn in a thread of its own, on ``replayer``'s pipeline."""

    def __init__(self, replayer: FeedReplayer) -> None:
        import uvicorn

        from firmware_sim.feeds.paths._chain import _free_port
        from ingest.http import create_app

        self.port = _free_port()
        app = create_app(replayer.pipeline, clock=replayer.clock)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="replay-ingest", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> _HttpIngest:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise ChainError("the in-process ingest HTTP server did not start")
            self.thread.join(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join()


class _Poster:
    """POSTs bundles to an ingest HTTP API and reads its batch response."""

    def __init__(self, url: str, token: str | None) -> None:
        import httpx

        headers = {"Content-Type": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30.0)

    def close(self) -> None:
        self.client.close()

    def submit(self, payload: bytes, source: str, gateway: str) -> IngestResult:
        """One bundle; the API names its own source and reads the gateway off each resource."""
        del source, gateway
        response = self.client.post("/fhir/Bundle", content=payload)
        if response.status_code != 200:
            raise ChainError(f"ingest answered {response.status_code} to a bundle")
        out = IngestResult()
        for entry in orjson.loads(response.content).get("entry", []):
            status = str(entry.get("response", {}).get("status", ""))
            if status.startswith("201"):
                out.stored += 1
            elif status.startswith("200"):
                out.duplicates += 1
            else:
                out.rejected.append((None, "http", status))
        return out


def replay_path(
    events: Sequence[FeedEvent],
    store: Store,
    *,
    path: str = "store",
    speed: float | None = None,
    batch_size: int = 200,
    broker: str | None = None,
    url: str | None = None,
    token: str | None = None,
    notifier: Notifier | None = None,
    work_dir: Path | None = None,
) -> ReplayResult:
    """Replay ``events`` along ``path`` into ``store`` (ingest and alerting in-process).

    ``speed``: None as fast as possible, else that many times real time. ``broker``: the
    MQTT broker (``mqtt`` path: required; ``ble``: use an MQTT uplink instead of HTTP).
    ``url``: (``http`` path) POST to a running ingest instead of an in-process one.
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}, not {path!r}")
    if path == "store":
        replayer = FeedReplayer(store, notifier=notifier, batch_size=batch_size, speed=speed)
        result = replayer.replay(events)
        result.path = path
        return result
    if path == "http":
        return _replay_http(events, store, speed, batch_size, url, token, notifier)
    replayer = FeedReplayer(store, notifier=notifier, batch_size=batch_size)
    return asyncio.run(
        replay_through_gateway(
            events,
            store,
            path=path,
            replayer=replayer,
            broker=broker,
            speed=speed,
            work_dir=work_dir,
        )
    )


def _replay_http(
    events: Sequence[FeedEvent],
    store: Store,
    speed: float | None,
    batch_size: int,
    url: str | None,
    token: str | None,
    notifier: Notifier | None,
) -> ReplayResult:
    replayer = FeedReplayer(store, notifier=notifier, batch_size=batch_size, speed=speed)
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(_HttpIngest(replayer)).url
        poster = _Poster(url, token)
        stack.callback(poster.close)
        replayer.submit = poster.submit
        result = replayer.replay(events)
    result.path = "http"
    return result
