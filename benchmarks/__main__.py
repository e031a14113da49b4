"""Run the benchmarks: `python -m benchmarks [NAME...] [--quick]` (NAME: engine, scripts, ...)."""

from __future__ import annotations

import argparse
import datetime
import importlib
import pkgutil
import sys
from pathlib import Path

from .common import Result, machine


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    args = parser.parse_args()
    available = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    names = args.names or available
    unknown = set(names) - set(available)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; have {available}")
    print(f"# {datetime.date.today()} — {machine()}")
    every: list[Result] = []
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n## {name}", flush=True)
        results: list[Result] = module.run(quick=args.quick)
        for result in results:
            print(result.line(), flush=True)
        every += results
    return finish(every)


def finish(results: list[Result]) -> int:
    """Print the summary line; the exit status is 1 when a target was missed (for CI and
    scripts: the summary alone would let `make bench && ...` carry on)."""
    failed = sum(result.met is False for result in results)
    print(f"\n{failed} target(s) not met" if failed else "\nall targets met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
