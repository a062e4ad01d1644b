"""The fixture for a ``liberation`` command under test: started by the test, always ended at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from liberation_tests.support import CliProcess


@pytest.fixture
def cli_process() -> Iterator[Callable[..., CliProcess]]:
    """``cli_process(["follow", "shop"], spec_file=path)``: a running ``CliProcess``, killed at teardown if alive."""
    started: list[CliProcess] = []

    def start(args: list[str], **options: Any) -> CliProcess:
        process = CliProcess(args, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
