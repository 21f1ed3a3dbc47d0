"""The ingest pipeline: parse, validate, store, quarantine — transport-independent.

MQTT and HTTP receivers hand it raw bytes; it never raises on bad input (bad input is
quarantined with its reason), only on store failure, in which case nothing was acknowledged
and the gateway sends the bundle again.

Two steps, so that a receiver can overlap them: :meth:`IngestPipeline.prepare` parses and
validates a batch of bundles (CPU only; registry lookups are cached) and
:meth:`IngestPipeline.commit` writes it (quarantine, then observations, then the
``on_stored`` hooks). Validation takes :func:`ingest.validation.lean_row` first and the
reference path (:func:`wardwatch.fhir.facts_from_observation` +
:func:`ingest.validation.validate`) for anything it does not accept, so a refusal always
names its rule.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from ingest.errors import ValidationError
from ingest.validation import Registry, lean_row, validate
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
#: Largest payload ingested (bytes). A gateway bundle of 200 Observations is ~300 kB; a
#: larger payload is quarantined whole (``too-large``) instead of being parsed.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
#: Content types a bundle may declare (MQTT v5 content type; none declared is accepted).
BUNDLE_CONTENT_TYPES = frozenset({"application/fhir+json", "application/json"})


def tune_gc_for_ingest(young_threshold: int = 50_000) -> None:
    """Process-wide tuning for a dedicated ingest worker process (not for libraries or tests).

    Parsing a batch allocates ~40 containers per Observation; with the default threshold
    (700) the cyclic collector runs every few observations and, counting its older
    generations, cost about as much as parsing itself (~10 us per Observation measured).
    Parsed JSON has no reference cycles, so reference counting frees it anyway: freeze
    what is alive now (modules, configuration) out of the collector's view and collect
    young objects less often.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


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


class Submission(NamedTuple):
    """One received bundle: raw bytes, where it came from, the sending gateway if known and
    the content type it declared (MQTT v5 property / HTTP header), if any."""

    payload: bytes
    source: str
    gateway: str | None = None
    content_type: str | None = None


@dataclass(slots=True)
class PreparedBundle:
    """One bundle after :meth:`IngestPipeline.prepare`: what to store, what to quarantine."""

    submission: Submission
    received_at: datetime
    result: IngestResult
    rows: list[StoredObservation] = field(default_factory=list)
    refused: list[QuarantineItem] = field(default_factory=list)
    quarantined: bool = False
    """``refused`` is already in the store (a retried commit does not quarantine it twice)."""


@dataclass(slots=True)
class PreparedBatch:
    """Bundles validated together, to be committed in one store transaction."""

    bundles: list[PreparedBundle]

    @property
    def observations(self) -> int:
        """Rows to store over the batch."""
        return sum(len(b.rows) for b in self.bundles)


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


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class IngestPipeline:
    """Validate and store FHIR Observations; quarantine what is refused."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = utcnow,
        on_stored: Sequence[StoredHook] = (),
        registry_ttl: float = REGISTRY_TTL,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_stored: list[StoredHook] = list(on_stored)
        self.max_payload_bytes = max_payload_bytes
        self.lookups = CachedRegistry(store, ttl=registry_ttl)
        self.registry = Registry(
            patient_enrolled=self.lookups.patient_enrolled,
            device_patient=self.lookups.device_patient,
        )

    def ingest_bundle(
        self,
        payload: bytes,
        *,
        source: str,
        gateway: str | None = None,
        content_type: str | None = None,
    ) -> IngestResult:
        """Ingest a FHIR batch Bundle of Observations (as raw JSON bytes)."""
        batch = self.prepare([Submission(payload, source, gateway, content_type)])
        [prepared] = batch.bundles
        result = prepared.result
        result.stored = self.commit(batch).stored
        result.duplicates = len({r.identifier for r in prepared.rows}) - result.stored
        return result

    def ingest_bundles(
        self, messages: Sequence[Submission | tuple[bytes, str, str | None]]
    ) -> BatchResult:
        """Ingest several bundles ``(payload, source, gateway[, content type])`` in one store
        transaction: :meth:`prepare` then :meth:`commit`.

        Each bundle is checked on its own (its refusals quarantined with its source), then
        every accepted observation of the batch is written with one
        ``write_observations`` call: a failure stores none of them (the caller must then
        confirm none), success stores all. One commit per batch instead of per bundle.
        """
        return self.commit(self.prepare(messages))

    def prepare(
        self, messages: Sequence[Submission | tuple[bytes, str, str | None]]
    ) -> PreparedBatch:
        """Parse and validate bundles; write nothing (registry lookups only read)."""
        now = self.clock()
        bundles: list[PreparedBundle] = []
        for message in messages:
            sub = message if isinstance(message, Submission) else Submission(*message)
            prepared = PreparedBundle(sub, now, IngestResult())
            bundles.append(prepared)
            resources = self._parse_bundle(prepared)
            if resources is not None:
                self._check(resources, prepared)
        return PreparedBatch(bundles)

    def commit(self, batch: PreparedBatch) -> BatchResult:
        """Quarantine what was refused, write what was accepted (one transaction), then run
        the ``on_stored`` hooks. Raises the store's error if either write fails; a retry
        does not quarantine anything twice and stores nothing twice."""
        result = BatchResult(results=[b.result for b in batch.bundles])
        refused = [item for b in batch.bundles if not b.quarantined for item in b.refused]
        if refused:
            log.warning(
                "quarantined %d items in a batch of %d bundles", len(refused), len(batch.bundles)
            )
            self.store.quarantine(refused)
        for b in batch.bundles:
            b.quarantined = True
        rows = [row for b in batch.bundles for row in b.rows]
        if rows:
            result.stored = self.store.write_observations(rows)
            result.duplicates = len(rows) - result.stored
            log.info(
                "stored %d new observations (%d duplicates) from %d bundles",
                result.stored,
                result.duplicates,
                len(batch.bundles),
            )
            self._notify(rows)
        return result

    def reject(self, bundle: PreparedBundle, code: str, reason: str) -> None:
        """Quarantine a whole bundle that the store refuses to take (a commit of it alone
        failed while the store answers): its payload is kept with ``code`` and ``reason``,
        and its acknowledgement lists every entry as rejected."""
        sub = bundle.submission
        item = QuarantineItem(bundle.received_at, sub.source, code, reason, sub.payload)
        self.store.quarantine([item])
        bundle.quarantined = True
        log.warning("quarantined a bundle from %s: %s", sub.source, code)
        bundle.result.rejected.extend((r.identifier, code, reason) for r in bundle.rows)
        accepted = {r.identifier for r in bundle.rows}
        bundle.result.accepted = [i for i in bundle.result.accepted if i not in accepted]
        bundle.rows = []

    def _parse_bundle(self, prepared: PreparedBundle) -> Sequence[Any] | None:
        """The bundle's Observation resources, or None once the whole payload is refused."""
        payload, _source, _gateway, content_type = prepared.submission
        if len(payload) > self.max_payload_bytes:
            self._refuse_whole(
                prepared,
                "too-large",
                f"payload of {len(payload)} bytes exceeds {self.max_payload_bytes} bytes",
            )
            return None
        if content_type is not None and _media_type(content_type) not in BUNDLE_CONTENT_TYPES:
            self._refuse_whole(
                prepared,
                "unsupported-content-type",
                f"content type {content_type[:100]!r} is not application/fhir+json",
            )
            return None
        try:
            doc = orjson.loads(payload)
            if not isinstance(doc, dict):
                raise ContractError("payload is not a JSON object")
            resources = observations_in_bundle(doc)
            bundle_id = doc.get("id")
            prepared.result.bundle_id = bundle_id if isinstance(bundle_id, str) else None
        except orjson.JSONDecodeError as exc:
            self._refuse_whole(prepared, "malformed-json", f"not JSON: {exc}")
            return None
        except ContractError as exc:
            self._refuse_whole(prepared, exc.code, str(exc))
            return None
        return resources

    def _refuse_whole(self, prepared: PreparedBundle, code: str, reason: str) -> None:
        sub = prepared.submission
        log.warning("quarantined input from %s: %s", sub.source, code)
        prepared.refused.append(
            QuarantineItem(prepared.received_at, sub.source, code, reason, sub.payload)
        )
        prepared.result.rejected.append((None, code, reason))

    def ingest_observation(self, payload: bytes, *, source: str) -> IngestResult:
        """Ingest a single FHIR Observation (as raw JSON bytes)."""
        now = self.clock()
        prepared = PreparedBundle(Submission(payload, source), now, IngestResult())
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self._refuse_whole(prepared, "malformed-json", f"not JSON: {exc}")
        else:
            self._check([doc], prepared)
        result = prepared.result
        result.stored = self.commit(PreparedBatch([prepared])).stored
        result.duplicates = len({r.identifier for r in prepared.rows}) - result.stored
        return result

    def _check(self, resources: Sequence[Any], prepared: PreparedBundle) -> None:
        """Validate each resource into ``prepared``: rows to store, items to quarantine."""
        sub, now, result = prepared.submission, prepared.received_at, prepared.result
        registry = self.registry
        rows = prepared.rows
        refused = 0
        for n, resource in enumerate(resources):
            row = lean_row(resource, gateway=sub.gateway, now=now, registry=registry)
            if row is None:
                row = self._check_fully(n, resource, prepared)
                if row is None:
                    refused += 1
                    continue
            rows.append(row)
            result.accepted.append(row.identifier)
        if refused:
            log.warning(
                "quarantined %d of %d observations from %s", refused, len(resources), sub.source
            )

    def _check_fully(
        self, n: int, resource: Any, prepared: PreparedBundle
    ) -> StoredObservation | None:
        """The reference path: the row, or None once the refusal is recorded with its rule."""
        sub, now = prepared.submission, prepared.received_at
        raw = orjson.dumps(resource)
        ident: str | None = None
        try:
            if not isinstance(resource, dict):
                raise ContractError(f"entry {n} has no resource object")
            facts = facts_from_observation(resource)
            ident = facts.identifier
            if sub.gateway is not None and facts.gateway not in (None, sub.gateway):
                raise ValidationError(
                    "wrong-gateway",
                    f"observation names gateway {facts.gateway}, sent by {sub.gateway}",
                )
            validate(facts, now=now, registry=self.registry)
            return stored_row(facts, raw, now)
        except (ContractError, ValidationError) as exc:
            code, reason = exc.code, str(exc)
        except Exception as exc:
            # a mapping bug (e.g. on a malformed contained resource) must not crash the
            # worker: the input is still refused with a reason, and the worker goes on
            log.warning("unexpected %s checking an entry from %s", type(exc).__name__, sub.source)
            code, reason = "bad-observation", f"cannot be read: {type(exc).__name__}: {exc}"
        prepared.refused.append(QuarantineItem(now, sub.source, code, reason, raw))
        prepared.result.rejected.append((ident, code, reason))
        return None

    def _notify(self, rows: Sequence[StoredObservation]) -> None:
        for hook in self.on_stored:
            try:
                hook(rows)
            except Exception:
                # a failing consumer must not undo or block what is already committed
                log.exception("on_stored hook failed")
