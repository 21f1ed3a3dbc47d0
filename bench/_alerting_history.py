"""Synthetic patient history for ``bench/alerting.py``: the detector-cost half.

A monitored patient at home: heart rate, SpO2 and CGM glucose every 5 minutes, blood
pressure twice a day (08:00 and 20:00 UTC), weight every morning (07:00). The CGM trace
rises after three meals a day (07:30, 12:30, 18:30) above 180 mg/dL for about 50 minutes,
which opens and clears one ``glucose.cgm.hyper.level1`` alert per meal: the history holds
those alerts too (written as the engine writes them: opened at the first reading above
the limit, holding the readings above it, auto-cleared at the first one under 160), so a
store with 90 days of history also holds 90 days of alerts.

Everything is deterministic: the same window of new observations is fed to engines whose
stores hold 1 day and 90 days of the same history.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from alerting.changes import AlertChange
from alerting.engine import AUTO_CLEAR, AlertEngine
from wardwatch.fhir import observation_from_reading
from wardwatch.reading import Component, Reading
from wardwatch.store import Alert, CareTeam, Patient, Store, StoredObservation

STEP = timedelta(minutes=5)
MEALS = (7 * 60 + 30, 12 * 60 + 30, 18 * 60 + 30)  # minutes after midnight, UTC
CGM_RULE = "glucose.cgm.hyper.level1"
CGM_LIMIT, CGM_CLEAR = 180.0, 160.0
WRITE_BATCH = 10_000


def patient_id(n: int) -> str:
    return f"h-{n:03d}"


def _wobble(n: int, spread: int = 23) -> float:
    """Deterministic spread around zero, -(spread // 2)..(spread // 2)."""
    return float((n * 7919) % spread - spread // 2)


def cgm_value(at: datetime, n: int) -> float:
    """Glucose in mg/dL: 115 +/- 5, rising 2.2 mg/dL/min for 45 min after each meal (below
    the rate alerts' 3 mg/dL/min), 20 min at the top, then falling back the same way."""
    minute = at.hour * 60 + at.minute
    for meal in MEALS:
        d = minute - meal
        if 0 <= d < 45:
            return 115.0 + 2.2 * d
        if 45 <= d < 65:
            return 214.0
        if 65 <= d < 110:
            return 214.0 - 2.2 * (d - 65)
    return 115.0 + _wobble(n, 11)


def _row(reading: Reading, patient: str, device: str) -> StoredObservation:
    """The store row of the reading's Observation, as ingest writes it (values here are in
    the kinds' canonical units already, so no conversion; the resource is the real one)."""
    obs = observation_from_reading(reading, patient=patient, device=device, gateway="gw-hist")
    return StoredObservation(
        identifier=str(obs["id"]),
        patient=patient,
        device=device,
        kind=reading.kind,
        at=reading.at,
        value=reading.value,
        unit=reading.unit,
        components={c.kind: c.value for c in reading.components if c.value is not None},
        resource=orjson.dumps(obs),
        received_at=reading.at,
        gateway="gw-hist",
    )


def _bp(at: datetime, n: int) -> Reading:
    sys_, dia = 128.0 + _wobble(n), 82.0 + _wobble(n) / 2
    return Reading(
        "blood_pressure",
        at,
        components=(
            Component("systolic", sys_, "mm[Hg]"),
            Component("diastolic", dia, "mm[Hg]"),
            Component("mean_arterial_pressure", round((sys_ + 2 * dia) / 3, 1), "mm[Hg]"),
        ),
    )


def patient_rows(p: int, start: datetime, end: datetime) -> Iterator[StoredObservation]:
    """Patient ``p``'s readings in [start, end), in time order (``start`` on the 5-min grid)."""
    pid = patient_id(p)
    at = start
    n = int(start.timestamp() // 300)
    while at < end:
        minute = at.hour * 60 + at.minute
        if minute == 7 * 60:
            weight = 80.0 + _wobble(n, 7) / 10
            yield _row(Reading("body_weight", at, value=weight, unit="kg"), pid, f"scale-{pid}")
        if minute in (8 * 60, 20 * 60):
            yield _row(_bp(at, n), pid, f"cuff-{pid}")
        yield _row(
            Reading("heart_rate", at, value=72.0 + _wobble(n), unit="/min"), pid, f"hr-{pid}"
        )
        spo2 = min(100.0, 96.5 + _wobble(n, 5) / 2)
        yield _row(Reading("spo2", at, value=spo2, unit="%"), pid, f"ox-{pid}")
        cgm = cgm_value(at, n)
        yield _row(Reading("cgm_glucose", at, value=cgm, unit="mg/dL"), pid, f"cgm-{pid}")
        at += STEP
        n += 1


def history_alerts(rows: Sequence[StoredObservation]) -> list[Alert]:
    """The CGM alerts the engine would have left in the store for these rows (one patient)."""
    alerts: list[Alert] = []
    run: list[StoredObservation] = []
    for row in rows:
        if row.kind != "cgm_glucose" or row.value is None:
            continue
        if row.value > CGM_LIMIT:
            run.append(row)
        elif row.value < CGM_CLEAR and run:
            if run[-1].at - run[0].at >= timedelta(minutes=15):
                alerts.append(
                    Alert(
                        patient=row.patient,
                        rule=CGM_RULE,
                        kind="cgm_glucose",
                        severity="info",
                        opened_at=run[0].at,
                        message="CGM glucose above 180 mg/dL (history)",
                        observations=tuple(r.identifier for r in run),
                        status="resolved",
                        resolved_at=row.at,
                        resolved_by=AUTO_CLEAR,
                        updated_at=row.at,
                    )
                )
            run = []
    return alerts


@dataclass
class History:
    """Every patient's rows and alerts over ``days`` days before ``end``."""

    patients: int
    days: int
    end: datetime
    rows: list[list[StoredObservation]] = field(default_factory=list)
    alerts: list[list[Alert]] = field(default_factory=list)

    @classmethod
    def build(cls, patients: int, days: int, end: datetime) -> History:
        h = cls(patients, days, end)
        for p in range(patients):
            rows = list(patient_rows(p, end - timedelta(days=days), end))
            h.rows.append(rows)
            h.alerts.append(history_alerts(rows))
        return h

    def row_count(self, days: int) -> int:
        since = self.end - timedelta(days=days)
        return sum(1 for rows in self.rows for r in rows if r.at >= since)

    def fill(self, store: Store, days: int) -> tuple[int, int]:
        """Enrol the patients and write the last ``days`` days of rows and alerts."""
        store.upsert_care_team(CareTeam("bench", "Bench team"))
        since = self.end - timedelta(days=days)
        written = alerts = 0
        for p in range(self.patients):
            pid = patient_id(p)
            store.upsert_patient(Patient(pid, f"Synthetic {pid}", "bench"))
            rows = [r for r in self.rows[p] if r.at >= since]
            for i in range(0, len(rows), WRITE_BATCH):
                written += store.write_observations(rows[i : i + WRITE_BATCH])
            for alert in self.alerts[p]:
                if alert.opened_at >= since:
                    store.insert_alert(alert)
                    alerts += 1
        return written, alerts


def window(patients: int, start: datetime, length: timedelta) -> list[StoredObservation]:
    """Every patient's new readings in [start, start + length), in time order."""
    rows = [r for p in range(patients) for r in patient_rows(p, start, start + length)]
    rows.sort(key=lambda r: (r.at, r.identifier))
    return rows


@dataclass
class CostRun:
    """One engine on one store."""

    label: str
    store: Store
    engine: AlertEngine
    wall: list[float] = field(default_factory=list)
    """Seconds per observation, per measured window."""
    cpu: list[float] = field(default_factory=list)
    first_touch: list[float] = field(default_factory=list)
    """Seconds of each patient's first ``process`` call (state rebuilt from the store)."""
    opened: int = 0

    def deliver(self) -> None:
        """Nothing to do: the engine's sink counts the alerts opened (no dispatcher here:
        the cost measured is the detectors' and the lifecycle's)."""

    def count(self, changes: Sequence[AlertChange]) -> None:
        """The engine's change sink: count the alerts opened."""
        self.opened += sum(1 for c in changes if c.action == "opened")


def new_run(label: str, store: Store) -> CostRun:
    run = CostRun(label, store, AlertEngine(store))
    run.engine.add_sink(run.count)
    return run


def feed(runs: Sequence[CostRun], rows: Sequence[StoredObservation], *, measure: bool) -> None:
    """Store the window's rows (as ingest would have, untimed), then hand each row to every
    engine in turn, one ``process`` call per observation, rotating which engine goes first:
    the engines share every moment of the shared machine, slow ones included."""
    for run in runs:
        for i in range(0, len(rows), WRITE_BATCH):
            run.store.write_observations(rows[i : i + WRITE_BATCH])
    wall = [0.0] * len(runs)
    cpu = [0.0] * len(runs)
    order = list(range(len(runs)))
    for n, row in enumerate(rows):
        for i in order[n % len(runs) :] + order[: n % len(runs)]:
            started_wall, started_cpu = time.perf_counter(), time.process_time()
            runs[i].engine.process([row])
            wall[i] += time.perf_counter() - started_wall
            cpu[i] += time.process_time() - started_cpu
    for i, run in enumerate(runs):
        if measure:
            run.wall.append(wall[i] / len(rows))
            run.cpu.append(cpu[i] / len(rows))
        run.deliver()


def touch_all(runs: Sequence[CostRun], rows: Sequence[StoredObservation]) -> list[str]:
    """Feed each patient's first row alone to each engine, timing it: the cold start's
    state rebuild. Returns the identifiers fed."""
    firsts: dict[str, StoredObservation] = {}
    for row in rows:
        firsts.setdefault(row.patient, row)
    for run in runs:
        run.store.write_observations(list(firsts.values()))
    for row in firsts.values():
        for run in runs:
            started = time.perf_counter()
            run.engine.process([row])
            run.first_touch.append(time.perf_counter() - started)
    for run in runs:
        run.deliver()
    return [r.identifier for r in firsts.values()]


def measure_cost(
    runs: Sequence[CostRun],
    patients: int,
    start: datetime,
    windows: int,
    length: timedelta,
    say: Callable[[str], None],
) -> None:
    """Window 0: first touch (rebuild), then the rest of it and window 1 as a warm-up; then
    ``windows`` measured windows."""
    first = window(patients, start, length)
    touched = set(touch_all(runs, first))
    feed(runs, [r for r in first if r.identifier not in touched], measure=False)
    feed(runs, window(patients, start + length, length), measure=False)
    for k in range(windows):
        feed(runs, window(patients, start + (k + 2) * length, length), measure=True)
    for run in runs:
        say(
            f"    {run.label}: {statistics.median(run.wall) * 1e6:.0f} us/obs wall "
            f"({statistics.median(run.cpu) * 1e6:.0f} us CPU in this process), "
            f"first touch {statistics.median(run.first_touch) * 1e3:.1f} ms/patient, "
            f"{run.opened} alerts opened"
        )


def window_ratios(slow: CostRun, fast: CostRun) -> list[float]:
    """Per window: cost with ``slow``'s store / cost with ``fast``'s."""
    return [a / b for a, b in zip(slow.wall, fast.wall, strict=True)]


def close_all(stores: Sequence[Store]) -> None:
    for store in stores:
        with contextlib.suppress(Exception):
            store.close()
