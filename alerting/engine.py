"""The alert lifecycle: detector findings become alerts in the store, once per patient and rule.

Design: a synchronous core, asynchronous delivery.

- :meth:`AlertEngine.process` is synchronous and does store work only. It is meant to run
  in a worker thread (ingest's ``on_stored`` hook, :meth:`AlertEngine.on_stored`, already
  runs inside ``asyncio.to_thread``). It returns the alerts it opened or changed and queues one
  notification per alert it opened.
- Delivery is asynchronous and never raises: :meth:`AlertEngine.deliver_pending` sends what
  is queued through the :class:`~alerting.notify.Notifier`; :meth:`AlertEngine.deliver_forever`
  is a task for a service's event loop that delivers as soon as ``process`` (in any thread)
  queues something; :meth:`AlertEngine.process_async` is ``process`` in a thread followed by
  ``deliver_pending``, for asyncio callers.
- The queue is in memory: the alert is committed before its notification is queued, but a
  crash in between loses the notification (escalation of unacknowledged alerts, a later
  issue, covers it; a persisted outbox would need the store to offer one).

Detectors (:func:`alerting.detectors.default_detectors` unless given): every detector
whose kinds include an observation's kind sees it. Incremental detectors
(:class:`~alerting.rules.IncrementalDetector`: confirmation windows, trends, NEWS2) keep a
bounded state per patient in the engine. On the first observation of a patient the engine
rebuilds that state from the store with one bounded query per kind (the detectors'
``lookback`` before that observation) and from then on feeds observations only, so the
cost per observation does not grow with the patient's history and a restarted engine
decides as the old one would have.

Lifecycle for one (patient, rule), driven by event time (the observation's ``at``):

- firing, no unresolved alert: open one and notify; ``opened_at`` is the observation time,
  or for a confirmed condition (CGM low for 15 minutes) the time of its first reading, and
  the alert holds every reading behind the finding;
- firing, an unresolved (open or acknowledged) alert: append the new observation
  identifiers and touch ``updated_at``; no second alert, no second notification;
- cleared past the hysteresis margin, an unresolved alert: resolve it with
  ``resolved_by="auto-clear"`` at the observation time;
- :meth:`AlertEngine.acknowledge` / :meth:`AlertEngine.resolve`: by a person, at a time the
  caller gives.

Processing is idempotent on observation identifiers (ingest hands over duplicates too):
a reading already counted in an alert of that rule changes nothing. Lifecycle changes are
serialised by a lock, so one engine may be fed from several threads; across processes,
partition patients between engines (ARCHITECTURE.md, "Scaling out").

Logs carry alert, patient and rule ids only; values appear at DEBUG at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alerting.detectors import default_detectors
from alerting.errors import (
    AlertingError,
    AlertNotFoundError,
    AlertTransitionError,
    RuleError,
    ThresholdOverrideError,
)
from alerting.notify import DeliveryResult, Notifier
from alerting.rules import Detector, Finding, IncrementalDetector
from wardwatch.store import Alert, CareTeam, Patient, Store, StoredObservation

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""Returns the wall-clock time (aware); used for ``updated_at`` only, never for detection."""

AUTO_CLEAR = "auto-clear"
"""``resolved_by`` of an alert the engine resolved because the readings recovered."""


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Delivery:
    alert: Alert
    patient: Patient | None
    team: CareTeam | None


@dataclass(slots=True)
class _PatientContext:
    patient: Patient | None
    overrides: dict[str, float] = field(default_factory=dict)


class AlertEngine:
    """Runs detectors over stored observations and keeps alerts' lifecycle in the store."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Clock = utcnow,
        *,
        detectors: Sequence[Detector] | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.detectors: tuple[Detector, ...] = (
            tuple(detectors) if detectors is not None else default_detectors()
        )
        self._owners: dict[str, list[Detector]] = {}
        for detector in self.detectors:
            for parameter, default in detector.parameters.items():
                owners = self._owners.setdefault(parameter, [])
                # A care-plan setting may be read by several detectors (the NEWS2 SpO2 scale)
                # only if they agree on its default.
                if owners and owners[0].parameters[parameter] != default:
                    raise RuleError(
                        f"threshold parameter {parameter!r} read by two detectors "
                        "with different defaults"
                    )
                owners.append(detector)
        self._incremental: dict[int, IncrementalDetector] = {
            i: d for i, d in enumerate(self.detectors) if isinstance(d, IncrementalDetector)
        }
        self._states: dict[str, dict[int, Any]] = {}
        self._lock = threading.Lock()
        self._pending: deque[_Delivery] = deque()
        self._wakeup: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._warned: set[tuple[str, str]] = set()

    # -- lifecycle (synchronous, store only) -----------------------------------------------

    def process(self, observations: Sequence[StoredObservation]) -> list[Alert]:
        """Apply the observations (in event-time order) to the alerts; return those changed.

        An alert changed several times in one call is returned once, as it ends up.
        Notifications for the alerts opened are queued for :meth:`deliver_pending`.
        """
        changed: dict[int, Alert] = {}
        opened: list[_Delivery] = []
        with self._lock:
            contexts: dict[str, _PatientContext] = {}
            for obs in sorted(observations, key=lambda o: (o.at, o.identifier)):
                detectors = [(i, d) for i, d in enumerate(self.detectors) if obs.kind in d.kinds]
                if not detectors:
                    continue
                ctx = contexts.get(obs.patient)
                if ctx is None:
                    ctx = contexts[obs.patient] = self._context(obs.patient)
                states = self._states.get(obs.patient)
                if states is None:
                    states = self._rebuild(obs.patient, obs.at, ctx.overrides)
                for i, detector in detectors:
                    try:
                        if i in states:
                            findings = self._incremental[i].evaluate(obs, ctx.overrides, states[i])
                        else:
                            findings = detector.evaluate(obs, ctx.overrides)
                    except AlertingError as exc:
                        log.warning(
                            "observation %s (patient %s) not evaluated: %s",
                            obs.identifier,
                            obs.patient,
                            exc.code,
                        )
                        continue
                    for finding in findings:
                        result = self._apply(obs, finding)
                        if result is None:
                            continue
                        alert, was_opened = result
                        assert alert.id is not None  # stored alerts have ids
                        changed[alert.id] = alert
                        if was_opened:
                            opened.append(_Delivery(alert, ctx.patient, self._team(ctx.patient)))
        if opened:
            self._pending.extend(opened)
            self._wake()
        return list(changed.values())

    def on_stored(self, observations: Sequence[StoredObservation]) -> None:
        """:meth:`process` in the shape of ingest's ``on_stored`` hook (returns nothing)."""
        self.process(observations)

    def _rebuild(
        self, patient_id: str, before: datetime, overrides: dict[str, float]
    ) -> dict[int, Any]:
        """Build a patient's detector states from the store: one bounded query per kind.

        Reads the observations within each kind's longest lookback before ``before`` (the
        patient's first observation in this engine) and feeds them to the detectors,
        dropping the findings: the alerts they gave are in the store already.
        """
        states: dict[int, Any] = {i: d.new_state() for i, d in self._incremental.items()}
        lookback: dict[str, timedelta] = {}
        for detector in self._incremental.values():
            for kind in detector.kinds:
                lookback[kind] = max(lookback.get(kind, timedelta(0)), detector.lookback(kind))
        rows: list[StoredObservation] = []
        for kind, span in sorted(lookback.items()):
            if span > timedelta(0):
                rows.extend(
                    self.store.observations(patient_id, kind, start=before - span, end=before)
                )
        rows.sort(key=lambda o: (o.at, o.identifier))
        for row in rows:
            for i, detector in self._incremental.items():
                if row.kind not in detector.kinds or before - row.at > detector.lookback(row.kind):
                    continue
                # An unreadable row was reported when it arrived; it cannot be read now either.
                with contextlib.suppress(AlertingError):
                    detector.evaluate(row, overrides, states[i])
        log.debug("patient %s: detector state rebuilt from %d observations", patient_id, len(rows))
        self._states[patient_id] = states
        return states

    def forget(self, patient_id: str) -> None:
        """Drop a patient's detector state (rebuilt from the store on their next reading)."""
        with self._lock:
            self._states.pop(patient_id, None)

    def _context(self, patient_id: str) -> _PatientContext:
        patient = self.store.get_patient(patient_id)
        ctx = _PatientContext(patient)
        if patient is None:
            self._warn_once(
                patient_id,
                "(enrolment)",
                "patient %s is not enrolled: default thresholds, fallback notification route",
                patient_id,
            )
            return ctx
        for parameter, value in patient.thresholds.items():
            owners = self._owners.get(parameter)
            if owners is None:
                self._warn_once(
                    patient_id,
                    parameter,
                    "patient %s: no rule reads threshold parameter %s; ignored",
                    patient_id,
                    parameter,
                )
                continue
            try:
                checked = [owner.check_override(parameter, value) for owner in owners]
                ctx.overrides[parameter] = checked[0]
            except ThresholdOverrideError as exc:
                # The default still protects the patient; a bad care-plan entry must not
                # switch a rule off.
                self._warn_once(
                    patient_id,
                    parameter,
                    "patient %s: threshold override %s ignored (%s); default used",
                    patient_id,
                    parameter,
                    exc.code,
                )
        return ctx

    def _warn_once(self, patient_id: str, topic: str, message: str, *args: object) -> None:
        if (patient_id, topic) not in self._warned:
            self._warned.add((patient_id, topic))
            log.warning(message, *args)

    def _team(self, patient: Patient | None) -> CareTeam | None:
        if patient is None or patient.care_team is None:
            return None
        return self.store.get_care_team(patient.care_team)

    def _apply(self, obs: StoredObservation, finding: Finding) -> tuple[Alert, bool] | None:
        """Apply one finding; return (alert, opened) if an alert was opened or changed."""
        rule = finding.rule
        log.debug(
            "patient %s rule %s observation %s: %s (%s %s)",
            obs.patient,
            rule.id,
            obs.identifier,
            "firing" if finding.firing else "cleared",
            finding.value,
            finding.unit,
        )
        current = self.store.find_open_alert(obs.patient, rule.id)
        if finding.firing:
            if current is not None:
                new = tuple(i for i in finding.evidence if i not in current.observations)
                if not new:
                    return None
                updated = replace(
                    current,
                    observations=(*current.observations, *new),
                    updated_at=self.clock(),
                )
                self.store.update_alert(updated)
                log.debug(
                    "alert %s updated (%d observations)", updated.id, len(updated.observations)
                )
                return updated, False
            if self._already_counted(obs.patient, rule.id, obs.identifier):
                return None
            alert = self.store.insert_alert(
                Alert(
                    patient=obs.patient,
                    rule=rule.id,
                    kind=rule.kind,
                    severity=rule.severity,
                    opened_at=finding.since or obs.at,
                    message=finding.message,
                    observations=finding.evidence,
                    status="open",
                    updated_at=self.clock(),
                )
            )
            log.info(
                "alert %s opened: patient %s, rule %s, severity %s",
                alert.id,
                alert.patient,
                alert.rule,
                alert.severity,
            )
            return alert, True
        if current is None or not self._after_last_firing(current, obs):
            return None
        resolved = replace(
            current,
            status="resolved",
            resolved_at=obs.at,
            resolved_by=AUTO_CLEAR,
            updated_at=self.clock(),
        )
        self.store.update_alert(resolved)
        log.info(
            "alert %s resolved (%s): patient %s, rule %s",
            resolved.id,
            AUTO_CLEAR,
            resolved.patient,
            resolved.rule,
        )
        return resolved, False

    def _already_counted(self, patient: str, rule: str, identifier: str) -> bool:
        """Whether a (resolved) alert of this rule already holds the reading: a replay."""
        return any(
            a.rule == rule and identifier in a.observations
            for a in self.store.list_alerts(patient=patient)
        )

    def _after_last_firing(self, alert: Alert, obs: StoredObservation) -> bool:
        """Whether ``obs`` is later than the alert's last firing reading.

        A normal reading that arrives late (taken before the alert's latest crisis reading)
        must not resolve it.
        """
        latest = alert.opened_at
        if alert.observations:
            last = self.store.get_observation(alert.observations[-1])
            if last is not None:
                latest = max(latest, last.at)
        return obs.at > latest

    def acknowledge(self, alert_id: int, by: str, at: datetime) -> Alert:
        """Record that ``by`` has seen the alert at ``at``; return the alert.

        Acknowledging an acknowledged alert changes nothing (the first acknowledgement
        stands); acknowledging a resolved one raises AlertTransitionError.
        """
        self._check_actor(alert_id, "acknowledge", by, at)
        with self._lock:
            alert = self._get(alert_id)
            if alert.status == "resolved":
                raise AlertTransitionError(alert_id, "acknowledge", "it is resolved")
            if alert.status == "acknowledged":
                return alert
            updated = replace(
                alert,
                status="acknowledged",
                acknowledged_at=at,
                acknowledged_by=by,
                updated_at=self.clock(),
            )
            self.store.update_alert(updated)
        log.info("alert %s acknowledged by %s", alert_id, by)
        return updated

    def resolve(self, alert_id: int, by: str, at: datetime) -> Alert:
        """Record that ``by`` resolved the alert at ``at``; return the alert.

        Resolving a resolved alert changes nothing (the first resolution stands).
        """
        self._check_actor(alert_id, "resolve", by, at)
        with self._lock:
            alert = self._get(alert_id)
            if alert.status == "resolved":
                return alert
            updated = replace(
                alert, status="resolved", resolved_at=at, resolved_by=by, updated_at=self.clock()
            )
            self.store.update_alert(updated)
        log.info("alert %s resolved by %s", alert_id, by)
        return updated

    @staticmethod
    def _check_actor(alert_id: int, action: str, by: str, at: datetime) -> None:
        if not by.strip():
            raise AlertTransitionError(alert_id, action, "who did it is missing")
        if by == AUTO_CLEAR:
            raise AlertTransitionError(alert_id, action, f"{AUTO_CLEAR!r} is reserved")
        if at.tzinfo is None or at.utcoffset() is None:
            raise AlertTransitionError(alert_id, action, "the time has no time zone")

    def _get(self, alert_id: int) -> Alert:
        # The Store protocol has no get_alert(id): scan (fine for the skeleton's volumes).
        for alert in self.store.list_alerts():
            if alert.id == alert_id:
                return alert
        raise AlertNotFoundError(alert_id)

    # -- delivery (asynchronous) -----------------------------------------------------------

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is None:
            return
        loop, event = wakeup
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop has closed; deliver_pending() still can
            log.debug("alert delivery loop is closed")

    def _drain(self) -> list[_Delivery]:
        items: list[_Delivery] = []
        while True:
            try:
                items.append(self._pending.popleft())
            except IndexError:
                return items

    @property
    def pending(self) -> int:
        """Notifications queued and not yet handed to the notifier."""
        return len(self._pending)

    async def deliver_pending(self) -> list[DeliveryResult]:
        """Send every queued notification (concurrently); never raises on delivery failure."""
        items = self._drain()
        if not items:
            return []
        return list(await asyncio.gather(*(self._send(item) for item in items)))

    async def _send(self, item: _Delivery) -> DeliveryResult:
        alert = item.alert
        try:
            return await self.notifier.send(alert, item.patient, item.team)
        except Exception as exc:  # a broken notifier must not take the engine down
            log.warning(
                "alert %s (patient %s, rule %s): notifier raised %s",
                alert.id,
                alert.patient,
                alert.rule,
                type(exc).__name__,
            )
            return DeliveryResult(alert.id, alert.patient, alert.rule, False, "error")

    async def deliver_forever(self) -> None:
        """Deliver notifications as soon as they are queued, until cancelled.

        Run it as a task on the service's event loop; ``process`` may then be called from
        any thread.
        """
        event = asyncio.Event()
        self._wakeup = (asyncio.get_running_loop(), event)
        try:
            while True:
                event.clear()
                await self.deliver_pending()
                await event.wait()
        finally:
            self._wakeup = None

    async def process_async(self, observations: Sequence[StoredObservation]) -> list[Alert]:
        """:meth:`process` in a worker thread, then deliver the notifications it queued."""
        alerts = await asyncio.to_thread(self.process, observations)
        await self.deliver_pending()
        return alerts


__all__ = ["AUTO_CLEAR", "AlertEngine", "Clock", "utcnow"]
