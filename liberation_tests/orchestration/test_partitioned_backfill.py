"""A key-range partitioned snapshot, backfilled as Dagster runs: the chunks run in parallel and the result is exact.

``dagster job backfill`` launches one run per key range; the instance's
default run launcher starts them side by side, each with the multiprocess
executor.  The test holds a lock on the source table until every range's step
is waiting on it, so the step windows in the event log must overlap, however
slow the machine.  Then the replica rebuilt from the topic must equal the source.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.verify.run import verify
from liberation_tests.fix_stack import spec_to_yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROWS = 20_000
BOUNDS = [5_000, 10_000, 15_000]
DEADLINE_SECONDS = 400
INSTANCE_YAML = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


def _waiting_on_locks(engine: sa.Engine, database: str) -> int:
    with engine.connect() as c:
        return int(
            c.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND wait_event_type = 'Lock' "
                    "AND backend_type = 'client backend'"
                ),
                {"d": database},
            ).scalar_one()
        )


def _step_windows(instance: dg.DagsterInstance, runs: list[dg.DagsterRun], step: str) -> dict[str, tuple[float, float]]:
    """Partition → (start, end) of the snapshot step, from each run's event log."""
    windows = {}
    for run in runs:
        events = {
            e.dagster_event.event_type_value: e.timestamp
            for e in instance.all_logs(run.run_id)
            if e.dagster_event is not None and e.step_key == step
        }
        windows[run.tags["dagster/partition"]] = (events["STEP_START"], events["STEP_SUCCESS"])
    return windows


def test_partitioned_snapshot_backfill_runs_in_parallel_and_stays_exact(
    make_spec, stack, pg_database, pg_engine, tmp_path
) -> None:
    name = "items_" + pg_database.rsplit("_", 1)[-1]  # transactional ids are cluster-wide
    with pg_engine.begin() as c:
        c.execute(
            sa.text("CREATE TABLE items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())")
        )
        c.execute(sa.text(f"INSERT INTO items (id, name) SELECT i, 'item ' || i FROM generate_series(1, {ROWS}) i"))
    spec = make_spec(
        pg=pg_database,
        kafka={"partitions": 3},
        streams={
            name: {
                "source": "pg",
                "table": "items",
                "key": ["id"],
                "patterns": ["snapshot"],
                "snapshot_chunk": 1000,
                "snapshot_partitions": {"bounds": BOUNDS},
            }
        },
    )
    partitions = list(spec.streams[name].snapshot_partitions.ranges())
    spec_file = tmp_path / "liberation.yaml"
    spec_file.write_text(spec_to_yaml(spec))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    env = {**os.environ, "DAGSTER_HOME": str(home), "LIBERATION_SPEC": str(spec_file)}

    lock = pg_engine.connect()
    transaction = lock.begin()
    lock.execute(sa.text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))  # every range's step blocks on it
    backfill = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "job",
            "backfill",
            "-m",
            "liberation_assets.definitions",
            "-j",
            f"{name}_snapshot_backfill",
            "--partitions",
            ",".join(partitions),
            "--noprompt",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        instance = dg.DagsterInstance.from_config(str(home))
        while _waiting_on_locks(pg_engine, pg_database) < len(partitions):
            failed = [r.run_id for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE]
            assert not failed and backfill.poll() in (None, 0) and time.monotonic() < deadline, (
                f"runs failed or never blocked: {failed}, backfill exit {backfill.poll()}"
            )
            time.sleep(0.5)
    finally:
        transaction.commit()
        lock.close()
        try:  # the command returns once its code server has seen every run finish
            _, stderr = backfill.communicate(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            backfill.kill()
            raise
    assert backfill.returncode == 0, stderr[-3000:]

    while True:
        runs = instance.get_runs()
        if len(runs) == len(partitions) and all(r.is_finished for r in runs) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(partitions)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.run_id, r.status) for r in runs]
    logs = [e.message for r in runs for e in instance.all_logs(r.run_id) if e.dagster_event is not None]
    assert any("multiprocess executor" in (m or "") for m in logs)

    windows = _step_windows(instance, runs, f"{name}__{name}_snapshot")
    first = min(start for start, _ in windows.values())
    for partition, (start, end) in sorted(windows.items(), key=lambda item: item[1]):
        print(f"\n{partition:>14}: step {start - first:6.2f}s → {end - first:6.2f}s")
    assert max(start for start, _ in windows.values()) < min(end for _, end in windows.values()), (
        "steps did not overlap"
    )

    positions = PositionStore(spec.kafka.resolved_bootstrap_servers(), spec.kafka.positions_topic).load(
        f"stream/{name}/snapshot/"
    )
    assert sorted(positions) == sorted(f"stream/{name}/snapshot/{p}" for p in partitions)
    assert all(p["done"] for p in positions.values()) and sum(p["rows"] for p in positions.values()) == ROWS
    result = verify(spec, name, replica=f"sqlite:///{tmp_path}/replica.sqlite").comparison
    assert result.matches and result.source_rows == ROWS, result.describe()


def test_an_unpartitioned_run_walks_every_range(make_spec, pg_database, pg_engine, tmp_path, monkeypatch) -> None:
    """The main job runs the partitioned snapshot without a partition key: every range, one after the other."""
    from liberation_assets.orchestration.build import MAIN_JOB, build_definitions

    name = "items_" + pg_database.rsplit("_", 1)[-1]
    with pg_engine.begin() as c:
        c.execute(
            sa.text("CREATE TABLE items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())")
        )
        c.execute(sa.text("INSERT INTO items (id, name) SELECT i, 'item ' || i FROM generate_series(1, 3000) i"))
    spec = make_spec(
        pg=pg_database,
        streams={
            name: {
                "source": "pg",
                "table": "items",
                "key": ["id"],
                "patterns": ["snapshot"],
                "snapshot_partitions": {"size": 1000, "upto": 3000},
            }
        },
    )
    spec_file = tmp_path / "liberation.yaml"
    spec_file.write_text(spec_to_yaml(spec))
    monkeypatch.setenv("LIBERATION_REPLICA_URL", f"sqlite:///{tmp_path}/replica.sqlite")
    result = (
        build_definitions(spec, str(spec_file))
        .resolve_job_def(MAIN_JOB)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert result.success
    [snapshot] = result.asset_materializations_for_node(f"{name}__{name}_snapshot")
    assert snapshot.metadata["published"].value == 3000
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "matches_source"]
    assert check.passed and check.metadata["source_rows"].value == 3000
    positions = PositionStore(spec.kafka.resolved_bootstrap_servers(), spec.kafka.positions_topic).load(
        f"stream/{name}/snapshot/"
    )
    assert sorted(positions) == sorted(f"stream/{name}/snapshot/{p}" for p in ("min..1000", "1000..2000", "2000..max"))
