"""The alert lifecycle: detector findings become alerts in the store, once per patient and rule.

Design: a synchronous core, asynchronous delivery.

- :meth:`AlertEngine.process` is synchronous and does store work only. It is meant to run
  in a worker thread (ingest's ``on_stored`` hook, :meth:`AlertEngine.on_stored`, already
  runs inside ``asyncio.to_thread``). It returns the alerts it opened or changed.
- Every committed change (opened, updated, auto-cleared, acknowledged, resolved, snoozed,
  unsnoozed) is recorded as an :class:`~wardwatch.store_alerts.AlertEvent` (what, who,
  when) in the same transaction as the change, and then handed, in order, to every sink
  (:data:`~alerting.changes.ChangeSink`: the dispatcher, the proposal generator) as an
  :class:`~alerting.changes.AlertChange`. Sinks run in the engine's thread under its lock
  (so they see changes in commit order) and must only queue work; a sink that raises is
  logged and skipped, the others still get the changes.
- The engine sends no notification: :class:`~alerting.dispatch.Dispatcher`, a sink, does
  (grouping, inhibition, silences, repeats, escalation, retries; rebuilt from the store
  after a restart). ``notifier`` is accepted for older callers and not used.

Detectors (:func:`alerting.detectors.default_detectors` unless given): every detector
whose kinds include an observation's kind sees it. Incremental detectors
(:class:`~alerting.rules.IncrementalDetector`: confirmation windows, trends, NEWS2) keep a
bounded state per patient in the engine. On the first observation of a patient the engine
rebuilds that state from the store with one bounded query per kind (the detectors'
``lookback`` before that observation) and from then on feeds observations only, so the
cost per observation does not grow with the patient's history and a restarted engine
decides as the old one would have. Thresholds: the clinical defaults, overridden by the
patient's care plan (``store.get_care_plan``), overridden by ``Patient.thresholds``; both
are re-read for every :meth:`~AlertEngine.process` call, so a changed plan applies from the
patient's next reading (call :meth:`~AlertEngine.forget` to rebuild detector state too).
Clock detectors (:class:`~alerting.changes.ClockDetector`: a device silent past its
schedule, a hub offline) run on :meth:`AlertEngine.tick` with the time they are given.

Lifecycle for one (patient, rule), driven by event time (the observation's ``at``; the
tick's ``now`` for clock detectors):

- firing, no unresolved alert: open one (event ``opened``, actor ``engine``);
  ``opened_at`` is the observation time, or for a confirmed condition (CGM low for 15
  minutes) the time of its first reading, and the alert holds every reading behind it;
- firing, an unresolved (open or acknowledged) alert: append the new observation
  identifiers and touch ``updated_at`` (event ``updated``); no second alert;
- cleared past the hysteresis margin, an unresolved alert: resolve it with
  ``resolved_by="auto-clear"`` at the observation time (event ``auto-cleared``, actor
  ``auto-clear``);
- by a person, at a time the caller gives: :meth:`~AlertEngine.acknowledge`,
  :meth:`~AlertEngine.resolve`, :meth:`~AlertEngine.snooze` (a
  :class:`~wardwatch.store_alerts.Silence` of the one alert, with an expiry and an author)
  and :meth:`~AlertEngine.unsnooze`.

Concurrency. Processing is idempotent on observation identifiers (ingest hands over
duplicates too): a reading already counted in an alert of that rule changes nothing.
Lifecycle changes are serialised by a lock, so one engine may be fed from several
threads; across processes, partition patients between engines (ARCHITECTURE.md,
"Scaling out"). Other processes (the API) acknowledge, resolve and snooze; the engine
never writes back a copy of an alert it read earlier: every change is a targeted,
conditional update (:meth:`~wardwatch.store_alerts.AlertLifecycleStore.change_alert`,
row read and written under a write lock), so an acknowledgement made elsewhere is never
lost and an alert resolved elsewhere is not updated.

Cost. The engine remembers which (patient, rule) pairs have *no* unresolved alert (it
looked, or it resolved one). Only this engine opens alerts for its patients, so that
knowledge cannot go stale: a normal reading needs no alert query at all. Whether an
unresolved alert exists is never cached (the API may resolve it at any time).

Logs carry alert, patient and rule ids only; values appear at DEBUG at most.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alerting.changes import AlertChange, ChangeSink, ClockDetector, TimedFinding
from alerting.detectors import default_detectors
from alerting.errors import (
    AlertingError,
    AlertNotFoundError,
    AlertTransitionError,
    RuleError,
    SilenceNotFoundError,
    ThresholdOverrideError,
)
from alerting.notify import Notifier
from alerting.report import AUTO_CLEAR
from alerting.rules import Detector, Finding, IncrementalDetector, Rule
from ingest.errors import StoreError
from wardwatch.fhir import format_time
from wardwatch.store import Alert, AlertStatus, Patient, Store, StoredObservation
from wardwatch.store_alerts import AlertEvent, AlertUpdate, Silence

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""Returns the wall-clock time (aware); used for ``updated_at`` only, never for detection."""

# AUTO_CLEAR (``auto-clear``): ``resolved_by`` of an alert the engine resolved because the
# readings recovered, and the actor of its ``auto-cleared`` event (defined with the report,
# which the CLI imports without the detectors).
ENGINE = "engine"
"""The actor of the events of detector transitions (``opened``, ``updated``)."""
RESERVED_ACTORS = frozenset({AUTO_CLEAR, ENGINE, "dispatcher"})
"""Actors that are not people: a person's action may not be recorded under them."""

_UNRESOLVED: tuple[AlertStatus, ...] = ("open", "acknowledged")


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(slots=True)
class _PatientContext:
    patient: Patient | None
    overrides: dict[str, float] = field(default_factory=dict)


def _latest(changes: Iterable[AlertChange]) -> list[Alert]:
    """Each alert changed, once, as it ends up (in order of its first change)."""
    alerts: dict[int, Alert] = {}
    for change in changes:
        assert change.alert.id is not None  # stored alerts have ids
        alerts[change.alert.id] = change.alert
    return list(alerts.values())


class AlertEngine:
    """Runs detectors over stored observations and keeps alerts' lifecycle in the store."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier | None = None,
        clock: Clock = utcnow,
        *,
        detectors: Sequence[Detector] | None = None,
        clock_detectors: Sequence[ClockDetector] = (),
        sinks: Sequence[ChangeSink] = (),
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.detectors: tuple[Detector, ...] = (
            tuple(detectors) if detectors is not None else default_detectors()
        )
        self.clock_detectors: tuple[ClockDetector, ...] = tuple(clock_detectors)
        self._sinks: list[ChangeSink] = list(sinks)
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
        # Re-entrant: a sink (called under the lock, for ordering) may act on the engine.
        self._lock = threading.RLock()
        self._no_open: set[tuple[str, str]] = set()
        """(patient, rule) pairs known to have no unresolved alert (see "Cost" above)."""
        self._episodes: dict[tuple[str, str], datetime] = {}
        """Clock-detector conditions already alerted: (patient, rule) -> start of the episode."""
        self._warned: set[tuple[str, str]] = set()

    def add_sink(self, sink: ChangeSink) -> None:
        """Hand every committed change to ``sink`` from now on."""
        with self._lock:
            self._sinks.append(sink)

    # -- lifecycle (synchronous, store only) -----------------------------------------------

    def process(self, observations: Sequence[StoredObservation]) -> list[Alert]:
        """Apply the observations (in event-time order) to the alerts; return those changed.

        An alert changed several times in one call is returned once, as it ends up.
        """
        with self._lock:
            changes: list[AlertChange] = []
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
                        change = self._apply(obs, finding)
                        if change is None:
                            continue
                        changes.append(change)
            self._committed(changes)
        return _latest(changes)

    def on_stored(self, observations: Sequence[StoredObservation]) -> None:
        """:meth:`process` in the shape of ingest's ``on_stored`` hook (returns nothing)."""
        self.process(observations)

    def tick(self, now: datetime) -> list[Alert]:
        """Run the clock detectors at ``now`` and apply their findings; return the alerts
        changed (each once, as it ends up).

        Same rules as for readings: one unresolved alert per patient and rule, updated
        (new evidence) while the condition lasts, auto-cleared when it ends. An episode
        (a finding's ``at``, when the condition started) that already had an alert does
        not open another one after a person resolved it; a new episode does.
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("tick() needs an aware time")
        with self._lock:
            changes: list[AlertChange] = []
            for detector in self.clock_detectors:
                try:
                    findings = detector.check(self.store, now)
                except AlertingError as exc:
                    log.warning("clock detector %s failed: %s", type(detector).__name__, exc.code)
                    continue
                for finding in findings:
                    change = self._apply_timed(finding, now)
                    if change is None:
                        continue
                    changes.append(change)
            self._committed(changes)
        return _latest(changes)

    def _committed(self, changes: list[AlertChange]) -> None:
        """Hand committed changes to the sinks (under the lock)."""
        if changes:
            for sink in list(self._sinks):
                try:
                    sink(list(changes))
                except Exception as exc:  # one broken sink must not stop the engine or others
                    log.warning(
                        "alert change sink %r raised %s; %d change(s) not taken by it",
                        sink,
                        type(exc).__name__,
                        len(changes),
                    )

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
        """Drop a patient's detector state (rebuilt from the store on their next reading)
        and what the engine remembers of their alerts (re-read from the store)."""
        with self._lock:
            self._states.pop(patient_id, None)
            self._no_open = {key for key in self._no_open if key[0] != patient_id}
            self._episodes = {k: v for k, v in self._episodes.items() if k[0] != patient_id}

    def _context(self, patient_id: str) -> _PatientContext:
        patient = self.store.get_patient(patient_id)
        plan = self.store.get_care_plan(patient_id)
        ctx = _PatientContext(patient)
        if patient is None:
            self._warn_once(
                patient_id,
                "(enrolment)",
                "patient %s is not enrolled: default thresholds, fallback notification route",
                patient_id,
            )
        # Precedence: clinical default < care plan < the patient's own overrides.
        thresholds = {
            **(plan.thresholds if plan is not None else {}),
            **(patient.thresholds if patient is not None else {}),
        }
        for parameter, value in thresholds.items():
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

    # -- detector transitions ----------------------------------------------------------------

    def _apply(self, obs: StoredObservation, finding: Finding) -> AlertChange | None:
        """Apply one reading's finding; return the change made, if any."""
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
        current = self._unresolved(obs.patient, rule.id)
        if finding.firing:
            if current is not None:
                new = tuple(i for i in finding.evidence if i not in current.observations)
                if not new:
                    return None
                change = self._add_evidence(current, new, obs.at)
                if change is not None:
                    return change
                # resolved by a person meanwhile: this reading opens a new alert
            if self._already_counted(obs.patient, rule.id, obs.identifier):
                return None
            alert = self._new_alert(
                obs.patient, rule, finding.since or obs.at, finding.message, finding.evidence
            )
            return self._open(alert, obs.at)
        if current is None or not self._after_last_firing(current, obs):
            return None
        return self._auto_clear(current, obs.at, obs.at, f"cleared by {obs.identifier}")

    def _apply_timed(self, finding: TimedFinding, now: datetime) -> AlertChange | None:
        """Apply one clock detector's finding at ``now``; return the change made, if any."""
        rule = finding.rule
        key = (finding.patient, rule.id)
        current = self._unresolved(finding.patient, rule.id)
        if finding.firing:
            if current is not None:
                new = tuple(i for i in finding.evidence if i not in current.observations)
                if not new:
                    return None
                change = self._add_evidence(current, new, now)
                if change is not None:
                    return change
            if self._episode_alerted(finding.patient, rule.id, finding.at):
                return None
            alert = self._new_alert(
                finding.patient, rule, finding.at, finding.message, finding.evidence
            )
            change = self._open(alert, now)
            if change is not None:
                self._episodes[key] = finding.at
            return change
        if current is None:
            return None
        resolved_at = max(finding.at, current.opened_at)
        return self._auto_clear(current, now, resolved_at, "condition ended")

    def _unresolved(self, patient: str, rule: str) -> Alert | None:
        """The patient's open or acknowledged alert of the rule (no query when the engine
        knows there is none)."""
        key = (patient, rule)
        if key in self._no_open:
            return None
        alert = self.store.find_open_alert(patient, rule)
        if alert is None:
            self._no_open.add(key)
        return alert

    def _new_alert(
        self,
        patient: str,
        rule: Rule,
        opened_at: datetime,
        message: str,
        evidence: tuple[str, ...],
    ) -> Alert:
        return Alert(
            patient=patient,
            rule=rule.id,
            kind=rule.kind,
            severity=rule.severity,
            opened_at=opened_at,
            message=message,
            observations=evidence,
            status="open",
            updated_at=self.clock(),
        )

    def _open(self, alert: Alert, at: datetime) -> AlertChange | None:
        """Store a new alert and its ``opened`` event."""
        key = (alert.patient, alert.rule)
        event = AlertEvent(0, at, "opened", ENGINE, f"{len(alert.observations)} observation(s)")
        try:
            stored, _ = self.store.open_alert(alert, event)
        except StoreError:
            # The unique index refused a second unresolved alert: another engine opened it
            # (patients not partitioned). Re-read; anything else is a real store failure.
            self._no_open.discard(key)
            if self.store.find_open_alert(alert.patient, alert.rule) is None:
                raise
            log.warning(
                "patient %s rule %s: an alert was opened elsewhere; not opened twice",
                alert.patient,
                alert.rule,
            )
            return None
        self._no_open.discard(key)
        log.info(
            "alert %s opened: patient %s, rule %s, severity %s",
            stored.id,
            stored.patient,
            stored.rule,
            stored.severity,
        )
        return AlertChange(stored, "opened", at, ENGINE)

    def _add_evidence(
        self, current: Alert, new: tuple[str, ...], at: datetime
    ) -> AlertChange | None:
        """Append readings to an unresolved alert; None if it was resolved meanwhile."""
        assert current.id is not None
        updated = self.store.change_alert(
            current.id,
            AlertUpdate(when=_UNRESOLVED, add_observations=new, updated_at=self.clock()),
            AlertEvent(current.id, at, "updated", ENGINE, f"+{len(new)} observation(s)"),
        )
        if updated is None:
            self._no_open.add((current.patient, current.rule))
            return None
        log.debug("alert %s updated (%d observations)", updated.id, len(updated.observations))
        return AlertChange(updated, "updated", at, ENGINE)

    def _auto_clear(
        self, current: Alert, at: datetime, resolved_at: datetime, detail: str
    ) -> AlertChange | None:
        """Resolve an alert whose condition ended; None if it was resolved meanwhile."""
        assert current.id is not None
        resolved = self.store.change_alert(
            current.id,
            AlertUpdate(
                when=_UNRESOLVED,
                status="resolved",
                resolved_at=resolved_at,
                resolved_by=AUTO_CLEAR,
                updated_at=self.clock(),
            ),
            AlertEvent(current.id, at, "auto-cleared", AUTO_CLEAR, detail),
        )
        self._no_open.add((current.patient, current.rule))
        if resolved is None:
            return None
        log.info(
            "alert %s resolved (%s): patient %s, rule %s",
            resolved.id,
            AUTO_CLEAR,
            resolved.patient,
            resolved.rule,
        )
        return AlertChange(resolved, "auto-cleared", at, AUTO_CLEAR)

    def _already_counted(self, patient: str, rule: str, identifier: str) -> bool:
        """Whether a (resolved) alert of this rule already holds the reading: a replay."""
        return any(
            a.rule == rule and identifier in a.observations
            for a in self.store.list_alerts(patient=patient)
        )

    def _episode_alerted(self, patient: str, rule: str, since: datetime) -> bool:
        """Whether the clock-detector condition that began at ``since`` had an alert."""
        known = self._episodes.get((patient, rule))
        if known is not None and known >= since:
            return True
        starts = [a.opened_at for a in self.store.list_alerts(patient=patient) if a.rule == rule]
        if starts and max(starts) >= since:
            self._episodes[(patient, rule)] = max(starts)
            return True
        return False

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

    # -- a person's actions ------------------------------------------------------------------

    def acknowledge(self, alert_id: int, by: str, at: datetime) -> Alert:
        """Record that ``by`` has seen the alert at ``at``; return the alert.

        Acknowledging an acknowledged alert changes nothing (the first acknowledgement
        stands); acknowledging a resolved one raises AlertTransitionError.
        """
        self._check_actor(alert_id, "acknowledge", by, at)
        with self._lock:
            alert = self._get(alert_id)
            while True:  # statuses only move forward: at most one retry
                if alert.status == "resolved":
                    raise AlertTransitionError(alert_id, "acknowledge", "it is resolved")
                if alert.status == "acknowledged":
                    return alert
                updated = self.store.change_alert(
                    alert_id,
                    AlertUpdate(
                        when=("open",),
                        status="acknowledged",
                        acknowledged_at=at,
                        acknowledged_by=by,
                        updated_at=self.clock(),
                    ),
                    AlertEvent(alert_id, at, "acknowledged", by),
                )
                if updated is not None:
                    break
                alert = self._get(alert_id)  # changed by another process meanwhile
            self._committed([AlertChange(updated, "acknowledged", at, by)])
        log.info("alert %s acknowledged by %s", alert_id, by)
        return updated

    def resolve(self, alert_id: int, by: str, at: datetime) -> Alert:
        """Record that ``by`` resolved the alert at ``at``; return the alert.

        Resolving a resolved alert changes nothing (the first resolution stands).
        """
        self._check_actor(alert_id, "resolve", by, at)
        with self._lock:
            alert = self._get(alert_id)
            while True:
                if alert.status == "resolved":
                    return alert
                updated = self.store.change_alert(
                    alert_id,
                    AlertUpdate(
                        when=_UNRESOLVED,
                        status="resolved",
                        resolved_at=at,
                        resolved_by=by,
                        updated_at=self.clock(),
                    ),
                    AlertEvent(alert_id, at, "resolved", by),
                )
                if updated is not None:
                    break
                alert = self._get(alert_id)
            self._no_open.add((updated.patient, updated.rule))
            self._committed([AlertChange(updated, "resolved", at, by)])
        log.info("alert %s resolved by %s", alert_id, by)
        return updated

    def snooze(
        self, alert_id: int, by: str, at: datetime, until: datetime, comment: str = ""
    ) -> Silence:
        """Snooze the alert from ``at`` until ``until`` (no notifications meanwhile; the
        alert stays open or acknowledged); return the snooze (a Silence of this alert).

        Refused (AlertTransitionError) if ``until`` is not after ``at`` or the alert is
        resolved. Several snoozes may overlap; each ends on its own.
        """
        self._check_actor(alert_id, "snooze", by, at)
        if until.tzinfo is None or until.utcoffset() is None:
            raise AlertTransitionError(alert_id, "snooze", "the end time has no time zone")
        if until <= at:
            raise AlertTransitionError(alert_id, "snooze", "it would end before it starts")
        with self._lock:
            alert = self._get(alert_id)
            if alert.status == "resolved":
                raise AlertTransitionError(alert_id, "snooze", "it is resolved")
            silence = self.store.add_silence(
                Silence(
                    created_by=by,
                    created_at=at,
                    starts_at=at,
                    ends_at=until,
                    comment=comment,
                    patient=alert.patient,
                    rule=alert.rule,
                    alert_id=alert_id,
                ),
                event=AlertEvent(alert_id, at, "snoozed", by, f"until {format_time(until)}"),
            )
            self._committed([AlertChange(alert, "snoozed", at, by)])
        log.info("alert %s snoozed by %s (snooze %s)", alert_id, by, silence.id)
        return silence

    def unsnooze(self, silence_id: int, by: str, at: datetime) -> Silence:
        """End a snooze at ``at``; return it. A snooze already over changes nothing.

        SilenceNotFoundError if no snooze (a silence of one alert) has this id.
        """
        silence = self.store.get_silence(silence_id)
        if silence is None or silence.alert_id is None:
            raise SilenceNotFoundError(silence_id)
        alert_id = silence.alert_id
        self._check_actor(alert_id, "unsnooze", by, at)
        with self._lock:
            if silence.ends_at <= at:
                return silence
            expired = self.store.expire_silence(
                silence_id,
                at,
                event=AlertEvent(alert_id, at, "unsnoozed", by, f"snooze {silence_id}"),
            )
            if expired is None:  # pragma: no cover - silences are never deleted
                raise SilenceNotFoundError(silence_id)
            if expired.ends_at != max(expired.starts_at, at):
                return expired  # ended meanwhile (another process): nothing recorded
            self._committed([AlertChange(self._get(alert_id), "unsnoozed", at, by)])
        log.info("snooze %s of alert %s ended by %s", silence_id, alert_id, by)
        return expired

    @staticmethod
    def _check_actor(alert_id: int, action: str, by: str, at: datetime) -> None:
        if not by.strip():
            raise AlertTransitionError(alert_id, action, "who did it is missing")
        if by in RESERVED_ACTORS:
            raise AlertTransitionError(alert_id, action, f"{by!r} is reserved")
        if at.tzinfo is None or at.utcoffset() is None:
            raise AlertTransitionError(alert_id, action, "the time has no time zone")

    def _get(self, alert_id: int) -> Alert:
        alert = self.store.get_alert(alert_id)
        if alert is None:
            raise AlertNotFoundError(alert_id)
        return alert


__all__ = ["AUTO_CLEAR", "ENGINE", "RESERVED_ACTORS", "AlertEngine", "Clock", "utcnow"]
