"""A pure decoder of PostgreSQL's pgoutput logical replication protocol (version 1).

Bytes in, typed messages out (values stay the server's text; ``readers.pg_types``
converts them): no I/O here, so every part is unit-tested without a server.
"""

from liberation_assets.core.readers.pgoutput.decoder import decode_message
from liberation_assets.core.readers.pgoutput.messages import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    Relation,
    Truncate,
    TypeInfo,
    Update,
)
from liberation_assets.core.readers.pgoutput.stream import pg_time_to_epoch_ms

__all__ = [
    "UNCHANGED",
    "Begin",
    "Column",
    "Commit",
    "Delete",
    "Insert",
    "LogicalMessage",
    "Message",
    "Origin",
    "Relation",
    "Truncate",
    "TypeInfo",
    "Update",
    "decode_message",
    "pg_time_to_epoch_ms",
]
