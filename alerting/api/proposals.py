"""Care-plan proposals: list them (each with its FHIR Task), accept or reject one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Query

from alerting.api._context import Caller, CallerDep, RowId, patient_route
from alerting.api.models import DecisionIn, ProposalOut
from alerting.api.problems import PROBLEM_RESPONSES, not_found
from alerting.careplans import decide_proposal, proposal_task
from alerting.errors import AlertingError
from wardwatch.store_careplans import CarePlan, Proposal, ProposalStatus

router = APIRouter(prefix="/api/v1", tags=["proposals"], responses=PROBLEM_RESPONSES)


def proposal_out(proposal: Proposal, plan: CarePlan | None) -> ProposalOut:
    """The API shape of a proposal, with its FHIR Task."""
    assert proposal.id is not None
    return ProposalOut(
        id=proposal.id,
        patient=proposal.patient,
        code=proposal.code,
        description=proposal.description,
        status=proposal.status,
        created_at=proposal.created_at,
        due=proposal.due,
        change=dict(proposal.change),
        decided_at=proposal.decided_at,
        decided_by=proposal.decided_by,
        decision_note=proposal.decision_note,
        task=proposal_task(proposal, plan),
    )


def _present(caller: Caller, proposals: Iterable[Proposal]) -> list[ProposalOut]:
    plans: dict[str, CarePlan | None] = {}
    shown: list[ProposalOut] = []
    for proposal in proposals:
        if not caller.sees(proposal.patient):
            continue
        if proposal.patient not in plans:
            plans[proposal.patient] = caller.store.get_care_plan(proposal.patient)
        shown.append(proposal_out(proposal, plans[proposal.patient]))
    return shown


@router.get("/proposals", name=patient_route("proposals.list"))
def list_proposals(
    caller: CallerDep,
    patient: Annotated[str | None, Query(max_length=128)] = None,
    status: ProposalStatus | None = "proposed",
) -> list[ProposalOut]:
    """Proposals for the caller's patients, oldest first (default: still ``proposed``)."""
    resource = "Task?intent=proposal" + (f"&patient={patient}" if patient else "")
    if patient is not None:
        caller.visible_patient(patient, "proposals.list", resource)
    shown = _present(caller, caller.store.list_proposals(patient=patient, status=status))
    caller.audit_each("proposals.list", (p.patient for p in shown), resource=resource)
    return shown


def _decide(caller: Caller, proposal_id: int, accept: bool, body: DecisionIn) -> ProposalOut:
    action = "proposals.accept" if accept else "proposals.reject"
    resource = f"Task/proposal-{proposal_id}"
    proposal = caller.store.get_proposal(proposal_id)
    if proposal is None:
        caller.audit(action, "not-found", resource=resource)
        raise not_found(f"proposal {proposal_id}")
    if not caller.sees(proposal.patient):
        caller.audit(
            action,
            "refused",
            patient=proposal.patient,
            resource=resource,
            detail="not in caller's teams",
        )
        raise not_found(f"proposal {proposal_id}")
    caller.require("decide-proposal", action, resource, patient=proposal.patient)
    try:
        decided = decide_proposal(
            caller.store,
            proposal_id,
            accept,
            caller.name,
            caller.now(),
            body.note,
            engine=caller.services.engine,
        )
    except AlertingError as exc:
        caller.audit(
            action, "conflict", patient=proposal.patient, resource=resource, detail=exc.code
        )
        raise
    caller.audit(action, "success", patient=proposal.patient, resource=resource)
    return proposal_out(decided, caller.store.get_care_plan(decided.patient))


@router.post("/proposals/{proposal_id}/accept", name=patient_route("proposals.accept"))
def accept(proposal_id: RowId, caller: CallerDep, body: DecisionIn | None = None) -> ProposalOut:
    """Accept: the proposed change goes into the care plan (a new version)."""
    return _decide(caller, proposal_id, True, body or DecisionIn())


@router.post("/proposals/{proposal_id}/reject", name=patient_route("proposals.reject"))
def reject(proposal_id: RowId, caller: CallerDep, body: DecisionIn | None = None) -> ProposalOut:
    """Reject: the care plan stays as it is."""
    return _decide(caller, proposal_id, False, body or DecisionIn())
