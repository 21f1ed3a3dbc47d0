"""Alerting exceptions: one base, structured subclasses with machine-readable codes.

None of them carries a reading value or a patient's name in its attributes or message, so
they are safe to log; a parameter name, an observation identifier or an alert id is.
"""

from __future__ import annotations

from wardwatch.errors import WardwatchError


class AlertingError(WardwatchError):
    """Base of every exception raised by alerting."""

    code = "alerting"


class RuleError(AlertingError):
    """A rule table that cannot work (duplicate id, unknown kind, negative hysteresis...)."""

    code = "bad-rule"


class ThresholdOverrideError(RuleError):
    """A per-patient threshold override (``Patient.thresholds``) that cannot be used."""

    code = "bad-threshold-override"

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"threshold override {parameter!r}: {reason}")


class UnusableObservationError(AlertingError):
    """A stored observation a detector cannot read (unknown unit, non-finite value)."""

    code = "unusable-observation"

    def __init__(self, identifier: str, reason: str) -> None:
        self.identifier = identifier
        self.reason = reason
        super().__init__(f"observation {identifier}: {reason}")


class AlertNotFoundError(AlertingError):
    """No alert has this id."""

    code = "alert-not-found"

    def __init__(self, alert_id: int) -> None:
        self.alert_id = alert_id
        super().__init__(f"no alert with id {alert_id}")


class AlertTransitionError(AlertingError):
    """A lifecycle change the alert cannot make (acknowledging a resolved alert...)."""

    code = "bad-transition"

    def __init__(self, alert_id: int, action: str, reason: str) -> None:
        self.alert_id = alert_id
        self.action = action
        self.reason = reason
        super().__init__(f"cannot {action} alert {alert_id}: {reason}")


__all__ = [
    "AlertNotFoundError",
    "AlertTransitionError",
    "AlertingError",
    "RuleError",
    "ThresholdOverrideError",
    "UnusableObservationError",
]
