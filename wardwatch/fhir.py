"""Readings to FHIR R4 Observations (and back), per the Vital Signs profile and the PHD IG.

Pure functions over plain ``dict`` documents: the hot path never builds pydantic models.
Tests validate every produced document with the ``fhir.resources`` R4B models.

Identity: an Observation's ``id`` and its ``identifier`` derive from (device, time as the
device reported it, kind), so a reading sent twice, through any path, is the same resource
and is stored once — even when the hub corrected its time differently each time (PHD IG:
the identifier uses the time stamp as reported by the device).

Time: a reading whose device clock the hub measured carries the PHD IG coincident time
stamp as a contained Observation (MDC_ATTR_TIME_ABS) it is ``derivedFrom``; its
``effectiveDateTime`` is the corrected time; a ``time-corrected`` note says a correction was
applied, a ``time-fault`` note (and the coincident time stamp's data-absent reason) that the
device's time cannot be trusted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wardwatch.errors import ContractError, ObservationError
from wardwatch.reading import Component, Reading, TimeCorrection
from wardwatch.units import UCUM_SYSTEM
from wardwatch.vocabulary import (
    BY_LOINC,
    KINDS,
    LOINC_SYSTEM,
    MDC_SYSTEM,
    VITAL_SIGNS,
    MeasurementKind,
)
from wardwatch.vocabulary import kind as lookup_kind

JSON = dict[str, Any]

CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
PHD_CATEGORY_SYSTEM = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"
DATA_ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
GATEWAY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
COINCIDENT_TIME_PROFILE = (
    "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdCoincidentTimeStampObservation"
)
#: MDC_ATTR_TIME_ABS: the code of the PHD IG coincident time stamp Observation
MDC_ATTR_TIME_ABS = "67975"
#: the local id of the contained coincident time stamp an Observation is derived from
COINCIDENT_TIME_ID = "coincident-time"
IDENTIFIER_SYSTEM = "urn:ietf:rfc:3986"
# Namespace for reading identifiers: uuid5(NAMESPACE_URL, "urn:wardwatch:reading").
READING_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:wardwatch:reading")
TIME_CORRECTION_NOTE = "time-corrected"
TIME_FAULT_NOTE = "time-fault"


def format_time(at: datetime) -> str:
    """FHIR dateTime in UTC, with milliseconds only when the time has them."""
    utc = at.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse a FHIR dateTime with a time zone; raise ObservationError otherwise."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise ObservationError(f"effectiveDateTime {text!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise ObservationError(f"effectiveDateTime {text!r} has no time zone")
    return at


def reading_id(device: str, at: datetime, kind: str) -> str:
    """The stable identifier of a reading: a UUIDv5 of device, UTC time and kind.

    ``at`` is the time as the device reported it (:attr:`Reading.reported_at`).
    """
    return str(uuid.uuid5(READING_NAMESPACE, f"{device}|{format_time(at)}|{kind}"))


def _codeable(spec: MeasurementKind, unit: str | None, mdc_code: int | None = None) -> JSON:
    codings: list[JSON] = []
    mdc = mdc_code if mdc_code is not None else spec.mdc_code
    if mdc is not None:
        coding: JSON = {"system": MDC_SYSTEM, "code": str(mdc)}
        if mdc == spec.mdc_code and spec.mdc_refid:
            coding["display"] = spec.mdc_refid
        codings.append(coding)
    codings.append({"system": LOINC_SYSTEM, "code": spec.loinc_for(unit), "display": spec.display})
    codings.extend({"system": LOINC_SYSTEM, "code": c} for c in spec.also_loinc)
    return {"coding": codings, "text": spec.display}


def _quantity(value: float, unit: str) -> JSON:
    # Integral values stay integral in JSON (116 not 116.0), like device displays.
    number: float | int = int(value) if float(value).is_integer() else round(value, 6)
    return {"value": number, "unit": unit, "system": UCUM_SYSTEM, "code": unit}


def _absent(code: str) -> JSON:
    return {"coding": [{"system": DATA_ABSENT_SYSTEM, "code": code}]}


def _component(c: Component) -> JSON:
    spec = lookup_kind(c.kind)
    out: JSON = {"code": _codeable(spec, c.unit)}
    if c.value is not None and c.unit is not None:
        out["valueQuantity"] = _quantity(c.value, c.unit)
    else:
        out["dataAbsentReason"] = _absent(c.data_absent or "unknown")
    return out


def observation_from_reading(
    reading: Reading,
    *,
    patient: str,
    device: str,
    gateway: str | None = None,
) -> JSON:
    """Build the FHIR R4 Observation for one reading of ``device`` on ``patient``."""
    spec = lookup_kind(reading.kind)
    rid = reading_id(device, reading.reported_at, reading.kind)
    categories: list[JSON] = [
        {
            "coding": [{"system": CATEGORY_SYSTEM, "code": spec.category}],
            "text": spec.category.replace("-", " ").title(),
        },
        {"coding": [{"system": PHD_CATEGORY_SYSTEM, "code": "phd"}]},
    ]
    obs: JSON = {"resourceType": "Observation", "id": rid}
    if spec.profile and spec.category == VITAL_SIGNS:
        obs["meta"] = {"profile": [spec.profile]}
    tc = reading.time_correction
    if tc is not None:
        obs["contained"] = [_coincident_time(tc, patient=patient, device=device, gateway=gateway)]
    extensions: list[JSON] = []
    if gateway is not None:
        extensions.append(
            {"url": GATEWAY_EXTENSION, "valueReference": {"reference": f"Device/{gateway}"}}
        )
    if extensions:
        obs["extension"] = extensions
    obs["identifier"] = [{"system": IDENTIFIER_SYSTEM, "value": f"urn:uuid:{rid}"}]
    obs["status"] = "final"
    obs["category"] = categories
    obs["code"] = _codeable(spec, reading.unit, reading.mdc_code)
    obs["subject"] = {"reference": f"Patient/{patient}"}
    obs["effectiveDateTime"] = format_time(reading.at)
    if spec.components:
        if reading.data_absent is not None and not reading.components:
            obs["dataAbsentReason"] = _absent(reading.data_absent)
        obs["component"] = [_component(c) for c in reading.components]
    elif reading.value is not None and reading.unit is not None:
        obs["valueQuantity"] = _quantity(reading.value, reading.unit)
    else:
        obs["dataAbsentReason"] = _absent(reading.data_absent or "unknown")
    if reading.interpretation:
        obs["interpretation"] = [
            {"coding": [{"system": INTERPRETATION_SYSTEM, "code": code}]}
            for code in reading.interpretation
        ]
    notes = [{"text": f"device status: {s}"} for s in reading.device_status]
    if tc is not None and tc.corrected and tc.device_time is not None:
        notes.append(
            {
                "text": (
                    f"{TIME_CORRECTION_NOTE}: device clock {format_time(tc.device_time)} "
                    f"at hub time {format_time(tc.hub_time)} "
                    f"(offset {tc.offset_seconds:+.0f} s)"
                )
            }
        )
    if tc is not None and tc.fault is not None:
        notes.append({"text": f"{TIME_FAULT_NOTE}: {tc.fault}"})
    notes.extend({"text": f"{name}: {text}"} for name, text in reading.extra)
    if notes:
        obs["note"] = notes
    obs["device"] = {"reference": f"Device/{device}"}
    if tc is not None:
        obs["derivedFrom"] = [{"reference": f"#{COINCIDENT_TIME_ID}"}]
    return obs


def _coincident_time(tc: TimeCorrection, *, patient: str, device: str, gateway: str | None) -> JSON:
    """The PHD IG coincident time stamp: the device's clock read at the hub's time."""
    cts: JSON = {
        "resourceType": "Observation",
        "id": COINCIDENT_TIME_ID,
        "meta": {"profile": [COINCIDENT_TIME_PROFILE]},
    }
    if gateway is not None:
        cts["extension"] = [
            {"url": GATEWAY_EXTENSION, "valueReference": {"reference": f"Device/{gateway}"}}
        ]
    cts["status"] = "final"
    cts["code"] = {
        "coding": [
            {"system": MDC_SYSTEM, "code": MDC_ATTR_TIME_ABS, "display": "MDC_ATTR_TIME_ABS"}
        ],
        "text": "Absolute time",
    }
    cts["subject"] = {"reference": f"Patient/{patient}"}
    cts["effectiveDateTime"] = format_time(tc.hub_time)
    if tc.fault is None and tc.device_time is not None:
        cts["valueDateTime"] = format_time(tc.device_time)
    else:
        # the PHD IG's time fault: the device's time is unknown or cannot be trusted
        cts["dataAbsentReason"] = {
            "coding": [{"system": DATA_ABSENT_SYSTEM, "code": "unknown", "display": "Unknown"}],
            "text": "Sensor Time Fault",
        }
        if tc.device_time is not None:
            cts["note"] = [{"text": f"device clock read {format_time(tc.device_time)}"}]
    cts["device"] = {"reference": f"Device/{device}"}
    return cts


def bundle(observations: Iterable[JSON], *, bundle_id: str | None = None) -> JSON:
    """A FHIR ``batch`` Bundle of Observations, each a PUT on its deterministic id."""
    entries = [
        {
            "fullUrl": f"urn:uuid:{o['id']}",
            "resource": o,
            "request": {"method": "PUT", "url": f"Observation/{o['id']}"},
        }
        for o in observations
    ]
    out: JSON = {"resourceType": "Bundle", "type": "batch", "entry": entries}
    if bundle_id is not None:
        out["id"] = bundle_id
    return out


@dataclass(frozen=True, slots=True)
class ObservationFacts:
    """What ingest needs from an Observation: who, which device, what, when, which values."""

    identifier: str
    patient: str
    device: str
    gateway: str | None
    reading: Reading


def _reference(value: object, prefix: str, where: str) -> str:
    if not isinstance(value, Mapping):
        raise ObservationError(f"{where} is missing")
    ref = value.get("reference")
    if not isinstance(ref, str) or not ref.startswith(prefix) or len(ref) <= len(prefix):
        raise ObservationError(f"{where} must reference {prefix}<id>, got {ref!r}")
    return ref[len(prefix) :]


def _kind_of(code: object, where: str) -> MeasurementKind:
    if not isinstance(code, Mapping) or not isinstance(code.get("coding"), list):
        raise ObservationError(f"{where} has no coding")
    for coding in code["coding"]:
        if isinstance(coding, Mapping) and coding.get("system") == LOINC_SYSTEM:
            spec = BY_LOINC.get(str(coding.get("code")))
            if spec is not None:
                return spec
    raise ObservationError(f"{where} has no LOINC code wardwatch knows")


def _value(doc: Mapping[str, Any], where: str) -> tuple[float | None, str | None, str | None]:
    q = doc.get("valueQuantity")
    if q is None:
        dar = doc.get("dataAbsentReason")
        if isinstance(dar, Mapping):
            for coding in dar.get("coding") or []:
                if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                    return None, None, coding["code"]
        raise ObservationError(f"{where} has neither valueQuantity nor dataAbsentReason")
    if not isinstance(q, Mapping):
        raise ObservationError(f"{where}.valueQuantity is not an object")
    value = q.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ObservationError(f"{where}.valueQuantity.value is not a number")
    if q.get("system") != UCUM_SYSTEM or not isinstance(q.get("code"), str):
        raise ObservationError(f"{where}.valueQuantity is not coded in UCUM")
    return float(value), str(q["code"]), None


def facts_from_observation(obs: Mapping[str, Any]) -> ObservationFacts:
    """Map an Observation back onto a Reading with its subject and device.

    Raises ObservationError (or another ContractError) naming what is wrong.
    """
    if obs.get("resourceType") != "Observation":
        raise ObservationError(f"resourceType is {obs.get('resourceType')!r}, not Observation")
    patient = _reference(obs.get("subject"), "Patient/", "subject")
    device = _reference(obs.get("device"), "Device/", "device")
    gateway = None
    for ext in obs.get("extension") or []:
        if isinstance(ext, Mapping) and ext.get("url") == GATEWAY_EXTENSION:
            gateway = _reference(ext.get("valueReference"), "Device/", "gatewayDevice")
    text = obs.get("effectiveDateTime")
    if not isinstance(text, str):
        raise ObservationError("effectiveDateTime is missing")
    at = parse_time(text)
    spec = _kind_of(obs.get("code"), "code")
    identifier = None
    for ident in obs.get("identifier") or []:
        if isinstance(ident, Mapping) and ident.get("system") == IDENTIFIER_SYSTEM:
            identifier = str(ident.get("value", "")).removeprefix("urn:uuid:")
    if not identifier:
        raise ObservationError("identifier (urn:ietf:rfc:3986) is missing")
    interp = tuple(
        str(c.get("code"))
        for i in obs.get("interpretation") or []
        if isinstance(i, Mapping)
        for c in i.get("coding") or []
        if isinstance(c, Mapping)
    )
    correction = _time_correction(obs)
    if spec.components:
        comps = []
        for n, comp in enumerate(obs.get("component") or []):
            if not isinstance(comp, Mapping):
                raise ObservationError(f"component[{n}] is not an object")
            cspec = _kind_of(comp.get("code"), f"component[{n}].code")
            value, unit, absent = _value(comp, f"component[{n}]")
            comps.append(Component(cspec.name, value, unit, absent))
        absent = None if comps else _value(obs, "Observation")[2]
        reading = Reading(
            kind=spec.name,
            at=at,
            components=tuple(comps),
            data_absent=absent,
            interpretation=interp,
            time_correction=correction,
        )
    else:
        value, unit, absent = _value(obs, "Observation")
        reading = Reading(
            kind=spec.name,
            at=at,
            value=value,
            unit=unit,
            data_absent=absent,
            interpretation=interp,
            time_correction=correction,
        )
    return ObservationFacts(identifier, patient, device, gateway, reading)


def _note_texts(notes: object) -> list[str]:
    if not isinstance(notes, list):
        return []
    return [
        text
        for note in notes
        if isinstance(note, Mapping) and isinstance(text := note.get("text"), str)
    ]


def _corrected_note(texts: Sequence[str]) -> TimeCorrection | None:
    for text in texts:
        if text.startswith(TIME_CORRECTION_NOTE + ":"):
            words = text.split()
            try:
                return TimeCorrection(parse_time(words[3]), parse_time(words[7]))
            except (IndexError, ObservationError):
                raise ObservationError(f"malformed time-correction note {text!r}") from None
    return None


def _as_list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ObservationError(f"{where} is not a list")
    return value


def _contained_coincident_time(obs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    refs = {
        d.get("reference")
        for d in _as_list(obs.get("derivedFrom"), "Observation.derivedFrom")
        if isinstance(d, Mapping) and isinstance(d.get("reference"), str)
    }
    for res in _as_list(obs.get("contained"), "Observation.contained"):
        if (
            isinstance(res, Mapping)
            and res.get("resourceType") == "Observation"
            and f"#{res.get('id')}" in refs
        ):
            code = res.get("code")
            if not isinstance(code, Mapping):
                raise ObservationError("contained coincident time stamp has no code")
            codes = _as_list(code.get("coding"), "contained Observation.code.coding")
            if any(
                isinstance(c, Mapping)
                and c.get("system") == MDC_SYSTEM
                and c.get("code") == MDC_ATTR_TIME_ABS
                for c in codes
            ):
                return res
    return None


def _time_correction(obs: Mapping[str, Any]) -> TimeCorrection | None:
    """The coincident time stamp an Observation derives from, with how it was used."""
    texts = _note_texts(obs.get("note"))
    cts = _contained_coincident_time(obs)
    if cts is None:
        return _corrected_note(texts)  # written before the coincident time stamp was
    hub_text = cts.get("effectiveDateTime")
    if not isinstance(hub_text, str):
        raise ObservationError("coincident time stamp has no effectiveDateTime")
    hub = parse_time(hub_text)
    value = cts.get("valueDateTime")
    device = parse_time(value) if isinstance(value, str) else None
    fault = next(
        (t.split(":", 1)[1].strip() for t in texts if t.startswith(TIME_FAULT_NOTE + ":")), None
    )
    if device is None:
        for text in _note_texts(cts.get("note")):
            if text.startswith("device clock read "):
                device = parse_time(text.removeprefix("device clock read "))
        if fault is None:
            fault = "Sensor Time Fault"
    corrected = _corrected_note(texts)
    if corrected is not None and fault is None:
        if (corrected.device_time, corrected.hub_time) != (device, hub):
            raise ObservationError("time-correction note disagrees with the coincident time stamp")
        return corrected
    try:
        return TimeCorrection(device, hub, corrected=False, fault=fault)
    except ContractError as exc:
        raise ObservationError(f"coincident time stamp: {exc}") from None


def observations_in_bundle(doc: Mapping[str, Any]) -> Sequence[Any]:
    """The resources of a batch/transaction Bundle; raise ObservationError if malformed."""
    if doc.get("resourceType") != "Bundle":
        raise ObservationError(f"resourceType is {doc.get('resourceType')!r}, not Bundle")
    if doc.get("type") not in ("batch", "transaction", "collection"):
        raise ObservationError(f"Bundle.type {doc.get('type')!r} is not batch")
    entries = doc.get("entry") or []
    if not isinstance(entries, list):
        raise ObservationError("Bundle.entry is not a list")
    return [e.get("resource") if isinstance(e, Mapping) else None for e in entries]


__all__ = [
    "KINDS",
    "ObservationFacts",
    "bundle",
    "facts_from_observation",
    "format_time",
    "observation_from_reading",
    "observations_in_bundle",
    "parse_time",
    "reading_id",
]
