"""Gateway liveness: every hub's retained status message, recorded in the store.

Each gateway publishes ``{"gateway", "status": "online"|"offline", "at"[, "queued",
"dropped"]}`` on ``wardwatch/v1/gw/{id}/status`` (retained, QoS 1): ``online`` when it
connects and on each heartbeat, ``offline`` as its last will. :class:`GatewayStatusWatcher`
holds one plain (not shared: every backend process sees every status) subscription to
``wardwatch/v1/gw/+/status`` and records what it reads with
:meth:`wardwatch.store.Store.record_gateway_status`, which keeps the newest status by its
``at``: a retained status delivered again on reconnect, or one a slower replica records
late, changes nothing.

The last will is the exception to "its ``at``": the gateway composes it when it starts
(``gateway.uplink.MqttUplink.run``) and the broker publishes it, unchanged, only when the
connection is lost, so its ``at`` is older than the ``online`` heartbeats it follows. An
``offline`` whose ``at`` is not newer than the stored ``online`` is therefore recorded at
the time it was received (never before the stored status); an ``offline`` already stored
is not moved by the same will delivered again.

Bad input never stops the watcher: a payload that is not a status (``malformed-json``,
``contract``, ``too-large``) or that names another gateway than its topic
(``gateway-mismatch``) is quarantined with its reason (source ``mqtt:<topic>``). An empty
payload is an operator clearing the retained status (a decommissioned hub): nothing to
record. If the store is unavailable, the message is held and retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

import aiomqtt
import orjson

from ingest.errors import IngestError
from wardwatch import topics
from wardwatch.mqtt import BrokerAddress
from wardwatch.store import GATEWAY_STATUSES, GatewayState, GatewayStatus, QuarantineItem, Store

log = logging.getLogger(__name__)

#: The plain subscription to every gateway's status.
STATUS_SUBSCRIPTION = f"{topics.PREFIX}/+/status"
#: A status message is a few hundred bytes; anything much larger is not one.
MAX_STATUS_BYTES = 64 * 1024

Clock = Callable[[], datetime]
Outcome = Literal["recorded", "stale", "quarantined", "cleared"]


class StatusError(IngestError):
    """A status message refused; ``code`` is its quarantine reason code."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise StatusError("contract", f"status 'at' must be an ISO 8601 time, got {value!r}")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise StatusError("contract", f"status 'at' {value!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise StatusError("contract", f"status 'at' {value!r} has no time zone")
    return at.astimezone(UTC)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StatusError("contract", f"status {name!r} must be a count (integer >= 0)")
    return value


def parse_status(topic: str, payload: bytes, received_at: datetime) -> GatewayState:
    """The gateway state a status message on ``topic`` reports; :class:`StatusError` names
    what is wrong with it otherwise (pure: no I/O)."""
    gateway = topics.gateway_of(topic)
    if gateway is None or topic != topics.status_topic(gateway):
        raise StatusError("contract", f"{topic!r} is not a gateway status topic")
    if len(payload) > MAX_STATUS_BYTES:
        raise StatusError(
            "too-large", f"status message of {len(payload)} bytes (limit {MAX_STATUS_BYTES})"
        )
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise StatusError("malformed-json", f"status message is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise StatusError("contract", "status message is not a JSON object")
    named = doc.get("gateway")
    if not isinstance(named, str) or not named:
        raise StatusError("contract", "status message has no 'gateway' id")
    if named != gateway:
        raise StatusError(
            "gateway-mismatch", f"status names gateway {named!r} on the topic of {gateway!r}"
        )
    status = doc.get("status")
    if status not in GATEWAY_STATUSES:
        raise StatusError("contract", f"status {status!r} is not 'online' or 'offline'")
    if "at" not in doc:
        raise StatusError("contract", "status message has no 'at' time")
    at = _time(doc["at"])
    queued = doc.get("queued")
    dropped = doc.get("dropped", {})
    if not isinstance(dropped, dict) or not all(isinstance(k, str) for k in dropped):
        raise StatusError("contract", "status 'dropped' must be an object of counts by reason")
    return GatewayState(
        id=gateway,
        status=cast(GatewayStatus, status),
        status_at=at,
        updated_at=received_at,
        queued=None if queued is None else _count("queued", queued),
        dropped={reason: _count(f"dropped.{reason}", n) for reason, n in dropped.items()},
    )


def _opt_iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def gateway_as_json(state: GatewayState) -> dict[str, Any]:
    """One gateway as JSON (``wardwatch gateways list --json``)."""
    return {
        "id": state.id,
        "status": state.status,
        "status_at": _opt_iso(state.status_at),
        "updated_at": _opt_iso(state.updated_at),
        "queued": state.queued,
        "dropped": dict(state.dropped),
        "last_bundle_at": _opt_iso(state.last_bundle_at),
    }


def gateways_as_json(states: Iterable[GatewayState]) -> list[dict[str, Any]]:
    """A JSON list of gateways."""
    return [gateway_as_json(s) for s in states]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class StatusStats:
    """What the watcher did, by outcome, for tests and operators."""

    recorded: int = 0
    stale: int = 0
    """Statuses older than the one stored (retained ones delivered again, replicas)."""
    quarantined: int = 0
    cleared: int = 0
    store_failures: int = 0


class GatewayStatusWatcher:
    """Records every gateway's status messages in the store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        broker: BrokerAddress,
        *,
        client_id: str | None = None,
        clock: Clock = _utcnow,
        retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
    ) -> None:
        self.store = store
        self.broker = broker
        self.client_id = client_id or f"wardwatch-status-{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.ready = asyncio.Event()
        self.stats = StatusStats()

    async def run(self) -> None:
        """Watch until cancelled, reconnecting with backoff when the broker goes away."""
        delay = 0.5
        while True:
            try:
                async with self.broker.client(self.client_id) as client:
                    await client.subscribe(STATUS_SUBSCRIPTION, qos=1)
                    log.info("gateway status watcher %s subscribed", self.client_id)
                    self.ready.set()
                    delay = 0.5
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        await self._handle(message.topic.value, payload)
            except aiomqtt.MqttError as exc:
                self.ready.clear()
                log.warning("status watcher %s lost the broker (%s); retrying", self.client_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _handle(self, topic: str, payload: bytes) -> None:
        """Handle one message, holding it (with backoff) while the store is unavailable."""
        delay = self.retry_delay
        while True:
            try:
                outcome = await asyncio.to_thread(self.handle, topic, payload)
            except Exception as exc:  # StoreError, or a driver error the store did not wrap
                self.stats.store_failures += 1
                log.warning(
                    "recording a gateway status failed (%s); retrying in %.1f s",
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
            else:
                setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
                return

    def handle(self, topic: str, payload: bytes) -> Outcome:
        """Record (or quarantine) one status message; raises only if the store fails."""
        received = self.clock()
        if not payload:
            log.info("retained status cleared on %s", topic)
            return "cleared"
        try:
            state = parse_status(topic, payload, received)
        except StatusError as exc:
            item = QuarantineItem(received, f"mqtt:{topic}", exc.code, str(exc), payload)
            self.store.quarantine([item])
            log.warning("quarantined a status message on %s: %s", topic, exc.code)
            return "quarantined"
        if state.status == "offline":
            state = self._as_will(state, received)
        if not self.store.record_gateway_status(state):
            log.debug("status of %s at %s is older than the stored one", state.id, state.status_at)
            return "stale"
        # every heartbeat of every hub is recorded: only going offline is worth INFO
        level = logging.INFO if state.status == "offline" else logging.DEBUG
        log.log(level, "gateway %s is %s", state.id, state.status)
        return "recorded"

    def _as_will(self, state: GatewayState, received: datetime) -> GatewayState:
        """An ``offline`` (the last will, composed when the gateway started) that is not
        newer than the stored ``online``: it happened now, not at its ``at``."""
        current = self.store.get_gateway(state.id)
        if (
            current is None
            or current.status != "online"
            or current.status_at is None
            or state.status_at is None
            or state.status_at > current.status_at
        ):
            return state
        return replace(state, status_at=max(received, current.status_at))


def _dropped_text(dropped: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "-"


def gateways_table(states: Iterable[GatewayState]) -> str:
    """The gateways as text lines (``wardwatch gateways list``)."""
    lines = []
    for s in states:
        queued = "-" if s.queued is None else str(s.queued)
        lines.append(
            f"{s.id:<20}  {s.status or 'unknown':<8}  {_opt_iso(s.status_at) or '-':<32}  "
            f"queued {queued:<6}  dropped {_dropped_text(s.dropped):<22}  "
            f"last bundle {_opt_iso(s.last_bundle_at) or '-'}"
        )
    return "".join(f"{line}\n" for line in lines)
