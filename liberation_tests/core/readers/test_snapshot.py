"""``read_ahead``: the snapshot's chunks read one ahead on a helper thread, in order, errors raised in order."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from liberation_assets.core.readers.snapshot import read_ahead


def test_items_come_in_order_and_at_most_one_is_read_ahead() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(5):
            produced.append(i)
            yield i

    seen = []
    for item in read_ahead(items()):
        # The helper may have read the next item, never two.
        assert len(produced) - 1 <= item + 1
        seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_an_error_of_the_source_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise ValueError("chunk failed")

    seen = []
    with pytest.raises(ValueError, match="chunk failed"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [1]


def test_stopping_early_closes_the_source_on_the_helper_thread() -> None:
    closed_on: list[str] = []
    caller = threading.current_thread().name

    def items() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed_on.append(threading.current_thread().name)

    for item in read_ahead(items()):
        if item == 2:
            break
    assert closed_on and closed_on[0] != caller
