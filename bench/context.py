"""What every measurement gets: the configuration, the stack, and this run's names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liberation_assets.stack import StackSettings

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / ".work"
RESULTS = BENCH_DIR / "results"
PLOTS = BENCH_DIR / "plots"
REPO = BENCH_DIR.parent


class Skip(Exception):
    """A measurement cannot run here (a module not landed yet, an artifact missing); the reason is printed."""


@dataclass(frozen=True)
class BenchConfig:
    rows: int = 1_000_000
    runs: int = 3
    outbox_rows: int = 250_000
    rates: tuple[int, ...] = (2_000, 10_000)
    latency_seconds: float = 6.0
    only: frozenset[str] | None = None
    """Measurement groups to run (ceilings, snapshot, cdc, query, outbox, latency); None means all."""

    def wants(self, group: str) -> bool:
        return self.only is None or group in self.only


@dataclass
class RunContext:
    """One run: its index, topic prefix and slot names; ``state`` carries things between steps."""

    config: BenchConfig
    stack: StackSettings
    run: int
    token: str
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"bench{self.run}{self.token}"

    def slot(self, name: str) -> str:
        return f"bench{self.run}{self.token}_{name}"
