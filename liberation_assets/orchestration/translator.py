"""One place that turns a spec stream and a pattern into an asset's fields (as dagster-dlt's and dagster-sling's translators do).

Every pattern module asks this module for an asset's key and its spec fields
(``spec_fields``), so keys, kinds, groups, descriptions, table metadata,
owners and tags are derived once.  The lineage it draws tells the story
table → stream → topic → replica:

- each source table is an external asset (``table_key``), upstream of the
  assets that read it;
- each stream's Kafka topic is an external asset (``topic_key``) downstream of
  the assets that publish it, and upstream of the replica (and of users' own
  assets, which should depend on it);
- every node's name says its stream: ``products/products_incremental``, so two
  nodes of one group never read the same.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import dagster as dg

from liberation_assets.core.spec import ColumnContract, OutboxSpec, Spec, StreamSpec

if TYPE_CHECKING:
    Materialized = dg.MaterializeResult[None]
else:  # Dagster recognises only the bare class as an asset's result annotation
    Materialized = dg.MaterializeResult
"""What an asset function returns (or yields): a ``MaterializeResult`` without a value."""

LEAVES = ("snapshot", "incremental", "reconcile", "cdc", "replica", "relay", "topic")
_PATTERN_LEAVES = {"snapshot": ("snapshot",), "query": ("incremental", "reconcile"), "cdc": ("cdc",)}
_DIALECT_KINDS = {"postgresql": "postgres", "mysql": "mariadb", "sqlite": "sqlite"}
_PATTERN_KINDS = {
    "snapshot": "snapshot",
    "incremental": "query",
    "reconcile": "reconcile",
    "cdc": "cdc",
    "relay": "outbox",
}


# --- keys and names -------------------------------------------------------------------------------------------------


def asset_key(stream: str, leaf: str) -> dg.AssetKey:
    """``<stream>/<stream>_<leaf>``: the first part groups a stream's assets, the last (the node's name) says which."""
    return dg.AssetKey([stream, f"{stream}_{leaf}"])


def topic_key(stream: str) -> dg.AssetKey:
    return asset_key(stream, "topic")


def table_key(source: str, table: str, schema: str | None = None) -> dg.AssetKey:
    """``<source>/[<schema>/]<table>``: one external asset per source table, however many streams read it."""
    return dg.AssetKey([source, *([schema] if schema else []), table])


def stream_table_key(spec: Spec, name: str) -> dg.AssetKey:
    stream = spec.streams[name]
    return table_key(stream.source, stream.table, stream.db_schema)


def group_name(source: str) -> str:
    """One asset group per source database."""
    return source


def job_name(subject: str, action: str) -> str:
    """``<subject>_<action>``, e.g. ``shop_poll``, ``products_reconcile``, ``shop_drain``, ``shop_outbox_relay``: one naming scheme for jobs."""
    return f"{subject}_{action}"


def sensor_name(subject: str, pattern: str) -> str:
    """``<subject>_<pattern>_sensor``, e.g. ``shop_poll_sensor``, ``shop_cdc_sensor``, ``shop_outbox_relay_sensor``."""
    return f"{subject}_{pattern}_sensor"


def schedule_name(subject: str, action: str) -> str:
    """``<subject>_<action>_schedule``: the schedule of the job ``<subject>_<action>``."""
    return f"{job_name(subject, action)}_schedule"


def asset_job(
    subject: str,
    action: str,
    keys: list[dg.AssetKey],
    description: str,
    tags: Mapping[str, str] | None = None,
    **options: Any,
) -> dg.UnresolvedAssetJobDefinition:
    """A named job over some assets, so a sensor's or schedule's runs say what they are (``shop_drain``), never
    ``__ASSET_JOB``; ``options`` go to ``define_asset_job`` (partitions, executor)."""
    return dg.define_asset_job(
        job_name(subject, action),
        selection=dg.AssetSelection.assets(*keys),
        description=description,
        tags=dict(tags) if tags else None,
        **options,
    )


def publishing_leaves(spec: Spec, name: str) -> list[str]:
    """The leaves of the assets that publish a stream, in the order a run materializes them."""
    stream = spec.streams[name]
    return [leaf for pattern, leaves in _PATTERN_LEAVES.items() if pattern in stream.patterns for leaf in leaves]


def publishing_keys(spec: Spec, name: str) -> list[dg.AssetKey]:
    return [asset_key(name, leaf) for leaf in publishing_leaves(spec, name)]


# --- readable values ------------------------------------------------------------------------------------------------


def duration(value: timedelta | None) -> str:
    """``1m``, ``1h30m``, ``500ms``: as a spec writes durations, not ``0:01:00``."""
    if value is None:
        return "-"
    total_ms = round(value.total_seconds() * 1000)
    if total_ms % 1000:
        return f"{total_ms}ms"
    seconds = total_ms // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def lsn_text(value: int) -> str:
    """A PostgreSQL LSN as PostgreSQL prints it: ``0/16B3748``."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def readable_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Run metadata for the UI: epoch milliseconds as timestamps, LSNs as ``0/…`` text, the rest unchanged (plotted)."""
    shown: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            shown[key] = value
        elif key.endswith("_epoch_ms"):
            shown[key.removesuffix("_epoch_ms")] = dg.MetadataValue.timestamp(value / 1000)
        elif key == "lsn" or key.endswith("_lsn"):
            shown[key] = dg.MetadataValue.text(lsn_text(int(value)))
        else:
            shown[key] = value
    return shown


# --- table metadata -------------------------------------------------------------------------------------------------


def _constraints(contract: ColumnContract | None) -> list[str]:
    if contract is None:
        return []
    found = []
    if contract.ge is not None:
        found.append(f">= {contract.ge:g}")
    if contract.le is not None:
        found.append(f"<= {contract.le:g}")
    if contract.isin is not None:
        found.append("in [" + ", ".join(str(v) for v in contract.isin) + "]")
    if contract.max_length is not None:
        found.append(f"max length {contract.max_length}")
    return found


def public_columns(stream: StreamSpec) -> dict[str, str]:
    """Public name → source column: the projection, else the key and the contract's columns."""
    columns = stream.columns()
    if columns:
        return columns
    contract = stream.contract if isinstance(stream.contract, dict) else {}
    return {name: name for name in dict.fromkeys([*stream.key, *contract])}


def column_schema(stream: StreamSpec) -> dg.TableSchema:
    """The published columns, with nullability, the key as primary key (unique when alone) and the contract's checks."""
    contract = stream.contract if isinstance(stream.contract, dict) else {}
    columns = []
    for public, source in public_columns(stream).items():
        rule = contract.get(public)
        in_key = public in stream.key
        other = (["primary key"] if in_key else []) + _constraints(rule)
        nullable = False if in_key else (rule.nullable if rule else True)
        description = f"source column {source}" if source != public else None
        columns.append(
            dg.TableColumn(
                name=public,
                type=rule.type if rule else "as source",
                description=description,
                constraints=dg.TableColumnConstraints(
                    nullable=nullable, unique=in_key and len(stream.key) == 1, other=other
                ),
            )
        )
    return dg.TableSchema(columns=columns)


def column_lineage(spec: Spec, name: str) -> dg.TableColumnLineage:
    """Each public column from its source column of the source table."""
    table = stream_table_key(spec, name)
    return dg.TableColumnLineage(
        deps_by_column={
            public: [dg.TableColumnDep(asset_key=table, column_name=source)]
            for public, source in public_columns(spec.streams[name]).items()
        }
    )


def _qualified(source: str, table: str, schema: str | None) -> str:
    return ".".join([source, *([schema] if schema else []), table])


# --- asset fields ---------------------------------------------------------------------------------------------------


class AssetFields(TypedDict):
    """The keyword arguments the translator gives ``@dg.asset`` and ``dg.AssetSpec``."""

    key: dg.AssetKey
    group_name: str
    kinds: set[str]
    description: str
    deps: list[dg.AssetKey]
    metadata: dict[str, Any]
    owners: list[str]
    tags: dict[str, str]


def _db_kind(spec: Spec, source: str) -> str:
    dialect = spec.sources[source].dialect
    return _DIALECT_KINDS.get(dialect, dialect)


def replica_kind(replica_url: str | None = None) -> str:
    """``sqlite`` or ``postgres``, from the replica URL ($LIBERATION_REPLICA_URL or the SQLite default)."""
    import os

    url = replica_url or os.environ.get("LIBERATION_REPLICA_URL", "") or "sqlite://"
    return "postgres" if url.startswith("postgres") else url.split(":", 1)[0].split("+", 1)[0]


def _description(spec: Spec, name: str, leaf: str) -> str:
    stream = spec.streams[name]
    topic = spec.topic_for(name)
    table = stream.table
    if leaf == "snapshot":
        return f"Resumable, chunked snapshot of {table} into {topic}: one read event per row."
    if leaf == "incremental":
        return (
            f"Polls {table} every {duration(stream.poll_every)} on ({stream.cursor}, {', '.join(stream.key)}), "
            f"below the late-commit ceiling, into {topic}."
        )
    if leaf == "reconcile":
        return (
            f"Hard deletes of {table}: a delete and a tombstone for every key live in {topic} but gone from the "
            f"source (every {duration(stream.reconcile_every)})."
        )
    if leaf == "cdc" and spec.sources[stream.source].dialect == "postgresql":
        from liberation_assets.core.readers.pg_slot import SlotNames

        slot = SlotNames.for_source(stream.source, spec.sources[stream.source])
        return (
            f"Changes of {table} from replication slot {slot.slot} (pgoutput) into {topic}: "
            "snapshot first, then every insert, update, delete and truncate."
        )
    if leaf == "cdc":
        return (
            f"Changes of {table} read from the MariaDB/MySQL binlog of {stream.source} into {topic}, "
            "after a consistent snapshot."
        )
    if leaf == "replica":
        return (
            f"{table} rebuilt from {topic} (read_committed, upserts and tombstones), incrementally, "
            "and compared with the source row by row."
        )
    if leaf == "topic":
        return (
            f"The compacted Kafka topic {topic}: one record per change of {table}, keyed by "
            f"{', '.join(stream.key)}. Consumers depend on this asset."
        )
    raise ValueError(f"unknown leaf {leaf!r}")


def _kinds(spec: Spec, name: str, leaf: str) -> set[str]:
    """At most three kinds (Dagster's limit): the database, Kafka, the pattern; replicas name their store, not Kafka."""
    source = spec.streams[name].source
    if leaf == "replica":
        return {replica_kind(), "replica"}
    if leaf == "topic":
        return {"kafka", "topic"}
    return {_db_kind(spec, source), "kafka", _PATTERN_KINDS[leaf]}


def _metadata(spec: Spec, name: str, leaf: str) -> dict[str, Any]:
    from liberation_assets.core.verify.store import replica_table_name

    stream = spec.streams[name]
    metadata: dict[str, Any] = {"topic": spec.topic_for(name), "table": stream.table, "pattern": leaf}
    if leaf == "cdc" and spec.sources[stream.source].dialect == "postgresql":
        from liberation_assets.core.readers.pg_slot import SlotNames

        slot = SlotNames.for_source(stream.source, spec.sources[stream.source])
        metadata.update(slot=slot.slot, publication=slot.publication)
    table_name = (
        replica_table_name(name)
        if leaf == "replica"
        else spec.topic_for(name)
        if leaf == "topic"
        else _qualified(stream.source, stream.table, stream.db_schema)
    )
    metadata.update({"dagster/column_schema": column_schema(stream), "dagster/table_name": table_name})
    if leaf != "replica":
        metadata["dagster/column_lineage"] = column_lineage(spec, name)
    return metadata


def _deps(spec: Spec, name: str, leaf: str) -> list[dg.AssetKey]:
    """The source table feeds every publishing asset; the incremental poll follows the snapshot; the reconcile the poll."""
    stream = spec.streams[name]
    table = [stream_table_key(spec, name)]
    if leaf == "incremental" and "snapshot" in stream.patterns:
        return [*table, asset_key(name, "snapshot")]
    if leaf == "reconcile":
        return [*table, asset_key(name, "incremental")]
    if leaf == "topic":
        return publishing_keys(spec, name)
    if leaf == "replica":  # the publishing assets too, so a run of the main job verifies what it just published
        return [*publishing_keys(spec, name), topic_key(name)]
    return table


def spec_fields(spec: Spec, name: str, leaf: str) -> AssetFields:
    """The ``@dg.asset`` / ``dg.AssetSpec`` keyword arguments of a stream's asset: key, group, kinds, deps,
    description, table metadata, owners and tags."""
    stream = spec.streams[name]
    return {
        "key": asset_key(name, leaf),
        "group_name": group_name(stream.source),
        "kinds": _kinds(spec, name, leaf),
        "description": _description(spec, name, leaf),
        "deps": _deps(spec, name, leaf),
        "metadata": _metadata(spec, name, leaf),
        "owners": list(stream.owners),
        "tags": dict(stream.tags),
    }


def outbox_fields(spec: Spec, name: str) -> AssetFields:
    """The ``@dg.asset`` keyword arguments of an outbox's relay asset."""
    outbox: OutboxSpec = spec.outboxes[name]
    return {
        "key": asset_key(name, "relay"),
        "group_name": group_name(outbox.source),
        "kinds": {_db_kind(spec, outbox.source), "kafka", "outbox"},
        "description": (
            f"Relays committed rows of the outbox table {outbox.table} to {outbox.route}, exactly once: "
            f"records and position in one Kafka transaction, then {outbox.cleanup} the rows "
            f"(checked every {duration(outbox.poll_every)})."
        ),
        "deps": [table_key(outbox.source, outbox.table, outbox.db_schema)],
        "metadata": {
            "table": outbox.table,
            "route": outbox.route,
            "cleanup": outbox.cleanup,
            "pattern": "outbox",
            "dagster/table_name": _qualified(outbox.source, outbox.table, outbox.db_schema),
        },
        "owners": [],
        "tags": {},
    }


# --- external assets: source tables and topics -------------------------------------------------------------------------


def external_assets(spec: Spec) -> list[dg.AssetSpec]:
    """Each source table (upstream of its streams and outboxes) and each stream's topic (upstream of its replica)."""
    tables: dict[dg.AssetKey, dg.AssetSpec] = {}
    for name, stream in spec.streams.items():
        key = stream_table_key(spec, name)
        tables.setdefault(
            key,
            dg.AssetSpec(
                key=key,
                group_name=group_name(stream.source),
                kinds={_db_kind(spec, stream.source), "table"},
                description=f"The source table {_qualified(stream.source, stream.table, stream.db_schema)}; liberation only reads it.",
                metadata={"dagster/table_name": _qualified(stream.source, stream.table, stream.db_schema)},
            ),
        )
    for outbox in spec.outboxes.values():
        key = table_key(outbox.source, outbox.table, outbox.db_schema)
        tables.setdefault(
            key,
            dg.AssetSpec(
                key=key,
                group_name=group_name(outbox.source),
                kinds={_db_kind(spec, outbox.source), "table"},
                description=f"The outbox table {_qualified(outbox.source, outbox.table, outbox.db_schema)}, written by the application.",
                metadata={"dagster/table_name": _qualified(outbox.source, outbox.table, outbox.db_schema)},
            ),
        )
    topics = [dg.AssetSpec(**spec_fields(spec, name, "topic")) for name in spec.streams]
    return [*tables.values(), *topics]


# --- code references ------------------------------------------------------------------------------------------------


def spec_lines(path: str | Path) -> dict[tuple[str, str], int]:
    """(section, name) → line of each stream's and outbox's entry in the spec file (1-based)."""
    lines: dict[tuple[str, str], int] = {}
    section = None
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        top = re.match(r"^([A-Za-z_]+):", line)
        if top:
            section = top.group(1)
            continue
        entry = re.match(r"^  ([^\s#:][^:]*):", line)
        if entry and section in ("streams", "outboxes"):
            lines[(section, entry.group(1).strip().strip("'\""))] = number
    return lines


def with_code_references(defs: dg.Definitions, spec: Spec, path: str | Path | None) -> dg.Definitions:
    """Link every stream and outbox asset to its entry in the spec file (``dagster/code_references``)."""
    if not path or not Path(path).is_file():
        return defs
    lines = spec_lines(path)
    absolute = str(Path(path).resolve())

    def line_of(key: dg.AssetKey) -> int | None:
        owner = key.path[0]
        return lines.get(("streams", owner)) or lines.get(("outboxes", owner))

    def add(asset: dg.AssetSpec) -> dg.AssetSpec:
        line = line_of(asset.key)
        if line is None:
            return asset
        with warnings.catch_warnings():  # code references are beta in Dagster 1.13; the UI shows them all the same
            warnings.simplefilter("ignore", dg.BetaWarning)
            reference = dg.CodeReferencesMetadataValue(
                code_references=[dg.LocalFileCodeReference(file_path=absolute, line_number=line, label="spec entry")]
            )
        return asset.merge_attributes(metadata={"dagster/code_references": reference})

    with warnings.catch_warnings():  # map_asset_specs is a preview API in Dagster 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_asset_specs(func=add)
