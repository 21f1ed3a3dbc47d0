"""Store contract for care plans and care-plan proposals (FHIR CarePlan / Task shaped).

Part of :class:`wardwatch.store.Store` (it inherits :class:`CarePlanStore`).
Implemented by ``ingest/stores/sqlite_careplans.py`` and ``ingest/stores/timescale_careplans.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

ProposalStatus = Literal["proposed", "accepted", "rejected"]


@dataclass(frozen=True, slots=True)
class CarePlan:
    """A patient's active care plan: what the detectors read besides the clinical defaults.

    Threshold precedence: clinical default < care plan ``thresholds`` < the patient's own
    ``Patient.thresholds``.
    """

    patient: str
    title: str
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Rule parameter overrides (same names as ``Patient.thresholds``)."""
    schedule: Mapping[str, float] = field(default_factory=dict)
    """Expected interval between readings, in hours, by measurement kind
    (``{"blood_pressure": 24}``: daily). Missing-data detectors read it."""
    version: int = 1
    updated_at: datetime | None = None
    updated_by: str | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed care-plan change or task (a FHIR Task with intent ``proposal``)."""

    patient: str
    code: str
    """What is proposed: ``bp-twice-daily``, ``diuretic-review``, ``insulin-review``,
    ``outreach-call`` (see ``alerting/proposals.py``)."""
    description: str
    created_at: datetime
    reason_alerts: tuple[int, ...] = ()
    change: Mapping[str, Any] = field(default_factory=dict)
    """What accepting changes in the plan: ``{"schedule": {...}, "thresholds": {...}}``
    (empty for a task such as a call)."""
    due: datetime | None = None
    status: ProposalStatus = "proposed"
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_note: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class LastReading:
    """When a patient's device last sent a reading of one kind (what missing-data
    detectors read, kept by the store on every write so reading it is one cheap query)."""

    patient: str
    device: str
    kind: str | None
    """The measurement kind; ``None`` for a device paired to the patient that has sent
    nothing yet (``at`` is then when it was paired)."""
    at: datetime
    """The latest reading's own time (event time), or the pairing time (``kind`` None)."""
    gateway: str | None = None
    """The gateway that latest reading came through, if known."""
    paired: bool = True
    """False when the device is paired to another patient now (re-paired); a device with
    no pairing record counts as the patient's own."""


class CarePlanStore(Protocol):
    """Care plans and proposals."""

    def get_care_plan(self, patient: str) -> CarePlan | None:
        """The patient's care plan, if one was set."""
        ...

    def put_care_plan(self, plan: CarePlan) -> CarePlan:
        """Create or replace the patient's plan; return it as stored (version bumped)."""
        ...

    def list_care_plans(self) -> list[CarePlan]:
        """Every patient's care plan, ordered by patient (one query, for the detectors)."""
        ...

    def last_readings(self) -> list[LastReading]:
        """The latest reading time per (patient, device, kind), plus paired devices that
        have sent nothing (``kind`` None); one query over a table the store keeps on
        :meth:`write_observations`, not a scan of the history."""
        ...

    def add_proposal(self, proposal: Proposal) -> Proposal:
        """Store a proposal unless one with the same patient and code is still
        ``proposed`` (then return that one); return it with its id."""
        ...

    def get_proposal(self, proposal_id: int) -> Proposal | None:
        """One proposal by id."""
        ...

    def list_proposals(
        self, *, patient: str | None = None, status: ProposalStatus | None = None
    ) -> list[Proposal]:
        """Proposals, oldest first, optionally filtered."""
        ...

    def decide_proposal(self, proposal: Proposal) -> None:
        """Store the decision fields of a proposal that was ``proposed`` (StoreError if it
        was decided already)."""
        ...


__all__ = ["CarePlan", "CarePlanStore", "LastReading", "Proposal", "ProposalStatus"]
