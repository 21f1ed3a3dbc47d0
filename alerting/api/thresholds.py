"""A patient's effective threshold lines for charts. Pure: no I/O.

Derived from the threshold rules the engine's detectors apply (``default_detectors()``:
``CLINICAL_RULES``) with the same precedence the engine uses: clinical default < care plan
``thresholds`` < the patient's own ``Patient.thresholds``. A rule that applies only under a
care-plan flag (NEWS2 SpO2 scale 2) is drawn only when the flag selects it. Trend and score
detectors (weight gain, BP slope, NEWS2 aggregate) have no line on a value chart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alerting.rules import Comparison, Detector, ThresholdDetector
from wardwatch.store import Patient, Severity
from wardwatch.store_careplans import CarePlan


@dataclass(frozen=True, slots=True)
class EffectiveThreshold:
    """One threshold as it applies to one patient now."""

    parameter: str
    kind: str
    component: str | None
    value: float
    source: str
    """``default``, ``care-plan`` or ``patient``: where ``value`` comes from."""
    direction: Comparison
    severity: Severity
    rule: str


def merged_overrides(patient: Patient, plan: CarePlan | None) -> dict[str, float]:
    """The overrides the engine applies: ``{**care_plan.thresholds, **patient.thresholds}``."""
    return {**(plan.thresholds if plan is not None else {}), **patient.thresholds}


def effective_thresholds(
    patient: Patient, plan: CarePlan | None, detectors: Iterable[Detector]
) -> list[EffectiveThreshold]:
    """Every threshold line of the patient's applicable threshold rules, in rule order."""
    plan_values: Mapping[str, float] = plan.thresholds if plan is not None else {}
    overrides = merged_overrides(patient, plan)
    lines: list[EffectiveThreshold] = []
    for detector in detectors:
        if not isinstance(detector, ThresholdDetector):
            continue
        for rule in detector.rules:
            if rule.when is not None:
                flag, wanted = rule.when
                if flag.value(overrides) != wanted:
                    continue
            for criterion in rule.criteria:
                name = criterion.parameter
                if name in patient.thresholds:
                    source = "patient"
                elif name in plan_values:
                    source = "care-plan"
                else:
                    source = "default"
                lines.append(
                    EffectiveThreshold(
                        parameter=name,
                        kind=rule.kind,
                        component=criterion.component,
                        value=float(overrides.get(name, criterion.threshold)),
                        source=source,
                        direction=criterion.comparison,
                        severity=rule.severity,
                        rule=rule.id,
                    )
                )
    return lines


__all__ = ["EffectiveThreshold", "effective_thresholds", "merged_overrides"]
