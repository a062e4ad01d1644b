"""Helpers every test shares: ``wait_until``, ``CliProcess`` (a ``liberation`` command under test), the spec
as a file for a subprocess (``write_spec``), and the stack's administrator connections (``pg_admin``, ``mysql_admin``).

``liberation follow`` prints one JSON status object per line on stdout (``{"event": "started", ...}``,
``core/engine/coordinator.py``); ``CliProcess.wait_for_status`` reads those instead of matching prose.
A test starts a ``CliProcess`` (or a subclass) directly; the autouse fixture in ``fix_cli.py`` kills any
that is still running when the test ends, so none outlives its test even when an assertion fails first.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psycopg
import pymysql
import yaml

from liberation_assets.core.spec import Spec
from liberation_assets.stack import StackSettings

T = TypeVar("T")
POLL_SECONDS = 0.25


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str | Callable[[], str], *, every: float = POLL_SECONDS
) -> T:
    """Poll ``condition`` until it returns something true, and return that; fail naming ``what`` after ``timeout`` s.

    Generous timeouts and no timing assertion: a loaded machine only makes a test slower, never red.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: " + (what() if callable(what) else what))
        time.sleep(every)


class CliProcess:
    """``python -m liberation_assets.cli <args>`` as a real subprocess: its output kept, stopped or killed at will.

    Every line of stdout and stderr lands in ``lines`` (in arrival order); JSON status lines on stdout
    also land in ``statuses``.  ``log_file``: also append the output there (for a test that reads it later).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        spec_file: Path | None = None,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
    ):
        extra = {"LIBERATION_SPEC": str(spec_file)} if spec_file is not None else {}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "liberation_assets.cli", *args],
            env={**os.environ, **extra, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.statuses: list[dict[str, Any]] = []
        self._log = open(log_file, "a") if log_file is not None else None
        self._lock = threading.Lock()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        _started.append(self)

    def _read(self, stream: Any, into: list[str]) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            with self._lock:
                into.append(line)
                self.lines.append(line)
                if self._log is not None and not self._log.closed:
                    self._log.write(line + "\n")
                    self._log.flush()
                if into is self.stdout and line.startswith("{"):
                    try:
                        self.statuses.append(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        pass

    # -- reading --------------------------------------------------------------------------------------------
    def tail(self, lines: int = 40) -> str:
        """The last lines, without librdkafka's own (``%3|...``)."""
        return "\n".join(line for line in self.lines[-lines:] if not line.startswith("%"))

    def output_text(self) -> str:
        return "\n".join(self.lines)

    def seen(self, event: str) -> list[dict[str, Any]]:
        """The status lines of one event (``started``, ``reconnecting``, ``stopped``)."""
        return [status for status in self.statuses if status.get("event") == event]

    def wait_for_status(self, event: str, timeout: float = 120.0, *, count: int = 1) -> dict[str, Any]:
        """The ``count``-th status line of ``event``; fails if the process ends first or time runs out."""

        def arrived() -> dict[str, Any] | None:
            found = self.seen(event)
            if len(found) >= count:
                return found[count - 1]
            assert self.alive, f"ended (code {self.process.returncode}) before {event!r}:\n{self.tail()}"
            return None

        return wait_until(arrived, timeout, lambda: f"status {event!r}:\n{self.tail()}")

    def wait_for_line(self, text: str, timeout: float = 120.0, *, every: float = POLL_SECONDS) -> str:
        """The first output line holding ``text``; fails if the process ends first or time runs out."""

        def arrived() -> str | None:
            found = next((line for line in list(self.lines) if text in line), None)
            if found is None:
                assert self.alive, f"ended (code {self.process.returncode}) before {text!r}:\n{self.tail()}"
            return found

        return wait_until(arrived, timeout, lambda: f"a line with {text!r}:\n{self.tail()}", every=every)

    # -- state ----------------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def assert_alive(self) -> None:
        assert self.alive, "died:\n" + self.tail()

    def proc_status(self, field: str) -> int:
        """A /proc/<pid>/status figure in bytes, e.g. VmRSS or VmHWM (peak)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    # -- ending ---------------------------------------------------------------------------------------------
    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM: ``follow`` finishes the transaction in flight, prints its summary and exits 0."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._join()
        return code

    def wait(self, timeout: float = 300.0) -> int:
        """Until it ends by itself; its exit code."""
        code = self.process.wait(timeout=timeout)
        self._join()
        return code

    def kill(self) -> int | None:
        """kill -9; returns the exit code if it had already ended by itself."""
        ended = self.process.poll()
        if ended is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._join()
        return ended

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)
        if self._log is not None and not self._log.closed:
            with self._lock:
                self._log.close()


_started: list[CliProcess] = []
"""Every ``CliProcess`` started and not yet ended by ``end_started_since``."""


def started_count() -> int:
    return len(_started)


def end_started_since(count: int) -> None:
    """Kill every ``CliProcess`` started after ``started_count()`` was ``count`` that is still running."""
    while len(_started) > count:
        _started.pop().kill()


def free_port() -> int:
    """A local port that was free a moment ago: for a server a test starts, or one nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spec_to_yaml(spec: Spec) -> str:
    """A spec as a YAML file, for tests that run the CLI in a subprocess."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, timedelta):
            return value.total_seconds()
        return value

    return yaml.safe_dump(plain(spec.model_dump(mode="python", by_alias=True)), sort_keys=False)


def write_spec(spec: Spec, folder: Path, name: str = "liberation.yaml") -> Path:
    """The spec as the file ``folder/name``, for a CLI subprocess (``CliProcess(..., spec_file=...)``) or Dagster."""
    path = folder / name
    path.write_text(spec_to_yaml(spec))
    return path


def pg_admin(stack: StackSettings, database: str = "liberation") -> psycopg.Connection[Any]:
    """The stack's PostgreSQL superuser on ``database``, autocommit: to create and drop databases, roles, slots."""
    return psycopg.connect(
        host=stack.pg_host,
        port=stack.pg_port,
        user=stack.pg_user,
        password=stack.pg_password,
        dbname=database,
        autocommit=True,
    )


def mysql_admin(stack: StackSettings, database: str | None = None) -> pymysql.connections.Connection[Any]:
    """The stack's MariaDB root, on ``database`` if given, autocommit: to create and drop databases and tables."""
    return pymysql.connect(
        host=stack.mysql_host,
        port=stack.mysql_port,
        user=stack.mysql_user,
        password=stack.mysql_password,
        database=database,
        autocommit=True,
    )
