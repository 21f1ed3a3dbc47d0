"""Devices and their pairing to patients; care teams."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from alerting.api._context import Caller, CallerDep, patient_route
from alerting.api.models import CareTeamOut, DeviceOut, PairingIn
from alerting.api.problems import PROBLEM_RESPONSES, not_found
from wardwatch.store_charts import DevicePairing

router = APIRouter(prefix="/api/v1", tags=["devices"], responses=PROBLEM_RESPONSES)

DeviceId = Annotated[str, Path(min_length=1, max_length=128)]


def _pairing(caller: Caller, device: str) -> DevicePairing | None:
    patient = caller.store.device_patient(device)
    if patient is None:
        return None
    for pairing in caller.store.list_device_pairings(patient):
        if pairing.device == device:
            return pairing
    return None


@router.get("/devices/{device}/pairing", name=patient_route("pairing.read"))
def get_pairing(device: DeviceId, caller: CallerDep) -> DeviceOut:
    """Which patient the device measures (404 if none, or not one of the caller's)."""
    resource = f"Device/{device}"
    pairing = _pairing(caller, device)
    if pairing is None:
        caller.audit("pairing.read", "not-found", resource=resource)
        raise not_found(f"pairing of device {device}")
    if not caller.sees(pairing.patient):
        caller.audit(
            "pairing.read",
            "refused",
            patient=pairing.patient,
            resource=resource,
            detail="not in caller's teams",
        )
        raise not_found(f"pairing of device {device}")
    caller.audit("pairing.read", "success", patient=pairing.patient, resource=resource)
    return DeviceOut(device=pairing.device, patient=pairing.patient, paired_at=pairing.paired_at)


@router.put("/devices/{device}/pairing", name=patient_route("pairing.write"))
def put_pairing(device: DeviceId, body: PairingIn, caller: CallerDep) -> DeviceOut:
    """Pair the device to a patient (replacing an earlier pairing). The patient, and the
    device's current patient if any, must both be the caller's (404 otherwise)."""
    resource = f"Device/{device}"
    patient = caller.visible_patient(body.patient, "pairing.write", resource)
    current = caller.store.device_patient(device)
    if current is not None and current != patient.id and not caller.sees(current):
        caller.audit(
            "pairing.write",
            "refused",
            patient=current,
            resource=resource,
            detail="device paired to a patient outside the caller's teams",
        )
        raise not_found(f"device {device}")
    caller.require("pair-device", "pairing.write", resource, patient=patient.id)
    caller.store.pair_device(device, patient.id)
    caller.audit(
        "pairing.write",
        "success",
        patient=patient.id,
        resource=resource,
        detail=f"was {current}" if current is not None and current != patient.id else None,
    )
    pairing = _pairing(caller, device)
    assert pairing is not None
    return DeviceOut(device=pairing.device, patient=pairing.patient, paired_at=pairing.paired_at)


@router.get("/care-teams", name="care-teams.list")
def list_care_teams(caller: CallerDep) -> list[CareTeamOut]:
    """The caller's care teams (every team for system admins and services)."""
    everyone = caller.principal.role in ("system-admin", "service")
    return [
        CareTeamOut(id=t.id, name=t.name)
        for t in caller.store.list_care_teams()
        if everyone or t.id in caller.principal.teams
    ]
