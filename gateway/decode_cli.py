"""``wardwatch decode``: device bytes or vendor JSON in, FHIR Observations out.

For vendors and testers. The logic lives here, apart from argparse, so it is callable and
testable without a subprocess; :mod:`wardwatch.cli` only parses arguments and prints.
Every failure to decode becomes ``(2, {"error": "<what is wrong>"})``; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.decoders import decode_characteristic
from gateway.errors import DecodeError
from wardwatch.errors import WardwatchError
from wardwatch.fhir import observation_from_reading
from wardwatch.reading import Reading

EXIT_OK = 0
EXIT_UNDECODABLE = 2


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    """What ``wardwatch decode`` was asked to decode, and for whom."""

    characteristic: str | None = None
    profile: str | None = None
    hex_payload: str | None = None
    json_payload: str | None = None
    patient: str = "example-patient"
    device: str = "example-device"
    at: str | None = None
    """ISO 8601 reception time; naive times are taken as UTC; None is now."""
    profile_dirs: Sequence[Path] = ()
    """Drop-in profile directories beyond the packaged ones and ``WARDWATCH_PROFILE_DIRS``."""


def parse_hex(text: str) -> bytes:
    """Bytes from hex, tolerating spaces, colons and a ``0x`` prefix."""
    cleaned = text.strip().replace(" ", "").replace(":", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise DecodeError(f"--hex {text!r} is not a hexadecimal byte string") from None


def parse_received_at(text: str | None) -> datetime:
    """The reception time: ISO 8601 (naive taken as UTC), or now."""
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise DecodeError(f"--at {text!r} is not an ISO 8601 time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def decode_readings(request: DecodeRequest) -> tuple[Reading, ...]:
    """The readings ``request`` decodes to; DecodeError (or a WardwatchError) otherwise."""
    received_at = parse_received_at(request.at)
    if request.profile is not None:
        from gateway.profiles import ProfileRegistry

        registry = ProfileRegistry.load(extra_dirs=request.profile_dirs)
        profile = registry.get(request.profile)
        if request.json_payload is not None:
            return profile.decode_json(request.json_payload)
        if request.hex_payload is None:
            raise DecodeError("--profile needs --hex or --json-payload")
        return profile.decode_ble(
            parse_hex(request.hex_payload),
            characteristic=request.characteristic,
            received_at=received_at,
        )
    if request.characteristic is None:
        raise DecodeError("give --characteristic or --profile")
    if request.hex_payload is None:
        raise DecodeError("--characteristic needs --hex")
    data = parse_hex(request.hex_payload)
    return decode_characteristic(request.characteristic, data, received_at=received_at).readings


def run_decode(request: DecodeRequest) -> tuple[int, dict[str, Any]]:
    """(exit code, JSON document) for ``wardwatch decode``."""
    try:
        readings = decode_readings(request)
        observations = [
            observation_from_reading(r, patient=request.patient, device=request.device)
            for r in readings
        ]
    except (WardwatchError, ValueError) as exc:
        return EXIT_UNDECODABLE, {"error": str(exc)}
    return EXIT_OK, {"observations": observations}
