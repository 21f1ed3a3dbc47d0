"""The audit trail, for admins: who read or changed which patient's data, when, from where."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from alerting.api._context import CallerDep, IsoTime, patient_route
from alerting.api.models import AuditOut, audit_out
from alerting.api.problems import PROBLEM_RESPONSES, ApiProblem

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=PROBLEM_RESPONSES)


@router.get("/audit", name=patient_route("audit.search"))
def search_audit(
    caller: CallerDep,
    patient: Annotated[str | None, Query(max_length=128)] = None,
    principal: Annotated[str | None, Query(max_length=256)] = None,
    since: Annotated[IsoTime | None, Query(description="at or after (with a time zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """Audit events, oldest first. System admins see all; care-team admins the events of
    their teams' patients (events about no patient, such as logins, are system-admin only)."""
    resource = "AuditEvent" + (f"?patient={patient}" if patient else "")
    caller.require("read-audit", "audit.search", resource, patient=patient)
    if since is not None and since.tzinfo is None:
        raise ApiProblem(422, "bad-time", "since needs a time zone (Z or +hh:mm)")
    if patient is not None:
        caller.visible_patient(patient, "audit.search", resource)
    everything = caller.principal.all_patients
    events = caller.store.list_audit(
        patient=patient,
        principal=principal,
        since=since,
        limit=limit if everything else None,
    )
    if not everything:
        events = [e for e in events if e.patient is not None and caller.sees(e.patient)][:limit]
    caller.audit(
        "audit.search",
        "success",
        patient=patient,
        resource=resource,
        detail=f"{len(events)} entries",
    )
    return [audit_out(e) for e in events]
