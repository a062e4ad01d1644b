"""Database engines built from the spec, with secrets resolved only here."""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.errors import ConnectivityError
from liberation_assets.core.readers.pg_types import SESSION_OPTIONS
from liberation_assets.core.spec import SourceSpec


def create_source_engine(source: SourceSpec, **kwargs: object) -> Engine:
    url = source.resolved_url()
    connect_args: dict[str, object] = {}
    backend = url.get_backend_name()
    if backend == "postgresql":
        # The text forms pg_types parses, the same as the walsender's (pg_slot.replication_dsn).
        connect_args.update(connect_timeout=10, options=SESSION_OPTIONS)
    elif backend in ("mysql", "mariadb"):
        # UTC sessions: NOW() and innodb_trx times are then comparable with the ceiling.
        connect_args.update(connect_timeout=10, init_command="SET time_zone = '+00:00'")
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def cached_engine(source: SourceSpec) -> Engine:
    """One pooled engine per source per process."""
    return create_source_engine(source)


def check_database(name: str, source: SourceSpec) -> None:
    """Fail with a clear error when the database does not answer."""
    try:
        engine = create_source_engine(source)
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except ConnectivityError:
        raise
    except Exception as exc:
        from liberation_assets.core.drivers import driver_reason

        raise ConnectivityError(
            f"source {name!r} at {source.safe_url()}: cannot connect: {driver_reason(exc)}"
        ) from None
