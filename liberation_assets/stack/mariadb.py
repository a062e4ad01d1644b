"""Private MariaDB instance with a ROW binlog under <root>/mariadb.

Runs the distribution's mariadbd with --no-defaults, so the system
/etc/mysql config and any system instance are ignored. ROW/FULL binlog with
full row metadata is what change-data-capture readers need.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from .process import (
    Log,
    StackError,
    apt_install,
    can_apt,
    is_root,
    kill_pid,
    pid_alive,
    port_open,
    read_pid,
    run,
    start_detached,
    stop_pid,
    wait_for,
)
from .settings import StackSettings

SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/usr/libexec"])


class _Paths:
    def __init__(self, settings: StackSettings):
        self.home = settings.root / "mariadb"
        self.data = self.home / "data"
        self.binlog = self.home / "binlog"
        self.run = self.home / "run"
        self.tmp = self.home / "tmp"
        self.logs = self.home / "logs"
        self.error_log = self.logs / "error.log"
        self.out = self.logs / "mariadbd.out"
        self.socket = self.run / "mysqld.sock"
        self.pid = self.home / "mariadbd.pid"


def _which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH)


def _require_bins(log: Log) -> dict[str, str]:
    names = ("mariadbd", "mariadb-install-db", "mariadb", "mariadb-admin")
    found = {n: _which(n) for n in names}
    if not all(found.values()) and can_apt():
        apt_install(["mariadb-server", "mariadb-client"], log=log)
        found = {n: _which(n) for n in names}
    missing = [n for n, p in found.items() if not p]
    if missing:
        raise StackError(
            f"MariaDB programs not found: {', '.join(missing)}. Install them first, e.g. "
            "`sudo apt-get install -y mariadb-server mariadb-client` (Debian/Ubuntu)."
        )
    return found  # type: ignore[return-value]


def _os_user() -> str:
    """Whoever runs the stack; install-db grants this OS user socket login as a MariaDB admin."""
    return pwd.getpwuid(os.geteuid()).pw_name


def _install_once(bins: dict[str, str], paths: _Paths, log: Log) -> None:
    if (paths.data / "mysql").is_dir():
        return
    if paths.data.exists():  # a half-done earlier install
        shutil.rmtree(paths.data)
    log(f"mariadb: installing system tables in {paths.data}")
    user = ["--user=root"] if is_root() else []
    run(
        [
            bins["mariadb-install-db"],
            "--no-defaults",
            f"--datadir={paths.data}",
            *user,
            "--auth-root-authentication-method=socket",
            f"--auth-root-socket-user={_os_user()}",
            "--skip-test-db",
            "--skip-name-resolve",
        ],
        what="mariadb-install-db",
        cwd=paths.home,
    )


def _marker(settings: StackSettings) -> str:
    return f"--datadir={_Paths(settings).data}"


def running(settings: StackSettings) -> bool:
    """Our mariadbd process is alive."""
    return pid_alive(read_pid(_Paths(settings).pid), _marker(settings))


def healthy(settings: StackSettings) -> bool:
    """The stack user can log in over TCP (no bare port probe: mariadbd logs those as aborted)."""
    import pymysql

    try:
        conn = pymysql.connect(
            host=settings.mysql_host,
            port=settings.mysql_port,
            user=settings.mysql_user,
            password=settings.mysql_password,
            connect_timeout=3,
        )
    except pymysql.MySQLError:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    finally:
        conn.close()


def _lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _bootstrap(settings: StackSettings, bins: dict[str, str], paths: _Paths) -> None:
    """Create (or reset) the stack user and database via the socket as the admin OS user."""
    user, pw = _lit(settings.mysql_user), _lit(settings.mysql_password)
    statements = [f"CREATE DATABASE IF NOT EXISTS `{settings.mysql_user.replace('`', '``')}`"]
    for host in ("%", "127.0.0.1", "localhost"):
        account = f"{user}@{_lit(host)}"
        statements += [
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {pw}",
            f"ALTER USER {account} IDENTIFIED BY {pw}",
            f"GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION",
        ]
    run(
        [
            bins["mariadb"],
            "--no-defaults",
            f"--socket={paths.socket}",
            "-u",
            _os_user(),
            "--batch",
            "-e",
            ";\n".join(statements) + ";",
        ],
        what="creating the MariaDB stack user",
    )
    _load_time_zones(bins, paths)


ZONEINFO = Path("/usr/share/zoneinfo")


def _load_time_zones(bins: dict[str, str], paths: _Paths) -> None:
    """Load the time-zone tables once, so the server's own CONVERT_TZ knows named zones (``verify`` uses it)."""
    tzinfo_to_sql = shutil.which("mariadb-tzinfo-to-sql") or shutil.which("mysql_tzinfo_to_sql")
    client = [bins["mariadb"], "--no-defaults", f"--socket={paths.socket}", "-u", _os_user(), "--batch"]
    if tzinfo_to_sql is None or not ZONEINFO.is_dir():
        return
    loaded = subprocess.run(
        [*client, "-N", "-e", "SELECT COUNT(*) FROM mysql.time_zone_name"], capture_output=True, text=True
    )
    if loaded.returncode != 0 or loaded.stdout.strip() not in ("0", ""):
        return
    sql = subprocess.run([tzinfo_to_sql, str(ZONEINFO)], capture_output=True)
    if sql.returncode == 0:
        subprocess.run([*client, "mysql"], input=sql.stdout, capture_output=True)


def up(settings: StackSettings, log: Log) -> None:
    """Install system tables once, start mariadbd, create user and database."""
    paths = _Paths(settings)
    if running(settings) and healthy(settings):
        log(f"mariadb: already up on {settings.mysql_host}:{settings.mysql_port}")
        return
    bins = _require_bins(log)
    if len(str(paths.socket)) > 100:
        raise StackError(f"mariadb: socket path {paths.socket} is too long; use a shorter LIBERATION_STACK_DIR")
    for d in (paths.home, paths.binlog, paths.run, paths.tmp, paths.logs):
        d.mkdir(parents=True, exist_ok=True)
    paths.run.chmod(0o700)
    _install_once(bins, paths, log)
    if not running(settings):
        if port_open(settings.mysql_host, settings.mysql_port):
            raise StackError(
                f"mariadb: port {settings.mysql_port} is already in use by another process; set LIBERATION_MYSQL_PORT"
            )
        log(f"mariadb: starting on {settings.mysql_host}:{settings.mysql_port} (log {paths.error_log})")
        user = ["--user=root"] if is_root() else []
        start_detached(
            [
                bins["mariadbd"],
                "--no-defaults",
                f"--datadir={paths.data}",
                f"--socket={paths.socket}",
                f"--port={settings.mysql_port}",
                f"--bind-address={settings.mysql_host}",
                *user,
                f"--pid-file={paths.run / 'mariadbd.pid'}",
                f"--log-error={paths.error_log}",
                f"--tmpdir={paths.tmp}",
                f"--log-bin={paths.binlog / 'mariadb-bin'}",
                f"--log-bin-index={paths.binlog / 'mariadb-bin.index'}",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--server-id=1",
                "--binlog-expire-logs-seconds=604800",
                "--skip-name-resolve",
                "--max-connections=200",
                "--innodb-buffer-pool-size=256M",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
            ],
            log_file=paths.out,
            pid_file=paths.pid,
            cwd=paths.home,
        )
    ping = [
        bins["mariadb-admin"],
        "--no-defaults",
        f"--socket={paths.socket}",
        "-u",
        _os_user(),
        "--connect-timeout=2",
        "ping",
    ]
    wait_for(
        lambda: paths.socket.exists() and _ok(ping),
        timeout=90,
        what="mariadbd to accept connections",
        alive=lambda: running(settings),
        logs=[paths.out, paths.error_log],
    )
    _bootstrap(settings, bins, paths)
    wait_for(
        lambda: healthy(settings),
        timeout=30,
        what=f"MariaDB login on port {settings.mysql_port}",
        logs=[paths.error_log],
    )


def _ok(cmd: list[str]) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


def down(settings: StackSettings) -> bool:
    """SIGTERM makes mariadbd shut down cleanly; SIGKILL after a minute."""
    return stop_pid(_Paths(settings).pid, _marker(settings), timeout=60)


def kill(settings: StackSettings) -> bool:
    """kill -9 of the server, for tests of what survives a crash; ``up`` starts it again."""
    return kill_pid(_Paths(settings).pid, _marker(settings))
