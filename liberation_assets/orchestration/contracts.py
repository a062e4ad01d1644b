"""Contract checks on every pattern asset: ``contract`` (quarantine counts) and ``schema_compatible``.

Both are blocking asset checks declared on a stream's pattern assets
(``<stream>/<stream>_snapshot``, ``_incremental``, ``_cdc``) and
evaluated in the asset's own step, from the counters it just produced: no
extra step (and process) per check, no second read of the event log:

- ``contract`` fails (a warning, so it does not block: the rest was
  published) when the last run quarantined rows; its metadata holds
  the run's rows in, published and quarantined, the open quarantine per
  check, and a sample of failures (numbers, so the UI plots them);
- ``schema_compatible`` compares the schema the stream would publish now with
  the latest published version.  The core gate already refuses to publish an
  incompatible change (the asset fails with ``SchemaIncompatible``); the asset
  reports the failed ``schema_compatible`` result, with every incompatibility,
  just before it fails.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.contract.gate import SchemaDecision, evaluate
from liberation_assets.core.contract.quarantine import QuarantineSummary, summarize
from liberation_assets.core.engine.summary import PUBLISHED
from liberation_assets.core.spec import Spec

SAMPLE_SIZE = 5
CHECKS_SHOWN = 10


def contract_result(
    run: Mapping[str, Any], summary: QuarantineSummary, key: dg.AssetKey | None = None
) -> dg.AssetCheckResult:
    """Pass when the last run quarantined nothing; counts and a failure sample either way."""
    quarantined = int(run.get("quarantined", 0))
    published = int(run.get(PUBLISHED, 0))  # every pattern's asset reports the same counters (core.engine.summary)
    rows_in = published + quarantined
    metadata: dict[str, Any] = {
        "rows_in": rows_in,
        "rows_published": published,
        "rows_quarantined": quarantined,
        "pass_rate": round(published / rows_in, 6) if rows_in else 1.0,
        **summary.metadata(),
    }
    for check, count in summary.by_check.most_common(CHECKS_SHOWN):
        metadata[f"open: {check}"] = count
    metadata["failure_sample"] = dg.MetadataValue.json(
        [
            {
                "key": row.value.get("key"),
                "failed_checks": row.value.get("failed_checks"),
                "partition": row.partition,
                "offset": row.offset,
            }
            for row in summary.rows[:SAMPLE_SIZE]
        ]
    )
    description = (
        f"{quarantined} of {rows_in} rows quarantined in the last run; "
        f"{summary.open} open in {summary.topic} (`liberation quarantine {summary.stream}`)"
    )
    # A warning: the quarantine held those rows back and the rest was published, so nothing downstream is wrong.
    return dg.AssetCheckResult(
        passed=quarantined == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=description,
        asset_key=key,
        check_name="contract" if key else None,
    )


def compatibility_result(decision: SchemaDecision, key: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    metadata: dict[str, int | str] = {
        "published_version": decision.published_version,
        "fields": len(decision.schema.fields),
        "incompatibilities": len(decision.problems),
        "changes": len(decision.changes),
        "fingerprint": decision.schema.fingerprint,
    }
    return dg.AssetCheckResult(
        passed=decision.compatible,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=decision.describe(),
        asset_key=key,
        check_name="schema_compatible" if key else None,
    )


def contract_check_specs(name: str, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The two checks a pattern asset declares and evaluates in its own step."""
    return [
        dg.AssetCheckSpec(
            "contract",
            asset=key,
            blocking=True,
            description=f"Rows of {name} that failed the contract went to the quarantine, not to consumers.",
        ),
        dg.AssetCheckSpec(
            "schema_compatible",
            asset=key,
            blocking=True,
            description=f"The schema {name} would publish now is backward compatible with the published one.",
        ),
    ]


def _decisions(spec: Spec, names: list[str]) -> dict[str, SchemaDecision]:
    """The gate's view of each stream, one source connection for all of them (they share a source)."""
    decisions: dict[str, SchemaDecision] = {}
    engines: dict[str, Any] = {}
    try:
        for name in names:
            source = spec.streams[name].source
            if source not in engines:
                engines[source] = create_source_engine(spec.sources[source])
            decisions[name] = evaluate(spec, name, engines[source])
    finally:
        for engine in engines.values():
            engine.dispose()
    return decisions


def contract_results(
    spec: Spec, name: str, key: dg.AssetKey, run: Mapping[str, Any], decision: SchemaDecision | None = None
) -> list[dg.AssetCheckResult]:
    """Both checks of one asset, from the counters the asset just produced: returned with its MaterializeResult."""
    summary = summarize(spec, name, list_rows=SAMPLE_SIZE)
    decision = decision or _decisions(spec, [name])[name]
    return [contract_result(run, summary, key), compatibility_result(decision, key)]


def source_contract_results(
    spec: Spec, keys: Mapping[str, dg.AssetKey], runs: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[dg.AssetCheckResult]]:
    """``contract_results`` for every stream of a multi-asset (one source connection)."""
    decisions = _decisions(spec, list(keys))
    return {name: contract_results(spec, name, key, runs[name], decisions[name]) for name, key in keys.items()}


def refused_results(spec: Spec, keys: Mapping[str, dg.AssetKey]) -> Iterator[dg.AssetCheckResult]:
    """``schema_compatible`` of each stream of an asset the gate refused, yielded before the step fails:
    the failed asset shows which change was refused and why (a failed step has no materialization to attach it to)."""
    for name, decision in _decisions(spec, list(keys)).items():
        yield compatibility_result(decision, keys[name])


def definitions(spec: Spec) -> dg.Definitions:
    """The checks live on the pattern assets themselves (``contract_check_specs``): nothing to add here."""
    return dg.Definitions()
