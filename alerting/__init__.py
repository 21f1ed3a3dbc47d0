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
  predicted low; every rule, default and source in ``docs/alerting.md``.
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

from alerting.detectors import CLINICAL_RULES, default_detectors
from alerting.engine import AUTO_CLEAR, AlertEngine
from alerting.errors import AlertingError
from alerting.notify import (
    AppriseNotifier,
    ConsoleNotifier,
    DeliveryResult,
    Notifier,
    RecordingNotifier,
)
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
    "Finding",
    "IncrementalDetector",
    "Notifier",
    "RecordingNotifier",
    "ThresholdDetector",
    "ThresholdRule",
    "default_detectors",
]
