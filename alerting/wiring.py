"""Wiring the alert engine behind ingest in one process (the demo, ``ingest run --with-alerting``).

Ingest calls the returned hook after each commit (in its worker thread); notifications are
delivered by a task on the running event loop through apprise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from alerting.engine import AlertEngine
from alerting.notify import AppriseNotifier, Notifier
from wardwatch.store import Store, StoredObservation


class AlertDelivery:
    """The delivery task of an engine; :meth:`drain` stops it after sending what is queued."""

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine
        self._task = asyncio.get_running_loop().create_task(
            engine.deliver_forever(), name="alert-delivery"
        )

    async def drain(self) -> None:
        """Stop the delivery task, then deliver whatever is still queued."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.engine.deliver_pending()


def alerting_hook(
    store: Store, notifier: Notifier | None = None
) -> tuple[Callable[[Sequence[StoredObservation]], None], AlertDelivery]:
    """An ``on_stored`` hook running the alert engine, and its delivery task.

    Call from inside a running event loop; the delivery task lives on that loop.
    """
    engine = AlertEngine(store, notifier or AppriseNotifier())
    delivery = AlertDelivery(engine)

    return engine.on_stored, delivery
