"""``wardwatch demo``: the whole chain in one process, on the embedded store.

Simulated BLE cuffs (firmware_sim, through bleak's backend seam) -> gateway (decode, FHIR,
durable outbox) -> HTTP uplink -> ingest (validate, SQLite store, quarantine) -> alerting
(threshold rules) -> apprise (``console://`` prints to this terminal). The same process
serves the nurse API and page (``alerting.api``) on 127.0.0.1 over the same store, with a
demo care team and a demo nurse whose password is generated at each start. Two weeks of
unremarkable history (blood pressure, pulse, SpO2, weight, glucose) go through ingest
first, so the page's charts have something to show. All patients and values are synthetic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import orjson


@dataclass(frozen=True, slots=True)
class DemoPatient:
    """A synthetic patient with a cuff and a scripted course of blood pressures."""

    id: str
    name: str
    address: str
    course: tuple[tuple[float, float], ...]
    """(systolic, diastolic) per measurement; the last one repeats."""


PATIENTS = (
    DemoPatient("p-001", "Synthetic Patient Alpha", "AA:00:00:00:00:01", ((128, 82), (131, 84))),
    # hypertensive crisis from the second measurement (ACC/AHA: > 180 and/or > 120 mmHg)
    DemoPatient(
        "p-002",
        "Synthetic Patient Bravo",
        "AA:00:00:00:00:02",
        ((168, 104), (186, 124), (191, 126), (188, 121)),
    ),
    DemoPatient("p-003", "Synthetic Patient Charlie", "AA:00:00:00:00:03", ((118, 76), (121, 78))),
)
TEAM = "team-demo"
NURSE = "nurse"
"""The demo nurse's user name (the password is generated at each start and printed)."""
HISTORY_DAYS = 14


def history_readings(patient: DemoPatient, now: datetime, rng: random.Random) -> list[Any]:
    """Twice-daily unremarkable readings over the last :data:`HISTORY_DAYS` days.

    Values stay inside every alert limit and the blood pressure has no upward trend (the
    patient in crisis drifts slightly down before it), so the history raises no alert.
    Returns ``(device, Reading)`` pairs.
    """
    from wardwatch.reading import Component, Reading

    base_sys, base_dia = patient.course[0]
    out: list[Any] = []
    first = (now - timedelta(days=HISTORY_DAYS)).replace(minute=0, second=0, microsecond=0)
    for i in range(HISTORY_DAYS * 2):
        at = first + timedelta(hours=12 * i, minutes=rng.randint(0, 40))
        if at >= now - timedelta(minutes=30):
            break
        drift = (HISTORY_DAYS * 2 - i) * 0.4 if base_sys > 140 else 0.0
        sys_ = min(base_sys - 6 + drift + rng.uniform(-4, 4), 172)
        dia = min(base_dia - 4 + rng.uniform(-3, 3), 108)
        bp = Reading(
            "blood_pressure",
            at,
            components=(
                Component("systolic", round(sys_), "mm[Hg]"),
                Component("diastolic", round(dia), "mm[Hg]"),
            ),
        )
        out.append((f"cuff-{patient.id}", bp))
        out.append((f"cuff-{patient.id}", Reading("heart_rate", at, rng.randint(64, 88), "/min")))
        out.append((f"ox-{patient.id}", Reading("spo2", at, rng.randint(95, 98), "%")))
        weight = 78.0 + int(patient.id[-1]) * 4 + rng.uniform(-0.3, 0.3)
        out.append((f"scale-{patient.id}", Reading("body_weight", at, round(weight, 1), "kg")))
        glucose = rng.randint(92, 150)
        out.append((f"meter-{patient.id}", Reading("glucose", at, glucose, "mg/dL")))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register_console_target(stream: TextIO) -> None:
    """Register apprise's ``console://`` target, printing each notification as one line."""
    from apprise.decorators import notify

    @notify(on="console", name="wardwatch console")  # type: ignore[untyped-decorator,no-untyped-call]
    def _console(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
        lines = "".join(f"    {line}\n" for line in body.splitlines())
        stream.write(f"\n*** {title}\n{lines}")
        stream.flush()
        return True


async def _demo(args: argparse.Namespace, data_dir: Path, out: TextIO) -> dict[str, Any]:
    import uvicorn

    from alerting.access import AccessService
    from alerting.api.app import create_app as create_nurse_app
    from alerting.wiring import alerting_hook
    from firmware_sim.ble import SimulatedAir
    from firmware_sim.devices import BloodPressureCuff, BloodPressureReading
    from gateway.ble import PairedDevice
    from gateway.runtime import Gateway, GatewayConfig
    from ingest.http import create_app
    from ingest.pipeline import IngestPipeline
    from ingest.stores.sqlite import SqliteStore
    from wardwatch.fhir import bundle, observation_from_reading
    from wardwatch.store import CareTeam, Patient

    register_console_target(out)
    store = SqliteStore(data_dir / "wardwatch.sqlite")
    store.migrate()
    store.upsert_care_team(CareTeam(TEAM, "Demo care team", ("console://",)))
    for p in PATIENTS:
        store.upsert_patient(Patient(p.id, p.name, TEAM))
        store.pair_device(f"cuff-{p.id}", p.id)
    access = AccessService(store)
    # A fresh password at each start: the demo's store may be kept (--data-dir).
    password = secrets.token_urlsafe(12)
    access.set_user(NURSE, "Demo Nurse", "nurse", (TEAM,), password=password, by="demo")

    hook, alert_tasks = alerting_hook(store)
    pipeline = IngestPipeline(store, on_stored=[hook])
    rng = random.Random(20260105)  # noqa: S311 (simulated values, not secrets)
    now = datetime.now(UTC)
    for p in PATIENTS:
        pairs = history_readings(p, now, rng)
        for device in sorted({d for d, _ in pairs}):
            store.pair_device(device, p.id)
        docs = [observation_from_reading(r, patient=p.id, device=d) for d, r in pairs]
        pipeline.ingest_bundle(orjson.dumps(bundle(docs)), source="demo:history")
    port = _free_port()
    page_port = args.port if args.port else _free_port()
    page_url = f"http://127.0.0.1:{page_port}/"
    page_server = uvicorn.Server(
        uvicorn.Config(
            create_nurse_app(store, engine=alert_tasks.engine, access=access),
            host="127.0.0.1",
            port=page_port,
            log_level="warning",
            lifespan="off",
            # an open page keeps its event stream open: do not wait for it at exit
            timeout_graceful_shutdown=2,
        )
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(pipeline), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    air = SimulatedAir()
    cuffs = {p.id: BloodPressureCuff(p.address) for p in PATIENTS}
    air.add(*cuffs.values())
    config = GatewayConfig(
        gateway_id="gw-demo",
        uplink=f"http://127.0.0.1:{port}",
        outbox_path=data_dir / "outbox.sqlite",
        devices=tuple(PairedDevice(f"cuff-{p.id}", p.id, address=p.address) for p in PATIENTS),
    )
    gateway = Gateway(
        config, scanner_backend=air.scanner_backend(), client_backend=air.client_backend()
    )

    async def measure() -> None:
        step = 0
        while True:
            await asyncio.sleep(args.interval)
            for p in PATIENTS:
                sys_, dia = p.course[min(step, len(p.course) - 1)]
                sys_ += rng.uniform(-2, 2)
                dia += rng.uniform(-2, 2)
                reading = BloodPressureReading(
                    round(sys_),
                    round(dia),
                    round((sys_ + 2 * dia) / 3),
                    rng.randint(62, 96),
                    datetime.now(UTC).replace(microsecond=0),
                )
                await cuffs[p.id].take_measurement(reading)
            step += 1

    out.write(
        f"wardwatch demo: {len(PATIENTS)} synthetic patients with simulated BLE cuffs; "
        f"ingest on http://127.0.0.1:{port}; data in {data_dir}"
        + ("\n" if args.data_dir else " (removed at exit; keep it with --data-dir)\n")
        + f"nurse page: {page_url}  (log in as {NURSE!r}, password {password!r})\n"
    )
    out.flush()
    started = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(server.serve(), name="ingest-http"),
            tg.create_task(page_server.serve(), name="nurse-page"),
            tg.create_task(gateway.run(), name="gateway"),
            tg.create_task(measure(), name="cuffs"),
        ]
        # Ctrl-C (or SIGTERM) ends the run like --duration does: with a summary.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            remaining = None
            if args.duration is not None:
                remaining = max(0.0, args.duration - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=remaining)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            server.should_exit = True
            page_server.should_exit = True
            for t in tasks[2:]:
                t.cancel()
            await alert_tasks.drain()
    from alerting.report import alerts_as_json

    summary = {
        "readings_stored": store.count_observations(),
        "alerts": alerts_as_json(store.list_alerts()),
        "quarantined": len(store.list_quarantine()),
        "page_url": page_url,
    }
    if args.data_dir:
        summary["data_dir"] = str(data_dir)
    store.close()
    return summary


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; with ``--duration`` print a summary (``--json``: one JSON object)."""
    out = sys.stderr if args.json else sys.stdout
    if args.data_dir:
        data_dir = Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        summary: dict[str, Any] | None = None
        with contextlib.suppress(KeyboardInterrupt):
            summary = asyncio.run(_demo(args, data_dir, out))
    else:
        with tempfile.TemporaryDirectory(prefix="wardwatch-demo-") as tmp:
            summary = None
            with contextlib.suppress(KeyboardInterrupt):
                summary = asyncio.run(_demo(args, Path(tmp), out))
    if summary is None:
        return 130
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        sys.stdout.write(f"\nreadings stored: {summary['readings_stored']}\n")
        sys.stdout.write(f"alerts raised:   {len(summary['alerts'])}\n")
        for a in summary["alerts"]:
            sys.stdout.write(
                f"  {a['opened_at']}  {a['severity']:<7} {a['patient']}  {a['rule']}"
                f"  ({a['status']})\n"
            )
    return 0
