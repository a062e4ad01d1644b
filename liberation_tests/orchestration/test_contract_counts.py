"""The contract check reads the same counters from every pattern's asset: a MariaDB ``<stream>/cdc`` asset too."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from liberation_assets.orchestration.build import build_definitions
from liberation_tests.core.contract.support import (
    MYSQL_DDL,
    VALID,
    VIOLATIONS,
    insert_items_mysql,
    items_stream,
    mysql_rows,
)
from liberation_tests.core.readers.binlog.cdc_support import cdc_spec, source_of, write_spec


@pytest.mark.integration
def test_mariadb_cdc_contract_check_reports_published_count_and_pass_rate(
    make_spec, mysql_database, mysql_engine, tmp_path
) -> None:
    with mysql_engine.begin() as connection:
        connection.execute(sa.text(MYSQL_DDL))
    insert_items_mysql(mysql_engine, mysql_rows(VALID + [row for row, _ in VIOLATIONS.values()]))
    stream = items_stream(["cdc"])
    del stream["source"]  # cdc_spec names the MariaDB source
    spec = cdc_spec(make_spec, mysql_database, {"items": stream})
    defs = build_definitions(spec, str(write_spec(spec, tmp_path)))
    instance = dg.DagsterInstance.ephemeral()
    run = dg.materialize(
        [defs.resolve_assets_def(dg.AssetKey(["items", "items_cdc"]))], instance=instance, raise_on_error=False
    )
    materialized = run.asset_materializations_for_node(f"{source_of(spec)}_binlog")[0].metadata
    assert (materialized["published"].value, materialized["quarantined"].value) == (2, 6)

    contract = {e.check_name: e for e in run.get_asset_check_evaluations()}["contract"]
    metadata = contract.metadata
    assert not contract.passed
    assert (metadata["rows_in"].value, metadata["rows_published"].value, metadata["rows_quarantined"].value) == (
        8,
        2,
        6,
    )
    assert metadata["pass_rate"].value == 0.25
