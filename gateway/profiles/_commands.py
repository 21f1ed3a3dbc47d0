"""``wardwatch profiles validate|test|docs``: the logic, apart from argparse.

Each function returns (exit code, text for stdout) so that tests can call it directly and
:mod:`wardwatch.cli` stays a thin shell.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.profiles._docs import devices_markdown
from gateway.profiles._registry import (
    ProfileError,
    check,
    packaged_profile_dir,
    profile_dirs_from_env,
)
from gateway.profiles._samples import run_samples

EXIT_OK = 0
EXIT_INVALID = 1


def _dirs(extra: Sequence[Path], *, packaged: bool) -> list[Path]:
    base = [packaged_profile_dir()] if packaged else []
    return base + profile_dirs_from_env() + list(extra)


def default_docs_path() -> Path:
    """``docs/devices.md`` beside the packaged profiles (the repository's docs)."""
    return packaged_profile_dir().parent / "docs" / "devices.md"


def validate(extra: Sequence[Path] = (), *, packaged: bool = True) -> tuple[int, str]:
    """Schema and registry checks over every profile; the problems, or a summary."""
    dirs = _dirs(extra, packaged=packaged)
    try:
        profiles, problems = check(dirs)
    except ProfileError as exc:
        problems, profiles = list(exc.problems), []
    if problems:
        lines = [f"{p.path}: {p.message}" for p in problems]
        lines.append(f"{len(problems)} problem(s) in device profiles")
        return EXIT_INVALID, "\n".join(lines) + "\n"
    samples = sum(len(p.samples) for p in profiles)
    where = ", ".join(str(d) for d in dirs)
    return EXIT_OK, f"ok: {len(profiles)} profiles, {samples} samples pass ({where})\n"


def run_profile_test(
    profile_id: str, extra: Sequence[Path] = (), *, packaged: bool = True
) -> tuple[int, str]:
    """Run one profile's samples; a readable diff for each that fails."""
    try:
        profiles, problems = check(_dirs(extra, packaged=packaged), run_profile_checks=False)
    except ProfileError as exc:
        return EXIT_INVALID, "\n".join(str(p) for p in exc.problems) + "\n"
    found = [p for p in profiles if p.id == profile_id]
    if not found:
        own = [p for p in problems if profile_id in p.path.name]
        detail = "".join(f"\n{p}" for p in own)
        return EXIT_INVALID, f"no usable device profile {profile_id!r}{detail}\n"
    profile = found[0]
    lines = [f"{profile.id} ({profile.path})"]
    results = run_samples(profile)
    for r in results:
        lines.append(f"  {'PASS' if r.passed else 'FAIL'}  {r.sample}")
        if not r.passed:
            lines.extend("        " + line for line in r.diff.splitlines())
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return (EXIT_INVALID if failed else EXIT_OK), "\n".join(lines) + "\n"


def render_docs() -> str:
    """The supported-devices page from the packaged profiles only (not a site's drop-ins)."""
    profiles, problems = check([packaged_profile_dir()], run_profile_checks=False)
    if problems:
        raise ProfileError(problems)
    return devices_markdown(profiles)


def write_docs(output: Path | None) -> tuple[int, str]:
    """Write the supported-devices page (``-`` prints it)."""
    try:
        text = render_docs()
    except ProfileError as exc:
        return EXIT_INVALID, "\n".join(str(p) for p in exc.problems) + "\n"
    if output is not None and str(output) == "-":
        return EXIT_OK, text
    path = output or default_docs_path()
    path.write_text(text, encoding="utf-8")
    return EXIT_OK, f"wrote {path}\n"
