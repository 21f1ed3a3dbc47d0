"""A seeded ward served by the real nurse API and page, for the browser tests.

:func:`seed_ward` fills a store the way the system itself would: care teams and users
through :class:`~alerting.access.AccessService`, patients and paired devices in the
registry, readings as FHIR Bundles through :class:`~ingest.pipeline.IngestPipeline` with
the :class:`~alerting.engine.AlertEngine` on its hook (so every alert is a real one), and
a pending care-plan proposal. :class:`LiveServer` runs the app (``create_app``) with
uvicorn in a thread on a free port of 127.0.0.1. Synthetic data only.

Chromium comes from Debian (``/usr/bin/chromium``, installed by
``scripts/setup-services.sh``); Playwright never downloads a browser here.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from wardwatch.fhir import bundle, observation_from_reading
from wardwatch.reading import Component, Reading
from wardwatch.store import CareTeam, Patient
from wardwatch.store_careplans import Proposal

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from alerting.access import AccessService
    from alerting.engine import AlertEngine
    from wardwatch.store import Store

CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True, slots=True)
class Nurse:
    username: str
    display_name: str
    team: str
    password: str


@dataclass(slots=True)
class Ward:
    """What :func:`seed_ward` created: who can log in, which patient is whose."""

    nurses: dict[str, Nurse] = field(default_factory=dict)
    patients: dict[str, Patient] = field(default_factory=dict)
    proposal_id: int | None = None

    def patients_of(self, team: str) -> set[str]:
        return {p.display_name for p in self.patients.values() if p.care_team == team}


TEAMS = (CareTeam("team-a", "Ward A"), CareTeam("team-b", "Ward B"))
NURSES = (
    ("nurse-a1", "Nurse Ada One", "team-a"),
    ("nurse-a2", "Nurse Ada Two", "team-a"),
    ("nurse-b", "Nurse Bea", "team-b"),
)
PATIENTS = (
    Patient("pa-1", "Synthetic Patient Anna", "team-a"),
    Patient("pa-2", "Synthetic Patient Arvid", "team-a"),
    Patient("pb-1", "Synthetic Patient Bruno", "team-b"),
)


def _bp(at: datetime, systolic: float, diastolic: float) -> Reading:
    return Reading(
        "blood_pressure",
        at,
        components=(
            Component("systolic", systolic, "mm[Hg]"),
            Component("diastolic", diastolic, "mm[Hg]"),
        ),
    )


def readings(patient: str, now: datetime) -> list[tuple[str, Reading]]:
    """(device, reading) pairs: three days of twice-daily vitals, then the patient's event.

    pa-1 and pb-1 end in a hypertensive crisis (urgent), pa-2 in a high pulse (warning).
    """
    out: list[tuple[str, Reading]] = []
    start = (now - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    for i in range(6):
        at = start + timedelta(hours=12 * i)
        out.append((f"cuff-{patient}", _bp(at, 126 + i, 80 + i % 3)))
        out.append((f"cuff-{patient}", Reading("heart_rate", at, 70.0 + i, "/min")))
        out.append((f"ox-{patient}", Reading("spo2", at, 97.0 - i % 2, "%")))
        out.append((f"scale-{patient}", Reading("body_weight", at, 81.0 + 0.1 * i, "kg")))
        out.append((f"meter-{patient}", Reading("glucose", at, 105.0 + 3 * i, "mg/dL")))
    last = (now - timedelta(hours=1)).replace(microsecond=0)
    if patient == "pa-2":
        out.append((f"cuff-{patient}", Reading("heart_rate", last, 138.0, "/min")))
    else:
        out.append((f"cuff-{patient}", _bp(last, 192, 118)))
    return out


def seed_ward(
    store: Store,
    access: AccessService,
    engine: AlertEngine,
    *,
    now: datetime | None = None,
) -> Ward:
    """Care teams, nurses with fresh passwords, patients with readings, alerts, a proposal."""
    from ingest.pipeline import IngestPipeline

    now = now or datetime.now(UTC)
    ward = Ward()
    for care_team in TEAMS:
        store.upsert_care_team(care_team)
    for username, name, team in NURSES:
        password = secrets.token_urlsafe(18)
        access.set_user(username, name, "nurse", (team,), password=password, by="test-seed")
        ward.nurses[username] = Nurse(username, name, team, password)
    pipeline = IngestPipeline(store, on_stored=[engine.on_stored])
    for patient in PATIENTS:
        store.upsert_patient(patient)
        ward.patients[patient.id] = patient
        pairs = readings(patient.id, now)
        for device in sorted({d for d, _ in pairs}):
            store.pair_device(device, patient.id)
        docs = [
            observation_from_reading(r, patient=patient.id, device=d, gateway="hub-test")
            for d, r in pairs
        ]
        result = pipeline.ingest_bundle(orjson.dumps(bundle(docs)), source="test-seed")
        if result.rejected or len(result.accepted) != len(docs):
            raise RuntimeError(f"seeding {patient.id}: {result.ack()}")
    proposal = store.add_proposal(
        Proposal(
            patient="pa-1",
            code="bp-twice-daily",
            description="Measure blood pressure twice daily for 7 days",
            created_at=now,
            change={"schedule": {"blood_pressure": 12}},
            due=now + timedelta(days=7),
        )
    )
    ward.proposal_id = proposal.id
    return ward


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app served by uvicorn in a daemon thread on 127.0.0.1 (``.url``)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        # Open event streams end when the server shuts down; do not wait for ever.
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout=5)


@contextlib.contextmanager
def chromium_browser(args: Sequence[str] = ()) -> Iterator[Any]:
    """Playwright's Chromium driver on Debian's Chromium binary (never a download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=list(args))
        try:
            yield browser
        finally:
            browser.close()


def log_in(page: Page, url: str, username: str, password: str) -> None:
    """Open the page and log in through its form; wait for the worklist."""
    page.goto(url + "/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Worklist").wait_for()
