"""Body Composition Measurement (0x2A9C), including the two-packet form.

Layout from the Body Composition Service specification (BCS 1.0) and GSS
"Body Composition Measurement": Flags uint16, Body Fat Percentage uint16 (0.1 %), then
as the flags announce Time Stamp, User ID, Basal Metabolism (kJ), Muscle Percentage
(0.1 %), Muscle Mass, Fat Free Mass, Soft Lean Mass, Body Water Mass (each 0.005 kg or
0.01 lb), Impedance (0.1 ohm), Weight (0.005 kg / 0.01 lb), Height (0.001 m / 0.1 in).
Flag bit 12 marks a measurement split over two notifications (BCS).
"""

from __future__ import annotations

from datetime import datetime

from gateway.decoders._base import (
    Decoded,
    DeviceContext,
    Reader,
    check_layout,
    frozen,
    measurement_time,
)
from gateway.decoders._time import DATE_TIME_SIZE, DateTime
from gateway.decoders.weight import scale, user_note
from gateway.errors import DecodeError
from wardwatch.reading import Reading

MEASUREMENT_UNSUCCESSFUL = 0xFFFF
MULTIPLE_PACKET = 0x1000

# flag bit -> (field name on the wire, key in fields, size, kind of scaling)
_OPTIONAL = (
    (0x0002, "Time Stamp", "timestamp", DATE_TIME_SIZE, "time"),
    (0x0004, "User ID", "user_id", 1, "raw"),
    (0x0008, "Basal Metabolism", "basal_metabolism_kj", 2, "raw"),
    (0x0010, "Muscle Percentage", "muscle_percent", 2, "tenth"),
    (0x0020, "Muscle Mass", "muscle_mass", 2, "mass"),
    (0x0040, "Fat Free Mass", "fat_free_mass", 2, "mass"),
    (0x0080, "Soft Lean Mass", "soft_lean_mass", 2, "mass"),
    (0x0100, "Body Water Mass", "body_water_mass", 2, "mass"),
    (0x0200, "Impedance", "impedance_ohm", 2, "tenth"),
    (0x0400, "Weight", "weight", 2, "mass"),
    (0x0800, "Height", "height", 2, "length"),
)
_KEYS = tuple(key for _, _, key, _, _ in _OPTIONAL)


def _parse(data: bytes) -> dict[str, object]:
    flags = int.from_bytes(data[:2], "little") if len(data) >= 2 else 0
    layout = [("Flags", 2, False), ("Body Fat Percentage", 2, False)]
    layout += [(name, size, True) for bit, name, _, size, _ in _OPTIONAL if flags & bit]
    check_layout(data, layout, flags, flag_digits=4)
    imperial = bool(flags & 0x0001)
    mass = (1, 100) if imperial else (5, 1000)
    length = (1, 10) if imperial else (1, 1000)
    r = Reader(data, 2)
    raw_fat = r.uint(2, "Body Fat Percentage")
    unsuccessful = raw_fat == MEASUREMENT_UNSUCCESSFUL
    fields: dict[str, object] = {
        "flags": flags,
        "unit_system": "imperial" if imperial else "SI",
        "mass_unit": "[lb_av]" if imperial else "kg",
        "length_unit": "[in_i]" if imperial else "m",
        "multiple_packet": bool(flags & MULTIPLE_PACKET),
        "measurement_unsuccessful": unsuccessful,
        "body_fat_percent": None if unsuccessful else raw_fat / 10,
    }
    for bit, name, key, size, how in _OPTIONAL:
        if not flags & bit:
            fields[key] = None
        elif how == "time":
            fields[key] = r.date_time(name).as_field()
        else:
            raw = r.uint(size, name)
            if how == "tenth":
                fields[key] = raw / 10
            elif how == "mass":
                fields[key] = scale(raw, *mass)
            elif how == "length":
                fields[key] = scale(raw, *length)
            else:
                fields[key] = raw
    return fields


def _stamp(value: object) -> DateTime | None:
    if not isinstance(value, dict):
        return None
    return DateTime(
        value["year"], value["month"], value["day"], value["hour"], value["minute"], value["second"]
    )


def _float(value: object) -> float | None:
    return value if isinstance(value, float) else None


def _readings(fields: dict[str, object], received_at: datetime) -> tuple[Reading, ...]:
    at, notes = measurement_time(_stamp(fields["timestamp"]), received_at)
    user = fields["user_id"]
    notes += user_note(user if isinstance(user, int) else None)
    out: list[Reading] = []
    fat = _float(fields["body_fat_percent"])
    if fat is None:
        status = ("measurement unsuccessful",)
        out.append(Reading("body_fat", at, data_absent="error", device_status=status, extra=notes))
    else:
        out.append(Reading("body_fat", at, fat, "%", extra=notes))
    weight, height = _float(fields["weight"]), _float(fields["height"])
    if weight is not None:
        out.append(Reading("body_weight", at, weight, str(fields["mass_unit"]), extra=notes))
    if height is not None:
        out.append(Reading("body_height", at, height, str(fields["length_unit"]), extra=notes))
    return tuple(out)


def decode_body_composition_measurement(
    data: bytes, received_at: datetime, device: DeviceContext | None = None
) -> Decoded:
    """Decode Body Composition Measurement 0x2A9C (BCS 1.0; GSS "Body Composition Measurement").

    Yields ``body_fat`` (%; data-absent "error" when the device reports 0xFFFF,
    Measurement Unsuccessful) and, when present, ``body_weight`` and ``body_height``.
    Muscle, fat-free, soft-lean and body-water masses, basal metabolism and impedance have
    no vocabulary kind and stay in ``fields``. One packet of a two-packet measurement
    (``fields["multiple_packet"]``) decodes on its own; :func:`combine_body_composition`
    joins both halves.
    """
    del device
    fields = _parse(data)
    return Decoded("2A9C", _readings(fields, received_at), frozen(fields))


def combine_body_composition(first: bytes, second: bytes, *, received_at: datetime) -> Decoded:
    """Join the two notifications of a Multiple Packet Measurement (BCS).

    Both packets must set flag bit 12 and use the same unit system; each optional field may
    come from either packet, but not from both with different values. Body Fat Percentage
    comes from the first packet.
    """
    one, two = _parse(first), _parse(second)
    if not (one["multiple_packet"] and two["multiple_packet"]):
        raise DecodeError("both packets must set the Multiple Packet Measurement flag (bit 12)")
    if one["unit_system"] != two["unit_system"]:
        raise DecodeError("the two packets use different unit systems")
    merged = dict(one)
    for key in _KEYS:
        a, b = one[key], two[key]
        if a is not None and b is not None and a != b:
            raise DecodeError(f"the two packets disagree on {key}: {a!r} vs {b!r}")
        merged[key] = a if a is not None else b
    merged["flags_second_packet"] = two["flags"]
    return Decoded("2A9C", _readings(merged, received_at), frozen(merged))
