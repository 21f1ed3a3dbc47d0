"""The gateway process: devices in, durable outbox, uplink out."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.ble import BleCollector, PairedDevice
from gateway.errors import DecodeError, GatewayError
from gateway.mqtt_devices import MqttDeviceInput
from gateway.outbox import Outbox
from gateway.profiles import ProfileRegistry
from gateway.uplink import HttpUplink, MqttUplink
from wardwatch.fhir import observation_from_reading
from wardwatch.mqtt import BrokerAddress
from wardwatch.reading import Reading

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What a hub needs to know: who it is, where the backend is, which devices are whose."""

    gateway_id: str
    uplink: str
    """``mqtt://``/``mqtts://`` broker URL, or ``http(s)://`` base URL of the ingest API."""
    outbox_path: Path
    devices: tuple[PairedDevice, ...] = ()
    batch_size: int = 200
    ack_timeout: float = 10.0
    heartbeat: float = 60.0
    token: str | None = None
    """Bearer token for the HTTP uplink."""
    device_broker: str | None = None
    """``mqtt://`` URL of the site broker MQTT devices publish to (None: no MQTT devices)."""

    @classmethod
    def from_toml(cls, path: str | Path) -> GatewayConfig:
        """Load ``[gateway]`` and ``[[devices]]`` from a TOML file."""
        with Path(path).open("rb") as f:
            doc = tomllib.load(f)
        try:
            gw = doc["gateway"]
            devices = tuple(
                PairedDevice(
                    device_id=d["id"],
                    patient=d["patient"],
                    address=d.get("address"),
                    name=d.get("name"),
                    topic=d.get("topic"),
                    profile=d.get("profile"),
                )
                for d in doc.get("devices", [])
            )
            return cls(
                gateway_id=gw["id"],
                uplink=gw["uplink"],
                outbox_path=Path(gw.get("outbox", "/var/lib/wardwatch/outbox.sqlite")),
                devices=devices,
                batch_size=int(gw.get("batch_size", 200)),
                ack_timeout=float(gw.get("ack_timeout", 10.0)),
                heartbeat=float(gw.get("heartbeat", 60.0)),
                token=gw.get("token"),
                device_broker=gw.get("device_broker"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GatewayError(f"{path}: invalid gateway configuration ({exc!r})") from exc


class Gateway:
    """Composes the device inputs (BLE, MQTT devices), the outbox and the uplink.

    ``profiles`` are the device profiles (default: the packaged ones and
    ``WARDWATCH_PROFILE_DIRS``); ``clock`` stamps readings the device does not time.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        scanner_backend: type[Any] | None = None,
        client_backend: type[Any] | None = None,
        profiles: ProfileRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.profiles = profiles if profiles is not None else ProfileRegistry.load()
        self.outbox = Outbox(config.outbox_path)
        self.uplink: MqttUplink | HttpUplink
        if config.uplink.startswith(("http://", "https://")):
            self.uplink = HttpUplink(
                self.outbox, config.uplink, token=config.token, batch_size=config.batch_size
            )
        else:
            self.uplink = MqttUplink(
                self.outbox,
                BrokerAddress.parse(config.uplink),
                config.gateway_id,
                batch_size=config.batch_size,
                ack_timeout=config.ack_timeout,
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
            )

    async def _on_readings(
        self, device: PairedDevice, readings: Sequence[Reading], source: str, payload: bytes
    ) -> None:
        observations = [
            observation_from_reading(
                r,
                patient=device.patient,
                device=device.device_id,
                gateway=self.config.gateway_id,
            )
            for r in readings
        ]
        new = await asyncio.to_thread(self.outbox.put, observations)
        log.debug("device %s: %d readings queued (%d new)", device.device_id, len(readings), new)
        self.uplink.notify()

    async def _on_reject(
        self, device: PairedDevice, source: str, payload: bytes, error: DecodeError
    ) -> None:
        log.warning("device %s sent undecodable %s data; quarantined", device.device_id, source)
        await asyncio.to_thread(
            self.outbox.quarantine, device.device_id, source, str(error), payload
        )

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
                if self.device_input is not None:
                    tg.create_task(self.device_input.run(), name="mqtt-devices")
        finally:
            self.outbox.close()

    def status(self) -> dict[str, Any]:
        """Counters for the status command and health endpoint."""
        return {
            "gateway": self.config.gateway_id,
            "connected": self.uplink.stats.connected,
            "readings_in": self.collector.readings_in
            + (self.device_input.readings_in if self.device_input else 0),
            "rejected": self.collector.rejected
            + (self.device_input.rejected if self.device_input else 0),
            "queued": self.outbox.pending(),
            "sent": self.outbox.sent(),
            "bundles_sent": self.uplink.stats.bundles_sent,
            "resends": self.uplink.stats.resends,
            "last_seen": {d: t.isoformat() for d, t in self.collector.last_seen.items()},
        }
