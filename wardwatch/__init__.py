"""wardwatch: the shared contract of the remote-patient-monitoring chain.

Public API (import from the submodules):

- :mod:`wardwatch.vocabulary` — measurement kinds with LOINC, IEEE 11073 MDC and UCUM codes.
- :mod:`wardwatch.units` — UCUM unit normalisation and conversion.
- :mod:`wardwatch.reading` — :class:`Reading`, the decoded measurement every device yields.
- :mod:`wardwatch.fhir` — FHIR R4 Observation and Bundle builders, and their inverse.
- :mod:`wardwatch.store` — the storage interface ingest and alerting meet through.
- :mod:`wardwatch.errors` — the root of every wardwatch exception.
- :mod:`wardwatch.cli` — the ``wardwatch`` command (composition root).
"""

__version__ = "0.1.0"
