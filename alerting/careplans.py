"""Care plans and the decisions on care-plan proposals, and their FHIR R4 shapes.

- :func:`effective_thresholds`: what a patient's detectors read besides the clinical
  defaults: ``{**care_plan.thresholds, **patient.thresholds}`` (the patient's own entries
  win over the plan's, the plan's over the defaults).
- :func:`decide_proposal`: a nurse accepts or rejects a proposal (who, when, a note). An
  accepted proposal with a ``change`` (``{"schedule": {kind: hours}, "thresholds":
  {parameter: value}}``) is merged into the patient's :class:`CarePlan` (version + 1,
  ``updated_by``/``updated_at`` the decision's), and the engine forgets the patient's
  detector state so the next reading is judged on the new plan; the missing-data
  detectors read the plan at every tick. Deciding twice is a :class:`ProposalDecidedError`.
- :func:`proposal_task` / :func:`care_plan_resource`: a proposal as a FHIR R4 Task (intent
  ``proposal``, focus the patient's CarePlan) and a plan as a FHIR R4 CarePlan, plain
  dicts (tests validate them with ``fhir.resources``).

The decision is recorded first (atomically: a second decision on the same proposal fails
in the store) and the plan written after it, so a proposal is never applied twice; the
change is validated before either write.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Final, Protocol

from alerting.errors import CarePlanChangeError, ProposalDecidedError, ProposalNotFoundError
from wardwatch.errors import UnknownKindError, WardwatchError
from wardwatch.fhir import format_time
from wardwatch.store import Store
from wardwatch.store_careplans import CarePlan, Proposal, ProposalStatus
from wardwatch.vocabulary import LOINC_SYSTEM
from wardwatch.vocabulary import kind as lookup_kind

log = logging.getLogger(__name__)

#: code system of wardwatch's proposal codes (``bp-twice-daily``...), on Task.code
PROPOSAL_CODE_SYSTEM: Final = "urn:wardwatch:care-plan-proposal"
#: FHIR's own task codes (Task.code): a plan change proposes to ``change`` the focus
TASK_CODE_SYSTEM: Final = "http://hl7.org/fhir/CodeSystem/task-code"
#: an alert-threshold override of a care plan (extension on CarePlan)
THRESHOLD_EXTENSION: Final = "urn:wardwatch:fhir:care-plan-threshold"
UCUM_SYSTEM: Final = "http://unitsofmeasure.org"
DEFAULT_TITLE: Final = "Remote monitoring"
#: shortest and longest expected interval a schedule may give, in hours (5 min .. 30 days)
MIN_SCHEDULE_HOURS: Final = 1 / 12
MAX_SCHEDULE_HOURS: Final = 24 * 30.0

_TASK_STATUS: Final[Mapping[ProposalStatus, str]] = {
    "proposed": "requested",
    "accepted": "accepted",
    "rejected": "rejected",
}
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:wardwatch:fhir-id")


class ForgetsPatients(Protocol):
    """What :func:`decide_proposal` needs of the alert engine."""

    def forget(self, patient_id: str) -> None:
        """Drop the patient's detector state (rebuilt on the next reading)."""
        ...


def effective_thresholds(store: Store, patient: str) -> dict[str, float]:
    """The patient's threshold overrides: care plan's, then the patient's own on top."""
    plan = store.get_care_plan(patient)
    record = store.get_patient(patient)
    return {
        **(dict(plan.thresholds) if plan is not None else {}),
        **(dict(record.thresholds) if record is not None else {}),
    }


def check_change(change: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A proposal's ``change`` validated: known keys, known kinds, sane numbers."""
    unknown = set(change) - {"schedule", "thresholds"}
    if unknown:
        raise CarePlanChangeError(f"unknown care-plan change keys: {', '.join(sorted(unknown))}")
    out: dict[str, dict[str, float]] = {}
    for key in ("schedule", "thresholds"):
        part = change.get(key, {})
        if not isinstance(part, Mapping):
            raise CarePlanChangeError(f"care-plan change {key!r} is not an object")
        checked: dict[str, float] = {}
        for name, value in part.items():
            if not isinstance(name, str) or not name:
                raise CarePlanChangeError(f"care-plan change {key!r} has an empty name")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CarePlanChangeError(f"{key} {name!r}: not a number")
            number = float(value)
            if not math.isfinite(number):
                raise CarePlanChangeError(f"{key} {name!r}: not a finite number")
            if key == "schedule":
                try:
                    lookup_kind(name)
                except UnknownKindError:
                    raise CarePlanChangeError(f"schedule {name!r}: unknown kind") from None
                if not MIN_SCHEDULE_HOURS <= number <= MAX_SCHEDULE_HOURS:
                    raise CarePlanChangeError(
                        f"schedule {name!r}: {number:g} h is outside "
                        f"{MIN_SCHEDULE_HOURS * 60:g} min-{MAX_SCHEDULE_HOURS / 24:g} days"
                    )
            checked[name] = number
        out[key] = checked
    return out


def apply_change(
    plan: CarePlan | None, patient: str, change: Mapping[str, Any], by: str, at: datetime
) -> CarePlan:
    """The plan with ``change`` merged in (a new plan if there was none); not stored."""
    checked = check_change(change)
    base = plan if plan is not None else CarePlan(patient=patient, title=DEFAULT_TITLE)
    return replace(
        base,
        thresholds={**base.thresholds, **checked["thresholds"]},
        schedule={**base.schedule, **checked["schedule"]},
        updated_at=at,
        updated_by=by,
    )


def decide_proposal(
    store: Store,
    proposal_id: int,
    accept: bool,
    by: str,
    at: datetime,
    note: str | None = None,
    engine: ForgetsPatients | None = None,
) -> Proposal:
    """Accept or reject a proposal; return it as decided.

    Accepting applies its ``change`` to the patient's care plan (stored as a new version)
    and, when an engine is given, makes it forget the patient's detector state.
    ProposalNotFoundError, ProposalDecidedError (decided already, also by a concurrent
    caller), CarePlanChangeError (bad change, empty ``by``, naive ``at``).
    """
    if not by.strip():
        raise CarePlanChangeError("who decided is missing")
    if at.tzinfo is None or at.utcoffset() is None:
        raise CarePlanChangeError("the decision time has no time zone")
    proposal = store.get_proposal(proposal_id)
    if proposal is None:
        raise ProposalNotFoundError(proposal_id)
    if proposal.status != "proposed":
        raise ProposalDecidedError(proposal_id, proposal.status)
    new_plan: CarePlan | None = None
    if accept and proposal.change:
        new_plan = apply_change(
            store.get_care_plan(proposal.patient), proposal.patient, proposal.change, by, at
        )
    decided = replace(
        proposal,
        status="accepted" if accept else "rejected",
        decided_at=at,
        decided_by=by,
        decision_note=note,
    )
    try:
        store.decide_proposal(decided)
    except WardwatchError:  # the store's error: decided meanwhile, or the store failed
        again = store.get_proposal(proposal_id)
        if again is not None and again.status != "proposed":
            raise ProposalDecidedError(proposal_id, again.status) from None
        raise
    if new_plan is not None:
        stored = store.put_care_plan(new_plan)
        log.info(
            "proposal %s accepted: patient %s care plan version %d",
            proposal_id,
            proposal.patient,
            stored.version,
        )
        if engine is not None:
            engine.forget(proposal.patient)
    else:
        log.info("proposal %s %s", proposal_id, decided.status)
    return decided


# -- FHIR ------------------------------------------------------------------------------------


def fhir_id(value: str) -> str:
    """``value`` if it is a valid FHIR id, else a stable UUID derived from it."""
    return value if _FHIR_ID.fullmatch(value) else str(uuid.uuid5(_ID_NAMESPACE, value))


def care_plan_id(patient: str) -> str:
    """The FHIR id of a patient's (single, active) care plan."""
    return fhir_id(f"careplan-{patient}")


def _kind_code(kind: str) -> dict[str, Any]:
    try:
        known = lookup_kind(kind)
    except UnknownKindError:
        return {"text": kind}
    return {
        "coding": [{"system": LOINC_SYSTEM, "code": known.loinc, "display": known.display}],
        "text": known.display,
    }


def _hours(hours: float) -> dict[str, Any]:
    return {"value": hours, "unit": "h", "system": UCUM_SYSTEM, "code": "h"}


def care_plan_resource(plan: CarePlan) -> dict[str, Any]:
    """The plan as a FHIR R4 CarePlan: one scheduled activity per kind, thresholds as
    extensions, its version as ``meta.versionId``."""
    meta: dict[str, Any] = {"versionId": str(plan.version)}
    if plan.updated_at is not None:
        meta["lastUpdated"] = format_time(plan.updated_at)
    doc: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": care_plan_id(plan.patient),
        "meta": meta,
        "status": "active",
        "intent": "plan",
        "title": plan.title,
        "subject": {"reference": f"Patient/{fhir_id(plan.patient)}"},
    }
    if plan.updated_by is not None:
        doc["author"] = {"display": plan.updated_by}
    if plan.thresholds:
        doc["extension"] = [
            {
                "url": THRESHOLD_EXTENSION,
                "extension": [
                    {"url": "parameter", "valueString": name},
                    {"url": "value", "valueDecimal": value},
                ],
            }
            for name, value in sorted(plan.thresholds.items())
        ]
    if plan.schedule:
        doc["activity"] = [
            {
                "detail": {
                    "kind": "ServiceRequest",
                    "code": _kind_code(kind),
                    "status": "scheduled",
                    "scheduledTiming": {
                        "repeat": {"frequency": 1, "period": hours, "periodUnit": "h"}
                    },
                }
            }
            for kind, hours in sorted(plan.schedule.items())
        ]
    return doc


def _change_inputs(change: Mapping[str, Any]) -> list[dict[str, Any]]:
    inputs: list[dict[str, Any]] = []
    for kind, hours in sorted(dict(change.get("schedule", {})).items()):
        inputs.append(
            {
                "type": {"text": f"schedule {kind}: expected interval"},
                "valueQuantity": _hours(float(hours)),
            }
        )
    for name, value in sorted(dict(change.get("thresholds", {})).items()):
        inputs.append({"type": {"text": f"threshold {name}"}, "valueDecimal": float(value)})
    return inputs


def proposal_task(proposal: Proposal, plan: CarePlan | None = None) -> dict[str, Any]:
    """The proposal as a FHIR R4 Task (intent ``proposal``).

    Status ``requested`` / ``accepted`` / ``rejected``; focus the patient's CarePlan (the
    one to be created when there is none yet), for the Patient; the change proposed as
    ``input``; the due time as ``restriction.period.end``; the alerts behind it in
    ``reasonCode``; the decision (who, when, note) as a ``note``.
    """
    if proposal.id is None:
        raise ValueError("proposal_task needs a stored proposal (with an id)")
    focus: dict[str, Any] = {
        "reference": f"CarePlan/{care_plan_id(proposal.patient)}",
    }
    if plan is not None:
        focus["display"] = f"{plan.title} (version {plan.version})"
    doc: dict[str, Any] = {
        "resourceType": "Task",
        "id": f"proposal-{proposal.id}",
        "status": _TASK_STATUS[proposal.status],
        "intent": "proposal",
        "priority": "urgent" if proposal.due is not None else "routine",
        "code": {
            "coding": [
                {"system": TASK_CODE_SYSTEM, "code": "change" if proposal.change else "fulfill"},
                {"system": PROPOSAL_CODE_SYSTEM, "code": proposal.code},
            ],
            "text": proposal.description,
        },
        "description": proposal.description,
        "focus": focus,
        "for": {"reference": f"Patient/{fhir_id(proposal.patient)}"},
        "authoredOn": format_time(proposal.created_at),
        "lastModified": format_time(proposal.decided_at or proposal.created_at),
        "requester": {"display": "wardwatch"},
    }
    if proposal.reason_alerts:
        ids = ", ".join(str(a) for a in proposal.reason_alerts)
        doc["reasonCode"] = {"text": f"wardwatch alert {ids}"}
    if proposal.due is not None:
        doc["restriction"] = {"period": {"end": format_time(proposal.due)}}
    inputs = _change_inputs(proposal.change)
    if inputs:
        doc["input"] = inputs
    if proposal.decided_at is not None:
        text = f"{proposal.status} by {proposal.decided_by}"
        if proposal.decision_note:
            text += f": {proposal.decision_note}"
        note: dict[str, Any] = {"time": format_time(proposal.decided_at), "text": text}
        if proposal.decided_by:
            note["authorString"] = proposal.decided_by
        doc["note"] = [note]
    return doc


__all__ = [
    "DEFAULT_TITLE",
    "ForgetsPatients",
    "apply_change",
    "care_plan_id",
    "care_plan_resource",
    "check_change",
    "decide_proposal",
    "effective_thresholds",
    "proposal_task",
]
