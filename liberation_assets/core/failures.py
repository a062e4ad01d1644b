"""Expected failures as one line an operator can act on: what failed, and where (the password-free address).

A command knows which sources and broker it talks to; a driver error rarely
does (psycopg names host and port, PyMySQL only the host, librdkafka neither).
So the CLI records what a command touches (``involve``) and this module puts
the two together.  Anything not recognized here is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from liberation_assets.core.drivers import KAFKA_LOGGER, driver_reason, kafka_logger
from liberation_assets.core.errors import LiberationError
from liberation_assets.core.spec import SourceSpec, Spec

__all__ = ["KAFKA_LOGGER", "describe_failure", "driver_reason", "involve", "kafka_logger", "preflight"]


@dataclass
class Involved:
    """What the running command talks to: the spec, the sources it uses and whether it uses Kafka."""

    spec: Spec | None = None
    sources: list[str] = field(default_factory=list)


involved = Involved()


def involve(spec: Spec, *sources: str) -> None:
    """Record the spec and the sources a command is about to use, so a driver error can name its address."""
    involved.spec = spec
    for name in sources:
        if name not in involved.sources:
            involved.sources.append(name)


def preflight(spec: Spec, *, sources: Sequence[str] = (), kafka: bool = False) -> None:
    """Record what a command talks to (so a driver error names its address), and reach it before starting.

    A wrong password, a closed port or an absent broker then ends the command at once with one line,
    instead of deep inside a snapshot (and within ``kafka.connect_timeout`` for the broker).
    """
    from liberation_assets.core.connect import check_database
    from liberation_assets.core.publish.topics import check_broker

    involve(spec, *sources)
    for name in sources:
        check_database(name, spec.sources[name])
    if kafka:
        check_broker(spec.kafka.resolved_bootstrap_servers(), timeout=spec.kafka.connect_timeout.total_seconds())


def _database_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    import sqlalchemy.exc as sa_exc

    found.append(sa_exc.DBAPIError)
    for module, name in (("psycopg", "Error"), ("psycopg2", "Error"), ("pymysql", "MySQLError")):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):  # pragma: no cover - an optional driver
            pass
    return tuple(found)


def _source_for(exc: BaseException) -> tuple[str, SourceSpec] | None:
    """The involved source this driver error most likely comes from."""
    spec = involved.spec
    if spec is None:
        return None
    candidates = [(name, spec.sources[name]) for name in involved.sources if name in spec.sources] or list(
        spec.sources.items()
    )
    module = type(getattr(exc, "orig", None) or exc).__module__.split(".")[0]
    dialect = {"psycopg": "postgresql", "psycopg2": "postgresql", "pymysql": "mysql"}.get(module)
    if dialect:
        candidates = [(n, s) for n, s in candidates if s.dialect == dialect] or candidates
    if len(candidates) > 1:
        port = re.search(r"port (\d+)", str(exc))
        if port:
            matching = [(n, s) for n, s in candidates if f":{port.group(1)}/" in s.safe_url() + "/"]
            candidates = matching or candidates
    return candidates[0] if candidates else None


def _driver_cause(exc: BaseException) -> BaseException | None:
    """The database driver error a LiberationError was raised from or during, if any."""
    seen: set[int] = set()
    current = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _database_errors()):
            return current
        current = current.__cause__ or current.__context__
    return None


def describe_failure(exc: BaseException) -> str | None:
    """One line for an expected failure; None for a bug (the caller shows the traceback)."""
    if isinstance(exc, LiberationError):
        message = str(exc).strip()
        cause = _driver_cause(exc)
        if cause is not None and "://" not in message and (found := _source_for(cause)):
            message += f" (source {found[0]!r} at {found[1].safe_url()})"  # a runner's error, without the address
        return message
    if isinstance(exc, _database_errors()):
        reason = driver_reason(exc)
        found = _source_for(exc)
        where = f"source {found[0]!r} at {found[1].safe_url()}" if found else "the database"
        return f"{where}: {reason}"
    try:
        from confluent_kafka import KafkaError, KafkaException
    except ImportError:  # pragma: no cover
        KafkaException = KafkaError = ()  # type: ignore[misc,assignment]
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else None
        reason = error.str() if isinstance(error, KafkaError) else str(exc)
        bootstrap = involved.spec.kafka.resolved_bootstrap_servers() if involved.spec else "the broker"
        return f"Kafka broker at {bootstrap}: {reason}"
    if isinstance(exc, PermissionError):
        return f"{exc.filename or 'a file'}: permission denied"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return None
