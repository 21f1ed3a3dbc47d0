"""The ingest pipeline: parse, validate, store, quarantine — transport-independent.

MQTT and HTTP receivers hand it raw bytes; it never raises on bad input (bad input is
quarantined with its reason), only on store failure, in which case nothing was acknowledged
and the gateway sends the bundle again.
"""

from __future__ import annotations

import logging
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


class IngestPipeline:
    """Validate and store FHIR Observations; quarantine what is refused."""

    def __init__(
        self, store: Store, *, clock: Clock = utcnow, on_stored: Sequence[StoredHook] = ()
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_stored: list[StoredHook] = list(on_stored)
        self.registry = Registry(
            patient_enrolled=lambda p: store.get_patient(p) is not None,
            device_patient=store.device_patient,
        )

    def ingest_bundle(
        self, payload: bytes, *, source: str, gateway: str | None = None
    ) -> IngestResult:
        """Ingest a FHIR batch Bundle of Observations (as raw JSON bytes)."""
        now = self.clock()
        result = IngestResult()
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
            return result
        except ContractError as exc:
            self._quarantine_whole(payload, source, now, exc.code, str(exc), result)
            return result
        self._ingest_resources(resources, source=source, gateway=gateway, now=now, result=result)
        return result

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

    def _ingest_resources(
        self,
        resources: Sequence[Any],
        *,
        source: str,
        gateway: str | None,
        now: datetime,
        result: IngestResult,
    ) -> None:
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
            self.store.quarantine(refused)
        if rows:
            new = self.store.write_observations(rows)
            result.stored += new
            result.duplicates += len({r.identifier for r in rows}) - new
            result.accepted.extend(r.identifier for r in rows)
            log.info(
                "stored %d new observations (%d duplicates) from %s", new, result.duplicates, source
            )
            for hook in self.on_stored:
                try:
                    hook(rows)
                except Exception:
                    # a failing consumer must not undo or block what is already committed
                    log.exception("on_stored hook failed")
