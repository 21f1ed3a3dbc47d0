"""Wiring the alert engine and the dispatcher behind ingest in one process.

Used by the demo, ``wardwatch ingest run --with-alerting [--alerting-policy FILE]`` and
``wardwatch quarantine reingest --with-alerting``. Ingest calls the returned hook after each
commit (in its worker thread); the engine hands every committed alert change to the
:class:`~alerting.dispatch.Dispatcher`, whose task on the running event loop notifies
through apprise (or the notifier given) under the care teams' policy. A second task runs
the time-driven part every ``tick_every`` seconds: the clock detectors (a device silent past
its schedule, a hub offline; :meth:`AlertEngine.tick`) and the outreach-call proposals
(:meth:`ProposalGenerator.check`); the :class:`~alerting.proposals.ProposalGenerator` also
takes every committed alert change, like the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from alerting.detectors import default_clock_detectors
from alerting.dispatch import Dispatcher, rule_titles
from alerting.engine import AlertEngine, Clock, utcnow
from alerting.errors import AlertingError
from alerting.notify import AppriseNotifier, Notifier
from alerting.policy import NotificationPolicy
from alerting.proposals import ProposalGenerator
from ingest.errors import StoreError
from wardwatch.store import Store, StoredObservation

log = logging.getLogger(__name__)

TICK_EVERY = 60.0
"""Seconds between runs of the clock detectors and the outreach check (their limits are
hours; a minute late is well inside them)."""


class AlertingTasks:
    """The engine, the dispatcher and its task; :meth:`drain` stops it after a last run."""

    def __init__(
        self,
        engine: AlertEngine,
        dispatcher: Dispatcher,
        proposals: ProposalGenerator,
        *,
        clock: Clock = utcnow,
        tick_every: float | None = TICK_EVERY,
    ) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.proposals = proposals
        self.clock = clock
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(dispatcher.run_forever(), name="alert-dispatcher")
        self._ticker = (
            None
            if tick_every is None
            else loop.create_task(self._tick_forever(tick_every), name="alert-clock-detectors")
        )

    async def tick(self) -> None:
        """Run the clock detectors and the outreach check once, at the clock's time."""
        now = self.clock()
        await asyncio.to_thread(self.engine.tick, now)
        await asyncio.to_thread(self.proposals.check, now)

    async def _tick_forever(self, every: float) -> None:
        while True:
            try:
                await self.tick()
            except (AlertingError, StoreError) as exc:  # the next tick tries again
                log.warning("clock detectors not run: %s", exc)
            await asyncio.sleep(every)

    async def drain(self) -> None:
        """Stop the dispatcher's task, then send whatever is due now.

        What is due later (a group wait, a repeat, an escalation) is rebuilt from the store
        by the next dispatcher on the same store.
        """
        for task in (self._ticker, self._task):
            if task is not None:
                task.cancel()
        if self._ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.dispatcher.run_once(self.dispatcher.clock())


def alerting_hook(
    store: Store,
    notifier: Notifier | None = None,
    policy: NotificationPolicy | None = None,
    *,
    clock: Clock = utcnow,
    tick_every: float | None = TICK_EVERY,
) -> tuple[Callable[[Sequence[StoredObservation]], None], AlertingTasks]:
    """An ``on_stored`` hook running the alert engine, and the dispatcher's task.

    ``tick_every=None`` runs no clock detectors (a one-shot such as a quarantine re-ingest,
    where "now" says nothing about the readings' schedule). Call from inside a running event
    loop; the dispatcher's task lives on that loop (keep
    the returned :class:`AlertingTasks`: it holds the task). Raises
    :class:`~alerting.policy.PolicyError` when the policy names rules no detector has.
    """
    policy = policy if policy is not None else NotificationPolicy()
    engine = AlertEngine(store, clock=clock, clock_detectors=default_clock_detectors())
    rules = rule_titles([*engine.detectors, *engine.clock_detectors])
    policy.check_rules(rules)
    dispatcher = Dispatcher(store, notifier or AppriseNotifier(), policy, clock, titles=rules)
    proposals = ProposalGenerator(store, clock)
    engine.add_sink(dispatcher.submit)
    engine.add_sink(proposals)
    tasks = AlertingTasks(engine, dispatcher, proposals, clock=clock, tick_every=tick_every)
    return engine.on_stored, tasks


__all__ = ["AlertingTasks", "alerting_hook"]
