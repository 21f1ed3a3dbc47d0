"""Running a profile's samples: payload in, expected readings (or error) out, a diff if not."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from gateway.decoders import DeviceContext
from gateway.errors import DecodeError
from gateway.profiles._model import ExpectedReading, Profile, Sample, flatten
from wardwatch.errors import WardwatchError


@dataclass(frozen=True, slots=True)
class SampleResult:
    """How one sample went: ``diff`` is empty when it passed."""

    profile: str
    sample: str
    diff: str = ""

    @property
    def passed(self) -> bool:
        """True when the sample gave what it expects."""
        return not self.diff


def _time(text: str, what: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DecodeError(f"sample {what} {text!r} is not ISO 8601") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _decode(profile: Profile, sample: Sample) -> list[ExpectedReading]:
    received_at = _time(sample.received_at, "received_at")
    if sample.hex is not None and profile.advertisement is not None:
        readings = profile.decode_advertisement(
            bytes.fromhex(sample.hex),
            received_at=received_at,
            service_data=sample.service_data,
            manufacturer_id=sample.manufacturer_id,
        ).readings
    elif sample.hex is not None:
        start = sample.cgm_session_start
        ctx = DeviceContext(cgm_session_start=_time(start, "cgm_session_start") if start else None)
        readings = profile.decode_ble(
            bytes.fromhex(sample.hex),
            characteristic=sample.characteristic,
            received_at=received_at,
            device=ctx,
        )
    elif sample.json is not None:
        payload = sample.json if not isinstance(sample.json, str) else sample.json.encode()
        readings = profile.decode_json(
            payload if isinstance(payload, bytes) else orjson.dumps(payload)
        )
    else:
        raise DecodeError("sample has neither hex nor json")
    return flatten(readings)


def _line(e: ExpectedReading) -> str:
    value = "absent:" + (e.absent or "?") if e.value is None else f"{e.value:g}"
    at = f" at {e.at}" if e.at else ""
    return f"{e.kind} = {value} {e.unit or ''}".rstrip() + at


def _same(want: ExpectedReading, got: ExpectedReading) -> bool:
    if want.kind != got.kind or want.unit != got.unit:
        return False
    if want.at is not None and _time(want.at, "at") != _time(got.at or "", "at"):
        return False
    if want.value is None or got.value is None:
        return want.value is None and got.value is None and want.absent in (None, got.absent)
    return math.isclose(want.value, got.value, rel_tol=1e-9, abs_tol=1e-6)


def run_sample(profile: Profile, sample: Sample) -> SampleResult:
    """Decode one sample and compare with what it expects."""
    try:
        got = _decode(profile, sample)
    except (WardwatchError, ValueError) as exc:
        if sample.error is not None and sample.error in str(exc):
            return SampleResult(profile.id, sample.name)
        wanted = f"error containing {sample.error!r}" if sample.error else "readings"
        return SampleResult(profile.id, sample.name, f"expected {wanted}, got error: {exc}")
    if sample.error is not None:
        lines = "\n".join("  " + _line(g) for g in got)
        return SampleResult(
            profile.id,
            sample.name,
            f"expected error containing {sample.error!r}, got readings:\n{lines}",
        )
    want = list(sample.expect or ())
    if len(want) == len(got) and all(_same(w, g) for w, g in zip(want, got, strict=True)):
        return SampleResult(profile.id, sample.name)
    shown = [
        _line(g if w.at is not None else ExpectedReading(g.kind, g.value, g.unit, g.absent))
        for w, g in zip(want, got, strict=False)
    ]
    shown += [_line(g) for g in got[len(want) :]]
    diff = difflib.unified_diff([_line(w) for w in want], shown, "expected", "decoded", lineterm="")
    return SampleResult(profile.id, sample.name, "\n".join(diff))


def run_samples(profile: Profile) -> list[SampleResult]:
    """Every sample of ``profile``."""
    return [run_sample(profile, s) for s in profile.samples]
