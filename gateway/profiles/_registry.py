"""Loading profiles from directories, checking them as a whole, and matching devices."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jmespath
import jmespath.exceptions
import jsonschema
import orjson
import yaml

import gateway
from gateway.errors import DecodeError, GatewayError
from gateway.profiles._model import (
    BLE,
    BLE_ADVERTISEMENT,
    DECODER_NAMES,
    Advertisement,
    Profile,
)
from gateway.profiles._mqtt import topic_matches, topic_problems
from gateway.profiles._samples import run_samples
from wardwatch.errors import ContractError
from wardwatch.vocabulary import kind as lookup_kind

logger = logging.getLogger(__name__)

#: env var: extra profile directories, colon-separated, searched after the packaged ones
PROFILE_DIRS_ENV = "WARDWATCH_PROFILE_DIRS"


def packaged_profile_dir() -> Path:
    """The shipped ``device-profiles/`` directory.

    It sits at the repository root, beside the ``gateway`` package, which holds for an
    editable install (the way the project is installed); a wheel would need to ship it
    as package data instead.
    """
    return Path(gateway.__file__).resolve().parents[1] / "device-profiles"


def profile_dirs_from_env(env: Mapping[str, str] | None = None) -> list[Path]:
    """The drop-in directories named by ``WARDWATCH_PROFILE_DIRS``."""
    value = (os.environ if env is None else env).get(PROFILE_DIRS_ENV, "")
    return [Path(p) for p in value.split(":") if p.strip()]


@cache
def profile_schema() -> Mapping[str, Any]:
    """The profile JSON Schema shipped in the package."""
    text = resources.files("gateway.profiles").joinpath("profile.schema.json").read_bytes()
    schema: Mapping[str, Any] = orjson.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class ProfileProblem:
    """One thing wrong with one profile file."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ProfileError(GatewayError):
    """Profiles that cannot be used; ``problems`` names each file and what is wrong."""

    code = "profile"

    def __init__(self, problems: Sequence[ProfileProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in problems))


def _files(dirs: Iterable[Path]) -> Iterator[Path]:
    for d in dirs:
        if not d.is_dir():
            raise ProfileError([ProfileProblem(d, "profile directory does not exist")])
        yield from sorted([*d.glob("*.yaml"), *d.glob("*.yml")])


def _schema_message(err: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    return f"schema: at {where}: {err.message}"


def parse_profile(path: Path) -> tuple[Profile | None, list[ProfileProblem]]:
    """One profile file: parsed, or the problems that stop it."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        return None, [ProfileProblem(path, f"cannot read YAML: {exc}")]
    validator = jsonschema.Draft202012Validator(profile_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        return None, [ProfileProblem(path, _schema_message(e)) for e in errors]
    return Profile.from_doc(doc, path), []


def _unit_problem(kind: str, unit: str | None) -> str | None:
    try:
        spec = lookup_kind(kind)
    except ContractError:
        return f"unknown measurement kind {kind!r}"
    if unit is not None:
        try:
            spec.check_unit(unit)
        except ContractError as exc:
            return f"{kind}: {exc}"
    return None


def profile_problems(profile: Profile) -> list[str]:
    """Checks of one profile on its own: kinds, units, decoders, quirks, rules, samples."""
    out: list[str] = []
    uuids = [c.uuid for c in profile.characteristics]
    for c in profile.characteristics:
        standard = c.standard_uuid
        if standard is None:
            out.append(f"characteristic {c.uuid}: unknown decoder {c.decoder!r}")
        else:
            out.extend(f"characteristic {c.uuid}: {p}" for p in c.quirks.problems(standard))
    if len(set(uuids)) != len(uuids):
        out.append("a characteristic is listed twice")
    if profile.advertisement is not None:
        keys = [s.key for s in profile.advertisement.sources]
        for source in profile.advertisement.sources:
            standard = DECODER_NAMES.get(source.decoder)
            if standard is None:
                out.append(f"advertisement {source.key}: unknown decoder {source.decoder!r}")
            else:
                out.extend(
                    f"advertisement {source.key}: {p}" for p in source.quirks.problems(standard)
                )
        if len(set(keys)) != len(keys):
            out.append("an advertisement source is listed twice")
    if profile.mapping is not None:
        for m in profile.mapping.measurements:
            problem = _unit_problem(m.kind, m.unit)
            if problem:
                out.append(f"mapping: {problem}")
        for expression in profile.mapping.expressions():
            try:
                jmespath.compile(expression)
            except jmespath.exceptions.JMESPathError as exc:
                out.append(f"mapping: bad JMESPath {expression!r}: {exc}")
    if profile.ble is not None and profile.ble.local_name is not None:
        try:
            re.compile(profile.ble.local_name)
        except re.error as exc:
            out.append(f"match: local_name {profile.ble.local_name!r} is not a regex: {exc}")
        else:
            if not profile.ble.matches(profile.ble.example()):
                out.append(
                    f"match: local_name_example {profile.ble.local_name_example!r} does not "
                    f"match local_name {profile.ble.local_name!r}"
                )
    if profile.mqtt is not None:
        out.extend(f"match: {p}" for p in topic_problems(profile.mqtt.topic))
        if not topic_matches(profile.mqtt.topic, profile.mqtt.topic_example):
            out.append(
                f"match: topic_example {profile.mqtt.topic_example!r} does not match topic "
                f"{profile.mqtt.topic!r}"
            )
    for sample in profile.samples:
        for e in sample.expect or ():
            problem = _unit_problem(e.kind, e.unit)
            if problem:
                out.append(f"sample {sample.name!r}: {problem}")
        if profile.transport in (BLE, BLE_ADVERTISEMENT) and sample.hex is None:
            out.append(f"sample {sample.name!r}: a BLE sample needs hex")
        if profile.advertisement is not None:
            if sample.characteristic is not None:
                out.append(
                    f"sample {sample.name!r}: an advertised sample names service_data or "
                    "manufacturer_id, not a characteristic"
                )
            try:
                profile.advertisement_source(
                    service_data=sample.service_data, manufacturer_id=sample.manufacturer_id
                )
            except DecodeError as exc:
                out.append(f"sample {sample.name!r}: {exc}")
        elif sample.service_data is not None or sample.manufacturer_id is not None:
            out.append(
                f"sample {sample.name!r}: service_data / manufacturer_id are for "
                "advertising-only profiles"
            )
        if profile.transport == "mqtt" and sample.json is None:
            out.append(f"sample {sample.name!r}: an MQTT sample needs json")
        if sample.characteristic is not None and sample.characteristic not in uuids:
            from gateway.profiles._model import characteristic_key

            if characteristic_key(sample.characteristic) not in uuids:
                out.append(
                    f"sample {sample.name!r}: characteristic {sample.characteristic} "
                    "is not in characteristics"
                )
    if not any(s.error is not None for s in profile.samples):
        out.append("samples: at least one invalid sample (with error:) is required")
    if out:
        return out
    for result in run_samples(profile):
        if not result.passed:
            out.append(f"sample {result.sample!r} fails:\n{result.diff}")
    return out


def shadow_problems(profiles: Sequence[Profile]) -> list[ProfileProblem]:
    """Match rules that hide another profile: A matches B's example as specifically.

    Reported on A's file, the rule that hides.
    """
    out: list[ProfileProblem] = []
    for a in profiles:
        for b in profiles:
            if a is b:
                continue
            if a.ble is not None and b.ble is not None:
                hides = a.ble.matches(b.ble.example()) and a.ble.specificity >= b.ble.specificity
            elif a.mqtt is not None and b.mqtt is not None:
                hides = (
                    topic_matches(a.mqtt.topic, b.mqtt.topic_example)
                    and a.mqtt.specificity >= b.mqtt.specificity
                )
            else:
                hides = False
            if hides:
                out.append(
                    ProfileProblem(
                        a.path,
                        f"match rule shadows {b.id} ({b.path}): it matches {b.id}'s "
                        "example at least as specifically, so which profile applies is "
                        "ambiguous",
                    )
                )
    return out


class ProfileRegistry:
    """Every usable profile, by id; matches advertisements and topics to profiles."""

    def __init__(self, profiles: Iterable[Profile]) -> None:
        self._profiles: dict[str, Profile] = {}
        for p in profiles:
            self._profiles[p.id] = p

    @classmethod
    def load(
        cls,
        extra_dirs: Iterable[Path] = (),
        *,
        packaged: bool = True,
        env: Mapping[str, str] | None = None,
        check_samples: bool = False,
    ) -> ProfileRegistry:
        """Profiles from the packaged dir, ``WARDWATCH_PROFILE_DIRS`` and ``extra_dirs``.

        Raises ProfileError naming every file and problem; ``check_samples`` also runs
        every profile's samples (what ``wardwatch profiles validate`` does).
        """
        dirs = [packaged_profile_dir()] if packaged else []
        dirs += profile_dirs_from_env(env) + [Path(d) for d in extra_dirs]
        profiles, problems = check(dirs, run_profile_checks=check_samples)
        if problems:
            raise ProfileError(problems)
        logger.debug("loaded %d device profiles from %d directories", len(profiles), len(dirs))
        return cls(profiles)

    def __iter__(self) -> Iterator[Profile]:
        return iter(sorted(self._profiles.values(), key=lambda p: p.id))

    def __len__(self) -> int:
        return len(self._profiles)

    def get(self, profile_id: str) -> Profile:
        """The profile ``profile_id``; GatewayError if there is none."""
        try:
            return self._profiles[profile_id]
        except KeyError:
            raise DecodeError(f"no device profile {profile_id!r}") from None

    def match_ble(self, adv: Advertisement) -> Profile | None:
        """The most specific BLE profile matching ``adv``, or None."""
        found = [p for p in self if p.ble is not None and p.ble.matches(adv)]
        return max(found, key=lambda p: p.ble.specificity if p.ble else 0, default=None)

    def match_mqtt(self, topic: str) -> Profile | None:
        """The most specific MQTT profile whose topic filter matches ``topic``, or None."""
        found = [p for p in self if p.matches_topic(topic)]
        return max(found, key=lambda p: p.mqtt.specificity if p.mqtt else 0, default=None)


def check(
    dirs: Iterable[Path], *, run_profile_checks: bool = True
) -> tuple[list[Profile], list[ProfileProblem]]:
    """Load every profile file in ``dirs`` and run the registry checks.

    Schema and unique ids are always checked, as are shadowing match rules; the per-profile
    checks (kinds, units, decoders, quirks, samples) when ``run_profile_checks``.
    """
    problems: list[ProfileProblem] = []
    profiles: list[Profile] = []
    seen: dict[str, Path] = {}
    for path in _files(dirs):
        profile, found = parse_profile(path)
        problems += found
        if profile is None:
            continue
        if profile.id in seen:
            problems.append(
                ProfileProblem(
                    path, f"duplicate profile id {profile.id!r} (also in {seen[profile.id]})"
                )
            )
            continue
        seen[profile.id] = path
        if run_profile_checks:
            problems += [ProfileProblem(path, m) for m in profile_problems(profile)]
        profiles.append(profile)
    problems += shadow_problems(profiles)
    return profiles, problems
