"""``wardwatch ingest run``: MQTT workers (and optionally the HTTP API) on one store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ingest.mqtt import MqttIngest
from ingest.pipeline import IngestPipeline, StoredHook
from ingest.stores import open_store
from wardwatch.mqtt import BrokerAddress

log = logging.getLogger(__name__)


async def run_ingest(
    store_url: str,
    broker_url: str,
    *,
    http_port: int | None = None,
    workers: int = 1,
    hooks: Sequence[StoredHook] = (),
) -> None:
    """Run ``workers`` MQTT consumers sharing the subscription, until cancelled."""
    store = open_store(store_url)
    pipeline = IngestPipeline(store, on_stored=hooks)
    broker = BrokerAddress.parse(broker_url)
    log.info("ingest starting with %d MQTT workers", workers)
    try:
        async with asyncio.TaskGroup() as tg:
            for n in range(workers):
                tg.create_task(MqttIngest(pipeline, broker).run(), name=f"ingest-{n}")
            if http_port is not None:
                import uvicorn

                from ingest.http import create_app

                server = uvicorn.Server(
                    uvicorn.Config(
                        create_app(pipeline), host="127.0.0.1", port=http_port, log_level="warning"
                    )
                )
                tg.create_task(server.serve(), name="ingest-http")
    finally:
        store.close()
