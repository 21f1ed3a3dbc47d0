"""ingest: the backend's front door.

Receives gateway bundles over MQTT (``wardwatch/v1/gw/{id}/obs``) and HTTP
(``POST /fhir/Bundle``, ``POST /fhir/Observation``), validates them, stores them through
the :class:`wardwatch.store.Store` interface (TimescaleDB or SQLite, see
:mod:`ingest.stores`), keeps refused input in quarantine with its reason, and confirms each
bundle to its gateway only after commit.

Public API: :func:`ingest.stores.open_store`, :class:`ingest.pipeline.IngestPipeline`,
:class:`ingest.mqtt.MqttIngest`, :func:`ingest.http.create_app`.
"""
