"""Ingest benchmark: raw COPY limit, the acknowledged MQTT -> ingest -> TimescaleDB path
with 1, 2 and 4 workers, and the 90-day chart query.

    python bench/ingest.py            # full run
    python bench/ingest.py --quick    # under two minutes
    python bench/ingest.py --smoke    # tiny counts (the test suite runs this)

It starts its own mosquitto and PostgreSQL + TimescaleDB (``tests/support/services.py``),
prints figures as it goes and ends with one JSON line. It never asserts timings; it exits
non-zero only when something was lost or stored twice, or an acknowledgement never came.

Ingest workers run as separate processes (this script with ``--worker``), each with its
own MqttIngest, IngestPipeline and database connection, on the shared subscription.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import os
import pstats
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import orjson
import paho.mqtt.client as mqtt
import psycopg

from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from wardwatch import topics
from wardwatch.store import Store, StoredObservation

WORKER_COUNTS = (1, 2, 4)


@dataclass(frozen=True)
class Sizes:
    raw_rows: int
    gateways: int
    obs_per_gateway: int
    window: int
    chart_days: int
    chart_runs: int


SIZES = {
    "full": Sizes(200_000, 8, 20_000, 4, 90, 30),
    "quick": Sizes(60_000, 8, 5_000, 4, 90, 15),
    "smoke": Sizes(2_000, 2, 400, 2, 2, 3),
}
RAW_BATCH = 10_000
CHART_QUERY = """
    SELECT time_bucket('1 hour', at) AS bucket, avg(value), min(value), max(value), count(*)
    FROM observations
    WHERE patient = %s AND kind = %s AND at >= %s AND at < %s
    GROUP BY bucket ORDER BY bucket
"""


def say(text: str) -> None:
    print(text, flush=True)


# -- (a) raw COPY ----------------------------------------------------------------------


def compact_resource(raw: bytes, size: int = 650) -> bytes:
    """A minimal Observation of the same reading, padded to ``size`` bytes (the issue's
    raw figure: a 650-byte document per row)."""
    doc = orjson.loads(raw)
    keep = ("resourceType", "id", "identifier", "status", "subject", "effectiveDateTime")
    out = {k: doc[k] for k in keep}
    out["device"] = doc["device"]
    text = orjson.dumps(out)
    out["note"] = [{"text": "x" * max(0, size - len(text) - 22)}]
    return orjson.dumps(out)


def raw_rows(count: int, *, compact: bool) -> list[StoredObservation]:
    """Pre-built rows for the raw COPY: the realistic BP/HR/SpO2 mix, or heart-rate rows
    with a ~650-byte resource."""
    fleet = common.Fleet(gateways=max(1, count // 30_000 + 1), patients_per_gateway=50)
    per = -(-count // fleet.gateways)
    received = datetime.now(UTC)
    rows: list[StoredObservation] = []
    for g in range(fleet.gateways):
        for raw in common.observations(fleet, g, min(per, count - len(rows))):
            row = common.row_of(raw, received)
            if compact:
                row = StoredObservation(
                    identifier=row.identifier,
                    patient=row.patient,
                    device=row.device,
                    kind=row.kind,
                    at=row.at,
                    value=row.value if row.value is not None else 120.0,
                    unit=row.unit,
                    components=row.components,
                    resource=compact_resource(raw),
                    received_at=received,
                    gateway=row.gateway,
                )
            rows.append(row)
    return rows


def copy_rate(store: Store, rows: Sequence[StoredObservation], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        store.write_observations(rows[i : i + batch])
    return len(rows) / (time.perf_counter() - started)


# -- (b) the full path ------------------------------------------------------------------


class Gateway:
    """A synthetic gateway: paho-mqtt v5 client publishing bundles at QoS 1, at most
    ``window`` unacknowledged at a time, counting acknowledgements."""

    def __init__(self, port: int, gateway_id: str, window: int) -> None:
        self.id = gateway_id
        self.window = threading.Semaphore(window)
        self.pending: set[str] = set()
        self.accepted = 0
        self.rejected = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,  # type: ignore[attr-defined]
            client_id=f"bench-{gateway_id}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_ack
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topics.ack_topic(gateway_id), qos=1)

    def _on_ack(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        ack = orjson.loads(message.payload)
        with self.lock:
            if ack["bundle"] not in self.pending:
                return
            self.pending.discard(ack["bundle"])
            self.accepted += len(ack["accepted"])
            self.rejected += len(ack["rejected"])
            if not self.pending:
                self.done.set()
        self.window.release()

    def send(self, payloads: Sequence[tuple[str, bytes]]) -> None:
        with self.lock:
            self.pending.update(bid for bid, _ in payloads)
            self.done.clear()
        topic = topics.obs_topic(self.id)
        for _bid, payload in payloads:
            self.window.acquire()
            self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_workers(n: int, broker: str, dsn: str) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", "--broker", broker, "--dsn", dsn],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"ingest worker did not start (said {line!r})")
    return procs


def stop_workers(procs: Sequence[subprocess.Popen[str]]) -> list[str]:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    out = []
    for p in procs:
        try:
            text, _ = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            text, _ = p.communicate()
        out.append(text.strip())
    return out


def full_path(
    mosquitto_port: int,
    dsn: str,
    workers: int,
    sizes: Sizes,
    payloads: list[list[tuple[str, bytes]]],
) -> dict[str, Any]:
    """Publish every gateway's bundles through ``workers`` ingest processes; wait for all
    acknowledgements; check the database holds each reading exactly once."""
    fleet = common.Fleet(sizes.gateways)
    store = open_store(dsn)
    fleet.enrol(store)
    procs = start_workers(workers, f"mqtt://127.0.0.1:{mosquitto_port}", dsn)
    gateways = [
        Gateway(mosquitto_port, fleet.gateway(g), sizes.window) for g in range(fleet.gateways)
    ]
    try:
        for gw in gateways:
            if not gw.subscribed.wait(10):
                raise SystemExit(f"{gw.id} could not subscribe to its acknowledgements")
        sent = sizes.gateways * sizes.obs_per_gateway
        started = time.perf_counter()
        threads = [
            threading.Thread(target=gw.send, args=(payloads[g],), daemon=True)
            for g, gw in enumerate(gateways)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 300
        for gw in gateways:
            if not gw.done.wait(max(0.0, deadline - time.monotonic())):
                raise SystemExit(f"{gw.id}: {len(gw.pending)} bundles never acknowledged")
        elapsed = time.perf_counter() - started
        accepted = sum(gw.accepted for gw in gateways)
        rejected = sum(gw.rejected for gw in gateways)
        # resend a few bundles: duplicates must be acknowledged and not stored again
        for g, gw in enumerate(gateways[:2]):
            gw.send(payloads[g][:3])
            if not gw.done.wait(60):
                raise SystemExit(f"{gw.id}: resent bundles never acknowledged")
    finally:
        for gw in gateways:
            gw.close()
        worker_out = stop_workers(procs)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT identifier) FROM observations"
        ).fetchone()
    assert row is not None
    stored, distinct = int(row[0]), int(row[1])
    store.close()
    exactly_once = stored == distinct == sent and accepted == sent and rejected == 0
    return {
        "workers": workers,
        "sent": sent,
        "acked": accepted,
        "rejected": rejected,
        "stored": stored,
        "exactly_once": exactly_once,
        "seconds": elapsed,
        "obs_per_s": sent / elapsed,
        "bundles_per_worker": [line.rsplit(" ", 1)[-1] for line in worker_out],
        # CPU the worker processes used (all threads, after start-up) per observation:
        # what ingest itself costs, whatever else the machine is doing
        "worker_cpu_us_per_obs": sum(
            float(line.split()[1])
            for text in worker_out
            for line in text.splitlines()
            if line.startswith("cpu_seconds ")
        )
        / sent
        * 1e6,
    }


async def worker_main(broker: str, dsn: str) -> None:
    """One ingest worker process: MqttIngest on the shared subscription until SIGTERM."""
    from ingest.mqtt import MqttIngest
    from ingest.pipeline import tune_gc_for_ingest
    from wardwatch.mqtt import BrokerAddress

    logging.basicConfig(level=logging.WARNING)
    store = open_store(dsn, migrate=False)
    worker = MqttIngest(IngestPipeline(store), BrokerAddress.parse(broker))
    tune_gc_for_ingest()  # as `wardwatch ingest run` does
    task = asyncio.create_task(worker.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await asyncio.wait_for(worker.ready.wait(), 30)
    print("ready", flush=True)
    cpu_at_ready = time.process_time()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    store.close()
    st = worker.stats
    print(
        f"held at most {st.max_held} (receive maximum {worker.receive_maximum}), "
        f"queued at most {st.max_queued}, {st.bundles} bundles in {st.batches} transactions, "
        f"store failures {st.store_failures}",
        file=sys.stderr,
        flush=True,
    )
    print(f"cpu_seconds {time.process_time() - cpu_at_ready:.3f}", flush=True)
    print(f"bundles {worker.bundles}", flush=True)


# -- where the time goes ------------------------------------------------------------------


class TimedStore:
    """A store proxy that adds up the time spent in write_observations."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.write_seconds = 0.0

    def write_observations(self, rows: Sequence[StoredObservation]) -> int:
        started = time.perf_counter()
        try:
            return self.store.write_observations(rows)
        finally:
            self.write_seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def breakdown(dsn: str, payloads: list[tuple[str, bytes]], profile: bool) -> dict[str, float]:
    """In-process: CPU of parse/check/row building vs. the store write, per observation,
    for 50-bundle batches (what one worker does per transaction)."""
    fleet = common.Fleet(1)
    store = open_store(dsn)
    fleet.enrol(store)
    timed = TimedStore(store)
    pipeline = IngestPipeline(timed)
    items = [(p, "mqtt:bench", fleet.gateway(0)) for _, p in payloads]
    profiler = cProfile.Profile() if profile else None
    count = 0
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    for i in range(0, len(items), 50):
        result = pipeline.ingest_bundles(items[i : i + 50])
        count += sum(len(r.accepted) for r in result.results)
    if profiler:
        profiler.disable()
    total = time.perf_counter() - started
    store.close()
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
        say(out.getvalue())
    return {
        "observations": count,
        "us_per_obs_total": total / count * 1e6,
        "us_per_obs_write": timed.write_seconds / count * 1e6,
        "us_per_obs_python": (total - timed.write_seconds) / count * 1e6,
    }


# -- (c) the chart query --------------------------------------------------------------------


def _median_query_ms(
    conn: psycopg.Connection[Any], sql: str, args: Sequence[Any], runs: int
) -> float:
    times: list[float] = []
    for n in range(runs + 1):
        started = time.perf_counter()
        conn.execute(sql, args).fetchall()
        if n:  # the first run warms the caches
            times.append(time.perf_counter() - started)
    return common.median_ms(times)


def chart_query(dsn: str, days: int, runs: int) -> dict[str, Any]:
    """The chart query on the schema as migrated (covering index, migration 0002); then, as
    a what-if on the same data, against an hourly rollup table."""
    store = open_store(dsn)
    fleet = common.Fleet(1)
    fleet.enrol(store)
    patient, device = fleet.patient(0, 0), fleet.device(0, 0, "hr")
    rows = list(common.heart_rate_rows(patient, device, days=days))
    for i in range(0, len(rows), RAW_BATCH):
        store.write_observations(rows[i : i + RAW_BATCH])
    store.close()
    end = common.EPOCH
    args = (patient, "heart_rate", end - timedelta(days=days), end)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE observations")
        buckets = len(conn.execute(CHART_QUERY, args).fetchall())
        as_built = _median_query_ms(conn, CHART_QUERY, args, runs)
        conn.execute(
            "CREATE MATERIALIZED VIEW bench_hourly AS SELECT patient, kind, "
            "time_bucket('1 hour', at) AS bucket, avg(value) AS avg, min(value) AS min, "
            "max(value) AS max, count(*) AS n FROM observations GROUP BY 1, 2, 3"
        )
        conn.execute("CREATE INDEX ON bench_hourly (patient, kind, bucket)")
        conn.execute("VACUUM ANALYZE bench_hourly")
        rollup = _median_query_ms(
            conn,
            "SELECT bucket, avg, min, max, n FROM bench_hourly WHERE patient = %s AND kind = %s "
            "AND bucket >= %s AND bucket < %s ORDER BY bucket",
            args,
            runs,
        )
    return {
        "ms": as_built,
        "rows": len(rows),
        "buckets": buckets,
        "rollup_ms": rollup,
    }


# -- main ------------------------------------------------------------------------------------


def run(mode: str, profile: bool) -> dict[str, Any]:
    sizes = SIZES[mode]
    say(f"ingest bench ({mode}), {os.cpu_count()} CPUs, started {datetime.now(UTC):%H:%M:%S}Z")
    with common.services() as (mosquitto, timescale):
        say("\n(a) raw limit: TimescaleStore.write_observations, pre-built rows, "
            f"{RAW_BATCH} rows per transaction")  # fmt: skip
        rows = raw_rows(sizes.raw_rows, compact=True)
        size = sum(len(r.resource) for r in rows) / len(rows)
        raw = copy_rate(open_store(common.fresh_database(timescale, "raw")), rows, RAW_BATCH)
        say(f"  {len(rows)} rows, {size:.0f}-byte resource: {raw:,.0f} rows/s")
        real = raw_rows(sizes.raw_rows, compact=False)
        real_size = sum(len(r.resource) for r in real) / len(real)
        raw_real = copy_rate(open_store(common.fresh_database(timescale, "rawr")), real, RAW_BATCH)
        say(f"  {len(real)} rows, BP/HR/SpO2 as the gateway builds them ({real_size:.0f} bytes "
            f"mean): {raw_real:,.0f} rows/s")  # fmt: skip
        raw_200 = copy_rate(open_store(common.fresh_database(timescale, "raws")), real, 200)
        say(f"  same rows, 200 per transaction (one bundle per commit): {raw_200:,.0f} rows/s")
        del rows, real

        say(f"\n(b) full path: {sizes.gateways} gateways x {sizes.obs_per_gateway} observations, "
            f"bundles of {common.BUNDLE_SIZE}, QoS 1, up to {sizes.window} unacknowledged per "
            "gateway; workers are separate processes")  # fmt: skip
        fleet = common.Fleet(sizes.gateways)
        payloads = [common.bundles(fleet, g, sizes.obs_per_gateway) for g in range(sizes.gateways)]
        runs = []
        for workers in WORKER_COUNTS:
            dsn = common.fresh_database(timescale, f"full{workers}")
            r = full_path(mosquitto.port, dsn, workers, sizes, payloads)
            runs.append(r)
            say(f"  {workers} worker(s): {r['obs_per_s']:,.0f} obs/s "
                f"({r['obs_per_s'] / raw:.2f} of raw), {r['sent']} sent, {r['acked']} acked, "
                f"{r['stored']} stored, exactly once: {r['exactly_once']}, "
                f"worker CPU {r['worker_cpu_us_per_obs']:.1f} us/obs, "
                f"bundles per worker {r['bundles_per_worker']}")  # fmt: skip
            timescale.drop_database(dsn.rsplit("/", 1)[-1])
        best = max(runs, key=lambda r: r["obs_per_s"])

        say("\nwhere the time goes (one process, 50 bundles per transaction):")
        b = breakdown(common.fresh_database(timescale, "prof"), payloads[0], profile)
        say(f"  {b['us_per_obs_total']:.1f} us/obs = {b['us_per_obs_python']:.1f} us parse, "
            f"check and row building in Python + {b['us_per_obs_write']:.1f} us store write "
            "(COPY + insert + commit)")  # fmt: skip
        del payloads

        say(f"\n(c) chart query: {sizes.chart_days} days of one reading a minute, hourly buckets")
        chart = chart_query(
            common.fresh_database(timescale, "chart"), sizes.chart_days, sizes.chart_runs
        )
        chart_ms = chart["ms"]
        say(f"  {chart['rows']} rows -> {chart['buckets']} buckets: median {chart_ms} ms "
            f"over {sizes.chart_runs} runs (schema as migrated)")  # fmt: skip
        say(f"  what-if, same data: hourly rollup table: {chart['rollup_ms']} ms")

    lost = [r for r in runs if not r["exactly_once"]]
    summary = {
        "raw_copy_rows_per_s": round(raw),
        "full_path_obs_per_s": round(best["obs_per_s"]),
        "workers": best["workers"],
        "ratio_to_raw": round(best["obs_per_s"] / raw, 3),
        "chart_query_ms_median": chart_ms,
        "raw_copy_rows_per_s_gateway_docs": round(raw_real),
        "full_path_by_workers": {str(r["workers"]): round(r["obs_per_s"]) for r in runs},
        "worker_cpu_us_per_obs_by_workers": {
            str(r["workers"]): round(r["worker_cpu_us_per_obs"], 1) for r in runs
        },
        "chart_query_ms_hourly_rollup": chart["rollup_ms"],
        "exactly_once": not lost,
        "mode": mode,
    }
    if lost:
        say(f"LOST OR DUPLICATED: {lost}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smaller counts, under two minutes")
    group.add_argument("--smoke", action="store_true", help="tiny counts (tests)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of ingest")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--broker", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker_main(args.broker, args.dsn))
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    summary = run(mode, args.profile)
    print(orjson.dumps(summary).decode(), flush=True)
    return 0 if summary["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
