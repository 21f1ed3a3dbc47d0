"""Alerts as machine-readable JSON (``wardwatch alerts list --json``, the demo summary).

The contract of issue 6 (item 5): ``id``, ``patient``, ``rule``, ``kind``, ``severity``,
``opened_at``, ``acknowledged_at``, ``resolved_at`` (ISO 8601 or null) and the identifiers
of the triggering observations (``observations``). Besides: ``status``,
``acknowledged_by``, ``resolved_by`` and ``auto_cleared`` (true when the engine resolved
it because the readings recovered, ``resolved_by`` ``auto-clear``), and ``message``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from wardwatch.fhir import format_time
from wardwatch.store import Alert

AUTO_CLEAR = "auto-clear"
"""``resolved_by`` of an auto-cleared alert (the same as ``alerting.engine.AUTO_CLEAR``)."""


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
        "acknowledged_by": alert.acknowledged_by,
        "resolved_at": _time(alert.resolved_at),
        "resolved_by": alert.resolved_by,
        "auto_cleared": alert.status == "resolved" and alert.resolved_by == AUTO_CLEAR,
        "observations": list(alert.observations),
        "message": alert.message,
    }


def alerts_as_json(alerts: Iterable[Alert]) -> list[dict[str, Any]]:
    """A JSON list of alerts."""
    return [alert_as_json(a) for a in alerts]
