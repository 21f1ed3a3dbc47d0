"""Shared pieces of the benchmarks: services, enrolment, synthetic readings and rows.

The benchmarks run as scripts (``python bench/ingest.py``); importing this module puts the
repository root on ``sys.path`` so that ``tests.support.services`` and the project
packages import without installing anything.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from ingest.pipeline import stored_row  # noqa: E402
from tests.support.services import MosquittoServer, TimescaleServer  # noqa: E402
from wardwatch.fhir import bundle, facts_from_observation, observation_from_reading  # noqa: E402
from wardwatch.reading import Component, Reading  # noqa: E402
from wardwatch.store import CareTeam, Patient, Store, StoredObservation  # noqa: E402

#: Readings of one patient per device and minute start here and go forward (all in the past).
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
BUNDLE_SIZE = 200
#: the three devices of a patient and what each one measures
DEVICES = ("cuff", "hr", "ox")


@contextlib.contextmanager
def services() -> Iterator[tuple[MosquittoServer, TimescaleServer]]:
    """A private mosquitto and a PostgreSQL + TimescaleDB cluster, like the tests use."""
    with MosquittoServer() as mosquitto, TimescaleServer() as timescale:
        mosquitto.start()
        timescale.start()
        yield mosquitto, timescale


def fresh_database(timescale: TimescaleServer, prefix: str) -> str:
    """DSN of a new, empty database with the extension (migrated by ``open_store``)."""
    return timescale.create_database(f"{prefix}_{uuid.uuid4().hex[:10]}")


@dataclass(frozen=True, slots=True)
class Fleet:
    """Synthetic gateways, each serving some patients with a cuff, a strap and an oximeter."""

    gateways: int
    patients_per_gateway: int = 10

    def gateway(self, g: int) -> str:
        return f"gw-{g:03d}"

    def patient(self, g: int, p: int) -> str:
        return f"p-{g:03d}-{p:03d}"

    def device(self, g: int, p: int, what: str) -> str:
        return f"{what}-{g:03d}-{p:03d}"

    def enrol(self, store: Store) -> None:
        """Care team, patients and device pairings, so that validation accepts the readings."""
        store.upsert_care_team(CareTeam("bench", "Bench team"))
        for g in range(self.gateways):
            for p in range(self.patients_per_gateway):
                pid = self.patient(g, p)
                store.upsert_patient(Patient(pid, f"Synthetic {pid}", "bench"))
                for what in DEVICES:
                    store.pair_device(self.device(g, p, what), pid)


def _reading(what: str, at: datetime, n: int) -> Reading:
    """A realistic reading: blood pressure panel, heart rate or SpO2, gently varying."""
    wobble = (n * 7919) % 23 - 11  # deterministic spread, -11..11
    if what == "cuff":
        sys_, dia = 128.0 + wobble, 82.0 + wobble / 2
        return Reading(
            "blood_pressure",
            at,
            components=(
                Component("systolic", sys_, "mm[Hg]"),
                Component("diastolic", dia, "mm[Hg]"),
                Component("mean_arterial_pressure", round((sys_ + 2 * dia) / 3, 1), "mm[Hg]"),
            ),
        )
    if what == "hr":
        return Reading("heart_rate", at, value=72.0 + wobble, unit="/min")
    return Reading("spo2", at, value=min(100.0, 96.0 + wobble / 5), unit="%")


def observations(fleet: Fleet, g: int, count: int, *, start: datetime = EPOCH) -> list[bytes]:
    """``count`` Observations of gateway ``g`` (JSON), all distinct readings.

    Patients and devices take turns; each device reads once a minute, so identifiers
    (device, time, kind) never repeat.
    """
    out: list[bytes] = []
    per_minute = fleet.patients_per_gateway * len(DEVICES)
    for n in range(count):
        minute, slot = divmod(n, per_minute)
        p, d = divmod(slot, len(DEVICES))
        what = DEVICES[d]
        at = start + timedelta(minutes=minute, seconds=d)
        obs = observation_from_reading(
            _reading(what, at, n),
            patient=fleet.patient(g, p),
            device=fleet.device(g, p, what),
            gateway=fleet.gateway(g),
        )
        out.append(orjson.dumps(obs))
    return out


def bundles(fleet: Fleet, g: int, count: int) -> list[tuple[str, bytes]]:
    """Gateway ``g``'s readings as (bundle id, payload) of up to 200 Observations each, the
    way ``gateway.uplink.MqttUplink`` sends them."""
    docs = [orjson.loads(o) for o in observations(fleet, g, count)]
    out: list[tuple[str, bytes]] = []
    for i in range(0, len(docs), BUNDLE_SIZE):
        bid = str(uuid.uuid4())
        out.append((bid, orjson.dumps(bundle(docs[i : i + BUNDLE_SIZE], bundle_id=bid))))
    return out


def row_of(raw: bytes, received_at: datetime) -> StoredObservation:
    """The store row of one Observation (what ingest would write)."""
    return stored_row(facts_from_observation(orjson.loads(raw)), raw, received_at)


def heart_rate_rows(
    patient: str, device: str, *, days: int, end: datetime = EPOCH
) -> Iterator[StoredObservation]:
    """One heart-rate row a minute for ``days`` days before ``end`` (a chart's history)."""
    start = end - timedelta(days=days)
    received = end
    for n in range(days * 24 * 60):
        at = start + timedelta(minutes=n)
        obs = observation_from_reading(
            _reading("hr", at, n), patient=patient, device=device, gateway="gw-chart"
        )
        yield row_of(orjson.dumps(obs), received)


def median_ms(samples: list[float]) -> float:
    return float(round(statistics.median(samples) * 1000, 2))
