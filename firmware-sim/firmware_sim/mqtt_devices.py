"""A simulated MQTT device: publishes an MQTT device profile's vendor JSON to its topic.

::

    device = SimulatedMqttDevice(profile, "127.0.0.1", 1883)
    await device.publish_samples()  # every valid sample, in file order, QoS 1
"""

from __future__ import annotations

import aiomqtt
import orjson

from gateway.profiles import Profile

__all__ = ["SimulatedMqttDevice", "sample_payloads"]


def sample_payloads(profile: Profile) -> list[bytes]:
    """The JSON of every valid sample of an MQTT profile, in file order."""
    out: list[bytes] = []
    for sample in profile.samples:
        if sample.error is not None or sample.json is None:
            continue
        payload = sample.json
        out.append(payload.encode() if isinstance(payload, str) else orjson.dumps(payload))
    return out


class SimulatedMqttDevice:
    """A device (or its phone app) publishing vendor JSON to the site broker."""

    def __init__(
        self,
        profile: Profile,
        host: str,
        port: int,
        *,
        topic: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if profile.transport != "mqtt" or profile.mqtt is None:
            raise ValueError(f"profile {profile.id} is not an MQTT profile")
        self.profile = profile
        self.host = host
        self.port = port
        self.topic = topic or profile.mqtt.topic_example
        self.username = username
        self.password = password
        #: payloads published, in order
        self.published: list[bytes] = []

    async def publish(self, payloads: list[bytes]) -> None:
        """Publish ``payloads`` to the device's topic, QoS 1, in order."""
        async with aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            for payload in payloads:
                await client.publish(self.topic, payload, qos=1)
                self.published.append(payload)

    async def publish_samples(self) -> None:
        """Publish every valid sample of the profile."""
        await self.publish(sample_payloads(self.profile))
