"""Every stream of the demo spec, in every pattern, verifies after the demo load: ``liberation verify`` passes.

The demo spec's streams run against this test's own databases (seeded like the
demo), under source and stream names of their own, since transactional ids
are cluster-wide.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from liberation_assets.cli import main
from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.engine import cdc_mysql, cdc_postgres
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.spec import Spec, load_spec
from liberation_assets.core.verify.run import Verification, verify
from liberation_assets.demo.cli import seed_spec_sources
from liberation_assets.demo.generator import WriteLoad
from liberation_assets.demo.schema import products
from liberation_tests.support import write_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
PRODUCTS = 300
LOAD_SECONDS = 4.0


def demo_spec_on(make_spec, pg_database: str, mysql_database: str) -> Spec:
    """liberation.yaml's streams, pointed at the test databases."""
    demo = load_spec(REPO / "liberation.yaml")
    base = make_spec(pg=pg_database, mysql=mysql_database, kafka={"partitions": demo.kafka.partitions}).model_dump(
        by_alias=True
    )
    token = pg_database.rsplit("_", 1)[-1]
    renamed = {}
    sources = {}
    for name, source in demo.sources.items():
        kind = "pg" if source.dialect == "postgresql" else "mysql"
        renamed[name] = f"{kind}_{token}"
        sources[renamed[name]] = {
            **base["sources"][kind],
            "cdc": source.cdc.model_dump(by_alias=True, exclude_none=True),
        }
    streams = {
        f"{name}_{token}": {**stream.model_dump(by_alias=True, exclude_none=True), "source": renamed[stream.source]}
        for name, stream in demo.streams.items()
    }
    return Spec.model_validate({"kafka": base["kafka"], "sources": sources, "streams": streams})


def publish_everything(spec: Spec, patterns: dict[str, QueryPattern]) -> None:
    """What the main job does: snapshots, polls, reconciliation, and a CDC drain per source."""
    for name, stream in spec.streams.items():
        pattern = patterns[name] if name in patterns else None
        if pattern is not None and "snapshot" in stream.patterns:
            pattern.snapshot()
        if pattern is not None and "query" in stream.patterns:
            pattern.incremental()
            pattern.reconcile()
    for source_name, source in spec.sources.items():
        if any(s.source == source_name and "cdc" in s.patterns for s in spec.streams.values()):
            (cdc_postgres if source.dialect == "postgresql" else cdc_mysql).drain(spec, source_name)


def _settled(result: Verification) -> bool:
    """Equal to the source, but for the rows the contract holds in the quarantine."""
    comparison = result.comparison
    return comparison.matches or (
        not comparison.extra
        and not comparison.different
        and not comparison.partial
        and sorted(result.lag.quarantined) == sorted(comparison.missing)
    )


def _gadget_ids(engine: sa.Engine) -> list[bytes]:
    """The keys (as published) of the products the contract refuses: the category ``gadgets``."""
    with engine.connect() as connection:
        ids = connection.execute(sa.select(products.c.id).where(products.c.category == "gadgets")).scalars()
        return [f'{{"id":{product_id}}}'.encode() for product_id in ids]


def test_every_demo_stream_verifies_after_the_demo_load(make_spec, pg_database, mysql_database, tmp_path) -> None:
    spec = demo_spec_on(make_spec, pg_database, mysql_database)
    seed_spec_sources(spec, PRODUCTS, log=lambda *_: None)
    replicas = f"sqlite:///{tmp_path}/{{stream}}.sqlite"
    patterns = {
        name: QueryPattern(spec, name) for name, s in spec.streams.items() if {"snapshot", "query"} & set(s.patterns)
    }
    engines = [create_source_engine(source) for source in spec.sources.values()]
    try:
        publish_everything(spec, patterns)
        loads = [WriteLoad(engine, threads=1, pause=0.005, long_transaction_seconds=0.5) for engine in engines]
        for load in loads:
            load.start()
        time.sleep(LOAD_SECONDS)
        for load in loads:
            load.stop()
        # Polls trail the source by the late-commit ceiling: publish until every replica matches, or give up.
        deadline = time.monotonic() + 180
        while True:
            publish_everything(spec, patterns)
            results: dict[str, Verification] = {name: verify(spec, name, replica=replicas) for name in spec.streams}
            if all(_settled(r) for r in results.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        # The load deletes random products, breakers included: count the ones still in each source.
        breakers_left = {
            source_name: _gadget_ids(engine) for source_name, engine in zip(spec.sources, engines, strict=True)
        }
    finally:
        for pattern in patterns.values():
            pattern.close()
        for engine in engines:
            engine.dispose()
    for name, result in results.items():
        print(
            f"\n{name} {spec.streams[name].patterns}: {result.comparison.describe()}; "
            f"lag {result.applied.metadata().get('event_to_publish_lag_seconds')}s"
        )
    failed = {name: r.lag.describe() for name, r in results.items() if not _settled(r)}
    assert not failed, failed
    # The demo seeds products that break the contract: they are in the quarantine, and only they are missing.
    by_demo_name = {name.rsplit("_", 1)[0]: (name, r) for name, r in results.items()}
    for demo_name in ("products", "products_maria"):
        name, result = by_demo_name[demo_name]
        expected = breakers_left[spec.streams[name].source]
        assert expected, "the load deleted every breaker: the check would show nothing"
        assert sorted(result.lag.quarantined) == sorted(expected), demo_name
    assert all(r.comparison.source_rows > 0 for r in results.values())
    assert {p for s in spec.streams.values() for p in s.patterns} >= {"snapshot", "query", "cdc"}

    spec_file = write_spec(spec, tmp_path)
    for name in spec.streams:
        assert main(["--spec", str(spec_file), "verify", name, "--replica", replicas]) == 0, name
