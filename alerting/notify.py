"""Telling the care team: the :class:`Notifier` seam and its implementations.

- :class:`AppriseNotifier` delivers through apprise to a care team's ``notify_urls``.
- :class:`ConsoleNotifier` prints one line per alert (the demo).
- :class:`RecordingNotifier` records what it was asked to send (tests: a fake at our own
  seam instead of patching apprise).

A notification carries the minimum necessary: patient id (never the display name), rule,
severity, time and a short message with the value. Delivery failures never raise: they are
logged (WARNING, ids and reason only: no values, no URLs, which hold tokens) and returned
as a failed :class:`DeliveryResult`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO

import apprise

from wardwatch.fhir import format_time
from wardwatch.store import Alert, CareTeam, Patient, Severity

log = logging.getLogger(__name__)

_NOTIFY_TYPE: dict[Severity, apprise.NotifyType] = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "urgent": apprise.NotifyType.FAILURE,
}


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What became of one notification."""

    alert_id: int | None
    patient: str
    rule: str
    delivered: bool
    reason: str
    """``sent``; or why not: ``no-route``, ``bad-url``, ``failure``, ``partial``,
    ``timeout``, ``nomatch``, ``error``."""
    targets: int = 0
    """How many destinations (apprise services) were tried."""


class Notifier(Protocol):
    """Sends one alert to the people who must see it. Never raises on delivery failure."""

    async def send(
        self, alert: Alert, patient: Patient | None, team: CareTeam | None
    ) -> DeliveryResult:
        """Notify about ``alert`` (``patient``/``team`` as enrolled, None if unknown)."""
        ...  # pragma: no cover


def alert_title(alert: Alert) -> str:
    """``[URGENT] wardwatch alert: bp.hypertensive_crisis``."""
    return f"[{alert.severity.upper()}] wardwatch alert: {alert.rule}"


def alert_body(alert: Alert) -> str:
    """The notification text: ids, rule, severity, time, message. No display name."""
    return "\n".join(
        (
            f"patient: {alert.patient}",
            f"rule: {alert.rule}",
            f"severity: {alert.severity}",
            f"time: {format_time(alert.opened_at)}",
            alert.message,
            f"alert: {alert.id}",
        )
    )


def _result(alert: Alert, delivered: bool, reason: str, targets: int = 0) -> DeliveryResult:
    return DeliveryResult(alert.id, alert.patient, alert.rule, delivered, reason, targets)


class AppriseNotifier:
    """Delivers through apprise to the care team's ``notify_urls``.

    One :class:`apprise.Apprise` per care team, rebuilt when the team's URLs change.
    ``fallback_urls`` receive alerts of patients without a care team or whose team has
    no URL, so that no alert goes nowhere silently.
    """

    def __init__(self, *, fallback_urls: Sequence[str] = (), timeout: float = 30.0) -> None:
        self.fallback_urls = tuple(fallback_urls)
        self.timeout = timeout
        self._teams: dict[str, tuple[tuple[str, ...], apprise.Apprise]] = {}

    def _apprise(self, route: str, urls: tuple[str, ...]) -> apprise.Apprise:
        cached = self._teams.get(route)
        if cached is not None and cached[0] == urls:
            return cached[1]
        apobj = apprise.Apprise()
        rejected = sum(1 for url in urls if not apobj.add(url))
        if rejected:
            log.warning(
                "care team %s: apprise refused %d of %d notify URLs", route, rejected, len(urls)
            )
        self._teams[route] = (urls, apobj)
        return apobj

    async def send(
        self, alert: Alert, patient: Patient | None, team: CareTeam | None
    ) -> DeliveryResult:
        """Send the alert to the care team's apprise URLs (or the fallback URLs)."""
        if team is not None and team.notify_urls:
            route, urls = team.id, tuple(team.notify_urls)
        else:
            route, urls = "(fallback)", self.fallback_urls
        if not urls:
            log.warning(
                "alert %s (patient %s, rule %s): no notification route",
                alert.id,
                alert.patient,
                alert.rule,
            )
            return _result(alert, False, "no-route")
        apobj = self._apprise(route, urls)
        targets = len(apobj)
        if targets == 0:
            log.warning("alert %s: care team %s has no usable notify URL", alert.id, route)
            return _result(alert, False, "bad-url")
        try:
            outcome: object = await apobj.async_notify(
                body=alert_body(alert),
                title=alert_title(alert),
                notify_type=_NOTIFY_TYPE[alert.severity],
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self.timeout,
            )
        except Exception as exc:  # a notifier must not take the engine down
            log.warning(
                "alert %s: delivery to care team %s raised %s",
                alert.id,
                route,
                type(exc).__name__,
            )
            return _result(alert, False, "error", targets)
        # apprise >= 2.2 returns an AppriseResult (truthy only on full success, with a
        # status); earlier versions a bool.
        delivered = bool(outcome)
        status = getattr(outcome, "status", None)
        name = getattr(status, "name", None)
        reason = "sent" if delivered else (name.lower() if isinstance(name, str) else "failure")
        if delivered:
            log.info("alert %s: notified care team %s (%d targets)", alert.id, route, targets)
        else:
            log.warning(
                "alert %s (patient %s, rule %s): delivery to care team %s failed: %s",
                alert.id,
                alert.patient,
                alert.rule,
                route,
                reason,
            )
        return _result(alert, delivered, reason, targets)


class ConsoleNotifier:
    """Prints one line per alert to a text stream (stdout by default): the demo's nurse."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    async def send(
        self, alert: Alert, patient: Patient | None, team: CareTeam | None
    ) -> DeliveryResult:
        """Write ``<time> [URGENT] alert <id> patient <id> <rule>: <message>``."""
        stream = self.stream if self.stream is not None else sys.stdout
        line = (
            f"{format_time(alert.opened_at)} [{alert.severity.upper()}] alert {alert.id} "
            f"patient {alert.patient} {alert.rule}: {alert.message}\n"
        )
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError) as exc:
            log.warning("alert %s: console write failed: %s", alert.id, type(exc).__name__)
            return _result(alert, False, "error", 1)
        return _result(alert, True, "sent", 1)


@dataclass(frozen=True, slots=True)
class SentNotification:
    """One notification a :class:`RecordingNotifier` was asked to send."""

    alert: Alert
    patient: Patient | None
    team: CareTeam | None
    title: str
    body: str


class RecordingNotifier:
    """Records what it is asked to send; ``fail=True`` reports every delivery as failed."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[SentNotification] = []

    async def send(
        self, alert: Alert, patient: Patient | None, team: CareTeam | None
    ) -> DeliveryResult:
        """Record the notification and report it sent (or failed)."""
        self.sent.append(
            SentNotification(alert, patient, team, alert_title(alert), alert_body(alert))
        )
        if self.fail:
            return _result(alert, False, "failure", 1)
        return _result(alert, True, "sent", 1)


__all__ = [
    "AppriseNotifier",
    "ConsoleNotifier",
    "DeliveryResult",
    "Notifier",
    "RecordingNotifier",
    "SentNotification",
    "alert_body",
    "alert_title",
]
