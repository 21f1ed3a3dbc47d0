"""``wardwatch admin``: the first admin, care teams, users, patients, API tokens, audit.

Every command takes ``--store STORE`` (``sqlite:PATH`` or ``postgresql://...``) and works
on the store directly (run it where the database is reachable, as an operator). What it
changes is appended to the audit trail as ``cli:<os user>``. Passwords never come from the
command line (they would show in ``ps`` and the shell history): from a file, an
environment variable or a prompt. An API token is printed once and only its hash is kept.

Imports of the backend happen inside the handlers (this module is loaded to build the
parser of every ``wardwatch`` command).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from alerting.access import AccessService
    from wardwatch.store import Store

ADMIN_PASSWORD_ENV: Final = "WARDWATCH_ADMIN_PASSWORD"  # noqa: S105 (its name, not a password)
_STORE_HELP: Final = "sqlite:PATH or postgresql://..."


class AdminCommandError(Exception):
    """A command that cannot be done as asked (the message says why); exit status 2."""


def _fail(message: str) -> int:
    sys.stderr.write(f"wardwatch admin: {message}\n")
    return 2


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@contextmanager
def _opened(url: str) -> Iterator[Store]:
    from ingest.stores import open_store

    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def _service(store: Store) -> AccessService:
    from alerting.access import AccessService

    return AccessService(store)


def _read_password_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AdminCommandError(f"cannot read the password file {path}: {exc}") from exc
    # One trailing line break is how files end, not part of the password.
    return text.removesuffix("\n").removesuffix("\r")


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise AdminCommandError(
            f"no password given: use --password-file, ${ADMIN_PASSWORD_ENV} or a terminal"
        )
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AdminCommandError("the two passwords differ")
    return first


def _password(args: argparse.Namespace, *, env_default: str | None = None) -> str | None:
    """The password from ``--password-file``, ``--password-env`` (or ``env_default``)."""
    if args.password_file is not None:
        return _read_password_file(args.password_file)
    env = getattr(args, "password_env", None) or env_default
    if env is not None:
        value = os.environ.get(env)
        if value is not None:
            return value
        if getattr(args, "password_env", None):
            raise AdminCommandError(f"the environment variable {env} is not set")
    return None


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _since(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from exc
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _json(doc: object) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(doc).decode() + "\n")


def _handled(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors a user can fix into a message and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from alerting.errors import AccessError
        from wardwatch.errors import WardwatchError

        try:
            return fn(args)
        except (AdminCommandError, AccessError) as exc:
            return _fail(str(exc))
        except WardwatchError as exc:  # StoreError and the like
            return _fail(f"{type(exc).__name__}: {exc}")

    run.__doc__ = fn.__doc__
    return run


# -- commands -------------------------------------------------------------------------


@_handled
def _cmd_create_admin(args: argparse.Namespace) -> int:
    """The first system admin (refused when an active one exists, unless --force)."""
    password = _password(args, env_default=ADMIN_PASSWORD_ENV)
    with _opened(args.store) as store:
        admins = [u.username for u in store.list_users() if u.role == "system-admin" and u.active]
        if admins and not args.force:
            raise AdminCommandError(
                f"a system admin exists already ({', '.join(admins)}); use --force to add one"
            )
        if password is None:
            password = _prompt_password()
        _service(store).set_user(
            args.username,
            args.display_name or args.username,
            "system-admin",
            password=password,
            by=_who(),
        )
    sys.stdout.write(f"system admin {args.username} created\n")
    return 0


@_handled
def _cmd_team_add(args: argparse.Namespace) -> int:
    """Create or update a care team."""
    from wardwatch.store import AuditEvent, CareTeam

    with _opened(args.store) as store:
        existed = store.get_care_team(args.id) is not None
        store.upsert_care_team(CareTeam(args.id, args.name, tuple(args.notify_url)))
        store.record_audit(
            AuditEvent(
                at=datetime.now(UTC),
                principal=_who(),
                action="update-team" if existed else "create-team",
                outcome="success",
                resource=f"CareTeam/{args.id}",
            )
        )
    sys.stdout.write(f"care team {args.id} {'updated' if existed else 'created'}\n")
    return 0


@_handled
def _cmd_user_add(args: argparse.Namespace) -> int:
    """Create or update a user (a password is kept as an argon2 hash only)."""
    password = _password(args)
    with _opened(args.store) as store:
        user = _service(store).set_user(
            args.username,
            args.display_name,
            args.role,
            tuple(args.team),
            password=password,
            active=not args.inactive,
            by=_who(),
        )
    login = "can log in" if user.password_hash is not None else "no password (API tokens only)"
    sys.stdout.write(f"user {user.username} ({user.role}) saved; {login}\n")
    return 0


def _user_json(store: Store) -> list[dict[str, Any]]:
    return [
        {
            "username": u.username,
            "display_name": u.display_name,
            "role": u.role,
            "teams": list(u.teams),
            "active": u.active,
            "has_password": u.password_hash is not None,
            "created_at": _iso(u.created_at),
        }
        for u in store.list_users()
    ]


@_handled
def _cmd_user_list(args: argparse.Namespace) -> int:
    """Every user (never a password hash)."""
    with _opened(args.store) as store:
        users = _user_json(store)
    if args.json:
        _json(users)
        return 0
    for u in users:
        state = "" if u["active"] else "  (inactive)"
        teams = ",".join(u["teams"]) or "-"
        sys.stdout.write(f"{u['username']:<20} {u['role']:<16} {teams:<24}{state}\n")
    return 0


@_handled
def _cmd_patient_add(args: argparse.Namespace) -> int:
    """Enrol a patient in a care team (or move them to another)."""
    from wardwatch.store import AuditEvent, Patient

    with _opened(args.store) as store:
        if store.get_care_team(args.team) is None:
            raise AdminCommandError(f"no care team {args.team!r}; add it with `admin team add`")
        existing = store.get_patient(args.id)
        thresholds = dict(existing.thresholds) if existing is not None else {}
        store.upsert_patient(Patient(args.id, args.display_name, args.team, thresholds))
        store.record_audit(
            AuditEvent(
                at=datetime.now(UTC),
                principal=_who(),
                action="update-patient" if existing is not None else "create-patient",
                outcome="success",
                patient=args.id,
                resource=f"Patient/{args.id}",
            )
        )
    sys.stdout.write(f"patient {args.id} {'updated' if existing else 'enrolled'}\n")
    return 0


@_handled
def _cmd_token_create(args: argparse.Namespace) -> int:
    """A new API token, printed once."""
    if args.days is not None and args.days <= 0:
        raise AdminCommandError("--days must be positive")
    ttl = None if args.days is None else timedelta(days=args.days)
    with _opened(args.store) as store:
        token = _service(store).create_api_token(args.username, args.name, ttl, by=_who())
    sys.stdout.write(token + "\n")
    sys.stderr.write(
        "This token is shown once; only its hash is stored. "
        f"Revoke it with `wardwatch admin token revoke --username {args.username} "
        f"--name {args.name}`.\n"
    )
    return 0


@_handled
def _cmd_token_revoke(args: argparse.Namespace) -> int:
    """Revoke a user's live API token by name."""
    with _opened(args.store) as store:
        if not _service(store).revoke_api_token(args.username, args.name, by=_who()):
            raise AdminCommandError(f"{args.username} has no live API token named {args.name!r}")
    sys.stdout.write(f"API token {args.name} of {args.username} revoked\n")
    return 0


@_handled
def _cmd_token_list(args: argparse.Namespace) -> int:
    """API tokens (names and dates; never the token)."""
    with _opened(args.store) as store:
        tokens = store.list_tokens(args.username, "api")
    doc = [
        {
            "username": t.username,
            "name": t.name,
            "created_at": _iso(t.created_at),
            "expires_at": _iso(t.expires_at),
            "revoked_at": _iso(t.revoked_at),
        }
        for t in tokens
    ]
    if args.json:
        _json(doc)
        return 0
    for d in doc:
        state = f"revoked {d['revoked_at']}" if d["revoked_at"] else "live"
        expires = d["expires_at"] or "never"
        sys.stdout.write(f"{d['username']:<20} {d['name']:<24} expires {expires:<28} {state}\n")
    return 0


@_handled
def _cmd_audit_list(args: argparse.Namespace) -> int:
    """The audit trail, oldest first (reading it is itself audited)."""
    from wardwatch.store import AuditEvent

    with _opened(args.store) as store:
        events = store.list_audit(
            patient=args.patient,
            principal=args.principal,
            action=args.action,
            since=args.since,
            limit=args.limit,
        )
        store.record_audit(
            AuditEvent(
                at=datetime.now(UTC),
                principal=_who(),
                action="read-audit",
                outcome="success",
                patient=args.patient,
                resource="AuditEvent",
                detail=f"{len(events)} entries",
            )
        )
    doc = [
        {
            "id": e.id,
            "at": _iso(e.at),
            "principal": e.principal,
            "action": e.action,
            "outcome": e.outcome,
            "patient": e.patient,
            "resource": e.resource,
            "remote": e.remote,
            "detail": e.detail,
        }
        for e in events
    ]
    if args.json:
        _json(doc)
        return 0
    for d in doc:
        where = d["patient"] or d["resource"] or "-"
        sys.stdout.write(
            f"{d['id']:>7}  {d['at']}  {d['principal']:<20} {d['action']:<16} "
            f"{d['outcome']:<10} {where}  {d['remote'] or ''}  {d['detail'] or ''}\n"
        )
    return 0


# -- parser ---------------------------------------------------------------------------


def _password_options(parser: argparse.ArgumentParser, *, env: bool) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--password-file", type=Path, help="read the password from this file (one line)"
    )
    if env:
        group.add_argument(
            "--password-env", metavar="VAR", help="read the password from this variable"
        )


def register_admin(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``wardwatch admin ...`` to the top-level parser."""
    from wardwatch.store_access import ROLES

    admin = sub.add_parser(
        "admin",
        help="users, care teams, patients, API tokens, the audit trail",
        description=(
            "Every command works on the store directly (--store sqlite:PATH or "
            "postgresql://...) and is audited as cli:<os user>. Passwords come from a file, "
            "an environment variable or a prompt, never the command line; an API token is "
            "printed once and only its hash is kept."
        ),
    )
    cmds = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Callable[[argparse.Namespace], int],
    ) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=handler.__doc__, description=handler.__doc__)
        parser.add_argument("--store", required=True, help=_STORE_HELP)
        parser.set_defaults(handler=handler)
        return parser

    first = command(cmds, "create-admin", _cmd_create_admin)
    first.add_argument("--username", required=True)
    first.add_argument("--display-name", help="shown on the page (default: the user name)")
    _password_options(first, env=False)
    first.add_argument("--force", action="store_true", help="add a system admin even if one exists")
    first.epilog = (
        f"The password comes from --password-file, else ${ADMIN_PASSWORD_ENV}, else a prompt."
    )

    team = cmds.add_parser("team", help="care teams").add_subparsers(
        dest="team_command", required=True, metavar="ACTION"
    )
    team_add = command(team, "add", _cmd_team_add)
    team_add.add_argument("--id", required=True)
    team_add.add_argument("--name", required=True)
    team_add.add_argument(
        "--notify-url",
        action="append",
        default=[],
        metavar="URL",
        help="apprise URL for the team's alerts (repeatable)",
    )

    user = cmds.add_parser("user", help="people and service accounts").add_subparsers(
        dest="user_command", required=True, metavar="ACTION"
    )
    user_add = command(user, "add", _cmd_user_add)
    user_add.add_argument("--username", required=True, help="lower case: a-z 0-9 . _ @ -")
    user_add.add_argument("--display-name", required=True)
    user_add.add_argument("--role", required=True, choices=ROLES)
    user_add.add_argument(
        "--team",
        action="append",
        default=[],
        help="care team (repeatable; required for nurse, physician, care-team-admin)",
    )
    _password_options(user_add, env=True)
    user_add.add_argument(
        "--inactive", action="store_true", help="save the user as inactive (cannot log in)"
    )
    user_add.epilog = (
        "Without a password option an existing password is kept (a new user has none)."
    )
    user_list = command(user, "list", _cmd_user_list)
    user_list.add_argument("--json", action="store_true", help="print a JSON array")

    patient = cmds.add_parser("patient", help="enrolled patients").add_subparsers(
        dest="patient_command", required=True, metavar="ACTION"
    )
    patient_add = command(patient, "add", _cmd_patient_add)
    patient_add.add_argument("--id", required=True)
    patient_add.add_argument("--display-name", required=True)
    patient_add.add_argument("--team", required=True, help="the care team that looks after them")

    token = cmds.add_parser("token", help="API tokens for services").add_subparsers(
        dest="token_command", required=True, metavar="ACTION"
    )
    token_create = command(token, "create", _cmd_token_create)
    token_create.add_argument("--username", required=True)
    token_create.add_argument("--name", required=True, help="what the token is for")
    token_create.add_argument(
        "--days", type=int, help="expire after this many days (default: never; revoke it)"
    )
    token_revoke = command(token, "revoke", _cmd_token_revoke)
    token_revoke.add_argument("--username", required=True)
    token_revoke.add_argument("--name", required=True)
    token_list = command(token, "list", _cmd_token_list)
    token_list.add_argument("--username", help="only this user's tokens")
    token_list.add_argument("--json", action="store_true", help="print a JSON array")

    audit = cmds.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    audit_list = command(audit, "list", _cmd_audit_list)
    audit_list.add_argument("--patient", help="only events about this patient")
    audit_list.add_argument("--principal", help="only events by this user (or cli:NAME)")
    audit_list.add_argument("--action", help="only this action (login, read, acknowledge...)")
    audit_list.add_argument(
        "--since", type=_since, help="ISO 8601 date or time (UTC unless it has an offset)"
    )
    audit_list.add_argument("--limit", type=int, help="at most this many (the oldest first)")
    audit_list.add_argument("--json", action="store_true", help="print a JSON array")


__all__ = ["ADMIN_PASSWORD_ENV", "register_admin"]
