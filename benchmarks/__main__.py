"""``python -m benchmarks [--quick] [--out FILE] [--only GROUP ...] [--check]`` (``make bench``).

Prints a table of every figure against its target and writes the results as JSON.
Exit status 0, or 1 with ``--check`` when a target is missed or a group failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.suite import GROUPS, render, run_suite, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small shapes: a smoke run of every figure"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results.json"), help="JSON results file"
    )
    parser.add_argument("--only", nargs="+", choices=sorted(GROUPS), help="run only these groups")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a target is missed or a group failed"
    )
    args = parser.parse_args(argv)

    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # a log file or pipe: wide enough for one line per figure
        console = Console(highlight=False, width=200)
    err = Console(stderr=True, highlight=False)
    results = run_suite(args.quick, args.only, progress=lambda m: err.print(m, style="dim"))
    console.print(render(results))
    write(results, args.out)
    summary = results["summary"]
    console.print(
        f"{summary['passed']} passed, {summary['failed']} failed, {summary['reported']} reported; "
        f"results in {args.out}"
    )
    return 1 if args.check and summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
