"""Figures: samples per run, reduced to median and min–max."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Summary:
    """The median of a figure's samples and their spread."""

    median: float
    low: float
    high: float
    runs: int

    def text(self, digits: int = 0) -> str:
        if self.runs == 1:
            return _fmt(self.median, digits)
        return f"{_fmt(self.median, digits)} ({_fmt(self.low, digits)}–{_fmt(self.high, digits)})"


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


@dataclass
class Samples:
    """Every run's value of every figure, plus why a measurement was skipped."""

    values: dict[str, list[float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            self.values.setdefault(key, []).append(float(value))

    def summary(self, key: str) -> Summary | None:
        data = self.values.get(key)
        if not data:
            return None
        return Summary(statistics.median(data), min(data), max(data), len(data))

    def ratios(self, numerator: str, denominator: str) -> Summary | None:
        """The per-run ratio of two figures measured back to back in the same run, as median and min–max.

        Both figures swing with the machine's load; a ratio of two medians taken independently mixes runs
        of different load (issue 18), the ratio within one run does not.  Runs are paired by their index.
        """
        pairs = [n / d for n, d in zip(self.values.get(numerator) or [], self.values.get(denominator) or []) if d]
        if not pairs:
            return None
        return Summary(statistics.median(pairs), min(pairs), max(pairs), len(pairs))

    def median(self, key: str) -> float | None:
        found = self.summary(key)
        return found.median if found else None

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "skipped": self.skipped}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Samples":
        return cls(dict(data.get("values") or {}), dict(data.get("skipped") or {}))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]
