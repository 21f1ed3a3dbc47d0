"""The nurse API's request and response bodies (pydantic; they make the OpenAPI document).

Times are ISO 8601 in UTC with ``Z``. Converters from the store's dataclasses live beside
the models they fill.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from alerting.engine import AUTO_CLEAR
from wardwatch.store import Alert, AuditEvent, Patient
from wardwatch.store_alerts import AlertEvent
from wardwatch.store_careplans import CarePlan
from wardwatch.store_charts import BucketStats, ObservationBucket


def utc(at: datetime | None) -> datetime | None:
    """``at`` in UTC (None stays None)."""
    return None if at is None else at.astimezone(UTC)


def _to_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("a time without a time zone")
    return at.astimezone(UTC)


Time = Annotated[datetime, AfterValidator(_to_utc)]
"""A point in time, kept and written in UTC (``...Z``)."""


class _Out(BaseModel):
    """Answers."""

    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    """Requests: unknown fields are refused (a typo is an error, not ignored)."""

    model_config = ConfigDict(extra="forbid")


# -- patients ------------------------------------------------------------------------------
class AlertCounts(_Out):
    urgent: int = 0
    warning: int = 0
    info: int = 0


class PatientSummary(_Out):
    id: str
    display_name: str
    care_team: str | None
    open_alerts: AlertCounts = Field(description="alerts not resolved, by severity")
    last_reading_at: Time | None


class DeviceOut(_Out):
    device: str
    patient: str
    paired_at: Time


class ThresholdLine(_Out):
    parameter: str = Field(description="the care-plan parameter that sets it")
    kind: str = Field(description="the observation kind the chart shows")
    component: str | None = Field(description="panel component (systolic...), if any")
    value: float = Field(description="in the kind's canonical unit")
    source: Literal["default", "care-plan", "patient"]
    direction: Literal["above", "below"] = Field(description="the rule fires beyond it")
    severity: Literal["info", "warning", "urgent"]
    rule: str


class CarePlanOut(_Out):
    patient: str
    title: str
    thresholds: dict[str, float]
    schedule: dict[str, float] = Field(description="expected hours between readings by kind")
    version: int
    updated_at: Time | None
    updated_by: str | None


def care_plan_out(plan: CarePlan) -> CarePlanOut:
    """The API shape of a care plan."""
    return CarePlanOut(
        patient=plan.patient,
        title=plan.title,
        thresholds=dict(plan.thresholds),
        schedule=dict(plan.schedule),
        version=plan.version,
        updated_at=utc(plan.updated_at),
        updated_by=plan.updated_by,
    )


class PatientDetail(_Out):
    id: str
    display_name: str
    care_team: str | None
    care_plan: CarePlanOut | None
    devices: list[DeviceOut]
    thresholds: list[ThresholdLine]


class CarePlanIn(_In):
    title: str = Field(min_length=1, max_length=200)
    thresholds: dict[str, float] = Field(default_factory=dict)
    schedule: dict[str, float] = Field(default_factory=dict)
    version: int | None = Field(
        default=None, description="the version this edit is based on (409 if it moved on)"
    )


class PairingIn(_In):
    patient: str = Field(min_length=1, max_length=128)


class CareTeamOut(_Out):
    id: str
    name: str


# -- observations --------------------------------------------------------------------------
class Stats(_Out):
    mean: float
    min: float
    max: float


def _stats(stats: BucketStats) -> Stats:
    return Stats(mean=stats.mean, min=stats.min, max=stats.max)


class Point(_Out):
    t: Time = Field(description="start of the bucket")
    count: int
    mean: float | None
    min: float | None
    max: float | None
    components: dict[str, Stats] = Field(default_factory=dict)


def point_out(bucket: ObservationBucket) -> Point:
    """The API shape of one bucket."""
    value = bucket.value
    return Point(
        t=bucket.start,
        count=bucket.count,
        mean=None if value is None else value.mean,
        min=None if value is None else value.min,
        max=None if value is None else value.max,
        components={k: _stats(v) for k, v in bucket.components.items()},
    )


class ObservationSeries(_Out):
    patient: str
    kind: str
    unit: str | None
    start: Time
    end: Time
    bucket_seconds: int
    points: list[Point]


# -- alerts ---------------------------------------------------------------------------------
class AlertOut(_Out):
    id: int
    patient: str
    patient_name: str
    rule: str
    kind: str
    severity: Literal["info", "warning", "urgent"]
    status: Literal["open", "acknowledged", "resolved"]
    message: str
    opened_at: Time
    acknowledged_at: Time | None
    acknowledged_by: str | None
    resolved_at: Time | None
    resolved_by: str | None
    auto_cleared: bool
    snoozed_until: Time | None
    observations: list[str]


def alert_out(alert: Alert, patient: Patient, snoozed_until: datetime | None) -> AlertOut:
    """The API shape of an alert."""
    assert alert.id is not None
    return AlertOut(
        id=alert.id,
        patient=alert.patient,
        patient_name=patient.display_name,
        rule=alert.rule,
        kind=alert.kind,
        severity=alert.severity,
        status=alert.status,
        message=alert.message,
        opened_at=alert.opened_at,
        acknowledged_at=utc(alert.acknowledged_at),
        acknowledged_by=alert.acknowledged_by,
        resolved_at=utc(alert.resolved_at),
        resolved_by=alert.resolved_by,
        auto_cleared=alert.resolved_by == AUTO_CLEAR,
        snoozed_until=utc(snoozed_until),
        observations=list(alert.observations),
    )


class AlertEventOut(_Out):
    id: int | None
    at: Time
    action: str
    actor: str
    detail: str | None


def alert_event_out(event: AlertEvent) -> AlertEventOut:
    """The API shape of an alert event."""
    return AlertEventOut(
        id=event.id, at=event.at, action=event.action, actor=event.actor, detail=event.detail
    )


class AlertDetail(AlertOut):
    events: list[AlertEventOut]


class SnoozeIn(_In):
    minutes: int = Field(ge=1, le=24 * 60, description="how long, 1 minute to 24 hours")
    comment: str = Field(default="", max_length=500)


# -- proposals ------------------------------------------------------------------------------
class ProposalOut(_Out):
    id: int
    patient: str
    code: str
    description: str
    status: Literal["proposed", "accepted", "rejected"]
    created_at: Time
    due: Time | None
    change: dict[str, Any]
    decided_at: Time | None
    decided_by: str | None
    decision_note: str | None
    task: dict[str, Any] = Field(description="the proposal as a FHIR R4 Task")


class DecisionIn(_In):
    note: str | None = Field(default=None, max_length=1000)


# -- audit ----------------------------------------------------------------------------------
class AuditOut(_Out):
    id: int | None
    at: Time
    principal: str
    action: str
    outcome: str
    patient: str | None
    resource: str | None
    remote: str | None
    detail: str | None


def audit_out(event: AuditEvent) -> AuditOut:
    """The API shape of an audit event."""
    return AuditOut(
        id=event.id,
        at=event.at,
        principal=event.principal,
        action=event.action,
        outcome=event.outcome,
        patient=event.patient,
        resource=event.resource,
        remote=event.remote,
        detail=event.detail,
    )
