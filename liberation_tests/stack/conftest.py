"""Stack fixture for these tests (to move into the shared fixture plugin later)."""

from __future__ import annotations

import pytest

from liberation_assets.stack import StackSettings, ensure_stack


@pytest.fixture(scope="session")
def stack() -> StackSettings:
    """The local stack, brought up once per session (idempotent if already running)."""
    return ensure_stack()
