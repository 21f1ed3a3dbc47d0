"""The root of wardwatch's exception tree.

Each part (gateway, ingest, alerting, firmware_sim) derives its own base exception from
:class:`WardwatchError`; structured subclasses name what was wrong so that bad input can be
quarantined with a machine-readable reason.
"""

from __future__ import annotations


class WardwatchError(Exception):
    """Base of every exception raised by wardwatch code."""

    #: machine-readable reason code, stable across releases (used by quarantine)
    code: str = "error"


class ContractError(WardwatchError):
    """Data does not fit the shared contract (unknown kind, unit, malformed resource)."""

    code = "contract"


class UnknownKindError(ContractError):
    """A measurement kind that the vocabulary does not define."""

    code = "unknown-kind"


class UnitError(ContractError):
    """A unit that is not UCUM, or not allowed for the measurement kind."""

    code = "bad-unit"


class ObservationError(ContractError):
    """A FHIR Observation that cannot be mapped back onto a reading."""

    code = "bad-observation"
