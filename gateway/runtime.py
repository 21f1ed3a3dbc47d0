"""The gateway process: devices in, durable outbox, uplink out.

Configuration (the TOML file, environment overrides, pairing) lives in
:mod:`gateway.config`; its names are re-exported here for existing callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.ble import SEQUENCED, BleCollector, DeviceRecorder, PairedDevice
from gateway.config import ENV_PREFIX, GatewayConfig, pair_device, parse_size
from gateway.errors import DecodeError
from gateway.health import HealthServer
from gateway.mqtt_devices import MqttDeviceInput
from gateway.outbox import Outbox, OutboxFullError
from gateway.profiles import ProfileRegistry
from gateway.uplink import HttpUplink, MqttUplink
from wardwatch.fhir import observation_from_reading
from wardwatch.mqtt import BrokerAddress
from wardwatch.reading import Reading

log = logging.getLogger(__name__)

__all__ = [
    "ENV_PREFIX",
    "STATE_INTERVAL",
    "Gateway",
    "GatewayConfig",
    "offline_status",
    "pair_device",
    "parse_size",
]

#: how often the running gateway persists device state for ``gateway devices``
STATE_INTERVAL = 10.0


class Gateway:
    """Composes the device inputs (BLE, MQTT devices), the outbox and the uplink.

    ``profiles`` are the device profiles (default: the packaged ones and
    ``WARDWATCH_PROFILE_DIRS``); ``clock`` stamps readings the device does not time;
    ``record`` keeps what the devices sent (``gateway run --record``, docs/feeds.md).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        scanner_backend: type[Any] | None = None,
        client_backend: type[Any] | None = None,
        profiles: ProfileRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        record: DeviceRecorder | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.profiles = profiles if profiles is not None else ProfileRegistry.load()
        self.outbox = Outbox(config.outbox_path, config.outbox_budget())
        self.uplink: MqttUplink | HttpUplink
        if config.uplink.startswith(("http://", "https://")):
            self.uplink = HttpUplink(
                self.outbox, config.uplink, token=config.token, batch_size=config.batch_size
            )
        else:
            self.uplink = MqttUplink(
                self.outbox,
                config.uplink_broker(),
                config.gateway_id,
                batch_size=config.batch_size,
                ack_timeout=config.ack_timeout,
                linger=config.linger,
                heartbeat=config.heartbeat,
            )
        self.collector = BleCollector(
            config.devices,
            self._on_readings,
            self._on_reject,
            scanner_backend=scanner_backend,
            client_backend=client_backend,
            clock=clock,
            profiles=self.profiles,
            sequences=self.outbox,
            record=record,
        )
        self.device_input: MqttDeviceInput | None = None
        if config.device_broker is not None:
            self.device_input = MqttDeviceInput(
                BrokerAddress.parse(config.device_broker),
                config.devices,
                self.profiles,
                self._on_readings,
                self._on_reject,
                client_id=f"wardwatch-gw-{config.gateway_id}-devices",
                record=record,
                clock=clock,
            )
        self.health: HealthServer | None = None
        if config.health_port:
            self.health = HealthServer(self.health_status, config.health_host, config.health_port)
        #: when each device last sent data (any input); BLE advertisements are in the collector
        self.last_data: dict[str, datetime] = {}

    async def _on_readings(
        self, device: PairedDevice, readings: Sequence[Reading], source: str, payload: bytes
    ) -> None:
        self.last_data[device.device_id] = self.clock()
        observations = [
            observation_from_reading(
                r,
                patient=device.patient,
                device=device.device_id,
                gateway=self.config.gateway_id,
            )
            for r in readings
        ]
        result = await asyncio.to_thread(self.outbox.admit, observations)
        log.debug(
            "device %s: %d readings, %d queued, %d thinned, %d refused",
            device.device_id,
            len(readings),
            result.new,
            result.thinned,
            result.refused,
        )
        if result.new:
            self.uplink.notify()
        if result.refused:
            log.warning(
                "outbox budget reached: %d readings of device %s refused (counted)",
                result.refused,
                device.device_id,
            )
            if source.upper() in SEQUENCED:
                # the device keeps its records: leave its record sequence where it was so
                # that the refused ones are fetched again once the queue has room
                raise OutboxFullError(
                    f"outbox full: {result.refused} records of {device.device_id}"
                )

    async def _on_reject(
        self, device: PairedDevice, source: str, payload: bytes, error: DecodeError
    ) -> None:
        self.last_data[device.device_id] = self.clock()
        log.warning("device %s sent undecodable %s data; quarantined", device.device_id, source)
        await asyncio.to_thread(
            self.outbox.quarantine, device.device_id, source, str(error), payload
        )

    def _last_seen(self) -> dict[str, datetime]:
        seen = dict(self.collector.last_seen)
        for device, at in self.last_data.items():
            if device not in seen or at > seen[device]:
                seen[device] = at
        return seen

    def _battery(self) -> dict[str, int]:
        battery: Mapping[str, int] = getattr(self.collector, "battery", {})
        return dict(battery)

    def persist_device_state(self) -> None:
        """Write last seen and battery levels to the outbox database (for other processes)."""
        self.outbox.record_device_state(self._last_seen(), self._battery())

    async def _persist_state_loop(self) -> None:
        while True:
            await asyncio.sleep(STATE_INTERVAL)
            await asyncio.to_thread(self.persist_device_state)

    async def run(self) -> None:
        """Run until cancelled."""
        log.info(
            "gateway %s starting with %d paired devices",
            self.config.gateway_id,
            len(self.config.devices),
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.uplink.run(), name="uplink")
                tg.create_task(self.collector.run(), name="ble")
                tg.create_task(self._persist_state_loop(), name="device-state")
                if self.device_input is not None:
                    tg.create_task(self.device_input.run(), name="mqtt-devices")
                if self.health is not None:
                    tg.create_task(self.health.run(), name="health")
        finally:
            with contextlib.suppress(Exception):
                self.persist_device_state()
            self.outbox.close()

    async def health_status(self) -> dict[str, Any]:
        """:meth:`status`, computed off the event loop (it reads the outbox database)."""
        return await asyncio.to_thread(self.status)

    def status(self) -> dict[str, Any]:
        """Counters for the status command and health endpoint."""
        last_seen = self._last_seen()
        battery = self._battery()
        stored = self.outbox.device_states()
        devices: dict[str, dict[str, Any]] = {}
        for paired in self.config.devices:
            d = paired.device_id
            state = stored.get(d)
            seen = last_seen.get(d)
            devices[d] = {
                "last_seen": seen.isoformat() if seen else (state.last_seen if state else None),
                "battery": battery.get(d, state.battery if state else None),
                "readings_in": state.readings_in if state else 0,
                "queued": state.queued if state else 0,
                "dropped": state.dropped if state else 0,
            }
        budget = self.outbox.budget
        return {
            "gateway": self.config.gateway_id,
            "connected": self.uplink.stats.connected,
            "readings_in": self.collector.readings_in
            + (self.device_input.readings_in if self.device_input else 0),
            "rejected": self.collector.rejected
            + (self.device_input.rejected if self.device_input else 0),
            "quarantined": self.outbox.quarantined_count(),
            "queued": self.outbox.pending(),
            "queued_bytes": self.outbox.pending_bytes(),
            "budget_bytes": budget.max_bytes or 0,
            "thinning": self.outbox.thinning,
            "sent": self.outbox.sent(),
            "bundles_sent": self.uplink.stats.bundles_sent,
            "resends": self.uplink.stats.resends,
            "dropped": self.outbox.drop_totals(),
            "dropped_by": self.outbox.dropped(),
            "last_seen": {d: t.isoformat() for d, t in last_seen.items()},
            "devices": devices,
        }


# -- operations from another process (the CLI) ------------------------------------------------


def _match(d: PairedDevice) -> str:
    if d.address:
        return f"address {d.address}"
    if d.name:
        return f"name {d.name}"
    return f"topic {d.topic}"


def offline_status(config: GatewayConfig) -> dict[str, Any]:
    """The hub's state as the running gateway persisted it (for ``gateway status``)."""
    if not config.outbox_path.exists():
        box = None
    else:
        box = Outbox(config.outbox_path, config.outbox_budget())
    try:
        states = box.device_states() if box else {}
        devices = []
        for d in config.devices:
            s = states.get(d.device_id)
            devices.append(
                {
                    "id": d.device_id,
                    "patient": d.patient,
                    "match": _match(d),
                    "profile": d.profile,
                    "last_seen": s.last_seen if s else None,
                    "battery": s.battery if s else None,
                    "readings_in": s.readings_in if s else 0,
                    "queued": s.queued if s else 0,
                    "dropped": s.dropped if s else 0,
                }
            )
        return {
            "gateway": config.gateway_id,
            "outbox": str(config.outbox_path),
            "queued": box.pending() if box else 0,
            "queued_bytes": box.pending_bytes() if box else 0,
            "budget_bytes": config.outbox_max_bytes or 0,
            "sent": box.sent() if box else 0,
            "quarantined": box.quarantined_count() if box else 0,
            "dropped": box.drop_totals() if box else {"thinned": 0, "refused": 0},
            "dropped_by": box.dropped() if box else [],
            "devices": devices,
        }
    finally:
        if box is not None:
            box.close()
