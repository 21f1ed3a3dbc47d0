"""Store contract for the alert lifecycle: transitions, silences and snoozes, deliveries.

Part of :class:`wardwatch.store.Store` (it inherits :class:`AlertLifecycleStore`).
Implemented by ``ingest/stores/sqlite_alerts.py`` and ``ingest/stores/timescale_alerts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from wardwatch.store import Alert

AlertAction = Literal[
    "opened",
    "updated",
    "acknowledged",
    "resolved",
    "auto-cleared",
    "snoozed",
    "unsnoozed",
    "notified",
    "renotified",
    "escalated",
    "inhibited",
    "silenced",
    "delivery-failed",
]
"""What happened to an alert. Person actions: acknowledged, resolved, snoozed, unsnoozed."""


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One transition or notification step of an alert: what, who, when. Append-only."""

    alert_id: int
    at: datetime
    """When it happened: the reading's time for detector transitions, the person's or the
    dispatcher's clock otherwise."""
    action: AlertAction
    actor: str
    """A user name, ``auto-clear``, ``engine`` (detectors) or ``dispatcher`` (delivery)."""
    detail: str | None = None
    """Short, no reading values and no names (``step 2: charge-nurse``, ``until 14:30Z``)."""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence (Alertmanager) or, with ``alert_id`` set, a snooze of one alert.

    Matches alerts whose patient, rule and care team equal the fields that are set
    (``None`` matches anything); active while ``starts_at <= now < ends_at``. Expiring a
    silence early sets ``ends_at`` (records are never deleted).
    """

    created_by: str
    created_at: datetime
    starts_at: datetime
    ends_at: datetime
    comment: str
    patient: str | None = None
    rule: str | None = None
    care_team: str | None = None
    alert_id: int | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try to deliver one notification (which may group several alerts of a patient)."""

    alert_ids: tuple[int, ...]
    patient: str
    care_team: str | None
    purpose: Literal["notify", "renotify", "escalate"]
    step: int
    """Escalation step (0: the first recipients in the care team's policy)."""
    target: str
    """Who it was for: the policy step's name or apprise tag (``primary-nurse``)."""
    attempt: int
    """1 for the first try, 2.. for retries of the same notification."""
    at: datetime
    delivered: bool
    result: str
    """``sent`` or why not (``failure``, ``no-route``, ``timeout``, ...)."""
    targets: int = 0
    """How many apprise services were tried."""
    id: int | None = None


class AlertLifecycleStore(Protocol):
    """What the alert engine and the dispatcher need beyond :class:`Alert` rows."""

    def get_alert(self, alert_id: int) -> Alert | None:
        """One alert by id."""
        ...

    def record_alert_event(self, event: AlertEvent) -> AlertEvent:
        """Append an alert event; return it with its id."""
        ...

    def list_alert_events(
        self, *, alert_id: int | None = None, after_id: int | None = None, limit: int | None = None
    ) -> list[AlertEvent]:
        """Alert events in id order, optionally of one alert or after an id (a change feed)."""
        ...

    def add_silence(self, silence: Silence) -> Silence:
        """Store a silence or snooze; return it with its id."""
        ...

    def expire_silence(self, silence_id: int, at: datetime) -> Silence | None:
        """End a silence at ``at`` (if it ends later); return it, None if unknown."""
        ...

    def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """Silences (all, or only those active at ``active_at``), oldest first."""
        ...

    def record_delivery(self, attempt: DeliveryAttempt) -> DeliveryAttempt:
        """Append a delivery attempt; return it with its id."""
        ...

    def list_deliveries(self, *, alert_id: int | None = None) -> list[DeliveryAttempt]:
        """Delivery attempts in id order, optionally those covering one alert."""
        ...


__all__ = [
    "AlertAction",
    "AlertEvent",
    "AlertLifecycleStore",
    "DeliveryAttempt",
    "Silence",
]
