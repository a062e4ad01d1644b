"""The replica database: one table per stream, and the topic offsets it has consumed.

Rows and offsets change in one database transaction per batch, so the replica
never holds a record twice or skips one, whatever kills it.  A row is kept as
the after-image JSON with sorted keys: exactly what a consumer sees, in any
column types.  Its hash is computed when the replica is compared, from the
document itself, so an edited row cannot hide behind a stale hash.  Query it with SQLite's ``json_extract(document, '$.sku')``
or PostgreSQL's ``document::jsonb ->> 'sku'``.

SQLite is the default (one file per stream, no server); PostgreSQL holds every
stream's replica in one database when several machines need to read it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.errors import SpecError
from liberation_assets.core.paths import stack_dir
from liberation_assets.core.spec_env import resolve_env
from liberation_assets.core.verify.compare import canonical, document_hash

REPLICA_URL_ENV = "LIBERATION_REPLICA_URL"
"""A SQLAlchemy URL; ``{stream}`` and ``{topic}`` are replaced, e.g. ``sqlite:////data/replicas/{stream}.sqlite``."""
SUPPORTED = ("sqlite", "postgresql")

Change = tuple[bytes, int, int] | None
"""(document, partition, offset) to upsert, or None to delete the key."""


def default_replica_dir() -> str:
    return str(stack_dir() / "replicas")


def replica_url(stream: str, topic: str, template: str | None = None) -> str:
    """The replica URL of a stream: the given template, $LIBERATION_REPLICA_URL, or a SQLite file under .stack/replicas."""
    chosen = template or os.environ.get(REPLICA_URL_ENV) or f"sqlite:///{default_replica_dir()}/{{topic}}.sqlite"
    return resolve_env(chosen).replace("{stream}", stream).replace("{topic}", topic)


def replica_table_name(stream: str) -> str:
    return "replica_" + re.sub(r"[^a-z0-9_]", "_", stream.lower())[:55]


@dataclass
class ReplicaState:
    """What the replica has consumed: the topic, the next offset per partition, the newest event time."""

    topic: str | None = None
    offsets: dict[int, int] = field(default_factory=dict)
    last_event_ms: int | None = None


class ReplicaStore:
    """Replica tables in one SQLite or PostgreSQL database."""

    def __init__(self, url: str):
        parsed = sa.make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in SUPPORTED:
            raise SpecError(f"replica database {parsed.render_as_string(hide_password=True)}: use sqlite or postgresql")
        self.safe_url = parsed.render_as_string(hide_password=True)
        self.engine = _engine(parsed)
        self.metadata = sa.MetaData()
        self.offsets_table = sa.Table(
            "liberation_replica_offsets",
            self.metadata,
            sa.Column("replica", sa.String(64), primary_key=True),
            sa.Column("kafka_partition", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("next_offset", sa.BigInteger, nullable=False),
        )
        self.state_table = sa.Table(
            "liberation_replica_state",
            self.metadata,
            sa.Column("replica", sa.String(64), primary_key=True),
            sa.Column("topic", sa.Text, nullable=False),
            sa.Column("last_event_ms", sa.BigInteger),
        )
        self._tables: dict[str, sa.Table] = {}

    def table(self, name: str) -> sa.Table:
        """The replica table, created on first use."""
        if name not in self._tables:
            table = sa.Table(
                name,
                self.metadata,
                sa.Column("key", sa.Text, primary_key=True),
                sa.Column("document", sa.Text, nullable=False),
                sa.Column("kafka_partition", sa.Integer, nullable=False),
                sa.Column("kafka_offset", sa.BigInteger, nullable=False),
            )
            self.metadata.create_all(self.engine, tables=[self.offsets_table, self.state_table, table])
            self._tables[name] = table
        return self._tables[name]

    def state(self, name: str) -> ReplicaState:
        self.table(name)
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(self.state_table).where(self.state_table.c.replica == name)).first()
            offsets = connection.execute(
                sa.select(self.offsets_table.c.kafka_partition, self.offsets_table.c.next_offset).where(
                    self.offsets_table.c.replica == name
                )
            ).all()
        if row is None:
            return ReplicaState(offsets={p: o for p, o in offsets})
        return ReplicaState(row.topic, {p: o for p, o in offsets}, row.last_event_ms)

    def reset(self, name: str, topic: str) -> None:
        """Forget every row and offset: the next apply rebuilds from the topic's beginning."""
        table = self.table(name)
        with self.engine.begin() as connection:
            connection.execute(table.delete())
            connection.execute(self.offsets_table.delete().where(self.offsets_table.c.replica == name))
            connection.execute(self.state_table.delete().where(self.state_table.c.replica == name))
            connection.execute(self.state_table.insert().values(replica=name, topic=topic, last_event_ms=None))

    def apply(
        self, name: str, changes: dict[bytes, Change], offsets: dict[int, int], last_event_ms: int | None
    ) -> None:
        """Upserts, deletes and the new offsets, in one transaction."""
        table = self.table(name)
        upserts = [
            {"key": k.decode(), "document": c[0].decode(), "kafka_partition": c[1], "kafka_offset": c[2]}
            for k, c in changes.items()
            if c is not None
        ]
        deletes = [{"k": k.decode()} for k, c in changes.items() if c is None]
        with self.engine.begin() as connection:
            if deletes:
                connection.execute(table.delete().where(table.c.key == sa.bindparam("k")), deletes)
            if upserts:
                connection.execute(
                    self._upsert(table, ["key"], ["document", "kafka_partition", "kafka_offset"]), upserts
                )
            connection.execute(
                self._upsert(self.offsets_table, ["replica", "kafka_partition"], ["next_offset"]),
                [{"replica": name, "kafka_partition": p, "next_offset": o} for p, o in offsets.items()],
            )
            if last_event_ms is not None:
                state = self.state_table
                connection.execute(
                    state.update()
                    .where(state.c.replica == name)
                    .values(
                        last_event_ms=sa.case(
                            (state.c.last_event_ms > last_event_ms, state.c.last_event_ms), else_=last_event_ms
                        )
                    )
                )

    def _upsert(self, table: sa.Table, index: list[str], update: list[str]) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            pg = pg_insert(table)
            return pg.on_conflict_do_update(index_elements=index, set_={c: pg.excluded[c] for c in update})
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(table)
        return lite.on_conflict_do_update(index_elements=index, set_={c: lite.excluded[c] for c in update})

    def hashes(self, name: str) -> Iterator[tuple[bytes, str]]:
        """(key, row hash) of every replica row, streamed; the hash is of the document as stored now."""
        table = self.table(name)
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=10_000).execute(
                sa.select(table.c.key, table.c.document)
            )
            for key, document in result:
                yield key.encode(), document_hash(canonical(orjson.loads(document)))

    def documents(self, name: str) -> Iterator[tuple[bytes, str]]:
        """(key, after-image JSON) of every replica row, streamed."""
        table = self.table(name)
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=10_000).execute(
                sa.select(table.c.key, table.c.document)
            )
            for key, document in result:
                yield key.encode(), document

    def rows(self, name: str) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(self.table(name))).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


def _engine(url: sa.URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets the comparison read while a rerun writes; NORMAL is durable enough for a rebuildable copy.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
