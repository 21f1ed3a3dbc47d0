"""The dispatcher: from committed alert changes to notifications, Alertmanager/PagerDuty style.

:class:`Dispatcher` is a :data:`~alerting.changes.ChangeSink` (``submit(changes)``, from any
thread, quick) and does the sending in :meth:`Dispatcher.run_once` (everything due at
``now``; a fake clock in tests) or :meth:`Dispatcher.run_forever` (a task on the service's
event loop). What it does for an unresolved alert of a care team's policy
(:mod:`alerting.policy`):

- **group**: an opened alert is due ``group_wait`` after the dispatcher saw it; alerts of
  the same patient opened before that go out with it, as ONE notification (one per step's
  tags); their later steps stay aligned, so repeats and escalations are grouped too;
- **inhibit**: while an alert of an inhibiting rule is unresolved for the same patient,
  nothing is sent for the inhibited one (event ``inhibited``, once per inhibiting alert);
  when the inhibiting alert resolves, the inhibited one is notified like a new one
  (Alertmanager's semantics: nobody was told about it as such);
- **silence / snooze** (``store.list_silences(active_at=now)``; a snooze is a Silence with
  ``alert_id``): nothing is sent while one matches (event ``silenced``, once per silence);
  when it ends and the alert is still unacknowledged, it is notified again at once, and
  escalation resumes from then;
- **re-notify** the current step every ``repeat_interval`` while unacknowledged;
- **escalate** along the steps (step k's ``after`` counts from the first notification) while
  unacknowledged; acknowledging stops both, resolving (by a person or auto-clear) stops
  everything;
- **retry** a failed delivery ``retries.count`` times with backoff, then escalate to the next
  step at once (on the last step: try again after the repeat interval). Nothing is dropped
  silently: every attempt is a :class:`~wardwatch.store_alerts.DeliveryAttempt` in the store
  and an :class:`~wardwatch.store_alerts.AlertEvent` (``notified``, ``renotified``,
  ``escalated``, ``delivery-failed``; actor ``dispatcher``).

State is in memory but rebuilt from the store when the dispatcher starts (first
``run_once``): every unresolved alert and its deliveries give what is due next, so a
restart loses no notification (an alert committed but never notified is notified at once).
Run one dispatcher per store (or per partition of patients): two would both notify.

Store calls run in worker threads (``asyncio.to_thread``); ``run_once`` is not re-entrant
(an asyncio lock). Logs carry alert, patient, rule and care-team ids only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from alerting.changes import AlertChange
from alerting.notify import (
    DeliveryResult,
    Notification,
    NotifiedAlert,
    Notifier,
    Purpose,
)
from alerting.policy import NotificationPolicy, Plan
from wardwatch.fhir import format_time
from wardwatch.store import Alert, CareTeam, Store
from wardwatch.store_alerts import AlertAction, AlertEvent, DeliveryAttempt, Silence

log = logging.getLogger(__name__)

ACTOR = "dispatcher"
"""The actor of the events the dispatcher records."""

RECHECK = timedelta(minutes=1)
"""How often a silenced or inhibited alert is looked at again (a silence may be expired
early without any alert change)."""

MAX_ROUNDS = 8
"""Rounds of delivery in one :meth:`Dispatcher.run_once` (each step at most once per round)."""

_DONE: dict[Purpose, AlertAction] = {
    "notify": "notified",
    "renotify": "renotified",
    "escalate": "escalated",
}
_RANK = {"urgent": 0, "warning": 1, "info": 2}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Tracked:
    """What the dispatcher knows of one unresolved alert."""

    alert: Alert
    plan: Plan
    due: datetime | None = None
    """When the pending action is due; None: nothing to do (acknowledged, no steps)."""
    purpose: Purpose = "notify"
    step: int = 0
    """The step the pending action is for (after a success: the step reached)."""
    attempt: int = 1
    notified: bool = False
    """Step 0 was tried (delivered, or given up on after its retries)."""
    step_at: datetime | None = None
    """When the step reached was first delivered (the escalation clock)."""
    last_sent: datetime | None = None
    """Last delivery at the step reached (the repeat clock)."""
    resume: bool = False
    """The next delivery restarts the escalation clock (after a silence or a snooze)."""
    held: set[tuple[str, int]] = field(default_factory=set)
    """Silences and inhibiting alerts already recorded for it."""


@dataclass(slots=True)
class _Batch:
    notification: Notification
    items: list[_Tracked]


class Dispatcher:
    """Turns alert changes into grouped, inhibited, silenced, repeated, escalated deliveries."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        policy: NotificationPolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
        *,
        titles: Mapping[str, str] | None = None,
        recheck: timedelta = RECHECK,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.policy = policy if policy is not None else NotificationPolicy()
        self.clock = clock
        self.recheck = recheck
        self._titles = dict(titles) if titles is not None else _default_titles()
        self._submitted: list[tuple[AlertChange, datetime]] = []
        self._submit_lock = threading.Lock()
        self._tracked: dict[int, _Tracked] = {}
        self._by_patient: dict[str, set[int]] = {}
        self._rebuilt = False
        self._run_lock = asyncio.Lock()
        self._wakeup: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    # -- the sink ---------------------------------------------------------------------------

    def submit(self, changes: Sequence[AlertChange]) -> None:
        """Queue committed alert changes (thread-safe, quick); the run loop is woken."""
        if not changes:
            return
        seen = self.clock()
        with self._submit_lock:
            self._submitted.extend((change, seen) for change in changes)
        self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is None:
            return
        loop, event = wakeup
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(event.set)

    # -- running ----------------------------------------------------------------------------

    async def run_once(self, now: datetime) -> list[DeliveryAttempt]:
        """Do everything due at ``now``; return the delivery attempts made.

        What a round makes due at once (the next step, after a step's last retry failed)
        is done in a further round, up to :data:`MAX_ROUNDS`.
        """
        attempts: list[DeliveryAttempt] = []
        async with self._run_lock:
            for _ in range(MAX_ROUNDS):
                batches = await asyncio.to_thread(self._prepare, now)
                if not batches:
                    break
                results = await asyncio.gather(*(self._deliver(b.notification) for b in batches))
                attempts += await asyncio.to_thread(self._settle, now, batches, list(results))
                due = self.next_due()
                if due is None or due > now:
                    break
        return attempts

    def next_due(self) -> datetime | None:
        """When something is due next (None: nothing scheduled)."""
        dues = [t.due for t in self._tracked.values() if t.due is not None]
        return min(dues) if dues else None

    async def run_forever(self, *, max_sleep: float = 60.0) -> None:
        """Run :meth:`run_once` whenever changes arrive or something falls due, until cancelled."""
        event = asyncio.Event()
        self._wakeup = (asyncio.get_running_loop(), event)
        try:
            while True:
                event.clear()
                timeout = max_sleep
                try:
                    await self.run_once(self.clock())
                except Exception as exc:  # the store may be down: try again, never die
                    log.warning("dispatcher run failed (%s); retrying", type(exc).__name__)
                    timeout = 5.0
                else:
                    due = self.next_due()
                    if due is not None:
                        wait = (due - self.clock()).total_seconds()
                        timeout = min(max_sleep, max(0.0, wait))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._wakeup = None

    async def _deliver(self, notification: Notification) -> DeliveryResult:
        try:
            return await self.notifier.deliver(notification)
        except Exception as exc:  # a broken notifier must not take the dispatcher down
            log.warning("alerts %s: notifier raised %s", notification.alert_ids, type(exc).__name__)
            return DeliveryResult(False, "error")

    # -- deciding (worker thread) ----------------------------------------------------------

    def _prepare(self, now: datetime) -> list[_Batch]:
        with self._submit_lock:
            changes, self._submitted = self._submitted, []
        if not self._rebuilt:
            self._rebuild(now, skip={c.alert.id for c, _ in changes})
            self._rebuilt = True
        for change, seen in changes:
            self._apply(change, min(seen, now), now)
        due = sorted(
            (t for t in self._tracked.values() if t.due is not None and t.due <= now),
            key=lambda t: t.alert.id or 0,
        )
        if not due:
            return []
        silences = self.store.list_silences(active_at=now)
        ready: list[_Tracked] = []
        for t in due:
            if t.purpose == "renotify" and not t.resume:
                # Overdue (a restart, a late run): the escalation, if due too, wins.
                escalation = self._escalation_due(t)
                if escalation is not None and escalation <= now:
                    t.purpose, t.step = "escalate", t.step + 1
            if t.alert.status != "open" or not t.plan.steps:
                t.due = None
            elif not self._silenced(t, silences, now) and not self._inhibited(t, now):
                ready.append(t)
        groups: dict[tuple[object, ...], list[_Tracked]] = {}
        for t in ready:
            t.step = min(t.step, len(t.plan.steps) - 1)
            tags = t.plan.steps[t.step].notify
            key = (t.alert.patient, t.plan.team, t.purpose, t.step, tags, t.plan.targets)
            groups.setdefault(key, []).append(t)
        return [self._batch(items, now) for items in groups.values()]

    def _batch(self, items: list[_Tracked], now: datetime) -> _Batch:
        first = items[0]
        step = first.plan.steps[first.step]
        items.sort(key=lambda t: (_RANK[t.alert.severity], t.alert.opened_at, t.alert.id or 0))
        alerts = tuple(
            NotifiedAlert(
                t.alert,
                self._titles.get(t.alert.rule, t.alert.rule),
                self.policy.link(t.alert.id),
            )
            for t in items
        )
        notification = Notification(
            patient=first.alert.patient,
            care_team=first.plan.team,
            purpose=first.purpose,
            step=first.step,
            step_name=step.label,
            tags=step.notify,
            targets=first.plan.targets,
            alerts=alerts,
            at=now,
            attempt=max(t.attempt for t in items),
        )
        return _Batch(notification, items)

    def _silenced(self, t: _Tracked, silences: Sequence[Silence], now: datetime) -> bool:
        match = next((s for s in silences if _matches(s, t.alert, t.plan.team)), None)
        if match is None:
            return False
        assert match.id is not None  # stored silences have ids
        if ("silence", match.id) not in t.held:
            t.held.add(("silence", match.id))
            what = "snoozed" if match.alert_id is not None else f"silence {match.id}"
            self._event(t.alert, now, "silenced", f"{what} until {format_time(match.ends_at)}")
        t.due = min(match.ends_at, now + self.recheck)
        t.resume = True
        return True

    def _inhibited(self, t: _Tracked, now: datetime) -> bool:
        rules = self.policy.inhibitors(t.alert.rule)
        if not rules:
            return False
        for other_id in sorted(self._by_patient.get(t.alert.patient, ())):
            other = self._tracked[other_id].alert
            if other.status == "resolved":
                continue
            rule = next((r for r in rules if r.source == other.rule), None)
            if rule is None:
                continue
            if ("inhibit", other_id) not in t.held:
                t.held.add(("inhibit", other_id))
                self._event(t.alert, now, "inhibited", f"by alert {other_id} ({other.rule})")
            t.due = now + self.recheck
            return True
        return False

    # -- after sending (worker thread) -----------------------------------------------------

    def _settle(
        self, now: datetime, batches: list[_Batch], results: list[DeliveryResult]
    ) -> list[DeliveryAttempt]:
        attempts: list[DeliveryAttempt] = []
        for batch, result in zip(batches, results, strict=True):
            n = batch.notification
            attempts.append(
                self.store.record_delivery(
                    DeliveryAttempt(
                        alert_ids=n.alert_ids,
                        patient=n.patient,
                        care_team=n.care_team,
                        purpose=n.purpose,
                        step=n.step,
                        target=n.step_name,
                        attempt=n.attempt,
                        at=now,
                        delivered=result.delivered,
                        result=result.reason,
                        targets=result.targets,
                    )
                )
            )
            for t in batch.items:
                if result.delivered:
                    self._event(t.alert, now, _DONE[n.purpose], f"step {n.step}: {n.step_name}")
                    self._succeeded(t, now)
                else:
                    tries = 1 + t.plan.retries.count
                    self._event(
                        t.alert,
                        now,
                        "delivery-failed",
                        f"step {n.step}: {n.step_name}, attempt {t.attempt} of {tries}: "
                        f"{result.reason}",
                    )
                    self._failed(t, now)
        return attempts

    def _succeeded(self, t: _Tracked, now: datetime) -> None:
        if t.purpose in ("notify", "escalate") or t.resume or t.step_at is None:
            t.step_at = now
        t.resume = False
        t.notified = True
        t.last_sent = now
        t.attempt = 1
        self._schedule(t)

    def _failed(self, t: _Tracked, now: datetime) -> None:
        retries = t.plan.retries
        if t.attempt <= retries.count:
            t.due = now + retries.delay(t.attempt)
            t.attempt += 1
            return
        # Retries exhausted: the next step hears it at once; on the last step, later again.
        given_up = t.attempt
        t.attempt = 1
        t.notified = True
        if t.step + 1 < len(t.plan.steps):
            t.step += 1
            t.purpose = "escalate"
            t.due = now
            log.warning(
                "alert %s: delivery to step %d failed %d times; escalating",
                t.alert.id,
                t.step - 1,
                given_up,
            )
        else:
            t.purpose = "renotify"
            t.due = now + (t.plan.repeat_interval or retries.delay(given_up))
            log.warning(
                "alert %s: delivery to the last step failed %d times; trying again at %s",
                t.alert.id,
                given_up,
                format_time(t.due),
            )

    @staticmethod
    def _escalation_due(t: _Tracked) -> datetime | None:
        """When the step after ``t.step`` is due (None: no further step)."""
        steps = t.plan.steps
        reached = t.step_at or t.last_sent
        if reached is None or t.step + 1 >= len(steps):
            return None
        return reached + (steps[t.step + 1].after - steps[t.step].after)

    def _schedule(self, t: _Tracked) -> None:
        """The next action after a delivery at step ``t.step``: escalation or repeat."""
        options: list[tuple[datetime, int, Purpose, int]] = []
        escalation = self._escalation_due(t)
        if escalation is not None:
            options.append((escalation, 0, "escalate", t.step + 1))
        if t.plan.repeat_interval is not None and t.last_sent is not None:
            options.append((t.last_sent + t.plan.repeat_interval, 1, "renotify", t.step))
        if not options:
            t.due = None
            return
        t.due, _, t.purpose, t.step = min(options)

    # -- alert changes and rebuild ------------------------------------------------------------

    def _apply(self, change: AlertChange, seen: datetime, now: datetime) -> None:
        alert = change.alert
        if alert.id is None:
            return
        t = self._tracked.get(alert.id)
        if alert.status == "resolved" or change.action in ("resolved", "auto-cleared"):
            if t is not None:
                self._untrack(alert.id, alert.patient)
            # An alert it inhibited may be notified now.
            for other_id in self._by_patient.get(alert.patient, ()):
                other = self._tracked[other_id]
                if other.due is not None:
                    other.due = min(other.due, now)
            return
        if t is None:
            if change.action == "opened":
                self._track(alert, seen)
            else:
                self._restore(alert, now)
            return
        t.alert = alert
        if change.action == "acknowledged" or alert.status == "acknowledged":
            t.due = None
        elif change.action in ("snoozed", "unsnoozed") and t.plan.steps:
            # Look again now: a snooze is recorded as `silenced`, and when it ends the
            # current step hears about the alert again.
            if t.purpose == "escalate" and t.step > 0 and t.notified:
                t.step -= 1
            if t.notified:
                t.purpose = "renotify"
            t.attempt = 1
            t.resume = True
            t.due = now

    def _plan(self, alert: Alert) -> Plan:
        patient = self.store.get_patient(alert.patient)
        team: CareTeam | None = None
        if patient is not None and patient.care_team is not None:
            team = self.store.get_care_team(patient.care_team)
        return self.policy.plan(team, alert.severity)

    def _add(self, t: _Tracked) -> _Tracked:
        assert t.alert.id is not None
        self._tracked[t.alert.id] = t
        self._by_patient.setdefault(t.alert.patient, set()).add(t.alert.id)
        return t

    def _untrack(self, alert_id: int, patient: str) -> None:
        self._tracked.pop(alert_id, None)
        ids = self._by_patient.get(patient)
        if ids is not None:
            ids.discard(alert_id)
            if not ids:
                del self._by_patient[patient]

    def _track(self, alert: Alert, now: datetime, *, wait: bool = True) -> _Tracked:
        """A newly opened alert: due after the group wait, or with its patient's group."""
        plan = self._plan(alert)
        t = _Tracked(alert, plan)
        if alert.status == "open" and plan.steps:
            waiting = [
                self._tracked[i].due
                for i in self._by_patient.get(alert.patient, ())
                if not self._tracked[i].notified
                and self._tracked[i].purpose == "notify"
                and self._tracked[i].plan.team == plan.team
            ]
            pending = [d for d in waiting if d is not None and d >= now]
            t.due = min(pending) if pending else now + (plan.group_wait if wait else timedelta(0))
        return self._add(t)

    def _restore(self, alert: Alert, now: datetime) -> _Tracked:
        """An unresolved alert from the store: what is due, from its delivery attempts."""
        assert alert.id is not None
        deliveries = self.store.list_deliveries(alert_id=alert.id)
        if not deliveries:
            # Committed, never notified (a crash in between): at once.
            return self._track(alert, now, wait=False)
        plan = self._plan(alert)
        t = _Tracked(alert, plan)
        self._add(t)
        if alert.status != "open" or not plan.steps:
            return t
        last = deliveries[-1]
        t.notified = True
        t.step = min(last.step, len(plan.steps) - 1)
        t.purpose = last.purpose
        t.attempt = last.attempt
        ok = [d for d in deliveries if d.delivered and d.step == last.step]
        t.step_at = ok[0].at if ok else None
        t.last_sent = ok[-1].at if ok else None
        if last.delivered:
            self._schedule(t)
        else:
            self._failed(t, last.at)
        return t

    def _rebuild(self, now: datetime, skip: set[int | None]) -> None:
        alerts = [
            *self.store.list_alerts(status="open"),
            *self.store.list_alerts(status="acknowledged"),
        ]
        for alert in alerts:
            if alert.id is not None and alert.id not in self._tracked and alert.id not in skip:
                self._restore(alert, now)
        log.info("dispatcher: %d unresolved alerts loaded from the store", len(alerts))

    def _event(self, alert: Alert, at: datetime, action: AlertAction, detail: str) -> None:
        assert alert.id is not None
        self.store.record_alert_event(AlertEvent(alert.id, at, action, ACTOR, detail))


def _matches(silence: Silence, alert: Alert, team: str | None) -> bool:
    if silence.alert_id is not None:
        return silence.alert_id == alert.id
    return (
        (silence.patient is None or silence.patient == alert.patient)
        and (silence.rule is None or silence.rule == alert.rule)
        and (silence.care_team is None or silence.care_team == team)
    )


def _default_titles() -> dict[str, str]:
    from alerting.detectors import default_detectors

    return rule_titles(default_detectors())


def rule_titles(detectors: Sequence[object]) -> dict[str, str]:
    """Rule id -> title for every rule of these detectors (anything with ``rules``)."""
    titles: dict[str, str] = {}
    for detector in detectors:
        for rule in getattr(detector, "rules", ()):
            titles[rule.id] = rule.title
    return titles


__all__ = ["ACTOR", "MAX_ROUNDS", "RECHECK", "Dispatcher", "rule_titles"]
