"""Reconnect, the same way for every ``follow``: errors are classified once, retried with bounded backoff.

Retriable: a broker or database that is unreachable or restarting, a
replication connection the walsender closed (``PGRES_COPY_BOTH and no
message``, a replication timeout), a reset connection, a slot a dying
walsender still holds, a Kafka transaction that failed.  Each retry starts the
pattern afresh from its position in Kafka (``init_transactions`` fences what
the failed attempt left open), so a retry neither loses nor repeats anything.

Permanent: a login the database refuses, a lost slot or a purged binlog
(``PositionLost``), an incompatible schema, a missing privilege or setting,
a bad spec.  These end ``follow`` with one line naming the source (the CLI
prints ``liberation: error: ...`` and exits 2), as does a run of retriable
errors longer than ``give_up_after`` (``GaveUp``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from liberation_assets.core.errors import (
    AuthenticationFailed,
    ConnectivityError,
    GaveUp,
    LiberationError,
    PublishError,
    SlotInUse,
)

Log = Callable[[str], None]
Until = Callable[[], bool]
Attempt = Callable[[Until, Callable[[], None]], None]
"""``attempt(until, connected)``: run the pattern until ``until()``; call ``connected()`` once it is streaming."""

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0
GIVE_UP_ENV = "LIBERATION_GIVE_UP_AFTER"
"""Seconds of uninterrupted retriable failures after which ``follow`` gives up (default: never)."""

_AUTHENTICATION = (
    "password authentication failed",
    "authentication failed",
    "access denied for user",
    "no pg_hba.conf entry",
    "peer authentication failed",
)
_RETRIABLE_TYPES: tuple[type[BaseException], ...] = (
    ConnectivityError,
    PublishError,
    SlotInUse,
    ConnectionError,
    TimeoutError,
    EOFError,
)


def _driver_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the drivers: imported lazily, each is optional for the core."""
    found: list[type[BaseException]] = [OSError]
    try:
        import sqlalchemy.exc as sa_exc

        found += [sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.InternalError, sa_exc.DisconnectionError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import psycopg2

        found += [psycopg2.OperationalError, psycopg2.InterfaceError, psycopg2.DatabaseError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import psycopg

        found += [psycopg.OperationalError, psycopg.InterfaceError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import pymysql

        found += [pymysql.err.OperationalError, pymysql.err.InterfaceError, pymysql.err.InternalError]
    except ImportError:  # pragma: no cover
        pass
    try:
        from confluent_kafka import KafkaException

        found.append(KafkaException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


_MISSING = ("does not exist", "unknown database")
"""A database, role or slot that is not there: waiting will not create it."""


@dataclass(frozen=True)
class Failure:
    retriable: bool
    reason: str
    login: bool = False


def classify(exc: BaseException) -> Failure | None:
    """Retriable or permanent; None for an error that is neither (a bug: it propagates as it is)."""
    reason = first_line(exc)
    text = str(exc).lower()
    if any(marker in text for marker in _AUTHENTICATION):
        return Failure(False, f"the database refused the login: {reason}", login=True)
    if not isinstance(exc, LiberationError) and any(marker in text for marker in _MISSING):
        return Failure(False, reason)
    if isinstance(exc, _RETRIABLE_TYPES):
        return Failure(True, f"{type(exc).__name__}: {reason}")
    if isinstance(exc, LiberationError):
        return Failure(False, reason)
    if isinstance(exc, _driver_errors()):
        return Failure(True, f"{type(exc).__name__}: {reason}")
    return None


def give_up_after_default() -> float | None:
    value = os.environ.get(GIVE_UP_ENV, "").strip()
    return float(value) if value else None


def follow_with_retry(
    what: str,
    attempt: Attempt,
    *,
    until: Until,
    log: Log,
    give_up_after: float | None = None,
    on_retry: Callable[[str, float, int], None] | None = None,
) -> None:
    """Run ``attempt`` (at least once) until ``until()``; after a retriable error, wait (0.5 s doubling to 30 s) and run it again.

    The backoff and the give-up clock restart once an attempt reports ``connected``.
    ``what`` names the source or outbox in every line (``source pg``, ``outbox orders``).
    """
    failing_since: float | None = None
    failures = 0
    while True:
        state = {"connected": False}

        def connected() -> None:
            state["connected"] = True

        try:
            attempt(until, connected)
            return
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if not failure.retriable:
                if isinstance(exc, LiberationError):
                    raise
                raise AuthenticationFailed(f"{what}: {failure.reason}") from None
            if until():
                return
            now = time.monotonic()
            if state["connected"]:
                failing_since, failures = None, 0
            failing_since = now if failing_since is None else failing_since
            failures += 1
            if give_up_after is not None and now - failing_since >= give_up_after:
                raise GaveUp(
                    f"{what}: gave up after {now - failing_since:.0f}s of failures; last: {failure.reason}"
                ) from None
            delay = min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** (failures - 1))
            log(f"liberation: {what}: {failure.reason}; reconnecting in {delay:.1f}s (attempt {failures})")
            if on_retry is not None:
                on_retry(failure.reason, delay, failures)
            wake = time.monotonic() + delay
            while not until() and time.monotonic() < wake:
                time.sleep(min(0.2, max(0.0, wake - time.monotonic())))
