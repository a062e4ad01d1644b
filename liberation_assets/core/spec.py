"""The declarative spec: sources, streams, outboxes and Kafka settings.

The spec is YAML validated by pydantic.  Every error names the file, the line
and the field, because the people who write it are not the people who wrote
this code.  Secrets stay as ``${ENV_VAR}`` references and are resolved only when
a connection is made, so they are never stored, printed or shown in the UI.
This module holds the models; reading the YAML is ``core/spec_yaml.py``, the
``${VAR}`` references and secret-safe URLs ``core/spec_env.py``.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import URL, make_url

# re-exported: the spec's public helpers (core/spec_env.py)
from liberation_assets.core.spec_env import SECRET_QUERY_KEYS as SECRET_QUERY_KEYS
from liberation_assets.core.spec_env import literal_url_secret as literal_url_secret
from liberation_assets.core.spec_env import placeholder_url as placeholder_url
from liberation_assets.core.spec_env import render_safe_url as render_safe_url
from liberation_assets.core.spec_env import resolve_env as resolve_env
from liberation_assets.core.spec_env import resolve_url as resolve_url
from liberation_assets.core.spec_env import safe_url_of as safe_url_of
from liberation_assets.core.spec_yaml import read_spec_text, validate_yaml

DEFAULT_SPEC_FILE = "liberation.yaml"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
SUPPORTED_DIALECTS = ("postgresql", "mysql", "mariadb", "sqlite")


def _parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])
    raise ValueError(f"expected a duration such as 30s, 5m, 2h or 1d, got {value!r}")


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


ValueFormatName = Literal["debezium", "connect-json", "flat"]
"""debezium: the JSON envelope; connect-json: Kafka Connect JSON with schemas; flat: the row, deletes as tombstones."""


class KafkaSpec(_Model):
    """Where and how topics are written."""

    bootstrap_servers: str = "${LIBERATION_KAFKA_BOOTSTRAP:-127.0.0.1:${LIBERATION_KAFKA_PORT:-19092}}"
    topic_prefix: str = "liberation"
    partitions: int = Field(default=1, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    positions_topic: str = "liberation.positions"
    connect_timeout: Duration = timedelta(seconds=10)
    """How long a command waits for the broker to answer before it reports the broker unreachable."""
    producer: dict[str, str | int | float | bool] = Field(default_factory=dict)
    format: ValueFormatName = "debezium"
    """The value format of every stream that names none (docs/consumers.md)."""

    def resolved_bootstrap_servers(self) -> str:
        return resolve_env(self.bootstrap_servers)


Mode = Literal["micro_batch", "continuous"]
"""How a source's log or an outbox is read: runs per micro-batch, or one follower streaming continuously."""


class CdcSpec(_Model):
    """Log-based capture settings of one source database (PostgreSQL slot or MySQL binlog)."""

    slot: str | None = None
    """PostgreSQL: the logical replication slot; default ``liberation_<source>``."""
    publication: str | None = None
    """PostgreSQL: the publication; default ``liberation_<source>``."""
    heartbeat_every: Duration = timedelta(seconds=10)
    server_id: int | None = None
    """MySQL/MariaDB: the replica server id this reader presents; default derived from the source name."""
    batch_size: int = Field(default=5000, ge=1)
    snapshot_chunk: int = Field(default=10000, ge=1)


class SourceSpec(_Model):
    """A source database, reached through a SQLAlchemy URL."""

    url: str
    timezone: str = "UTC"
    safety_lag: Duration = timedelta(seconds=0)
    clock_skew: Duration = timedelta(seconds=1)
    cdc: CdcSpec = Field(default_factory=CdcSpec)
    mode: Mode = "micro_batch"
    """How the source's log (its cdc streams) is read: ``micro_batch`` runs requested by a sensor, or
    ``continuous``, one long-lived follower supervised by Dagster (docs/operations.md). Query streams always poll."""

    @field_validator("url")
    @classmethod
    def _url_parses(cls, value: str) -> str:
        placeholder = placeholder_url(value)
        try:
            url = make_url(placeholder)
        except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
            raise ValueError(
                f"not a SQLAlchemy URL such as postgresql+psycopg://user:${{PASSWORD}}@host:5432/db ({exc})"
            ) from None
        if url.get_backend_name() not in SUPPORTED_DIALECTS:
            raise ValueError(
                f"unsupported database {url.get_backend_name()!r}; expected one of {', '.join(SUPPORTED_DIALECTS)}"
            )
        if url.get_backend_name() != "sqlite" and (where := literal_url_secret(value)):
            # A literal secret in the spec would end up in git and in the UI.
            raise ValueError(
                f"{where} is written literally; take it from an environment variable, "
                "e.g. postgresql+psycopg://user:${PG_PASSWORD}@host/db"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Berlin") from None
        return value

    def resolved_url(self) -> URL:
        """The connection URL with secrets filled in.  Never log it; use ``safe_url``."""
        return resolve_url(self.url)

    def safe_url(self) -> str:
        """The resolved address without its password: what is printed (the spec's defaults may be overridden)."""
        return safe_url_of(self.url)

    @property
    def dialect(self) -> str:
        name = make_url(placeholder_url(self.url)).get_backend_name()
        return "mysql" if name == "mariadb" else name


class FreshnessSpec(_Model):
    """How stale a stream may get before the UI warns and then fails it."""

    fail_after: Duration = timedelta(minutes=15)
    warn_after: Duration | None = None


class ColumnContract(_Model):
    """One column of a stream's public contract."""

    type: Literal["int", "float", "decimal", "str", "bool", "datetime", "date", "json", "uuid", "bytes", "time"]
    nullable: bool = True
    ge: float | None = None
    le: float | None = None
    isin: list[Any] | None = None
    max_length: int | None = Field(default=None, ge=1)


class SoftDeleteSpec(_Model):
    """A column whose value marks a row as deleted; such rows are published as deletes."""

    column: str
    deleted_when: Literal["not_null", "true"] = "not_null"


class SnapshotPartitionsSpec(_Model):
    """Key ranges of the first key column (an integer), so a snapshot backfill runs as parallel partitions.

    Either ``size`` with ``upto`` (and ``start``, default 0), or explicit split points in ``bounds``.
    The first range is open below and the last open above, so every key is in exactly one partition.
    """

    size: int | None = Field(default=None, ge=1)
    upto: int | None = None
    start: int = 0
    bounds: list[int] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_way(self) -> "SnapshotPartitionsSpec":
        if (self.bounds is None) == (self.size is None):
            raise ValueError("give either size (with upto) or bounds")
        if self.size is not None and (self.upto is None or self.upto <= self.start + self.size):
            raise ValueError("size needs upto, at least one size above start")
        points = self.split_points()
        if any(a >= b for a, b in zip(points, points[1:])):
            raise ValueError("bounds must increase")
        if len(points) >= 10_000:
            raise ValueError(f"{len(points) + 1} partitions; use a larger size (at most 10000 partitions)")
        return self

    def split_points(self) -> list[int]:
        if self.bounds is not None:
            return list(self.bounds)
        assert self.size is not None and self.upto is not None
        return list(range(self.start + self.size, self.upto, self.size))

    def ranges(self) -> dict[str, tuple[int | None, int | None]]:
        """Partition name → half-open key range [low, high); None is unbounded."""
        edges: list[int | None] = [None, *self.split_points(), None]
        return {
            f"{'min' if low is None else low}..{'max' if high is None else high}": (low, high)
            for low, high in zip(edges, edges[1:])
        }


Pattern = Literal["snapshot", "query", "cdc"]


class StreamSpec(_Model):
    """One source table liberated as one compacted topic."""

    source: str
    table: str
    db_schema: str | None = Field(default=None, alias="schema")
    key: list[str] = Field(min_length=1)
    cursor: str | None = "updated_at"
    patterns: list[Pattern] = Field(default_factory=lambda: list[Pattern](["snapshot", "query"]), min_length=1)
    projection: dict[str, str] | list[str] | None = None
    topic: str | None = None
    poll_every: Duration = timedelta(minutes=1)
    reconcile_every: Duration = timedelta(hours=1)
    batch_size: int = Field(default=5000, ge=1)
    snapshot_chunk: int = Field(default=10000, ge=1)
    snapshot_partitions: SnapshotPartitionsSpec | None = None
    """Split the snapshot into key ranges: in Dagster, one partition each, backfilled in parallel."""
    partitions: int | None = Field(default=None, ge=1)
    timezone: str | None = None
    safety_lag: Duration | None = None
    soft_delete: SoftDeleteSpec | None = None
    freshness: FreshnessSpec = Field(default_factory=FreshnessSpec)
    contract: dict[str, ColumnContract] | str | None = None
    """Column contracts, or ``"package.module:Model"`` naming a pandera DataFrameModel."""
    on_violation: Literal["quarantine", "halt"] = "quarantine"
    toast: Literal["replica_identity_full", "reread"] = "replica_identity_full"
    format: ValueFormatName | None = None
    """The value format of this stream's topic; default ``kafka.format``."""
    owners: list[str] = Field(default_factory=list)
    """Who answers for the stream, shown in Dagster: e-mail addresses or ``team:<name>``."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Labels shown in Dagster and usable in asset selections (``tag:domain=catalog``)."""

    @field_validator("owners")
    @classmethod
    def _owners_are_people_or_teams(cls, owners: list[str]) -> list[str]:
        for owner in owners:
            if "@" not in owner and not re.fullmatch(r"team:[A-Za-z0-9_.-]+", owner):
                raise ValueError(f"owner {owner!r} is neither an e-mail address nor team:<name>")
        return owners

    @model_validator(mode="before")
    @classmethod
    def _cursor_only_where_polled(cls, data: Any) -> Any:
        """The cursor defaults to updated_at for polled streams; log-based streams need none."""
        if isinstance(data, dict) and "cursor" not in data and "query" not in data.get("patterns", ["query"]):
            return {**data, "cursor": None}
        return data

    @model_validator(mode="after")
    def _query_needs_cursor(self) -> "StreamSpec":
        if "query" in self.patterns and not self.cursor:
            raise ValueError("the query pattern needs a cursor column (for example updated_at)")
        return self

    def columns(self) -> dict[str, str]:
        """Public name → source column, in publishing order.  The key is always published."""
        if self.projection is None:
            return {}
        if isinstance(self.projection, list):
            return {name: name for name in self.projection}
        return dict(self.projection)


class OutboxSpec(_Model):
    """An outbox table, relayed to per-aggregate topics."""

    source: str
    table: str = "outbox"
    db_schema: str | None = Field(default=None, alias="schema")
    route: str = "outbox.event.{aggregatetype}"
    cleanup: Literal["delete", "mark"] = "delete"
    via: Literal["poll", "cdc"] = "poll"
    batch_size: int = Field(default=1000, ge=1)
    poll_every: Duration = timedelta(seconds=30)
    freshness: FreshnessSpec = Field(default_factory=FreshnessSpec)
    follow_poll_every: Duration = timedelta(milliseconds=250)
    """`liberation follow`: idle polling period; on PostgreSQL NOTIFY wakes it at once, so this is a safety net."""
    mode: Mode = "micro_batch"
    """``micro_batch`` relay runs requested by a sensor, or ``continuous``: one long-lived relay supervised by Dagster."""

    @field_validator("route")
    @classmethod
    def _route_placeholders(cls, value: str) -> str:
        try:
            value.format(aggregatetype="a", topic_prefix="p", outbox="o")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"route may use only {{aggregatetype}}, {{topic_prefix}} and {{outbox}} ({exc})") from None
        return value


class AutomationSpec(_Model):
    """Whether Dagster schedules and sensors start running when the code location loads (Dagster's default: stopped)."""

    schedules: Literal["stopped", "running"] = "stopped"
    sensors: Literal["stopped", "running"] = "stopped"


class Spec(_Model):
    """The whole spec file."""

    kafka: KafkaSpec = Field(default_factory=KafkaSpec)
    automation: AutomationSpec = Field(default_factory=AutomationSpec)
    sources: dict[str, SourceSpec] = Field(min_length=1)
    streams: dict[str, StreamSpec] = Field(default_factory=dict)
    outboxes: dict[str, OutboxSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references_resolve(self) -> "Spec":
        for name, stream in self.streams.items():
            if stream.source not in self.sources:
                raise ValueError(
                    f"streams.{name}.source: unknown source {stream.source!r}; defined: {sorted(self.sources)}"
                )
        for name, outbox in self.outboxes.items():
            if outbox.source not in self.sources:
                raise ValueError(
                    f"outboxes.{name}.source: unknown source {outbox.source!r}; defined: {sorted(self.sources)}"
                )
        for name, source in self.sources.items():
            if source.mode == "continuous" and not any(
                s.source == name and "cdc" in s.patterns for s in self.streams.values()
            ):
                raise ValueError(
                    f"sources.{name}.mode: continuous needs a stream with the cdc pattern on this source "
                    "(query streams always poll; an outbox sets its own mode)"
                )
        return self

    def continuous_sources(self) -> list[str]:
        """Sources whose log, and outboxes that, are read by one long-lived follower instead of micro-batch runs."""
        return [
            *(n for n, s in self.sources.items() if s.mode == "continuous"),
            *(n for n, o in self.outboxes.items() if o.mode == "continuous"),
        ]

    def transactional_id(self, *parts: str) -> str:
        """A producer's stable transactional.id, scoped by the topic prefix so separate deployments never fence each other."""
        return ".".join((self.kafka.topic_prefix, *parts))

    def topic_for(self, stream_name: str) -> str:
        stream = self.streams[stream_name]
        if stream.topic:
            return stream.topic
        middle = stream.db_schema or stream.source
        # Kafka allows only ASCII letters, digits, '.', '_' and '-': other characters of a quoted identifier fold to '_'.
        return f"{self.kafka.topic_prefix}.{_TOPIC_UNSAFE.sub('_', middle)}.{_TOPIC_UNSAFE.sub('_', stream.table)}"

    def format_for(self, stream_name: str) -> str:
        return self.streams[stream_name].format or self.kafka.format

    def timezone_for(self, stream_name: str) -> str:
        stream = self.streams[stream_name]
        return stream.timezone or self.sources[stream.source].timezone


_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_spec_path() -> Path:
    return Path(os.environ.get("LIBERATION_SPEC", DEFAULT_SPEC_FILE))


def load_spec(path: str | Path | None = None) -> Spec:
    """Read and validate a spec file; raise SpecError naming file, line and field."""
    spec_path = Path(path) if path is not None else default_spec_path()
    return parse_spec(read_spec_text(spec_path), source_name=str(spec_path))


def parse_spec(text: str, *, source_name: str = DEFAULT_SPEC_FILE) -> Spec:
    """Parse and validate spec text (``core/spec_yaml.py``); raise SpecError naming file, line and field."""
    return validate_yaml(text, Spec, source_name)
