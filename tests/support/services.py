"""Real services for tests and benchmarks: a throwaway mosquitto broker and a throwaway
PostgreSQL 15 + TimescaleDB cluster, each in its own temporary directory on a free port.

Plain Python (no pytest) so that ``bench/`` can use it as well::

    with MosquittoServer() as broker, TimescaleServer() as db:
        run_something(broker.url, db.dsn)

Both classes are context managers; ``stop()`` / ``start()`` stop and restart the same
service on the same port (and, for PostgreSQL, the same data directory) to simulate an
outage. Anything that prevents a service from starting raises :class:`ServiceUnavailable`
with a message that says what is missing.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import psycopg
import psycopg.errors
from psycopg import sql

__all__ = [
    "MosquittoServer",
    "ServiceUnavailable",
    "TimescaleServer",
    "free_port",
]

SETUP_HINT = "run `make services` (scripts/setup-services.sh)"
LOCALHOST = "127.0.0.1"
DEFAULT_PG_BINDIR = "/usr/lib/postgresql/15/bin"
PG_SYSTEM_USER = "postgres"

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ServiceUnavailable(RuntimeError):  # noqa: N818 - the name is the public contract
    """A real service needed by a test or benchmark is missing or could not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return False
        return True


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else f"(empty log at {path})"


class _Service:
    """Common lifecycle: a temporary directory, start/stop, cleanup at interpreter exit."""

    host = LOCALHOST

    def __init__(self, port: int | None, startup_timeout: float) -> None:
        self._port = port if port is not None else free_port()
        self._startup_timeout = startup_timeout
        self._dir: Path | None = None
        self._closed = False

    @property
    def port(self) -> int:
        return self._port

    @property
    def directory(self) -> Path:
        """The service's temporary directory (config, data, logs); created on first start."""
        if self._dir is None:
            raise RuntimeError(f"{type(self).__name__} has not been started")
        return self._dir

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _make_dir(self, prefix: str) -> Path:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} was closed; create a new one")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=prefix))
            atexit.register(self.close)
        return self._dir

    def close(self) -> None:
        """Stop the service and delete its directory. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            atexit.unregister(self.close)
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------------------
# mosquitto
# --------------------------------------------------------------------------------------


def _find_mosquitto(binary: str | os.PathLike[str] | None) -> str:
    if binary is None:
        binary = os.environ.get("WARDWATCH_MOSQUITTO") or None
    if binary is not None:
        if os.access(binary, os.X_OK):
            return os.fspath(binary)
        raise ServiceUnavailable(f"mosquitto not found at {os.fspath(binary)}: {SETUP_HINT}")
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ServiceUnavailable(f"mosquitto not found: {SETUP_HINT}")
    return found


class MosquittoServer(_Service):
    """A private mosquitto 2 broker on 127.0.0.1, anonymous by default, nothing dropped.

    ``password_file`` (made with ``mosquitto_passwd``) and ``acl_file`` turn on logins and
    topic ACLs; with a password file, anonymous clients are refused unless
    ``allow_anonymous=True`` is given. ``extra_config`` lines are appended to the generated
    config. Give a fixed ``port`` or keep the one chosen at construction: ``stop()`` then
    ``start()`` brings the broker back on the same port (a broker outage, as clients see it).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        extra_config: Iterable[str] = (),
        allow_anonymous: bool | None = None,
        password_file: str | os.PathLike[str] | None = None,
        acl_file: str | os.PathLike[str] | None = None,
        startup_timeout: float = 10.0,
        binary: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(port, startup_timeout)
        self._extra_config = list(extra_config)
        if password_file is not None:
            self._extra_config.append(f"password_file {Path(password_file).resolve()}")
        if acl_file is not None:
            self._extra_config.append(f"acl_file {Path(acl_file).resolve()}")
        self._allow_anonymous = (
            password_file is None if allow_anonymous is None else allow_anonymous
        )
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        out = _tail(self.directory / "mosquitto.out", lines)
        return f"{_tail(self.log_path, lines)}\n--- stdout/stderr ---\n{out}"

    def config_text(self) -> str:
        directory = self.directory
        lines = [
            "# generated by tests/support/services.py",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self._allow_anonymous else 'false'}",
            "persistence false",
            # mosquitto's defaults silently drop QoS 1/2 messages once 1000 are queued
            # for one client (max_queued_messages) and QoS 0 ones once 1000 packets wait
            # to be written to a slow subscriber; 0 means no limit for both.
            "max_queued_messages 0",
            "max_queued_bytes 0",
            # In-flight window (not a drop limit): 0 = no broker-side cap, so MQTT v5
            # clients get the Receive Maximum they ask for and v3 clients are not throttled.
            "max_inflight_messages 0",
            "max_inflight_bytes 0",
            "set_tcp_nodelay true",
            f"log_dest file {directory / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto switches to the `mosquitto` user (or `nobody`),
            # which cannot write the log in our root-owned temporary directory.
            lines.insert(1, f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        lines.extend(self._extra_config)
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start the broker (again) on its port and wait until it accepts connections."""
        if self.running:
            return
        binary = _find_mosquitto(self._binary)
        directory = self._make_dir("wardwatch-mosquitto-")
        self.config_path.write_text(self.config_text())
        if not _port_is_bindable(self.port):
            raise ServiceUnavailable(
                f"mosquitto: port {self.host}:{self.port} is already in use by another process"
            )
        with (directory / "mosquitto.out").open("ab") as out:
            self._proc = subprocess.Popen(
                [binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=directory,
                start_new_session=True,  # a Ctrl-C in the terminal must not kill it first
            )
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise ServiceUnavailable(
                    f"mosquitto exited with code {code} while starting on port {self.port}; "
                    f"log tail:\n{self.log_tail()}"
                )
            if _accepts_tcp(self.port) and self._proc.poll() is None:
                return
            time.sleep(0.02)
        self.stop()
        raise ServiceUnavailable(
            f"mosquitto did not accept connections on {self.host}:{self.port} within "
            f"{self._startup_timeout:g}s; log tail:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s). The port stays reserved
        for a later ``start()``; connected clients see the connection drop."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --------------------------------------------------------------------------------------
# PostgreSQL + TimescaleDB
# --------------------------------------------------------------------------------------


def _quote_conf(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class TimescaleServer(_Service):
    """A private PostgreSQL 15 cluster with TimescaleDB preloaded, on 127.0.0.1.

    The first ``start()`` runs initdb (as the ``postgres`` system user when we are root;
    initdb refuses to run as root), starts the server and creates ``database`` with the
    ``timescaledb`` extension. ``stop()`` / ``start()`` restart the same cluster on the
    same port and data directory. ``create_database()`` gives a fresh, isolated database
    with the extension (cloned from a template, so it is cheap).
    """

    TEMPLATE = "wardwatch_ts_template"

    def __init__(
        self,
        *,
        port: int | None = None,
        database: str = "wardwatch",
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        bindir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(port, startup_timeout)
        self._database = _check_db_name(database)
        self._settings = dict(settings or {})
        self._bindir = Path(bindir or os.environ.get("WARDWATCH_PG_BINDIR", DEFAULT_PG_BINDIR))
        self._initialized = False
        self._running = False

    # -- addresses ---------------------------------------------------------------------

    @property
    def database(self) -> str:
        return self._database

    @property
    def dsn(self) -> str:
        """DSN of the ``wardwatch`` database (timescaledb extension created)."""
        return self.dsn_for(self._database)

    @property
    def admin_dsn(self) -> str:
        """DSN of the ``postgres`` maintenance database (superuser ``postgres``)."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def running(self) -> bool:
        return self._running

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the cluster (initdb and create the database the first time) and wait
        until it accepts connections on its port."""
        if self._running:
            return
        if not self._initialized:
            self._check_installation()
            self._initdb()
        elif not _port_is_bindable(self.port):
            raise ServiceUnavailable(
                f"PostgreSQL: port {self.host}:{self.port} is already in use by another process"
            )
        self._pg_ctl_start()
        self._running = True
        self._wait_for_connections()
        if not self._initialized:
            self._create_template()
            self.create_database(self._database)
            self._initialized = True

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the cluster; ``immediate`` is a crash (recovery on next start)."""
        if not self._running:
            return
        self._running = False
        self._run(
            [str(self._bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w"],
            check=False,
        )

    def close(self) -> None:
        if self._running:
            self.stop("immediate")
        super().close()

    # -- databases ---------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name`` with the timescaledb extension; return its DSN."""
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(_check_db_name(name)), sql.Identifier(self.TEMPLATE)
        )
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for attempt in range(3):
                try:
                    conn.execute(query)
                except psycopg.errors.ObjectInUse:
                    # "source database is being accessed by other users": a TimescaleDB
                    # worker slipped into the template just before it was closed.
                    if attempt == 2:
                        raise
                    self._disconnect_template(conn)
                else:
                    break
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` (disconnecting its sessions); no error if missing."""
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(_check_db_name(name))
        )
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(query)

    # -- internals ---------------------------------------------------------------------

    def _system_user(self) -> pwd.struct_passwd | None:
        """The user the cluster runs as: ``postgres`` when we are root, else ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise ServiceUnavailable(
                f"running as root needs the `{PG_SYSTEM_USER}` system user (initdb refuses "
                f"to run as root), it does not exist: {SETUP_HINT}"
            ) from None

    def _run(self, cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        user = self._system_user()
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env["HOME"] = str(self.directory)
            env["USER"] = env["LOGNAME"] = user.pw_name
        result = subprocess.run(
            cmd,
            cwd=self.directory,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self._startup_timeout + 30,
            check=False,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise ServiceUnavailable(
                f"`{' '.join(cmd)}` failed with code {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def _check_installation(self) -> None:
        missing = [
            name
            for name in ("initdb", "pg_ctl", "postgres")
            if not os.access(self._bindir / name, os.X_OK)
        ]
        if missing:
            raise ServiceUnavailable(
                f"PostgreSQL 15 not found ({', '.join(missing)} missing in {self._bindir}): "
                f"{SETUP_HINT}"
            )
        pkglibdir = self._bindir.parent / "lib"
        pg_config = self._bindir / "pg_config"
        if os.access(pg_config, os.X_OK):
            out = subprocess.run(
                [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                pkglibdir = Path(out.stdout.strip())
        if not (pkglibdir / "timescaledb.so").exists():
            raise ServiceUnavailable(
                f"timescaledb extension not installed in PostgreSQL 15 "
                f"(no timescaledb.so in {pkglibdir}): {SETUP_HINT}"
            )

    def _initdb(self) -> None:
        directory = self._make_dir("wardwatch-pg-")
        (directory / "sock").mkdir(exist_ok=True)
        user = self._system_user()
        if user is not None:
            for path in (directory, directory / "sock"):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(directory / "sock"),
            "shared_preload_libraries": "timescaledb",
            "timescaledb.telemetry_level": "off",
            "max_connections": "100",
            "logging_collector": "off",
            **self._settings,
        }
        conf = "".join(f"{key} = {_quote_conf(value)}\n" for key, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# generated by tests/support/services.py\n" + conf)

    def _pg_ctl_start(self) -> None:
        result = self._run(
            [
                str(self._bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                str(int(self._startup_timeout)),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
            ],
            check=False,
        )
        if result.returncode == 0:
            return
        # pg_ctl may leave a half-started postmaster behind after a timeout.
        self._run(
            [str(self._bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate"],
            check=False,
        )
        log = self.log_tail()
        if "timescaledb" in log and "could not access file" in log:
            raise ServiceUnavailable(
                f"timescaledb extension not installed in PostgreSQL 15 ({self._bindir}): "
                f"{SETUP_HINT}\n{log}"
            )
        raise ServiceUnavailable(
            f"PostgreSQL failed to start on {self.host}:{self.port} "
            f"(pg_ctl exit {result.returncode}): {result.stdout}{result.stderr}\n"
            f"log tail:\n{log}"
        )

    def _wait_for_connections(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while True:
            try:
                with psycopg.connect(self.admin_dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        f"PostgreSQL on {self.host}:{self.port} did not accept connections "
                        f"within {self._startup_timeout:g}s: {exc}\nlog tail:\n{self.log_tail()}"
                    ) from exc
                time.sleep(0.05)
            else:
                return

    def _create_template(self) -> None:
        """A template database holding the extension, so new databases are a cheap copy.

        It refuses connections afterwards: otherwise TimescaleDB's background scheduler
        stays connected to it and CREATE DATABASE ... TEMPLATE fails ("being accessed by
        other users").
        """
        template = sql.Identifier(self.TEMPLATE)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(template))
        try:
            with psycopg.connect(self.dsn_for(self.TEMPLATE), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as exc:
            raise ServiceUnavailable(
                f"timescaledb extension not installed in PostgreSQL 15 ({self._bindir}): "
                f"CREATE EXTENSION failed: {exc}. {SETUP_HINT}"
            ) from exc
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    template
                )
            )
            self._disconnect_template(conn)

    def _disconnect_template(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (self.TEMPLATE,),
        )


def _check_db_name(name: str) -> str:
    if not _DB_NAME.fullmatch(name):
        raise ValueError(
            f"database name {name!r} must match {_DB_NAME.pattern} (lower-case identifier)"
        )
    return name
