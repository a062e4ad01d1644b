"""Kafka Connect standalone with Debezium's connectors, for tests that plug a real consumer into our topics.

Jars: the Debezium JDBC sink and PostgreSQL connector from Maven Central (liberation_tests/connect/pom.xml),
resolved once into ``~/.cache/liberation/connect/<pom digest>`` (outside the git tree, shared by worktrees);
Kafka Connect itself (connect-runtime 4.1.1) from the stack's Kafka libs, as bench/debezium.py does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from liberation_assets.stack import StackSettings
from liberation_assets.stack.kafka import _find_java
from liberation_tests.support import free_port, wait_until

POM = Path(__file__).with_name("pom.xml")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "liberation" / "connect"
HEAP = ["-Xms128m", "-Xmx512m"]


def ensure_jars() -> Path:
    """The resolved connector jars; skips the test, naming what is missing, when Maven or Java cannot serve."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    libs = CACHE / digest
    if (libs / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.skip("mvn not found: cannot resolve io.debezium:debezium-connector-jdbc from Maven Central")
    staging = CACHE / f"{digest}.partial.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    done = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"Maven could not resolve the Debezium connectors: {(done.stdout + done.stderr)[-400:]}")
    (staging / ".complete").write_text(digest)
    try:
        staging.rename(libs)
    except OSError:  # another run finished first
        shutil.rmtree(staging, ignore_errors=True)
    return libs


def _properties(values: dict[str, Any]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


class ConnectWorker:
    """One Kafka Connect standalone worker (JsonConverter with schemas) running the given connectors."""

    def __init__(self, stack: StackSettings, workdir: Path, connectors: dict[str, dict[str, Any]]):
        self.stack = stack
        self.dir = workdir
        self.connectors = connectors
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "ConnectWorker":
        java = _find_java()
        kafka_libs = self.stack.root / "kafka" / "libs"
        if java is None or not (kafka_libs / "connect-runtime-4.1.1.jar").exists():
            pytest.skip("java 17 or the stack's Kafka libs (connect-runtime 4.1.1) not found")
        libs = ensure_jars()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "worker.properties").write_text(
            _properties(
                {
                    "bootstrap.servers": self.stack.kafka_bootstrap,
                    "key.converter": "org.apache.kafka.connect.json.JsonConverter",
                    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                    "key.converter.schemas.enable": "true",
                    "value.converter.schemas.enable": "true",
                    "consumer.isolation.level": "read_committed",  # our topics are transactional
                    "consumer.auto.offset.reset": "earliest",
                    "offset.storage.file.filename": self.dir / "offsets.dat",
                    "offset.flush.interval.ms": 1000,
                    "listeners": f"http://127.0.0.1:{self.port}",
                    "plugin.discovery": "only_scan",
                }
            )
        )
        files = []
        for name, config in self.connectors.items():
            path = self.dir / f"{name}.properties"
            path.write_text(_properties({"name": name, **config}))
            files.append(str(path))
        (self.dir / "log4j2.properties").write_text(
            "status = warn\nappender.file.type = File\nappender.file.name = file\n"
            f"appender.file.fileName = {self.dir / 'connect.log'}\nappender.file.append = true\n"
            "appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = %d %p %c{1} %m%n\n"
            "rootLogger.level = info\nrootLogger.appenderRef.file.ref = file\n"
        )
        out = (self.dir / "connect.out").open("ab")
        self.process = subprocess.Popen(
            [
                java,
                *HEAP,
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                "-cp",
                f"{libs}/*:{kafka_libs}/*",
                "org.apache.kafka.connect.cli.ConnectStandalone",
                str(self.dir / "worker.properties"),
                *files,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # only the worker this test started, by its own handle
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def log_tail(self, chars: int = 4000) -> str:
        log = self.dir / "connect.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def check(self) -> None:
        """Fail with the log's tail if the worker died or a connector task failed."""
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"Kafka Connect exited with {self.process.returncode}:\n{self.log_tail()}")
        for name in self.connectors:
            status = self.status(name)
            for task in (status or {}).get("tasks", []):
                if task.get("state") == "FAILED":
                    raise AssertionError(f"connector {name} task failed: {task.get('trace', '')[:3000]}")

    def status(self, name: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/connectors/{name}/status", timeout=5) as reply:
                return dict(json.loads(reply.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_until(self, condition: Any, *, timeout: float, what: str) -> Any:
        """Poll ``condition`` (returning a truthy value when done) while watching the worker."""

        def checked() -> Any:
            self.check()
            return condition()

        return wait_until(checked, timeout, lambda: f"{what}; connect log tail:\n{self.log_tail()}", every=2)
