"""Alerting benchmark: latency from an observation's arrival at ingest to the nurse's
notification, and the alert engine's cost per observation at 1 and 90 days of history.

    python bench/alerting.py            # full run (about four and a half minutes)
    python bench/alerting.py --quick    # under a minute
    python bench/alerting.py --smoke    # tiny counts (the test suite runs this)
    python bench/alerting.py --profile  # also a cProfile of the engine at 90 days

It starts its own mosquitto and PostgreSQL + TimescaleDB (``tests/support/services.py``),
prints figures as it goes and ends with one JSON line. It never asserts timings; it exits
non-zero only when a notification never arrived (or arrived twice), or when the engines
on the 1-day and the 90-day stores disagree on the alerts they opened.

(a) latency, the production chain: ``wardwatch ingest run --with-alerting
    --alerting-policy FILE`` in its own process (MQTT worker, store, ``on_stored`` hook,
    alert engine, the notification dispatcher with no group wait, apprise), a care team
    whose notify URL is apprise ``json://`` to a local HTTP receiver in this process, and
    a synthetic gateway here publishing one-reading bundles at QoS 1. Each measured
    reading is a hypertensive crisis (SBP 195) of a different patient, so each opens a
    new alert; every patient's state was built by an earlier normal reading and apprise
    has delivered a few alerts already (a warm service, not a cold start). Readings are
    sent at a fixed interval, several times the service time, so the figure is latency
    and not queueing. Latency = the receiver's clock when the notification's POST body has
    arrived minus this process's clock just before the gateway's ``publish`` (so the
    broker hop is included); matched by the (synthetic) patient id in the message. First
    on TimescaleDB (the figure in the JSON), then on SQLite. Then, for where the time
    goes, the same readings in this process without MQTT and apprise.
(b) detector cost: stores holding 1 day and 90 days of the same synthetic history (see
    ``bench/_alerting_history.py``: HR, SpO2, CGM every 5 min, BP twice a day, a daily
    weight, and the CGM alerts of three meals a day), one ``AlertEngine`` on each. Each
    patient's first observation is timed alone (the engine rebuilds that patient's state
    from the store: a separate figure); then windows of new observations, identical for
    every store, are written to each store (untimed, as ingest would) and fed one
    observation per ``process`` call to each engine in turn. Wall time per observation
    (the database's work included), median over windows; the ratio is the median of the
    per-window ratios 90 days / 1 day.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

# This script is named like the ``alerting`` package: the repository goes before bench/
# (which Python puts first for a script), so that ``alerting`` is the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _alerting_history as history
import _common as common
import orjson
import paho.mqtt.client as mqtt
import psycopg

from alerting.engine import AlertEngine
from ingest.pipeline import IngestPipeline
from ingest.stores import open_store
from wardwatch import topics
from wardwatch.fhir import bundle, observation_from_reading
from wardwatch.reading import Component, Reading
from wardwatch.store import CareTeam, Store, StoredObservation

CRISIS_RULE = "bp.hypertensive_crisis"


@dataclass(frozen=True)
class Sizes:
    crises: int
    """Measured crisis readings on TimescaleDB."""
    crises_sqlite: int
    interval: float
    """Seconds between two readings sent."""
    cost_patients: int
    cost_windows: int
    cost_window: timedelta
    cost_sqlite: bool
    """Also measure the detector cost on SQLite."""


SIZES = {
    "full": Sizes(1000, 500, 0.1, 4, 12, timedelta(hours=6), True),
    "quick": Sizes(150, 60, 0.075, 1, 8, timedelta(hours=6), False),
    "smoke": Sizes(20, 0, 0.1, 1, 2, timedelta(hours=6), False),
}
HISTORY_DAYS = (1, 90)


def say(text: str) -> None:
    print(text, flush=True)


# -- the nurse's end: a local receiver for apprise json:// ------------------------------------


class TimedReceiver:
    """Like ``tests/support/receiver.py``'s JsonReceiver, and notes when each body arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                at = time.perf_counter()
                try:
                    doc = orjson.loads(body)
                except orjson.JSONDecodeError:
                    doc = {"_raw": body.decode(errors="replace")}
                with outer.lock:
                    outer.received.append((at, doc))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TimedReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self) -> int:
        with self.lock:
            return len(self.received)


_FIELD = re.compile(r"^(patient): (\S+)$", re.MULTILINE)
CRISIS_LINE = "- Hypertensive crisis (urgent, bp.hypertensive_crisis) since "
"""How the dispatcher's message lists the crisis alert (the rule's title, no rule id)."""


def _fields(doc: dict[str, Any]) -> dict[str, str]:
    message = str(doc.get("message", ""))
    fields = dict(_FIELD.findall(message))
    if CRISIS_LINE in message:
        fields["rule"] = CRISIS_RULE
    return fields


# -- the gateway's end ------------------------------------------------------------------------


class Publisher:
    """A synthetic gateway: paho-mqtt v5, QoS 1, noting when each acknowledgement came."""

    def __init__(self, port: int, gateway: str) -> None:
        self.topic = topics.obs_topic(gateway)
        self.acked: dict[str, float] = {}
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,  # type: ignore[attr-defined]
            client_id=f"bench-alerting-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_ack
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topics.ack_topic(gateway), qos=1)
        if not subscribed.wait(10):
            raise SystemExit("the bench gateway could not subscribe to its acknowledgements")

    def _on_ack(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        at = time.perf_counter()
        ack = orjson.loads(message.payload)
        if ack.get("rejected"):
            say(f"  REJECTED by ingest: {[r['code'] for r in ack['rejected']]}")
        with self.lock:
            self.acked.setdefault(str(ack["bundle"]), at)

    def publish(self, payload: bytes) -> float:
        started = time.perf_counter()
        self.client.publish(self.topic, payload, qos=1)
        return started

    def wait_acks(self, bundles: Sequence[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(b in self.acked for b in bundles):
                    return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _bp_reading(at: datetime, crisis: bool) -> Reading:
    sys_, dia = (195.0, 105.0) if crisis else (128.0, 82.0)
    return Reading(
        "blood_pressure",
        at,
        components=(
            Component("systolic", sys_, "mm[Hg]"),
            Component("diastolic", dia, "mm[Hg]"),
            Component("mean_arterial_pressure", round((sys_ + 2 * dia) / 3, 1), "mm[Hg]"),
        ),
    )


@dataclass(frozen=True)
class Message:
    patient: str
    crisis: bool
    bundle: str
    payload: bytes


def _message(fleet: common.Fleet, p: int, at: datetime, crisis: bool) -> Message:
    obs = observation_from_reading(
        _bp_reading(at, crisis),
        patient=fleet.patient(0, p),
        device=fleet.device(0, p, "cuff"),
        gateway=fleet.gateway(0),
    )
    bid = str(uuid.uuid4())
    return Message(fleet.patient(0, p), crisis, bid, orjson.dumps(bundle([obs], bundle_id=bid)))


WARM_PATIENTS = 5
"""Patients whose crisis is sent before the measurement (apprise's first deliveries)."""


def plan(
    fleet: common.Fleet, crises: int, base: datetime
) -> tuple[list[Message], list[Message], list[Message]]:
    """Warm-up: one normal reading per patient, in bundles of up to 200 like a gateway's
    (the engine rebuilds each patient's state: a cold start is not what is measured); then
    the crises of ``WARM_PATIENTS`` patients, not measured. Then one crisis per patient,
    five minutes after their normal reading: each opens a new alert."""
    patients = range(fleet.patients_per_gateway)
    normal = [
        observation_from_reading(
            _bp_reading(base, False),
            patient=fleet.patient(0, p),
            device=fleet.device(0, p, "cuff"),
            gateway=fleet.gateway(0),
        )
        for p in patients
    ]
    warm = []
    for i in range(0, len(normal), common.BUNDLE_SIZE):
        bid = str(uuid.uuid4())
        payload = orjson.dumps(bundle(normal[i : i + common.BUNDLE_SIZE], bundle_id=bid))
        warm.append(Message("", False, bid, payload))
    crisis_at = base + timedelta(minutes=5)
    ordered = [_message(fleet, p, crisis_at, True) for p in patients]
    return warm, ordered[:WARM_PATIENTS], ordered[WARM_PATIENTS:]


POLICY = """\
# bench/alerting.py: the care team's own notify URL (step 0), links to the worklist, and
# no group wait (the default: a notification leaves as soon as the alert is committed).
worklist_url: https://wardwatch.example.org
defaults:
  group_wait: 0s
"""


def write_policy(log_dir: Path) -> Path:
    """The notification policy the ingest process runs with (``--alerting-policy``)."""
    path = log_dir / "alerting-policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def start_ingest(store_url: str, broker: str, log_dir: Path) -> subprocess.Popen[bytes]:
    """``wardwatch ingest run --with-alerting``, as an operator would start it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wardwatch.cli",
            "ingest",
            "run",
            "--store",
            store_url,
            "--broker",
            broker,
            "--with-alerting",
            "--alerting-policy",
            str(write_policy(log_dir)),
        ],
        cwd=common.REPO,
        stdout=(log_dir / "ingest.out").open("wb"),
        stderr=(log_dir / "ingest.err").open("wb"),
    )


def stop_ingest(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _percentile(samples: Sequence[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def latency(
    store_url: str, setup: Store, mosquitto_port: int, crises: int, sizes: Sizes
) -> dict[str, Any]:
    """Crisis readings through the production chain; latency of each notification."""
    fleet = common.Fleet(1, crises + WARM_PATIENTS)
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
    warm, first_round, measured = plan(fleet, crises, base)
    with TimedReceiver() as receiver, tempfile.TemporaryDirectory(prefix="bench-alerting-") as tmp:
        fleet.enrol(setup)
        setup.upsert_care_team(CareTeam("bench", "Bench team", (receiver.url,)))
        setup.close()
        proc = start_ingest(store_url, f"mqtt://127.0.0.1:{mosquitto_port}", Path(tmp))
        gateway = Publisher(mosquitto_port, fleet.gateway(0))
        try:
            # the worker is ready when a bundle is acknowledged (before it subscribes, a
            # message to the shared subscription has no one to go to: send again)
            deadline = time.monotonic() + 60
            while not gateway.wait_acks([warm[0].bundle], 0.5):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"ingest did not start:\n{_tail(Path(tmp) / 'ingest.err')}")
                gateway.publish(warm[0].payload)
            for m in warm[1:]:
                gateway.publish(m.payload)
            if not gateway.wait_acks([m.bundle for m in warm], 60):
                raise SystemExit("warm-up readings never acknowledged")
            for m in first_round:
                gateway.publish(m.payload)
                time.sleep(sizes.interval)
            deadline = time.monotonic() + 30
            while receiver.count() < len(first_round) and time.monotonic() < deadline:
                time.sleep(0.05)
            with receiver.lock:
                warm_notifications = len(receiver.received)
                receiver.received.clear()
            if warm_notifications != len(first_round):
                raise SystemExit(f"warm-up: {warm_notifications} notifications, "
                                 f"expected {len(first_round)}")  # fmt: skip
            sent: dict[str, list[float]] = {}
            bundles: list[str] = []
            t_start = time.perf_counter() + 0.1
            for i, m in enumerate(measured):
                delay = t_start + i * sizes.interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                at = gateway.publish(m.payload)
                if m.crisis:
                    sent.setdefault(m.patient, []).append(at)
                    bundles.append(m.bundle)
            deadline = time.monotonic() + 30
            while receiver.count() < crises and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # anything more (a duplicate) would arrive now
            gateway.wait_acks(bundles, 5)
        finally:
            gateway.close()
            stop_ingest(proc)
        with receiver.lock:
            received = list(receiver.received)
    got: dict[str, list[float]] = {}
    other = 0
    for at, doc in received:
        f = _fields(doc)
        if f.get("rule") == CRISIS_RULE and "patient" in f:
            got.setdefault(f["patient"], []).append(at)
        else:
            other += 1
    samples: list[float] = []
    for patient, starts in sent.items():
        arrivals = sorted(got.get(patient, []))
        samples += [(t1 - t0) * 1000 for t0, t1 in zip(starts, arrivals, strict=False)]
    arrived = sum(len(v) for v in got.values())
    acks = [(gateway.acked[b] - t0) * 1000 for b, t0 in _ack_pairs(measured, sent, gateway)]
    return {
        "sent": crises,
        "notified": arrived,
        "other_notifications": other,
        "exact": arrived == crises and len(samples) == crises and other == 0,
        "p50_ms": round(statistics.median(samples), 1) if samples else None,
        "p99_ms": round(_percentile(samples, 99), 1) if len(samples) > 1 else None,
        "max_ms": round(max(samples), 1) if samples else None,
        "ack_p50_ms": round(statistics.median(acks), 1) if acks else None,
    }


def _ack_pairs(
    measured: Sequence[Message], sent: dict[str, list[float]], gateway: Publisher
) -> list[tuple[str, float]]:
    """(bundle, publish time) of every acknowledged crisis reading."""
    seen: dict[str, int] = {}
    out = []
    for m in measured:
        if not m.crisis:
            continue
        k = seen.get(m.patient, 0)
        seen[m.patient] = k + 1
        if m.bundle in gateway.acked:
            out.append((m.bundle, sent[m.patient][k]))
    return out


def _say_latency(name: str, r: dict[str, Any]) -> None:
    say(f"  {name}: {r['sent']} crises -> {r['notified']} notifications "
        f"({r['other_notifications']} others); latency p50 {r['p50_ms']} ms, "
        f"p99 {r['p99_ms']} ms, max {r['max_ms']} ms; "
        f"publish -> ack p50 {r['ack_p50_ms']} ms")  # fmt: skip


class CountingStore:
    """A store proxy counting the calls made through it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        return counted


def breakdown(dsn: str, crises: int) -> dict[str, float]:
    """The same readings in one process, without MQTT and apprise: ingest vs engine time."""
    store = open_store(dsn)
    fleet = common.Fleet(1, crises + WARM_PATIENTS)
    fleet.enrol(store)
    counting = CountingStore(store)
    engine = AlertEngine(cast(Store, counting))
    spent = [0.0]

    def hook(rows: Sequence[StoredObservation]) -> None:
        started = time.perf_counter()
        engine.process(rows)
        spent[0] += time.perf_counter() - started

    pipeline = IngestPipeline(store, on_stored=[hook])
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
    warm, first_round, measured = plan(fleet, crises, base)
    for m in [*warm, *first_round]:
        pipeline.ingest_bundle(m.payload, source="bench", gateway=fleet.gateway(0))
    spent[0], counting.calls = 0.0, 0
    started = time.perf_counter()
    for m in measured:
        pipeline.ingest_bundle(m.payload, source="bench", gateway=fleet.gateway(0))
    total = time.perf_counter() - started
    store.close()
    n = len(measured)
    return {
        "ms_per_crisis": round(total / n * 1000, 2),
        "engine_ms": round(spent[0] / n * 1000, 2),
        "engine_store_calls": round(counting.calls / n, 1),
    }


# -- main ------------------------------------------------------------------------------------


def detector_cost(
    timescale: Any, sizes: Sizes, tmp: Path, profile: bool
) -> tuple[list[history.CostRun], list[Store]]:
    """Runs for TimescaleDB at 1 and 90 days (then SQLite at 1 and 90 days if sized so)."""
    say(f"\n(b) detector cost: {sizes.cost_patients} patient(s), HR + SpO2 + CGM every 5 min, "
        "BP twice a day, daily weight, 3 meal excursions a day (each one CGM alert)")  # fmt: skip
    started = time.perf_counter()
    hist = history.History.build(sizes.cost_patients, max(HISTORY_DAYS), common.EPOCH)
    say(f"  history built in {time.perf_counter() - started:.1f} s")
    stores: list[Store] = []
    runs: list[history.CostRun] = []
    for backend in ("TimescaleDB", "SQLite") if sizes.cost_sqlite else ("TimescaleDB",):
        for days in HISTORY_DAYS:
            if backend == "TimescaleDB":
                dsn = common.fresh_database(timescale, f"hist{days}")
                store = open_store(dsn)
            else:
                dsn = ""
                store = open_store(f"sqlite:{tmp / f'hist{days}.db'}")
            stores.append(store)
            started = time.perf_counter()
            rows, alerts = hist.fill(store, days)
            if dsn:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("ANALYZE")  # as autovacuum would have, long before day 90
            say(f"  {backend}, {days} day(s): {rows} observations and {alerts} alerts written "
                f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
            runs.append(history.new_run(f"{backend}, {days} day(s)", store))
    say(f"  per observation, {sizes.cost_windows} windows of {sizes.cost_window} (median; "
        "one observation per process() call, the engines taking turns):")  # fmt: skip
    history.measure_cost(
        runs, sizes.cost_patients, common.EPOCH, sizes.cost_windows, sizes.cost_window, say
    )
    if profile:
        at = common.EPOCH + (sizes.cost_windows + 2) * sizes.cost_window
        extra = history.window(sizes.cost_patients, at, sizes.cost_window)
        profiler = cProfile.Profile()
        profiler.enable()
        history.feed([runs[1]], extra, measure=False)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        say(f"  cProfile, {runs[1].label}, one window (its store write included):\n"
            f"{out.getvalue()}")  # fmt: skip
    return runs, stores


def run(mode: str, profile: bool) -> dict[str, Any]:
    sizes = SIZES[mode]
    began = time.perf_counter()
    say(f"alerting bench ({mode}), {os.cpu_count()} CPUs, started {datetime.now(UTC):%H:%M:%S}Z")
    with common.services() as (mosquitto, timescale), tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        say(f"\n(a) latency: gateway publish -> `wardwatch ingest run --with-alerting` -> apprise "
            f"json:// -> receiver; one reading every {sizes.interval * 1000:.0f} ms, "
            "each a crisis opening a new alert")  # fmt: skip
        dsn = common.fresh_database(timescale, "latency")
        ts = latency(dsn, open_store(dsn), mosquitto.port, sizes.crises, sizes)
        _say_latency("TimescaleDB", ts)
        lite: dict[str, Any] | None = None
        if sizes.crises_sqlite:
            url = f"sqlite:{tmp / 'latency.db'}"
            lite = latency(url, open_store(url), mosquitto.port, sizes.crises_sqlite, sizes)
            _say_latency("SQLite", lite)

        say("\n  where the time goes, in this process (IngestPipeline.ingest_bundle with the "
            "engine as its on_stored hook, TimescaleDB, no MQTT, no delivery):")  # fmt: skip
        b = breakdown(common.fresh_database(timescale, "breakdown"), min(sizes.crises, 100))
        say(f"    {b['ms_per_crisis']} ms per crisis reading: {b['engine_ms']} ms in "
            f"AlertEngine.process ({b['engine_store_calls']} store calls), the rest parse, "
            "validation and the store write")  # fmt: skip

        runs, stores = detector_cost(timescale, sizes, tmp, profile)
        history.close_all(stores)
    ts1, ts90 = runs[:2]
    ratios = history.window_ratios(ts90, ts1)
    ratio = statistics.median(ratios)
    say(f"  ratio 90 days / 1 day, median of the per-window ratios: TimescaleDB {ratio:.3f} "
        f"(windows {min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
    ratio_lite: float | None = None
    if len(runs) == 4:
        ratios = history.window_ratios(runs[3], runs[2])
        ratio_lite = statistics.median(ratios)
        say(f"  SQLite {ratio_lite:.3f} (windows {min(ratios):.2f}-{max(ratios):.2f})")
    say(f"  (whole run {time.perf_counter() - began:.0f} s)")
    agree = len({r.opened for r in runs}) == 1
    if not agree:
        say(f"ENGINES DISAGREE on alerts opened: {[(r.label, r.opened) for r in runs]}")
    exact = ts["exact"] and (lite is None or lite["exact"])
    if not exact:
        say("NOTIFICATIONS LOST OR DUPLICATED (see the counts above)")
    return {
        "latency_p50_ms": ts["p50_ms"],
        "latency_p99_ms": ts["p99_ms"],
        "detector_cost_ratio_90d_to_1d": round(ratio, 3),
        "latency_max_ms": ts["max_ms"],
        "ack_p50_ms": ts["ack_p50_ms"],
        "crises": ts["sent"],
        "latency_p50_ms_sqlite": lite["p50_ms"] if lite else None,
        "latency_p99_ms_sqlite": lite["p99_ms"] if lite else None,
        "ingest_ms_per_crisis_in_process": b["ms_per_crisis"],
        "engine_ms_per_crisis_in_process": b["engine_ms"],
        "detector_us_per_obs_1d": round(statistics.median(ts1.wall) * 1e6, 1),
        "detector_us_per_obs_90d": round(statistics.median(ts90.wall) * 1e6, 1),
        "detector_cost_ratio_90d_to_1d_sqlite": (
            round(ratio_lite, 3) if ratio_lite is not None else None
        ),
        "first_touch_ms_1d": round(statistics.median(ts1.first_touch) * 1e3, 2),
        "first_touch_ms_90d": round(statistics.median(ts90.first_touch) * 1e3, 2),
        "exact": exact,
        "engines_agree": agree,
        "mode": mode,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smaller counts, under a minute")
    group.add_argument("--smoke", action="store_true", help="tiny counts (tests)")
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the engine at 90 days"
    )
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    summary = run(mode, args.profile)
    print(orjson.dumps(summary).decode(), flush=True)
    return 0 if summary["exact"] and summary["engines_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
