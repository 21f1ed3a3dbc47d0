"""The hub's local health and metrics endpoint: ``GET /healthz`` (JSON), ``GET /metrics``.

A few lines over :func:`asyncio.start_server` rather than an ASGI server: the hub process
stays small (no uvicorn), and the endpoint is for a local supervisor or a Prometheus
node agent on 127.0.0.1, one short request at a time. Readings' values and patient
identifiers are never served: counters, device ids, times and battery levels only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

log = logging.getLogger(__name__)

StatusSource = Callable[[], Awaitable[Mapping[str, Any]]]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MAX_REQUEST_LINE = 4096


class HealthServer:
    """Serves a gateway's status on ``host:port`` (port 0: any free port, see ``port``)."""

    def __init__(self, status: StatusSource, host: str = "127.0.0.1", port: int = 0) -> None:
        self.status = status
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; ``port`` is the bound port afterwards."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=_MAX_REQUEST_LINE
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health endpoint on http://%s:%d/healthz", self.host, self.port)

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def run(self) -> None:
        """Serve until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body = await asyncio.wait_for(self._respond(reader), timeout=10)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        except Exception:
            log.exception("health endpoint failed to build a response")
            status, ctype, body = 500, "text/plain", b"internal error\n"
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Internal Server Error')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\nCache-Control: no-store\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        request = (await reader.readline()).decode("latin-1").split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # headers are not needed
        if len(request) != 3 or not request[2].startswith("HTTP/"):
            return 400, "text/plain", b"bad request\n"
        method, target = request[0], request[1].split("?", 1)[0]
        if target not in ("/healthz", "/metrics"):
            return 404, "text/plain", b"not found: /healthz or /metrics\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        status = await self.status()
        if target == "/healthz":
            return 200, "application/json", orjson.dumps(status) + b"\n"
        return 200, _PROMETHEUS_TYPE, prometheus_text(status).encode()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    """A sample value without losing precision (timestamps are ~1e9)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text).timestamp()
    return None


# (status key, metric name, type, help)
_SCALARS = (
    ("readings_in", "readings_in_total", "counter", "Readings decoded from devices."),
    ("rejected", "rejected_total", "counter", "Device inputs that could not be decoded."),
    ("quarantined", "quarantined", "gauge", "Device inputs kept in quarantine."),
    ("queued", "queued", "gauge", "Readings in the outbox awaiting acknowledgement."),
    ("queued_bytes", "queued_bytes", "gauge", "Bytes the queue counts against its budget."),
    ("budget_bytes", "budget_bytes", "gauge", "The outbox's byte budget (0: none)."),
    ("sent", "sent_total", "counter", "Readings acknowledged by the backend."),
    ("bundles_sent", "bundles_sent_total", "counter", "Bundles published or posted."),
    ("resends", "resends_total", "counter", "Bundles sent again for want of an ack."),
    ("connected", "uplink_connected", "gauge", "1 while the uplink is connected."),
    ("thinning", "outbox_thinning", "gauge", "1 while the budget is reached and thinning."),
)

# (device state key, metric name, type, help)
_PER_DEVICE = (
    ("readings_in", "device_readings_in_total", "counter", "Readings received per device."),
    ("queued", "device_queued", "gauge", "Readings queued per device."),
    ("battery", "device_battery_percent", "gauge", "Last battery level reported."),
    ("last_seen", "device_last_seen_timestamp_seconds", "gauge", "Last advertisement or data."),
)


def prometheus_text(status: Mapping[str, Any]) -> str:
    """A gateway status dict in the Prometheus text exposition format (version 0.0.4)."""
    prefix = "wardwatch_gateway_"
    gw = f'gateway="{_label(str(status.get("gateway", "")))}"'
    lines: list[str] = []
    for key, name, kind, text in _SCALARS:
        if key not in status:
            continue
        lines += [f"# HELP {prefix}{name} {text}", f"# TYPE {prefix}{name} {kind}"]
        lines.append(f"{prefix}{name}{{{gw}}} {_num(float(status[key]))}")
    name = f"{prefix}dropped_total"
    lines += [
        f"# HELP {name} Readings not queued because the outbox budget was reached.",
        f"# TYPE {name} counter",
    ]
    for d in status.get("dropped_by", ()):
        labels = (
            f'{gw},device="{_label(d["device"])}",kind="{_label(d["kind"])}",'
            f'reason="{_label(d["reason"])}"'
        )
        lines.append(f"{name}{{{labels}}} {int(d['count'])}")
    devices: Mapping[str, Mapping[str, Any]] = status.get("devices", {})
    for key, metric, kind, text in _PER_DEVICE:
        name = prefix + metric
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for device, state in sorted(devices.items()):
            value = state.get(key)
            if key == "last_seen":
                value = _timestamp(value)
            if value is None:
                continue
            lines.append(f'{name}{{{gw},device="{_label(device)}"}} {_num(float(value))}')
    return "\n".join(lines) + "\n"
