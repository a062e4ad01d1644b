"""kill -9 mid-snapshot and mid-poll, then rerun: nothing lost, nothing duplicated (read_committed)."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from liberation_tests.fix_kafka import TopicGrowth, consume_all
from liberation_tests.fix_stack import spec_to_yaml
from liberation_tests.support import CliProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 20_000


def _run_until_done_with_kills(
    spec_file: Path, args: list[str], kills: int, rng: random.Random, growth: TopicGrowth
) -> int:
    """Run the CLI and SIGKILL it ``kills`` times, each once it has written a random amount more; then let it finish.

    Returns the kills made.  Progress, not time, decides the kill, so a fast run
    on an idle machine is still killed in the middle of its work.
    """
    made = 0
    while True:
        start = growth.offsets()
        process = CliProcess(args, spec_file=spec_file)
        if made < kills:
            step = rng.randint(80, 400)  # records and markers: 2 to 10 transactions of 40 rows
            while process.alive and growth.offsets() < start + step:
                time.sleep(0.01)
            if process.alive:
                process.kill()
                made += 1
                continue
        assert process.wait(timeout=300) == 0, process.tail()
        return made


@pytest.fixture
def crash_table(pg_engine):
    metadata = sa.MetaData()
    table = sa.Table(
        "ledger",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    metadata.create_all(pg_engine)
    with pg_engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO ledger SELECT i, i / 100.0, timestamptz '2026-01-01' + i * interval '1 millisecond' "
                "FROM generate_series(1, :n) AS i"
            ),
            {"n": ROWS},
        )
    return table


def _spec_file(make_spec, pg_database, tmp_path):
    spec = make_spec(
        pg=pg_database,
        streams={"ledger": {"source": "pg", "table": "ledger", "key": ["id"], "snapshot_chunk": 40, "batch_size": 40}},
    )
    path = tmp_path / "liberation.yaml"
    path.write_text(spec_to_yaml(spec))
    return spec, path


def test_killed_snapshot_resumes_without_loss_or_duplicates(
    make_spec, pg_database, crash_table, tmp_path, kafka_bootstrap
) -> None:
    spec, path = _spec_file(make_spec, pg_database, tmp_path)
    growth = TopicGrowth(kafka_bootstrap, spec.topic_for("ledger"))
    try:
        kills = _run_until_done_with_kills(
            path, ["run", "ledger", "--snapshot"], kills=5, rng=random.Random(1), growth=growth
        )
    finally:
        growth.close()
    messages = consume_all(kafka_bootstrap, spec.topic_for("ledger"))
    reads = Counter(m.key_object["id"] for m in messages if m.envelope["op"] == "r")
    print(f"snapshot survived {kills} kill -9; {len(messages)} events")
    assert kills >= 3
    assert len(reads) == ROWS and set(reads.values()) == {1}


def test_killed_poll_resumes_without_loss_or_duplicates(
    make_spec, pg_database, pg_engine, crash_table, tmp_path, kafka_bootstrap
) -> None:
    spec, path = _spec_file(make_spec, pg_database, tmp_path)
    rng = random.Random(2)
    growth = TopicGrowth(kafka_bootstrap, spec.topic_for("ledger"))
    try:
        kills = _run_until_done_with_kills(path, ["run", "ledger", "--incremental"], kills=3, rng=rng, growth=growth)
        with pg_engine.begin() as c:  # a second version of every other row
            c.execute(sa.text("UPDATE ledger SET amount = amount + 1, updated_at = now() WHERE id % 2 = 0"))
        kills += _run_until_done_with_kills(path, ["run", "ledger", "--incremental"], kills=3, rng=rng, growth=growth)
    finally:
        growth.close()
    versions = Counter(m.key_object["id"] for m in consume_all(kafka_bootstrap, spec.topic_for("ledger")))
    print(f"polling survived {kills} kill -9")
    assert kills >= 3
    assert len(versions) == ROWS
    assert all(n == (2 if key % 2 == 0 else 1) for key, n in versions.items())
