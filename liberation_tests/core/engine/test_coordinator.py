"""The one ``follow`` loop, without servers: open, snapshot, changes, close; a retriable error reopens; the status
lines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from liberation_assets.core.engine import coordinator, retry
from liberation_assets.core.engine.summary import counters
from liberation_assets.core.errors import AuthenticationFailed, ConnectivityError, PositionLost


@dataclass
class Counted:
    published: int = 0
    seconds: float = 0.0

    def metadata(self) -> dict[str, int | float]:
        return counters(published=self.published, quarantined=0, deletes=0, kafka_transactions=self.published)


@dataclass
class Script:
    """What each opened source does in turn: ``None`` streams one event then stops, an exception is raised
    while streaming."""

    steps: list[BaseException | None]
    summary: Counted = field(default_factory=Counted)
    events: list[str] = field(default_factory=list)
    stopped: bool = False

    def source(self) -> coordinator.LogSource:
        step = self.steps.pop(0)
        script = self

        class Source:
            def open(self, connected: Callable[[], None]) -> str:
                script.events.append("open")
                connected()
                return "opened"

            def snapshot(self) -> None:
                script.events.append("snapshot")

            def changes(self, until: Callable[[], bool]) -> None:
                script.events.append("changes")
                if step is not None:
                    raise step
                script.summary.published += 1
                script.stopped = True

            def confirm(self, through: Any) -> None:
                script.events.append("confirm")

            def close(self) -> None:
                script.events.append("close")

        return Source()

    def until(self) -> bool:
        return self.stopped


def _statuses(out: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_a_retriable_error_closes_the_source_and_opens_a_new_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry, "FIRST_DELAY_SECONDS", 0.01)  # the real backoff, shortened
    script = Script([ConnectivityError("broker away"), None])
    logged: list[str] = []
    coordinator.follow(
        "shop", "source shop", script.source, script.summary, log=logged.append, duration=None, give_up_after=30
    )
    assert script.events == ["open", "snapshot", "changes", "close"] * 2
    statuses = _statuses(capsys.readouterr().out)
    assert [s["event"] for s in statuses] == ["started", "reconnecting", "started", "stopped"]
    assert statuses[1]["source"] == "shop" and "broker away" in str(statuses[1]["reason"])
    assert statuses[-1]["published"] == 1 and statuses[-1]["kafka_transactions"] == 1
    assert "opened" in logged and any("reconnecting" in line for line in logged)


@pytest.mark.parametrize("error", [PositionLost("binlog gone"), AuthenticationFailed("login refused")])
def test_a_permanent_error_ends_follow_at_once_without_a_stopped_line(
    error: BaseException, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script([error])
    with pytest.raises(type(error)):
        coordinator.follow("shop", "source shop", script.source, script.summary, log=lambda _line: None)
    assert script.events == ["open", "snapshot", "changes", "close"]
    assert [s["event"] for s in _statuses(capsys.readouterr().out)] == ["started"]
