"""8 concurrent writers for 60 s while two relays are killed -9 at random points: exactly once, in order, drained."""

from __future__ import annotations

import random
import time

import pytest

from liberation_assets.core.outbox import create_outbox_table
from liberation_tests.core.outbox.support import (
    CounterWriters,
    RelayProcess,
    assert_exactly_once_in_order,
    outbox_spec,
    pending_rows,
    topic,
)
from liberation_tests.fix_kafka import consume_all
from liberation_tests.fix_stack import spec_to_yaml
from liberation_tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WRITE_SECONDS = 60


def _victim(relays: list[RelayProcess], rng: random.Random) -> int:
    """Mostly the relay holding the lease (killing a standby proves less), sometimes either."""
    leaders = [i for i, relay in enumerate(relays) if any("relaying" in line for line in relay.lines)]
    return rng.choice(leaders) if leaders and rng.random() < 0.8 else rng.randrange(len(relays))


def test_concurrent_writers_and_kill_9_of_the_relays(
    make_spec, pg_engine, pg_database, kafka_bootstrap, tmp_path
) -> None:
    spec = outbox_spec(make_spec, pg=pg_database, partitions=3, batch_size=50)
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    spec_file = tmp_path / "liberation.yaml"
    spec_file.write_text(spec_to_yaml(spec))
    rng = random.Random(6)
    relays = [RelayProcess(spec_file), RelayProcess(spec_file)]  # a leader and a hot standby
    retired: list[RelayProcess] = []
    writers = CounterWriters(pg_engine, writers=8, pause=0.01)
    writers.start()
    try:
        deadline = time.monotonic() + WRITE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(1.0, 4.0))
            victim = _victim(relays, rng)
            relays[victim].kill()
            retired.append(relays[victim])
            time.sleep(rng.uniform(0.0, 1.0))
            relays[victim] = RelayProcess(spec_file)
        writers.stop()
        wait_until(lambda: pending_rows(pg_engine) == 0, 180, "the outbox did not drain")
    finally:
        writers.stop()
        for relay in relays:
            relay.kill()
            retired.append(relay)

    messages = consume_all(kafka_bootstrap, topic(spec, "counter"))

    assert_exactly_once_in_order(messages, writers)
    assert pending_rows(pg_engine) == 0
    recovered = sum(relay.recovered() for relay in retired)
    print(
        f"\noutbox crash test: {len(writers.committed)} events committed by 8 writers in {WRITE_SECONDS}s, "
        f"{len(writers.rolled_back)} rolled back; {len(retired) - 2} kill -9 of the relays; "
        f"{recovered} rows found already in Kafka at restart and cleaned up without republishing; "
        f"{len(messages)} records in Kafka, each exactly once, per-counter order intact"
    )
