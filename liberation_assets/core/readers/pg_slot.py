"""The replication slot and publication of one PostgreSQL source, and the questions asked about them.

liberation creates the publication and the pgoutput slot when they are absent,
and never recreates a slot that it had been reading from: a new slot starts at
the current WAL position, so every change in between would be lost without a
trace.  Instead it raises ``PositionLost`` and says how to start over.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from liberation_assets.core.errors import ConnectivityError, PermissionProblem, PositionLost, SlotInUse, SpecError
from liberation_assets.core.readers.pg_types import SESSION_OPTIONS
from liberation_assets.core.readers.pgoutput.lsn import lsn_to_int
from liberation_assets.core.spec import SourceSpec

# SESSION_OPTIONS: the text forms that ``pg_types`` parses, set for the walsender's session as for SELECTs.
_SNAPSHOT_NAME = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?$")


def default_name(source_name: str) -> str:
    """``liberation_<source>``, folded to what PostgreSQL accepts as a slot name."""
    return "liberation_" + re.sub(r"[^a-z0-9_]", "_", source_name.lower())


@dataclass(frozen=True)
class SlotNames:
    slot: str
    publication: str

    @classmethod
    def for_source(cls, source_name: str, source: SourceSpec) -> "SlotNames":
        slot = source.cdc.slot or default_name(source_name)
        if not re.fullmatch(r"[a-z0-9_]{1,63}", slot):
            raise SpecError(
                f"sources.{source_name}.cdc.slot: {slot!r} is not a valid slot name (lower-case letters, digits, _)"
            )
        return cls(slot=slot, publication=source.cdc.publication or default_name(source_name))


def replication_dsn(source: SourceSpec) -> str:
    """A libpq DSN for psycopg2 from the source's SQLAlchemy URL, secrets resolved here only."""
    url = source.resolved_url()
    parts = {
        "host": url.host or "localhost",
        "port": str(url.port or 5432),
        "user": url.username or "",
        "password": url.password or "",
        "dbname": url.database or "",
        "connect_timeout": "10",
        "options": SESSION_OPTIONS,
        "application_name": "liberation-cdc",
    }
    return " ".join(f"{k}='{_quote(v)}'" for k, v in parts.items() if v)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def open_replication(source: SourceSpec) -> psycopg2.extensions.connection:
    try:
        return psycopg2.connect(
            replication_dsn(source), connection_factory=psycopg2.extras.LogicalReplicationConnection
        )
    except psycopg2.OperationalError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "replication" in message and (
            "permission" in message or "no pg_hba.conf" in message or "must be" in message
        ):
            raise PermissionProblem(f"cannot open a replication connection to {source.safe_url()}: {message}") from None
        raise ConnectivityError(f"cannot open a replication connection to {source.safe_url()}: {message}") from None


# -- rights -------------------------------------------------------------------------------------------------
_ROLE = sa.text(
    """
    SELECT rolsuper, rolreplication,
           has_function_privilege('pg_logical_emit_message(boolean, text, text)', 'EXECUTE') AS can_emit,
           has_database_privilege(current_database(), 'CREATE') AS can_create
      FROM pg_roles WHERE rolname = current_user
    """
)


def check_role(connection: Connection) -> None:
    """Fail early, and clearly, when the role cannot replicate or write heartbeats."""
    row = connection.execute(_ROLE).one()
    if not (row.rolsuper or row.rolreplication):
        raise PermissionProblem(
            "log-based capture needs the REPLICATION attribute: ALTER ROLE <role> REPLICATION "
            "(and a `host replication` line in pg_hba.conf)"
        )
    if not (row.rolsuper or row.can_emit):
        raise PermissionProblem(
            "heartbeats and snapshot watermarks need pg_logical_emit_message: "
            "GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO <role>"
        )


def _permission(exc: sa.exc.DBAPIError, what: str) -> PermissionProblem | None:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in ("42501",):  # insufficient_privilege, must be owner
        return PermissionProblem(f"{what}: {str(exc.orig).strip().splitlines()[0]}")
    return None


# -- publication ----------------------------------------------------------------------------------------------
def ensure_publication(
    connection: Connection, publication: str, tables: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Create the publication, or add the tables it lacks; returns the tables added to an existing one."""
    exists = connection.execute(sa.text("SELECT 1 FROM pg_publication WHERE pubname = :p"), {"p": publication}).first()
    prepare = connection.dialect.identifier_preparer
    names = {t: f"{prepare.quote(t[0])}.{prepare.quote(t[1])}" for t in tables}
    try:
        if not exists:
            connection.execute(
                sa.text(f"CREATE PUBLICATION {prepare.quote(publication)} FOR TABLE {', '.join(names.values())}")
            )
            return []
        present = {
            (r.schemaname, r.tablename)
            for r in connection.execute(
                sa.text("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = :p"),
                {"p": publication},
            )
        }
        missing = [t for t in tables if t not in present]
        if missing:
            connection.execute(
                sa.text(
                    f"ALTER PUBLICATION {prepare.quote(publication)} ADD TABLE {', '.join(names[t] for t in missing)}"
                )
            )
        return missing
    except sa.exc.DBAPIError as exc:
        problem = _permission(exc, f"cannot create or extend publication {publication}")
        if problem:
            raise problem from None
        raise


def ensure_replica_identity_full(connection: Connection, schema: str, table: str) -> bool:
    """Make updates carry the whole old row, so unchanged TOAST values can be filled; True if changed."""
    current = connection.execute(
        sa.text(
            "SELECT c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :s AND c.relname = :t"
        ),
        {"s": schema, "t": table},
    ).scalar()
    if current == "f":
        return False
    prepare = connection.dialect.identifier_preparer
    try:
        connection.execute(sa.text(f"ALTER TABLE {prepare.quote(schema)}.{prepare.quote(table)} REPLICA IDENTITY FULL"))
    except sa.exc.DBAPIError as exc:
        problem = _permission(
            exc, f"cannot set REPLICA IDENTITY FULL on {schema}.{table} (toast: replica_identity_full)"
        )
        if problem:
            raise problem from None
        raise
    return True


# -- slot ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlotInfo:
    """The slot as ``pg_replication_slots`` shows it, with the WAL it holds back."""

    name: str
    plugin: str | None
    database: str | None
    active_pid: int | None
    restart_lsn: int | None
    confirmed_flush_lsn: int | None
    wal_status: str | None
    current_lsn: int

    @property
    def retained_wal_bytes(self) -> int:
        """WAL the server keeps for this slot; it grows without bound when nobody confirms."""
        return max(0, self.current_lsn - self.restart_lsn) if self.restart_lsn is not None else 0

    @property
    def lag_bytes(self) -> int:
        """WAL written since the last confirmed position."""
        return max(0, self.current_lsn - self.confirmed_flush_lsn) if self.confirmed_flush_lsn is not None else 0

    def metadata(self) -> dict[str, int]:
        return {
            "retained_wal_bytes": self.retained_wal_bytes,
            "slot_lag_bytes": self.lag_bytes,
            "confirmed_flush_lsn": self.confirmed_flush_lsn or 0,
            "server_lsn": self.current_lsn,
        }


_SLOT = sa.text(
    """
    SELECT slot_name, plugin, database, active_pid, restart_lsn::text AS restart_lsn,
           confirmed_flush_lsn::text AS confirmed_flush_lsn, wal_status, pg_current_wal_lsn()::text AS current_lsn
      FROM pg_replication_slots WHERE slot_name = :slot
    """
)


def slot_info(connection: Connection, slot: str) -> SlotInfo | None:
    row = connection.execute(_SLOT, {"slot": slot}).first()
    if row is None:
        return None
    return SlotInfo(
        name=row.slot_name,
        plugin=row.plugin,
        database=row.database,
        active_pid=row.active_pid,
        restart_lsn=lsn_to_int(row.restart_lsn) if row.restart_lsn else None,
        confirmed_flush_lsn=lsn_to_int(row.confirmed_flush_lsn) if row.confirmed_flush_lsn else None,
        wal_status=row.wal_status,
        current_lsn=lsn_to_int(row.current_lsn),
    )


SLOT_WAIT_SECONDS = 60.0
"""How long to wait for a killed reader's walsender to release the slot."""


def released_slot(connection: Connection, slot: str, *, timeout: float = SLOT_WAIT_SECONDS) -> SlotInfo | None:
    """The slot (None if absent) once no walsender holds it: a killed reader's lingers for a moment.

    Raises ``SlotInUse`` naming the backend when it is still held after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while (info := slot_info(connection, slot)) is not None and info.active_pid is not None:
        if time.monotonic() > deadline:
            raise SlotInUse(
                f"replication slot {slot} is held by backend {info.active_pid}; is another `liberation follow` running?"
            )
        time.sleep(0.2)
    return info


def current_lsn(connection: Connection) -> int:
    return lsn_to_int(connection.execute(sa.text("SELECT pg_current_wal_lsn()::text")).scalar_one())


def check_slot(info: SlotInfo | None, *, slot: str, database: str, has_position: bool) -> None:
    """Raise ``PositionLost`` when resuming from this slot would skip changes."""
    how = (
        f"To start over deliberately, delete the stored position (key source/<name>/cdc) and drop the slot with "
        f"SELECT pg_drop_replication_slot('{slot}'); the next run takes a new snapshot."
    )
    if info is None:
        if has_position:
            raise PositionLost(
                f"replication slot {slot} is gone, but a stored position says liberation was reading from it: "
                f"the changes since then are lost. It is not recreated silently. {how}"
            )
        return
    if info.plugin != "pgoutput" or info.database != database:
        raise PositionLost(
            f"replication slot {slot} exists but is a {info.plugin} slot of database {info.database}, "
            f"not a pgoutput slot of {database}; configure another slot name (sources.<name>.cdc.slot)"
        )
    if info.wal_status == "lost":
        raise PositionLost(
            f"replication slot {slot} lost the WAL it needed (wal_status=lost, max_slot_wal_keep_size): "
            f"changes were removed before they were read. {how}"
        )


@dataclass(frozen=True)
class CreatedSlot:
    consistent_point: int
    snapshot_name: str


def create_slot(cursor: Any, slot: str) -> CreatedSlot:
    """Create the pgoutput slot and export its snapshot; the connection must stay idle while it is read."""
    try:
        cursor.execute(f"CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT")
    except psycopg2.errors.DuplicateObject:
        raise PositionLost(
            f"replication slot {slot} appeared while liberation was creating it: is another reader running?"
        ) from None
    except psycopg2.Error as exc:
        message = str(exc).strip().splitlines()[0]
        if "permission" in message or "must be superuser or replication" in message:
            raise PermissionProblem(f"cannot create replication slot {slot}: {message}") from None
        raise
    _name, point, snapshot, _plugin = cursor.fetchone()
    if not _SNAPSHOT_NAME.match(snapshot or ""):
        raise ConnectivityError(f"unexpected snapshot name {snapshot!r} from CREATE_REPLICATION_SLOT")
    return CreatedSlot(consistent_point=lsn_to_int(point), snapshot_name=snapshot)


def use_snapshot(connection: Connection, snapshot_name: str) -> None:
    """Make this REPEATABLE READ transaction see exactly the slot's exported snapshot."""
    if not _SNAPSHOT_NAME.match(snapshot_name):
        raise ValueError(f"not a snapshot name: {snapshot_name!r}")
    connection.execute(sa.text(f"SET TRANSACTION SNAPSHOT '{snapshot_name}'"))


def start_streaming(cursor: Any, slot: str, publication: str) -> None:
    """Stream from the slot's confirmed position, pgoutput protocol 1, with logical messages."""
    try:
        cursor.start_replication(
            slot_name=slot,
            decode=False,
            status_interval=10,
            options={"proto_version": "1", "publication_names": publication, "messages": "true"},
        )
    except psycopg2.errors.ObjectInUse as exc:
        raise SlotInUse(
            f"replication slot {slot} is in use by another reader: {str(exc).strip().splitlines()[0]}"
        ) from None


def emit_message(connection: Connection, prefix: str, content: str) -> int:
    """A non-transactional logical message; returns its LSN.  Used for heartbeats and watermarks."""
    lsn = connection.execute(
        sa.text("SELECT pg_logical_emit_message(false, :p, :c)::text"), {"p": prefix, "c": content}
    ).scalar_one()
    return lsn_to_int(lsn)


_PEEK = sa.text(
    "SELECT count(*) FROM pg_logical_slot_peek_binary_changes(:slot, NULL, 1, "
    "'proto_version', '1', 'publication_names', :publication)"
)


def has_pending_changes(connection: Connection, slot: str, publication: str) -> bool | None:
    """True when the slot holds at least one unread change of a published table; None if a reader holds it."""
    try:
        return bool(connection.execute(_PEEK, {"slot": slot, "publication": publication}).scalar_one())
    except sa.exc.DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55006":  # object_in_use: `liberation follow` is reading
            return None
        raise
