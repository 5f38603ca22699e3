"""What MLflow tracking costs a run: the same run with tracking on against tracking off.

- ``tracking.cifar10_shape``: a CIFAR-10-shaped run (49,000 x 3,073 synthetic uint8 images as
  float32, 10 classes; softmax + L2, SGD at batch 200 for 15 epochs), loaded from ``.npy``
  files and run through :func:`optlab.run` in this process, with
  tracking to a SQLite store (figures on, as ``optlab run`` does) and without. The figure is the
  tracked run's extra time over the untracked run's time; target: at most 5%.
- ``tracking.cifar10_shape.metrics``: the same with ``tracking: {figures: false}``: what
  logging alone costs (run, params, curves, files), without drawing the figures.
- ``tracking.demo`` (not with ``--quick``): ``make demo``'s command,
  ``optlab run experiments/svm_vs_softmax.yaml`` as a subprocess on an existing store,
  against the same command with ``--no-track`` (reported: the demo's runs train in tens of
  milliseconds, so this is mostly MLflow's start-up and the figures).

The CIFAR-shaped figures are medians of same-round ratios (see :func:`_paired_extra`); the demo
pair is timed best-of-k with the two sides alternated, so both see the same machine load.

Run: ``python -m benchmarks --only tracking``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._common import CIFAR_SHAPE, QUICK_SHAPE, Figure, best_of, new_store
from benchmarks.bench_overhead import Setup, optlab_run, write_spec, write_synthetic

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "experiments" / "svm_vs_softmax.yaml"


def _invocation_s(spec: Path, uri: str, track: bool) -> float:
    """Seconds of one ``optlab run`` of ``spec`` through its API (data loaded from its files
    each time)."""
    return best_of(lambda: optlab_run(spec, uri, track), 1)


def _alternated(*sides: Callable[[], float], k: int) -> list[float]:
    """Best of ``k`` of each timed callable, called in turn."""
    best = [float("inf")] * len(sides)
    for _ in range(k):
        best = [min(b, side()) for b, side in zip(best, sides, strict=True)]
    return best


def _paired_extra(
    reference: Callable[[], float], *sides: Callable[[], float], k: int
) -> list[float]:
    """Median over ``k`` rounds of each side's time over the reference's time in the same
    round, minus 1; each round runs the reference and the sides in a rotated order.

    A CIFAR-shaped run's wall time varies by about 10% from one run to the next on a shared
    machine, more than the few percent measured here: a best-of-k of each side compares two
    lucky runs taken at different moments, a median of same-round ratios does not."""
    calls = [reference, *sides]
    ratios: list[list[float]] = [[] for _ in sides]
    for r in range(k):
        order = [(i + r) % len(calls) for i in range(len(calls))]
        seconds = dict.fromkeys(order, 0.0)
        for i in order:
            seconds[i] = calls[i]()
        for j in range(len(sides)):
            ratios[j].append(seconds[j + 1] / seconds[0] - 1.0)
    return [float(np.median(r)) for r in ratios]


def cifar10_shape(quick: bool) -> list[Figure]:
    """The tracked run's extra time over the untracked run, CIFAR-10 shape, with and without
    figures."""
    n, d, c = QUICK_SHAPE if quick else CIFAR_SHAPE
    epochs = 2 if quick else 15
    n_val = n // 49
    k = 1 if quick else 9
    with tempfile.TemporaryDirectory(prefix="optlab-bench-tracking-") as tmp:
        folder = Path(tmp)
        write_synthetic(folder, n + n_val, n_val, d - 1, c)
        setup = Setup(
            "tracking", "tracking", lr=1e-7, batch=200, epochs=epochs, val=n_val / (n + n_val)
        )
        spec = write_spec(folder / "spec.yaml", folder, setup)
        bare = folder / "no-figures.yaml"
        bare.write_text(spec.read_text() + "tracking: {figures: false}\n", encoding="utf-8")
        uri = new_store(folder / "mlflow.db", empty=quick)
        if not quick:
            _invocation_s(spec, uri, track=True)  # imports, store creation, page cache
        untracked = _invocation_s(spec, uri, track=False)
        tracked, no_figures = _paired_extra(
            lambda: _invocation_s(spec, uri, track=False),
            lambda: _invocation_s(spec, uri, track=True),
            lambda: _invocation_s(bare, uri, track=True),
            k=k,
        )
    shape = f"{n}x{d} float32, softmax+l2, sgd batch 200, {epochs} epochs"
    detail = {"untracked_s": untracked, "rounds": k}
    note = (
        f"optlab.run tracked to SQLite against track=False: median of {k} same-round "
        "ratios, order rotated"
    )
    return [
        Figure(
            "tracking.cifar10_shape",
            f"tracking's extra time / the untracked run, {shape}",
            tracked,
            "x",
            None if quick else 0.05,
            note=note,
            detail=detail,
        ),
        Figure(
            "tracking.cifar10_shape.metrics",
            f"the same without figures (tracking: {{figures: false}}), {shape}",
            no_figures,
            "x",
            note=note,
            detail=detail,
        ),
    ]


def _command_s(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "optlab", "run", str(DEMO), *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def demo(quick: bool) -> Figure:
    """``make demo``'s command on an existing store, against the same with ``--no-track``."""
    with tempfile.TemporaryDirectory(prefix="optlab-bench-demo-") as tmp:
        folder = Path(tmp)
        new_store(folder / "mlflow.db", empty=quick)  # the command's default store
        if not quick:
            _command_s(cwd=folder)  # creates the store
        tracked, untracked = _alternated(
            lambda: _command_s(cwd=folder),
            lambda: _command_s("--no-track", cwd=folder),
            k=1 if quick else 3,
        )
    return Figure(
        "tracking.demo",
        "optlab run experiments/svm_vs_softmax.yaml on an existing store / with --no-track",
        tracked / untracked,
        "x",
        note="whole commands (interpreter start-up included), best of 3 each, alternated",
        detail={"tracked_s": tracked, "untracked_s": untracked},
    )


def run(quick: bool = False) -> list[Figure]:
    """The tracking figures; ``--quick`` leaves out the demo's pair of whole commands (two new
    interpreters importing MLflow and drawing figures: seconds of a smoke run that only needs
    a value of each figure it has)."""
    return [*cifar10_shape(quick)] + ([] if quick else [demo(quick)])


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(figure)
