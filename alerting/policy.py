"""The notification policy: who hears about an alert, when, how often, and what stays quiet.

Read from a YAML file (``wardwatch ingest run --alerting-policy FILE``; an example is
``deploy/alerting-policy.example.yaml``, the format is in ``docs/alerting.md``,
"Notifications"). Checked with pydantic: an unknown key, a bad duration, a step naming a tag
no target carries, a rule id no detector has... each is a :class:`PolicyError` naming the
key (``teams.ward-3.escalation.1.after: ...``). URLs (they hold tokens) never appear in
errors or logs.

Per care team: apprise URLs with apprise tags (``targets``), an escalation policy (steps:
who is told first, then who after how long while nobody acknowledges), a repeat interval
(re-notification of the current step while unacknowledged), a group wait (alerts of one
patient opened within it go out as one notification) and retries (count and backoff; after
the last failed retry the next step is escalated to). ``routes`` overrides the steps or the
repeat interval per severity.

Defaults, for a care team without an entry (and for what an entry leaves out): step 0 is
the care team's own ``notify_urls`` (from the store, apprise tag ``care-team``) for every
severity, no later steps (there is nobody to escalate to), repeat every 15 minutes for
urgent, 60 for warning, never for info; no group wait (alerts opened by one ingest batch,
one hub bundle, still go out together); 2 retries after 30 s and 60 s.

Inhibition (Prometheus Alertmanager's term): while an alert of a ``source`` rule is
unresolved, the ``targets`` rules' alerts of the same patient are not notified (recorded as
``inhibited``). :data:`DEFAULT_INHIBIT_RULES` gives each rule's clinical reason; a policy's
``inhibit`` list replaces it (``inhibit: []`` turns inhibition off).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from alerting.errors import AlertingError
from wardwatch.store import CareTeam, Severity

CARE_TEAM_TAG = "care-team"
"""The apprise tag of a care team's own ``notify_urls`` (from the store)."""

SEVERITIES: tuple[Severity, ...] = ("urgent", "warning", "info")

DEFAULT_REPEAT: Mapping[Severity, timedelta | None] = {
    "urgent": timedelta(minutes=15),
    "warning": timedelta(minutes=60),
    "info": None,
}
"""Re-notification while unacknowledged, when the policy sets none."""

DEFAULT_GROUP_WAIT = timedelta(0)
"""0: a notification leaves at once; alerts opened by the same ingest batch still share it."""


class PolicyError(AlertingError):
    """A notification policy that cannot be used; the message names the key."""

    code = "bad-alerting-policy"


# -- durations ---------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: object) -> timedelta:
    """``90`` (seconds), ``"30s"``, ``"10m"``, ``"1h30m"``, ``"0"`` -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):  # pydantic turns ValueError (not TypeError) into its error
        raise ValueError("a duration is a number of seconds or like 30s, 10m, 1h30m")  # noqa: TRY004
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text.isdigit():
            return timedelta(seconds=int(text))
        match = _DURATION.match(text)
        if text and match is not None:
            h, m, s = (int(g) if g else 0 for g in match.groups())
            return timedelta(hours=h, minutes=m, seconds=s)
    raise ValueError("a duration is a number of seconds or like 30s, 10m, 1h30m")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_tag(tag: str) -> str:
    # apprise reads "3:tag" as a priority and "tag:2" as a retry count: plain names only.
    if not _TAG.match(tag):
        raise ValueError(
            f"tag {tag!r} is not a plain name (letters, digits, '-', '_', '.'; no ':')"
        )
    return tag


Tag = Annotated[str, BeforeValidator(lambda v: _check_tag(v) if isinstance(v, str) else v)]


# -- the file's models ------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retries(_Model):
    """How often a failed delivery is tried again before the next step is escalated to."""

    count: int = Field(default=2, ge=0, le=10)
    backoff: Duration = timedelta(seconds=30)
    """Wait before the first retry."""
    factor: float = Field(default=2.0, ge=1.0, le=10.0)
    """Each further retry waits ``factor`` times longer."""

    def delay(self, attempt: int) -> timedelta:
        """Wait after failed attempt number ``attempt`` (1-based) before the next one."""
        return self.backoff * (self.factor ** max(0, attempt - 1))


class Target(_Model):
    """One apprise URL and the apprise tags it answers to."""

    url: str = Field(min_length=4, repr=False)
    tags: tuple[Tag, ...] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("not an apprise URL (schema://...)")
        return value


class Step(_Model):
    """One escalation step: ``after`` the first notification, tell ``notify`` (tags)."""

    after: Duration
    notify: tuple[Tag, ...] = Field(min_length=1)
    name: str | None = None
    """How it shows in events and deliveries; default: the tags joined by ``+``."""

    @property
    def label(self) -> str:
        """``primary-nurse`` (the name, or the tags)."""
        return self.name or "+".join(self.notify)


def _check_steps(steps: Sequence[Step]) -> None:
    if not steps:
        return
    if steps[0].after != timedelta(0):
        raise ValueError("the first step is the first notification: its 'after' must be 0")
    for i in range(1, len(steps)):
        if steps[i].after <= steps[i - 1].after:
            raise ValueError(
                f"step {i}: 'after' must be later than step {i - 1}'s (steps are in order)"
            )


class Route(_Model):
    """Per severity: other steps and/or another repeat interval than the team's."""

    escalation: tuple[Step, ...] | None = None
    """``[]``: nobody is notified of this severity (the worklist shows it)."""
    repeat_interval: Duration | None = None
    """``null`` (or unset): the team's; ``0``: never repeat."""

    @field_validator("escalation")
    @classmethod
    def _steps(cls, value: tuple[Step, ...] | None) -> tuple[Step, ...] | None:
        if value is not None:
            _check_steps(value)
        return value


class Settings(_Model):
    """What a team may set and ``defaults`` sets for every team."""

    group_wait: Duration | None = None
    repeat_interval: Duration | None = None
    """Unset: 15 min urgent, 60 min warning, never info. ``0``: never."""
    retries: Retries | None = None


class TeamPolicy(Settings):
    """One care team's entry under ``teams``."""

    targets: tuple[Target, ...] = ()
    escalation: tuple[Step, ...] | None = None
    """Unset: one step, the care team's ``notify_urls`` (tag ``care-team``)."""
    routes: dict[Severity, Route] = Field(default_factory=dict)

    @field_validator("escalation")
    @classmethod
    def _steps(cls, value: tuple[Step, ...] | None) -> tuple[Step, ...] | None:
        if value is not None:
            _check_steps(value)
        return value

    @model_validator(mode="after")
    def _known_tags(self) -> TeamPolicy:
        known = {CARE_TEAM_TAG} | {tag for t in self.targets for tag in t.tags}
        lists: list[tuple[str, tuple[Step, ...] | None]] = [("escalation", self.escalation)]
        lists += [(f"routes.{sev}.escalation", r.escalation) for sev, r in self.routes.items()]
        for where, steps in lists:
            for i, step in enumerate(steps or ()):
                unknown = sorted(set(step.notify) - known)
                if unknown:
                    raise ValueError(
                        f"{where}.{i}.notify: no target has tag(s) {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(known))})"
                    )
        return self


class InhibitRule(_Model):
    """While an alert of ``source`` is unresolved, alerts of ``targets`` (same patient) are
    not notified."""

    source: str = Field(min_length=1)
    targets: tuple[str, ...] = Field(min_length=1)
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _not_self(self) -> InhibitRule:
        if self.source in self.targets:
            raise ValueError(f"rule {self.source!r} cannot inhibit itself")
        return self


class PolicyFile(_Model):
    """The whole file."""

    worklist_url: str | None = None
    """Base URL of the nurses' page: links are ``{worklist_url}/#/alerts/{id}``."""
    fallback_urls: tuple[str, ...] = Field(default=(), repr=False)
    """Where alerts of patients without a care team (or without any target) go."""
    defaults: Settings = Settings()
    teams: dict[str, TeamPolicy] = Field(default_factory=dict)
    inhibit: tuple[InhibitRule, ...] | None = None
    """Unset: :data:`DEFAULT_INHIBIT_RULES`. A list replaces them; ``[]``: no inhibition."""

    @field_validator("worklist_url")
    @classmethod
    def _worklist(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/") if value else value

    @field_validator("fallback_urls")
    @classmethod
    def _fallback(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, url in enumerate(value):
            if "://" not in url:
                raise ValueError(f"item {i} is not an apprise URL (schema://...)")
        return value


# -- default inhibition table ------------------------------------------------------------

_NEWS2_SINGLE = (
    "a single NEWS2 parameter in its red band (score 3) is also alerted by its own "
    "threshold rule, which names the vital sign: the low-medium band alert says the same"
)

DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(
        source="glucose.hypo.level2",
        targets=("glucose.hypo.level1",),
        reason="ADA level 2 hypoglycaemia (< 54 mg/dL) is below level 1 (< 70): one episode",
    ),
    InhibitRule(
        source="glucose.hyper.level2",
        targets=("glucose.hyper.level1",),
        reason="> 250 mg/dL is also > 180 mg/dL: one episode, the higher level tells it",
    ),
    InhibitRule(
        source="glucose.cgm.hypo.level2",
        targets=("glucose.cgm.hypo.level1", "glucose.predicted_low", "glucose.rate.falling"),
        reason="a CGM level 2 low is the event a predicted low or a fast fall warns of; "
        "level 2 includes level 1",
    ),
    InhibitRule(
        source="glucose.cgm.hyper.level2",
        targets=("glucose.cgm.hyper.level1",),
        reason="CGM > 250 mg/dL is also > 180 mg/dL: one episode",
    ),
    InhibitRule(
        source="glucose.predicted_low",
        targets=("glucose.rate.falling",),
        reason="the predicted low (urgent) already reports the fast fall it is computed from",
    ),
    InhibitRule(
        source="bp.hypotension",
        targets=("news2.low_medium",),
        reason="SBP < 90 scores 3 in NEWS2: the low-medium band is the hypotension again "
        "(the urgent alert tells it first)",
    ),
    InhibitRule(
        source="news2.high",
        targets=("news2.medium", "news2.low_medium", "news2.low"),
        reason="NEWS2 high (emergency response) supersedes the lower bands",
    ),
    InhibitRule(
        source="news2.medium",
        targets=("news2.low_medium", "news2.low"),
        reason="NEWS2 medium (urgent response) supersedes the lower bands",
    ),
    *(
        InhibitRule(source=rule, targets=("news2.low_medium",), reason=_NEWS2_SINGLE)
        for rule in (
            "spo2.low",
            "spo2.low.scale2",
            "heart_rate.high",
            "heart_rate.low",
            "respiratory_rate.high",
            "respiratory_rate.low",
            "temperature.low",
        )
    ),
    InhibitRule(
        source="temperature.high",
        targets=("temperature.fever",),
        reason="a temperature >= 39.1 degC is also over 38.0: one fever, the higher band tells it",
    ),
)
"""Each urgent (or higher-band) alert silences its lower twin for the same patient."""


# -- what the dispatcher uses -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What applies to one alert: its care team's targets, steps, timings for its severity."""

    team: str | None
    targets: tuple[Target, ...]
    steps: tuple[Step, ...]
    repeat_interval: timedelta | None
    group_wait: timedelta
    retries: Retries


_DEFAULT_RETRIES = Retries()
_CARE_TEAM_STEP = Step(after=timedelta(0), notify=(CARE_TEAM_TAG,))
_FALLBACK_TAG = "fallback"


class NotificationPolicy:
    """A checked policy (the defaults when no file is given)."""

    def __init__(self, spec: PolicyFile | None = None) -> None:
        self.spec = spec if spec is not None else PolicyFile()
        self.worklist_url = self.spec.worklist_url
        self.inhibit_rules = (
            self.spec.inhibit if self.spec.inhibit is not None else DEFAULT_INHIBIT_RULES
        )
        self._inhibitors: dict[str, list[InhibitRule]] = {}
        for rule in self.inhibit_rules:
            for target in rule.targets:
                self._inhibitors.setdefault(target, []).append(rule)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<policy>") -> NotificationPolicy:
        """Parse and check a policy; :class:`PolicyError` names the bad key."""
        try:
            data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise PolicyError(f"alerting policy {source}: not valid YAML{where}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PolicyError(f"alerting policy {source}: the top level must be a mapping")
        try:
            return cls(PolicyFile.model_validate(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {_message(err)}"
                for err in exc.errors()
            )
            raise PolicyError(f"alerting policy {source}: {problems}") from None

    @classmethod
    def load(cls, path: str | Path) -> NotificationPolicy:
        """Read a policy file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"alerting policy {p}: cannot read it ({exc.strerror})") from None
        return cls.from_yaml(text, str(p))

    def check_rules(self, known: Collection[str]) -> None:
        """Refuse inhibition rules naming rule ids no detector has (a typo would do nothing)."""
        known_set = set(known)
        for i, rule in enumerate(self.inhibit_rules):
            for field, ids in (("source", (rule.source,)), ("targets", rule.targets)):
                unknown = sorted(set(ids) - known_set)
                if unknown:
                    raise PolicyError(
                        f"alerting policy: inhibit.{i}.{field}: unknown rule id(s) "
                        f"{', '.join(unknown)}"
                    )

    def inhibitors(self, rule: str) -> list[InhibitRule]:
        """The inhibition rules that can silence alerts of ``rule``."""
        return self._inhibitors.get(rule, [])

    def plan(self, team: CareTeam | None, severity: Severity) -> Plan:
        """What applies to an alert of ``severity`` for a patient of ``team`` (None: none)."""
        defaults = self.spec.defaults
        entry = self.spec.teams.get(team.id) if team is not None else None
        own = tuple(
            Target(url=url, tags=(CARE_TEAM_TAG,)) for url in (team.notify_urls if team else ())
        )
        targets = own + (entry.targets if entry is not None else ())
        steps: tuple[Step, ...] = (_CARE_TEAM_STEP,)
        repeat_set: timedelta | None = defaults.repeat_interval
        group_wait = defaults.group_wait
        retries = defaults.retries
        route = None
        if entry is not None:
            if entry.escalation is not None:
                steps = entry.escalation
            repeat_set = entry.repeat_interval if entry.repeat_interval is not None else repeat_set
            group_wait = entry.group_wait if entry.group_wait is not None else group_wait
            retries = entry.retries if entry.retries is not None else retries
            route = entry.routes.get(severity)
        if route is not None:
            if route.escalation is not None:
                steps = route.escalation
            if route.repeat_interval is not None:
                repeat_set = route.repeat_interval
        repeat = DEFAULT_REPEAT[severity] if repeat_set is None else repeat_set
        if not targets and self.spec.fallback_urls and steps:
            # Nobody configured for this patient: the fallback hears it, at step 0 only.
            targets = tuple(Target(url=u, tags=(_FALLBACK_TAG,)) for u in self.spec.fallback_urls)
            steps = (Step(after=timedelta(0), notify=(_FALLBACK_TAG,), name="fallback"),)
        return Plan(
            team=team.id if team is not None else None,
            targets=targets,
            steps=steps,
            repeat_interval=repeat if repeat else None,
            group_wait=group_wait if group_wait is not None else DEFAULT_GROUP_WAIT,
            retries=retries if retries is not None else _DEFAULT_RETRIES,
        )

    def link(self, alert_id: int | None) -> str | None:
        """The worklist link of an alert, if a worklist URL is configured."""
        if self.worklist_url is None or alert_id is None:
            return None
        return f"{self.worklist_url}/#/alerts/{alert_id}"


def _message(err: Mapping[str, Any]) -> str:
    # pydantic's message without the input value (a URL holds a token).
    msg = str(err.get("msg", "invalid"))
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown key"
    return msg.removeprefix("Value error, ")


__all__ = [
    "CARE_TEAM_TAG",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_INHIBIT_RULES",
    "DEFAULT_REPEAT",
    "InhibitRule",
    "NotificationPolicy",
    "Plan",
    "PolicyError",
    "PolicyFile",
    "Retries",
    "Route",
    "Settings",
    "Step",
    "Target",
    "TeamPolicy",
    "parse_duration",
]
