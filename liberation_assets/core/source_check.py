"""Online ``liberation check``: does each stream's table, key, cursor and projection exist, with the rights it needs?

Found before a run rather than at it: each problem names the stream, what is
missing and, for a right, the statement that grants it.  Reads the catalog
only; the one probe that touches a table is ``SELECT <columns> ... WHERE 1 = 0``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.spec import Spec, StreamSpec

_PERMISSION_CODES = {"42501", 1142, 1143, 1227, 1044}  # PostgreSQL insufficient_privilege; MySQL *_denied


def _needed_columns(stream: StreamSpec) -> list[str]:
    columns = list(stream.key)
    if stream.cursor:
        columns.append(stream.cursor)
    columns += list(stream.columns().values())
    if stream.soft_delete:
        columns.append(stream.soft_delete.column)
    return list(dict.fromkeys(columns))


def _is_permission_error(exc: sa.exc.DBAPIError) -> bool:
    original = exc.orig
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if code is None and original is not None and original.args and isinstance(original.args[0], int):
        code = original.args[0]
    return code in _PERMISSION_CODES


def _table_problems(connection: Connection, name: str, stream: StreamSpec, user: str) -> list[str]:
    preparer = connection.dialect.identifier_preparer
    inspector = sa.inspect(connection)
    schema = stream.db_schema
    shown = f"{schema}.{stream.table}" if schema else stream.table
    if not inspector.has_table(stream.table, schema=schema):
        return [f"stream {name}: table {shown} does not exist (or the role {user} cannot see it)"]
    existing = {column["name"] for column in inspector.get_columns(stream.table, schema=schema)}
    needed = _needed_columns(stream)
    missing = [column for column in needed if column not in existing]
    if missing:
        return [
            f"stream {name}: table {shown} has no column {', '.join(missing)} (it has {', '.join(sorted(existing))})"
        ]
    quoted_table = (preparer.quote_schema(schema) + "." if schema else "") + preparer.quote(stream.table)
    try:
        with connection.begin_nested():
            connection.execute(
                sa.text(f"SELECT {', '.join(preparer.quote(c) for c in needed)} FROM {quoted_table} WHERE 1 = 0")
            )
    except sa.exc.DBAPIError as exc:
        if not _is_permission_error(exc):
            raise
        return [
            f"stream {name}: the role {user} may not read table {shown}; grant it: GRANT SELECT ON {quoted_table} TO {user}"
        ]
    return []


def _postgres_cdc_problems(
    connection: Connection, spec: Spec, source_name: str, streams: dict[str, StreamSpec], user: str
) -> list[str]:
    from liberation_assets.core.readers.pg_slot import SlotNames

    problems = []
    rights = connection.execute(
        sa.text("SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user")
    ).one()
    if not (rights.rolreplication or rights.rolsuper):
        problems.append(
            f"source {source_name}: CDC needs the REPLICATION attribute for role {user}; "
            f"grant it: ALTER ROLE {user} WITH REPLICATION"
        )
    publication = SlotNames.for_source(source_name, spec.sources[source_name]).publication
    published = {
        (row.schemaname, row.tablename)
        for row in connection.execute(
            sa.text("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = :p"), {"p": publication}
        )
    }
    for name, stream in streams.items():
        schema = stream.db_schema or "public"
        table = f'"{schema}"."{stream.table}"'
        row = connection.execute(
            sa.text(
                "SELECT c.relreplident, pg_has_role(c.relowner, 'USAGE') AS owned FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relname = :t"
            ),
            {"s": schema, "t": stream.table},
        ).first()
        if row is None:
            continue  # reported as a missing table
        owned = bool(row.owned or rights.rolsuper)
        if (schema, stream.table) not in published and not owned:
            problems.append(
                f"stream {name}: table {schema}.{stream.table} is not in publication {publication} and the role "
                f"{user} does not own it to add it; as its owner run: CREATE PUBLICATION {publication} FOR TABLE "
                f"{table} (or ALTER PUBLICATION {publication} ADD TABLE {table})"
            )
        if stream.toast == "replica_identity_full" and row.relreplident != "f" and not owned:
            problems.append(
                f"stream {name}: toast: replica_identity_full needs REPLICA IDENTITY FULL on {schema}.{stream.table}, "
                f"which only its owner can set; as its owner run: ALTER TABLE {table} REPLICA IDENTITY FULL"
            )
    return problems


def _mysql_cdc_problems(connection: Connection, source_name: str, user: str) -> list[str]:
    from liberation_assets.core.readers.binlog.client import _REQUIRED, binlog_problems

    problems = []
    names = ", ".join(f"'{name}'" for name in (*_REQUIRED, "binlog_row_value_options"))
    settings = {
        str(k).lower(): str(v)
        for k, v in connection.exec_driver_sql(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})").all()
    }
    if found := binlog_problems(settings):
        problems.append(
            f"source {source_name}: the binlog cannot be captured: {', '.join(found)}; start the server with "
            "--log-bin --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL"
        )
    grants = " ".join(str(row[0]).upper() for row in connection.exec_driver_sql("SHOW GRANTS FOR CURRENT_USER()").all())
    everything = "ALL PRIVILEGES ON *.*" in grants
    grantee = "CURRENT_USER()" if "@" not in user else user
    if not everything and not any(right in grants for right in ("REPLICATION SLAVE", "REPLICATION REPLICA")):
        problems.append(
            f"source {source_name}: CDC needs REPLICATION SLAVE for {user}; grant it: "
            f"GRANT REPLICATION SLAVE ON *.* TO {grantee}"
        )
    if not everything and not any(right in grants for right in ("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER")):
        problems.append(
            f"source {source_name}: CDC needs REPLICATION CLIENT (MariaDB: BINLOG MONITOR) for {user}; grant it: "
            f"GRANT REPLICATION CLIENT ON *.* TO {grantee}"
        )
    return problems


def check_source_objects(spec: Spec, source_name: str) -> list[str]:
    """Every problem of the source's streams and outboxes that a run would meet; empty when all is in place."""
    source = spec.sources[source_name]
    streams = {name: stream for name, stream in spec.streams.items() if stream.source == source_name}
    outboxes = {name: outbox for name, outbox in spec.outboxes.items() if outbox.source == source_name}
    if not streams and not outboxes:
        return []
    engine = create_source_engine(source)
    problems: list[str] = []
    try:
        with engine.connect() as connection:
            user = str(
                connection.execute(
                    sa.text("SELECT current_user" if source.dialect == "postgresql" else "SELECT CURRENT_USER()")
                ).scalar_one()
            )
            if source.dialect != "postgresql":
                user = "'{}'@'{}'".format(*user.split("@", 1)) if "@" in user else user
            for name, stream in streams.items():
                problems += _table_problems(connection, name, stream, user)
            inspector = sa.inspect(connection)
            for name, outbox in outboxes.items():
                if not inspector.has_table(outbox.table, schema=outbox.db_schema):
                    problems.append(
                        f"outbox {name}: table {outbox.table} does not exist; create it with "
                        f"`liberation outbox {name}` (or its DDL: `liberation outbox {name} --sql`)"
                    )
            polled = [name for name, stream in streams.items() if "query" in stream.patterns]
            if (
                polled
                and source.dialect == "postgresql"
                and not connection.execute(
                    sa.text(
                        "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') FROM pg_roles "
                        "WHERE rolname = current_user"
                    )
                ).scalar_one()
            ):
                problems.append(
                    f"source {source_name}: the query pattern ({', '.join(polled)}) needs to see every session's "
                    f"open transaction; grant it: GRANT pg_read_all_stats TO {user}"
                )
            cdc = {name: stream for name, stream in streams.items() if "cdc" in stream.patterns}
            if cdc and source.dialect == "postgresql":
                problems += _postgres_cdc_problems(connection, spec, source_name, cdc, user)
            elif cdc and source.dialect == "mysql":
                problems += _mysql_cdc_problems(connection, source_name, user)
            connection.rollback()
    finally:
        engine.dispose()
    return problems
