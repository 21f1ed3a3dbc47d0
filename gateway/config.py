"""The hub's configuration: a TOML file with environment overrides, and device pairing.

Configuration is a TOML file (``[gateway]`` and ``[[devices]]``, see
``deploy/gateway/hub.example.toml`` and ``docs/operations-hub.md``); every scalar
``[gateway]`` key can be overridden by an environment variable ``WARDWATCH_GATEWAY_<KEY>``
(``WARDWATCH_GATEWAY_PASSWORD``, ``WARDWATCH_GATEWAY_TOKEN``, ...), so secrets can stay out
of the file. Secrets are never logged or shown in a ``repr``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.ble import PairedDevice
from gateway.errors import GatewayError
from gateway.outbox import (
    DEFAULT_MAX_BYTES,
    DEFAULT_THIN_INTERVAL,
    DEFAULT_THIN_KINDS,
    OutboxBudget,
)
from gateway.profiles import ProfileRegistry
from wardwatch.mqtt import BrokerAddress
from wardwatch.vocabulary import KINDS

ENV_PREFIX = "WARDWATCH_GATEWAY_"
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_size(value: object) -> int:
    """Bytes from an int or a string such as ``"256MiB"``, ``"500MB"``, ``"1G"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if m is None:
        raise ValueError(f"{value!r} is not a size (bytes, or a number with KiB/MiB/GiB/KB/MB/GB)")
    unit = (m.group(2) or "").lower().removesuffix("b")
    return int(m.group(1)) * _SIZE_UNITS.get(unit, 1)


def _as_str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return int(value)


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _as_kinds(value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(k, str) for k in items):
        raise ValueError("expected a list of measurement kinds")
    kinds = tuple(k.strip() for k in items if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown measurement kind(s) {unknown} (known: {sorted(KINDS)})")
    return kinds


#: [gateway] keys and how their values (TOML or environment strings) are read
_GATEWAY_KEYS: Mapping[str, Callable[[object], object]] = {
    "id": _as_str,
    "uplink": _as_str,
    "outbox": _as_str,
    "batch_size": _as_int,
    "ack_timeout": _as_float,
    "linger": _as_float,
    "heartbeat": _as_float,
    "token": _as_str,
    "username": _as_str,
    "password": _as_str,
    "ca_file": _as_str,
    "cert_file": _as_str,
    "key_file": _as_str,
    "device_broker": _as_str,
    "outbox_max_bytes": parse_size,
    "outbox_max_rows": _as_int,
    "thin_kinds": _as_kinds,
    "thin_interval": _as_float,
    "health_host": _as_str,
    "health_port": _as_int,
}
_DEVICE_KEYS = frozenset({"id", "patient", "address", "name", "topic", "profile"})


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
    linger: float = 0.2
    """Seconds the MQTT uplink waits for more readings before sending a part-full bundle."""
    heartbeat: float = 60.0
    token: str | None = field(default=None, repr=False)
    """Bearer token for the HTTP uplink."""
    device_broker: str | None = None
    """``mqtt://`` URL of the site broker MQTT devices publish to (None: no MQTT devices)."""
    username: str | None = None
    """MQTT uplink user name (overrides one in the URL)."""
    password: str | None = field(default=None, repr=False)
    """MQTT uplink password (overrides one in the URL)."""
    ca_file: str | None = None
    """CA bundle to verify an ``mqtts://`` broker (default: the system's)."""
    cert_file: str | None = None
    """Client certificate (PEM) for an ``mqtts://`` broker that asks for one."""
    key_file: str | None = None
    """The client certificate's key (PEM), if not in ``cert_file``."""
    outbox_max_bytes: int | None = DEFAULT_MAX_BYTES
    outbox_max_rows: int | None = None
    thin_kinds: tuple[str, ...] = tuple(sorted(DEFAULT_THIN_KINDS))
    thin_interval: float = DEFAULT_THIN_INTERVAL
    health_host: str = "127.0.0.1"
    health_port: int = 0
    """Port of the local health endpoint; 0: no endpoint."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise GatewayError naming the first inconsistency."""
        if not self.gateway_id:
            raise GatewayError("gateway id is empty")
        http = self.uplink.startswith(("http://", "https://"))
        if not http and not self.uplink.startswith(("mqtt://", "mqtts://")):
            raise GatewayError("uplink must be an mqtt://, mqtts://, http:// or https:// URL")
        tls_files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k)]
        if tls_files and not self.uplink.startswith("mqtts://"):
            raise GatewayError(f"{', '.join(tls_files)} need an mqtts:// uplink")
        if self.key_file and not self.cert_file:
            raise GatewayError("key_file is set without cert_file")
        for key in tls_files:
            if not Path(getattr(self, key)).is_file():
                raise GatewayError(f"{key} {getattr(self, key)}: no such file")
        if http and (self.username or self.password):
            raise GatewayError("username/password apply to an MQTT uplink; HTTP uses token")
        if not http and self.token:
            raise GatewayError("token applies to an HTTP uplink; MQTT uses username/password")
        if not 0 <= self.health_port <= 65535:
            raise GatewayError(f"health_port {self.health_port} is not a TCP port")
        if self.batch_size < 1:
            raise GatewayError(f"batch_size must be at least 1, got {self.batch_size}")
        by_topic = [d.device_id for d in self.devices if d.topic and not (d.address or d.name)]
        if by_topic and self.device_broker is None:
            raise GatewayError(f"devices {by_topic} are paired by topic but device_broker is unset")
        ids = [d.device_id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise GatewayError(f"device ids must be unique: {sorted(ids)}")

    @classmethod
    def from_toml(cls, path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
        """Load ``[gateway]`` and ``[[devices]]`` from a TOML file, then apply ``env``.

        ``env`` (default ``os.environ``): ``WARDWATCH_GATEWAY_<KEY>`` overrides ``[gateway]``
        key ``<key>`` (``WARDWATCH_GATEWAY_ID``, ``..._UPLINK``, ``..._PASSWORD``, ...).
        """
        env = os.environ if env is None else env
        try:
            with Path(path).open("rb") as f:
                doc = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GatewayError(f"{path}: cannot read gateway configuration: {exc}") from exc
        try:
            return cls.from_mapping(doc, env)
        except GatewayError as exc:
            raise GatewayError(f"{path}: {exc}") from exc

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], env: Mapping[str, str]) -> GatewayConfig:
        """Build from a parsed TOML document and environment overrides."""
        raw = doc.get("gateway")
        if not isinstance(raw, Mapping):
            raise GatewayError("[gateway] table is missing")
        gw: dict[str, object] = {}
        for key, value in raw.items():
            if key not in _GATEWAY_KEYS:
                raise GatewayError(
                    f"[gateway] has unknown key {key!r} (known: {sorted(_GATEWAY_KEYS)})"
                )
            gw[key] = _read(key, value, "[gateway]")
        for key in _GATEWAY_KEYS:
            value = env.get(ENV_PREFIX + key.upper())
            if value is not None and value != "":
                gw[key] = _read(key, value, ENV_PREFIX + key.upper())
        for key in ("id", "uplink"):
            if key not in gw:
                raise GatewayError(f"[gateway] {key} is required (or {ENV_PREFIX}{key.upper()})")
        devices = tuple(_device(n, d) for n, d in enumerate(doc.get("devices", [])))

        def opt(key: str, default: Any = None) -> Any:
            return gw.get(key, default)

        max_bytes = opt("outbox_max_bytes", DEFAULT_MAX_BYTES)
        max_rows = opt("outbox_max_rows")
        return cls(
            gateway_id=opt("id"),
            uplink=opt("uplink"),
            outbox_path=Path(opt("outbox", "/var/lib/wardwatch/outbox.sqlite")),
            devices=devices,
            batch_size=opt("batch_size", 200),
            ack_timeout=opt("ack_timeout", 10.0),
            linger=opt("linger", 0.2),
            heartbeat=opt("heartbeat", 60.0),
            token=opt("token"),
            device_broker=opt("device_broker"),
            username=opt("username"),
            password=opt("password"),
            ca_file=opt("ca_file"),
            cert_file=opt("cert_file"),
            key_file=opt("key_file"),
            outbox_max_bytes=max_bytes or None,  # 0: no byte limit
            outbox_max_rows=max_rows or None,
            thin_kinds=opt("thin_kinds", tuple(sorted(DEFAULT_THIN_KINDS))),
            thin_interval=opt("thin_interval", DEFAULT_THIN_INTERVAL),
            health_host=opt("health_host", "127.0.0.1"),
            health_port=opt("health_port", 0),
        )

    def outbox_budget(self) -> OutboxBudget:
        """The outbox's disk budget and thinning policy."""
        try:
            return OutboxBudget(
                max_bytes=self.outbox_max_bytes,
                max_rows=self.outbox_max_rows,
                thin_kinds=frozenset(self.thin_kinds),
                thin_interval=self.thin_interval,
            )
        except GatewayError as exc:
            raise GatewayError(f"outbox budget: {exc}") from exc

    def uplink_broker(self) -> BrokerAddress:
        """The MQTT uplink's broker with credentials and TLS files applied."""
        addr = BrokerAddress.parse(self.uplink)
        return dataclasses.replace(
            addr,
            username=self.username if self.username is not None else addr.username,
            password=self.password if self.password is not None else addr.password,
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
        )


def _read(key: str, value: object, where: str) -> object:
    try:
        return _GATEWAY_KEYS[key](value)
    except (ValueError, TypeError) as exc:
        # string values (secrets among them) are never echoed
        raise GatewayError(f"{where} {key}: {exc}") from None


def _device(n: int, d: object) -> PairedDevice:
    if not isinstance(d, Mapping):
        raise GatewayError(f"[[devices]] #{n + 1} is not a table")
    unknown = set(d) - _DEVICE_KEYS
    if unknown:
        raise GatewayError(f"[[devices]] #{n + 1} has unknown key(s) {sorted(unknown)}")
    for key in ("id", "patient"):
        if not isinstance(d.get(key), str) or not d[key]:
            raise GatewayError(f"[[devices]] #{n + 1} needs a string {key}")
    for key in _DEVICE_KEYS - {"id", "patient"}:
        if key in d and not isinstance(d[key], str):
            raise GatewayError(f"[[devices]] {d['id']}: {key} must be a string")
    if not any(d.get(k) for k in ("address", "name", "topic")):
        raise GatewayError(f"[[devices]] {d['id']}: needs an address, a name or a topic")
    return PairedDevice(
        device_id=d["id"],
        patient=d["patient"],
        address=d.get("address"),
        name=d.get("name"),
        topic=d.get("topic"),
        profile=d.get("profile"),
    )


def pair_device(
    config_path: str | Path, device: PairedDevice, profiles: ProfileRegistry | None = None
) -> str:
    """Add or replace (by id) ``device`` in the ``[[devices]]`` of a TOML file.

    The rest of the file (comments, order, formatting) is kept; the file is replaced
    atomically with its permissions. Returns ``"added"`` or ``"replaced"``.
    """
    import tomlkit

    path = Path(config_path)
    if sum(x is not None for x in (device.address, device.name, device.topic)) != 1:
        raise GatewayError("pair a device by exactly one of address, name or topic")
    if device.profile is not None:
        registry = profiles if profiles is not None else ProfileRegistry.load()
        if device.profile not in {p.id for p in registry}:
            raise GatewayError(f"unknown device profile {device.profile!r}")
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomlkit.parse(text)
    except (OSError, tomlkit.exceptions.ParseError) as exc:
        raise GatewayError(f"{path}: cannot read gateway configuration: {exc}") from exc
    entry = tomlkit.table()
    entry["id"] = device.device_id
    entry["patient"] = device.patient
    for key in ("address", "name", "topic", "profile"):
        value = getattr(device, key)
        if value is not None:
            entry[key] = value
    devices = doc.get("devices")
    if devices is None:
        devices = tomlkit.aot()
        doc["devices"] = devices
    elif not isinstance(devices, tomlkit.items.AoT):
        raise GatewayError(f"{path}: devices is not an array of tables ([[devices]])")
    outcome = "added"
    for n, existing in enumerate(devices):
        if existing.get("id") == device.device_id:
            devices[n] = entry
            outcome = "replaced"
            continue
        for key in ("address", "name", "topic"):
            value = getattr(device, key)
            if value is not None and str(existing.get(key, "")).upper() == value.upper():
                raise GatewayError(f"{key} {value} is already paired as {existing.get('id')}")
    if outcome == "added":
        devices.append(entry)
    new_text = tomlkit.dumps(doc)
    # refuse to write a configuration the gateway would not start with
    GatewayConfig.from_mapping(tomllib.loads(new_text), os.environ)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    with contextlib.suppress(OSError):
        tmp.chmod(path.stat().st_mode & 0o7777)
    tmp.replace(path)
    return outcome
