"""``wardwatch ingest run``: MQTT workers (and optionally the HTTP API) on one store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from ingest.gateway_status import GatewayStatusWatcher
from ingest.mqtt import MqttIngest
from ingest.pipeline import IngestPipeline, StoredHook, tune_gc_for_ingest
from ingest.stores import open_store
from ingest.stores.timescale_policy import StoragePolicySettings, storage_policy_for
from wardwatch.mqtt import BrokerAddress

log = logging.getLogger(__name__)


async def run_ingest(
    store_url: str,
    broker_url: str,
    *,
    http_port: int | None = None,
    workers: int = 1,
    hooks: Sequence[StoredHook] = (),
    token: str | None = None,
    read_token: str | None = None,
    read_principal: str = "read-service",
    http_host: str = "127.0.0.1",
    storage: StoragePolicySettings | None = None,
    on_storage_plan: Callable[[dict[str, str]], None] | None = None,
) -> None:
    """Run ``workers`` MQTT consumers sharing the subscription and the gateway status
    watcher (:mod:`ingest.gateway_status`), until cancelled.

    With ``http_port``, the HTTP API also takes writes (bearer ``token`` when set) and
    serves audited FHIR reads to ``read_token``.
    The storage policy (``storage``) is chosen from the store's edition, reported to
    ``on_storage_plan`` and, where our side must run it, maintained by a task.
    """
    store = open_store(store_url)
    plan, maintenance = await asyncio.to_thread(storage_policy_for, store, storage)
    if on_storage_plan is not None:
        on_storage_plan(plan)
    pipeline = IngestPipeline(store, on_stored=hooks)
    tune_gc_for_ingest()  # this process is an ingest service (ingest.pipeline explains)
    broker = BrokerAddress.parse(broker_url)
    log.info("ingest starting with %d MQTT workers", workers)
    try:
        async with asyncio.TaskGroup() as tg:
            if maintenance is not None:
                tg.create_task(maintenance.run(), name="storage-maintenance")
            for n in range(workers):
                tg.create_task(MqttIngest(pipeline, broker).run(), name=f"ingest-{n}")
            # one per process, not per worker: a plain subscription, every status
            tg.create_task(GatewayStatusWatcher(store, broker).run(), name="gateway-status")
            if http_port is not None:
                import uvicorn

                from ingest.http import create_app

                server = uvicorn.Server(
                    uvicorn.Config(
                        create_app(
                            pipeline,
                            token=token,
                            read_token=read_token,
                            read_principal=read_principal,
                        ),
                        host=http_host,
                        port=http_port,
                        log_level="warning",
                    )
                )
                tg.create_task(server.serve(), name="ingest-http")
    finally:
        store.close()
