"""Ingest exceptions: one base, structured subclasses with machine-readable codes."""

from __future__ import annotations

from wardwatch.errors import WardwatchError


class IngestError(WardwatchError):
    """Base of every exception raised by ingest."""

    code = "ingest"


class ValidationError(IngestError):
    """An observation breaks a rule; ``code`` says which (stored with quarantined input)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class StoreError(IngestError):
    """The store cannot be opened or used."""

    code = "store"
