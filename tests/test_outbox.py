"""The gateway's durable outbox: dedupe, order, confirm, and survival of SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from gateway.outbox import Outbox
from gateway.uplink import bundle_bytes
from wardwatch.fhir import observation_from_reading
from wardwatch.reading import Reading

AT = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def hr(n: int, device: str = "strap-1") -> dict[str, object]:
    r = Reading("heart_rate", AT + timedelta(seconds=n), 60 + n % 40, "/min")
    return observation_from_reading(r, patient="p", device=device)


def test_put_dedupes_and_keeps_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    assert box.put([hr(1), hr(2, "strap-2"), hr(1)]) == 2
    assert box.put([hr(2, "strap-2"), hr(3)]) == 1
    batch = box.batch(10)
    assert [e.device for e in batch] == ["strap-1", "strap-2", "strap-1"]
    assert [orjson.loads(e.body)["effectiveDateTime"][-3:] for e in batch] == ["01Z", "02Z", "03Z"]
    assert [e.seq for e in box.batch(10, exclude={batch[0].seq})] == [batch[1].seq, batch[2].seq]
    assert box.confirm([batch[0].seq, batch[1].seq]) == 2
    assert box.pending() == 1 and box.sent() == 2
    box.close()
    reopened = Outbox(tmp_path / "o.sqlite")
    assert reopened.pending() == 1 and reopened.sent() == 2


def test_bundle_bytes_is_a_valid_batch(tmp_path: Path) -> None:
    from fhir.resources.R4B.bundle import Bundle

    box = Outbox(tmp_path / "o.sqlite")
    box.put([hr(1), hr(2)])
    doc = orjson.loads(bundle_bytes("b-1", box.batch(10)))
    Bundle.model_validate(doc)
    assert doc["id"] == "b-1" and len(doc["entry"]) == 2
    assert doc["entry"][0]["request"]["url"] == f"Observation/{doc['entry'][0]['resource']['id']}"


def test_quarantine_keeps_the_bytes_and_reason(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.quarantine("cuff-1", "2A35", "2A35: payload is empty", b"")
    assert box.quarantined() == [("cuff-1", "2A35", "2A35: payload is empty", b"")]


def test_committed_entries_survive_sigkill(tmp_path: Path) -> None:
    """A writer killed with SIGKILL at an arbitrary instant loses nothing it reported."""
    path = tmp_path / "o.sqlite"
    script = textwrap.dedent(
        f"""
        import sys
        from datetime import UTC, datetime, timedelta
        from gateway.outbox import Outbox
        from wardwatch.fhir import observation_from_reading
        from wardwatch.reading import Reading
        box = Outbox({str(path)!r})
        at = datetime(2026, 1, 5, tzinfo=UTC)
        n = 0
        while True:
            obs = [observation_from_reading(Reading("heart_rate", at + timedelta(seconds=n + i),
                   70, "/min"), patient="p", device="d") for i in range(5)]
            box.put(obs)
            n += 5
            sys.stdout.write(f"{{n}}\\n")
            sys.stdout.flush()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert proc.stdout is not None
    reported = 0
    for line in proc.stdout:
        reported = int(line)
        if reported >= 200:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    box = Outbox(path)
    assert box.pending() >= reported
    assert box.pending() % 5 == 0, "a transaction is all or nothing"
