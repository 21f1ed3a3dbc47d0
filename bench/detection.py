"""Detection quality: the whole scenario library and the shared glucose traces, scored.

Every scenario of ``firmware_sim.scenarios`` (several seeds, their default patients and days)
and every UVA/Padova trace of ``../shared/feeds/glucose`` (converted with
``firmware_sim.feeds.glucose``) is written as a feed + truth file, read back, replayed into a
fresh SQLite store with ingest and alerting in-process on the feed's own clock (what
``wardwatch sim replay --store sqlite:PATH`` does), its alerts taken as ``wardwatch alerts
list --json`` gives them, and scored against the truth (``wardwatch sim score``).

Prints a table per scenario (with the chain checks of the fault scenarios), then the score
per episode type; the last line is one JSON object: ``episode_types`` (per type
``sensitivity``, ``false_alerts_per_patient_week``, ``median_delay_min`` and the rest of
``sim score --json``), the overall false-alert rate, and ``checks``. ``--quick`` runs one
seed and four traces (well under a minute).

Missing data is detected by time passing, not by a reading: the replay stops every
``--tick-min`` minutes of feed time (15 by default; ``0``: never, as before the missing-data
detectors) and runs the engine's clock detectors with ``engine.tick(now)`` (device silent,
hub offline: ``alerting.detectors.missing``) and the proposal generator's ``check(now)``.
A feed's hub ``disconnect``/``reconnect`` events (device ``hub-<patient>``, the scenarios'
one hub per patient) are recorded as that gateway's ``offline``/``online`` status, and each
patient's readings name their own hub as gateway, so a hub's outage maps to its patient.
A tick-driven alert is dated when its condition passed its limit (the notification leaves
at the next tick, up to ``--tick-min`` later). The JSON also counts the care-plan proposals
raised (``proposals``: per code).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from alerting.detectors import default_clock_detectors  # noqa: E402
from alerting.engine import AlertEngine  # noqa: E402
from alerting.proposals import ProposalGenerator  # noqa: E402
from alerting.report import alerts_as_json  # noqa: E402
from firmware_sim.feeds.format import FeedEvent, read_feed  # noqa: E402
from firmware_sim.feeds.glucose import convert_glucose_traces  # noqa: E402
from firmware_sim.feeds.replay import FeedReplayer, ReplayResult  # noqa: E402
from firmware_sim.feeds.score import ScoredAlert, alerts_from_json, score, score_text  # noqa: E402
from firmware_sim.feeds.truth import GroundTruth, load_truth  # noqa: E402
from firmware_sim.scenarios import SCENARIOS, write_scenario  # noqa: E402
from ingest.pipeline import IngestResult  # noqa: E402
from ingest.stores import open_store  # noqa: E402
from wardwatch.fhir import observation_from_reading  # noqa: E402
from wardwatch.reading import Reading  # noqa: E402
from wardwatch.store import GatewayState, GatewayStatus, Store  # noqa: E402

GLUCOSE_TRACES = REPO.parent / "shared" / "feeds" / "glucose"
FAR = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@dataclass(slots=True)
class Run:
    """One scenario (all its seeds) or the glucose traces, replayed and checked."""

    name: str
    feeds: int = 0
    patients: int = 0
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    alerts: list[ScoredAlert] = field(default_factory=list)
    truths: list[GroundTruth] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    proposals: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _OwnHubReplayer(FeedReplayer):
    """A :class:`FeedReplayer` whose readings name the patient's own hub as gateway
    (``hub-<patient>``, as the scenarios model one hub per patient), so that the hub
    offline detector can tell whose hub went offline."""

    def __init__(self, store: Store, batch_size: int) -> None:
        super().__init__(store, batch_size=batch_size)
        self.engine = AlertEngine(
            store,
            self.notifier,
            clock=self.clock,
            clock_detectors=default_clock_detectors(),
        )
        self.proposals = ProposalGenerator(store, self.clock)
        self.engine.add_sink(self.proposals)
        self.submit = self._ingest_any_gateway

    def _add(self, patient: str, device: str, reading: Reading) -> None:
        # FeedReplayer._add with the patient's hub instead of the one replay gateway
        self._batch.append(
            observation_from_reading(
                reading, patient=patient, device=device, gateway=f"hub-{patient}"
            )
        )
        self._result.readings += 1
        if len(self._batch) >= self.batch_size:
            self._flush()

    def _ingest_any_gateway(self, payload: bytes, source: str, _gateway: str) -> IngestResult:
        # a bundle may hold several patients' readings, each naming its own hub
        return self.pipeline.ingest_bundle(payload, source=source, gateway=None)


def _hub_status(store: Store, event: FeedEvent) -> None:
    """A hub's disconnect/reconnect as the status its last will / heartbeat would give."""
    if not event.device.startswith("hub-") or event.event not in ("disconnect", "reconnect"):
        return
    status: GatewayStatus = "offline" if event.event == "disconnect" else "online"
    store.record_gateway_status(GatewayState(event.device, status, event.at, event.at))


def replay_with_ticks(
    events: Sequence[FeedEvent],
    store: Store,
    *,
    batch_size: int,
    tick: timedelta | None,
    until: datetime | None,
) -> tuple[ReplayResult, dict[str, int]]:
    """Replay ``events`` in slices of ``tick`` of feed time, ticking the engine's clock
    detectors and the proposal generator at the end of each (until ``until``)."""
    replayer = _OwnHubReplayer(store, batch_size)
    total = ReplayResult()

    def replay(part: Sequence[FeedEvent]) -> None:
        for event in part:
            if event.event is not None:
                _hub_status(store, event)
        got = replayer.replay(part)
        total.events += got.events
        total.readings += got.readings
        total.stored += got.stored
        total.duplicates += got.duplicates
        total.rejected += got.rejected

    if tick is None or not events:
        replay(events)
    else:
        now = min(e.at for e in events)
        last = max(e.at for e in events)
        end = max(last, until or last)
        i = 0
        while now < end:
            now = min(now + tick, end)
            j = i
            while j < len(events) and events[j].at < now:
                j += 1
            replay(events[i:j])  # a measurement's parts share one time: never split
            i = j
            replayer.clock.advance(now)
            replayer.engine.tick(now)
            replayer.proposals.check(now)
        replay(events[i:])
    codes: dict[str, int] = {}
    for p in store.list_proposals():
        codes[p.code] = codes.get(p.code, 0) + 1
    return total, codes


def _replay_one(run: Run, feed: Path, truth_path: Path, db: Path, tick: timedelta | None) -> None:
    truth = load_truth(truth_path)
    store = open_store(f"sqlite:{db}")
    try:
        # one bundle per observation for the duplicates feed, so ingest counts every copy
        batch = 1 if truth.scenario == "duplicate_transmissions" else 200
        until = max((p.end for p in truth.patients), default=None)
        events = list(read_feed(feed))  # feed order (ticks slice it by time)
        result, codes = replay_with_ticks(events, store, batch_size=batch, tick=tick, until=until)
        for code, n in codes.items():
            run.proposals[code] = run.proposals.get(code, 0) + n
        alerts_doc = orjson.loads(orjson.dumps(alerts_as_json(store.list_alerts())))
        _check(run, truth, store, result.stored, result.duplicates, result.rejected)
    finally:
        store.close()
    run.feeds += 1
    run.patients += len(truth.patients)
    run.events += result.events
    run.stored += result.stored
    run.duplicates += result.duplicates
    run.rejected += result.rejected
    run.alerts += alerts_from_json(alerts_doc, name=str(feed))
    run.truths.append(truth)


def _check(
    run: Run, truth: GroundTruth, store: Any, stored: int, duplicates: int, rejected: int
) -> None:
    """The chain checks the fault scenarios' truth asks for (accumulated per scenario)."""
    params = truth.parameters
    c = run.checks
    if "true_times" in params:
        worst = c.get("clock_max_error_s", 0.0)
        for device, times in params["true_times"].items():
            patient = store.device_patient(device)
            rows = [] if patient is None else store.observations(patient, "blood_pressure", *FAR)
            got = sorted(o.at for o in rows)
            want = sorted(datetime.fromisoformat(t) for t in times)
            if len(got) != len(want):
                c["clock_missing"] = c.get("clock_missing", 0) + abs(len(want) - len(got))
                continue
            for g, w in zip(got, want, strict=True):
                worst = max(worst, abs((g - w).total_seconds()))
        c["clock_max_error_s"] = round(worst, 3)
    if "duplicate_events" in params:
        c["duplicates_expected"] = c.get("duplicates_expected", 0) + params["duplicate_events"]
        c["duplicates_counted"] = c.get("duplicates_counted", 0) + duplicates
        ok = stored == params["unique_readings"] and c.get("stored_once", True)
        c["stored_once"] = ok
    if "corrupted_packets" in params:
        c["corrupted_expected"] = c.get("corrupted_expected", 0) + params["corrupted_packets"]
        c["quarantined"] = c.get("quarantined", 0) + rejected


def run_scenario(name: str, seeds: Sequence[int], work: Path, tick: timedelta | None) -> Run:
    run = Run(name)
    started = time.perf_counter()
    for seed in seeds:
        out = work / f"{name}-{seed}"
        feed, truth = write_scenario(name, out, seed=seed)
        _replay_one(run, feed, truth, out / "store.db", tick)
    run.seconds = time.perf_counter() - started
    return run


def run_glucose(src: Path, limit: int | None, work: Path, tick: timedelta | None) -> Run:
    run = Run("glucose_traces (UVA/Padova)")
    started = time.perf_counter()
    out = work / "glucose"
    pairs = convert_glucose_traces(src, out)
    for n, (feed, truth) in enumerate(pairs[:limit]):
        _replay_one(run, feed, truth, out / f"store-{n}.db", tick)
    run.seconds = time.perf_counter() - started
    return run


def _table(runs: Sequence[Run]) -> str:
    head = (
        f"{'feed set':<28} {'feeds':>5} {'pts':>4} {'events':>7} {'stored':>7} {'dup':>5} "
        f"{'quar.':>5} {'alerts':>6} {'false':>5} {'s':>5}  checks"
    )
    lines = [head]
    for r in runs:
        report = score(r.truths, r.alerts)
        checks = " ".join(f"{k}={v}" for k, v in r.checks.items())
        lines.append(
            f"{r.name:<28} {r.feeds:>5} {r.patients:>4} {r.events:>7} {r.stored:>7} "
            f"{r.duplicates:>5} {r.rejected:>5} {len(r.alerts):>6} {report['false_alerts']:>5} "
            f"{r.seconds:>5.1f}  {checks}"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one seed, four glucose traces")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scenario (default 3)")
    parser.add_argument(
        "--glucose", type=Path, default=GLUCOSE_TRACES, help="directory of glucose traces"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep feeds/stores here")
    parser.add_argument("--grace-min", type=float, default=60.0)
    parser.add_argument(
        "--tick-min",
        type=float,
        default=15.0,
        help="run the clock detectors every N minutes of feed time (default 15; 0: never)",
    )
    args = parser.parse_args(argv)
    seeds = [1] if args.quick else list(range(1, args.seeds + 1))
    tick = timedelta(minutes=args.tick_min) if args.tick_min > 0 else None
    with tempfile.TemporaryDirectory(prefix="wardwatch-detection-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = [run_scenario(name, seeds, work, tick) for name in sorted(SCENARIOS)]
        if args.glucose.is_dir():
            runs.append(run_glucose(args.glucose, 4 if args.quick else None, work, tick))
        else:
            sys.stdout.write(f"no glucose traces at {args.glucose}: skipped\n")
    sys.stdout.write(f"seeds {seeds}; grace {args.grace_min:g} min; tick {args.tick_min:g} min\n")
    sys.stdout.write(_table(runs) + "\n")
    truths = [t for r in runs for t in r.truths]
    alerts = [a for r in runs for a in r.alerts]
    report = score(truths, alerts, grace_min=args.grace_min)
    sys.stdout.write(score_text(report))
    checks: dict[str, Any] = {}
    proposals: dict[str, int] = {}
    for r in runs:
        checks.update(r.checks)
        for code, n in r.proposals.items():
            proposals[code] = proposals.get(code, 0) + n
    summary = {
        "episode_types": report["episode_types"],
        "false_alerts_per_patient_week": report["false_alerts_per_patient_week"],
        "patient_weeks": report["patient_weeks"],
        "patients": report["patients"],
        "alerts": report["alerts"],
        "false_alerts": report["false_alerts"],
        "grace_min": args.grace_min,
        "seeds": seeds,
        "feeds": sum(r.feeds for r in runs),
        "checks": checks,
        "proposals": proposals,
        "tick_min": args.tick_min,
        "quick": args.quick,
    }
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
