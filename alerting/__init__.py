"""alerting: detectors, the alert lifecycle and notifications to the care team.

Public API:

- :mod:`alerting.rules` — pure threshold rules (each default cites its clinical source):
  :class:`~alerting.rules.ThresholdRule`, :class:`~alerting.rules.Criterion`,
  :class:`~alerting.rules.ThresholdDetector`, :class:`~alerting.rules.Finding`,
  ``DEFAULT_RULES``.
- :mod:`alerting.engine` — :class:`~alerting.engine.AlertEngine`: ``process`` /
  ``on_stored`` (sync, store only), ``deliver_pending`` / ``deliver_forever`` /
  ``process_async`` (async delivery), ``acknowledge``, ``resolve``.
- :mod:`alerting.notify` — the :class:`~alerting.notify.Notifier` seam with
  :class:`~alerting.notify.AppriseNotifier`, :class:`~alerting.notify.ConsoleNotifier` and
  :class:`~alerting.notify.RecordingNotifier`; :class:`~alerting.notify.DeliveryResult`.
- :mod:`alerting.errors` — :class:`~alerting.errors.AlertingError` and its subclasses.
- :mod:`alerting.wiring` — ``alerting_hook``: engine + delivery task behind ingest.
- :mod:`alerting.report` — alerts as JSON for the CLI.

Wiring (see :mod:`alerting.engine` for the threading design)::

    engine = AlertEngine(store, AppriseNotifier())
    pipeline = IngestPipeline(store, on_stored=[engine.on_stored])  # sync, worker thread
    delivery = asyncio.create_task(engine.deliver_forever())  # on the event loop
"""

from alerting.engine import AUTO_CLEAR, AlertEngine
from alerting.errors import AlertingError
from alerting.notify import (
    AppriseNotifier,
    ConsoleNotifier,
    DeliveryResult,
    Notifier,
    RecordingNotifier,
)
from alerting.rules import DEFAULT_RULES, Finding, ThresholdDetector, ThresholdRule

__all__ = [
    "AUTO_CLEAR",
    "DEFAULT_RULES",
    "AlertEngine",
    "AlertingError",
    "AppriseNotifier",
    "ConsoleNotifier",
    "DeliveryResult",
    "Finding",
    "Notifier",
    "RecordingNotifier",
    "ThresholdDetector",
    "ThresholdRule",
]
