"""Re-ingest quarantined input after the cause was fixed (patient enrolled, device paired...).

Each held item goes through the real :class:`~ingest.pipeline.IngestPipeline` again, judged
as of when it was first received (its ``received_at`` is the pipeline's clock, so "in the
future" still means relative to its arrival). An item whose observations are now all
stored is marked released, never deleted; one refused again stays held with the new reason.
Every attempt is appended to the audit trail (action ``reingest``), which also keeps the
reason an item had before.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from ingest.pipeline import IngestPipeline, StoredHook, utcnow
from wardwatch import topics
from wardwatch.store import AuditEvent, QuarantineItem, Store, StoredObservation

log = logging.getLogger(__name__)


def quarantine_as_json(item: QuarantineItem, *, payload: bool = False) -> dict[str, Any]:
    """One quarantined item as JSON; the payload (patient data) only when asked for."""
    doc: dict[str, Any] = {
        "id": item.id,
        "received_at": item.received_at.isoformat(),
        "source": item.source,
        "reason_code": item.reason_code,
        "reason": item.reason,
        "state": "held" if item.released_at is None else "released",
        "released_at": None if item.released_at is None else item.released_at.isoformat(),
        "retried_at": None if item.retried_at is None else item.retried_at.isoformat(),
        "size": len(item.payload),
    }
    if payload:
        try:
            doc["payload"] = item.payload.decode()
            doc["payload_encoding"] = "utf-8"
        except UnicodeDecodeError:
            doc["payload"] = base64.b64encode(item.payload).decode()
            doc["payload_encoding"] = "base64"
    return doc


class _Capture:
    """The store seen by a re-ingesting pipeline: writes go through, refusals are captured
    (the item they came from is updated instead of being quarantined a second time)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.refused: list[QuarantineItem] = []
        self.written: list[StoredObservation] = []

    def quarantine(self, items: Sequence[QuarantineItem]) -> None:
        self.refused.extend(items)

    def write_observations(self, rows: Sequence[StoredObservation]) -> int:
        new = self.store.write_observations(rows)
        self.written.extend(rows)
        return new

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@dataclass(slots=True)
class ReingestReport:
    """What became of the items re-ingested."""

    released: list[int] = field(default_factory=list)
    held: list[QuarantineItem] = field(default_factory=list)
    """Items refused again, with their new reason."""
    stored: int = 0
    """Observations newly stored."""

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON object (``wardwatch quarantine reingest --json``)."""
        return {
            "released": self.released,
            "held": [
                {"id": i.id, "reason_code": i.reason_code, "reason": i.reason} for i in self.held
            ],
            "stored": self.stored,
        }


def _bundle_payload(item: QuarantineItem) -> bytes:
    """A single refused Observation is re-sent as a one-entry batch (so that the gateway
    check applies as it did for the MQTT bundle it came in); anything else as it is."""
    try:
        doc = orjson.loads(item.payload)
    except orjson.JSONDecodeError:
        return item.payload
    if isinstance(doc, dict) and doc.get("resourceType") == "Observation":
        return orjson.dumps(
            {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": doc}]}
        )
    return item.payload


def _fixed(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def reingest(
    store: Store,
    items: Sequence[QuarantineItem],
    *,
    principal: str,
    hooks: Sequence[StoredHook] = (),
    clock: Callable[[], datetime] = utcnow,
) -> ReingestReport:
    """Run held ``items`` through ingest again; release what passes, update what does not."""
    report = ReingestReport()
    for item in items:
        if item.id is None or item.released_at is not None:
            raise ValueError("only held items read from the store can be re-ingested")
        capture = _Capture(store)
        pipeline = IngestPipeline(
            capture,  # a proxy: the other Store methods through __getattr__
            clock=_fixed(item.received_at),
            on_stored=hooks,
            registry_ttl=0,
        )
        gateway = None
        if item.source.startswith("mqtt:"):
            gateway = topics.gateway_of(item.source.removeprefix("mqtt:"))
        result = pipeline.ingest_bundle(_bundle_payload(item), source=item.source, gateway=gateway)
        report.stored += result.stored
        now = clock()
        patients = {r.patient for r in capture.written}
        patient = patients.pop() if len(patients) == 1 else None
        resource = f"Quarantine/{item.id}"
        if result.accepted and not result.rejected:
            store.release_quarantine([item.id], now)
            report.released.append(item.id)
            outcome, detail = "success", f"released (was {item.reason_code})"
        else:
            if capture.refused:
                code, reason = capture.refused[0].reason_code, capture.refused[0].reason
            else:
                code, reason = "contract", "the payload holds no observation"
            if len(capture.refused) > 1:
                reason += f" (and {len(capture.refused) - 1} more entries refused)"
            store.requarantine(item.id, code, reason, now)
            report.held.append(
                QuarantineItem(
                    item.received_at,
                    item.source,
                    code,
                    reason,
                    item.payload,
                    id=item.id,
                    retried_at=now,
                )
            )
            outcome, detail = "refused", f"{item.reason_code} -> {code}"
        store.record_audit(
            AuditEvent(
                at=now,
                principal=principal,
                action="reingest",
                outcome=outcome,
                patient=patient,
                resource=resource,
                detail=detail,
            )
        )
    log.info(
        "re-ingested %d quarantined items: %d released, %d still held",
        len(items),
        len(report.released),
        len(report.held),
    )
    return report
