"""Quirk switches: rewrite a misbehaving device's bytes into the standard layout.

Each quirk turns what the device really sends into what the Bluetooth SIG specification
says it should have sent, so the standard decoder runs unchanged afterwards. Which quirks
apply to which characteristic is fixed here; the registry refuses a profile asking for a
quirk its characteristic does not support.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from gateway.errors import DecodeError

#: characteristic -> (flag bit selecting the alternative unit, {unit: bit set?})
UNIT_FLAGS: Mapping[str, tuple[int, Mapping[str, bool]]] = MappingProxyType(
    {
        "2A35": (0x01, {"mm[Hg]": False, "kPa": True}),
        "2A36": (0x01, {"mm[Hg]": False, "kPa": True}),
        "2A9D": (0x01, {"kg": False, "[lb_av]": True}),
        "2A9C": (0x01, {"kg": False, "[lb_av]": True}),
        "2A1C": (0x01, {"Cel": False, "[degF]": True}),
        "2A1E": (0x01, {"Cel": False, "[degF]": True}),
    }
)
#: characteristics whose layout _blood_pressure_fields knows (byte order, user id quirks)
LAYOUT_QUIRKS = frozenset({"2A35", "2A36"})

_BP_TIME_STAMP, _BP_PULSE, _BP_USER, _BP_STATUS = 0x02, 0x04, 0x08, 0x10


@dataclass(frozen=True, slots=True)
class Quirks:
    """The quirk switches of one characteristic in a profile."""

    unit_override: str | None = None
    set_flags: int = 0
    big_endian: tuple[str, ...] = ()
    user_id_without_flag: bool = False

    @classmethod
    def from_doc(cls, doc: Mapping[str, object]) -> Quirks:
        """Quirks from a profile's (schema-valid) ``quirks`` mapping."""
        big = doc.get("big_endian", ())
        unit = doc.get("unit_override")
        return cls(
            unit_override=str(unit) if unit is not None else None,
            set_flags=int(str(doc.get("set_flags", 0))),
            big_endian=tuple(str(b) for b in big) if isinstance(big, list) else (),
            user_id_without_flag=bool(doc.get("user_id_without_flag", False)),
        )

    def is_empty(self) -> bool:
        """True when no switch is on."""
        return self == Quirks()

    def problems(self, uuid16: str) -> list[str]:
        """What is wrong with these quirks on characteristic ``uuid16`` (empty: nothing)."""
        out: list[str] = []
        if self.unit_override is not None:
            units = UNIT_FLAGS.get(uuid16)
            if units is None:
                out.append(f"quirk unit_override is not supported on characteristic {uuid16}")
            elif self.unit_override not in units[1]:
                out.append(
                    f"quirk unit_override {self.unit_override!r} is not a unit of "
                    f"characteristic {uuid16} (one of {sorted(units[1])})"
                )
        if (self.big_endian or self.user_id_without_flag) and uuid16 not in LAYOUT_QUIRKS:
            out.append(
                f"quirks big_endian/user_id_without_flag are not supported on "
                f"characteristic {uuid16} (only {sorted(LAYOUT_QUIRKS)})"
            )
        return out

    def apply(self, uuid16: str, data: bytes) -> bytes:
        """``data`` rewritten into the standard layout."""
        if self.is_empty() or not data:
            return data
        out = bytearray(data)
        out[0] |= self.set_flags
        if self.unit_override is not None:
            bit, units = UNIT_FLAGS[uuid16]
            out[0] = out[0] | bit if units[self.unit_override] else out[0] & ~bit
        if uuid16 in LAYOUT_QUIRKS and (self.big_endian or self.user_id_without_flag):
            _fix_blood_pressure(
                out, self.big_endian, user_id_without_flag=self.user_id_without_flag
            )
        return bytes(out)


def _fix_blood_pressure(
    out: bytearray, big_endian: Sequence[str], *, user_id_without_flag: bool
) -> None:
    """Blood pressure layout: set a missing User ID flag, swap big-endian fields in place."""
    flags = out[0]

    def size(with_user: bool) -> int:
        n = 7 + (7 if flags & _BP_TIME_STAMP else 0) + (2 if flags & _BP_PULSE else 0)
        return n + (1 if with_user else 0) + (2 if flags & _BP_STATUS else 0)

    if user_id_without_flag and not flags & _BP_USER:
        if len(out) == size(True):
            flags |= _BP_USER
            out[0] = flags
        elif len(out) != size(False):
            raise DecodeError(
                f"payload has {len(out)} bytes; with flags 0x{flags:02X} the device sends "
                f"{size(False)} (no user id) or {size(True)} (user id without its flag)"
            )
    pos = 7 + (7 if flags & _BP_TIME_STAMP else 0)
    offsets: dict[str, int] = {}
    if flags & _BP_PULSE:
        offsets["pulse_rate"] = pos
        pos += 2
    if flags & _BP_USER:
        pos += 1
    if flags & _BP_STATUS:
        offsets["measurement_status"] = pos
    for name in big_endian:
        at = offsets.get(name)
        if at is not None and at + 2 <= len(out):
            out[at], out[at + 1] = out[at + 1], out[at]
