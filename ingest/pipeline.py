"""The ingest pipeline: parse, validate, store, quarantine — transport-independent.

MQTT and HTTP receivers hand it raw bytes; it never raises on bad input (bad input is
quarantined with its reason), only on store failure, in which case nothing was acknowledged
and the gateway sends the bundle again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest.errors import ValidationError
from ingest.validation import Registry, validate
from wardwatch.errors import ContractError
from wardwatch.fhir import ObservationFacts, facts_from_observation, observations_in_bundle
from wardwatch.store import QuarantineItem, Store, StoredObservation
from wardwatch.units import convert
from wardwatch.vocabulary import kind as lookup_kind

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
StoredHook = Callable[[Sequence[StoredObservation]], None]
#: How long a positive enrolment/pairing lookup is reused (seconds). Short: a re-paired
#: device is seen within this delay; a refusal (unknown patient or device) is never cached.
REGISTRY_TTL = 5.0


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(slots=True)
class IngestResult:
    """What became of one submitted bundle or observation."""

    bundle_id: str | None = None
    stored: int = 0
    """Observations newly stored."""
    duplicates: int = 0
    """Observations already stored before (same identifier)."""
    accepted: list[str] = field(default_factory=list)
    """Identifiers now safely in the store (new or duplicate)."""
    rejected: list[tuple[str | None, str, str]] = field(default_factory=list)
    """(identifier if known, reason code, reason) of quarantined entries."""

    def ack(self) -> dict[str, Any]:
        """The acknowledgement document sent back to the gateway."""
        return {
            "bundle": self.bundle_id,
            "accepted": self.accepted,
            "rejected": [
                {"identifier": i, "code": code, "reason": reason}
                for i, code, reason in self.rejected
            ],
        }


def _canonical(kind: str, value: float | None, unit: str | None) -> tuple[float | None, str | None]:
    spec = lookup_kind(kind)
    if value is None or unit is None or spec.canonical_unit is None:
        return value, unit
    return convert(value, unit, spec.canonical_unit), spec.canonical_unit


def stored_row(
    facts: ObservationFacts, resource: bytes, received_at: datetime
) -> StoredObservation:
    """The store row for a validated observation: values in the kind's canonical unit."""
    r = facts.reading
    value, unit = _canonical(r.kind, r.value, r.unit)
    components: dict[str, float] = {}
    for c in r.components:
        cv, _ = _canonical(c.kind, c.value, c.unit)
        if cv is not None:
            components[c.kind] = cv
    return StoredObservation(
        identifier=facts.identifier,
        patient=facts.patient,
        device=facts.device,
        kind=r.kind,
        at=r.at_utc(),
        value=value,
        unit=unit,
        components=components,
        resource=resource,
        received_at=received_at,
        gateway=facts.gateway,
    )


@dataclass(slots=True)
class BatchResult:
    """What became of several bundles ingested in one store transaction."""

    results: list[IngestResult]
    """One per submitted bundle, in order (their ``stored``/``duplicates`` stay 0)."""
    stored: int = 0
    """Observations newly stored, over the whole batch."""
    duplicates: int = 0
    """Observations of the batch that were already stored (or repeated within it)."""


class CachedRegistry:
    """Enrolment and pairing lookups through the store, with positive answers reused for
    ``ttl`` seconds (one store round trip per patient/device and period, not two per
    observation). Negative answers are not cached, so a newly enrolled patient or paired
    device is accepted at once; ``ttl=0`` disables the cache."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = REGISTRY_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._patients: dict[str, float] = {}
        self._devices: dict[str, tuple[str, float]] = {}

    def patient_enrolled(self, patient: str) -> bool:
        """Is ``patient`` enrolled (cached when it is)."""
        now = self._monotonic()
        expires = self._patients.get(patient)
        if expires is not None and now < expires:
            return True
        enrolled = self.store.get_patient(patient) is not None
        if enrolled and self.ttl > 0:
            with self._lock:
                self._patients[patient] = now + self.ttl
        return enrolled

    def device_patient(self, device: str) -> str | None:
        """The patient ``device`` is paired to (cached when there is one)."""
        now = self._monotonic()
        hit = self._devices.get(device)
        if hit is not None and now < hit[1]:
            return hit[0]
        patient = self.store.device_patient(device)
        if patient is not None and self.ttl > 0:
            with self._lock:
                self._devices[device] = (patient, now + self.ttl)
        return patient

    def clear(self) -> None:
        """Forget every cached answer."""
        with self._lock:
            self._patients.clear()
            self._devices.clear()


class IngestPipeline:
    """Validate and store FHIR Observations; quarantine what is refused."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = utcnow,
        on_stored: Sequence[StoredHook] = (),
        registry_ttl: float = REGISTRY_TTL,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_stored: list[StoredHook] = list(on_stored)
        self.lookups = CachedRegistry(store, ttl=registry_ttl)
        self.registry = Registry(
            patient_enrolled=self.lookups.patient_enrolled,
            device_patient=self.lookups.device_patient,
        )

    def ingest_bundle(
        self, payload: bytes, *, source: str, gateway: str | None = None
    ) -> IngestResult:
        """Ingest a FHIR batch Bundle of Observations (as raw JSON bytes)."""
        now = self.clock()
        result = IngestResult()
        resources = self._parse_bundle(payload, source=source, now=now, result=result)
        if resources is not None:
            self._ingest_resources(
                resources, source=source, gateway=gateway, now=now, result=result
            )
        return result

    def ingest_bundles(self, messages: Sequence[tuple[bytes, str, str | None]]) -> BatchResult:
        """Ingest several bundles ``(payload, source, gateway)`` in one store transaction.

        Each bundle is checked on its own (its refusals quarantined with its source), then
        every accepted observation of the batch is written with one
        ``write_observations`` call: a failure stores none of them (the caller must then
        confirm none), success stores all. One commit per batch instead of per bundle.
        """
        now = self.clock()
        batch = BatchResult(results=[])
        rows: list[StoredObservation] = []
        refused: list[QuarantineItem] = []
        for payload, source, gateway in messages:
            result = IngestResult()
            batch.results.append(result)
            resources = self._parse_bundle(payload, source=source, now=now, result=result)
            if resources is None:
                continue
            ok, bad = self._check(resources, source=source, gateway=gateway, now=now, result=result)
            rows.extend(ok)
            refused.extend(bad)
            result.accepted.extend(r.identifier for r in ok)
        if refused:
            log.warning("quarantined %d observations in a batch of %d", len(refused), len(messages))
            self.store.quarantine(refused)
        if rows:
            batch.stored = self.store.write_observations(rows)
            batch.duplicates = len(rows) - batch.stored
            log.info(
                "stored %d new observations (%d duplicates) from %d bundles",
                batch.stored,
                batch.duplicates,
                len(messages),
            )
            self._notify(rows)
        return batch

    def _parse_bundle(
        self, payload: bytes, *, source: str, now: datetime, result: IngestResult
    ) -> Sequence[Any] | None:
        """The bundle's Observation resources, or None once the whole payload is quarantined."""
        try:
            doc = orjson.loads(payload)
            if not isinstance(doc, dict):
                raise ContractError("payload is not a JSON object")
            resources = observations_in_bundle(doc)
            bundle_id = doc.get("id")
            result.bundle_id = bundle_id if isinstance(bundle_id, str) else None
        except orjson.JSONDecodeError as exc:
            self._quarantine_whole(
                payload, source, now, "malformed-json", f"not JSON: {exc}", result
            )
            return None
        except ContractError as exc:
            self._quarantine_whole(payload, source, now, exc.code, str(exc), result)
            return None
        return resources

    def ingest_observation(self, payload: bytes, *, source: str) -> IngestResult:
        """Ingest a single FHIR Observation (as raw JSON bytes)."""
        now = self.clock()
        result = IngestResult()
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self._quarantine_whole(
                payload, source, now, "malformed-json", f"not JSON: {exc}", result
            )
            return result
        self._ingest_resources([doc], source=source, gateway=None, now=now, result=result)
        return result

    def _quarantine_whole(
        self,
        payload: bytes,
        source: str,
        now: datetime,
        code: str,
        reason: str,
        result: IngestResult,
    ) -> None:
        log.warning("quarantined input from %s: %s", source, code)
        self.store.quarantine([QuarantineItem(now, source, code, reason, payload)])
        result.rejected.append((None, code, reason))

    def _check(
        self,
        resources: Sequence[Any],
        *,
        source: str,
        gateway: str | None,
        now: datetime,
        result: IngestResult,
    ) -> tuple[list[StoredObservation], list[QuarantineItem]]:
        """Validate each resource: the rows to store and the items to quarantine."""
        rows: list[StoredObservation] = []
        refused: list[QuarantineItem] = []
        for n, resource in enumerate(resources):
            raw = orjson.dumps(resource)
            ident: str | None = None
            try:
                if not isinstance(resource, dict):
                    raise ContractError(f"entry {n} has no resource object")
                facts = facts_from_observation(resource)
                ident = facts.identifier
                if gateway is not None and facts.gateway not in (None, gateway):
                    raise ValidationError(
                        "wrong-gateway",
                        f"observation names gateway {facts.gateway}, sent by {gateway}",
                    )
                validate(facts, now=now, registry=self.registry)
                rows.append(stored_row(facts, raw, now))
            except (ContractError, ValidationError) as exc:
                refused.append(QuarantineItem(now, source, exc.code, str(exc), raw))
                result.rejected.append((ident, exc.code, str(exc)))
        if refused:
            log.warning(
                "quarantined %d of %d observations from %s", len(refused), len(resources), source
            )
        return rows, refused

    def _ingest_resources(
        self,
        resources: Sequence[Any],
        *,
        source: str,
        gateway: str | None,
        now: datetime,
        result: IngestResult,
    ) -> None:
        rows, refused = self._check(
            resources, source=source, gateway=gateway, now=now, result=result
        )
        if refused:
            self.store.quarantine(refused)
        if rows:
            new = self.store.write_observations(rows)
            result.stored += new
            result.duplicates += len({r.identifier for r in rows}) - new
            result.accepted.extend(r.identifier for r in rows)
            log.info(
                "stored %d new observations (%d duplicates) from %s", new, result.duplicates, source
            )
            self._notify(rows)

    def _notify(self, rows: Sequence[StoredObservation]) -> None:
        for hook in self.on_stored:
            try:
                hook(rows)
            except Exception:
                # a failing consumer must not undo or block what is already committed
                log.exception("on_stored hook failed")
