"""What every decoder shares: the result type, the device context, a bounds-checked reader."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from gateway.decoders._sfloat import MedFloat, decode_float, decode_sfloat
from gateway.decoders._time import DATE_TIME_SIZE, DateTime, decode_date_time
from gateway.errors import DecodeError
from wardwatch.reading import Reading

_EMPTY: Mapping[str, object] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded characteristic value.

    ``readings`` are the measurements in the shared vocabulary (possibly none: features,
    control-point responses, intermediate cuff pressure); ``fields`` are the characteristic's
    own decoded fields, JSON-compatible (numbers, strings, booleans, None, lists, dicts).
    IEEE 11073 numbers appear as floats, or as the special value's name ("NaN", "NRes",
    "+INF", "-INF", "reserved").
    """

    characteristic: str
    readings: tuple[Reading, ...] = ()
    fields: Mapping[str, object] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """What the gateway learned from the device earlier in the connection.

    Some characteristics cannot be decoded from their own bytes alone: CGM Measurement
    records carry minutes since the session start (read from CGM Session Start Time,
    0x2AAA) and an E2E-CRC only when CGM Feature (0x2AA8) announces it.
    """

    cgm_session_start: datetime | None = None
    """When the CGM session started (UTC-aware), to resolve record time offsets."""
    cgm_e2e_crc: bool = False
    """True when CGM Feature announces E2E-CRC: every record then ends in a checked CRC."""


NO_CONTEXT = DeviceContext()

Decoder = Callable[[bytes, datetime, DeviceContext], Decoded]


def frozen(fields: Mapping[str, object]) -> Mapping[str, object]:
    """A read-only copy of ``fields`` for :class:`Decoded`."""
    return MappingProxyType(dict(fields))


def check_layout(
    data: bytes, layout: Sequence[tuple[str, int, bool]], flags: int, *, flag_digits: int = 2
) -> None:
    """Raise DecodeError unless ``data`` holds every field of ``layout``.

    ``layout`` lists (field name, size in bytes, announced by a flag) in wire order, the
    flags field included. When the mandatory fields do not fit, the message names the first
    one cut short; when the announced ones do not, it names all of them, since which one the
    device left out cannot be told from the bytes: "flags 0x1B announce Time Offset,
    Glucose Concentration, Type-Sample Location and Sensor Status Annunciation but payload
    has 15 of 17 bytes".
    """
    total = sum(size for _, size, _ in layout)
    if len(data) >= total:
        return
    minimum = _minimum(layout)
    if not data:
        raise DecodeError(f"payload is empty; at least {minimum} bytes are needed")
    if len(data) < minimum:
        pos = 0
        for name, size, announced in layout:
            if not announced and pos + size > len(data):
                raise DecodeError(
                    f"payload has {len(data)} bytes, fewer than the {minimum}-byte minimum "
                    f"(no room for {name})"
                )
            pos += size if not announced else 0
    names = [name for name, _, announced in layout if announced]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    raise DecodeError(
        f"flags 0x{flags:0{flag_digits}X} announce {listed} but payload has "
        f"{len(data)} of {total} bytes"
    )


def _minimum(layout: Sequence[tuple[str, int, bool]]) -> int:
    return sum(size for _, size, announced in layout if not announced)


class Reader:
    """Sequential little-endian reads over a payload, raising DecodeError past the end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return len(self.data) - self.pos

    def _take(self, size: int, name: str) -> bytes:
        if self.pos + size > len(self.data):
            raise DecodeError(
                f"{name} needs {size} bytes at offset {self.pos} but payload has "
                f"{len(self.data)} bytes"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def uint(self, size: int, name: str) -> int:
        """An unsigned little-endian integer of ``size`` bytes."""
        return int.from_bytes(self._take(size, name), "little")

    def sint(self, size: int, name: str) -> int:
        """A signed little-endian integer of ``size`` bytes."""
        return int.from_bytes(self._take(size, name), "little", signed=True)

    def sfloat(self, name: str) -> MedFloat:
        """An IEEE 11073 SFLOAT."""
        return decode_sfloat(self._take(2, name))

    def float32(self, name: str) -> MedFloat:
        """An IEEE 11073 FLOAT."""
        return decode_float(self._take(4, name))

    def date_time(self, name: str) -> DateTime:
        """A Bluetooth Date Time."""
        return decode_date_time(self._take(DATE_TIME_SIZE, name), what=name)


def measurement_time(
    stamp: DateTime | None, received_at: datetime, *, offset_minutes: int = 0
) -> tuple[datetime, tuple[tuple[str, str], ...]]:
    """The effective time of a reading and any note about how it was chosen.

    A device time stamp is taken as UTC; correcting a device's local clock (PHD IG
    coincident time stamp) is the gateway's job, not the decoder's. Without a complete
    time stamp the reception time stands in, and the reading says so.
    """
    if stamp is None:
        return received_at, ()
    at = stamp.to_datetime()
    if at is None:
        note = "time stamp has an unknown date; reception time used"
        return received_at, (("device_time", note),)
    return at + timedelta(minutes=offset_minutes), ()


def bit_names(value: int, names: Mapping[int, str]) -> dict[str, bool]:
    """Each named bit of ``value`` as a boolean, keyed by name."""
    return {name: bool(value >> bit & 1) for bit, name in names.items()}


def set_bits(value: int, words: Mapping[int, str]) -> tuple[str, ...]:
    """The words of the set bits of ``value``, in bit order."""
    return tuple(word for bit, word in sorted(words.items()) if value >> bit & 1)
