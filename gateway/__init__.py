"""gateway: the edge process on a patient's home hub.

Reads devices over BLE (bleak) and MQTT, decodes them with pure decoders and device
profiles, maps readings onto FHIR Observations, keeps them in a durable SQLite outbox and
sends them uplink over MQTT v5 (QoS 1) until the backend confirms them.

Public API: :mod:`gateway.decoders` (pure decoders), :class:`gateway.outbox.Outbox`,
:class:`gateway.uplink.MqttUplink`, :class:`gateway.ble.BleCollector`,
:class:`gateway.runtime.Gateway`. Never imports ``ingest`` or ``alerting``.
"""
