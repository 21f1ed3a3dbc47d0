"""The real-service fixtures are real: a mosquitto broker and PostgreSQL + TimescaleDB."""

from __future__ import annotations

import queue
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.services import (
    MosquittoServer,
    ServiceUnavailable,
    TimescaleServer,
    free_port,
)

TIMEOUT = 5.0

# --------------------------------------------------------------------------------------
# mosquitto
# --------------------------------------------------------------------------------------


class _Client:
    """A paho MQTT v5 client on its own network thread, with events for the tests."""

    def __init__(
        self,
        broker: MosquittoServer,
        client_id: str,
        *,
        receive_maximum: int | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connects: queue.Queue[Any] = queue.Queue()  # reason code of each CONNACK
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.resubscribe: list[tuple[str, int]] = []
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.paho.reconnect_delay_set(min_delay=1, max_delay=1)
        if username is not None:
            self.paho.username_pw_set(username, password)
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message
        properties = None
        if receive_maximum is not None:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.ReceiveMaximum = receive_maximum
        self.paho.connect(broker.host, broker.port, keepalive=30, properties=properties)
        self.paho.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        if not rc.is_failure:
            for topic, qos in self.resubscribe:
                client.subscribe(topic, qos=qos)
        self.connects.put(rc)

    def _on_disconnect(self, *_args: object) -> None:
        self.disconnected.set()

    def _on_subscribe(
        self, _c: object, _u: object, _mid: int, codes: list[Any], _p: object
    ) -> None:
        assert all(code.value == 1 for code in codes), codes  # granted QoS 1
        self.subscribed.set()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def wait_connected(self) -> None:
        rc = self.connects.get(timeout=TIMEOUT)
        assert not rc.is_failure, rc

    def subscribe(self, topic: str) -> None:
        self.resubscribe.append((topic, 1))
        self.subscribed.clear()
        self.paho.subscribe(topic, qos=1)
        assert self.subscribed.wait(TIMEOUT)

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.paho.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()  # the broker sent PUBACK

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@contextmanager
def connected(broker: MosquittoServer, client_id: str, **kwargs: Any) -> Iterator[_Client]:
    client = _Client(broker, client_id, **kwargs)
    try:
        client.wait_connected()
        yield client
    finally:
        client.close()


def assert_roundtrip(broker: MosquittoServer, topic: str, payload: bytes) -> None:
    with connected(broker, "sub-" + topic) as sub, connected(broker, "pub-" + topic) as pub:
        sub.subscribe(topic)
        pub.publish(topic, payload)
        message = sub.messages.get(timeout=TIMEOUT)
    assert (message.topic, message.payload, message.qos) == (topic, payload, 1)


@pytest.mark.mqtt
def test_mosquitto_qos1_publish_subscribe(mosquitto: MosquittoServer) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert_roundtrip(mosquitto, "wardwatch/test/qos1", b'{"resourceType": "Bundle"}')


@pytest.mark.mqtt
def test_mosquitto_drops_nothing_for_a_slow_subscriber(mosquitto: MosquittoServer) -> None:
    """With mosquitto's default max_queued_messages (1000) only ~1010 of these arrive."""
    count = 3000
    release = threading.Event()
    with connected(mosquitto, "slow-sub", receive_maximum=10) as sub:
        sub.subscribe("wardwatch/test/flood")
        # The subscriber's network thread blocks in its first on_message, so it neither
        # reads nor acknowledges: the broker must queue everything past 10 in flight.
        original = sub.paho.on_message

        def slow(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            release.wait(TIMEOUT)
            assert original is not None
            original(client, userdata, message)

        sub.paho.on_message = slow
        with connected(mosquitto, "flood-pub") as pub:
            infos = [
                pub.paho.publish("wardwatch/test/flood", str(i).encode(), qos=1)
                for i in range(count)
            ]
            for info in infos:
                info.wait_for_publish(TIMEOUT)
        release.set()
        payloads = [sub.messages.get(timeout=TIMEOUT).payload for _ in range(count)]
    assert payloads == [str(i).encode() for i in range(count)]


@pytest.mark.mqtt
def test_mosquitto_stop_and_restart_on_the_same_port(mosquitto: MosquittoServer) -> None:
    port = mosquitto.port
    with connected(mosquitto, "survivor") as client:
        client.subscribe("wardwatch/test/outage")
        mosquitto.stop()
        try:
            assert not mosquitto.running
            assert client.disconnected.wait(TIMEOUT)
            with pytest.raises(OSError):
                socket.create_connection((mosquitto.host, port), timeout=1).close()
        finally:
            mosquitto.start()
        assert mosquitto.running
        assert mosquitto.port == port
        client.wait_connected()  # paho reconnected by itself and resubscribed
        assert client.subscribed.wait(TIMEOUT)
        with connected(mosquitto, "after-outage") as pub:
            pub.publish("wardwatch/test/outage", b"back")
        assert client.messages.get(timeout=TIMEOUT).payload == b"back"


@pytest.mark.mqtt
def test_mosquitto_extra_config_and_fixed_port(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    passwords = tmp_path / "passwd"
    passwords.touch(mode=0o600)
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "hub", "s3cret"], check=True)
    port = free_port()
    with MosquittoServer(
        port=port, allow_anonymous=False, extra_config=[f"password_file {passwords}"]
    ) as broker:
        assert broker.port == port
        anonymous = _Client(broker, "anonymous")
        try:
            rc = anonymous.connects.get(timeout=TIMEOUT)
            assert rc.is_failure  # "Not authorized"
        finally:
            anonymous.close()
        with connected(broker, "hub", username="hub", password="s3cret") as client:
            client.publish("wardwatch/test/auth", b"ok")
        assert "allow_anonymous false" in broker.config_text()
        directory = broker.directory
    assert not directory.exists()


@pytest.mark.mqtt
def test_mosquitto_start_failures_are_clear(mosquitto: MosquittoServer) -> None:
    with pytest.raises(ServiceUnavailable, match="already in use"):
        MosquittoServer(port=mosquitto.port).__enter__()
    with pytest.raises(ServiceUnavailable, match="no_such_option"):
        MosquittoServer(extra_config=["no_such_option 1"]).__enter__()
    with pytest.raises(ServiceUnavailable, match="mosquitto not found"):
        MosquittoServer(binary="/nonexistent/mosquitto").__enter__()


# --------------------------------------------------------------------------------------
# PostgreSQL + TimescaleDB
# --------------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def create_readings(conn: psycopg.Connection[Any]) -> None:
    """A hypertable of glucose readings: two per hour over three hours."""
    conn.execute(
        "CREATE TABLE readings (time timestamptz NOT NULL, patient text NOT NULL,"
        " value double precision NOT NULL)"
    )
    conn.execute("SELECT create_hypertable('readings', by_range('time', INTERVAL '1 hour'))")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (time, patient, value) VALUES (%s, %s, %s)",
            [(T0 + timedelta(minutes=30 * i), "p1", 5.0 + i) for i in range(6)],
        )
    conn.commit()


def hourly(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT time_bucket('1 hour', time) AS hour, count(*), avg(value) FROM readings"
        " GROUP BY hour ORDER BY hour"
    ).fetchall()


EXPECTED_HOURLY = [
    (T0, 2, 5.5),
    (T0 + timedelta(hours=1), 2, 7.5),
    (T0 + timedelta(hours=2), 2, 9.5),
]


@pytest.mark.postgres
def test_timescale_extension_is_loaded(timescale: TimescaleServer) -> None:
    assert timescale.dsn == f"postgresql://postgres@127.0.0.1:{timescale.port}/wardwatch"
    with psycopg.connect(timescale.dsn) as conn:
        (license_,) = conn.execute("SHOW timescaledb.license").fetchone() or ("",)
        assert license_ in {"apache", "timescale"}
        assert conn.execute("SELECT current_database()").fetchone() == ("wardwatch",)
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert row is not None
        assert conn.execute("SHOW timescaledb.telemetry_level").fetchone() == ("off",)


@pytest.mark.postgres
def test_hypertable_and_time_bucket(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        create_readings(conn)
        assert hourly(conn) == EXPECTED_HOURLY
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
        ).fetchone()
        assert chunks == (3,)


@pytest.mark.postgres
def test_databases_are_isolated(timescale: TimescaleServer, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        create_readings(conn)
    with psycopg.connect(timescale.dsn) as conn:
        assert conn.execute("SELECT to_regclass('readings')").fetchone() == (None,)
    with pytest.raises(ValueError, match="database name"):
        timescale.create_database("Robert'); DROP TABLE students;--")


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_rows_survive_a_database_restart(
    timescale: TimescaleServer, pg_dsn: str, mode: str
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        create_readings(conn)
    port = timescale.port
    timescale.stop(mode)  # type: ignore[arg-type]
    try:
        assert not timescale.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg_dsn, connect_timeout=2)
    finally:
        timescale.start()
    assert timescale.port == port
    with psycopg.connect(pg_dsn) as conn:
        assert hourly(conn) == EXPECTED_HOURLY


def test_timescale_missing_postgres_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable, match="PostgreSQL 15 not found"):
        TimescaleServer(bindir=tmp_path).__enter__()
