"""The late-commit-safe ceiling for query polling.

A transaction that started at t0 writes ``updated_at = now()`` = t0 and may
commit much later.  Each poll therefore reads only rows strictly below
``least(db_now, oldest start of any open client transaction) - skew``.  The
ceiling is read *before* the data snapshot is taken, in its own transaction:
a transaction open at that moment is counted, and one that starts later writes
timestamps above the ceiling.  A long-open transaction holds the ceiling back,
so liberation lags but never skips; that lag is reported.  On PostgreSQL only
transactions in the stream's own database count: no other session can write
to its tables (dblink and foreign tables connect to it as sessions of their own).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from liberation_assets.core.errors import PermissionProblem

_PG_CEILING = sa.text(
    """
    SELECT clock_timestamp() AS db_now,
           (SELECT min(xact_start) FROM pg_stat_activity
             WHERE backend_type = 'client backend'
               AND xact_start IS NOT NULL
               AND datname = current_database()
               AND pid <> pg_backend_pid()) AS oldest_open,
           (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
             OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS sees_all
    """
)
_MYSQL_CEILING = sa.text(
    """
    SELECT UTC_TIMESTAMP(6) AS db_now,
           (SELECT MIN(trx_started) FROM information_schema.innodb_trx
             WHERE trx_mysql_thread_id <> CONNECTION_ID()) AS oldest_open
    """
)


@dataclass(frozen=True)
class Ceiling:
    """The exclusive upper bound of one poll, and why it is where it is."""

    value: datetime
    """Aware, UTC."""
    db_now: datetime
    held_back_by_open_transaction: bool

    @property
    def lag_seconds(self) -> float:
        return max(0.0, (self.db_now - self.value).total_seconds())

    def for_column(self, naive: bool, zone: ZoneInfo) -> datetime:
        """The ceiling as the cursor column stores it: naive columns hold local time in the configured zone."""
        return self.value.astimezone(zone).replace(tzinfo=None) if naive else self.value


def _aware(value: datetime, zone: ZoneInfo = ZoneInfo("UTC")) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def read_ceiling(connection: Connection, *, skew: timedelta, safety_lag: timedelta) -> Ceiling:
    """Compute the ceiling on a connection that holds no data snapshot yet."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        row = connection.execute(_PG_CEILING).one()
        if not row.sees_all:
            raise PermissionProblem(
                "the query pattern needs to see every session's open transaction: "
                "GRANT pg_read_all_stats TO <role> (or pg_monitor), or use a superuser"
            )
        db_now, oldest = _aware(row.db_now), _aware(row.oldest_open) if row.oldest_open else None
    elif dialect in ("mysql", "mariadb"):
        row = connection.execute(_MYSQL_CEILING).one()
        db_now, oldest = _aware(row.db_now), _aware(row.oldest_open) if row.oldest_open else None
    else:
        db_now, oldest = datetime.now(timezone.utc), None  # SQLite: single writer, nothing to wait for
    held = oldest is not None and oldest < db_now
    bound = oldest if oldest is not None and held else db_now
    return Ceiling(value=bound - skew - safety_lag, db_now=db_now, held_back_by_open_transaction=held)
