"""A ``liberation`` command under test never outlives its test.

Tests start their commands as ``CliProcess`` (``support.py``) or a subclass of it, directly or through a
helper (``RelayProcess``, ``FollowProcess``); this fixture kills, at teardown, any such process the test
started that is still running, so an assertion that fails before a test's own ``stop``/``kill`` leaks none.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from liberation_tests.support import end_started_since, started_count


@pytest.fixture(autouse=True)
def cli_processes_end_with_their_test() -> Iterator[None]:
    before = started_count()
    yield
    end_started_since(before)
