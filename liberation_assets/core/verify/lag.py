"""Why a replica differs from its source: the documented lags of the query pattern, told apart from real differences.

A query-pattern stream is behind its source in two documented ways:

- rows changed after the last poll (beyond the stored watermark) are not
  published yet: ``N rows still to publish``; a key the replica lacks, or
  holds in an older version, for such a row is that lag;
- a hard delete is invisible to a poll: the key stays live in the topic until
  the reconcile (``reconcile_every``) publishes its delete, so a key the
  replica has and the source has not is a delete awaiting the reconcile.

A key held in the stream's open quarantine (the contract refused its row) is
missing from the replica on purpose: it is reported as quarantined, not as a
difference (``liberation quarantine <stream>``, ``liberation redrive``).

Everything else (and every other difference of a log-based stream) is unexplained:
``liberation verify`` exits 1 for it, and for the lags too with ``--strict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.contract.serialize import dumps
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.readers.query import QueryPosition
from liberation_assets.core.readers.rows import key_converter
from liberation_assets.core.readers.sql import key_set_query
from liberation_assets.core.readers.table import ProjectedTable
from liberation_assets.core.spec import Spec
from liberation_assets.core.verify.compare import Comparison

QUERY_POSITION = "stream/{name}/query"


@dataclass
class LagReport:
    """The comparison's differences, sorted into documented lags and the rest."""

    comparison: Comparison
    query_pattern: bool
    stream: str = "<stream>"
    rows_to_publish: int | None = None
    """Source rows beyond the stored watermark (query pattern), or None when unknown."""
    updated_after_poll: list[bytes] = field(default_factory=list)
    awaiting_reconcile: list[bytes] = field(default_factory=list)
    quarantined: list[bytes] = field(default_factory=list)
    """Keys the replica lacks because the contract sent their row to the quarantine."""
    unexplained: list[bytes] = field(default_factory=list)
    behind_source: list[bytes] = field(default_factory=list)
    """Keys of a continuous log-based stream still differing because the stream had not passed the source's log
    position within the re-check's time, or their row kept being written (``verify.settle``)."""
    rechecked: int = 0
    """Keys the first comparison found different and the re-check judged again (continuous streams)."""
    recheck_skipped: str = ""
    """Why a continuous stream's differing keys were not judged again (the source refused the temporary copy)."""

    @property
    def only_lag(self) -> bool:
        """Every difference is a documented lag (and there is at least none unexplained)."""
        return not self.comparison.partial and not self.unexplained

    def describe(self, limit: int = 10) -> str:
        text = self.comparison.describe(limit)
        if self.comparison.matches:
            return text
        reasons = []
        if self.rows_to_publish:
            reasons.append(f"behind by {self.rows_to_publish} rows still to publish (changed after the last poll)")
        if self.updated_after_poll:
            reasons.append(f"{len(self.updated_after_poll)} differing keys are rows updated after the last poll")
        if self.awaiting_reconcile:
            reasons.append(
                f"{len(self.awaiting_reconcile)} not in source are hard deletes awaiting the reconcile "
                f"(run `liberation run {self.stream} --reconcile` or the {self.stream}_reconcile job)"
            )
        if self.quarantined:
            reasons.append(
                f"{len(self.quarantined)} missing are held in the quarantine by the contract "
                f"(`liberation quarantine {self.stream}`, then `liberation redrive {self.stream}`)"
            )
        if self.behind_source:
            reasons.append(
                f"{len(self.behind_source)} differing keys are changes the stream had not published yet "
                "(it did not pass the source's log position in time, or the rows kept being written)"
            )
        if self.recheck_skipped:
            reasons.append(self.recheck_skipped)
        if self.unexplained:
            shown = ", ".join(k.decode() for k in self.unexplained[:limit])
            reasons.append(
                f"{len(self.unexplained)} differences not explained by lag: {shown}"
                f"{' …' if len(self.unexplained) > limit else ''}"
            )
        elif not self.comparison.partial and (self.updated_after_poll or self.awaiting_reconcile or self.behind_source):
            reasons.append("only documented lag: the next poll and reconcile catch the replica up")
        elif not self.comparison.partial:
            reasons.append("nothing else differs")
        return text + "\nwhy: " + "; ".join(reasons)


def _canonical(key: bytes) -> bytes:
    return orjson.dumps(orjson.loads(key), option=orjson.OPT_SORT_KEYS)


def _watermark(spec: Spec, name: str) -> QueryPosition | None:
    """The poll's stored watermark; before the first poll that published, where the snapshot told it to start."""
    positions = PositionStore.for_spec(spec.kafka).load(f"stream/{name}/")
    stored = positions.get(QUERY_POSITION.format(name=name))
    if stored:
        return QueryPosition.from_dict(stored)
    starts = [
        QueryPosition.from_dict({"since": value["incremental_from"]}).since
        for key, value in positions.items()
        if key.startswith(f"stream/{name}/snapshot") and value.get("incremental_from") is not None
    ]
    return QueryPosition(since=min(starts)) if starts else None


def _keys_beyond(engine: Engine, table: ProjectedTable, zone: ZoneInfo, position: QueryPosition) -> set[bytes]:
    """Keys (published form) of the source rows the next poll would publish: beyond (cursor, key...) of the watermark."""
    query = key_set_query(table)
    if position.after is not None and position.after[0] is not None:
        stored = tuple(position.after)
        columns = [table.cursor_expr, *table.key_exprs][: len(stored)]
        query = query.where(sa.tuple_(*columns) > sa.tuple_(*[sa.literal(v) for v in stored]))
    elif position.since is not None:
        query = query.where(table.cursor_expr >= sa.literal(position.since))
    published_key = key_converter(table, zone)
    with engine.connect() as connection:
        rows = connection.execute(query).mappings()
        return {_canonical(dumps(published_key(dict(row)))) for row in rows}


def _quarantined_keys(spec: Spec, name: str, limit: int = 100_000) -> set[bytes]:
    """Keys of the stream's open quarantine records (the first ``limit``)."""
    from liberation_assets.core.contract.quarantine import summarize

    keys = set()
    for row in summarize(spec, name, list_rows=limit).rows:  # no quarantine topic yet: no rows
        try:
            keys.add(_canonical(row.key))
        except orjson.JSONDecodeError:
            continue
    return keys


def explain(
    spec: Spec,
    name: str,
    comparison: Comparison,
    engine: Engine,
    table: ProjectedTable,
    behind_source: list[bytes] | None = None,
) -> LagReport:
    """Sort the differences: rows beyond the last poll, deletes awaiting the reconcile, changes a continuous
    stream had not published yet (``behind_source``, from ``verify.settle``), and the rest."""
    stream = spec.streams[name]
    query_pattern = "query" in stream.patterns and "cdc" not in stream.patterns
    report = LagReport(comparison, query_pattern, name)
    behind = {_canonical(key) for key in behind_source or ()}
    if comparison.matches:
        return report
    beyond: set[bytes] = set()
    if query_pattern:
        position = _watermark(spec, name)
        if position is not None:
            beyond = _keys_beyond(engine, table, ZoneInfo(spec.timezone_for(name)), position)
            report.rows_to_publish = len(beyond)
    held = _quarantined_keys(spec, name) if comparison.missing else set()
    for key in comparison.missing + comparison.different:
        if _canonical(key) in behind:
            report.behind_source.append(key)
        elif _canonical(key) in beyond:
            report.updated_after_poll.append(key)
        elif key in comparison.missing and _canonical(key) in held:
            report.quarantined.append(key)
        else:
            report.unexplained.append(key)
    for key in comparison.extra:
        if _canonical(key) in behind:
            report.behind_source.append(key)
        else:
            (report.awaiting_reconcile if query_pattern else report.unexplained).append(key)
    return report


def lag_metadata(report: LagReport) -> dict[str, Any]:
    """Numbers for the ``matches_source`` check."""
    return {
        "rows_to_publish": report.rows_to_publish or 0,
        "updated_after_poll": len(report.updated_after_poll),
        "awaiting_reconcile": len(report.awaiting_reconcile),
        "quarantined": len(report.quarantined),
        "unexplained": len(report.unexplained),
        "behind_source": len(report.behind_source),
        "rechecked_keys": report.rechecked,
    }
