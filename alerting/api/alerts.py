"""Alerts: the worklist (filtered, urgent first), one alert with its history, and the
person actions (acknowledge, resolve, snooze) through :class:`alerting.engine.AlertEngine`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from alerting.api._context import Caller, CallerDep, RowId, patient_route
from alerting.api.models import (
    AlertDetail,
    AlertOut,
    SnoozeIn,
    alert_event_out,
    alert_out,
)
from alerting.api.problems import PROBLEM_RESPONSES, not_found
from alerting.errors import AlertingError
from wardwatch.store import Alert, AlertStatus, Severity

router = APIRouter(prefix="/api/v1", tags=["alerts"], responses=PROBLEM_RESPONSES)

SEVERITY_RANK: dict[str, int] = {"urgent": 0, "warning": 1, "info": 2}
StatusFilter = Literal["active", "open", "acknowledged", "resolved", "all"]


def snoozes(caller: Caller, at: datetime) -> dict[int, datetime]:
    """Alert id -> until when it is snoozed, for snoozes active at ``at``."""
    found: dict[int, datetime] = {}
    for silence in caller.store.list_silences(active_at=at):
        if silence.alert_id is not None:
            found[silence.alert_id] = max(
                silence.ends_at, found.get(silence.alert_id, silence.ends_at)
            )
    return found


def present(caller: Caller, alerts: Iterable[Alert]) -> list[AlertOut]:
    """The API shape of alerts the caller sees (the others left out)."""
    snoozed = snoozes(caller, caller.now())
    shown: list[AlertOut] = []
    for alert in alerts:
        patient = caller.patient(alert.patient)
        if patient is None or not caller.principal.sees(patient) or alert.id is None:
            continue
        shown.append(alert_out(alert, patient, snoozed.get(alert.id)))
    return shown


def _statuses(status: StatusFilter) -> tuple[AlertStatus | None, ...]:
    if status == "active":
        return ("open", "acknowledged")
    if status == "all":
        return (None,)
    return (status,)


@router.get("/alerts", name=patient_route("alerts.list"))
def list_alerts(
    caller: CallerDep,
    status: Annotated[StatusFilter, Query(description="active = open or acknowledged")] = "active",
    patient: Annotated[str | None, Query(max_length=128)] = None,
    severity: Severity | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> list[AlertOut]:
    """Alerts of the caller's patients, urgent first, then oldest first."""
    resource = "Alert?status=" + status + (f"&patient={patient}" if patient else "")
    if patient is not None:
        caller.visible_patient(patient, "alerts.list", resource)
    found: list[Alert] = []
    for wanted in _statuses(status):
        found.extend(caller.store.list_alerts(patient=patient, status=wanted))
    if severity is not None:
        found = [a for a in found if a.severity == severity]
    found.sort(key=lambda a: (SEVERITY_RANK.get(a.severity, 9), a.opened_at, a.id or 0))
    shown = present(caller, found)[:limit]
    caller.audit_each("alerts.list", (a.patient for a in shown), resource=resource)
    return shown


def visible_alert(caller: Caller, alert_id: int, action: str) -> Alert:
    """The alert, or an audited 404 when absent or of a patient the caller may not see."""
    resource = f"Alert/{alert_id}"
    alert = caller.store.get_alert(alert_id)
    if alert is None:
        caller.audit(action, "not-found", resource=resource)
        raise not_found(f"alert {alert_id}")
    if not caller.sees(alert.patient):
        caller.audit(
            action,
            "refused",
            patient=alert.patient,
            resource=resource,
            detail="not in caller's teams",
        )
        raise not_found(f"alert {alert_id}")
    return alert


@router.get("/alerts/{alert_id}", name=patient_route("alerts.read"))
def get_alert(alert_id: RowId, caller: CallerDep) -> AlertDetail:
    """One alert with every recorded transition and notification step."""
    alert = visible_alert(caller, alert_id, "alerts.read")
    events = caller.store.list_alert_events(alert_id=alert_id)
    (shown,) = present(caller, [alert])
    caller.audit("alerts.read", "success", patient=alert.patient, resource=f"Alert/{alert_id}")
    return AlertDetail(**shown.model_dump(), events=[alert_event_out(e) for e in events])


def _act(caller: Caller, alert_id: int, action: str, body: SnoozeIn | None = None) -> AlertOut:
    """Run one person action through the engine, audited whatever the outcome."""
    audit_action = f"alerts.{action}"
    resource = f"Alert/{alert_id}"
    alert = visible_alert(caller, alert_id, audit_action)
    caller.require("act-on-alert", audit_action, resource, patient=alert.patient)
    engine = caller.services.engine
    at = caller.now()
    try:
        if action == "acknowledge":
            engine.acknowledge(alert_id, caller.name, at)
        elif action == "resolve":
            engine.resolve(alert_id, caller.name, at)
        else:
            assert body is not None
            engine.snooze(
                alert_id, caller.name, at, at + timedelta(minutes=body.minutes), body.comment
            )
    except AlertingError as exc:
        caller.audit(
            audit_action, "conflict", patient=alert.patient, resource=resource, detail=exc.code
        )
        raise
    updated = caller.store.get_alert(alert_id) or alert
    caller.audit(audit_action, "success", patient=alert.patient, resource=resource)
    (shown,) = present(caller, [updated])
    return shown


@router.post("/alerts/{alert_id}/acknowledge", name=patient_route("alerts.acknowledge"))
def acknowledge(alert_id: RowId, caller: CallerDep) -> AlertOut:
    """Acknowledge: I have seen it (stops escalation). Again: no change."""
    return _act(caller, alert_id, "acknowledge")


@router.post("/alerts/{alert_id}/resolve", name=patient_route("alerts.resolve"))
def resolve(alert_id: RowId, caller: CallerDep) -> AlertOut:
    """Resolve: dealt with. Again: no change."""
    return _act(caller, alert_id, "resolve")


@router.post("/alerts/{alert_id}/snooze", name=patient_route("alerts.snooze"))
def snooze(alert_id: RowId, body: SnoozeIn, caller: CallerDep) -> AlertOut:
    """Silence the alert's notifications for ``minutes`` (it stays on the worklist)."""
    return _act(caller, alert_id, "snooze", body)
