"""Helpers shared by the outbox tests: a spec with one outbox, a test contract, concurrent writers, relay subprocesses."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import Field

from liberation_assets.core.outbox import DomainEvent, emit, register
from liberation_assets.core.outbox.table import outbox_table
from liberation_assets.core.spec import Spec
from liberation_tests.support import CliProcess

ROUTE = "{topic_prefix}.outbox.event.{aggregatetype}"


@register
class CounterBumped(DomainEvent):
    """A test aggregate: a counter whose events carry their per-aggregate number ``n``."""

    aggregate_type = "counter"
    aggregate_key = "counter_id"

    counter_id: str = Field(min_length=1)
    n: int = Field(ge=1)
    writer: int = Field(ge=0)


def outbox_spec(
    make_spec: Any, *, pg: str | None = None, mysql: str | None = None, partitions: int = 1, **outbox: Any
) -> Spec:
    """A spec with one outbox ``ob`` on the test database, routed under the test's unique topic prefix."""
    settings = {"source": "pg" if pg else "mysql", "route": ROUTE, **outbox}
    return make_spec(pg=pg, mysql=mysql, outboxes={"ob": settings}, kafka={"partitions": partitions})


def topic(spec: Spec, aggregatetype: str) -> str:
    return ROUTE.format(topic_prefix=spec.kafka.topic_prefix, aggregatetype=aggregatetype)


def pending_rows(engine: sa.Engine, table: str = "outbox") -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(outbox_table(table))).scalar_one())


class RelayProcess(CliProcess):
    """``liberation follow <outbox>`` as a real subprocess, so a test can kill -9 it."""

    def __init__(self, spec_file: Path, outbox: str = "ob", *, duration: float | None = None):
        super().__init__(
            ["follow", outbox, *(["--duration", str(duration)] if duration is not None else [])], spec_file=spec_file
        )

    def wait_relaying(self, timeout: float = 60.0) -> None:
        """Until it holds the lease (its ``started`` status line)."""
        self.wait_for_status("started", timeout)

    def recovered(self) -> int:
        """Rows of a crashed batch this relay cleaned up without publishing (from its log)."""
        return sum(int(m.group(1)) for line in self.lines if (m := _RECOVERED.search(line)))


_RECOVERED = re.compile(r"lease taken; (\d+) rows of the last batch cleaned up")


class _Rollback(Exception):
    """Raised on purpose inside a writer's transaction."""


class CounterWriters:
    """Concurrent writers: each owns some counters and bumps one per transaction, business row and event together.

    Every ``rollback_every``-th transaction emits and then rolls back: its event
    must never reach Kafka.  Commit times are recorded to measure latency.
    ``delete_in_transaction`` deletes each outbox row in its own transaction, as
    Debezium's event router expects (``via: cdc``).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        writers: int = 8,
        counters_per_writer: int = 25,
        pause: float = 0.01,
        rollback_every: int = 10,
        seed: int = 5,
        delete_in_transaction: bool = False,
    ):
        self.engine = engine
        self.writers = writers
        self.counters_per_writer = counters_per_writer
        self.pause = pause
        self.rollback_every = rollback_every
        self.seed = seed
        self.delete_in_transaction = delete_in_transaction
        self.committed: dict[str, float] = {}
        self.rolled_back: set[str] = set()
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS counters (counter_id text PRIMARY KEY, n int NOT NULL)"
            )

    def start(self) -> None:
        for writer in range(self.writers):
            thread = threading.Thread(target=self._run, args=(writer,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not self.errors, repr(self.errors[0])

    def _run(self, writer: int) -> None:
        rng = random.Random(self.seed * 1000 + writer)
        bump = sa.text(
            "INSERT INTO counters VALUES (:id, 1) ON CONFLICT (counter_id) DO UPDATE SET n = counters.n + 1 RETURNING n"
        )
        transactions = 0
        outbox = outbox_table()
        try:
            while not self._stop.is_set():
                counter = f"w{writer}-c{rng.randrange(self.counters_per_writer)}"
                transactions += 1
                rollback = transactions % self.rollback_every == 0
                try:
                    with self.engine.begin() as connection:
                        n = connection.execute(bump, {"id": counter}).scalar_one()
                        event = emit(connection, CounterBumped(counter_id=counter, n=n, writer=writer))
                        if self.delete_in_transaction:  # Debezium style: only the log keeps the row
                            connection.execute(outbox.delete().where(outbox.c.id == str(event.event_id)))
                        if rollback:
                            raise _Rollback()
                    self.committed[str(event.event_id)] = time.time()
                except _Rollback:
                    self.rolled_back.add(str(event.event_id))
                time.sleep(self.pause)
        except BaseException as exc:  # surfaced by stop()
            self.errors.append(exc)


def assert_exactly_once_in_order(messages: list[Any], writers: CounterWriters) -> None:
    """Every committed event once (by header id), no rolled-back event, and each counter's n = 1, 2, 3, ..."""
    ids = [m.headers["id"].decode() for m in messages]
    duplicates = [event_id for event_id, count in Counter(ids).items() if count > 1]
    assert not duplicates, f"{len(duplicates)} events published twice, e.g. {duplicates[:3]}"
    missing = set(writers.committed) - set(ids)
    assert not missing, f"{len(missing)} committed events missing, e.g. {sorted(missing)[:3]}"
    assert not set(ids) & writers.rolled_back, "a rolled-back event was published"
    assert len(ids) == len(writers.committed)
    per_counter: dict[bytes, list[int]] = {}
    for message in messages:  # consume_all keeps each partition's order, and a key lives in one partition
        per_counter.setdefault(message.key, []).append(orjson.loads(message.value)["n"])
    for key, numbers in per_counter.items():
        assert numbers == list(range(1, len(numbers) + 1)), f"counter {key!r} out of order: {numbers[:20]}"
