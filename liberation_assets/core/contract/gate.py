"""The compatibility gate: before a stream publishes, its schema must match or extend the published one.

``ensure_schema`` runs when a stream's writer is built, so every pattern
passes through it.  It derives the schema from the contract and the current
source table, compares it with the latest version in the schema history and

- returns that version when nothing changed;
- registers the next version when the change is compatible;
- raises ``SchemaIncompatible`` when it is not: the stream publishes nothing
  until the change is made compatible or accepted on purpose (``accept``).

``evaluate`` is the same comparison without side effects, for checks and CLIs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from liberation_assets.core.contract.compat import changes, incompatibilities
from liberation_assets.core.contract.history import SchemaHistory, SchemaVersion
from liberation_assets.core.contract.model import load_contract
from liberation_assets.core.contract.schema import StreamSchema, derive_schema
from liberation_assets.core.errors import SchemaIncompatible
from liberation_assets.core.readers.table import ProjectedTable, reflect_stream_table
from liberation_assets.core.spec import Spec


@dataclass
class SchemaDecision:
    """The current schema of a stream against its latest published version."""

    stream: str
    schema: StreamSchema
    latest: SchemaVersion | None
    problems: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return not self.problems

    @property
    def changed(self) -> bool:
        return self.latest is None or self.latest.fingerprint != self.schema.fingerprint

    @property
    def published_version(self) -> int:
        return self.latest.version if self.latest else 0

    def describe(self) -> str:
        if self.latest is None:
            return f"stream {self.stream}: no schema published yet; version 1 will be registered"
        if not self.changed:
            return f"stream {self.stream}: schema unchanged (version {self.latest.version})"
        verdict = "compatible" if self.compatible else "INCOMPATIBLE"
        lines = [f"stream {self.stream}: {verdict} change against published version {self.latest.version}"]
        lines += [f"  incompatible: {p}" for p in self.problems]
        lines += [f"  change: {c}" for c in self.changes]
        return "\n".join(lines)


def current_schema(
    spec: Spec, stream_name: str, engine: Engine | None = None, table: ProjectedTable | None = None
) -> StreamSchema:
    stream = spec.streams[stream_name]
    if table is None and engine is not None:
        table = reflect_stream_table(engine, stream, stream_name)
    return derive_schema(stream_name, stream.key, table, load_contract(stream))


def evaluate(
    spec: Spec,
    stream_name: str,
    engine: Engine | None = None,
    *,
    table: ProjectedTable | None = None,
    history: SchemaHistory | None = None,
) -> SchemaDecision:
    """Compare without registering anything."""
    schema = current_schema(spec, stream_name, engine, table)
    latest = (history or SchemaHistory.for_spec(spec)).latest(stream_name)
    if latest is None or latest.fingerprint == schema.fingerprint:
        return SchemaDecision(stream_name, schema, latest)
    connect = spec.format_for(stream_name) == "connect-json"
    return SchemaDecision(
        stream_name,
        schema,
        latest,
        incompatibilities(latest.schema, schema, connect=connect),
        changes(latest.schema, schema),
    )


def ensure_schema(
    spec: Spec, stream_name: str, engine: Engine | None = None, *, table: ProjectedTable | None = None
) -> SchemaVersion:
    """The version to publish under; registers a compatible change, refuses an incompatible one."""
    history = SchemaHistory.for_spec(spec)
    decision = evaluate(spec, stream_name, engine, table=table, history=history)
    if not decision.changed:
        assert decision.latest is not None
        return decision.latest
    if not decision.compatible:
        raise SchemaIncompatible(
            f"stream {stream_name}: publishing blocked, the schema change is incompatible with published version "
            f"{decision.published_version} of {spec.topic_for(stream_name)}: {'; '.join(decision.problems)}. "
            "Make the change compatible (for example add fields as nullable), or accept it on purpose with "
            f"`liberation schema {stream_name} --accept-incompatible` once consumers are ready."
        )
    return _register(spec, decision, history, accepted=[])


def accept(spec: Spec, stream_name: str, engine: Engine | None = None) -> SchemaVersion:
    """Register the current schema even if incompatible: an operator's deliberate breaking change."""
    history = SchemaHistory.for_spec(spec)
    decision = evaluate(spec, stream_name, engine, history=history)
    if not decision.changed:
        assert decision.latest is not None
        return decision.latest
    return _register(spec, decision, history, accepted=decision.problems)


def _register(spec: Spec, decision: SchemaDecision, history: SchemaHistory, *, accepted: list[str]) -> SchemaVersion:
    version = SchemaVersion(
        decision.stream,
        decision.published_version + 1,
        decision.schema,
        topic=spec.topic_for(decision.stream),
        changes=decision.changes,
        accepted_incompatible=accepted,
    )
    return history.append(version)
