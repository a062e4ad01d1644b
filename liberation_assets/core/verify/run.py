"""Verify a stream: bring its replica up to date from the topic, then compare it with the source.

This is what ``liberation verify <stream>`` and the ``<stream>/replica`` asset
run.  The comparison is exact, so run it when the stream has caught up with
the source (for example right after a poll, a CDC drain, or the demo's main
job): a row changed after the last publish is reported as different, because
at that moment it is.

The source server decides: every published value is read back by the source
database in its column's type and compared with the server's own rendering
(``server``), so the verify never trusts liberation's own conversions.
"""

from __future__ import annotations

from dataclasses import dataclass

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.errors import SpecError
from liberation_assets.core.readers.table import reflect_stream_table
from liberation_assets.core.spec import Spec
from liberation_assets.core.verify.compare import Comparison, compare_with_source
from liberation_assets.core.verify.lag import LagReport, explain
from liberation_assets.core.verify.replica import ApplyStats, materialize
from liberation_assets.core.verify.server import canonical_key_json
from liberation_assets.core.verify.settle import SettleSettings, follows_continuously, settle
from liberation_assets.core.verify.store import ReplicaStore, replica_table_name, replica_url


@dataclass
class Verification:
    """A stream's replica after catching up, and how it compares with the source."""

    stream: str
    replica_url: str
    applied: ApplyStats
    comparison: Comparison
    lag: LagReport
    """Why the replica differs: documented lag (rows after the last poll, deletes awaiting the reconcile) or not."""

    def passes(self, strict: bool = False) -> bool:
        """Exact match, or (unless ``strict``) differences that are all documented lag."""
        return self.comparison.matches or (not strict and self.lag.only_lag)

    def metadata(self) -> dict[str, int | float]:
        return {**self.applied.metadata(), **self.comparison.metadata()}


def verify(
    spec: Spec,
    stream_name: str,
    *,
    replica: str | None = None,
    rebuild: bool = False,
    settings: SettleSettings | None = None,
) -> Verification:
    """Catch the replica up (or ``rebuild`` it) and compare it with the source projection, row by row.

    A continuous log-based stream's differing keys are judged again once the stream has passed the source's log
    position (``settle``, bounded by ``settings``): the source keeps changing while it is read."""
    if stream_name not in spec.streams:
        raise SpecError(f"unknown stream {stream_name!r}; streams: {', '.join(spec.streams) or '(none)'}")
    stream = spec.streams[stream_name]
    topic = spec.topic_for(stream_name)
    name = replica_table_name(stream_name)
    store = ReplicaStore(replica_url(stream_name, topic, replica))
    engine = create_source_engine(spec.sources[stream.source])
    try:
        applied = materialize(store, name, spec.kafka.resolved_bootstrap_servers(), topic, rebuild=rebuild)
        table = reflect_stream_table(engine, stream, stream_name)
        deleted_when = stream.soft_delete.deleted_when if stream.soft_delete else "not_null"
        zone = spec.timezone_for(stream_name)
        bootstrap = spec.kafka.resolved_bootstrap_servers()
        comparison = compare_with_source(engine, table, zone, lambda: store.documents(name), deleted_when)
        settled = None
        if not comparison.matches and follows_continuously(spec, stream_name):
            settled = settle(
                spec,
                stream_name,
                comparison,
                engine,
                table,
                zone,
                deleted_when,
                current_versions=lambda keys: {
                    k: doc for key, doc in store.documents(name) if (k := canonical_key_json(key)) in keys
                },
                catch_up=lambda on_record: materialize(store, name, bootstrap, topic, on_record=on_record),
                settings=settings,
            )
            comparison = settled.comparison
        lag = explain(spec, stream_name, comparison, engine, table, settled.behind_source if settled else None)
        if settled is not None:
            lag.rechecked, lag.recheck_skipped = settled.rechecked, settled.skipped
        return Verification(stream_name, store.safe_url, applied, comparison, lag)
    finally:
        engine.dispose()
        store.close()


def verify_stream(spec: Spec, stream_name: str, *, replica: str | None = None, rebuild: bool = False) -> Comparison:
    """The comparison alone, for ``liberation verify``."""
    return verify(spec, stream_name, replica=replica, rebuild=rebuild).comparison
