"""The nurse page as nurses use it: Playwright driving Debian's Chromium against the real app.

Each test gets a fresh SQLite store seeded through ingest and the alert engine
(tests/support/browser.py): team A has nurses A1 and A2 and two patients, team B has nurse
B and one patient. Without Chromium these tests skip locally and fail in CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import service_unavailable
from tests.support.browser import (
    CHROMIUM,
    LiveServer,
    Ward,
    chromium_browser,
    log_in,
    seed_ward,
)
from wardwatch.fhir import bundle, observation_from_reading
from wardwatch.reading import Reading
from wardwatch.store import Store

pytestmark = pytest.mark.browser


@dataclass(frozen=True, slots=True)
class Site:
    url: str
    ward: Ward
    store: Store
    pipeline: Any
    """The ingest pipeline feeding the site's alert engine (new readings -> live alerts)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (missing: skip locally, fail in CI)."""
    if not CHROMIUM.exists():
        service_unavailable(f"{CHROMIUM} is missing: run scripts/setup-services.sh")
    from playwright.sync_api import Error as PlaywrightError

    started = chromium_browser()
    try:
        opened = started.__enter__()
    except PlaywrightError as exc:
        service_unavailable(f"Chromium at {CHROMIUM} does not start under Playwright: {exc}")
    try:
        yield opened
    finally:
        started.__exit__(None, None, None)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The real app (API and page) on a seeded store, served on a free loopback port."""
    from argon2 import PasswordHasher

    from alerting.access import AccessService
    from alerting.api.app import create_app
    from alerting.engine import AlertEngine
    from ingest.pipeline import IngestPipeline
    from ingest.stores import open_store

    store = open_store(f"sqlite:{tmp_path / 'ward.db'}")
    try:
        # Cheap argon2 parameters keep the seeding quick; login verifies with the same ones.
        access = AccessService(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024))
        engine = AlertEngine(store)
        ward = seed_ward(store, access, engine)
        app = create_app(store, engine=engine, access=access, static=True)
        pipeline = IngestPipeline(store, on_stored=[engine.on_stored])
        with LiveServer(app) as server:
            yield Site(server.url, ward, store, pipeline)
    finally:
        store.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """A factory of pages, each in its own browser context (its own cookies)."""
    contexts: list[Any] = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        return page

    yield make
    for context in contexts:
        context.close()


def login_as(page: Any, site: Site, username: str) -> None:
    log_in(page, site.url, username, site.ward.nurses[username].password)


def shown_patients(page: Any) -> set[str]:
    page.locator("#patient-table").wait_for()
    return set(page.locator("#patient-table tbody a").all_text_contents())


def alert_rows(page: Any) -> Any:
    return page.locator("#worklist li[data-alert]")


# -- tests ---------------------------------------------------------------------------------


def test_each_nurse_sees_only_the_patients_of_her_team(site: Site, new_page: Any) -> None:
    a1, b = new_page(), new_page()
    login_as(a1, site, "nurse-a1")
    login_as(b, site, "nurse-b")

    assert shown_patients(a1) == site.ward.patients_of("team-a")
    assert shown_patients(b) == site.ward.patients_of("team-b")
    for page, team in ((a1, "team-a"), (b, "team-b")):
        alert_rows(page).first.wait_for()
        names = {
            t.split(" — ")[0]
            for t in page.locator("#worklist .what > div:first-child").all_text_contents()
        }
        assert names and names <= site.ward.patients_of(team)
    # B's worklist holds exactly her one patient's crisis
    assert alert_rows(b).count() == 1
    assert alert_rows(b).first.get_attribute("data-severity") == "urgent"

    # A deep link to a patient of another team shows nothing of that patient
    b.goto(site.url + "/#/patients/pa-1")
    b.get_by_role("heading", name="Patient not available").wait_for()
    assert "Synthetic Patient Anna" not in b.content()
    assert not a1.errors and not b.errors


def test_worklist_is_ordered_by_severity_then_age(site: Site, new_page: Any) -> None:
    page = new_page()
    login_as(page, site, "nurse-a1")
    alert_rows(page).nth(1).wait_for()
    severities = [r.get_attribute("data-severity") for r in alert_rows(page).all()]
    assert severities == sorted(severities, key=["urgent", "warning", "info"].index)
    assert severities[0] == "urgent" and "warning" in severities
    assert "ago" in alert_rows(page).first.locator("time").text_content()


def test_acknowledgement_by_one_nurse_appears_live_for_her_colleague(
    site: Site, new_page: Any
) -> None:
    a1, a2 = new_page(), new_page()
    login_as(a1, site, "nurse-a1")
    login_as(a2, site, "nurse-a2")
    urgent = a2.locator('#worklist li[data-severity="urgent"]').first
    urgent.wait_for()
    alert_id = urgent.get_attribute("data-alert")
    assert urgent.get_attribute("data-status") == "open"
    a2.wait_for_function("document.body.dataset.live === '1'")
    a2.evaluate("window.__sameDocument = true")

    a1.locator(f'#worklist li[data-alert="{alert_id}"]').get_by_role(
        "button", name="Acknowledge"
    ).click()

    row = a2.locator(f'#worklist li[data-alert="{alert_id}"]')
    row.and_(a2.locator('[data-status="acknowledged"]')).wait_for()
    assert "acknowledged by nurse-a1" in row.text_content()
    assert a2.evaluate("window.__sameDocument") is True, "the page was reloaded"
    alert = site.store.get_alert(int(alert_id))
    assert alert is not None and alert.status == "acknowledged"
    assert alert.acknowledged_by == "nurse-a1"


def test_new_urgent_alert_arrives_live_with_a_cue(site: Site, new_page: Any) -> None:
    page = new_page()
    login_as(page, site, "nurse-b")
    alert_rows(page).first.wait_for()
    page.wait_for_function("document.body.dataset.live === '1'")
    page.keyboard.press("Tab")  # a user gesture: the sound may play from now on
    before = alert_rows(page).count()

    # A new low SpO2 for the team-B patient, through ingest and the engine.
    spo2 = Reading("spo2", datetime.now(UTC).replace(microsecond=0), 85.0, "%")
    doc = observation_from_reading(spo2, patient="pb-1", device="ox-pb-1")
    assert site.pipeline.ingest_bundle(orjson.dumps(bundle([doc])), source="test").accepted

    alert_rows(page).nth(before).wait_for()
    new_row = page.locator("#worklist li.is-new")
    assert new_row.count() == 0, "a new warning gets no urgent cue"
    assert page.locator("#banner").is_hidden()

    # A severe hypoglycaemia (< 54 mg/dL, urgent) for the same patient.
    low = Reading("glucose", datetime.now(UTC).replace(microsecond=0), 48.0, "mg/dL")
    doc = observation_from_reading(low, patient="pb-1", device="meter-pb-1")
    assert site.pipeline.ingest_bundle(orjson.dumps(bundle([doc])), source="test").accepted

    new_row.wait_for()
    assert new_row.get_attribute("data-severity") == "urgent"
    assert page.locator("#banner").is_visible()
    assert "Synthetic Patient Bruno" in page.locator("#banner").text_content()
    page.wait_for_function(
        "document.getElementById('announce-urgent').textContent.includes('New urgent alert')"
    )
    assert page.evaluate("document.body.dataset.lastBeep") is not None, "the cue sounded"
    assert not page.errors


def test_patient_view_draws_charts_with_threshold_lines(site: Site, new_page: Any) -> None:
    page = new_page()
    login_as(page, site, "nurse-a1")
    page.get_by_role("link", name="Synthetic Patient Anna").first.click()
    page.get_by_role("heading", name="Synthetic Patient Anna").wait_for()
    for kind in ("blood_pressure", "body_weight", "glucose", "spo2", "heart_rate"):
        page.locator(f"#chart-{kind} canvas").wait_for()
    chart = page.locator("#chart-blood_pressure")
    assert chart.locator(".limit").all_text_contents() == [
        "systolic limit > 180 mmHg (urgent, default)",
        "diastolic limit > 120 mmHg (urgent, default)",
        "systolic limit < 90 mmHg (urgent, default)",
    ]
    # The limit is a dashed line inside the plot: find the limit colour on its row.
    found = page.evaluate(
        """() => {
          const u = window.wardwatch.state.charts.find(
            c => c.root.closest('#chart-blood_pressure'));
          const i = u.series.findIndex(s => s.label === 'systolic limit > 180');
          const y = Math.round(u.valToPos(180, 'y', true));
          const ctx = u.ctx;
          const row = ctx.getImageData(0, y, ctx.canvas.width, 1).data;
          let hits = 0;
          for (let x = 0; x < row.length; x += 4) {
            if (row[x] > 140 && row[x + 1] < 60 && row[x + 2] < 60) hits++;
          }
          const top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
          return {index: i, inside: y >= top && y <= bottom, hits: hits};
        }"""
    )
    assert found["index"] > 0 and found["inside"] and found["hits"] > 20, found
    # The range buttons re-query the bucketed observations
    page.get_by_role("button", name="24 h").click()
    assert page.get_by_role("button", name="24 h").get_attribute("aria-pressed") == "true"
    page.locator("#chart-blood_pressure canvas").wait_for()
    history = page.locator("#history li[data-alert]")
    history.first.wait_for()
    assert history.count() >= 1
    assert not page.errors


def test_a_proposal_is_approved_from_the_page(site: Site, new_page: Any) -> None:
    page = new_page()
    login_as(page, site, "nurse-a1")
    page.goto(site.url + "/#/patients/pa-1")
    proposal = page.locator(f'[data-proposal="{site.ward.proposal_id}"]')
    proposal.get_by_label("Note (optional)").fill("agreed with the patient")
    proposal.get_by_role("button", name="Approve").click()
    page.locator(f'[data-proposal="{site.ward.proposal_id}"][data-status="accepted"]').wait_for()
    assert site.ward.proposal_id is not None
    stored = site.store.get_proposal(site.ward.proposal_id)
    assert stored is not None and stored.status == "accepted"
    assert stored.decided_by == "nurse-a1" and stored.decision_note == "agreed with the patient"
    plan = site.store.get_care_plan("pa-1")
    assert plan is not None and plan.schedule.get("blood_pressure") == 12


def test_snooze_with_minutes_and_comment(site: Site, new_page: Any) -> None:
    page = new_page()
    login_as(page, site, "nurse-b")
    alert_id = int(alert_rows(page).first.get_attribute("data-alert"))
    row = page.locator(f'#worklist li[data-alert="{alert_id}"]')
    row.get_by_role("button", name="Snooze").click()
    row.get_by_label("Minutes").fill("0")
    row.get_by_role("button", name="Snooze", exact=True).last.click()
    assert "1 to 1440" in row.get_by_role("alert").text_content()
    row.get_by_label("Minutes").fill("45")
    row.get_by_label("Comment").fill("calling the patient")
    row.locator(".snooze-form button[type=submit]").click()
    row.locator(".snoozed").wait_for()
    snoozes = [s for s in site.store.list_silences() if s.alert_id == alert_id]
    assert [s.comment for s in snoozes] == ["calling the patient"]


def test_login_and_acknowledge_with_the_keyboard_only(site: Site, new_page: Any) -> None:
    page = new_page()
    nurse = site.ward.nurses["nurse-b"]
    page.goto(site.url + "/")
    page.get_by_label("User name").wait_for()
    # The form has focus; before it come the site name and, first of all, the skip link,
    # which shows itself when focused and moves focus to the content.
    assert page.evaluate("document.activeElement.id") == "username"
    for _ in range(2):
        page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.locator(".skip-link").bounding_box()["y"] >= 0, "visible when focused"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # A wrong password is announced and focus returns to the password field.
    page.keyboard.press("Tab")
    page.keyboard.type(nurse.username)
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    error = page.get_by_role("alert").filter(has_text="wrong")
    error.wait_for()
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(nurse.password)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Worklist").wait_for()
    alert_rows(page).first.wait_for()
    # Tab to the first Acknowledge button and press it
    for _ in range(30):
        page.keyboard.press("Tab")
        key = page.evaluate("document.activeElement.dataset.key || ''")
        if key.startswith("ack-"):
            break
    else:
        pytest.fail("no Acknowledge button reachable with Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "focus is visible"
    page.keyboard.press("Enter")
    alert_id = int(key.removeprefix("ack-"))
    page.locator(f'#worklist li[data-alert="{alert_id}"][data-status="acknowledged"]').wait_for()
