"""Measurement kinds: the one vocabulary every decoder reports in and every mapper reads.

Codes come from ``shared/fhir/code-map.json`` (LOINC, IEEE 11073-10101 MDC with
partition<<16 | term, UCUM), cross-checked against the FHIR R4 Vital Signs profiles and the
HL7 Personal Health Device IG examples; ``tests/test_vocabulary.py`` re-checks this table
against that file. Plausible ranges are the limits of what a living patient can show, used
by ingest validation to refuse impossible values (not clinical thresholds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from wardwatch.errors import UnitError, UnknownKindError

LOINC_SYSTEM = "http://loinc.org"
MDC_SYSTEM = "urn:iso:std:iso:11073:10101"

VITAL_SIGNS = "vital-signs"
LABORATORY = "laboratory"
ACTIVITY = "activity"


@dataclass(frozen=True, slots=True)
class MeasurementKind:
    """One kind of measurement and how it is coded in FHIR."""

    name: str
    display: str
    loinc: str
    mdc_code: int | None
    mdc_refid: str | None
    units: tuple[str, ...]
    """Allowed UCUM units; the first is canonical (what stores and detectors use)."""
    category: str = VITAL_SIGNS
    plausible: tuple[float, float] | None = None
    """Physiologically possible range in the canonical unit."""
    loinc_by_unit: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """LOINC codes that depend on the unit (glucose: mass vs molar concentration)."""
    components: tuple[str, ...] = ()
    """For panels (blood pressure): the component kinds."""
    profile: str | None = None
    """FHIR R4 vital-signs profile URL, where the kind has one."""
    also_loinc: tuple[str, ...] = ()
    """Further LOINC codings the profile requires beside the main one."""

    @property
    def canonical_unit(self) -> str | None:
        """The unit stores and detectors use for this kind."""
        return self.units[0] if self.units else None

    def loinc_for(self, unit: str | None) -> str:
        """LOINC code for a value expressed in ``unit``."""
        if unit is not None and unit in self.loinc_by_unit:
            return self.loinc_by_unit[unit]
        return self.loinc

    def check_unit(self, unit: str) -> None:
        """Raise UnitError unless ``unit`` is an allowed UCUM unit of this kind."""
        if unit not in self.units:
            raise UnitError(f"unit {unit!r} is not allowed for {self.name} (allowed: {self.units})")


_VS = "http://hl7.org/fhir/StructureDefinition/"

_KINDS: tuple[MeasurementKind, ...] = (
    MeasurementKind(
        "blood_pressure",
        "Blood pressure panel",
        "85354-9",
        150020,
        "MDC_PRESS_BLD_NONINV",
        (),
        components=("systolic", "diastolic", "mean_arterial_pressure"),
        profile=_VS + "bp",
    ),
    MeasurementKind(
        "systolic",
        "Systolic blood pressure",
        "8480-6",
        150021,
        "MDC_PRESS_BLD_NONINV_SYS",
        ("mm[Hg]", "kPa"),
        plausible=(40.0, 300.0),
    ),
    MeasurementKind(
        "diastolic",
        "Diastolic blood pressure",
        "8462-4",
        150022,
        "MDC_PRESS_BLD_NONINV_DIA",
        ("mm[Hg]", "kPa"),
        plausible=(15.0, 220.0),
    ),
    MeasurementKind(
        "mean_arterial_pressure",
        "Mean blood pressure",
        "8478-0",
        150023,
        "MDC_PRESS_BLD_NONINV_MEAN",
        ("mm[Hg]", "kPa"),
        plausible=(25.0, 260.0),
    ),
    # MDC for heart rate depends on the source: 147842 ECG/strap, 149546 BP cuff,
    # 149530 pulse oximeter; a Reading may carry the more specific code (Reading.mdc_code).
    MeasurementKind(
        "heart_rate",
        "Heart rate",
        "8867-4",
        147842,
        "MDC_ECG_HEART_RATE",
        ("/min",),
        plausible=(15.0, 350.0),
        profile=_VS + "heartrate",
    ),
    MeasurementKind(
        "spo2",
        "Oxygen saturation in Arterial blood by Pulse oximetry",
        "59408-5",
        150456,
        "MDC_PULS_OXIM_SAT_O2",
        ("%",),
        plausible=(40.0, 100.0),
        profile=_VS + "oxygensat",
        also_loinc=("2708-6",),
    ),
    MeasurementKind(
        "body_temperature",
        "Body temperature",
        "8310-5",
        150364,
        "MDC_TEMP_BODY",
        ("Cel", "[degF]"),
        plausible=(25.0, 45.0),
        profile=_VS + "bodytemp",
    ),
    MeasurementKind(
        "body_weight",
        "Body weight",
        "29463-7",
        188736,
        "MDC_MASS_BODY_ACTUAL",
        ("kg", "g", "[lb_av]"),
        plausible=(0.3, 650.0),
        profile=_VS + "bodyweight",
    ),
    MeasurementKind(
        "body_height",
        "Body height",
        "8302-2",
        188740,
        "MDC_LEN_BODY_ACTUAL",
        ("cm", "m", "[in_i]"),
        plausible=(20.0, 280.0),
        profile=_VS + "bodyheight",
    ),
    MeasurementKind(
        "bmi",
        "Body mass index (BMI) [Ratio]",
        "39156-5",
        188752,
        "MDC_RATIO_MASS_BODY_LEN_SQ",
        ("kg/m2",),
        plausible=(5.0, 150.0),
        profile=_VS + "bmi",
    ),
    MeasurementKind(
        "body_fat",
        "Body fat [Mass Fraction]",
        "41982-0",
        188748,
        "MDC_BODY_FAT",
        ("%",),
        plausible=(1.0, 80.0),
    ),
    MeasurementKind(
        "respiratory_rate",
        "Respiratory rate",
        "9279-1",
        151562,
        "MDC_RESP_RATE",
        ("/min",),
        plausible=(1.0, 100.0),
        profile=_VS + "resprate",
    ),
    MeasurementKind(
        "glucose",
        "Glucose [Mass/volume] in Capillary blood by Glucometer",
        "41653-7",
        160184,
        "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD",
        ("mg/dL", "mmol/L"),
        category=LABORATORY,
        plausible=(10.0, 1000.0),
        loinc_by_unit=MappingProxyType({"mg/dL": "41653-7", "mmol/L": "14743-9"}),
    ),
    MeasurementKind(
        "cgm_glucose",
        "Glucose [Mass/volume] in Interstitial fluid",
        "99504-3",
        None,
        None,
        ("mg/dL", "mmol/L"),
        category=LABORATORY,
        plausible=(10.0, 1000.0),
        loinc_by_unit=MappingProxyType({"mg/dL": "99504-3", "mmol/L": "14745-4"}),
    ),
    MeasurementKind(
        "steps",
        "Number of steps in unspecified time Pedometer",
        "55423-8",
        None,
        None,
        ("{steps}",),
        category=ACTIVITY,
        plausible=(0.0, 200000.0),
    ),
)

KINDS: Mapping[str, MeasurementKind] = MappingProxyType({k.name: k for k in _KINDS})

# Reverse lookups for mapping FHIR back onto kinds (ingest).
_BY_LOINC: dict[str, MeasurementKind] = {}
for _k in _KINDS:
    _BY_LOINC.setdefault(_k.loinc, _k)
    for _code in _k.loinc_by_unit.values():
        _BY_LOINC.setdefault(_code, _k)
_BY_LOINC.setdefault("2708-6", KINDS["spo2"])  # SpO2 as the R4 oxygensat profile also codes it
BY_LOINC: Mapping[str, MeasurementKind] = MappingProxyType(_BY_LOINC)


def kind(name: str) -> MeasurementKind:
    """Look up a measurement kind by name; raise UnknownKindError if there is none."""
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKindError(f"unknown measurement kind {name!r}") from None
