"""Slot and publication management against the real PostgreSQL: rights, creation, lag, lost positions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from liberation_assets.core.errors import PermissionProblem, PositionLost, SpecError
from liberation_assets.core.readers import pg_slot
from liberation_assets.core.spec import SourceSpec
from liberation_assets.stack import StackSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(pg_engine: sa.Engine) -> Iterator[Connection]:
    with pg_engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("CREATE TABLE a (id int PRIMARY KEY, body text)")
        connection.exec_driver_sql("CREATE TABLE b (id int PRIMARY KEY)")
        yield connection


def test_names_default_and_validation() -> None:
    source = SourceSpec(url="postgresql+psycopg://u:${P:-x}@h/db")
    assert pg_slot.SlotNames.for_source("Shop-EU", source) == pg_slot.SlotNames(
        "liberation_shop_eu", "liberation_shop_eu"
    )
    bad = SourceSpec(url="postgresql+psycopg://u:${P:-x}@h/db", cdc={"slot": "Bad-Name"})
    with pytest.raises(SpecError, match="not a valid slot name"):
        pg_slot.SlotNames.for_source("s", bad)


def test_lsn_text_round_trip() -> None:
    assert pg_slot.lsn_to_int("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert pg_slot.lsn_to_int("0/0") == 0


def test_role_without_replication_is_refused_clearly(stack: StackSettings, pg_database: str, admin: Connection) -> None:
    role = f"norepl_{uuid.uuid4().hex[:8]}"
    admin.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw' NOREPLICATION NOSUPERUSER")
    engine = sa.create_engine(f"postgresql+psycopg://{role}:pw@{stack.pg_host}:{stack.pg_port}/{pg_database}")
    try:
        with engine.connect() as connection:
            with pytest.raises(PermissionProblem, match="REPLICATION"):
                pg_slot.check_role(connection)
            with pytest.raises(PermissionProblem, match="publication"):
                pg_slot.ensure_publication(connection, "p_norepl", [("public", "a")])
    finally:
        engine.dispose()
        admin.exec_driver_sql(f"DROP OWNED BY {role}")
        admin.exec_driver_sql(f"DROP ROLE {role}")


def test_publication_is_created_then_extended(admin: Connection) -> None:
    assert pg_slot.ensure_publication(admin, "pub_t", [("public", "a")]) == []
    assert pg_slot.ensure_publication(admin, "pub_t", [("public", "a"), ("public", "b")]) == [("public", "b")]
    tables = (
        admin.exec_driver_sql("SELECT tablename FROM pg_publication_tables WHERE pubname = 'pub_t' ORDER BY 1")
        .scalars()
        .all()
    )
    assert tables == ["a", "b"]


def test_replica_identity_full_is_set_once(admin: Connection) -> None:
    assert pg_slot.ensure_replica_identity_full(admin, "public", "a") is True
    assert pg_slot.ensure_replica_identity_full(admin, "public", "a") is False
    assert admin.exec_driver_sql("SELECT relreplident FROM pg_class WHERE relname = 'a'").scalar() == "f"


def test_slot_lag_pending_changes_and_lost_positions(pg_database: str, admin: Connection) -> None:
    slot = f"t_{pg_database}"
    pg_slot.ensure_publication(admin, "pub_s", [("public", "a")])
    assert pg_slot.slot_info(admin, slot) is None
    pg_slot.check_slot(None, slot=slot, database=pg_database, has_position=False)  # first run: create it
    with pytest.raises(PositionLost, match="not recreated silently"):
        pg_slot.check_slot(None, slot=slot, database=pg_database, has_position=True)

    admin.execute(sa.text("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')"), {"s": slot})
    info = pg_slot.slot_info(admin, slot)
    assert info is not None and info.plugin == "pgoutput" and info.database == pg_database and info.active_pid is None
    pg_slot.check_slot(info, slot=slot, database=pg_database, has_position=True)
    with pytest.raises(PositionLost, match="configure another slot name"):
        pg_slot.check_slot(info, slot=slot, database="other", has_position=True)
    with pytest.raises(PositionLost, match="wal_status=lost"):
        pg_slot.check_slot(
            pg_slot.SlotInfo(slot, "pgoutput", pg_database, None, 1, 1, "lost", 2),
            slot=slot,
            database=pg_database,
            has_position=True,
        )

    assert pg_slot.has_pending_changes(admin, slot, "pub_s") is False
    pg_slot.emit_message(admin, "liberation.heartbeat", "")  # messages are not changes
    assert pg_slot.has_pending_changes(admin, slot, "pub_s") is False
    admin.exec_driver_sql("INSERT INTO b VALUES (1)")  # not published
    assert pg_slot.has_pending_changes(admin, slot, "pub_s") is False
    admin.exec_driver_sql("INSERT INTO a VALUES (1, 'x')")
    assert pg_slot.has_pending_changes(admin, slot, "pub_s") is True

    before = pg_slot.slot_info(admin, slot)
    admin.exec_driver_sql("INSERT INTO a SELECT g, repeat('x', 100) FROM generate_series(2, 2000) g")
    after = pg_slot.slot_info(admin, slot)
    assert before is not None and after is not None
    assert after.retained_wal_bytes > before.retained_wal_bytes and after.lag_bytes > before.lag_bytes
    assert set(after.metadata()) == {"retained_wal_bytes", "slot_lag_bytes", "confirmed_flush_lsn", "server_lsn"}
