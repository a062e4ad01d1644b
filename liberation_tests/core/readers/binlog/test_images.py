"""``images`` (the row-image loop mypyc compiles) gives ``rows``' and ``temporal``'s values, without a server."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from liberation_assets.core.readers.binlog import images
from liberation_assets.core.readers.binlog.rows import _decimal

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def test_instants_are_the_epoch_plus_their_seconds() -> None:
    picks = random.Random(18)
    cases = [(1, 0), (0, 1), (86_399, 999_999), (86_400, 0), (2**32 - 1, 999_999), (951_782_400, 5)]
    cases += [(picks.randrange(2**32), picks.randrange(1_000_000)) for _ in range(20_000)]
    for seconds, micros in cases:
        value = images._instant(seconds, micros)
        assert value == _EPOCH + timedelta(seconds=seconds, microseconds=micros), (seconds, micros)
        assert value.tzinfo is timezone.utc


def test_decimals_read_as_rows_reads_them() -> None:
    picks = random.Random(18)
    for _ in range(3_000):
        precision = picks.randrange(1, 66)
        scale = picks.randrange(0, min(precision, 30) + 1)
        read = _decimal(precision, scale)
        raw = bytes(picks.randrange(256) for _ in range(40))
        expected, end = read(raw, 3)
        assert images._decimal(raw, 3, precision, scale) == (expected, end), (precision, scale, raw[3:end])
