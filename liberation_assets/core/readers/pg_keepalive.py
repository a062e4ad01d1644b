"""Replication feedback while Kafka is slow, so the walsender does not time out the connection.

A Kafka commit can block for minutes while the broker is away; the
walsender closes a replication connection that sent nothing for
``wal_sender_timeout`` (60 s by default).  While a publish is in flight a
thread resends the last feedback (``send_feedback()`` with no LSN changes
nothing) every few seconds; the main thread does not touch the cursor then.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

KEEPALIVE_EVERY_SECONDS = 10.0


@contextmanager
def replication_keepalive(cursor: Any, every: float = KEEPALIVE_EVERY_SECONDS) -> Iterator[None]:
    """Keep a streaming replication cursor alive for the duration of the block (None: nothing to do)."""
    if cursor is None:
        yield
        return
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            try:
                cursor.send_feedback(force=True)
            except Exception:  # the connection is gone: the main thread meets that error itself
                return

    thread = threading.Thread(target=beat, name="replication-keepalive", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
