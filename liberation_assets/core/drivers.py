"""What the drivers say, made fit for one line: librdkafka's log away from stderr, a driver error's cause.

The lowest layer of error text: ``connect``, ``publish`` and ``failures`` all use it, so none imports another
for it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

KAFKA_LOGGER = "liberation.librdkafka"
"""Where librdkafka's own log lines go (``%3|...|FAIL|rdkafka...``): a log file or ``--verbose``, never raw stderr."""

_kafka_logger = logging.getLogger(KAFKA_LOGGER)
_kafka_logger.addHandler(logging.NullHandler())  # no handler configured: drop, never Python's last-resort stderr
_kafka_logger.propagate = False


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def driver_reason(exc: BaseException) -> str:
    """The driver's own message, shortened to its cause: no SQL, no parameters, no SQLAlchemy background link."""
    original = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):  # PyMySQL: (code, message)
        return f"{args[1]} (error {args[0]})"
    text = first_line(str(original))
    # psycopg: 'connection failed: connection to server at "h", port p failed: FATAL:  password ...'
    if " failed: " in text:
        text = text.rsplit(" failed: ", 1)[1]
    return re.sub(r"\s+", " ", text.removeprefix("FATAL:")).strip() or type(original).__name__


def kafka_logger() -> logging.Logger:
    """The logger confluent-kafka clients are given (config key ``logger``)."""
    return _kafka_logger
