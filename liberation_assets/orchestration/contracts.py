"""Contract checks on every pattern asset: ``contract`` (quarantine counts) and ``schema_compatible``.

Both are blocking asset checks, evaluated after each materialization of a
stream's pattern assets (``<stream>/snapshot``, ``<stream>/incremental``):

- ``contract`` fails (a warning, so it does not block: the rest was
  published) when the last run quarantined rows; its metadata holds
  the run's rows in, published and quarantined, the open quarantine per
  check, and a sample of failures (numbers, so the UI plots them);
- ``schema_compatible`` compares the schema the stream would publish now with
  the latest published version.  The core gate already refuses to publish an
  incompatible change (the asset fails with ``SchemaIncompatible``); since a
  failed asset skips its checks, the job ``<stream>_contract_checks`` runs the
  checks alone to show why.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.contract.gate import SchemaDecision, evaluate
from liberation_assets.core.contract.quarantine import QuarantineSummary, summarize
from liberation_assets.core.engine.summary import PUBLISHED
from liberation_assets.core.spec import Spec
from liberation_assets.orchestration.policy import asset_key
from liberation_assets.orchestration.resources import LiberationResource

SAMPLE_SIZE = 5
CHECKS_SHOWN = 10
_PATTERN_ASSETS = {"snapshot": "snapshot", "query": "incremental", "cdc": "cdc"}


def pattern_asset_keys(spec: Spec, name: str) -> list[dg.AssetKey]:
    """The assets that publish a stream, in the order a run materializes them."""
    patterns = spec.streams[name].patterns
    return [asset_key(name, leaf) for pattern, leaf in _PATTERN_ASSETS.items() if pattern in patterns]


def contract_result(run: Mapping[str, Any], summary: QuarantineSummary) -> dg.AssetCheckResult:
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
    metadata["failure_sample"] = dg.MetadataValue.json([
        {"key": row.value.get("key"), "failed_checks": row.value.get("failed_checks"),
         "partition": row.partition, "offset": row.offset}
        for row in summary.rows[:SAMPLE_SIZE]
    ])
    description = (f"{quarantined} of {rows_in} rows quarantined in the last run; "
                   f"{summary.open} open in {summary.topic} (`liberation quarantine {summary.stream}`)")
    # A warning: the quarantine held those rows back and the rest was published, so nothing downstream is wrong.
    return dg.AssetCheckResult(passed=quarantined == 0, severity=dg.AssetCheckSeverity.WARN,
                               metadata=metadata, description=description)


def compatibility_result(decision: SchemaDecision) -> dg.AssetCheckResult:
    metadata = {
        "published_version": decision.published_version,
        "fields": len(decision.schema.fields),
        "incompatibilities": len(decision.problems),
        "changes": len(decision.changes),
        "fingerprint": decision.schema.fingerprint,
    }
    return dg.AssetCheckResult(passed=decision.compatible, severity=dg.AssetCheckSeverity.ERROR,
                               metadata=metadata, description=decision.describe())


def _last_run(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event is not None else None
    if materialization is None:
        return {}
    return {k: v.value for k, v in materialization.metadata.items()}


def _checks_for(spec: Spec, name: str, key: dg.AssetKey) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=key, name="contract", blocking=True,
                    description=f"Rows of {name} that failed the contract went to the quarantine, not to consumers.")
    def contract(context: dg.AssetCheckExecutionContext, liberation: LiberationResource) -> dg.AssetCheckResult:
        summary = summarize(liberation.load_spec(), name, list_rows=SAMPLE_SIZE)
        return contract_result(_last_run(context.instance, key), summary)

    @dg.asset_check(asset=key, name="schema_compatible", blocking=True,
                    description=f"The schema {name} would publish now is backward compatible with the published one.")
    def schema_compatible(context: dg.AssetCheckExecutionContext, liberation: LiberationResource) -> dg.AssetCheckResult:
        spec = liberation.load_spec()
        engine = create_source_engine(spec.sources[spec.streams[name].source])
        try:
            decision = evaluate(spec, name, engine)
        finally:
            engine.dispose()
        context.log.info(decision.describe())
        return compatibility_result(decision)

    return [contract, schema_compatible]


def definitions(spec: Spec) -> dg.Definitions:
    checks: list[dg.AssetChecksDefinition] = []
    jobs = []
    for name in spec.streams:
        keys = pattern_asset_keys(spec, name)
        for key in keys:
            checks.extend(_checks_for(spec, name, key))
        if keys:
            jobs.append(dg.define_asset_job(f"{name}_contract_checks", selection=dg.AssetSelection.checks(
                *[dg.AssetCheckKey(key, check) for key in keys for check in ("contract", "schema_compatible")]),
                                            description=f"Evaluate {name}'s contract and schema checks without publishing."))
    return dg.Definitions(asset_checks=checks, jobs=jobs)
