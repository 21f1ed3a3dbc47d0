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
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import OutboxError
from gateway.outbox import DeviceState, Outbox, OutboxBudget
from gateway.uplink import bundle_bytes
from wardwatch.fhir import observation_from_reading
from wardwatch.reading import Component, Reading

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


# -- bounded disk use ------------------------------------------------------------------------


def bp(n: int, device: str = "cuff-1") -> dict[str, object]:
    r = Reading(
        "blood_pressure",
        AT + timedelta(minutes=n),
        components=(
            Component("systolic", 120 + n % 10, "mm[Hg]"),
            Component("diastolic", 80, "mm[Hg]"),
            Component("mean_arterial_pressure", 93, "mm[Hg]"),
        ),
    )
    return observation_from_reading(r, patient="p", device=device)


def hr_min(n: int, device: str = "strap-1") -> dict[str, object]:
    r = Reading("heart_rate", AT + timedelta(minutes=n), 60 + n % 40, "/min")
    return observation_from_reading(r, patient="p", device=device)


def queued(box: Outbox) -> list[tuple[str, str]]:
    """(device, effectiveDateTime HH:MM) of every queued entry, in queue order."""
    return [
        (e.device, orjson.loads(e.body)["effectiveDateTime"][11:16])
        for e in box.batch(box.pending())
    ]


def test_budget_thins_high_rate_kinds_first_then_refuses_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, OutboxBudget(max_rows=20, thin_interval=900))
    assert box.put([bp(n) for n in range(10)]) == 10
    # 30 strap readings a minute apart: 10 fit, then the budget is reached
    result = box.admit([hr_min(n) for n in range(30)])
    # the backlog is thinned to one per 15-minute window (08:00 kept, 08:01-08:09 go), and
    # new ones are queued only for an empty window (08:15)
    assert (result.new, result.thinned, result.refused) == (11, 28, 0)
    assert [t for d, t in queued(box) if d == "strap-1"] == ["08:00", "08:15"]
    assert box.thinning
    # vital signs still fit up to the budget; beyond it they are refused, the oldest kept
    result = box.admit([bp(n) for n in range(10, 31)])
    assert (result.new, result.refused, result.refused_by_device) == (8, 13, {"cuff-1": 13})
    assert box.pending() == 20
    kept = [t for d, t in queued(box) if d == "cuff-1"]
    assert kept == [f"08:{m:02d}" for m in range(18)]
    # nothing silent: every reading offered is queued or counted, and the counts persist
    box.close()
    box = Outbox(path, OutboxBudget(max_rows=20, thin_interval=900))
    counts = {(d["device"], d["kind"], d["reason"]): d["count"] for d in box.dropped()}
    assert counts == {
        ("cuff-1", "blood_pressure", "refused"): 13,
        ("strap-1", "heart_rate", "thinned"): 28,
    }
    assert box.drop_totals() == {"thinned": 28, "refused": 13}
    states = box.device_states()
    assert states["cuff-1"].readings_in == 31 and states["cuff-1"].queued == 18
    assert states["strap-1"].readings_in == 30 and states["strap-1"].dropped == 28
    assert states["cuff-1"].dropped == 13


def test_thinning_ends_when_the_queue_drains(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxBudget(max_rows=10, thin_interval=900))
    box.put([hr_min(n) for n in range(12)])  # full at the 11th: backlog thinned
    assert box.thinning and box.pending() == 1
    box.put([bp(n) for n in range(9)])
    assert box.pending() == 10
    box.confirm([e.seq for e in box.batch(5)])  # 5 of 10: below the 90 % low-water mark
    assert not box.thinning
    # room again: a strap reading in an already-represented window is queued as usual
    assert box.put([hr_min(40), hr_min(41)]) == 2


def test_byte_budget_refuses_beyond_it_and_keeps_the_oldest(tmp_path: Path) -> None:
    probe = Outbox(":memory:")
    probe.put([bp(0)])
    one = probe.pending_bytes()
    box = Outbox(tmp_path / "o.sqlite", OutboxBudget(max_bytes=one * 5 + one // 2))
    result = box.admit([bp(n) for n in range(8)])
    assert (result.new, result.refused) == (5, 3)
    assert box.pending_bytes() <= one * 5 + one // 2
    assert [t for _d, t in queued(box)] == [f"08:{m:02d}" for m in range(5)]
    # a resend of a queued reading is a duplicate, not a refusal
    assert box.admit([bp(0)]).duplicate == 1
    assert box.drop_totals() == {"thinned": 0, "refused": 3}


def test_an_outbox_of_the_previous_schema_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, identifier TEXT NOT NULL "
        "UNIQUE, device TEXT NOT NULL, body BLOB NOT NULL, enqueued_at TEXT NOT NULL, "
        "attempts INTEGER NOT NULL DEFAULT 0)"
    )
    obs = hr(1)
    db.execute(
        "INSERT INTO outbox (identifier, device, body, enqueued_at) VALUES (?, ?, ?, ?)",
        (obs["identifier"][0]["value"], "strap-1", orjson.dumps(obs), "2026-01-05T08:00:00"),  # type: ignore[index]
    )
    db.commit()
    db.close()
    box = Outbox(path)
    assert box.pending() == 1 and box.pending_bytes() > len(orjson.dumps(obs))
    assert box.put([hr(1), hr(2)]) == 1


def test_device_state_is_persisted_for_other_processes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put([hr(1), hr(2)])
    box.record_device_state({"strap-1": AT}, {"strap-1": 87, "cuff-1": 40})
    box.record_device_state({}, {"strap-1": 86})  # battery only: last seen is kept
    other = Outbox(tmp_path / "o.sqlite")
    states = other.device_states()
    assert states["strap-1"] == DeviceState("strap-1", AT.isoformat(), 86, 2, 2, 0)
    assert states["cuff-1"].battery == 40 and states["cuff-1"].last_seen is None


def test_a_non_observation_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    with pytest.raises(OutboxError, match="not a wardwatch Observation"):
        box.put([{"resourceType": "Observation"}])
    assert box.pending() == 0


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["hr", "bp", "confirm"]), st.integers(0, 120)),
        max_size=25,
    ),
    max_rows=st.integers(1, 30),
)
def test_every_offered_reading_is_queued_sent_duplicate_or_counted(
    ops: list[tuple[str, int]], max_rows: int
) -> None:
    box = Outbox(":memory:", OutboxBudget(max_rows=max_rows, thin_interval=600))
    offered = duplicates = 0
    for op, n in ops:
        if op == "confirm":
            box.confirm([e.seq for e in box.batch(n % 7)])
            continue
        obs = [hr_min(n + i) if op == "hr" else bp(n + i) for i in range(5)]
        result = box.admit(obs)
        offered += len(obs)
        duplicates += result.duplicate
        assert box.pending() <= max_rows
    totals = box.drop_totals()
    assert offered == (
        box.pending() + box.sent() + duplicates + totals["thinned"] + totals["refused"]
    )
    assert not any(
        d["kind"] == "blood_pressure" and d["reason"] == "thinned" for d in box.dropped()
    )
