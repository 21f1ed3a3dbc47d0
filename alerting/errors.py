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


class SilenceNotFoundError(AlertingError):
    """No snooze (a silence of one alert) has this id."""

    code = "silence-not-found"

    def __init__(self, silence_id: int) -> None:
        self.silence_id = silence_id
        super().__init__(f"no snooze with id {silence_id}")


# -- access (alerting/access.py) -------------------------------------------------------
class AccessError(AlertingError):
    """Base of the access errors: logins, tokens, permissions, user administration."""

    code = "access"


class AuthenticationError(AccessError):
    """No valid credentials: unknown, expired or revoked token, inactive user (HTTP 401).

    ``reason`` is for logs and the audit trail; callers answer the client one message.
    """

    code = "unauthenticated"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"not authenticated: {reason}")


class LoginFailedError(AuthenticationError):
    """A wrong user name or password (one error for both, so names cannot be probed)."""

    code = "login-failed"


class LoginThrottledError(AccessError):
    """Too many failed logins recently for this user name or address (HTTP 429)."""

    code = "login-throttled"

    def __init__(self, retry_after: int, scope: str) -> None:
        self.retry_after = retry_after
        self.scope = scope
        super().__init__(f"too many failed logins for this {scope}; retry in {retry_after} s")


class AccessDeniedError(AccessError):
    """The principal's role may not take this action, or not on this patient (HTTP 403)."""

    code = "forbidden"

    def __init__(self, principal: str, action: str) -> None:
        self.principal = principal
        self.action = action
        super().__init__(f"{principal} may not {action}")


class AccessSetupError(AccessError):
    """User or token administration that cannot be done (unknown user, weak password...)."""

    code = "access-setup"


# -- care plans and proposals (alerting/careplans.py) ------------------------------------
class ProposalError(AlertingError):
    """A care-plan proposal that cannot be decided as asked."""

    code = "proposal"


class ProposalNotFoundError(ProposalError):
    """No proposal has this id."""

    code = "proposal-not-found"

    def __init__(self, proposal_id: int) -> None:
        self.proposal_id = proposal_id
        super().__init__(f"no proposal with id {proposal_id}")


class ProposalDecidedError(ProposalError):
    """The proposal was accepted or rejected already (a decision is made once)."""

    code = "proposal-decided"

    def __init__(self, proposal_id: int, status: str) -> None:
        self.proposal_id = proposal_id
        self.status = status
        super().__init__(f"proposal {proposal_id} was {status} already")


class CarePlanChangeError(ProposalError):
    """A proposal's ``change`` (or a decision's details) that cannot apply to a care plan."""

    code = "bad-care-plan-change"


__all__ = [
    "AccessDeniedError",
    "AccessError",
    "AccessSetupError",
    "AlertNotFoundError",
    "AlertTransitionError",
    "AlertingError",
    "AuthenticationError",
    "CarePlanChangeError",
    "LoginFailedError",
    "LoginThrottledError",
    "ProposalDecidedError",
    "ProposalError",
    "ProposalNotFoundError",
    "RuleError",
    "SilenceNotFoundError",
    "ThresholdOverrideError",
    "UnusableObservationError",
]
