"""Care-plan proposals raised from monitoring data, for a nurse to accept or reject.

:class:`ProposalGenerator` is a :data:`alerting.changes.ChangeSink` (give it to the engine:
``AlertEngine(..., sinks=[generator])``) that reads opened alerts, plus :meth:`check` for the
proposal that time alone raises. What it proposes (codes as in ``Proposal.code``):

=================  =================================================  =====================
code               when                                                change / due
=================  =================================================  =====================
bp-twice-daily     a rising blood-pressure trend alert opens           schedule
                   (``bp.trend.rising``)                               blood_pressure 12 h
diuretic-review    a heart-failure weight-gain alert opens             a call, due 24 h after
                   (``weight.gain.2kg_3d``, ``weight.gain.3lb_1d``,    the alert
                   ``weight.trend.macd``)
insulin-review     a level-1 hypoglycaemia alert opens and it is the   a review
                   second in 7 days (``glucose.hypo.level1``,
                   ``glucose.cgm.hypo.level1``, counted in the store)
outreach-call      :meth:`check`: no reading at all from the patient   a call, due 24 h later
                   for 3 days
=================  =================================================  =====================

Sources: home blood pressure twice daily (morning and evening) is what ESH 2023 and NICE
NG136 (1.2.7) ask of home monitoring; ESC 2021 heart-failure guideline, table 31: a gain of
> 2 kg in 3 days calls for a diuretic adjustment and/or contacting the team; the insulin
review after two level-1 episodes in a week and the outreach call after 3 silent days are
the issue's (wardwatch's) rules, to be set by each deployment's clinical lead.

One open proposal per patient and code (the store dedupes); an outreach call is proposed
once per silence (not again after it was decided, until a reading comes and stops again).
Proposals are dated by event time (the alert change's time, the ``now`` given); the clock is
only the default for :meth:`check`. The sink runs in the engine's thread, under its lock:
it does a few store queries, and only for the rules above.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from alerting.changes import AlertChange
from wardwatch.store import Store
from wardwatch.store_careplans import Proposal

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

BP_TWICE_DAILY: Final = "bp-twice-daily"
DIURETIC_REVIEW: Final = "diuretic-review"
INSULIN_REVIEW: Final = "insulin-review"
OUTREACH_CALL: Final = "outreach-call"

BP_TREND_RULES: Final = frozenset({"bp.trend.rising"})
WEIGHT_GAIN_RULES: Final = frozenset(
    {"weight.gain.2kg_3d", "weight.gain.3lb_1d", "weight.trend.macd"}
)
HYPO_LEVEL1_RULES: Final = frozenset({"glucose.hypo.level1", "glucose.cgm.hypo.level1"})

TWICE_DAILY_HOURS: Final = 12.0
DIURETIC_DUE: Final = timedelta(hours=24)
HYPO_WINDOW: Final = timedelta(days=7)
HYPO_EPISODES: Final = 2
OUTREACH_AFTER: Final = timedelta(days=3)
OUTREACH_DUE: Final = timedelta(hours=24)


class ProposalGenerator:
    """Raises care-plan proposals from alert changes (a ChangeSink) and from silence."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()

    def __call__(self, changes: Sequence[AlertChange]) -> None:
        """Take committed alert changes; propose what the opened ones call for."""
        for change in changes:
            if change.action != "opened":
                continue
            rule = change.alert.rule
            if rule in BP_TREND_RULES or rule in WEIGHT_GAIN_RULES or rule in HYPO_LEVEL1_RULES:
                with self._lock:
                    self._on_opened(change)

    def _on_opened(self, change: AlertChange) -> Proposal | None:
        alert, at = change.alert, change.at
        assert alert.id is not None  # committed alerts have ids
        if alert.rule in BP_TREND_RULES:
            plan = self.store.get_care_plan(alert.patient)
            current = plan.schedule.get("blood_pressure") if plan is not None else None
            if current is not None and current <= TWICE_DAILY_HOURS:
                return None  # already at least twice daily
            return self._add(
                Proposal(
                    patient=alert.patient,
                    code=BP_TWICE_DAILY,
                    description="Increase blood pressure readings to twice daily "
                    "(rising blood-pressure trend)",
                    created_at=at,
                    reason_alerts=(alert.id,),
                    change={"schedule": {"blood_pressure": TWICE_DAILY_HOURS}},
                )
            )
        if alert.rule in WEIGHT_GAIN_RULES:
            return self._add(
                Proposal(
                    patient=alert.patient,
                    code=DIURETIC_REVIEW,
                    description="Call the patient within 24 hours to review the diuretic "
                    "(heart-failure weight gain)",
                    created_at=at,
                    reason_alerts=(alert.id,),
                    due=at + DIURETIC_DUE,
                )
            )
        episodes = [
            a
            for a in self.store.list_alerts(patient=alert.patient)
            if a.rule in HYPO_LEVEL1_RULES
            and a.id is not None
            and alert.opened_at - HYPO_WINDOW < a.opened_at <= alert.opened_at
        ]
        if len(episodes) < HYPO_EPISODES:
            return None
        return self._add(
            Proposal(
                patient=alert.patient,
                code=INSULIN_REVIEW,
                description=f"Review the insulin dose ({len(episodes)} level 1 "
                "hypoglycaemia episodes in 7 days)",
                created_at=at,
                reason_alerts=tuple(a.id for a in episodes if a.id is not None),
            )
        )

    def check(self, now: datetime | None = None) -> list[Proposal]:
        """Propose an outreach call for each enrolled patient with no reading for 3 days
        at ``now`` (default: the clock), once per silence; return those raised now."""
        at = now if now is not None else self.clock()
        latest: dict[str, datetime] = {}
        for r in self.store.last_readings():
            if r.kind is not None:
                latest[r.patient] = max(latest.get(r.patient, r.at), r.at)
        raised: dict[str, datetime] = {}
        for p in self.store.list_proposals():
            if p.code == OUTREACH_CALL:
                raised[p.patient] = max(raised.get(p.patient, p.created_at), p.created_at)
        out: list[Proposal] = []
        with self._lock:
            for patient in self.store.list_patients():
                last = latest.get(patient.id)
                if last is None or at - last < OUTREACH_AFTER:
                    continue  # never read (nothing to miss yet) or read recently
                if raised.get(patient.id, last) > last:
                    continue  # proposed already for this silence
                days = (at - last).total_seconds() / 86400
                proposal = self._add(
                    Proposal(
                        patient=patient.id,
                        code=OUTREACH_CALL,
                        description=f"Outreach call: no readings for {days:.1f} days",
                        created_at=at,
                        due=at + OUTREACH_DUE,
                    )
                )
                out.append(proposal)
        return out

    def _add(self, proposal: Proposal) -> Proposal:
        stored = self.store.add_proposal(proposal)  # the open one if there is one already
        log.info("proposal %s (%s) open for patient %s", stored.id, stored.code, stored.patient)
        return stored


__all__ = [
    "BP_TWICE_DAILY",
    "DIURETIC_REVIEW",
    "INSULIN_REVIEW",
    "OUTREACH_CALL",
    "ProposalGenerator",
]
