"""Private PostgreSQL cluster (wal_level=logical) under <root>/postgres.

Uses the distribution's server binaries but its own data directory, port and
socket, so it never touches a system cluster. initdb/postgres refuse to run as
root, so when we are root every server command runs as the `postgres` OS user
(via runuser) and <root>/postgres is owned by it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

from .process import (
    Log,
    StackError,
    apt_install,
    can_apt,
    is_root,
    log_tail,
    pid_alive,
    port_open,
    read_pid,
    run,
    wait_for,
)
from .settings import StackSettings

OS_USER = "postgres"
SUPERUSER = "postgres"
ENV = {**os.environ, "LC_ALL": "C"}


class _Paths:
    def __init__(self, settings: StackSettings):
        self.home = settings.root / "postgres"
        self.data = self.home / "data"
        self.run = self.home / "run"
        self.logs = self.home / "logs"
        self.log = self.logs / "postgres.log"
        self.pid = self.data / "postmaster.pid"


def _find_bin() -> Path | None:
    """Newest /usr/lib/postgresql/<major>/bin (Debian layout), else pg_ctl on PATH."""
    dirs = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()]
    dirs.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0])
    if dirs:
        return dirs[-1]
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _require_bin(log: Log) -> Path:
    found = _find_bin()
    if found is None and can_apt():
        apt_install(["postgresql"], log=log)
        found = _find_bin()
    if found is None:
        raise StackError(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them first, e.g. "
            "`sudo apt-get install -y postgresql` (Debian/Ubuntu)."
        )
    return found


def _as_owner(cmd: list[str | os.PathLike[str]]) -> list[str]:
    """Prefix with runuser when we are root (PostgreSQL refuses to run as root)."""
    args = [str(c) for c in cmd]
    return ["runuser", "-u", OS_USER, "--", *args] if is_root() else args


def _ensure_os_user(log: Log) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        log(f"postgres: creating system user {OS_USER}")
        run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            what="creating the postgres OS user",
        )
        entry = pwd.getpwnam(OS_USER)
    return entry.pw_uid, entry.pw_gid


def _prepare_dirs(paths: _Paths, log: Log) -> None:
    for d in (paths.home, paths.run, paths.logs):
        d.mkdir(parents=True, exist_ok=True)
    paths.run.chmod(0o700)
    if not is_root():
        return
    uid, gid = _ensure_os_user(log)
    for d in (paths.home, paths.run, paths.logs):
        os.chown(d, uid, gid)
    if paths.log.exists():
        os.chown(paths.log, uid, gid)
    probe = subprocess.run(_as_owner(["test", "-w", paths.home]), capture_output=True)
    if probe.returncode != 0:
        raise StackError(
            f"postgres: the `{OS_USER}` OS user cannot write {paths.home}; a parent folder is not "
            "traversable (e.g. under /root). Set LIBERATION_STACK_DIR to a folder like /var/tmp/liberation-stack."
        )


def _initdb_once(bin_dir: Path, paths: _Paths, log: Log) -> None:
    version_file = paths.data / "PG_VERSION"
    major = bin_dir.parent.name
    if version_file.exists():
        have = version_file.read_text().strip()
        if re.fullmatch(r"\d+", major) and have != major:
            raise StackError(
                f"postgres: {paths.data} was created by PostgreSQL {have} but the binaries are {major}; "
                "remove that folder (data is lost) or install the matching server."
            )
        return
    if paths.data.exists():  # a half-done earlier initdb
        shutil.rmtree(paths.data)
    log(f"postgres: initdb in {paths.data}")
    run(
        _as_owner(
            [
                bin_dir / "initdb",
                "-D",
                paths.data,
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ]
        ),
        what="initdb",
        cwd=paths.home,
        env=ENV,
    )
    with open(paths.data / "postgresql.conf", "a") as fh:
        fh.write("\n# Stack settings (rewritten on every `up`).\ninclude 'liberation.conf'\n")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _write_config(settings: StackSettings, paths: _Paths) -> None:
    (paths.data / "liberation.conf").write_text(
        f"""listen_addresses = {_quote(settings.pg_host)}
port = {settings.pg_port}
unix_socket_directories = {_quote(str(paths.run))}
unix_socket_permissions = 0700
max_connections = 200
shared_buffers = 256MB
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
# A throwaway dev cluster: trade crash safety for speed. synchronous_commit stays on:
# logical decoding only sees flushed WAL, and with fsync off a flush costs little.
fsync = off
synchronous_commit = on
full_page_writes = off
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
"""
    )
    # Socket: trust, but the socket folder is 0700 (root/postgres only). TCP: password.
    (paths.data / "pg_hba.conf").write_text(
        f"""# Written by liberation_assets.stack on every `up`.
local   all          all                  trust
local   replication  all                  trust
host    all          all   {settings.pg_host}/32  scram-sha-256
host    replication  all   {settings.pg_host}/32  scram-sha-256
"""
    )
    if is_root():
        uid, gid = pwd.getpwnam(OS_USER)[2:4]
        for name in ("liberation.conf", "pg_hba.conf", "postgresql.conf"):
            os.chown(paths.data / name, uid, gid)


def running(settings: StackSettings) -> bool:
    """The postmaster of our data directory is alive."""
    paths = _Paths(settings)
    return pid_alive(read_pid(paths.pid), str(paths.data))


def healthy(settings: StackSettings) -> bool:
    """The stack user can log in over TCP."""
    if not port_open(settings.pg_host, settings.pg_port):
        return False
    import psycopg

    try:
        with psycopg.connect(
            host=settings.pg_host,
            port=settings.pg_port,
            user=settings.pg_user,
            password=settings.pg_password,
            dbname="postgres",
            connect_timeout=3,
        ) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _bootstrap(settings: StackSettings, paths: _Paths) -> None:
    """Create (or reset) the stack role and its database, over the private socket."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=str(paths.run), port=settings.pg_port, user=SUPERUSER, dbname="postgres", autocommit=True
    ) as conn:
        role = sql.Identifier(settings.pg_user)
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [settings.pg_user]).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {}").format(role))
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH SUPERUSER REPLICATION LOGIN PASSWORD {}").format(
                role, sql.Literal(settings.pg_password)
            )
        )
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [settings.pg_user]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))


def up(settings: StackSettings, log: Log) -> None:
    """initdb once, (re)write config, start with pg_ctl -w, create role and database."""
    paths = _Paths(settings)
    if running(settings) and healthy(settings):
        log(f"postgres: already up on {settings.pg_host}:{settings.pg_port}")
        return
    bin_dir = _require_bin(log)
    if len(str(paths.run / f".s.PGSQL.{settings.pg_port}")) > 100:
        raise StackError(f"postgres: socket path under {paths.run} is too long; use a shorter LIBERATION_STACK_DIR")
    _prepare_dirs(paths, log)
    _initdb_once(bin_dir, paths, log)
    _write_config(settings, paths)
    if not running(settings):
        if port_open(settings.pg_host, settings.pg_port):
            raise StackError(
                f"postgres: port {settings.pg_port} is already in use by another process; set LIBERATION_PG_PORT"
            )
        log(f"postgres: starting on {settings.pg_host}:{settings.pg_port} (log {paths.log})")
        try:
            run(
                _as_owner([bin_dir / "pg_ctl", "-D", paths.data, "-l", paths.log, "-w", "-t", "60", "start"]),
                what="pg_ctl start",
                cwd=paths.home,
                env=ENV,
            )
        except StackError as exc:
            raise StackError(f"{exc}{log_tail(paths.log)}") from None
    else:
        # Running but the stack login failed: pick up pg_hba/config changes first.
        run(_as_owner([bin_dir / "pg_ctl", "-D", paths.data, "reload"]), what="pg_ctl reload", cwd=paths.home, env=ENV)
    _bootstrap(settings, paths)
    wait_for(
        lambda: healthy(settings), timeout=30, what=f"PostgreSQL login on port {settings.pg_port}", logs=[paths.log]
    )


def down(settings: StackSettings) -> bool:
    """pg_ctl stop -m fast; True if it was running."""
    paths = _Paths(settings)
    if not running(settings):
        return False
    bin_dir = _find_bin()
    if bin_dir is None:
        raise StackError("postgres: pg_ctl not found, cannot stop the cluster")
    run(
        _as_owner([bin_dir / "pg_ctl", "-D", paths.data, "-m", "fast", "-w", "-t", "60", "stop"]),
        what="pg_ctl stop",
        cwd=paths.home,
        env=ENV,
    )
    return True


def kill(settings: StackSettings) -> bool:
    """Stop as a crash would (``pg_ctl stop -m immediate``: no checkpoint, recovery at the next start); ``up`` starts it."""
    paths = _Paths(settings)
    bin_dir = _find_bin()
    if not running(settings) or bin_dir is None:
        return False
    run(
        _as_owner([bin_dir / "pg_ctl", "-D", paths.data, "-m", "immediate", "-w", "-t", "60", "stop"]),
        what="pg_ctl stop",
        cwd=paths.home,
        env=ENV,
    )
    return True
