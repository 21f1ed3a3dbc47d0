"""What every nurse-API route shares: the services, the caller, authorisation and audit.

Authorisation (docs/api.md, "Nurse API"): a patient the caller may not see (another care
team's) answers **404**, exactly as a patient that does not exist, so ids cannot be probed
across teams; an action the caller's *role* may not take (a service account writing, a
nurse reading the audit trail) answers **403**. Both are audited as refusals.

Audit: every route that reads or writes patient data appends an
:class:`~wardwatch.store.AuditEvent` before its answer leaves (who, patient, action,
resource, remote address, outcome); if the audit cannot be written the answer is a 503
problem without data. A list answers one audit event per patient it shows.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Request
from pydantic import BeforeValidator

from alerting.access import Action, Principal
from alerting.api.auth import current_principal
from alerting.api.problems import ApiProblem, forbidden, not_found
from alerting.engine import AlertEngine
from wardwatch.store import AuditEvent, Patient, Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

PATIENT_DATA_ROUTES: set[str] = set()
"""Route names (= audit actions) of routes that read or write patient data; a refusal
before the caller is known (401) is audited for these too."""


def patient_route(name: str) -> str:
    """Register ``name`` as a patient-data route (its audit action); return it."""
    PATIENT_DATA_ROUTES.add(name)
    return name


@dataclass(frozen=True, slots=True)
class Services:
    """What ``create_app`` was given (``app.state.services``)."""

    store: Store
    engine: AlertEngine
    clock: Clock
    sse_poll_seconds: float = 1.0
    sse_ping_seconds: float = 15.0


def services(request: Request) -> Services:
    """The app's services."""
    found: Services = request.app.state.services
    return found


def now(clock: Clock) -> datetime:
    """The clock's time in UTC (refuses a naive clock)."""
    at = clock()
    if at.tzinfo is None:
        raise ValueError("the API clock must return aware datetimes")
    return at.astimezone(UTC)


def remote_of(request: Request) -> str | None:
    """The client's address (the proxy's when behind one)."""
    return request.client.host if request.client is not None else None


def record(store: Store, event: AuditEvent) -> None:
    """Append ``event``; an audit that cannot be written stops the answer (503)."""
    try:
        store.record_audit(event)
    except Exception as exc:
        log.exception("audit trail unavailable; refusing the %s", event.action)
        raise ApiProblem(
            503, "audit-unavailable", "the request cannot be audited, so it is refused"
        ) from exc


@dataclass(slots=True)
class Caller:
    """The authenticated caller of one request, with the audit trail at hand."""

    request: Request
    principal: Principal
    services: Services
    _patients: dict[str, Patient | None] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        """The store."""
        return self.services.store

    @property
    def name(self) -> str:
        """Who, as the audit trail and alert events record it."""
        return self.principal.username

    def now(self) -> datetime:
        """The API clock's time (UTC)."""
        return now(self.services.clock)

    def audit(
        self,
        action: str,
        outcome: str,
        *,
        patient: str | None = None,
        resource: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one audit event for this request."""
        record(
            self.store,
            AuditEvent(
                at=self.now(),
                principal=self.name,
                action=action,
                outcome=outcome,
                patient=patient,
                resource=resource,
                remote=remote_of(self.request),
                detail=detail,
            ),
        )

    def audit_each(
        self, action: str, patients: Iterable[str], *, resource: str, detail: str | None = None
    ) -> None:
        """One ``success`` event per distinct patient shown (one without patient if none)."""
        shown = list(dict.fromkeys(patients))
        for patient in shown:
            self.audit(action, "success", patient=patient, resource=resource, detail=detail)
        if not shown:
            self.audit(action, "success", resource=resource, detail="0 entries")

    def patient(self, patient_id: str) -> Patient | None:
        """The patient if enrolled (cached for the request), visible or not."""
        if patient_id not in self._patients:
            self._patients[patient_id] = self.store.get_patient(patient_id)
        return self._patients[patient_id]

    def sees(self, patient_id: str) -> bool:
        """Whether the caller may see this patient (False when not enrolled)."""
        patient = self.patient(patient_id)
        return patient is not None and self.principal.sees(patient)

    def visible_patient(self, patient_id: str, action: str, resource: str) -> Patient:
        """The patient, or an audited 404 when absent or not the caller's."""
        self.require("read-patient", action, resource, patient=patient_id)
        patient = self.patient(patient_id)
        if patient is None:
            self.audit(action, "not-found", patient=patient_id, resource=resource)
            raise not_found(f"patient {patient_id}")
        if not self.principal.sees(patient):
            self.audit(
                action,
                "refused",
                patient=patient_id,
                resource=resource,
                detail="not in caller's teams",
            )
            raise not_found(f"patient {patient_id}")
        return patient

    def require(
        self,
        permission: Action,
        action: str,
        resource: str,
        *,
        patient: str | None = None,
    ) -> None:
        """An audited 403 unless the caller's role allows ``permission``
        (:data:`alerting.access.ROLE_ACTIONS`); ``action`` is what the audit records."""
        if not self.principal.can(permission):
            detail = f"role {self.principal.role} may not {permission}"
            self.audit(action, "refused", patient=patient, resource=resource, detail=detail)
            raise forbidden(detail)


def caller(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Caller:
    """The dependency every API route uses: authenticated caller (401 otherwise)."""
    return Caller(request, principal, services(request))


CallerDep = Annotated[Caller, Depends(caller)]
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a stored id (64-bit)")]
"""An alert or proposal id in a path: out of the stores' 64-bit range is a 422."""


def _iso_8601(value: object) -> object:
    """Refuse a number where a date-time is wanted (pydantic would read it as Unix time)."""
    if isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("expected an ISO 8601 date-time such as 2024-05-01T08:00:00Z")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_8601)]
"""A date-time query parameter: ISO 8601 only."""


def audit_unauthenticated(request: Request, status: int, detail: str | None) -> None:
    """Audit a refusal raised before a caller was known, on a patient-data route."""
    route = request.scope.get("route")
    name = getattr(route, "name", None)
    if name not in PATIENT_DATA_ROUTES:
        return
    found = getattr(request.app.state, "services", None)
    if not isinstance(found, Services):
        return
    patient = request.path_params.get("patient_id")
    with contextlib.suppress(ApiProblem):  # logged already; the refusal still goes out
        record(
            found.store,
            AuditEvent(
                at=now(found.clock),
                principal="anonymous",
                action=str(name),
                outcome="refused",
                patient=str(patient) if patient is not None else None,
                resource=request.url.path,
                remote=remote_of(request),
                detail=f"{status}: {detail}" if detail else str(status),
            ),
        )


__all__ = [
    "PATIENT_DATA_ROUTES",
    "Caller",
    "CallerDep",
    "IsoTime",
    "RowId",
    "Services",
    "audit_unauthenticated",
    "caller",
    "patient_route",
    "services",
]
