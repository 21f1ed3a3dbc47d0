"""Scoring: alerts against ground-truth episodes. Pure, apart from :func:`load_alerts`.

An alert matches an episode when it is for the same patient, was opened within
``[start, end + grace]`` (``end`` null: the end of the patient's monitored window) and its
rule is one that detects that type of episode (:data:`DETECTING_RULES`; any rule for a type
not listed there). An alert matching no episode is a false alert. Per episode type:
sensitivity, detection delay (first matching alert's ``opened_at`` minus the episode start;
median and worst) and false alerts per patient-week over the patients who have episodes of
that type; overall: false alerts per patient-week over every monitored patient.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from firmware_sim.errors import FirmwareSimError
from firmware_sim.feeds.format import FeedError, parse_time
from firmware_sim.feeds.truth import Episode, GroundTruth, MonitoredPatient

#: episode type -> rule id prefixes (``alerting``, docs/alerting.md) whose alerts detect it.
#: A prefix ending in "." matches the rules under it; otherwise the rule id itself or its
#: sub-rules. Types not listed are detected by any rule. ``data.silent`` and ``hub.offline``
#: are the planned missing-data rules (not built yet: those types score 0 until they are).
DETECTING_RULES: Mapping[str, tuple[str, ...]] = {
    "hypertensive_crisis": ("bp.hypertensive_crisis",),
    "bp_rising_trend": ("bp.trend.rising",),
    "heart_failure_decompensation": ("weight.",),
    "fever": ("temperature.", "news2."),
    "copd_desaturation": ("spo2.", "news2."),
    "tachycardia": ("heart_rate.high", "news2."),
    "hypo_level1": ("glucose.cgm.hypo.", "glucose.hypo.", "glucose.predicted_low"),
    "hypo_level2": ("glucose.cgm.hypo.", "glucose.hypo.", "glucose.predicted_low"),
    "nocturnal_hypoglycaemia": ("glucose.cgm.hypo.", "glucose.hypo.", "glucose.predicted_low"),
    "hyper_level1": ("glucose.cgm.hyper.", "glucose.hyper."),
    "hyper_level2": ("glucose.cgm.hyper.", "glucose.hyper."),
    "postprandial_hyperglycaemia": ("glucose.cgm.hyper.", "glucose.hyper."),
    "sensor_signal_loss": ("data.silent",),
    "device_silent": ("data.silent",),
    "hub_offline": ("hub.offline",),
}


def detects(rule: str, episode_type: str) -> bool:
    """True when an alert of ``rule`` counts as detecting an episode of ``episode_type``."""
    prefixes = DETECTING_RULES.get(episode_type)
    if prefixes is None:
        return True
    return any(
        rule.startswith(p) if p.endswith(".") else rule == p or rule.startswith(p + ".")
        for p in prefixes
    )


class ScoreInputError(FirmwareSimError):
    """An alerts file that cannot be read."""

    code = "bad-alerts"


@dataclass(frozen=True, slots=True)
class ScoredAlert:
    """What scoring needs of an alert."""

    patient: str
    rule: str
    opened_at: datetime


def alerts_from_json(doc: object, *, name: str = "alerts") -> list[ScoredAlert]:
    """Alerts from ``wardwatch alerts list --json`` (a list) or an object with ``alerts``."""
    if isinstance(doc, Mapping):
        doc = doc.get("alerts")
    if not isinstance(doc, list):
        raise ScoreInputError(f"{name}: expected a JSON list of alerts")
    out = []
    for n, a in enumerate(doc):
        if not isinstance(a, Mapping):
            raise ScoreInputError(f"{name}: alert {n} is not an object")
        patient, rule = a.get("patient"), a.get("rule")
        if not isinstance(patient, str) or not isinstance(rule, str):
            raise ScoreInputError(f"{name}: alert {n} lacks patient or rule")
        try:
            opened = parse_time(a.get("opened_at"), what=f"alert {n} opened_at")
        except FeedError as exc:
            raise ScoreInputError(f"{name}: {exc}") from None
        out.append(ScoredAlert(patient, rule, opened))
    return out


def load_alerts(path: str | Path) -> list[ScoredAlert]:
    """Read an alerts JSON file."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ScoreInputError(f"{path}: not JSON: {exc}") from None
    return alerts_from_json(doc, name=str(path))


def _windows(truths: Sequence[GroundTruth]) -> dict[str, MonitoredPatient]:
    windows: dict[str, MonitoredPatient] = {}
    for truth in truths:
        for p in truth.patients:
            old = windows.get(p.id)
            windows[p.id] = (
                p
                if old is None
                else MonitoredPatient(p.id, min(old.start, p.start), max(old.end, p.end))
            )
        for e in truth.episodes:
            if e.patient not in windows:  # no window given: the episode's own span, one day
                end = e.end if e.end is not None else e.start + timedelta(days=1)
                windows[e.patient] = MonitoredPatient(
                    e.patient, e.start, max(end, e.start + timedelta(days=1))
                )
    return windows


def _minutes(delta: timedelta) -> float:
    return round(delta.total_seconds() / 60, 1)


def score(
    truths: Iterable[GroundTruth], alerts: Sequence[ScoredAlert], *, grace_min: float = 60.0
) -> dict[str, Any]:
    """The score report as a JSON-compatible object."""
    truth_list = list(truths)
    windows = _windows(truth_list)
    episodes: list[Episode] = [e for t in truth_list for e in t.episodes]
    grace = timedelta(minutes=grace_min)
    matched_alerts: set[int] = set()
    delays: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for e in episodes:
        end = e.end if e.end is not None else windows[e.patient].end
        hits = [
            i
            for i, a in enumerate(alerts)
            if a.patient == e.patient
            and e.start <= a.opened_at <= end + grace
            and detects(a.rule, e.type)
        ]
        matched_alerts.update(hits)
        count = counts.setdefault(e.type, [0, 0])
        count[0] += 1
        if hits:
            count[1] += 1
            first = min(alerts[i].opened_at for i in hits)
            delays.setdefault(e.type, []).append(_minutes(first - e.start))
    monitored = set(windows)
    false_alerts = [
        a for i, a in enumerate(alerts) if i not in matched_alerts and a.patient in monitored
    ]
    ignored = sum(1 for a in alerts if a.patient not in monitored)

    def per_week(patients: set[str]) -> float | None:
        weeks = sum(windows[p].weeks for p in patients)
        if weeks <= 0:
            return None
        return round(sum(1 for a in false_alerts if a.patient in patients) / weeks, 3)

    by_type: dict[str, Any] = {}
    for kind in sorted(counts):
        total, detected = counts[kind]
        d = delays.get(kind, [])
        by_type[kind] = {
            "episodes": total,
            "detected": detected,
            "sensitivity": round(detected / total, 3),
            "median_delay_min": statistics.median(d) if d else None,
            "worst_delay_min": max(d) if d else None,
            "false_alerts_per_patient_week": per_week(
                {e.patient for e in episodes if e.type == kind}
            ),
        }
    return {
        "grace_min": grace_min,
        "patients": len(windows),
        "patient_weeks": round(sum(w.weeks for w in windows.values()), 3),
        "alerts": len(alerts),
        "alerts_outside_truth": ignored,
        "false_alerts": len(false_alerts),
        "false_alerts_per_patient_week": per_week(set(windows)),
        "episode_types": by_type,
    }


def _fmt(value: object) -> str:
    return "-" if value is None else str(value)


def score_text(report: Mapping[str, Any]) -> str:
    """The report as a short text table."""
    lines = [
        f"{'episode type':<30} {'episodes':>8} {'detected':>8} {'sens.':>6} "
        f"{'median min':>10} {'worst min':>9} {'FA/pt-wk':>8}"
    ]
    for kind, row in report["episode_types"].items():
        lines.append(
            f"{kind:<30} {row['episodes']:>8} {row['detected']:>8} {row['sensitivity']:>6.2f} "
            f"{_fmt(row['median_delay_min']):>10} {_fmt(row['worst_delay_min']):>9} "
            f"{_fmt(row['false_alerts_per_patient_week']):>8}"
        )
    lines.append(
        f"{report['alerts']} alerts, {report['false_alerts']} false "
        f"({_fmt(report['false_alerts_per_patient_week'])} per patient-week over "
        f"{report['patient_weeks']} patient-weeks, {report['patients']} patients); "
        f"grace {report['grace_min']:g} min"
    )
    if report["alerts_outside_truth"]:
        lines.append(f"{report['alerts_outside_truth']} alerts for patients not in the truth")
    return "\n".join(lines) + "\n"
