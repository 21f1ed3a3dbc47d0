"""Gateway benchmark: the home hub's resident memory and CPU time per reading with 20
simulated BLE devices, the decode time per reading and the outbox's write throughput.

    python bench/gateway.py            # full run (about 3.5 minutes)
    python bench/gateway.py --quick    # under a minute
    python bench/gateway.py --smoke    # tiny windows (the test suite runs this)

It starts its own mosquitto (``tests/support/services.py``), prints figures as it goes and
ends with one JSON line. It never asserts timings; it exits non-zero only when a reading
the hub queued was not stored exactly once, or something was rejected.

(a) decode: the gateway's decode path in this process, profile decode of realistic
    payloads (the fleet's own and the valid ``/work/shared/vectors/ble-gatt.json`` vectors
    of the same characteristics) -> Reading -> FHIR Observation; median of several runs.
(b) outbox: ``gateway.outbox.Outbox.put`` of realistic Observations on a file in the
    temporary directory (WAL, synchronous=FULL), one transaction per reading and 200 per
    transaction; median of several runs.
(c) hub: a separate process (``bench/_gateway_hub.py``) runs the real
    ``gateway.runtime.Gateway`` with the simulated devices (the bleak backend, so in that
    process too) producing values at a steady rate, uplinked over MQTT to the real
    ingest worker (``ingest.mqtt.MqttIngest`` into SQLite, in this process) that
    acknowledges each bundle after commit. First with no device (the baseline), then
    with the fleet. Resident memory from the hub's /proc/PID/status; CPU time (user +
    system, all threads) over a measured window after a warm-up, per reading that reached
    the outbox in that window; the simulator's share from per-task CPU accounting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Run as a script, this directory comes first on sys.path and this file's name would
# shadow the ``gateway`` package: put the repository there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from bench._gateway_hub import DEVICE_STEP, GATEWAY_ID, BenchDevice, fleet, payload  # noqa: E402
from gateway.decoders import NO_CONTEXT  # noqa: E402
from gateway.errors import DecodeError  # noqa: E402
from gateway.outbox import Outbox  # noqa: E402
from gateway.profiles import Profile, ProfileRegistry  # noqa: E402
from ingest.mqtt import MqttIngest  # noqa: E402
from ingest.pipeline import IngestPipeline  # noqa: E402
from ingest.stores import open_store  # noqa: E402
from tests.support.services import MosquittoServer  # noqa: E402
from wardwatch.fhir import observation_from_reading  # noqa: E402
from wardwatch.mqtt import BrokerAddress  # noqa: E402
from wardwatch.store import CareTeam, Patient, Store  # noqa: E402

VECTORS = Path("/work/shared/vectors/ble-gatt.json")
OUTBOX_BATCH = 200
MB = 1024.0


@dataclass(frozen=True)
class Sizes:
    baseline_warmup: int
    baseline_window: int
    warmup: int
    window: int
    decode_runs: int
    decode_seconds: float
    outbox_puts: int
    outbox_batches: int
    outbox_runs: int


SIZES = {
    "full": Sizes(5, 20, 15, 150, 7, 0.5, 500, 20, 3),
    "quick": Sizes(2, 5, 5, 20, 5, 0.25, 150, 5, 3),
    "smoke": Sizes(1, 2, 3, 4, 2, 0.05, 20, 2, 2),
}


def say(text: str) -> None:
    print(text, flush=True)


# -- (a) decode -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payload:
    profile: Profile
    characteristic: str
    data: bytes
    device: str
    patient: str


def decode_items(registry: ProfileRegistry, devices: Sequence[BenchDevice]) -> list[Payload]:
    """What the hub decodes: each fleet device's next values, plus the valid shared test
    vectors of the same characteristics (decoded by a profile of that characteristic)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    items = [
        Payload(
            registry.get(d.profile), d.characteristic, payload(d, n, at), d.device_id, d.patient
        )
        for n in range(3)
        for d in devices
    ]
    by_char = {d.characteristic: registry.get(d.profile) for d in reversed(devices)}
    if "2A5F" in by_char:
        by_char["2A5E"] = by_char["2A5F"]  # the oximeter's spot-check characteristic
    vectors = orjson.loads(VECTORS.read_bytes()) if VECTORS.exists() else []
    for v in vectors:
        char = str(v.get("characteristic", "")).upper().removeprefix("0X")
        profile = by_char.get(char)
        if profile is None or not v.get("expected", {}).get("valid"):
            continue
        data = bytes.fromhex(v["hex"])
        try:
            decoded = profile.decode_ble_value(data, characteristic=char, received_at=at)
        except DecodeError:
            continue  # valid for another reader, not for this profile's decoder
        if decoded.readings:
            items.append(Payload(profile, char, data, "vector-dev", "p-vector"))
    return items


def _decode_round(items: Sequence[Payload], received_at: datetime, fhir: bool) -> int:
    readings = 0
    for item in items:
        decoded = item.profile.decode_ble_value(
            item.data,
            characteristic=item.characteristic,
            received_at=received_at,
            device=NO_CONTEXT,
        )
        readings += len(decoded.readings)
        if fhir:
            for r in decoded.readings:
                observation_from_reading(
                    r, patient=item.patient, device=item.device, gateway=GATEWAY_ID
                )
    return readings


def decode_bench(items: Sequence[Payload], sizes: Sizes, *, fhir: bool) -> float:
    """Median microseconds per reading over ``decode_runs`` runs of about
    ``decode_seconds`` each (timeit-style: the loop count is calibrated first)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    per_round = _decode_round(items, at, fhir)
    round_s = max(time.perf_counter() - started, 1e-6)
    loops = max(1, int(sizes.decode_seconds / round_s))
    samples: list[float] = []
    for _ in range(sizes.decode_runs):
        started = time.perf_counter()
        for _ in range(loops):
            _decode_round(items, at, fhir)
        samples.append((time.perf_counter() - started) / (loops * per_round) * 1e6)
    return statistics.median(samples)


# -- (b) outbox -------------------------------------------------------------------------------


def observations(
    registry: ProfileRegistry, devices: Sequence[BenchDevice], count: int, start: int
) -> list[dict[str, Any]]:
    """``count`` distinct Observations, decoded from the fleet's values (distinct times)."""
    out: list[dict[str, Any]] = []
    base = datetime(2026, 1, 1, tzinfo=UTC)
    n = start
    while len(out) < count:
        d = devices[n % len(devices)]
        at = base + n * DEVICE_STEP
        decoded = registry.get(d.profile).decode_ble_value(
            payload(d, n, at), characteristic=d.characteristic, received_at=at
        )
        out += [
            observation_from_reading(r, patient=d.patient, device=d.device_id, gateway=GATEWAY_ID)
            for r in decoded.readings
        ]
        n += 1
    return out[:count]


def outbox_bench(
    registry: ProfileRegistry, devices: Sequence[BenchDevice], sizes: Sizes, tmp: Path
) -> tuple[float, float]:
    """(puts per second with one Observation each, Observations per second in puts of 200),
    medians over ``outbox_runs`` runs, each on a fresh outbox file."""
    single: list[float] = []
    batched: list[float] = []
    for run in range(sizes.outbox_runs):
        docs = observations(registry, devices, sizes.outbox_puts, run * 100_000)
        outbox = Outbox(tmp / f"outbox-single-{run}.sqlite")
        started = time.perf_counter()
        for doc in docs:
            outbox.put([doc])
        single.append(len(docs) / (time.perf_counter() - started))
        outbox.close()
        docs = observations(
            registry, devices, sizes.outbox_batches * OUTBOX_BATCH, run * 100_000 + 50_000
        )
        outbox = Outbox(tmp / f"outbox-batched-{run}.sqlite")
        started = time.perf_counter()
        for i in range(0, len(docs), OUTBOX_BATCH):
            outbox.put(docs[i : i + OUTBOX_BATCH])
        batched.append(len(docs) / (time.perf_counter() - started))
        outbox.close()
    return statistics.median(single), statistics.median(batched)


# -- (c) the hub process ----------------------------------------------------------------------


@dataclass
class HubRun:
    devices: int
    stages: dict[str, dict[str, Any]]
    start: dict[str, Any]
    end: dict[str, Any]
    drained: dict[str, Any]

    @property
    def seconds(self) -> float:
        return float(self.end["t"] - self.start["t"])

    @property
    def cpu(self) -> float:
        return float(self.end["cpu"] - self.start["cpu"])

    @property
    def readings(self) -> int:
        return int(self.end["outboxed"] - self.start["outboxed"])

    def owner_cpu(self, owner: str) -> float:
        return float(self.end["cpu_by_owner"][owner] - self.start["cpu_by_owner"][owner])

    @property
    def main_thread_cpu(self) -> float:
        return float(self.end["main_thread_cpu"] - self.start["main_thread_cpu"])


def enrol(store: Store, devices: Sequence[BenchDevice]) -> None:
    store.upsert_care_team(CareTeam("bench", "Bench team"))
    for patient in sorted({d.patient for d in devices}):
        store.upsert_patient(Patient(patient, f"Synthetic {patient}", "bench"))
    for d in devices:
        store.pair_device(d.device_id, d.patient)


async def run_hub(
    broker: str,
    outbox: Path,
    devices: int,
    rate: float,
    warmup: int,
    window: int,
    extra: Sequence[str] = (),
) -> HubRun:
    """Start the hub, skip ``warmup`` ticks, measure ``window`` ticks, then let it drain.
    ``extra``: more arguments for the hub (``--no-account``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench._gateway_hub",
        "--broker",
        broker,
        "--outbox",
        str(outbox),
        "--devices",
        str(devices),
        "--rate",
        str(rate),
        *extra,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    stages: dict[str, dict[str, Any]] = {}
    ticks: list[dict[str, Any]] = []
    drained: dict[str, Any] | None = None
    try:
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), 120)
            if not raw:
                raise SystemExit(f"the hub process stopped (exit {await proc.wait()})")
            line = orjson.loads(raw)
            if line["kind"] == "stage":
                stages[line["stage"]] = line
            elif line["kind"] == "tick":
                ticks.append(line)
                if len(ticks) == warmup + window + 1:
                    proc.send_signal(signal.SIGUSR1)
            elif line["kind"] == "drained":
                drained = line
                break
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return HubRun(devices, stages, ticks[warmup], ticks[warmup + window], drained)


def mb(kb: float) -> float:
    return round(kb / MB, 1)


async def hub_bench(
    broker: str, tmp: Path, devices: Sequence[BenchDevice], rate: float, sizes: Sizes
) -> tuple[HubRun, HubRun, int, int]:
    """(baseline run, fleet run, readings stored, items quarantined)."""
    store = open_store(f"sqlite:{tmp / 'store.sqlite'}")
    enrol(store, devices)
    worker = MqttIngest(IngestPipeline(store), BrokerAddress.parse(broker))
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 30)
        baseline = await run_hub(
            broker,
            tmp / "outbox-idle.sqlite",
            0,
            rate,
            sizes.baseline_warmup,
            sizes.baseline_window,
        )
        say(f"  no device: {mb(baseline.end['rss_kb'])} MB resident (VmRSS), peak "
            f"{mb(baseline.drained['hwm_kb'])} MB (VmHWM); idle CPU "
            f"{baseline.cpu / baseline.seconds * 1000:.1f} ms/s")  # fmt: skip
        run = await run_hub(
            broker, tmp / "outbox.sqlite", len(devices), rate, sizes.warmup, sizes.window
        )
        stored = await asyncio.to_thread(store.count_observations)
        quarantined = len(await asyncio.to_thread(store.list_quarantine))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()
    return baseline, run, stored, quarantined


# -- main ---------------------------------------------------------------------------------------


def run(mode: str, devices: int, rate: float) -> dict[str, Any]:
    sizes = SIZES[mode]
    say(f"gateway bench ({mode}), {os.cpu_count()} CPUs, started {datetime.now(UTC):%H:%M:%S}Z")
    fleet_devices = fleet(devices)
    registry = ProfileRegistry.load(env={})
    items = decode_items(registry, fleet_devices)

    vectors = sum(i.device == "vector-dev" for i in items)
    say(f"\n(a) decode: profile decode -> Reading -> FHIR Observation, {len(items)} payloads "
        f"per round ({vectors} from {VECTORS.name}), median of {sizes.decode_runs} "
        "runs")  # fmt: skip
    decode_us = decode_bench(items, sizes, fhir=True)
    decode_only_us = decode_bench(items, sizes, fhir=False)
    say(f"  {decode_us:.1f} us per reading ({decode_only_us:.1f} us decode, "
        f"{decode_us - decode_only_us:.1f} us Observation)")  # fmt: skip

    with MosquittoServer() as mosquitto, tempfile.TemporaryDirectory(prefix="wwbench-") as d:
        tmp = Path(d)
        say(f"\n(b) outbox: Outbox.put on {tmp} (WAL, synchronous=FULL), median of "
            f"{sizes.outbox_runs} runs")  # fmt: skip
        per_reading, batched = outbox_bench(registry, fleet_devices, sizes, tmp)
        say(f"  one Observation per transaction: {per_reading:,.0f} writes/s "
            f"({sizes.outbox_puts} puts)")  # fmt: skip
        say(f"  {OUTBOX_BATCH} per transaction: {batched:,.0f} Observations/s")

        mosquitto.start()
        say(f"\n(c) hub process: Gateway + {devices} simulated devices at {rate:g} values/s "
            f"each -> MQTT -> ingest (SQLite) -> ack; warm-up {sizes.warmup} s, window "
            f"{sizes.window} s")  # fmt: skip
        baseline, hub, stored, quarantined = asyncio.run(
            hub_bench(mosquitto.url, tmp, fleet_devices, rate, sizes)
        )

    if hub.readings <= 0:
        raise SystemExit("no reading reached the hub's outbox in the measured window")
    readings = hub.readings
    cpu_ms = hub.cpu / readings * 1000
    sim = hub.owner_cpu("sim")
    bench_cpu = hub.owner_cpu("bench")
    sim_share = sim / hub.cpu if hub.cpu else 0.0
    excl_sim_ms = max(hub.cpu - sim - bench_cpu, 0.0) / readings * 1000
    other_threads = hub.cpu - hub.main_thread_cpu
    stages = hub.stages
    sim_import = stages["simulator built"]["rss_kb"] - stages["gateway imported"]["rss_kb"]
    say(f"  {devices} devices: {hub.readings} readings reached the outbox in {hub.seconds:.0f} s "
        f"({hub.readings / hub.seconds:.1f}/s), CPU {hub.cpu:.2f} s -> "
        f"{cpu_ms:.2f} ms per reading")  # fmt: skip
    say(f"    of which simulator {sim:.2f} s ({sim_share:.0%}), gateway tasks "
        f"{hub.owner_cpu('gateway'):.2f} s, other threads (outbox writes) {other_threads:.2f} s, "
        f"outside tasks {hub.main_thread_cpu - sim - bench_cpu - hub.owner_cpu('gateway'):.2f} s; "
        f"without the simulator {excl_sim_ms:.2f} ms per reading")  # fmt: skip
    say(f"    resident: {mb(hub.end['rss_kb'])} MB VmRSS at the end of the window, peak "
        f"{mb(hub.drained['hwm_kb'])} MB VmHWM; stages: interpreter "
        f"{mb(stages['interpreter']['rss_kb'])} MB, gateway imported "
        f"{mb(stages['gateway imported']['rss_kb'])} MB, simulator built "
        f"+{mb(sim_import)} MB")  # fmt: skip
    say(f"    end to end: {hub.drained['outboxed']} readings queued, {stored} stored, "
        f"{hub.drained['pending']} pending, {quarantined} quarantined, "
        f"{hub.drained['bundles_sent']} bundles ({hub.drained['resends']} resent)")  # fmt: skip

    exactly_once = (
        stored == hub.drained["outboxed"]
        and hub.drained["pending"] == 0
        and quarantined == 0
        and hub.drained["rejected"] == 0
    )
    summary = {
        "rss_mb": mb(hub.drained["hwm_kb"]),
        "cpu_ms_per_reading": round(cpu_ms, 3),
        "decode_us_per_reading": round(decode_us, 1),
        "outbox_writes_per_s": round(per_reading),
        "rss_mb_steady": mb(hub.end["rss_kb"]),
        "rss_mb_no_device": mb(baseline.end["rss_kb"]),
        "rss_mb_simulator_built": mb(sim_import),
        "cpu_ms_per_reading_without_simulator": round(excl_sim_ms, 3),
        "simulator_cpu_share": round(sim_share, 3),
        "idle_cpu_ms_per_s": round(baseline.cpu / baseline.seconds * 1000, 2),
        "readings_per_s": round(hub.readings / hub.seconds, 1),
        "decode_only_us_per_reading": round(decode_only_us, 1),
        "outbox_batched_obs_per_s": round(batched),
        "exactly_once": exactly_once,
        "devices": devices,
        "values_per_s_per_device": rate,
        "mode": mode,
    }
    if not exactly_once:
        say("LOST, DUPLICATED OR REJECTED: see the end-to-end line above")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="shorter windows, under a minute")
    group.add_argument("--smoke", action="store_true", help="tiny windows (tests)")
    parser.add_argument("--devices", type=int, default=20, help="simulated devices (20)")
    parser.add_argument(
        "--rate", type=float, default=1.0, help="values a second each device sends (1.0)"
    )
    args = parser.parse_args(argv)
    if args.devices < 1 or args.rate <= 0:
        parser.error("--devices must be at least 1 and --rate positive")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    summary = run(mode, args.devices, args.rate)
    print(orjson.dumps(summary).decode(), flush=True)
    return 0 if summary["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
