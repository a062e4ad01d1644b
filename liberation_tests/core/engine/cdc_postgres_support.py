"""Helpers shared by the PostgreSQL CDC tests: specs with a per-test slot, a follow subprocess, topic readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liberation_assets.core.engine import cdc_postgres
from liberation_assets.core.engine.cdc_postgres import CdcSummary, position_key
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.readers.pgoutput.position import CdcPosition
from liberation_assets.core.spec import Spec
from liberation_tests.fix_kafka import Message, consume_all
from liberation_tests.fix_stack import spec_to_yaml
from liberation_tests.support import CliProcess


def cdc_spec(make_spec: Any, pg_database: str, streams: dict[str, dict[str, Any]], **cdc: Any) -> Spec:
    """One source named after the test database, with its own slot.

    Slot names are cluster-wide and tests run side by side: a shared slot name would collide.
    """
    name = f"pg_{pg_database}"
    for stream in streams.values():
        stream.setdefault("patterns", ["cdc"])
        stream.setdefault("cursor", None)
        stream["source"] = "pg"
    data = make_spec(pg=pg_database, streams=streams).model_dump(by_alias=True)
    data["sources"] = {
        name: {**data["sources"]["pg"], "cdc": {"slot": f"lib_{pg_database}", "heartbeat_every": "1s", **cdc}}
    }
    for stream in data["streams"].values():
        stream["source"] = name
    return Spec.model_validate(data)


def source_name(spec: Spec) -> str:
    return next(iter(spec.sources))


def drain(spec: Spec) -> CdcSummary:
    return cdc_postgres.drain(spec, source_name(spec))


def write_spec(spec: Spec, tmp_path: Path) -> Path:
    path = tmp_path / "liberation.yaml"
    path.write_text(spec_to_yaml(spec))
    return path


def stored_position(spec: Spec) -> CdcPosition:
    store = PositionStore(spec.kafka.resolved_bootstrap_servers(), spec.kafka.positions_topic)
    return CdcPosition.from_dict(store.get(position_key(source_name(spec))))


def changes(spec: Spec, stream: str) -> list[Message]:
    """Every record of a stream's topic (read_committed), tombstones included, in order.

    After a kill -9 it first waits until no crashed writer's open transaction hides committed records.
    """
    return consume_all(
        spec.kafka.resolved_bootstrap_servers(),
        spec.topic_for(stream),
        settle_seconds=cdc_postgres.STABLE_WAIT_SECONDS,
        must_settle=True,
    )


def envelopes(spec: Spec, stream: str) -> list[dict[str, Any]]:
    return [m.envelope for m in changes(spec, stream) if m.value is not None]  # type: ignore[misc]


class FollowProcess(CliProcess):
    """``liberation follow <source>`` as a real subprocess, so a test can kill -9 it and measure its memory."""

    def __init__(self, spec_file: Path, source: str):
        super().__init__(["follow", source], spec_file=spec_file)

    def status(self, field: str) -> int:
        """A /proc/<pid>/status figure in bytes, e.g. VmRSS or VmHWM (peak)."""
        return self.proc_status(field)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM: the engine flushes, prints its summary and exits 0."""
        return super().stop(timeout)
