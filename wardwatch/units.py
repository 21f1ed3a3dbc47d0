"""UCUM units: normalising the spellings devices use, and converting between them.

Only the conversions the vocabulary needs are defined; anything else is a
:class:`~wardwatch.errors.UnitError`, never a silent pass-through.
"""

from __future__ import annotations

from collections.abc import Callable

from wardwatch.errors import UnitError

UCUM_SYSTEM = "http://unitsofmeasure.org"

#: common spellings seen in device payloads -> UCUM code
_ALIASES: dict[str, str] = {
    "mmhg": "mm[Hg]",
    "mm[hg]": "mm[Hg]",
    "kpa": "kPa",
    "bpm": "/min",
    "/min": "/min",
    "beats/min": "/min",
    "breaths/min": "/min",
    "1/min": "/min",
    "%": "%",
    "percent": "%",
    "cel": "Cel",
    "°c": "Cel",
    "degc": "Cel",
    "c": "Cel",
    "[degf]": "[degF]",
    "°f": "[degF]",
    "degf": "[degF]",
    "f": "[degF]",
    "kg": "kg",
    "g": "g",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "[lb_av]": "[lb_av]",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "cm": "cm",
    "m": "m",
    "[in_i]": "[in_i]",
    "in": "[in_i]",
    "kg/m2": "kg/m2",
    "{steps}": "{steps}",
    "steps": "{steps}",
    "ms": "ms",
    "kj": "kJ",
}

# Glucose molar mass 180.16 g/mol: 1 mmol/L = 18.016 mg/dL.
_GLUCOSE_MG_PER_MMOL = 18.016
_LB_IN_KG = 0.45359237

_CONVERSIONS: dict[tuple[str, str], Callable[[float], float]] = {
    ("kPa", "mm[Hg]"): lambda v: v * 7.50061683,
    ("mm[Hg]", "kPa"): lambda v: v / 7.50061683,
    ("[degF]", "Cel"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("Cel", "[degF]"): lambda v: v * 9.0 / 5.0 + 32.0,
    ("[lb_av]", "kg"): lambda v: v * _LB_IN_KG,
    ("kg", "[lb_av]"): lambda v: v / _LB_IN_KG,
    ("g", "kg"): lambda v: v / 1000.0,
    ("kg", "g"): lambda v: v * 1000.0,
    ("mmol/L", "mg/dL"): lambda v: v * _GLUCOSE_MG_PER_MMOL,
    ("mg/dL", "mmol/L"): lambda v: v / _GLUCOSE_MG_PER_MMOL,
    ("[in_i]", "cm"): lambda v: v * 2.54,
    ("cm", "[in_i]"): lambda v: v / 2.54,
    ("m", "cm"): lambda v: v * 100.0,
    ("cm", "m"): lambda v: v / 100.0,
}


def normalize_unit(unit: str) -> str:
    """Return the UCUM code for a unit as devices spell it (``mmHg`` -> ``mm[Hg]``)."""
    key = unit.strip()
    found = _ALIASES.get(key.lower())
    if found is None:
        raise UnitError(f"unknown unit {unit!r}")
    return found


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert ``value`` between two UCUM units; raise UnitError if no conversion exists."""
    if from_unit == to_unit:
        return value
    fn = _CONVERSIONS.get((from_unit, to_unit))
    if fn is None:
        raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r}")
    return fn(value)
