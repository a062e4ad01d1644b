"""Single-node Apache Kafka 4.1.1 (KRaft, combined broker+controller) as a plain JVM.

No Kafka distribution is unpacked: Maven resolves the jars from Maven Central
(kafka/pom.xml) into <root>/kafka/libs and we run `kafka.Kafka` with the
machine's Java 17, logging through log4j2 to <root>/kafka/logs.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from xml.sax.saxutils import quoteattr

from .process import (
    Log,
    StackError,
    kill_pid,
    pid_alive,
    port_open,
    read_pid,
    require_tool,
    run,
    start_detached,
    stop_pid,
    wait_for,
)
from .settings import StackSettings

POM = Path(__file__).with_name("kafka") / "pom.xml"
MAIN = "kafka.Kafka"
HEAP = ["-Xms256m", "-Xmx768m"]


class _Paths:
    def __init__(self, settings: StackSettings):
        self.home = settings.root / "kafka"
        self.libs = self.home / "libs"
        self.config = self.home / "config"
        self.properties = self.config / "server.properties"
        self.log4j = self.config / "log4j2.xml"
        self.data = self.home / "data"
        self.logs = self.home / "logs"
        self.out = self.logs / "kafka.out"
        self.pid = self.home / "kafka.pid"
        self.cluster_id = self.home / "cluster.id"


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def _find_java() -> str | None:
    """A `java` of version 17+ (Kafka 4 brokers need 17): PATH first, then /usr/lib/jvm."""
    candidates = [shutil.which("java"), *sorted(glob.glob("/usr/lib/jvm/*/bin/java"), reverse=True)]
    for java in candidates:
        if java and _java_major(java) >= 17:
            return java
    return None


def _ensure_libs(paths: _Paths, log: Log) -> None:
    """Resolve the Kafka jars once (again only if pom.xml changed since)."""
    stamp = paths.libs / ".pom.sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if paths.libs.is_dir() and any(paths.libs.glob("*.jar")) and stamp.exists() and stamp.read_text() == digest:
        return
    mvn = require_tool("mvn", packages=["maven"], log=log)
    log(f"kafka: resolving jars with Maven into {paths.libs}")
    staging = paths.home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    run(
        [mvn, "-q", "-B", "-f", POM, "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
        what="resolving Kafka jars with Maven",
    )
    (staging / ".pom.sha256").write_text(digest)
    shutil.rmtree(paths.libs, ignore_errors=True)
    staging.rename(paths.libs)


def _write_config(settings: StackSettings, paths: _Paths) -> None:
    host, port = settings.kafka_host, settings.kafka_port
    controller = f"{host}:{port + 1}"
    paths.config.mkdir(parents=True, exist_ok=True)
    paths.properties.write_text(
        f"""# Written by liberation_assets.stack on every `up`; edit kafka.py instead.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers={controller}
log.dirs={paths.data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Compaction: on, one thread, small dedupe buffer to fit the heap, quick to react.
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
log.cleaner.backoff.ms=2000
log.cleaner.min.compaction.lag.ms=0
log.retention.hours=168
"""
    )
    logs = str(paths.logs / "server.log")
    paths.log4j.write_text(
        f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Kafka 4 logs via log4j2; broker logs go to a rolling file, not stdout. -->
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="server" fileName={quoteattr(logs)} filePattern={quoteattr(logs + ".%i")}>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="50 MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients.NetworkClient" level="WARN"/>
  </Loggers>
</Configuration>
"""
    )


def _cluster_id(paths: _Paths) -> str:
    """Generated once and kept: the storage is formatted with it."""
    if paths.cluster_id.exists():
        return paths.cluster_id.read_text().strip()
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    paths.cluster_id.write_text(cid + "\n")
    return cid


def _classpath(paths: _Paths) -> str:
    return f"{paths.libs}/*"


def _format_once(java: str, paths: _Paths, log: Log) -> None:
    if (paths.data / "meta.properties").exists():
        return
    log(f"kafka: formatting KRaft storage in {paths.data}")
    run(
        [
            java,
            f"-Dlog4j2.configurationFile={paths.log4j}",
            "-cp",
            _classpath(paths),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            _cluster_id(paths),
            "-c",
            paths.properties,
        ],
        what="formatting Kafka storage",
    )


def _marker(settings: StackSettings) -> str:
    return str(_Paths(settings).properties)


def running(settings: StackSettings) -> bool:
    """Our broker process is alive (it may still be starting)."""
    return pid_alive(read_pid(_Paths(settings).pid), _marker(settings))


def healthy(settings: StackSettings, timeout: float = 3.0) -> bool:
    """The broker answers a metadata request."""
    if not port_open(settings.kafka_host, settings.kafka_port):
        return False
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return False


def up(settings: StackSettings, log: Log) -> None:
    """Resolve jars, format once, start the broker and wait until it serves metadata."""
    paths = _Paths(settings)
    if running(settings) and healthy(settings):
        log(f"kafka: already up on {settings.kafka_bootstrap}")
        return
    java = require_tool("java", packages=["openjdk-17-jre-headless"], log=log, find=_find_java)
    paths.logs.mkdir(parents=True, exist_ok=True)
    _ensure_libs(paths, log)
    _write_config(settings, paths)
    _format_once(java, paths, log)
    if not running(settings):
        for port in (settings.kafka_port, settings.kafka_port + 1):
            if port_open(settings.kafka_host, port):
                raise StackError(
                    f"kafka: port {port} is already in use by another process; set LIBERATION_KAFKA_PORT "
                    "(the controller uses that port + 1)"
                )
        log(f"kafka: starting on {settings.kafka_bootstrap} (logs in {paths.logs})")
        start_detached(
            [
                java,
                *HEAP,
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={paths.log4j}",
                f"-Dkafka.logs.dir={paths.logs}",
                "-cp",
                _classpath(paths),
                MAIN,
                paths.properties,
            ],
            log_file=paths.out,
            pid_file=paths.pid,
            cwd=paths.home,
        )
    wait_for(
        lambda: healthy(settings, timeout=2.0),
        timeout=120,
        what=f"Kafka on {settings.kafka_bootstrap}",
        interval=0.5,
        alive=lambda: running(settings),
        logs=[paths.out, paths.logs / "server.log"],
    )


def down(settings: StackSettings) -> bool:
    """Controlled shutdown via SIGTERM (SIGKILL after a minute)."""
    return stop_pid(_Paths(settings).pid, _marker(settings), timeout=60)


def kill(settings: StackSettings) -> bool:
    """kill -9 of the broker, for tests of what survives a crash; ``up`` starts it again."""
    return kill_pid(_Paths(settings).pid, _marker(settings))
