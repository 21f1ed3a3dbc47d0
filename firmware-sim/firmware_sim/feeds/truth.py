"""Ground truth beside a feed: which episodes happen to which patient, and when.

A truth file is one JSON object (``docs/feeds.md``, "Ground truth"): ``patients`` with their
monitored window, ``episodes`` with ``type``, ``patient``, ``start``, ``end`` (``null``:
still open when the feed ends), plus what generated it (``scenario``, ``seed``,
``parameters``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from firmware_sim.errors import FirmwareSimError
from firmware_sim.feeds.format import FeedError, format_time, parse_time


class TruthError(FirmwareSimError):
    """A ground-truth file that cannot be read."""

    code = "bad-truth"


@dataclass(frozen=True, slots=True)
class Episode:
    """One clinical episode of one patient."""

    type: str
    patient: str
    start: datetime
    end: datetime | None
    """Exclusive end; None when still open at the end of the feed."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Further facts (peak value, source), kept as given."""


@dataclass(frozen=True, slots=True)
class MonitoredPatient:
    """A patient and the window the feed covers them."""

    id: str
    start: datetime
    end: datetime

    @property
    def weeks(self) -> float:
        """Length of the monitored window in weeks."""
        return (self.end - self.start).total_seconds() / (7 * 86400)


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """The truth file of one feed."""

    scenario: str
    patients: tuple[MonitoredPatient, ...]
    episodes: tuple[Episode, ...]
    seed: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def window(self, patient: str) -> MonitoredPatient | None:
        """The monitored window of ``patient``, if listed."""
        return next((p for p in self.patients if p.id == patient), None)


def truth_to_json(truth: GroundTruth) -> dict[str, Any]:
    """The JSON object of a truth file."""
    return {
        "scenario": truth.scenario,
        "seed": truth.seed,
        "parameters": dict(truth.parameters),
        "patients": [
            {"id": p.id, "start": format_time(p.start), "end": format_time(p.end)}
            for p in truth.patients
        ],
        "episodes": [
            {
                "type": e.type,
                "patient": e.patient,
                "start": format_time(e.start),
                "end": None if e.end is None else format_time(e.end),
                **dict(e.details),
            }
            for e in truth.episodes
        ],
    }


def write_truth(path: str | Path, truth: GroundTruth) -> None:
    """Write a truth file (indented JSON)."""
    Path(path).write_bytes(orjson.dumps(truth_to_json(truth), option=orjson.OPT_INDENT_2) + b"\n")


def _time(doc: Mapping[str, Any], key: str, where: str) -> datetime:
    try:
        return parse_time(doc.get(key), what=f"{where}.{key}")
    except FeedError as exc:
        raise TruthError(str(exc)) from None


def _string(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise TruthError(f"{where}.{key} must be a non-empty string")
    return value


def truth_from_json(doc: object, *, name: str = "truth") -> GroundTruth:
    """A truth file from its JSON; TruthError names what is wrong."""
    if not isinstance(doc, Mapping):
        raise TruthError(f"{name}: not a JSON object")
    raw_patients = doc.get("patients", [])
    raw_episodes = doc.get("episodes")
    if not isinstance(raw_episodes, list) or not isinstance(raw_patients, list):
        raise TruthError(f"{name}: episodes and patients must be lists")
    episodes = []
    for n, e in enumerate(raw_episodes):
        where = f"{name}: episodes[{n}]"
        if not isinstance(e, Mapping):
            raise TruthError(f"{where} is not an object")
        end = None if e.get("end") is None else _time(e, "end", where)
        details = {k: v for k, v in e.items() if k not in ("type", "patient", "start", "end")}
        episodes.append(
            Episode(
                _string(e, "type", where),
                _string(e, "patient", where),
                _time(e, "start", where),
                end,
                details,
            )
        )
    patients = []
    for n, p in enumerate(raw_patients):
        where = f"{name}: patients[{n}]"
        if not isinstance(p, Mapping):
            raise TruthError(f"{where} is not an object")
        start, end = _time(p, "start", where), _time(p, "end", where)
        if end <= start:
            raise TruthError(f"{where}: end is not after start")
        patients.append(MonitoredPatient(_string(p, "id", where), start, end))
    seed = doc.get("seed")
    parameters = doc.get("parameters") or {}
    return GroundTruth(
        scenario=str(doc.get("scenario", name)),
        patients=tuple(patients),
        episodes=tuple(episodes),
        seed=seed if isinstance(seed, int) else None,
        parameters=parameters if isinstance(parameters, Mapping) else {},
    )


def load_truth(path: str | Path) -> GroundTruth:
    """Read a truth file."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise TruthError(f"{path}: not JSON: {exc}") from None
    return truth_from_json(doc, name=str(path))
