"""Take the README's screenshots of the nurse page from a running demo.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Starts ``wardwatch demo`` (its own temporary store, synthetic patients), logs in as the
demo nurse it prints, waits for the demo's hypertensive crisis, and saves
``worklist.png`` and ``patient.png`` (the patient in crisis, 7 days). Playwright drives
Debian's Chromium (``/usr/bin/chromium``); no browser is downloaded.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PAGE_LINE = re.compile(
    r"nurse page: (?P<url>\S+)\s+\(log in as '(?P<user>[^']+)', password '(?P<pw>[^']+)'\)"
)


def start_demo() -> tuple[subprocess.Popen[str], str, str, str]:
    """The demo process and the page address, user name and password it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wardwatch.cli", "demo", "--interval", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = PAGE_LINE.search(line)
        if found:
            # Keep reading its output so a full pipe never blocks the demo.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, found["url"], found["user"], found["pw"]
    proc.kill()
    raise SystemExit("the demo did not print its page address")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    proc, url, user, password = start_demo()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url)
            page.get_by_label("User name").fill(user)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("heading", name="Worklist").wait_for()
            # The crisis arrives live with the demo's second measurement.
            page.locator('#worklist li[data-severity="urgent"]').wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "worklist.png"), full_page=True)

            page.locator('#worklist li[data-severity="urgent"] .what a').first.click()
            page.locator("#chart-blood_pressure canvas").wait_for()
            page.locator("#history li[data-alert]").first.wait_for()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(args.out / "patient.png"), full_page=True)
            browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    for name in ("worklist.png", "patient.png"):
        sys.stdout.write(f"wrote {args.out / name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
