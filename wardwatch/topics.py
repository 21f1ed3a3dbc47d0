"""MQTT topics of the uplink contract (ARCHITECTURE.md, "Uplink over MQTT")."""

from __future__ import annotations

PREFIX = "wardwatch/v1/gw"
CONTENT_TYPE = "application/fhir+json"
ACK_CONTENT_TYPE = "application/json"
#: shared subscription that spreads gateway bundles over ingest workers
INGEST_SHARED_SUBSCRIPTION = f"$share/ingest/{PREFIX}/+/obs"


def obs_topic(gateway: str) -> str:
    """Where a gateway publishes its Observation bundles."""
    return f"{PREFIX}/{gateway}/obs"


def ack_topic(gateway: str) -> str:
    """Where the backend confirms bundles committed to the store."""
    return f"{PREFIX}/{gateway}/ack"


def status_topic(gateway: str) -> str:
    """A gateway's retained liveness status (with a last will)."""
    return f"{PREFIX}/{gateway}/status"


def gateway_of(topic: str) -> str | None:
    """The gateway id in an uplink topic, or None if the topic is not one of ours."""
    parts = topic.split("/")
    if len(parts) == 5 and f"{parts[0]}/{parts[1]}/{parts[2]}" == PREFIX and parts[3]:
        return parts[3]
    return None
