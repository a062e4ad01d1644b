"""Plain-process helpers shared by the stack services.

There is no Docker here, so every service is an ordinary OS process that must
outlive the Python process that started it. Helpers here detach processes,
track them by pid file, wait for readiness and stop them politely.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

Log = Callable[[str], None]


class StackError(RuntimeError):
    """A stack service could not be prepared, started or stopped."""


# Runs the service in a new session from a short-lived intermediate Python, so
# the service is re-parented away from us: no zombie or "still running"
# ResourceWarning in the caller, and a Ctrl-C in the caller's terminal does not
# reach the service.
_DETACH = """
import subprocess, sys, os
log = open(sys.argv[1], "ab", buffering=0)
p = subprocess.Popen(sys.argv[3:], cwd=sys.argv[2], stdin=subprocess.DEVNULL,
                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
print(p.pid, flush=True)
os._exit(0)
"""


def start_detached(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    log_file: Path,
    pid_file: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> int:
    """Start `cmd` detached with stdout/stderr appended to `log_file`; record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", _DETACH, str(log_file), str(cwd), *map(str, cmd)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(out.stdout.strip())
    pid_file.write_text(f"{pid}\n")
    return pid


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` (first line), or None."""
    try:
        return int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def pid_alive(pid: int | None, marker: str) -> bool:
    """True if `pid` runs (not a zombie) and its command line contains `marker`.

    The marker (a path under the stack root) guards against pid reuse, so we
    never signal a process we did not start.
    """
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def stop_pid(pid_file: Path, marker: str, *, timeout: float = 60.0) -> bool:
    """SIGTERM the recorded process, SIGKILL it after `timeout`; True if one was running."""
    pid = read_pid(pid_file)
    if not pid_alive(pid, marker):
        pid_file.unlink(missing_ok=True)
        return False
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid, marker), timeout=10, what=f"pid {pid} to die")
    pid_file.unlink(missing_ok=True)
    return True


def kill_pid(pid_file: Path, marker: str) -> bool:
    """SIGKILL the recorded process, as a crash would, and wait until it is gone; True if one was running."""
    pid = read_pid(pid_file)
    if not pid_alive(pid, marker):
        return False
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid, marker), timeout=30, what=f"pid {pid} to die")
    return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    alive: Callable[[], bool] | None = None,
    logs: Sequence[Path] = (),
) -> None:
    """Poll `check` until true; fail fast if `alive` says the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(f"process died while waiting for {what}{log_tail(*logs)}")
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}{log_tail(*logs)}")
        time.sleep(interval)


def log_tail(*log_files: Path, lines: int = 30) -> str:
    """The last lines of the existing log files, formatted for an error message."""
    text = ""
    for log_file in log_files:
        if log_file.exists():
            tail = log_file.read_text(errors="replace").splitlines()[-lines:]
            text += f"\n--- last lines of {log_file} ---\n" + "\n".join(tail)
    return text


def run(cmd: Sequence[str | os.PathLike[str]], *, what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; raise StackError with its output on failure."""
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise StackError(
            f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}"
        )
    return proc


def is_root() -> bool:
    return os.geteuid() == 0


def can_apt() -> bool:
    """True if we may install missing system packages ourselves (root on Debian)."""
    return is_root() and Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def apt_install(packages: Sequence[str], *, log: Log) -> None:
    """apt-get install, waiting for a concurrent apt/dpkg run to release its lock."""
    log(f"stack: apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=900"]
    try:
        run(["apt-get", *lock, "install", "-y", "--no-install-recommends", *packages], what="apt-get install", env=env)
    except StackError:
        run(["apt-get", *lock, "update"], what="apt-get update", env=env)
        run(["apt-get", *lock, "install", "-y", "--no-install-recommends", *packages], what="apt-get install", env=env)


def require_tool(name: str, *, packages: Sequence[str], log: Log, find: Callable[[], str | None] | None = None) -> str:
    """Path of an executable, apt-installing it when allowed, else a clear error."""
    find = find or (lambda: shutil.which(name))
    found = find()
    if found:
        return found
    if can_apt():
        apt_install(packages, log=log)
        found = find()
        if found:
            return found
    raise StackError(
        f"`{name}` was not found. Install it first, e.g. `sudo apt-get install -y {' '.join(packages)}` "
        "(Debian/Ubuntu), or put it on PATH."
    )


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Serialize up/down across processes (e.g. parallel test workers)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
