"""The outbox table: Debezium's columns plus an ordering sequence, and the migration that creates it.

Columns are Debezium-compatible (``id`` uuid, ``aggregatetype``,
``aggregateid``, ``type``, ``payload`` json), so the same table also works
with Debezium's event router.  Three more columns serve the relay:

- ``seq``, an identity (AUTO_INCREMENT on MariaDB): the relay reads in this
  order, and its positions are ranges of it;
- ``occurred_at``: the Kafka record timestamp;
- ``relayed_at``: set instead of deleting when ``cleanup: mark``.

The payload column is read and written as JSON *text*: ``emit`` serializes
once, and the relay forwards those bytes without parsing them again.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import UserDefinedType

from liberation_assets.core.errors import OutboxUnavailable
from liberation_assets.core.spec import OutboxSpec

REQUIRED_COLUMNS = ("seq", "id", "aggregatetype", "aggregateid", "type", "payload", "occurred_at", "relayed_at")


class _JsonText(UserDefinedType[str]):
    """A JSON column bound and fetched as text: no driver-side json.dumps/loads."""

    cache_ok = True

    def __init__(self, ddl: str, cast: bool):
        self.ddl = ddl
        self.cast = cast

    def get_col_spec(self, **_: Any) -> str:
        return self.ddl

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.cast(bindvalue, postgresql.JSON) if self.cast else bindvalue

    def column_expression(self, column: Any) -> Any:
        return sa.cast(column, sa.Text) if self.cast else column


JsonText = _JsonText("JSON", cast=True).with_variant(_JsonText("JSON", cast=False), "mysql", "mariadb")
Timestamp = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Uuid = sa.Uuid(as_uuid=False).with_variant(mysql.CHAR(36), "mysql", "mariadb")


@lru_cache(maxsize=64)
def outbox_table(name: str = "outbox", schema: str | None = None) -> sa.Table:
    """The outbox table object; one per (name, schema) per process, so statements compile once."""
    metadata = sa.MetaData()
    table = sa.Table(
        name,
        metadata,
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True, autoincrement=True),
        sa.Column("id", Uuid, nullable=False, unique=True),
        sa.Column("aggregatetype", sa.String(255), nullable=False),
        sa.Column("aggregateid", sa.String(255), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("payload", JsonText),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("relayed_at", Timestamp),
        schema=schema,
    )
    # The relay's only query: unrelayed rows in seq order.  Partial on PostgreSQL, composite elsewhere.
    sa.Index(f"{name}_pending", table.c.seq, postgresql_where=table.c.relayed_at.is_(None)).ddl_if(dialect="postgresql")
    sa.Index(f"{name}_pending", table.c.relayed_at, table.c.seq).ddl_if(dialect=("mysql", "mariadb"))  # type: ignore[arg-type]
    return table


def table_for(outbox: OutboxSpec) -> sa.Table:
    return outbox_table(outbox.table, outbox.db_schema)


def notify_channel(outbox: OutboxSpec) -> str:
    """The PostgreSQL NOTIFY channel a committed insert signals (at most 63 bytes)."""
    base = f"liberation_outbox_{outbox.db_schema + '_' if outbox.db_schema else ''}{outbox.table}"
    if len(base) <= 63:
        return base
    return "liberation_outbox_" + hashlib.blake2b(base.encode(), digest_size=16).hexdigest()


def _notify_ddl(outbox: OutboxSpec, preparer: Any) -> list[str]:
    """A statement trigger: NOTIFY is delivered at commit, which is exactly when rows become relayable."""
    table = preparer.quote(outbox.table)
    if outbox.db_schema:
        table = f"{preparer.quote_schema(outbox.db_schema)}.{table}"
    channel = notify_channel(outbox).replace("'", "''")
    return [
        "CREATE OR REPLACE FUNCTION liberation_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_notify(TG_ARGV[0], ''); RETURN NULL; END $$",
        f"CREATE OR REPLACE TRIGGER liberation_notify AFTER INSERT ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION liberation_outbox_notify('{channel}')",
    ]


def migration_sql(outbox: OutboxSpec, dialect: str) -> list[str]:
    """The DDL that ``create_outbox_table`` runs, for teams that apply migrations with their own tools."""
    statements: list[str] = []
    url = "postgresql+psycopg://" if dialect == "postgresql" else "mysql+pymysql://"

    def capture(sql: Any, *_: Any, **__: Any) -> None:
        statements.append(str(sql.compile(dialect=mock.dialect)).strip())

    mock = sa.create_mock_engine(url, capture)
    table_for(outbox).metadata.create_all(mock, checkfirst=False)
    if dialect == "postgresql":
        statements.extend(_notify_ddl(outbox, mock.dialect.identifier_preparer))
    return statements


def create_outbox_table(engine: Engine, outbox: OutboxSpec) -> sa.Table:
    """Create the outbox table, its index and (PostgreSQL) its NOTIFY trigger; idempotent."""
    table = table_for(outbox)
    with engine.begin() as connection:
        table.metadata.create_all(connection, checkfirst=True)
        if connection.dialect.name == "postgresql":
            for statement in _notify_ddl(outbox, connection.dialect.identifier_preparer):
                connection.exec_driver_sql(statement)
    return table


def check_outbox_table(connection: Connection, outbox: OutboxSpec) -> None:
    """Fail clearly when the table is missing or was created without the relay's columns."""
    inspector = sa.inspect(connection)
    where = f"{outbox.db_schema}.{outbox.table}" if outbox.db_schema else outbox.table
    if not inspector.has_table(outbox.table, schema=outbox.db_schema):
        raise OutboxUnavailable(f"outbox table {where} does not exist; create it with `liberation outbox <name>`")
    present = {column["name"] for column in inspector.get_columns(outbox.table, schema=outbox.db_schema)}
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing:
        raise OutboxUnavailable(f"outbox table {where} lacks columns {missing}; see docs/outbox.md for the migration")
