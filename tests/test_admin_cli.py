"""``wardwatch admin``: run through the real entry point on real stores."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from alerting.access import AccessService
from alerting.errors import AuthenticationError
from ingest.stores import open_store
from wardwatch.cli import main

ADMIN_PASSWORD = "admin password for tests"
NURSE_PASSWORD = "nurse password for tests"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["admin", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    return orjson.loads(out)


def _setup(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    secret = tmp_path / "admin-password"
    secret.write_text(ADMIN_PASSWORD + "\n")
    for argv in (
        ("team", "add", "--store", store, "--id", "ward-a", "--name", "Ward A"),
        ("team", "add", "--store", store, "--id", "ward-b", "--name", "Ward B",
         "--notify-url", "json://127.0.0.1:9/a", "--notify-url", "json://127.0.0.1:9/b"),
        ("create-admin", "--store", store, "--username", "root", "--password-file", str(secret)),
    ):  # fmt: skip
        code, _, err = _run(capsys, *argv)
        assert code == 0, err


def test_the_first_admin_users_teams_and_patients(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:{tmp_path / 'admin.db'}"
    _setup(capsys, store, tmp_path)

    # A second admin needs --force.
    monkeypatch.setenv("WARDWATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    code, _, err = _run(capsys, "create-admin", "--store", store, "--username", "root2")
    assert code == 2
    assert "a system admin exists already (root)" in err
    code, out, err = _run(
        capsys, "create-admin", "--store", store, "--username", "root2", "--force"
    )
    assert (code, out) == (0, "system admin root2 created\n"), err

    monkeypatch.setenv("NURSE_PW", NURSE_PASSWORD)
    code, out, err = _run(
        capsys, "user", "add", "--store", store, "--username", "ann", "--display-name",
        "Ann Example", "--role", "nurse", "--team", "ward-a", "--password-env", "NURSE_PW",
    )  # fmt: skip
    assert (code, out) == (0, "user ann (nurse) saved; can log in\n"), err
    code, out, err = _run(
        capsys, "user", "add", "--store", store, "--username", "ehr", "--display-name",
        "EHR pull", "--role", "service",
    )  # fmt: skip
    assert (code, out) == (0, "user ehr (service) saved; no password (API tokens only)\n"), err

    users = _json(capsys, "user", "list", "--store", store)
    assert [(u["username"], u["role"], u["teams"], u["has_password"]) for u in users] == [
        ("ann", "nurse", ["ward-a"], True),
        ("ehr", "service", [], False),
        ("root", "system-admin", [], True),
        ("root2", "system-admin", [], True),
    ]
    assert all("password_hash" not in u for u in users)

    code, out, err = _run(
        capsys, "patient", "add", "--store", store, "--id", "p-1", "--display-name",
        "Patient One", "--team", "ward-a",
    )  # fmt: skip
    assert (code, out) == (0, "patient p-1 enrolled\n"), err
    code, _, err = _run(
        capsys, "patient", "add", "--store", store, "--id", "p-2", "--display-name",
        "Patient Two", "--team", "ward-z",
    )  # fmt: skip
    assert code == 2
    assert "no care team 'ward-z'" in err

    opened = open_store(store)
    try:
        team = opened.get_care_team("ward-b")
        assert team is not None
        assert team.notify_urls == ("json://127.0.0.1:9/a", "json://127.0.0.1:9/b")
        patient = opened.get_patient("p-1")
        assert patient is not None
        assert patient.care_team == "ward-a"
        assert opened.get_patient("p-2") is None
        service = AccessService(opened)
        token, _ = service.login("ann", NURSE_PASSWORD, None)
        assert service.authenticate(token).teams == frozenset({"ward-a"})
        token, _ = service.login("root", ADMIN_PASSWORD, None)  # the file's newline is not in it
        assert service.authenticate(token).role == "system-admin"
    finally:
        opened.close()


def test_passwords_that_cannot_be_used_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:{tmp_path / 'admin.db'}"
    monkeypatch.delenv("WARDWATCH_ADMIN_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: no prompt
    code, _, err = _run(capsys, "create-admin", "--store", store, "--username", "root")
    assert code == 2
    assert "no password given" in err
    monkeypatch.setenv("WARDWATCH_ADMIN_PASSWORD", "short")
    code, _, err = _run(capsys, "create-admin", "--store", store, "--username", "root")
    assert code == 2
    assert "at least 12 characters" in err
    code, _, err = _run(
        capsys, "user", "add", "--store", store, "--username", "ann", "--display-name", "Ann",
        "--role", "nurse", "--team", "ward-a", "--password-env", "NOT_SET_ANYWHERE",
    )  # fmt: skip
    assert code == 2
    assert "NOT_SET_ANYWHERE is not set" in err
    code, _, err = _run(
        capsys, "user", "add", "--store", store, "--username", "ann", "--display-name", "Ann",
        "--role", "nurse", "--password-file", str(tmp_path / "missing"),
    )  # fmt: skip
    assert code == 2
    assert "cannot read the password file" in err
    assert _json(capsys, "user", "list", "--store", store) == []
    with pytest.raises(SystemExit) as caught:
        main(["admin", "user", "add", "--store", store, "--username", "x", "--display-name",
              "X", "--role", "matron"])  # fmt: skip
    assert caught.value.code == 2


def test_api_tokens_are_printed_once_and_revocable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = f"sqlite:{tmp_path / 'admin.db'}"
    _setup(capsys, store, tmp_path)
    code, _, err = _run(
        capsys, "user", "add", "--store", store, "--username", "ehr", "--display-name",
        "EHR pull", "--role", "service",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = _run(
        capsys, "token", "create", "--store", store, "--username", "ehr", "--name", "nightly",
        "--days", "30",
    )  # fmt: skip
    assert code == 0, err
    token = out.strip()
    assert token.startswith("wwa_")
    assert "shown once" in err
    [listed] = _json(capsys, "token", "list", "--store", store)
    assert (listed["username"], listed["name"], listed["revoked_at"]) == ("ehr", "nightly", None)
    assert token not in orjson.dumps(listed).decode()
    code, _, err = _run(
        capsys, "token", "create", "--store", store, "--username", "ehr", "--name", "nightly"
    )
    assert code == 2
    assert "already has a live API token" in err

    opened = open_store(store)
    try:
        principal = AccessService(opened).authenticate(token)
        assert (principal.username, principal.via) == ("ehr", "api")
        code, out, err = _run(
            capsys, "token", "revoke", "--store", store, "--username", "ehr", "--name", "nightly"
        )
        assert (code, out) == (0, "API token nightly of ehr revoked\n"), err
        with pytest.raises(AuthenticationError, match="revoked"):
            AccessService(opened).authenticate(token)
    finally:
        opened.close()
    code, _, err = _run(
        capsys, "token", "revoke", "--store", store, "--username", "ehr", "--name", "nightly"
    )
    assert code == 2
    assert "no live API token named 'nightly'" in err


def test_the_audit_trail_lists_what_was_done(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = f"sqlite:{tmp_path / 'admin.db'}"
    _setup(capsys, store, tmp_path)
    code, _, err = _run(
        capsys, "patient", "add", "--store", store, "--id", "p-1", "--display-name", "P One",
        "--team", "ward-a",
    )  # fmt: skip
    assert code == 0, err
    events = _json(capsys, "audit", "list", "--store", store)
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("create-team", "success"),
        ("create-team", "success"),
        ("create-user", "success"),
        ("create-patient", "success"),
    ]
    assert all(e["principal"].startswith("cli:") for e in events)
    assert ADMIN_PASSWORD not in orjson.dumps(events).decode()
    [created] = _json(capsys, "audit", "list", "--store", store, "--patient", "p-1")
    assert created["resource"] == "Patient/p-1"
    # Reading the trail is itself recorded.
    reads = _json(capsys, "audit", "list", "--store", store, "--action", "read-audit")
    assert [e["detail"] for e in reads] == ["4 entries", "1 entries"]
    assert _json(capsys, "audit", "list", "--store", store, "--since", "2999-01-01") == []
    code, out, _ = _run(capsys, "audit", "list", "--store", store, "--limit", "1")
    assert code == 0
    assert "create-team" in out
    assert len(out.splitlines()) == 1


@pytest.mark.postgres
def test_admin_commands_on_timescaledb(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_dsn: str
) -> None:
    _setup(capsys, pg_dsn, tmp_path)
    code, out, err = _run(
        capsys, "user", "add", "--store", pg_dsn, "--username", "ehr", "--display-name",
        "EHR pull", "--role", "service",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = _run(
        capsys, "token", "create", "--store", pg_dsn, "--username", "ehr", "--name", "pull"
    )
    assert code == 0, err
    users = _json(capsys, "user", "list", "--store", pg_dsn)
    assert [u["username"] for u in users] == ["ehr", "root"]
    opened = open_store(pg_dsn)
    try:
        assert AccessService(opened).authenticate(out.strip()).role == "service"
    finally:
        opened.close()
    actions = [e["action"] for e in _json(capsys, "audit", "list", "--store", pg_dsn)]
    assert actions == ["create-team", "create-team", "create-user", "create-user", "create-token"]
