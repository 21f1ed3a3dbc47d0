"""Store contract for the alert lifecycle: transitions, silences and snoozes, deliveries.

Part of :class:`wardwatch.store.Store` (it inherits :class:`AlertLifecycleStore`).
Implemented by ``ingest/stores/sqlite_alerts.py`` and ``ingest/stores/timescale_alerts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from wardwatch.store import Alert, AlertStatus

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


@dataclass(frozen=True, slots=True)
class AlertUpdate:
    """A targeted change to one stored alert (:meth:`AlertLifecycleStore.change_alert`).

    Applied only if the alert's status is one of ``when`` at the time of the write, so a
    process holding an older copy never writes it back over somebody else's change (the API
    acknowledging while the engine appends a reading). Fields left ``None`` are kept.
    """

    when: tuple[AlertStatus, ...]
    """The statuses the change applies to (``("open",)`` for an acknowledgement)."""
    status: AlertStatus | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    add_observations: tuple[str, ...] = ()
    """Observation identifiers to append (those the alert holds already are skipped)."""
    updated_at: datetime | None = None


def apply_update(alert: Alert, change: AlertUpdate) -> Alert:
    """``alert`` with ``change`` applied (for the stores; ``change.when`` is not checked)."""
    added = tuple(dict.fromkeys(i for i in change.add_observations if i not in alert.observations))
    return replace(
        alert,
        status=change.status if change.status is not None else alert.status,
        acknowledged_at=(
            change.acknowledged_at if change.acknowledged_at is not None else alert.acknowledged_at
        ),
        acknowledged_by=(
            change.acknowledged_by if change.acknowledged_by is not None else alert.acknowledged_by
        ),
        resolved_at=change.resolved_at if change.resolved_at is not None else alert.resolved_at,
        resolved_by=change.resolved_by if change.resolved_by is not None else alert.resolved_by,
        observations=(*alert.observations, *added),
        updated_at=change.updated_at if change.updated_at is not None else alert.updated_at,
    )


class AlertLifecycleStore(Protocol):
    """What the alert engine and the dispatcher need beyond :class:`Alert` rows."""

    def get_alert(self, alert_id: int) -> Alert | None:
        """One alert by id."""
        ...

    def open_alert(self, alert: Alert, event: AlertEvent) -> tuple[Alert, AlertEvent]:
        """Insert a new alert and its ``opened`` event in one transaction (the event's
        ``alert_id`` is replaced by the new id); return both with their ids.

        StoreError if the patient already has an unresolved alert of the rule."""
        ...

    def change_alert(self, alert_id: int, change: AlertUpdate, event: AlertEvent) -> Alert | None:
        """If the alert's status is one of ``change.when``, apply ``change`` and append
        ``event`` in one transaction (the row is read and written under a write lock);
        return the alert as stored after it. None (nothing written) if the alert is
        unknown or its status is not in ``change.when``."""
        ...

    def record_alert_event(self, event: AlertEvent) -> AlertEvent:
        """Append an alert event; return it with its id."""
        ...

    def list_alert_events(
        self, *, alert_id: int | None = None, after_id: int | None = None, limit: int | None = None
    ) -> list[AlertEvent]:
        """Alert events in id order, optionally of one alert or after an id (a change feed)."""
        ...

    def add_silence(self, silence: Silence, *, event: AlertEvent | None = None) -> Silence:
        """Store a silence or snooze (and ``event``, in the same transaction); return it
        with its id. ValueError if it ends before it starts."""
        ...

    def get_silence(self, silence_id: int) -> Silence | None:
        """One silence or snooze by id."""
        ...

    def expire_silence(
        self, silence_id: int, at: datetime, *, event: AlertEvent | None = None
    ) -> Silence | None:
        """End a silence at ``at`` (if it ends later; never before it starts) and append
        ``event`` if it did, in one transaction; return it, None if unknown."""
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
    "AlertUpdate",
    "DeliveryAttempt",
    "Silence",
    "apply_update",
]
