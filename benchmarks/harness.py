"""The shared timing and printing of the benchmarks (see run.py).

Timing: each candidate is a callable run ``batch`` times per sample with
``time.perf_counter_ns``; after a warm-up, the candidates of one comparison
take turns sample by sample (the order rotates each round), so a figure and
its baseline see the same machine noise. A result is the median over the
samples of (sample time / batch): the median time of one operation.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from time import perf_counter_ns
from typing import Any


@dataclass(frozen=True)
class Config:
    """How hard to measure: ``repeats`` samples per candidate, after ``warmup`` unmeasured batches."""

    quick: bool = False
    repeats: int = 15
    warmup: int = 1

    def pick(self, full: int, quick: int) -> int:
        """A batch size: ``full`` normally, ``quick`` under --quick."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Candidate:
    """One thing to time: ``fn(*args)`` is one operation; ``batch`` operations make one sample."""

    name: str
    fn: Callable[..., Any]
    batch: int
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Timing:
    """Per-operation times of one candidate, in ns (one per sample)."""

    name: str
    batch: int
    samples_ns: tuple[float, ...]

    @property
    def median_ns(self) -> float:
        return statistics.median(self.samples_ns)

    def per_second(self, units_per_op: float = 1.0) -> float:
        """The median rate: units (operations, bytes, ...) per second."""
        return units_per_op * 1e9 / self.median_ns


def _run_batch(fn: Callable[..., Any], args: tuple[Any, ...], n: int) -> int:
    """Time n calls of fn(*args); the common arities get a loop without argument unpacking."""
    if not args:
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            fn()
        return perf_counter_ns() - t0
    if len(args) == 1:
        (a,) = args
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            fn(a)
        return perf_counter_ns() - t0
    t0 = perf_counter_ns()
    for _ in repeat(None, n):
        fn(*args)
    return perf_counter_ns() - t0


def compare(candidates: Sequence[Candidate], config: Config) -> dict[str, Timing]:
    """Time the candidates side by side, interleaved; return each one's per-operation samples."""
    if len({c.name for c in candidates}) != len(candidates):
        raise ValueError("candidate names must be unique")
    for c in candidates:
        for _ in range(config.warmup):
            _run_batch(c.fn, c.args, c.batch)
    samples: dict[str, list[float]] = {c.name: [] for c in candidates}
    gc_was_enabled = gc.isenabled()
    try:
        for round_ in range(config.repeats):
            k = round_ % len(candidates)
            for c in [*candidates[k:], *candidates[:k]]:
                gc.collect()
                gc.disable()  # as timeit does: no collection pauses inside a sample
                try:
                    elapsed = _run_batch(c.fn, c.args, c.batch)
                finally:
                    if gc_was_enabled:
                        gc.enable()
                samples[c.name].append(elapsed / c.batch)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {c.name: Timing(c.name, c.batch, tuple(samples[c.name])) for c in candidates}


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Goal:
    """A goal for one figure: ``ratio_at_least`` (figure / baseline), ``value_below`` or ``value_at_least`` (in
    the figure's unit)."""

    ratio_at_least: float | None = None
    value_below: float | None = None
    value_at_least: float | None = None

    def describe(self, unit: str) -> str:
        if self.ratio_at_least is not None:
            return f">= {self.ratio_at_least:g}x"
        if self.value_below is not None:
            return f"< {self.value_below:g} {unit}"
        if self.value_at_least is not None:
            return f">= {self.value_at_least:g} {unit}"
        return "-"

    def met(self, value: float, ratio: float) -> bool:
        if self.ratio_at_least is not None and ratio < self.ratio_at_least:
            return False
        if self.value_at_least is not None and value < self.value_at_least:
            return False
        return not (self.value_below is not None and value >= self.value_below)


@dataclass(frozen=True)
class Figure:
    """One printed line: a measured value beside its baseline, measured in the same run.

    ``ratio`` is always value / baseline in the figure's unit: for a rate
    (higher is better) above 1 means faster than the baseline; for a time per
    call (lower is better) it is how many times the baseline's time it takes.
    """

    id: str
    name: str
    unit: str
    value: float
    baseline_name: str
    baseline_value: float
    goal: Goal | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)  # raw ns per op, for the JSON

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "unit": self.unit,
            "value": self.value,
            "baseline": {"name": self.baseline_name, "value": self.baseline_value},
            "ratio": self.ratio,
            "goal": None if self.goal is None else self.goal.describe(self.unit),
            "met": self.met,
            "samples_ns_per_op": self.samples,
        }


@dataclass
class Report:
    """What a benchmark hands back: its figures, and notes to print under them."""

    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(figures: Sequence[Figure]) -> str:
    """One line per figure: name, value, baseline name and value, ratio, goal, whether it is met."""
    header = ("figure", "value", "unit", "baseline", "baseline value", "ratio", "goal", "met")
    rows = [header]
    for f in figures:
        met = {None: "-", True: "yes", False: "NO"}[f.met]
        goal = "- (info)" if f.goal is None else f.goal.describe(f.unit)
        rows.append(
            (f.name, _fmt(f.value), f.unit, f.baseline_name, _fmt(f.baseline_value), f"{f.ratio:.3f}x", goal, met)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {1, 4, 5}  # numbers
    lines = []
    for n, r in enumerate(rows):
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
