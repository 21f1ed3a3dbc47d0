"""Our own rules on top of the FHIR shape: units, plausible values, times, enrolment.

Pure functions over the contract's :class:`~wardwatch.fhir.ObservationFacts`; the caller
supplies the registry lookups, so this module does no I/O.

Two ways through, one set of rules:

- :func:`validate` checks :class:`~wardwatch.fhir.ObservationFacts` (built by
  :func:`wardwatch.fhir.facts_from_observation`) and raises a :class:`ValidationError` that
  names the broken rule. It is the reference, and the path every refused observation takes.
- :func:`lean_row` is the hot path for the shape gateways send: it reads the parsed JSON
  directly (no intermediate ``Reading``/``Component`` objects, no ABC ``isinstance``
  checks) and returns the store row only when every rule of the reference path holds.
  On anything else, including anything it does not know how to judge (an element
  outside the usual set, data-absent values, time-corrected readings, ...), it returns
  ``None`` and the caller takes the reference path, which then accepts it or names the
  error. So it can only be faster, never more lenient; ``tests/test_ingest_pipeline.py``
  checks that property on generated and mutated observations.

Full ``fhir.resources`` model validation (~170 us per Observation) is not part of either
path: the tests run it on everything the project emits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ingest.errors import ValidationError
from wardwatch.errors import ContractError
from wardwatch.fhir import (
    GATEWAY_EXTENSION,
    IDENTIFIER_SYSTEM,
    ObservationFacts,
    parse_time,
)
from wardwatch.reading import INTERPRETATIONS
from wardwatch.store import StoredObservation
from wardwatch.units import UCUM_SYSTEM, convert
from wardwatch.vocabulary import BY_LOINC, LOINC_SYSTEM, MeasurementKind
from wardwatch.vocabulary import kind as lookup_kind

#: readings stamped further ahead than this (hub and backend clocks disagree a little) are refused
MAX_FUTURE = timedelta(minutes=10)
#: no connected health device on the market predates this; earlier stamps are unset clocks
EARLIEST = datetime(2005, 1, 1, tzinfo=UTC)
#: reading identifiers are ``urn:uuid:<UUID>`` (the contract); the UUID part, any case
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: notes that carry time handling (``time-corrected: ...``, ``time-fault: ...``)
_TIME_NOTE = "time-"
#: the elements :func:`lean_row` knows how to judge; any other (``contained`` coincident
#: time stamps, ``derivedFrom``, ``dataAbsentReason``, ...) sends a resource to the
#: reference path, so a rule added there cannot be skipped here
_LEAN_KEYS = frozenset(
    {
        "resourceType", "id", "meta", "extension", "identifier", "status", "category",
        "code", "subject", "effectiveDateTime", "valueQuantity", "component",
        "interpretation", "note", "device",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Registry:
    """Lookups validation needs: is the patient enrolled, which patient is a device paired to."""

    patient_enrolled: Callable[[str], bool]
    device_patient: Callable[[str], str | None]


def _check_range(kind: str, value: float, unit: str) -> None:
    spec = lookup_kind(kind)
    if spec.plausible is None or spec.canonical_unit is None:
        return
    low, high = spec.plausible
    canonical = convert(value, unit, spec.canonical_unit)
    if not low <= canonical <= high:
        raise ValidationError(
            "implausible-value",
            f"{kind} {value} {unit} is outside the physiologically possible range "
            f"{low:g}-{high:g} {spec.canonical_unit}",
        )


def validate(facts: ObservationFacts, *, now: datetime, registry: Registry) -> None:
    """Raise ValidationError (with a machine-readable code) if the observation breaks a rule."""
    if _UUID.fullmatch(facts.identifier) is None:
        # the identifier is a key in the store: only the contract's form gets that far
        raise ValidationError(
            "bad-observation", "identifier is not urn:uuid:<UUID> (urn:ietf:rfc:3986)"
        )
    reading = facts.reading
    tc = reading.time_correction
    if tc is not None and tc.fault is not None:
        # PHD IG time fault: the device's stamp is kept, but never stored as a true time
        raise ValidationError("time-untrusted", f"device time cannot be trusted: {tc.fault}")
    if reading.at > now + MAX_FUTURE:
        raise ValidationError(
            "time-in-future", f"effective time {reading.at.isoformat()} is in the future"
        )
    if reading.at < EARLIEST:
        raise ValidationError(
            "time-too-early", f"effective time {reading.at.isoformat()} predates any device"
        )
    if reading.value is not None and reading.unit is not None:
        _check_range(reading.kind, reading.value, reading.unit)
    for c in reading.components:
        if c.value is not None and c.unit is not None:
            _check_range(c.kind, c.value, c.unit)
    if not registry.patient_enrolled(facts.patient):
        raise ValidationError("unknown-patient", "subject is not an enrolled patient")
    paired = registry.device_patient(facts.device)
    if paired is None:
        raise ValidationError("unknown-device", f"device {facts.device} is not paired")
    if paired != facts.patient:
        raise ValidationError(
            "device-not-paired", f"device {facts.device} is not paired to this patient"
        )


# -- the hot path ----------------------------------------------------------------------
# Parsed JSON holds exact ``dict``/``list``/``str`` types, so ``type(x) is dict`` stands in
# for the reference path's ``isinstance(x, Mapping)`` (an ABC check, ~10x slower); anything
# else makes these helpers answer None ("not the usual shape": take the reference path).


def _ref(value: Any, prefix: str) -> str | None:
    if type(value) is not dict:
        return None
    ref = value.get("reference")
    if type(ref) is not str or not ref.startswith(prefix) or len(ref) <= len(prefix):
        return None
    return ref[len(prefix) :]


def _kind_of(code: Any) -> MeasurementKind | None:
    if type(code) is not dict:
        return None
    codings = code.get("coding")
    if type(codings) is not list:
        return None
    for coding in codings:
        if type(coding) is dict and coding.get("system") == LOINC_SYSTEM:
            spec = BY_LOINC.get(str(coding.get("code")))
            if spec is not None:
                return spec
    return None


def _canonical_value(doc: dict[str, Any], spec: MeasurementKind) -> float | None:
    """The value of ``doc.valueQuantity`` in the kind's canonical unit, if it is a finite
    number in an allowed UCUM unit and within the plausible range."""
    q = doc.get("valueQuantity")
    if type(q) is not dict:
        return None
    raw = q.get("value")
    if type(raw) is not float and type(raw) is not int:  # bool is neither
        return None
    unit = q.get("code")
    if q.get("system") != UCUM_SYSTEM or type(unit) is not str or unit not in spec.units:
        return None
    value = float(raw)
    if not math.isfinite(value):
        return None
    canonical_unit = spec.units[0]
    try:
        canonical = convert(value, unit, canonical_unit)
    except ContractError:
        return None
    if spec.plausible is not None and not spec.plausible[0] <= canonical <= spec.plausible[1]:
        return None
    return canonical


def lean_row(
    resource: Any,
    *,
    gateway: str | None,
    now: datetime,
    registry: Registry,
) -> StoredObservation | None:
    """The store row for an Observation in the usual shape that passes every rule, or None.

    None does not mean refused: the caller must then run the reference path
    (``facts_from_observation`` + :func:`validate`), which accepts or names the error.
    ``gateway`` is the sender (from the MQTT topic), if known.
    """
    if type(resource) is not dict or resource.get("resourceType") != "Observation":
        return None
    if not resource.keys() <= _LEAN_KEYS:
        return None
    patient = _ref(resource.get("subject"), "Patient/")
    device = _ref(resource.get("device"), "Device/")
    if patient is None or device is None:
        return None
    named_gateway: str | None = None
    extensions = resource.get("extension")
    if extensions is not None:
        if type(extensions) is not list:
            return None
        for ext in extensions:
            if type(ext) is dict and ext.get("url") == GATEWAY_EXTENSION:
                named_gateway = _ref(ext.get("valueReference"), "Device/")
                if named_gateway is None:
                    return None
    if gateway is not None and named_gateway is not None and named_gateway != gateway:
        return None
    identifiers = resource.get("identifier")
    if type(identifiers) is not list:
        return None
    identifier = ""
    for ident in identifiers:
        if type(ident) is dict and ident.get("system") == IDENTIFIER_SYSTEM:
            identifier = str(ident.get("value", "")).removeprefix("urn:uuid:")
    if _UUID.fullmatch(identifier) is None:
        return None
    text = resource.get("effectiveDateTime")
    if type(text) is not str:
        return None
    try:
        at = parse_time(text)
    except ContractError:
        return None
    if at > now + MAX_FUTURE or at < EARLIEST:
        return None
    spec = _kind_of(resource.get("code"))
    if spec is None:
        return None
    interpretations = resource.get("interpretation")
    if interpretations is not None:
        if type(interpretations) is not list:
            return None
        for interp in interpretations:
            if type(interp) is not dict:
                return None
            codings = interp.get("coding")
            if codings is None:
                continue
            if type(codings) is not list:
                return None
            for c in codings:
                if type(c) is not dict or str(c.get("code")) not in INTERPRETATIONS:
                    return None
    if "contained" in resource:
        return None  # a coincident time stamp (maybe a time fault): the reference path judges
    notes = resource.get("note")
    if type(notes) is list:
        for note in notes:
            note_text = note.get("text") if type(note) is dict else None
            if type(note_text) is str and note_text.startswith(_TIME_NOTE):
                return None  # the reference path reads time corrections and faults
    value: float | None = None
    unit: str | None = None
    components: dict[str, float] = {}
    if spec.components:
        parts = resource.get("component")
        if type(parts) is not list or not parts:
            return None
        for part in parts:
            if type(part) is not dict:
                return None
            cspec = _kind_of(part.get("code"))
            if cspec is None or cspec.name not in spec.components:
                return None
            cvalue = _canonical_value(part, cspec)
            if cvalue is None:
                return None
            components[cspec.name] = cvalue
    else:
        value = _canonical_value(resource, spec)
        if value is None:
            return None
        unit = spec.units[0]
    if not registry.patient_enrolled(patient) or registry.device_patient(device) != patient:
        return None
    return StoredObservation(
        identifier=identifier,
        patient=patient,
        device=device,
        kind=spec.name,
        at=at.astimezone(UTC),
        value=value,
        unit=unit,
        components=components,
        resource=orjson.dumps(resource),
        received_at=now,
        gateway=named_gateway,
    )
