"""Build the core objects a stream or source needs, from the spec alone."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy.engine import Engine

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.contract.formats import ValueFormat, value_format
from liberation_assets.core.contract.gate import ensure_schema
from liberation_assets.core.contract.history import SchemaVersion
from liberation_assets.core.contract.quarantine import quarantine_topic
from liberation_assets.core.contract.schema import StreamSchema
from liberation_assets.core.contract.validate import ContractValidator
from liberation_assets.core.engine.writer import StreamWriter
from liberation_assets.core.events import StreamIdentity
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.publish.publisher import TransactionalPublisher
from liberation_assets.core.publish.topics import TopicSpec, ensure_topics
from liberation_assets.core.spec import Spec, StreamSpec


def stream_format(spec: Spec, name: str, pattern: str, schema: StreamSchema) -> ValueFormat:
    """The value format the spec chose for a stream, for the published schema it writes under."""
    return value_format(spec.format_for(name), schema=schema, topic=spec.topic_for(name), pattern=pattern)


def position_key(stream: str, pattern: str, part: str | None = None) -> str:
    """Keys in the positions topic: ``stream/<name>/<pattern>[/<part>]``."""
    return f"stream/{stream}/{pattern}" + (f"/{part}" if part else "")


def source_position_key(source_name: str) -> str:
    """The key of a log-based source's position (PostgreSQL slot or binlog), shared by all its streams."""
    return f"source/{source_name}/cdc"


def cdc_streams(spec: Spec, source_name: str) -> list[str]:
    """The source's streams that use the cdc pattern."""
    return [name for name, stream in spec.streams.items() if stream.source == source_name and "cdc" in stream.patterns]


@dataclass
class StreamRuntime:
    """Everything one stream's reader needs to publish: engine, topics, writer, positions."""

    spec: Spec
    name: str
    pattern: str
    transactional_suffix: str = ""

    @property
    def stream(self) -> StreamSpec:
        return self.spec.streams[self.name]

    @property
    def topic(self) -> str:
        return self.spec.topic_for(self.name)

    @property
    def bootstrap(self) -> str:
        return self.spec.kafka.resolved_bootstrap_servers()

    @cached_property
    def engine(self) -> Engine:
        return create_source_engine(self.spec.sources[self.stream.source])

    @cached_property
    def identity(self) -> StreamIdentity:
        url = self.spec.sources[self.stream.source].resolved_url()
        return StreamIdentity(
            name=self.name,
            topic=self.topic,
            pattern=self.pattern,
            db=url.database or "",
            db_schema=self.stream.db_schema,
            table=self.stream.table,
            schema_version=self.schema.version,
            timezone=self.spec.timezone_for(self.name),
        )

    @cached_property
    def schema(self) -> SchemaVersion:
        """The published schema version; the compatibility gate raises SchemaIncompatible here, before any publish."""
        return ensure_schema(self.spec, self.name, self.engine)

    def ensure_topics(self) -> None:
        kafka = self.spec.kafka
        partitions = self.stream.partitions or kafka.partitions
        compacted = {"cleanup.policy": "compact", "min.insync.replicas": str(kafka.min_insync_replicas)}
        keep_all = {
            "cleanup.policy": "delete",
            "retention.ms": "-1",
            "min.insync.replicas": str(kafka.min_insync_replicas),
        }
        ensure_topics(
            self.bootstrap,
            [
                TopicSpec(self.topic, partitions, kafka.replication_factor, compacted),
                TopicSpec(quarantine_topic(self.topic), partitions, kafka.replication_factor, keep_all),
            ],
        )

    @cached_property
    def publisher(self) -> TransactionalPublisher:
        tid = self.spec.transactional_id(self.name, self.pattern) + self.transactional_suffix
        return TransactionalPublisher(self.bootstrap, tid, self.spec.kafka.producer)

    @cached_property
    def positions(self) -> PositionStore:
        return PositionStore.for_spec(self.spec.kafka)

    @cached_property
    def writer(self) -> StreamWriter:
        self.ensure_topics()
        return self.writer_on(self.publisher, self.positions.topic)

    def writer_on(self, publisher: TransactionalPublisher, positions_topic: str) -> StreamWriter:
        """This stream's writer on ``publisher`` (a MariaDB source shares one publisher across its streams)."""
        return StreamWriter(
            self.identity,
            publisher,
            positions_topic,
            ContractValidator(self.stream.contract, self.stream.key),
            halt_on_violation=self.stream.on_violation == "halt",
            value_format=self.value_format,
        )

    @cached_property
    def value_format(self) -> ValueFormat:
        return stream_format(self.spec, self.name, self.pattern, self.schema.schema)

    def positions_for(self, key: str) -> dict[str, Any] | None:
        """A committed position; builds the writer first, so a crashed run's open transaction is fenced."""
        _ = self.writer
        return self.positions.get(key)

    def close(self) -> None:
        if "publisher" in self.__dict__:
            self.publisher.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
