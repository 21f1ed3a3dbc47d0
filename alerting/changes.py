"""What the alert engine tells the rest of alerting, and what clock-driven detectors give it.

- :class:`AlertChange`: one change to an alert, handed (after it is committed) to every
  sink the engine was given: the dispatcher (notifications), the proposal generator
  (care-plan proposals). Sinks are called from the engine's thread; they must be quick and
  thread-safe (queue the work).
- :class:`ClockDetector`: a detector driven by time passing, not by a reading (a device
  silent past its schedule, a hub gone offline). :meth:`AlertEngine.tick` runs them with
  the time it is given (a fake clock in tests) and applies their :class:`TimedFinding`
  like any other finding: one open alert per patient and rule, auto-clear when it clears.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from wardwatch.store import Alert
from wardwatch.store_alerts import AlertAction

if TYPE_CHECKING:
    from alerting.rules import Rule
    from wardwatch.store import Store


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert as it is after one change, what the change was, who made it and when."""

    alert: Alert
    action: AlertAction
    at: datetime
    actor: str


ChangeSink = Callable[[Sequence[AlertChange]], None]
"""Receives committed alert changes, in order (called from the engine's thread)."""


@dataclass(frozen=True, slots=True)
class TimedFinding:
    """A clock detector's verdict for one patient and rule at one time."""

    patient: str
    rule: Rule
    firing: bool
    at: datetime
    """The time the condition started (firing) or was seen cleared."""
    message: str
    """No reading values and no names: ``no blood_pressure reading from cuff-1 for 31 h``."""
    evidence: tuple[str, ...] = ()
    """Identifiers behind it (the last reading seen, the gateway id), if any."""


class ClockDetector(Protocol):
    """A detector that looks at the store at a given time instead of at one reading."""

    @property
    def rules(self) -> Sequence[Rule]:
        """The rules it can fire (ids, kinds, severities)."""
        ...

    def check(self, store: Store, now: datetime) -> list[TimedFinding]:
        """Every patient's finding at ``now`` (firing ones, and cleared ones for rules
        whose condition has ended)."""
        ...


__all__ = ["AlertChange", "ChangeSink", "ClockDetector", "TimedFinding"]
