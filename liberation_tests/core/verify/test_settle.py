"""A continuous stream under live writes verifies clean, and a wrong row in its topic still fails (``verify.settle``).

``liberation follow`` streams a PostgreSQL or MariaDB table while a thread keeps updating
a few of its rows: the verify reads the source and the topic at different
moments, so those rows differ for a moment.  The re-check waits until the
stream has passed the source's log position and looks for the copied source
row among the versions the topic carried: the verify passes, every time.  A
record with a wrong value produced into the topic for a key nobody writes is
still a real difference.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from confluent_kafka import Producer

from liberation_assets.core.errors import ConnectivityError
from liberation_assets.core.spec import Spec
from liberation_assets.core.verify.run import Verification, verify
from liberation_assets.core.verify.settle import SettleSettings
from liberation_tests.core.engine import cdc_postgres_support as pg_support
from liberation_tests.core.readers.binlog import cdc_support as my_support
from liberation_tests.support import CliProcess, wait_until

pytestmark = pytest.mark.integration

ROWS = 40
HOT = [1, 2, 3]
"""The rows the write loop keeps updating."""
SETTINGS = SettleSettings(timeout_seconds=60.0)


class UpdateLoop:
    """A thread updating the hot rows, one transaction each, until stopped."""

    def __init__(self, engine: sa.Engine):
        self.engine, self.updates = engine, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "UpdateLoop":
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.engine.begin() as connection:
                connection.execute(
                    sa.text("UPDATE items SET qty = qty + 1, note = :note WHERE id = :id"),
                    {"id": HOT[self.updates % len(HOT)], "note": f"u{self.updates}"},
                )
            self.updates += 1
            self._stop.wait(0.005)


@pytest.fixture(params=["postgresql", "mariadb"])
def source(request, make_spec) -> tuple[Spec, sa.Engine]:
    """A continuous source (PostgreSQL or MariaDB) with one table ``items`` streamed by the cdc pattern."""
    if request.param == "postgresql":
        database, engine = request.getfixturevalue("pg_database"), request.getfixturevalue("pg_engine")
        base = pg_support.cdc_spec(make_spec, database, {"items": {"table": "items", "key": ["id"]}})
    else:
        database, engine = request.getfixturevalue("mysql_database"), request.getfixturevalue("mysql_engine")
        base = my_support.cdc_spec(make_spec, database, {"items": {"table": "items", "key": ["id"]}})
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, note text)")
        connection.execute(
            sa.text("INSERT INTO items VALUES (:id, 0, :note)"),
            [{"id": i, "note": f"n{i}"} for i in range(1, ROWS + 1)],
        )
    data = base.model_dump(by_alias=True)
    [name] = data["sources"]
    data["sources"][name]["mode"] = "continuous"
    return Spec.model_validate(data), engine


@pytest.fixture
def followed(source, tmp_path) -> Iterator[tuple[Spec, str]]:
    """The source followed by ``liberation follow`` until the test ends; its replica once it holds the table."""
    spec, _engine = source
    [name] = spec.sources
    follow = CliProcess(["follow", name], spec_file=pg_support.write_spec(spec, tmp_path))
    replica = f"sqlite:///{tmp_path}/{{topic}}.sqlite"
    try:
        wait_until(
            lambda: _published(spec, replica),
            120,
            lambda: "the follower did not publish the table:\n" + follow.tail(),
        )
        yield spec, replica
        follow.assert_alive()
    finally:
        follow.stop()


def _published(spec: Spec, replica: str) -> bool:
    try:
        return _verify(spec, replica).comparison.matches
    except ConnectivityError:  # the follower has not created the topic yet
        return False


def _verify(spec: Spec, replica: str) -> Verification:
    return verify(spec, "items", replica=replica, settings=SETTINGS)


def test_a_followed_stream_under_writes_verifies_clean_every_time(source, followed) -> None:
    spec, replica = followed
    rechecked: list[int] = []
    with UpdateLoop(source[1]) as writes:
        while len(rechecked) < 3 or not any(rechecked):  # until a verify met rows changed under it
            verification = _verify(spec, replica)
            assert verification.comparison.matches, verification.lag.describe()
            assert verification.passes(strict=True)
            rechecked.append(verification.lag.rechecked)
            assert len(rechecked) < 20, "no verify ever met a row changed under it"
        assert writes.updates > 10  # the rows really were changing while it verified


def test_a_wrong_record_in_the_topic_still_fails_under_writes(source, followed) -> None:
    spec, replica = followed
    wrong = {"id": 7, "qty": 999, "note": "n7"}  # the source says qty 0
    envelope = {"before": None, "after": wrong, "op": "u", "source": {"ts_ms": 1}, "ts_ms": 1}
    producer = Producer({"bootstrap.servers": spec.kafka.resolved_bootstrap_servers()})
    producer.produce(spec.topic_for("items"), key=orjson.dumps({"id": 7}), value=orjson.dumps(envelope))
    assert producer.flush(30) == 0
    with UpdateLoop(source[1]):
        verification = _verify(spec, replica)
    assert verification.comparison.different == [b'{"id":7}'], verification.lag.describe()
    assert [k.decode() for k in verification.lag.unexplained] == ['{"id":7}']
    assert not verification.passes()
    assert verification.lag.rechecked >= 1
    assert any(d.column == "qty" for d in verification.comparison.details)


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
def test_a_stream_that_does_not_pass_the_source_position_leaves_its_keys_as_lag(source, tmp_path) -> None:
    """No follower runs: the row changed after the last drain is lag (a warning), not a failure; ``--strict`` fails."""
    spec, engine = source
    pg_support.drain(spec)
    replica = f"sqlite:///{tmp_path}/{{topic}}.sqlite"
    assert _verify(spec, replica).comparison.matches
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE items SET qty = 5 WHERE id = 9")
    verification = verify(spec, "items", replica=replica, settings=SettleSettings(timeout_seconds=2.0))
    assert [k.decode() for k in verification.lag.behind_source] == ['{"id":9}'], verification.lag.describe()
    assert not verification.lag.unexplained and verification.passes() and not verification.passes(strict=True)
    assert "had not published yet" in verification.lag.describe()
