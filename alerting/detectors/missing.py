"""Missing data: a device silent past its expected schedule, a hub gone offline.

Both are clock detectors (:class:`alerting.changes.ClockDetector`): the engine's ``tick(now)``
asks them what holds at ``now``, the time it is given (a fake clock in tests, the feed's
clock in a replay), never the wall clock. Each check is a fixed number of queries whatever
the number of patients: the store's ``last_readings()`` (the latest reading per patient,
device and kind, a small table the store keeps on every write), ``list_care_plans()``,
``list_gateways()`` and the unresolved alerts.

**Device silent** (rules ``data.silent.<kind>``). What is watched for a patient:

- each device paired to them, under the rule of its main kind (the first of
  :data:`MAIN_KIND_ORDER` it has sent: an oximeter's SpO2, not its pulse, so a silent
  oximeter is one alert); devices of the same main kind count together (a replaced cuff
  still paired does not alert while the new one reports). Its expected interval is the
  shortest over the kinds it sends of the care plan's ``schedule`` (hours), else the
  default of :data:`EXPECTED`; a device whose kinds have neither is not watched. A paired
  device that has sent nothing is watched from its pairing time (rule ``data.silent.device``);
- each kind in the care plan's ``schedule`` no paired device covers: the patient's latest
  reading of that kind from any device, or since the plan was updated if there is none.

It fires once nothing came for longer than ``interval x grace`` (``grace`` per kind in
:data:`EXPECTED`; the finding is dated when that limit passed) and clears with the first
reading after it (dated by that reading). A schedule changed by an accepted proposal
(twice-daily blood pressure: 12 h) applies at the next tick.

Why ``grace`` 2.5 for daily measurements: at the 90 % adherence of home monitoring one
missed day is ordinary and gives a gap of up to two days (a morning reading, then the next
but one in the afternoon); 2.5 days alerts on the second missed day, not the first. CGM:
Dexcom G6/G7 send a reading every 5 minutes and raise "Signal Loss" after 20 minutes
without one (the default, Dexcom G6 user guide, "Alerts"): 5 min x 4.

**Hub offline** (rule ``hub.offline``): a gateway whose recorded status is ``offline``
(its last will, or its clean shutdown) since longer than ``grace`` (60 minutes by
default: rides out a router restart and the broker's will delay of 1.5 x keep-alive) is
an alert for each patient whose latest reading from some device came through it. It
clears when the gateway's status is ``online`` again (dated by that status).

Messages carry device, kind and gateway ids and durations only; never values or names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final

from alerting.changes import TimedFinding
from alerting.detectors._common import TrendRule
from alerting.errors import RuleError
from alerting.rules import Rule
from wardwatch.store import Alert, Severity, Store
from wardwatch.store_careplans import CarePlan, LastReading

SILENT_PREFIX: Final = "data.silent."
DEVICE_KIND: Final = "device"
"""The ``kind`` of the alert for a paired device that has sent nothing yet."""


@dataclass(frozen=True, slots=True)
class Expected:
    """How often a kind is expected by default, and how long past that a silence alerts."""

    hours: float
    grace: float
    source: str

    @property
    def limit(self) -> timedelta:
        """Silence longer than this alerts."""
        return timedelta(hours=self.hours * self.grace)


_DAILY = "daily home measurement while monitored (wardwatch's default; a care plan sets it)"
_GRACE = "grace 2.5: one missed day at 90 % adherence is ordinary (see module docstring)"

#: default expected interval and grace per kind (a care-plan schedule replaces the hours)
EXPECTED: Final[Mapping[str, Expected]] = MappingProxyType(
    {
        "blood_pressure": Expected(24.0, 2.5, f"{_DAILY}; {_GRACE}"),
        "body_weight": Expected(
            24.0, 2.5, f"ESC 2021 heart failure guideline, table 31: weigh daily; {_GRACE}"
        ),
        "spo2": Expected(24.0, 2.5, f"{_DAILY}; {_GRACE}"),
        "body_temperature": Expected(24.0, 2.5, f"{_DAILY}; {_GRACE}"),
        "heart_rate": Expected(24.0, 2.5, f"{_DAILY}; {_GRACE}"),
        "respiratory_rate": Expected(24.0, 2.5, f"{_DAILY}; {_GRACE}"),
        "glucose": Expected(24.0, 2.5, f"{_DAILY}; {_GRACE}"),
        "cgm_glucose": Expected(
            5 / 60, 4.0, "Dexcom G6/G7: a reading every 5 min, Signal Loss alert after 20 min"
        ),
    }
)
#: grace of a scheduled kind that has no default above
DEFAULT_GRACE: Final = 2.5
#: a paired device that has sent nothing yet: its kinds are unknown, a daily one is assumed
UNHEARD_DEVICE: Final = Expected(24.0, 2.5, f"{_DAILY}; {_GRACE}")

#: which kind names a device that sends several (the first it has sent)
MAIN_KIND_ORDER: Final[tuple[str, ...]] = (
    "cgm_glucose",
    "glucose",
    "blood_pressure",
    "body_weight",
    "spo2",
    "body_temperature",
    "respiratory_rate",
    "heart_rate",
)


def _silent_rule(kind: str) -> TrendRule:
    severity: Severity = "warning" if kind == "cgm_glucose" else "info"
    title = "No readings from a device" if kind == DEVICE_KIND else f"No {kind} readings"
    return TrendRule(
        f"{SILENT_PREFIX}{kind}",
        kind,
        title,
        severity,
        "device silent past its expected interval x grace (alerting/detectors/missing.py)",
    )


SILENT_RULES: Final[Mapping[str, TrendRule]] = MappingProxyType(
    {k: _silent_rule(k) for k in (*MAIN_KIND_ORDER, DEVICE_KIND)}
)

HUB_OFFLINE: Final = TrendRule(
    "hub.offline",
    "gateway",
    "Home hub offline",
    "warning",
    "gateway status offline (last will) for longer than a grace period (wardwatch's choice)",
)


def _duration(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours < 2:
        return f"{max(0, round(hours * 60))} min"
    if hours < 72:
        return f"{round(hours)} h"
    return f"{hours / 24:.1f} days"


def _unresolved(store: Store, prefix: str) -> list[Alert]:
    alerts = store.list_alerts(status="open") + store.list_alerts(status="acknowledged")
    return [a for a in alerts if a.rule == prefix or a.rule.startswith(prefix)]


@dataclass(slots=True)
class _Watch:
    """One thing watched for one patient: its rule, latest reading, allowed silence."""

    rule: TrendRule
    last: datetime
    limit: timedelta
    what: str
    """``cuff-1`` or ``blood_pressure``: what the message names."""
    evidence: tuple[str, ...]


class DeviceSilentDetector:
    """A device, or a scheduled kind, silent past its expected interval x grace."""

    def __init__(self, expected: Mapping[str, Expected] = EXPECTED) -> None:
        for kind, e in expected.items():
            if not (math.isfinite(e.hours) and e.hours > 0 and math.isfinite(e.grace)):
                raise RuleError(f"missing-data default for {kind!r} is not a positive interval")
            if e.grace < 1:
                raise RuleError(f"missing-data grace for {kind!r} is below 1")
        self.expected = expected
        rules = dict(SILENT_RULES)
        for kind in expected:
            rules.setdefault(kind, _silent_rule(kind))
        self._rules = rules

    @property
    def rules(self) -> Sequence[Rule]:
        """``data.silent.<kind>`` for every main kind, and ``data.silent.device``."""
        return tuple(self._rules.values())

    def _rule(self, kind: str) -> TrendRule:
        found = self._rules.get(kind)
        if found is None:  # a scheduled kind beyond the table: a rule of its own
            found = self._rules[kind] = _silent_rule(kind)
        return found

    def _limit(self, kind: str, plan: CarePlan | None) -> timedelta | None:
        default = self.expected.get(kind)
        hours = plan.schedule.get(kind) if plan is not None else None
        if hours is None:
            return None if default is None else default.limit
        grace = default.grace if default is not None else DEFAULT_GRACE
        return timedelta(hours=float(hours) * grace)

    def watches(
        self, readings: Iterable[LastReading], plans: Mapping[str, CarePlan]
    ) -> dict[tuple[str, str], _Watch]:
        """What is watched, by (patient, rule id). Pure."""
        devices: dict[tuple[str, str], list[LastReading]] = {}
        by_kind: dict[tuple[str, str], datetime] = {}
        for r in readings:
            if r.kind is not None:
                key = (r.patient, r.kind)
                by_kind[key] = max(by_kind.get(key, r.at), r.at)
            if r.paired:
                devices.setdefault((r.patient, r.device), []).append(r)
        watches: dict[tuple[str, str], _Watch] = {}
        covered: set[tuple[str, str]] = set()
        for (patient, device), rows in sorted(devices.items()):
            plan = plans.get(patient)
            kinds = {r.kind for r in rows if r.kind is not None}
            last = max(r.at for r in rows)
            limit: timedelta | None
            if not kinds:  # paired, nothing sent yet: watched from its pairing
                main, limit = DEVICE_KIND, UNHEARD_DEVICE.limit
            else:
                main = next((k for k in MAIN_KIND_ORDER if k in kinds), min(kinds))
                limits = [x for x in (self._limit(k, plan) for k in kinds) if x is not None]
                limit = min(limits) if limits else None
                covered.update((patient, k) for k in kinds)
            if limit is None:
                continue
            rule = self._rule(main)
            key = (patient, rule.id)
            old = watches.get(key)
            if old is None:
                watches[key] = _Watch(rule, last, limit, device, (device,))
            else:  # devices of one main kind count together: the latest of them
                old.evidence = (*old.evidence, device)
                old.limit = min(old.limit, limit)
                if last > old.last:
                    old.last, old.what = last, device
        for patient, plan in sorted(plans.items()):
            for kind in sorted(plan.schedule):
                if (patient, kind) in covered:
                    continue
                limit = self._limit(kind, plan)
                since = by_kind.get((patient, kind), plan.updated_at)
                if limit is None or since is None:
                    continue
                rule = self._rule(kind)
                if (patient, rule.id) not in watches:
                    watches[(patient, rule.id)] = _Watch(rule, since, limit, kind, ())
        return watches

    def check(self, store: Store, now: datetime) -> list[TimedFinding]:
        """Firing findings for every silence at ``now``; cleared ones for open alerts of
        silences that have ended."""
        plans = {p.patient: p for p in store.list_care_plans()}
        watches = self.watches(store.last_readings(), plans)
        findings: list[TimedFinding] = []
        firing: set[tuple[str, str]] = set()
        for (patient, rule_id), w in sorted(watches.items()):
            overdue = w.last + w.limit
            if now > overdue:
                firing.add((patient, rule_id))
                findings.append(
                    TimedFinding(
                        patient=patient,
                        rule=w.rule,
                        firing=True,
                        at=overdue,
                        message=f"no reading from {w.what} for {_duration(now - w.last)}",
                        evidence=w.evidence,
                    )
                )
        by_id = {r.id: r for r in self._rules.values()}
        for alert in _unresolved(store, SILENT_PREFIX):
            rule = by_id.get(alert.rule)
            if rule is None or (alert.patient, alert.rule) in firing:
                continue
            watch = watches.get((alert.patient, alert.rule))
            if watch is None:  # re-paired to another patient, or the schedule entry removed
                at, message = now, "no longer watched"
            else:  # a reading came (dated by it), or the plan now allows this silence
                at = min(max(watch.last, alert.opened_at), now)
                message = f"{watch.what} within plan"
            findings.append(TimedFinding(alert.patient, rule, False, at, message))
        return findings


class HubOfflineDetector:
    """A gateway offline for longer than ``grace``: an alert for each patient it serves."""

    def __init__(self, grace: timedelta = timedelta(minutes=60)) -> None:
        if grace < timedelta(0):
            raise RuleError("hub offline grace is negative")
        self.grace = grace

    @property
    def rules(self) -> Sequence[Rule]:
        """``hub.offline``."""
        return (HUB_OFFLINE,)

    def check(self, store: Store, now: datetime) -> list[TimedFinding]:
        """Firing findings for each patient of a hub offline past the grace at ``now``;
        cleared ones for open alerts whose hub is online again."""
        gateways = {g.id: g for g in store.list_gateways()}
        served: dict[str, set[str]] = {}
        for r in store.last_readings():
            if r.gateway is not None:
                served.setdefault(r.gateway, set()).add(r.patient)
        findings: list[TimedFinding] = []
        firing: dict[str, str] = {}
        for gid, g in sorted(gateways.items()):
            if g.status != "offline" or g.status_at is None:
                continue
            since = g.status_at
            if now - since <= self.grace:
                continue
            for patient in sorted(served.get(gid, ())):
                firing[patient] = gid
                findings.append(
                    TimedFinding(
                        patient=patient,
                        rule=HUB_OFFLINE,
                        firing=True,
                        at=since + self.grace,
                        message=f"hub {gid} offline for {_duration(now - since)}",
                        evidence=(gid,),
                    )
                )
        for alert in _unresolved(store, HUB_OFFLINE.id):
            if alert.patient in firing:
                continue
            back = [
                g.status_at
                for gid, g in gateways.items()
                if alert.patient in served.get(gid, ())
                and g.status == "online"
                and g.status_at is not None
            ]
            at = min(max(back), now) if back else now
            findings.append(
                TimedFinding(
                    patient=alert.patient,
                    rule=HUB_OFFLINE,
                    firing=False,
                    at=at,
                    message="hub online again" if back else "no hub of the patient is offline",
                )
            )
        return findings


def default_clock_detectors() -> tuple[DeviceSilentDetector, HubOfflineDetector]:
    """The clock detectors an engine runs unless told otherwise."""
    return (DeviceSilentDetector(), HubOfflineDetector())


__all__ = [
    "DEVICE_KIND",
    "EXPECTED",
    "HUB_OFFLINE",
    "MAIN_KIND_ORDER",
    "SILENT_RULES",
    "DeviceSilentDetector",
    "Expected",
    "HubOfflineDetector",
    "default_clock_detectors",
]
