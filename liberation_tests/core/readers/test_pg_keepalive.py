"""While a Kafka commit blocks, the replication connection stays open: the walsender would time it out otherwise.

The server's ``wal_sender_timeout`` is lowered to 2 s for this test (and restored): a connection idle for 5 s
without the keepalive fails with the error of issue 13 (``PGRES_COPY_BOTH and no message``); with it, it lives.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras
import pytest

from liberation_assets.core.readers.pg_keepalive import replication_keepalive

pytestmark = pytest.mark.integration


def _idle(dsn: str, admin: Any, *, keepalive: bool) -> str | None:
    """Stream from a temporary slot, stay idle for 5 s; the error the connection then shows, if any."""
    slot = f"ka_{uuid.uuid4().hex[:12]}"
    connection = psycopg2.connect(dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    try:
        cursor = connection.cursor()
        cursor.create_replication_slot(slot, output_plugin="test_decoding")
        cursor.start_replication(slot_name=slot, decode=True)
        cursor.read_message()
        with replication_keepalive(cursor if keepalive else None, every=0.5):
            time.sleep(5)
        try:
            cursor.read_message()
            cursor.send_feedback(force=True)
            time.sleep(0.5)
            cursor.read_message()
        except psycopg2.Error as exc:
            return str(exc)
        return None
    finally:
        connection.close()
        for _ in range(50):  # the walsender exits a moment after the connection closes
            try:
                admin.cursor().execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            except psycopg2.errors.ObjectInUse:
                time.sleep(0.2)


def test_the_keepalive_keeps_an_idle_replication_connection_open(stack) -> None:
    dsn = (
        f"host={stack.pg_host} port={stack.pg_port} user={stack.pg_user} password={stack.pg_password} dbname=liberation"
    )
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        admin.cursor().execute("ALTER SYSTEM SET wal_sender_timeout = '2s'")
        admin.cursor().execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        assert _idle(dsn, admin, keepalive=True) is None
        assert "PGRES_COPY_BOTH" in (_idle(dsn, admin, keepalive=False) or "")
    finally:
        admin.cursor().execute("ALTER SYSTEM RESET wal_sender_timeout")
        admin.cursor().execute("SELECT pg_reload_conf()")
        admin.close()
