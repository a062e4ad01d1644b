"""Debezium's PostgreSQL connector on Kafka Connect standalone, on the same data and the same broker.

Jars: Debezium from Maven Central (bench/debezium/pom.xml, resolved once into
bench/.work/debezium/libs); Kafka Connect 4.1.1 from the stack's Kafka libs.
Two connectors share one worker: the orders table (initial snapshot, then
streaming) and the outbox table through Debezium's EventRouter.  Settings are
tuned for throughput the way its docs suggest (bigger batches and queue), with
the same producer settings as ours (acks=all, lz4, linger 5 ms).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

from bench import dataset, topics
from bench.ceilings import kafka_libs
from bench.context import BENCH_DIR, WORK, RunContext, Skip
from bench.dataset import DATABASE, DEMO_TABLES, ORDERS, OUTBOX
from bench.procs import peak_rss_mb
from liberation_assets.stack.kafka import _find_java

POM = BENCH_DIR / "debezium" / "pom.xml"
HOME = WORK / "debezium"
LIBS = HOME / "libs"
REST_PORT = 18083
HEAP = ["-Xms256m", "-Xmx512m"]


def resolve_jars(pom: Path, home: Path, artifact: str) -> Path:
    """Resolve a connector's jars into ``home/libs`` once (again when the pom changes); Skip naming the artifact if
    Maven can't.  Shared by the PostgreSQL and the MariaDB connector."""
    libs = home / "libs"
    stamp = libs / ".pom.sha256"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise Skip(f"mvn not found: cannot resolve {artifact}")
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    done = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        missing = [line for line in done.stdout.splitlines() if "Could not" in line or "not find" in line]
        raise Skip(f"Maven could not resolve {artifact}: {' '.join(missing)[:400]}")
    (staging / ".pom.sha256").write_text(digest)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def ensure_jars() -> Path:
    return resolve_jars(POM, HOME, "io.debezium:debezium-connector-postgres")


def worker_properties(bootstrap: str, run_dir: Path) -> str:
    """A standalone Connect worker's settings: JSON without schemas, file offsets, the producer tuned alike for
    every connector we measure."""
    return _properties(
        {
            "bootstrap.servers": bootstrap,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            "offset.storage.file.filename": run_dir / "offsets.dat",
            "offset.flush.interval.ms": 1000,
            "listeners": f"http://127.0.0.1:{REST_PORT}",
            "plugin.discovery": "only_scan",
            "topic.creation.enable": "false",
            "producer.acks": "all",
            "producer.linger.ms": 5,
            "producer.batch.size": 1_000_000,
            "producer.compression.type": "lz4",
        }
    )


def version() -> str:
    jars = sorted(LIBS.glob("debezium-connector-postgres-*.jar"))
    return jars[0].stem.removeprefix("debezium-connector-postgres-") if jars else "?"


def orders_topic(ctx: RunContext) -> str:
    return f"dbz{ctx.prefix}.public.{ORDERS}"


def table_topics(ctx: RunContext) -> list[str]:
    """The topics of every table of the data set: bench_orders and the demo's orders and products."""
    return [f"dbz{ctx.prefix}.public.{table}" for table in (ORDERS, *DEMO_TABLES)]


def outbox_topic(ctx: RunContext) -> str:
    return f"dbz{ctx.prefix}.outbox.order"


def _properties(values: dict[str, object]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def _connector(ctx: RunContext, name: str) -> dict[str, object]:
    stack = ctx.stack
    common: dict[str, object] = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": 1,
        "plugin.name": "pgoutput",
        "database.hostname": stack.pg_host,
        "database.port": stack.pg_port,
        "database.user": stack.pg_user,
        "database.password": stack.pg_password,
        "database.dbname": DATABASE,
        "topic.prefix": f"dbz{ctx.prefix}",
        "publication.autocreate.mode": "filtered",
        "decimal.handling.mode": "string",
        "max.batch.size": 8192,
        "max.queue.size": 32768,
        "poll.interval.ms": 50,
        "snapshot.fetch.size": 10240,
        # Our CDC writes heartbeats and watermarks to the same WAL with pg_logical_emit_message: not Debezium's data.
        "message.prefix.exclude.list": "liberation.*",
    }
    if name == "orders":
        return {
            **common,
            "name": f"dbz-{ctx.prefix}-orders",
            "slot.name": ctx.slot("dbz_orders"),
            "publication.name": ctx.slot("dbz_orders_pub"),
            "table.include.list": ",".join(f"public.{t}" for t in (ORDERS, *DEMO_TABLES)),
            "snapshot.mode": "initial",
        }
    # A topic prefix of its own: Debezium names its JMX metrics after it, and two alike collide.
    return {
        **common,
        "topic.prefix": f"dbz{ctx.prefix}ob",
        "name": f"dbz-{ctx.prefix}-outbox",
        "slot.name": ctx.slot("dbz_outbox"),
        "publication.name": ctx.slot("dbz_outbox_pub"),
        "table.include.list": f"public.{OUTBOX}",
        "snapshot.mode": "no_data",
        "tombstones.on.delete": "false",
        "skipped.operations": "u,d,t",
        "transforms": "outbox",
        "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
        "transforms.outbox.route.topic.replacement": f"dbz{ctx.prefix}.outbox.${{routedByValue}}",
        "transforms.outbox.table.expand.json.payload": "true",
    }


class Connect:
    """One Kafka Connect standalone worker running both connectors of a run; restartable from its offsets."""

    libs = LIBS
    """The connector's jars, beside the stack's Kafka libs on the worker's classpath."""
    connectors = ("orders.properties", "outbox.properties")
    """The connector files ``prepare`` writes into the run's folder."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.dir = HOME / "runs" / ctx.prefix
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss_mb = 0.0
        self.starts = 0

    def prepare(self) -> None:
        ensure_jars()
        if _find_java() is None or not kafka_libs(self.ctx).is_dir():
            raise Skip("java 17 or the stack's Kafka libs (connect-runtime 4.1.1) not found")
        self.dir.mkdir(parents=True, exist_ok=True)
        bootstrap = self.ctx.stack.kafka_bootstrap
        topics.create(bootstrap, table_topics(self.ctx), compacted=True)
        topics.create(bootstrap, [outbox_topic(self.ctx)])
        (self.dir / "worker.properties").write_text(worker_properties(bootstrap, self.dir))
        for name in ("orders", "outbox"):
            (self.dir / f"{name}.properties").write_text(_properties(_connector(self.ctx, name)))
        (self.dir / "log4j2.properties").write_text(
            "status = warn\nappender.file.type = File\nappender.file.name = file\n"
            f"appender.file.fileName = {self.dir / 'connect.log'}\nappender.file.append = true\n"
            "appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = %d %p %c{1} %m%n\n"
            "rootLogger.level = info\nrootLogger.appenderRef.file.ref = file\n"
        )

    def start(self) -> None:
        java = _find_java()
        assert java is not None
        classpath = f"{self.libs}/*:{kafka_libs(self.ctx)}/*"
        out = (self.dir / "connect.out").open("ab")
        self.process = subprocess.Popen(
            [
                java,
                *HEAP,
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                "-cp",
                classpath,
                "org.apache.kafka.connect.cli.ConnectStandalone",
                str(self.dir / "worker.properties"),
                *(str(self.dir / name) for name in self.connectors),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        self.starts += 1

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = (
                (self.dir / "connect.log").read_text(errors="replace")[-3000:]
                if (self.dir / "connect.log").exists()
                else ""
            )
            raise RuntimeError(f"Kafka Connect exited with {self.process.returncode}; log tail:\n{tail}")

    def sample_rss(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.peak_rss_mb = max(self.peak_rss_mb, peak_rss_mb(self.process.pid) or 0.0)

    def stop(self) -> None:
        """Graceful stop (offsets are flushed on shutdown); only our own process, by pid."""
        if self.process is None:
            return
        self.sample_rss()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        self._wait_slots_released()

    def _wait_slots_released(self, timeout: float = 60) -> None:
        """A stopped reader's walsender lingers; a restart before it exits would find the slot busy."""
        deadline = time.monotonic() + timeout
        with dataset.connect(self.ctx.stack) as db:
            while time.monotonic() < deadline:
                busy = db.execute(
                    "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name LIKE %s",
                    (self.ctx.slot("dbz") + "%",),
                ).fetchone()
                if not busy or not busy[0]:
                    return
                time.sleep(0.2)

    def wait_for(self, watch: topics.Watch, target: int, *, above: int, timeout: float) -> topics.Span:
        """Watch until the count reaches ``target``, failing fast if the worker dies and sampling its RSS on the way."""

        def finished(seen: int) -> bool:
            self.check()
            self.sample_rss()
            return seen >= target

        try:
            return watch.follow(above, finished, timeout=timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} (target {target}; see {self.dir})") from None
