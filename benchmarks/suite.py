"""The benchmark suite: run every group, print the table, write the JSON.

Groups (``--only`` takes these names): ``fullbatch`` (figures 1 and 2), ``sklearn`` (3),
``overhead`` (4), ``startup`` (5), ``memory`` (6), ``parallel`` (issue 5: a 16-run sweep
with ``--jobs 2`` against ``--jobs 1``), ``tracking`` (what MLflow tracking costs a run,
:mod:`benchmarks.bench_tracking`) and ``classes`` (issue 18: an SGD epoch at 2 to 1,000
classes, each backend against a plain numpy loop, :mod:`benchmarks.bench_classes`).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import Figure, environment, quick_machine_rates

__all__ = ["GROUPS", "render", "run_suite"]


def _module_run(module: str) -> Callable[[bool], list[Figure]]:
    def run(quick: bool) -> list[Figure]:
        figures: list[Figure] = importlib.import_module(f"benchmarks.{module}").run(quick)
        return figures

    return run


GROUPS: dict[str, Callable[[bool], list[Figure]]] = {
    "fullbatch": _module_run("bench_fullbatch"),
    "sklearn": _module_run("bench_sklearn"),
    "overhead": _module_run("bench_overhead"),
    "startup": _module_run("bench_startup"),
    "memory": _module_run("bench_memory"),
    "parallel": _module_run("bench_parallel"),
    "tracking": _module_run("bench_tracking"),
    "classes": _module_run("bench_classes"),
}


def run_suite(
    quick: bool = False,
    only: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the chosen groups; a group that fails becomes one figure without a value.

    Returns
    -------
    results : dict
        ``mode``, ``started``, ``seconds``, ``environment``, ``figures`` (each
        :meth:`Figure.as_dict`) and ``summary`` (counts of passed, failed and reported).
    """
    names = list(only) if only else list(GROUPS)
    if quick:
        quick_machine_rates()
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    start = time.perf_counter()
    figures: list[Figure] = []
    for name in names:
        if progress is not None:
            progress(f"running {name} ...")
        t0 = time.perf_counter()
        try:
            got = GROUPS[name](quick)
        except Exception as exc:  # keep the other groups' figures
            got = [
                Figure(
                    f"{name}.error",
                    f"group '{name}' failed",
                    None,
                    "",
                    note=f"{exc!r}",
                    detail={"traceback": traceback.format_exc()},
                )
            ]
        for figure in got:
            figure.detail.setdefault("group_seconds", time.perf_counter() - t0)
        figures.extend(got)
    rows = [f.as_dict() for f in figures]
    return {
        "mode": "quick" if quick else "full",
        "started": started,
        "seconds": time.perf_counter() - start,
        "environment": environment(),
        "figures": rows,
        "summary": {
            "passed": sum(r["passed"] is True for r in rows),
            "failed": sum(r["passed"] is False for r in rows),
            "reported": sum(r["passed"] is None for r in rows),
        },
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3g} {unit}".strip()


def render(results: dict[str, Any]) -> Any:
    """A rich table of figure, value, target and pass/fail."""
    from rich.table import Table

    env = results["environment"]
    blas = ", ".join(
        f"{b.get('internal_api')} {b.get('version')} x{b.get('num_threads')}" for b in env["blas"]
    )
    table = Table(
        title=f"optlab benchmarks ({results['mode']}, {results['seconds']:.0f} s)",
        caption=f"{env['processor']}, {env['cpus']} CPUs; BLAS: {blas}; "
        f"optlab kernels: {env['kernels']}" + (f"; env: {env['env']}" if env["env"] else ""),
    )
    table.add_column("figure", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("target", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("what", ratio=1)
    marks = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[dim]report[/]"}
    for row in results["figures"]:
        target = "" if row["target"] is None else f"{row['op']} {row['target']:g}"
        table.add_row(
            row["id"], _fmt(row["value"], row["unit"]), target, marks[row["passed"]], row["title"]
        )
    return table


def write(results: dict[str, Any], path: Path) -> None:
    """The results as indented JSON."""
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
