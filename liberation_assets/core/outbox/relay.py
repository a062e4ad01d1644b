"""The outbox relay: committed rows → Kafka records and a position, in one transaction → cleanup.

One relay at a time works an outbox table: it holds a *lease*, a session
lock (``pg_try_advisory_lock`` / ``GET_LOCK``) on its only connection, which
the database releases when that connection dies, kill -9 included.  Others
wait as hot standbys.  A lease rather than ``SKIP LOCKED`` because two relays
each skipping the other's rows would publish one aggregate's events out of
order.

Each batch, in this order:

1. read unrelayed rows in ``seq`` order (committed rows only, by definition);
2. produce their records plus the position record (the ``seq`` ranges of the
   batch) in ONE Kafka transaction, with ``transactional.id``
   ``liberation.outbox.<name>``, and commit (``publish.flush.Flusher``);
3. only then delete (or mark) exactly those rows (``confirm``, which the
   flusher calls after the commit).

A crash between 2 and 3 leaves rows that Kafka already has.  On start, after
``init_transactions`` has fenced any zombie, the relay reads its position and
cleans up those rows *without* publishing them again.  Rows are never skipped
on a cursor: a row that commits late, below rows already relayed, is simply
read by a later batch.

Everything up to the SQL and the Kafka calls is pure: ``seq_ranges``,
``Router``, ``build_records``, and the statement builders.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.contract.serialize import to_epoch_ms
from liberation_assets.core.errors import PublishError
from liberation_assets.core.outbox.table import check_outbox_table, notify_channel, table_for
from liberation_assets.core.publish.flush import Flusher, FlushPolicy
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.publish.publisher import OutRecord, TransactionalPublisher
from liberation_assets.core.publish.topics import TopicSpec, ensure_topics
from liberation_assets.core.spec import OutboxSpec, Spec

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_COLUMNS = ("seq", "id", "aggregatetype", "aggregateid", "type", "payload", "occurred_at")
Row = Sequence[Any]
"""(seq, id, aggregatetype, aggregateid, type, payload text, occurred_at), as ``pending_query`` selects them."""


def position_key(outbox: str) -> str:
    return f"outbox/{outbox}"


def transactional_id(spec: Spec, outbox: str) -> str:
    return spec.transactional_id("outbox", outbox)


def seq_ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Ascending seqs as inclusive ranges.  Gaps stay gaps: a seq not relayed is never inside a range."""
    ranges: list[list[int]] = []
    for seq in seqs:
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return tuple((low, high) for low, high in ranges)


@dataclass(frozen=True, slots=True)
class OutboxPosition:
    """The rows of the last committed batch, stored in Kafka with that batch's records."""

    seq_ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, seqs: Iterable[int]) -> "OutboxPosition":
        return cls(seq_ranges(seqs))

    def seqs(self) -> list[int]:
        return [seq for low, high in self.seq_ranges for seq in range(low, high + 1)]

    def to_dict(self) -> dict[str, Any]:
        return {"seq_ranges": [[low, high] for low, high in self.seq_ranges], "events": len(self.seqs())}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "OutboxPosition":
        if not data:
            return cls()
        return cls(tuple((int(low), int(high)) for low, high in data["seq_ranges"]))


class Router:
    """aggregatetype → topic, through the spec's route (``outbox.event.{aggregatetype}`` by default)."""

    def __init__(self, route: str, *, topic_prefix: str, outbox: str):
        self.route = route
        self.topic_prefix = topic_prefix
        self.outbox = outbox
        self._topics: dict[str, str] = {}

    def topic(self, aggregatetype: str) -> str:
        topic = self._topics.get(aggregatetype)
        if topic is None:
            topic = self.route.format(aggregatetype=aggregatetype, topic_prefix=self.topic_prefix, outbox=self.outbox)
            if not _TOPIC.match(topic):
                raise PublishError(
                    f"outbox {self.outbox}: aggregatetype {aggregatetype!r} routes to {topic!r}, "
                    "which is not a valid Kafka topic name; fix or delete that row"
                )
            self._topics[aggregatetype] = topic
        return topic


def build_records(rows: Iterable[Row], router: Router) -> list[OutRecord]:
    """Debezium event-router records: key aggregateid, value payload, headers id and type, timestamp occurred_at."""
    records: list[OutRecord] = []
    append, topic_of = records.append, router.topic
    for _seq, event_id, aggregatetype, aggregateid, event_type, payload, occurred_at in rows:
        append(
            (
                topic_of(aggregatetype),
                aggregateid.encode(),
                payload.encode() if payload is not None else None,
                to_epoch_ms(occurred_at, timezone.utc),
                [("id", str(event_id).encode()), ("type", event_type.encode())],
            )
        )
    return records


def pending_query(table: sa.Table, limit: int) -> sa.Select[Any]:
    """Unrelayed rows in seq order: the relay's only read."""
    return (
        sa.select(*(table.c[name] for name in _COLUMNS))
        .where(table.c.relayed_at.is_(None))
        .order_by(table.c.seq)
        .limit(limit)
    )


MAX_CLEANUP_RANGES = 16


def cleanup_statement(table: sa.Table, seqs: Sequence[int], mode: str, dialect: str) -> sa.Delete | sa.Update:
    """Delete, or mark as relayed, exactly the given rows.

    A batch is nearly always one run of consecutive seqs, so a few ``BETWEEN``
    ranges name it with a handful of parameters instead of one per row.  A range
    holds only seqs of the batch (``seq_ranges`` keeps gaps as gaps), so a row
    that committed late inside a gap is never touched.
    """
    ranges = seq_ranges(seqs)
    chosen: sa.ColumnElement[bool]
    if len(ranges) <= MAX_CLEANUP_RANGES:
        chosen = sa.or_(*(table.c.seq.between(low, high) if low < high else table.c.seq == low for low, high in ranges))
    else:
        chosen = table.c.seq.in_(seqs)
    if mode == "delete":
        return table.delete().where(chosen)
    now = sa.literal_column("NOW(6)") if dialect == "mysql" else sa.func.now()
    return table.update().where(chosen, table.c.relayed_at.is_(None)).values(relayed_at=now)


def pending_stats_query(table: sa.Table, dialect: str) -> sa.Select[Any]:
    """(pending rows, age of the oldest in seconds by the database clock)."""
    oldest = sa.func.min(table.c.occurred_at)
    age: Any
    if dialect == "mysql":
        age = (
            sa.func.timestampdiff(sa.literal_column("MICROSECOND"), oldest, sa.literal_column("UTC_TIMESTAMP(6)")) / 1e6
        )
    else:
        age = sa.func.extract("epoch", sa.func.now() - oldest)
    return sa.select(sa.func.count(), age).where(table.c.relayed_at.is_(None))


def lease_name(outbox: OutboxSpec) -> str:
    """Per table, not per spec entry: two entries naming one table must not both relay it."""
    return f"liberation.outbox:{outbox.db_schema or ''}.{outbox.table}"


def _pg_lock_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def try_lease(connection: Connection, outbox: OutboxSpec) -> bool:
    """Take the session lock that makes this connection's relay the only one working the table."""
    name = lease_name(outbox)
    if connection.dialect.name == "postgresql":
        return bool(connection.execute(sa.select(sa.func.pg_try_advisory_lock(_pg_lock_key(name)))).scalar())
    short = (
        "liberation.outbox:" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
    )  # GET_LOCK allows 64 chars
    return connection.execute(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": short}).scalar() == 1


def pending_stats(engine: Engine, outbox: OutboxSpec) -> tuple[int, float]:
    """(pending rows, oldest pending age in seconds) on a short connection of its own."""
    with engine.connect() as connection:
        count, age = connection.execute(pending_stats_query(table_for(outbox), dialect_of(connection))).one()
    return int(count), max(0.0, float(age or 0.0))


def dialect_of(connection: Connection) -> str:
    return "mysql" if connection.dialect.name in ("mysql", "mariadb") else connection.dialect.name


class TopicCreator:
    """Creates each route's topic the first time a record goes to it (delete policy: events, not state)."""

    def __init__(self, spec: Spec):
        self.kafka = spec.kafka
        self.bootstrap = spec.kafka.resolved_bootstrap_servers()
        self._known: set[str] = set()

    def __call__(self, topics: set[str]) -> None:
        new = topics - self._known
        if new:
            kafka = self.kafka
            config = {"cleanup.policy": "delete", "min.insync.replicas": str(kafka.min_insync_replicas)}
            ensure_topics(
                self.bootstrap, [TopicSpec(t, kafka.partitions, kafka.replication_factor, config) for t in sorted(new)]
            )
            self._known |= new


class OutboxRelay:
    """One outbox's relay: a leased connection, a transactional producer and the position store."""

    def __init__(self, spec: Spec, name: str):
        self.spec = spec
        self.name = name
        self.outbox = spec.outboxes[name]
        self.table = table_for(self.outbox)
        self.engine = create_source_engine(spec.sources[self.outbox.source], pool_size=1, max_overflow=2)
        self.router = Router(self.outbox.route, topic_prefix=spec.kafka.topic_prefix, outbox=name)
        self.bootstrap = spec.kafka.resolved_bootstrap_servers()
        self._connection: Connection | None = None
        self._publisher: TransactionalPublisher | None = None
        self._positions: PositionStore | None = None
        self._flusher: Flusher | None = None
        self.ensure_topics = TopicCreator(spec)
        self.last_event_ms: int | None = None
        self.oldest_event_ms: int | None = None
        """occurred_at of the newest and oldest event of the last batch, for the freshness lags."""

    # -- lifecycle ----------------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Connect and take the lease, then start the producer, which fences a zombie.  False: another relay has it."""
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            check_outbox_table(connection, self.outbox)
            if not try_lease(connection, self.outbox):
                connection.close()
                return False
        except BaseException:
            connection.close()
            raise
        if connection.dialect.name == "postgresql":
            # Listen before the first read: every commit after this point wakes ``wait``.
            connection.exec_driver_sql(f'LISTEN "{notify_channel(self.outbox)}"')
        self._connection = connection
        self._publisher = TransactionalPublisher(
            self.bootstrap, transactional_id(self.spec, self.name), self.spec.kafka.producer
        )
        self._positions = PositionStore.for_spec(self.spec.kafka)
        self._flusher = Flusher(
            self._publisher,
            self._positions.topic,
            position_key(self.name),
            FlushPolicy(self.outbox.batch_size, max_age_seconds=0.0, idle_position_seconds=0.0),
            confirm=self.confirm,
        )  # one batch read is one flush: the rows are the position, there is none without them
        return True

    def recover(self) -> int:
        """Clean up rows that the last committed Kafka transaction already holds; never publish them again."""
        assert self._positions is not None and self._connection is not None, "acquire() first"
        stored = OutboxPosition.from_dict(self._positions.get(position_key(self.name)))
        seqs = stored.seqs()
        return self.cleanup(seqs) if seqs else 0

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        if self._connection is not None:
            self._connection.invalidate()  # end the session, so the database drops its lease and LISTEN
            self._connection.close()
            self._connection = None
        self.engine.dispose()

    # -- work ---------------------------------------------------------------------------------------
    def relay_batch(self) -> int:
        """Relay up to ``batch_size`` rows (all three steps); return how many."""
        return len(self._flush(confirm=True))

    def publish_batch(self) -> list[int]:
        """Steps 1 and 2 only: read pending rows, commit their records and position to Kafka; return their seqs."""
        return self._flush(confirm=False)

    def _flush(self, *, confirm: bool) -> list[int]:
        connection, flusher = self._connection, self._flusher
        assert connection is not None and flusher is not None, "acquire() first"
        rows = connection.execute(pending_query(self.table, self.outbox.batch_size)).all()
        if not flusher.due(pending=len(rows), moved=False):
            return []
        records = build_records(rows, self.router)
        times = [record[3] for record in records if record[3]]
        if times:
            self.last_event_ms, self.oldest_event_ms = max(times), min(times)
        self.ensure_topics({record[0] for record in records})
        seqs = [row[0] for row in rows]
        flusher.commit(records, OutboxPosition.of(seqs).to_dict(), confirm=seqs if confirm else None)
        return seqs

    def confirm(self, seqs: Sequence[int]) -> None:
        """Step 3, called by the flusher after the Kafka commit."""
        self.cleanup(seqs)

    def cleanup(self, seqs: Sequence[int]) -> int:
        """Only after the Kafka commit (or for what the stored position says is committed): delete or mark
        exactly these rows."""
        assert self._connection is not None, "acquire() first"
        statement = cleanup_statement(self.table, seqs, self.outbox.cleanup, dialect_of(self._connection))
        return int(self._connection.execute(statement).rowcount or 0)

    def wait(self, timeout: float) -> None:
        """Sleep until rows may be pending: NOTIFY on PostgreSQL, else the timeout."""
        connection = self._connection
        assert connection is not None, "acquire() first"
        if connection.dialect.name != "postgresql":
            time.sleep(timeout)
            return
        driver = connection.connection.driver_connection
        for _ in driver.notifies(timeout=timeout, stop_after=1):  # type: ignore[union-attr]
            break
