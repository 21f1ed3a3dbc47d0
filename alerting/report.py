"""Alerts as machine-readable JSON (``wardwatch alerts list --json``, the demo summary)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from wardwatch.fhir import format_time
from wardwatch.store import Alert


def _time(at: datetime | None) -> str | None:
    return None if at is None else format_time(at)


def alert_as_json(alert: Alert) -> dict[str, Any]:
    """One alert with the fields of the CLI contract (ISO 8601 times or null)."""
    return {
        "id": alert.id,
        "patient": alert.patient,
        "rule": alert.rule,
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "opened_at": _time(alert.opened_at),
        "acknowledged_at": _time(alert.acknowledged_at),
        "resolved_at": _time(alert.resolved_at),
        "resolved_by": alert.resolved_by,
        "observations": list(alert.observations),
        "message": alert.message,
    }


def alerts_as_json(alerts: Iterable[Alert]) -> list[dict[str, Any]]:
    """A JSON list of alerts."""
    return [alert_as_json(a) for a in alerts]
