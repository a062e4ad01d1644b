"""Error classification and the retry loop, without servers: which errors reconnect, which end ``follow``."""

from __future__ import annotations

import psycopg2
import pymysql
import pytest
import sqlalchemy as sa

from liberation_assets.core.engine import retry
from liberation_assets.core.errors import (
    AuthenticationFailed,
    ConnectivityError,
    GaveUp,
    PositionLost,
    PublishError,
    SchemaIncompatible,
    SlotInUse,
)


@pytest.mark.parametrize(
    "error",
    [
        psycopg2.DatabaseError("error with status PGRES_COPY_BOTH and no message from the libpq"),
        psycopg2.OperationalError("terminating walsender process due to replication timeout"),
        sa.exc.OperationalError(
            "SELECT 1", {}, Exception('connection to server at "127.0.0.1" failed: Connection refused')
        ),
        pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
        ConnectionResetError(104, "Connection reset by peer"),
        PublishError("transaction of 'x' failed: Broker: Not coordinator"),
        ConnectivityError("pgoutput: a change outside a transaction"),
        SlotInUse("replication slot s is held by backend 7"),
    ],
)
def test_retriable(error: BaseException) -> None:
    failure = retry.classify(error)
    assert failure is not None and failure.retriable


@pytest.mark.parametrize(
    "error",
    [
        sa.exc.OperationalError("connect", {}, Exception('password authentication failed for user "liberation"')),
        pymysql.err.OperationalError(1045, "Access denied for user 'liberation'@'127.0.0.1' (using password: YES)"),
        PositionLost("binlog mariadb-bin.000003 has been purged"),
        SchemaIncompatible("column dropped"),
    ],
)
def test_permanent(error: BaseException) -> None:
    failure = retry.classify(error)
    assert failure is not None and not failure.retriable


def test_a_bug_is_neither_and_propagates() -> None:
    assert retry.classify(KeyError("x")) is None
    with pytest.raises(KeyError):
        retry.follow_with_retry(
            "source s",
            lambda until, connected: (_ for _ in ()).throw(KeyError("x")),
            until=lambda: False,
            log=lambda line: None,
        )


def test_retries_with_growing_backoff_then_a_login_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "FIRST_DELAY_SECONDS", 0.01)
    lines: list[str] = []
    errors = [
        PublishError("broker away"),
        PublishError("broker away"),
        pymysql.err.OperationalError(1045, "Access denied for user 'u'"),
    ]

    def attempt(until, connected) -> None:
        raise errors.pop(0)

    with pytest.raises(AuthenticationFailed) as failed:
        retry.follow_with_retry("source my", attempt, until=lambda: False, log=lines.append)
    assert str(failed.value).startswith("source my: the database refused the login")
    assert [line.rsplit("(", 1)[1] for line in lines] == ["attempt 1)", "attempt 2)"]
    assert "reconnecting in 0.0s" in lines[0] and "source my: PublishError: broker away" in lines[0]


def test_gives_up_after_the_configured_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "FIRST_DELAY_SECONDS", 0.01)

    def attempt(until, connected) -> None:
        raise PublishError("broker away")

    with pytest.raises(GaveUp, match="source pg: gave up after"):
        retry.follow_with_retry("source pg", attempt, until=lambda: False, log=lambda line: None, give_up_after=0.05)


def test_a_connected_attempt_resets_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "FIRST_DELAY_SECONDS", 0.01)
    lines: list[str] = []
    calls = {"n": 0}

    def attempt(until, connected) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            return
        if calls["n"] == 2:
            connected()
        raise PublishError("broker away")

    retry.follow_with_retry("source pg", attempt, until=lambda: False, log=lines.append)
    assert [line.rsplit("(", 1)[1] for line in lines] == ["attempt 1)", "attempt 1)", "attempt 2)"]
