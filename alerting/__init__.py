"""alerting: detectors, the alert lifecycle and notifications to the care team.

Public API:

- :mod:`alerting.rules` — pure threshold rules (each default cites its clinical source):
  :class:`~alerting.rules.ThresholdRule`, :class:`~alerting.rules.Criterion`,
  :class:`~alerting.rules.Confirmation` (repeat count, minimum duration),
  :class:`~alerting.rules.ThresholdDetector`, :class:`~alerting.rules.Finding`,
  the :class:`~alerting.rules.IncrementalDetector` protocol, ``DEFAULT_RULES`` (blood
  pressure).
- :mod:`alerting.detectors` — ``default_detectors()`` and ``CLINICAL_RULES`` (glucose,
  NEWS2 vitals), NEWS2 aggregate, heart-failure weight gain, BP trend, CGM rate and
  predicted low; every rule, default and source in ``docs/alerting.md``;
  ``default_clock_detectors()``: device silent, hub offline (run by ``engine.tick``).
- :mod:`alerting.careplans` — ``effective_thresholds``, ``decide_proposal`` (accept /
  reject a care-plan proposal), ``proposal_task`` (FHIR Task), ``care_plan_resource``.
- :mod:`alerting.proposals` — :class:`~alerting.proposals.ProposalGenerator`, the change
  sink (plus ``check(now)``) that raises care-plan proposals.
- :mod:`alerting.engine` — :class:`~alerting.engine.AlertEngine`: ``process`` /
  ``on_stored`` (sync, store only), ``acknowledge``, ``resolve``, ``snooze``,
  ``unsnooze``, ``tick`` (clock detectors); every change an alert event in the store and
  an :class:`~alerting.changes.AlertChange` to the sinks (``sinks=``, ``add_sink``).
- :mod:`alerting.notify` — the :class:`~alerting.notify.Notifier` seam with
  :class:`~alerting.notify.AppriseNotifier`, :class:`~alerting.notify.ConsoleNotifier` and
  :class:`~alerting.notify.RecordingNotifier`; :class:`~alerting.notify.Notification`
  (one patient's alerts, one escalation step), :class:`~alerting.notify.DeliveryResult`.
- :mod:`alerting.policy` — :class:`~alerting.policy.NotificationPolicy` (YAML: targets and
  apprise tags, escalation steps, repeat, group wait, retries, inhibition rules).
- :mod:`alerting.dispatch` — :class:`~alerting.dispatch.Dispatcher`, the change sink that
  notifies: grouping, inhibition, silences and snoozes, re-notification, escalation, retries.
- :mod:`alerting.errors` — :class:`~alerting.errors.AlertingError` and its subclasses.
- :mod:`alerting.wiring` — ``alerting_hook``: engine + dispatcher task behind ingest.
- :mod:`alerting.report` — alerts as JSON for the CLI.
- :mod:`alerting.access` — :class:`~alerting.access.Principal` (``sees``, ``can``),
  ``ACTIONS`` / ``ROLE_ACTIONS``, :class:`~alerting.access.AccessService` (logins, session
  and API tokens, failed-login limits); ``docs/security.md``.

Wiring (see :mod:`alerting.engine` for the threading design)::

    dispatcher = Dispatcher(store, AppriseNotifier(), NotificationPolicy.load(path))
    engine = AlertEngine(store, sinks=[dispatcher.submit])
    pipeline = IngestPipeline(store, on_stored=[engine.on_stored])  # sync, worker thread
    task = asyncio.create_task(dispatcher.run_forever())  # on the event loop
"""

from alerting.detectors import CLINICAL_RULES, default_clock_detectors, default_detectors
from alerting.dispatch import Dispatcher
from alerting.engine import AUTO_CLEAR, AlertEngine
from alerting.errors import AlertingError
from alerting.notify import (
    AppriseNotifier,
    ConsoleNotifier,
    DeliveryResult,
    Notification,
    Notifier,
    RecordingNotifier,
)
from alerting.policy import NotificationPolicy, PolicyError
from alerting.rules import (
    DEFAULT_RULES,
    Finding,
    IncrementalDetector,
    ThresholdDetector,
    ThresholdRule,
)

__all__ = [
    "AUTO_CLEAR",
    "CLINICAL_RULES",
    "DEFAULT_RULES",
    "AlertEngine",
    "AlertingError",
    "AppriseNotifier",
    "ConsoleNotifier",
    "DeliveryResult",
    "Dispatcher",
    "Finding",
    "IncrementalDetector",
    "Notification",
    "NotificationPolicy",
    "Notifier",
    "PolicyError",
    "RecordingNotifier",
    "ThresholdDetector",
    "ThresholdRule",
    "default_clock_detectors",
    "default_detectors",
]
