"""Telling the care team: the :class:`Notifier` seam, the message, and its implementations.

The dispatcher (:mod:`alerting.dispatch`) decides what goes out when; a notifier only
delivers one :class:`Notification`: one or more alerts of ONE patient (grouped), for one
escalation step, to the apprise tags of that step.

- :class:`AppriseNotifier` delivers through apprise (``Apprise.add(url, tag=...)``, then
  ``async_notify(..., tag=step tags)``) and reports apprise's ``AppriseResult``.
- :class:`ConsoleNotifier` prints one line per notification.
- :class:`RecordingNotifier` records what it was asked to send (tests: a fake at our own
  seam instead of patching apprise), and can fail on purpose.

The minimum necessary goes out: patient id (never the display name or date of birth),
severity, rule titles, times and a link to the worklist (``{worklist_url}/#/alerts/{id}``);
the alert's short message (what was measured against which limit) only in full-text
channels. SMS-like channels (:func:`is_sms_like`: SMS gateways and any apprise service
limited to under 1000 characters) get one short line without any value. Delivery failures
never raise: they are logged (WARNING, ids and reason only; never URLs, which hold tokens)
and returned as a failed :class:`DeliveryResult`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TextIO

import apprise

from alerting.policy import Target
from wardwatch.fhir import format_time
from wardwatch.store import Alert, Severity

log = logging.getLogger(__name__)

Purpose = Literal["notify", "renotify", "escalate"]

_NOTIFY_TYPE: dict[Severity, apprise.NotifyType] = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "urgent": apprise.NotifyType.FAILURE,
}
_RANK: dict[Severity, int] = {"urgent": 0, "warning": 1, "info": 2}

SMS_SCHEMAS: frozenset[str] = frozenset(
    {
        "sms", "twilio", "sns", "nexmo", "vonage", "plivo", "msg91", "msgbird", "clicksend",
        "clickatell", "d7sms", "sinch", "bulksms", "bulkvs", "burstsms", "kavenegar", "seven",
        "smseagle", "smseagles", "smstunnel", "smsmgr", "smsmanager", "smsc", "httpsms",
        "telnyx", "telesign", "infobip", "46elks", "elks", "atalk", "freemobile", "sfr",
        "voipms", "ringc", "serwersms", "kudosity", "mobilemessage", "mobilemsg", "notifyre",
        "cm", "octopush", "exotel", "kaleyra", "klr", "signal", "signals", "whatsapp",
        "dapnet", "aprs",
    }
)  # fmt: skip
"""Schemas whose messages land on a phone's lock screen as SMS-like texts."""

_SHORT_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class NotifiedAlert:
    """One alert inside a notification."""

    alert: Alert
    title: str
    """The rule's title (``Hypertensive crisis``), or its id when unknown."""
    link: str | None
    """``{worklist_url}/#/alerts/{id}``, when a worklist URL is configured."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one patient's alerts, to one escalation step's tags."""

    patient: str
    care_team: str | None
    purpose: Purpose
    step: int
    step_name: str
    tags: tuple[str, ...]
    """The apprise tags of the step (``notify(tag=...)``: any of them)."""
    targets: tuple[Target, ...]
    """The care team's apprise URLs with their tags (a notifier picks by ``tags``)."""
    alerts: tuple[NotifiedAlert, ...]
    """Most severe first."""
    at: datetime
    attempt: int = 1

    @property
    def severity(self) -> Severity:
        """The highest severity of the alerts."""
        return min((a.alert.severity for a in self.alerts), key=_RANK.__getitem__)

    @property
    def alert_ids(self) -> tuple[int, ...]:
        """The alerts' ids."""
        return tuple(a.alert.id for a in self.alerts if a.alert.id is not None)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What became of one notification."""

    delivered: bool
    reason: str
    """``sent``; or why not: ``no-route``, ``bad-url``, ``nomatch``, ``failure``,
    ``partial``, ``timeout``, ``error``."""
    targets: int = 0
    """How many destinations (apprise services) were tried."""


class Notifier(Protocol):
    """Delivers one notification. Never raises on delivery failure."""

    async def deliver(self, notification: Notification) -> DeliveryResult:
        """Send ``notification`` to the services answering its tags."""
        ...  # pragma: no cover


# -- the message --------------------------------------------------------------------------

_PURPOSE_WORD: dict[Purpose, str] = {
    "notify": "alert",
    "renotify": "reminder, not acknowledged",
    "escalate": "escalated, not acknowledged",
}


def notification_title(n: Notification) -> str:
    """``[URGENT] wardwatch alert: patient p-001 (2 alerts)``."""
    count = f" ({len(n.alerts)} alerts)" if len(n.alerts) > 1 else ""
    return (
        f"[{n.severity.upper()}] wardwatch {_PURPOSE_WORD[n.purpose]}: patient {n.patient}{count}"
    )


def notification_body(n: Notification) -> str:
    """Full text: patient id, per alert its title, severity, time, short message, link."""
    lines = [f"patient: {n.patient}", f"severity: {n.severity}"]
    if n.purpose == "escalate":
        lines.append(f"escalated to: {n.step_name} (step {n.step})")
    for item in n.alerts:
        a = item.alert
        lines.append(f"- {item.title} ({a.severity}, {a.rule}) since {format_time(a.opened_at)}")
        if a.message:
            lines.append(f"  {a.message}")
        lines.append(f"  {item.link}" if item.link else f"  alert {a.id}")
    return "\n".join(lines)


def notification_short(n: Notification) -> str:
    """SMS-like: one line, no values: ``wardwatch URGENT p-001: Hypertensive crisis 10:04Z
    +1 more https://.../#/alerts/12``."""
    first = n.alerts[0]
    more = f" +{len(n.alerts) - 1} more" if len(n.alerts) > 1 else ""
    when = first.alert.opened_at.strftime("%H:%MZ")
    where = first.link or f"alert {first.alert.id}"
    word = {"notify": "", "renotify": " REMINDER", "escalate": " ESCALATED"}[n.purpose]
    return f"wardwatch {n.severity.upper()}{word} {n.patient}: {first.title} {when}{more} {where}"


def is_sms_like(url: str) -> bool:
    """Whether an apprise URL is an SMS-like channel (short body, no values)."""
    schema = url.split("://", 1)[0].lower()
    if schema in SMS_SCHEMAS:
        return True
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    limit = getattr(type(plugin), "body_maxlen", None) if plugin else None
    return isinstance(limit, int) and limit < _SHORT_LIMIT


# -- implementations -----------------------------------------------------------------------


@dataclass(slots=True)
class _Services:
    full: apprise.Apprise
    short: apprise.Apprise
    refused: int


class AppriseNotifier:
    """Delivers through apprise: each target URL added with its tags, notified by tag.

    One pair of :class:`apprise.Apprise` objects per set of targets (full-text and
    SMS-like channels get different bodies), rebuilt when the targets change.
    """

    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._cache: dict[tuple[Target, ...], _Services] = {}

    def _services(self, targets: tuple[Target, ...], team: str | None) -> _Services:
        cached = self._cache.get(targets)
        if cached is not None:
            return cached
        full, short, refused = apprise.Apprise(), apprise.Apprise(), 0
        for target in targets:
            apobj = short if is_sms_like(target.url) else full
            if not apobj.add(target.url, tag=list(target.tags)):
                refused += 1
        if refused:
            log.warning(
                "care team %s: apprise refused %d of %d notify URLs", team, refused, len(targets)
            )
        services = _Services(full, short, refused)
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[targets] = services
        return services

    async def deliver(self, notification: Notification) -> DeliveryResult:
        """Notify the services tagged with the step's tags; apprise's result decides."""
        n = notification
        if not n.targets:
            log.warning("alerts %s (patient %s): no notification route", n.alert_ids, n.patient)
            return DeliveryResult(False, "no-route")
        services = self._services(n.targets, n.care_team)
        if len(services.full) + len(services.short) == 0:
            return DeliveryResult(False, "bad-url")
        title = notification_title(n)
        statuses: list[str] = []
        tried = 0
        for apobj, body in (
            (services.full, notification_body(n)),
            (services.short, notification_short(n)),
        ):
            if len(apobj) == 0:
                continue
            try:
                result: object = await apobj.async_notify(
                    body=body,
                    title=title,
                    notify_type=_NOTIFY_TYPE[n.severity],
                    body_format=apprise.NotifyFormat.TEXT,
                    tag=list(n.tags),
                    timeout=self.timeout,
                )
            except Exception as exc:  # a notifier must not take the dispatcher down
                log.warning(
                    "alerts %s: delivery to care team %s raised %s",
                    n.alert_ids,
                    n.care_team,
                    type(exc).__name__,
                )
                statuses.append("error")
                continue
            # apprise >= 2.2: an AppriseResult (truthy only on full success; status
            # SUCCESS/FAILURE/NOMATCH/PARTIAL/TIMEOUT; one NotifyResult per service).
            status = getattr(getattr(result, "status", None), "name", None)
            name = (
                status.lower() if isinstance(status, str) else ("success" if result else "failure")
            )
            tried += len(result) if hasattr(result, "__len__") else 0
            statuses.append(name)
        matched = [s for s in statuses if s != "nomatch"]
        if not matched:
            reason = "nomatch"
        elif all(s == "success" for s in matched):
            reason = "sent"
        else:
            reason = next(s for s in matched if s != "success")
            if any(s == "success" for s in matched):
                reason = "partial"
        delivered = reason == "sent"
        if delivered:
            log.info(
                "alerts %s: %s to care team %s step %d (%d services)",
                n.alert_ids,
                n.purpose,
                n.care_team,
                n.step,
                tried,
            )
        else:
            log.warning(
                "alerts %s (patient %s): delivery to care team %s step %d failed: %s",
                n.alert_ids,
                n.patient,
                n.care_team,
                n.step,
                reason,
            )
        return DeliveryResult(delivered, reason, tried)


class ConsoleNotifier:
    """Prints one line per notification to a text stream (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    async def deliver(self, notification: Notification) -> DeliveryResult:
        """Write ``<time> [URGENT] patient <id> step 0 (care-team): <title> (alert <id>), ...``."""
        n = notification
        stream = self.stream if self.stream is not None else sys.stdout
        items = ", ".join(f"{a.title} (alert {a.alert.id})" for a in n.alerts)
        line = (
            f"{format_time(n.at)} [{n.severity.upper()}] {n.purpose} patient {n.patient} "
            f"step {n.step} ({n.step_name}): {items}\n"
        )
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError) as exc:
            log.warning("alerts %s: console write failed: %s", n.alert_ids, type(exc).__name__)
            return DeliveryResult(False, "error", 1)
        return DeliveryResult(True, "sent", 1)


@dataclass(frozen=True, slots=True)
class SentNotification:
    """One notification a :class:`RecordingNotifier` was asked to send, as rendered."""

    notification: Notification
    title: str
    body: str
    short: str
    delivered: bool


class RecordingNotifier:
    """Records what it is asked to send.

    ``fail=True`` reports every delivery as failed; ``fail_tags`` fails those whose step
    tags are all in it (a charge nurse's pager works while the primary nurse's does not).
    """

    def __init__(self, *, fail: bool = False, fail_tags: Collection[str] = ()) -> None:
        self.fail = fail
        self.fail_tags = frozenset(fail_tags)
        self.sent: list[SentNotification] = []

    async def deliver(self, notification: Notification) -> DeliveryResult:
        """Record the notification and report it sent (or failed)."""
        n = notification
        failed = self.fail or (bool(self.fail_tags) and set(n.tags) <= self.fail_tags)
        self.sent.append(
            SentNotification(
                n, notification_title(n), notification_body(n), notification_short(n), not failed
            )
        )
        if failed:
            return DeliveryResult(False, "failure", 1)
        return DeliveryResult(True, "sent", 1)

    @property
    def delivered(self) -> list[Notification]:
        """The notifications reported as delivered."""
        return [s.notification for s in self.sent if s.delivered]


__all__ = [
    "SMS_SCHEMAS",
    "AppriseNotifier",
    "ConsoleNotifier",
    "DeliveryResult",
    "Notification",
    "NotifiedAlert",
    "Notifier",
    "Purpose",
    "RecordingNotifier",
    "SentNotification",
    "is_sms_like",
    "notification_body",
    "notification_short",
    "notification_title",
]
