"""Patients: the caller's list, one patient's record with its chart thresholds, care plans."""

from __future__ import annotations

from fastapi import APIRouter

from alerting.api._context import Caller, CallerDep, patient_route
from alerting.api.models import (
    AlertCounts,
    CarePlanIn,
    CarePlanOut,
    DeviceOut,
    PatientDetail,
    PatientSummary,
    ThresholdLine,
    care_plan_out,
)
from alerting.api.problems import PROBLEM_RESPONSES, ApiProblem
from alerting.api.thresholds import effective_thresholds
from alerting.careplans import check_change
from alerting.errors import AlertingError, ThresholdOverrideError
from wardwatch.store import Patient
from wardwatch.store_careplans import CarePlan

router = APIRouter(prefix="/api/v1", tags=["patients"], responses=PROBLEM_RESPONSES)


def visible_patients(caller: Caller) -> list[Patient]:
    """Every enrolled patient the caller may see, ordered by id."""
    return [p for p in caller.store.list_patients() if caller.principal.sees(p)]


@router.get("/patients", name=patient_route("patients.list"))
def list_patients(caller: CallerDep) -> list[PatientSummary]:
    """The patients of the caller's care teams, with open alert counts."""
    patients = visible_patients(caller)
    ids = {p.id for p in patients}
    counts: dict[str, dict[str, int]] = {p.id: {} for p in patients}
    for status in ("open", "acknowledged"):
        for alert in caller.store.list_alerts(status=status):
            if alert.patient in ids:
                by = counts[alert.patient]
                by[alert.severity] = by.get(alert.severity, 0) + 1
    last = caller.store.last_reading_times([p.id for p in patients])
    caller.audit_each("patients.list", (p.id for p in patients), resource="Patient")
    return [
        PatientSummary(
            id=p.id,
            display_name=p.display_name,
            care_team=p.care_team,
            open_alerts=AlertCounts(**counts[p.id]),
            last_reading_at=last.get(p.id),
        )
        for p in patients
    ]


@router.get("/patients/{patient_id}", name=patient_route("patients.read"))
def get_patient(patient_id: str, caller: CallerDep) -> PatientDetail:
    """One patient: care plan, paired devices and the thresholds to draw on charts."""
    resource = f"Patient/{patient_id}"
    patient = caller.visible_patient(patient_id, "patients.read", resource)
    plan = caller.store.get_care_plan(patient.id)
    devices = caller.store.list_device_pairings(patient.id)
    lines = effective_thresholds(patient, plan, caller.services.engine.detectors)
    caller.audit("patients.read", "success", patient=patient.id, resource=resource)
    return PatientDetail(
        id=patient.id,
        display_name=patient.display_name,
        care_team=patient.care_team,
        care_plan=None if plan is None else care_plan_out(plan),
        devices=[
            DeviceOut(device=d.device, patient=d.patient, paired_at=d.paired_at) for d in devices
        ],
        thresholds=[
            ThresholdLine(
                parameter=t.parameter,
                kind=t.kind,
                component=t.component,
                value=t.value,
                source=t.source,  # type: ignore[arg-type]
                direction=t.direction,
                severity=t.severity,
                rule=t.rule,
            )
            for t in lines
        ],
    )


@router.get("/patients/{patient_id}/care-plan", name=patient_route("care-plan.read"))
def get_care_plan(patient_id: str, caller: CallerDep) -> CarePlanOut:
    """The patient's care plan (404 when none was set)."""
    resource = f"CarePlan?patient={patient_id}"
    patient = caller.visible_patient(patient_id, "care-plan.read", resource)
    plan = caller.store.get_care_plan(patient.id)
    if plan is None:
        caller.audit("care-plan.read", "not-found", patient=patient.id, resource=resource)
        raise ApiProblem(404, "not-found", f"patient {patient.id} has no care plan")
    caller.audit("care-plan.read", "success", patient=patient.id, resource=resource)
    return care_plan_out(plan)


def _check_plan(caller: Caller, body: CarePlanIn) -> None:
    """Refuse what the detectors cannot use: unknown parameters, bad values, schedules
    of unknown kinds or outside the allowed interval (422)."""
    check_change({"thresholds": body.thresholds, "schedule": body.schedule})
    detectors = caller.services.engine.detectors
    for name, value in body.thresholds.items():
        owners = [d for d in detectors if name in d.parameters]
        if not owners:
            raise ThresholdOverrideError(name, "no rule reads this parameter")
        for detector in owners:
            detector.check_override(name, value)


@router.put("/patients/{patient_id}/care-plan", name=patient_route("care-plan.write"))
def put_care_plan(patient_id: str, body: CarePlanIn, caller: CallerDep) -> CarePlanOut:
    """Create or replace the patient's care plan; detectors use it from the next reading."""
    resource = f"CarePlan?patient={patient_id}"
    patient = caller.visible_patient(patient_id, "care-plan.write", resource)
    caller.require("edit-care-plan", "care-plan.write", resource, patient=patient.id)
    try:
        _check_plan(caller, body)
    except AlertingError as exc:
        caller.audit(
            "care-plan.write", "invalid", patient=patient.id, resource=resource, detail=str(exc)
        )
        raise
    current = caller.store.get_care_plan(patient.id)
    if body.version is not None and current is not None and current.version != body.version:
        caller.audit("care-plan.write", "conflict", patient=patient.id, resource=resource)
        raise ApiProblem(
            409,
            "version-conflict",
            f"the care plan is at version {current.version}, not {body.version}",
        )
    plan = CarePlan(
        patient=patient.id,
        title=body.title,
        thresholds=dict(body.thresholds),
        schedule=dict(body.schedule),
        version=current.version if current is not None else 1,
        updated_at=caller.now(),
        updated_by=caller.name,
    )
    stored = caller.store.put_care_plan(plan)
    caller.services.engine.forget(patient.id)
    caller.audit(
        "care-plan.write",
        "success",
        patient=patient.id,
        resource=resource,
        detail=f"version {stored.version}",
    )
    return care_plan_out(stored)
