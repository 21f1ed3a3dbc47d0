"""Replay a feed into a store: ingest and alerting in-process, on the feed's own clock.

This is the ``store`` path of ``wardwatch sim replay``; the paths through the real chain
(``http``, ``ble``, ``mqtt``) are in :mod:`firmware_sim.feeds.paths` and reuse the
:class:`FeedReplayer`'s pipeline, alert engine and enrolment.

Each reading becomes an Observation (gateway device ``sim-replay``), batched into FHIR
batch Bundles and handed to :class:`ingest.pipeline.IngestPipeline`: the same validation,
store and quarantine path as the HTTP and MQTT front doors. The alert engine runs as the
pipeline's ``on_stored`` hook. Both clocks read the time of the event being replayed, so a
72-hour feed replays in seconds with the alerts real time would give.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from alerting.engine import AlertEngine
from alerting.notify import Notifier, RecordingNotifier
from firmware_sim.feeds.format import FeedEvent, format_event
from gateway.decoders import Decoded, decode_characteristic, decode_current_time
from gateway.errors import DecodeError
from gateway.timekeeping import ClockSample, SessionClock, UntrustedTimeError, estimate_offset
from ingest.pipeline import IngestPipeline, IngestResult
from wardwatch.errors import ContractError
from wardwatch.fhir import JSON, bundle, observation_from_reading
from wardwatch.reading import Component, Reading
from wardwatch.store import Patient, QuarantineItem, Store, StoredObservation

log = logging.getLogger(__name__)

GATEWAY = "sim-replay"
"""The gateway device named on replayed Observations."""
SOURCE = "sim-replay"
_UPLINK_TOPIC = re.compile(r"wardwatch/v1/gw/([^/]+)/obs")
_CURRENT_TIME = "2A2B"

Sleep = Callable[[float], None]
Submit = Callable[[bytes, str, str], IngestResult]
"""Hands one bundle (payload, source, gateway) to ingest and returns what became of it."""


@dataclass(slots=True)
class ReplayResult:
    """What a replay did."""

    path: str = "store"
    events: int = 0
    readings: int = 0
    """Readings sent to ingest (a raw BLE value may give several; systolic+diastolic one)."""
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    """Observations ingest quarantined, plus raw values that could not be decoded."""
    device_events: int = 0
    not_sent: int = 0
    """Events the path cannot carry (quarantined ``unsupported-on-path``, also in rejected)."""
    enrolled: list[str] = field(default_factory=list)
    paired: list[str] = field(default_factory=list)
    alerts_changed: int = 0

    def as_json(self) -> dict[str, object]:
        """The result as a JSON-compatible object."""
        return {
            "path": self.path,
            "events": self.events,
            "readings": self.readings,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "device_events": self.device_events,
            "not_sent": self.not_sent,
            "enrolled": self.enrolled,
            "paired": self.paired,
            "alerts_changed": self.alerts_changed,
        }


class FeedClock:
    """The replay's clock: the time of the event being replayed (set by the replayer)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now: datetime | None = now

    def __call__(self) -> datetime:
        assert self.now is not None, "clock read before the first event"
        return self.now

    def set(self, at: datetime) -> None:
        """Show ``at`` from now on."""
        self.now = at

    def advance(self, at: datetime) -> None:
        """Move on to ``at`` unless the clock is already later."""
        if self.now is None or at > self.now:
            self.now = at


class FeedReplayer:
    """Replays feed events into one store; reusable across feeds on the same store."""

    def __init__(
        self,
        store: Store,
        *,
        notifier: Notifier | None = None,
        batch_size: int = 200,
        speed: float | None = None,
        sleep: Sleep = time.sleep,
        clock: FeedClock | None = None,
        submit: Submit | None = None,
    ) -> None:
        """``clock``: the feed clock to share with other parts (a new one by default);
        ``submit``: where bundles go (default: straight into the ingest pipeline)."""
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (None: as fast as possible)")
        self.store = store
        self.batch_size = batch_size
        self.speed = speed
        self.sleep = sleep
        self.clock = clock if clock is not None else FeedClock()
        self.submit: Submit = submit if submit is not None else self._ingest
        self.notifier = notifier or RecordingNotifier()
        self.engine = AlertEngine(store, self.notifier, clock=self.clock)
        self.pipeline = IngestPipeline(store, clock=self.clock, on_stored=[self._on_stored])
        self._batch: list[JSON] = []
        self._known_patients: set[str] = set()
        self._known_devices: set[str] = set()
        self._result = ReplayResult()
        self._pending_bp: dict[tuple[str, str, datetime], tuple[FeedEvent, Reading]] = {}
        self._clocks: dict[str, SessionClock] = {}
        """Per device: its clock as last read (a raw Current Time value), as the hub does."""

    def _on_stored(self, rows: Sequence[StoredObservation]) -> None:
        self._result.alerts_changed += len(self.engine.process(rows))

    def replay(self, events: Iterable[FeedEvent]) -> ReplayResult:
        """Replay ``events`` (in feed order) and return what happened."""
        self._result = ReplayResult()
        previous: datetime | None = None
        for event in events:
            self._result.events += 1
            if self.speed is not None and previous is not None:
                gap = (event.at - previous).total_seconds() / self.speed
                if gap > 0:
                    self._flush()
                    self.sleep(gap)
            previous = event.at
            self._emit_pending(before=event.at)
            self.clock.advance(event.at)
            self._handle(event)
        self._emit_pending(before=None)
        self._flush()
        return self._result

    # -- events -------------------------------------------------------------------------

    def _handle(self, event: FeedEvent) -> None:
        if event.reading is not None:
            assert event.patient is not None  # FeedEvent guarantees it
            self._enrol(event.patient, event.device)
            self._reading(event, event.reading)
        elif event.ble is not None:
            patient = event.patient or self.store.device_patient(event.device)
            if patient is None:
                self._quarantine(event, "unknown-patient", "raw BLE value of an unpaired device")
                return
            self._enrol(patient, event.device)
            try:
                decoded = self._decode_ble(event)
            except UntrustedTimeError as exc:
                self._quarantine(event, exc.code, str(exc))
                return
            except (DecodeError, ContractError) as exc:
                self._quarantine(event, "decode-error", str(exc))
                return
            for reading in decoded.readings:
                self._add(patient, event.device, reading)
        elif event.care_plan is not None:
            assert event.patient is not None  # FeedEvent guarantees it
            self._set_care_plan(event.patient, event.care_plan.thresholds)
        elif event.mqtt is not None:
            match = _UPLINK_TOPIC.fullmatch(event.mqtt.topic)
            if match is None:
                self._quarantine(event, "unsupported-topic", f"topic {event.mqtt.topic}")
                return
            self._flush()
            self._count(self.submit(event.mqtt.payload, f"mqtt:{event.mqtt.topic}", match[1]))
        else:
            self._result.device_events += 1
            log.debug("device %s: %s", event.device, event.event)

    def _decode_ble(self, event: FeedEvent) -> Decoded:
        """Decode a raw value; a device's stamps are placed on the hub's timeline as the
        gateway does (``gateway.timekeeping``): a Current Time value read at ``at`` gives
        the device clock's offset, applied to its later time-stamped values."""
        assert event.ble is not None
        decoded = decode_characteristic(
            event.ble.characteristic, event.ble.data, received_at=event.at
        )
        if event.ble.characteristic == _CURRENT_TIME:
            device_time = decode_current_time(event.ble.data).to_datetime(UTC)
            estimate = estimate_offset([ClockSample(device_time, event.at)])
            self._clocks[event.device] = SessionClock(estimate)
            return decoded
        clock = self._clocks.get(event.device)
        return decoded if clock is None else clock.apply(decoded, event.at)

    def _set_care_plan(self, patient: str, thresholds: Mapping[str, float]) -> None:
        """Enrol ``patient`` if new, with these care-plan threshold overrides."""
        self._known_patients.add(patient)
        old = self.store.get_patient(patient)
        if old is None:
            self._result.enrolled.append(patient)
            old = Patient(id=patient, display_name=f"Synthetic {patient}")
        merged = {**old.thresholds, **thresholds}
        self.store.upsert_patient(dataclasses.replace(old, thresholds=merged))

    def _reading(self, event: FeedEvent, reading: Reading) -> None:
        assert event.patient is not None
        if reading.kind not in ("systolic", "diastolic"):
            self._add(event.patient, event.device, reading)
            return
        # A systolic and a diastolic of one device at one time are one cuff measurement:
        # send them as the panel the blood-pressure rules read.
        key = (event.patient, event.device, reading.at)
        other = self._pending_bp.pop(key, None)
        if other is None:
            self._pending_bp[key] = (event, reading)
            return
        _, first = other
        if first.kind == reading.kind:
            self._add(event.patient, event.device, first)
            self._pending_bp[key] = (event, reading)
            return
        parts = sorted((first, reading), key=lambda r: r.kind != "systolic")
        components = tuple(Component(r.kind, r.value, r.unit) for r in parts)
        self._add(
            event.patient,
            event.device,
            Reading(kind="blood_pressure", at=reading.at, components=components),
        )

    def _add(self, patient: str, device: str, reading: Reading) -> None:
        self._batch.append(
            observation_from_reading(reading, patient=patient, device=device, gateway=GATEWAY)
        )
        self._result.readings += 1
        if len(self._batch) >= self.batch_size:
            self._flush()

    def _emit_pending(self, *, before: datetime | None) -> None:
        """Send lone systolic/diastolic readings whose partner can no longer come."""
        for key, (_, reading) in list(self._pending_bp.items()):
            if before is None or key[2] < before:
                del self._pending_bp[key]
                self._add(key[0], key[1], reading)

    def _flush(self) -> None:
        if not self._batch:
            return
        doc = bundle(self._batch, bundle_id=str(uuid.uuid4()))
        self._batch = []
        self._count(self.submit(orjson.dumps(doc), SOURCE, GATEWAY))

    def _ingest(self, payload: bytes, source: str, gateway: str) -> IngestResult:
        return self.pipeline.ingest_bundle(payload, source=source, gateway=gateway)

    def _count(self, result: IngestResult) -> None:
        self._result.stored += result.stored
        self._result.duplicates += result.duplicates
        self._result.rejected += len(result.rejected)

    def quarantine(self, event: FeedEvent, code: str, reason: str) -> None:
        """Keep an event that was not replayed in the store's quarantine, with its reason."""
        self._quarantine(event, code, reason)

    def enrol(self, patient: str, device: str) -> None:
        """Enrol ``patient`` (default care plan) and pair ``device`` to them, if not yet."""
        self._enrol(patient, device)

    def set_care_plan(self, patient: str, thresholds: Mapping[str, float]) -> None:
        """Set ``patient``'s care-plan threshold overrides (enrolling them if new)."""
        self._set_care_plan(patient, thresholds)

    @property
    def result(self) -> ReplayResult:
        """What the replay did so far."""
        return self._result

    def _quarantine(self, event: FeedEvent, code: str, reason: str) -> None:
        self._result.rejected += 1
        self.store.quarantine(
            [
                QuarantineItem(
                    self.clock(),
                    f"{SOURCE}:line {event.line}",
                    code,
                    reason,
                    format_event(event).encode(),
                )
            ]
        )

    def _enrol(self, patient: str, device: str) -> None:
        if patient not in self._known_patients:
            self._known_patients.add(patient)
            if self.store.get_patient(patient) is None:
                # default care plan: no threshold overrides, no care team (fallback route)
                self.store.upsert_patient(Patient(id=patient, display_name=f"Synthetic {patient}"))
                self._result.enrolled.append(patient)
        if device not in self._known_devices:
            self._known_devices.add(device)
            if self.store.device_patient(device) is None:
                self.store.pair_device(device, patient)
                self._result.paired.append(device)


def replay_feed(
    events: Iterable[FeedEvent],
    store: Store,
    *,
    notifier: Notifier | None = None,
    batch_size: int = 200,
    speed: float | None = None,
    sleep: Sleep = time.sleep,
) -> ReplayResult:
    """Replay ``events`` into ``store`` (see :class:`FeedReplayer`)."""
    replayer = FeedReplayer(
        store, notifier=notifier, batch_size=batch_size, speed=speed, sleep=sleep
    )
    return replayer.replay(events)
