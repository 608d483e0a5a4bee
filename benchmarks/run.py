"""Run mesatee's benchmarks: each figure beside its baseline, measured in the same run (medians).

    python benchmarks/run.py [--quick] [--only NAME ...] [--json FILE]

Goals are reported, never enforced: the exit status is 0 whenever every
benchmark ran, met or not (machines are noisy; judge the table).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent


def discover() -> dict[str, Callable[[harness.Config], harness.Report]]:
    """Every ``bench_*.py`` beside this file contributes its ``BENCHMARKS`` (name -> run(config))."""
    found: dict[str, Callable[[harness.Config], harness.Report]] = {}
    for path in sorted(HERE.glob("bench_*.py")):
        module = importlib.import_module(path.stem)
        found.update(module.BENCHMARKS)
    return found


BENCHMARKS = discover()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few, small repeats (a smoke run of a few seconds)")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    args = parser.parse_args(argv)

    config = harness.Config(quick=True, repeats=3, warmup=1) if args.quick else harness.Config(repeats=21, warmup=2)
    names = [name for name in BENCHMARKS if not args.only or name in args.only]

    figures: list[harness.Figure] = []
    notes: list[str] = []
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        report = BENCHMARKS[name](config)
        print(f"# {name}: {len(report.figures)} figures in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        figures += report.figures
        notes += report.notes
    elapsed = time.perf_counter() - started

    print(
        f"mesatee benchmarks ({'quick' if args.quick else 'full'}: median of {config.repeats} samples per candidate, "
        f"figure and baseline interleaved; Python {platform.python_version()}, {platform.machine()})"
    )
    print()
    print(harness.format_table(figures))
    if notes:
        print()
        for note in notes:
            print(f"note: {note}")
    print()
    print(f"ratio = figure / baseline. {elapsed:.1f} s in all.")

    if args.json is not None:
        document = {
            "quick": args.quick,
            "repeats": config.repeats,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "elapsed_s": elapsed,
            "figures": [f.to_json() for f in figures],
            "notes": notes,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
