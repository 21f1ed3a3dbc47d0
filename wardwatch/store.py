"""The storage interface: ingest writes through it, alerting reads and writes alerts.

Two implementations live in :mod:`ingest.stores` (TimescaleDB via psycopg, SQLite as the
embedded default); one contract test suite (``tests/test_store_contract.py``) runs against
both. The interface is synchronous; asyncio services call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from wardwatch.store_access import AccessStore
from wardwatch.store_alerts import AlertLifecycleStore
from wardwatch.store_careplans import CarePlanStore
from wardwatch.store_charts import ChartStore

Severity = Literal["info", "warning", "urgent"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "urgent")
AlertStatus = Literal["open", "acknowledged", "resolved"]
QuarantineState = Literal["held", "released"]
GatewayStatus = Literal["online", "offline"]
GATEWAY_STATUSES: tuple[GatewayStatus, ...] = ("online", "offline")


@dataclass(frozen=True, slots=True)
class CareTeam:
    """A care team and where its alerts go (apprise URLs)."""

    id: str
    name: str
    notify_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Patient:
    """An enrolled patient (synthetic data only). ``display_name`` never goes to logs."""

    id: str
    display_name: str
    care_team: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Per-patient threshold overrides by rule parameter name (care plan)."""


@dataclass(frozen=True, slots=True)
class GatewayState:
    """What the backend knows of a home hub: its last liveness status and its last bundle.

    A gateway seen only through its bundles (no status message yet, or an HTTP uplink)
    has ``status``, ``status_at`` and ``updated_at`` None.
    """

    id: str
    status: GatewayStatus | None
    status_at: datetime | None
    """The time in the status message (the gateway's clock); orders statuses."""
    updated_at: datetime | None
    """When the backend received that status."""
    queued: int | None = None
    """Readings waiting in the hub's outbox, as its status reported (None: not reported)."""
    dropped: Mapping[str, int] = field(default_factory=dict)
    """Readings the hub's outbox dropped over its life, by reason (``thinned``, ``refused``)."""
    last_bundle_at: datetime | None = None
    """When ingest last committed a bundle from it (stored or quarantined)."""

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in GATEWAY_STATUSES:
            raise ValueError(f"gateway status {self.status!r} is not online or offline")
        if (self.status is None) != (self.status_at is None):
            raise ValueError("a gateway status and its time go together")
        if self.queued is not None and self.queued < 0:
            raise ValueError(f"queued {self.queued} is negative")


@dataclass(frozen=True, slots=True)
class StoredObservation:
    """One Observation as stored: the flattened columns plus the FHIR document."""

    identifier: str
    patient: str
    device: str
    kind: str
    at: datetime
    value: float | None
    unit: str | None
    components: Mapping[str, float]
    resource: bytes
    """The Observation JSON exactly as received (UTF-8)."""
    received_at: datetime
    gateway: str | None = None


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    """Input that was refused, kept with its machine-readable reason."""

    received_at: datetime
    source: str
    """Where it came from: ``mqtt:<topic>``, ``http:/fhir/Bundle``, ``gateway:<device>``..."""
    reason_code: str
    reason: str
    payload: bytes
    id: int | None = None
    released_at: datetime | None = None
    """When a re-ingest stored it; the record is kept as evidence (None: still held)."""
    retried_at: datetime | None = None
    """When it was last re-ingested and refused again (its reason is then the new one)."""


@dataclass(frozen=True, slots=True)
class ObservationQuery:
    """Which observations a search wants: one patient, optionally some kinds and a time range.

    ``start`` and ``end`` bound ``at``; each bound is inclusive or exclusive as flagged.
    """

    patient: str
    kinds: tuple[str, ...] = ()
    """Measurement kinds to match (any of them); empty: every kind."""
    start: datetime | None = None
    start_inclusive: bool = True
    end: datetime | None = None
    end_inclusive: bool = False


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the append-only audit trail: who did what to which data, and the outcome.

    General on purpose (reads through the FHIR API, quarantine re-ingest, nurse actions):
    ``action`` and ``outcome`` are short words (``read``, ``search``, ``reingest``;
    ``success``, ``refused``, ``not-found``, ``invalid``, ``error``), ``resource`` a FHIR-style
    relative reference or query (``Observation/<id>``, ``Observation?patient=p-1``).
    """

    at: datetime
    principal: str
    """Who: the authenticated principal's name, or ``anonymous`` when none was established."""
    action: str
    outcome: str
    patient: str | None = None
    resource: str | None = None
    remote: str | None = None
    """The client's network address, when there is one."""
    detail: str | None = None
    """Why (a refusal's reason) or how much (``3 entries``); never reading values."""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: a rule firing for a patient, with its lifecycle times."""

    patient: str
    rule: str
    kind: str
    severity: Severity
    opened_at: datetime
    message: str
    observations: tuple[str, ...] = ()
    status: AlertStatus = "open"
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    updated_at: datetime | None = None
    id: int | None = None


@runtime_checkable
class Store(AlertLifecycleStore, CarePlanStore, AccessStore, ChartStore, Protocol):
    """What every store offers. Writes are idempotent on the reading identifier.

    The alert lifecycle, care-plan and access parts are declared in
    :mod:`wardwatch.store_alerts`, :mod:`wardwatch.store_careplans` and
    :mod:`wardwatch.store_access`.
    """

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent)."""

    def close(self) -> None:
        """Release connections."""

    # -- registry ---------------------------------------------------------------
    def upsert_care_team(self, team: CareTeam) -> None:
        """Create or replace a care team."""

    def get_care_team(self, team_id: str) -> CareTeam | None:
        """The care team with this id, if any."""

    def upsert_patient(self, patient: Patient) -> None:
        """Enrol a patient or update their record."""

    def get_patient(self, patient_id: str) -> Patient | None:
        """The patient with this id, if enrolled."""

    def list_patients(self) -> list[Patient]:
        """Every enrolled patient, ordered by id."""

    def pair_device(self, device: str, patient: str) -> None:
        """Record that ``device`` measures ``patient`` (replaces an earlier pairing)."""

    def device_patient(self, device: str) -> str | None:
        """The patient a device is paired to, if any."""

    # -- gateways -------------------------------------------------------------------
    def record_gateway_status(self, state: GatewayState) -> bool:
        """Store a gateway's status (``status``, ``status_at``, ``updated_at``, ``queued``,
        ``dropped``; ``last_bundle_at`` is ignored; ``status`` must be set, ValueError
        otherwise) unless a newer one is stored: a status
        whose ``status_at`` is older than the stored one changes nothing (retained messages
        come again on reconnect, replicas race). Return whether it was recorded."""

    def note_gateway_bundle(self, gateway: str, at: datetime) -> None:
        """Record that a bundle from ``gateway`` was committed at ``at`` (never moves back)."""

    def get_gateway(self, gateway: str) -> GatewayState | None:
        """What is known of this gateway, if anything."""

    def list_gateways(self) -> list[GatewayState]:
        """Every gateway known, ordered by id."""

    # -- observations -------------------------------------------------------------
    def write_observations(self, rows: Sequence[StoredObservation]) -> int:
        """Store rows in one transaction; return how many were new (duplicates ignored)."""

    def get_observation(self, identifier: str) -> StoredObservation | None:
        """One stored observation by its reading identifier."""

    def observations(
        self,
        patient: str,
        kind: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> list[StoredObservation]:
        """A patient's observations in time order, optionally of one kind in [start, end)."""

    def count_observations(self) -> int:
        """How many observations are stored."""

    def search_observations(
        self,
        query: ObservationQuery,
        *,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[StoredObservation]:
        """One page of matches ordered by (``at``, identifier), after the ``after`` cursor."""

    def count_matching(self, query: ObservationQuery) -> int:
        """How many observations match ``query`` (for a search's ``total``)."""

    # -- quarantine ---------------------------------------------------------------
    def quarantine(self, items: Sequence[QuarantineItem]) -> None:
        """Keep refused input with its reason."""

    def list_quarantine(
        self,
        *,
        state: QuarantineState | None = None,
        reason_code: str | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[QuarantineItem]:
        """Quarantined items, oldest first, optionally only held/released, of one reason or ids."""

    def release_quarantine(self, ids: Sequence[int], at: datetime) -> int:
        """Mark held items as released at ``at`` (kept, not deleted); return how many were."""

    def requarantine(self, item_id: int, reason_code: str, reason: str, at: datetime) -> None:
        """Record that a held item was re-ingested at ``at`` and refused again, and why."""

    # -- audit --------------------------------------------------------------------
    def record_audit(self, event: AuditEvent) -> AuditEvent:
        """Append an audit event (never updated or deleted); return it with its id."""

    def list_audit(
        self,
        *,
        patient: str | None = None,
        principal: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Audit events, oldest first, optionally filtered (``since`` inclusive)."""

    # -- alerts -------------------------------------------------------------------
    def insert_alert(self, alert: Alert) -> Alert:
        """Store a new alert; return it with its id."""

    def update_alert(self, alert: Alert) -> None:
        """Replace the stored alert with the same id."""

    def find_open_alert(self, patient: str, rule: str) -> Alert | None:
        """The alert of this patient and rule that is not resolved, if any."""

    def list_alerts(
        self, patient: str | None = None, status: AlertStatus | None = None
    ) -> list[Alert]:
        """Alerts, oldest first, optionally filtered."""
