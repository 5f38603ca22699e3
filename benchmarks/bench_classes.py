"""SGD epoch time against the number of classes: optlab's backends and a plain numpy loop.

At the CIFAR-10 shape (49,000 x 3,073 float32; ``--quick``: 4,000 x 257) with ``C`` = 2, 10,
100 and 1,000 classes, an epoch of softmax + L2 SGD at batch 200 as an ``optlab run`` trains it
(:func:`benchmarks.bench_overhead.optlab_run`, tracking off) and as the plain numpy script of
:func:`benchmarks.bench_overhead.bare_epoch`. Both sides start from the same ``.npy`` files
(written once per ``C`` in a temporary folder) and both evaluate after every epoch (train and
validation accuracy), so an epoch here is the SGD steps over all rows plus one prediction over
the training set.

Each backend runs in a fresh subprocess (``python -m benchmarks.bench_classes --worker ...``,
one JSON line on stdout) whose environment chooses it (:func:`_backend_env`). In the worker the
optlab runs and the bare epochs alternate; an optlab epoch is the time between two evaluation
reports of a run (the first epoch: the run's ``train_time_s`` less the others), the bare epoch
is timed around :func:`~benchmarks.bench_overhead.bare_epoch`, and each side's figure is its
fastest epoch. Loading, preprocessing and imports are not timed.

Figures, for each ``C``:

- ``classes.C{c}.numpy_vs_bare``: the ``numpy`` backend's epoch over the bare loop's epoch
  (same worker); target at most 1.
- ``classes.C{c}.compiled_vs_numpy``: the ``compiled`` backend's epoch over the ``numpy``
  backend's, each first divided by the bare epoch of its own worker (the bare loop is the same
  work in both, so the two processes' machine load cancels); target at most 1. Only where the
  compiled backend runs.

Run: ``python -m benchmarks --only classes``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import CIFAR_SHAPE, QUICK_SHAPE, Figure, roofline, threads_used
from benchmarks.bench_overhead import (
    Setup,
    bare_epoch,
    bare_prepare,
    optlab_run,
    write_spec,
    write_synthetic,
)

__all__ = ["BACKENDS", "CLASSES", "run"]

ROOT = Path(__file__).resolve().parents[1]
#: The class counts measured (issue 18).
CLASSES = (2, 10, 100, 1_000)
#: ``--quick``: the two ends (the unsplit and the split products, see ``SPLIT_MIN_CLASSES``)
QUICK_CLASSES = (2, 1_000)
#: The backends compared: ``numpy`` (numpy and BLAS), ``compiled`` (optlab's kernels).
BACKENDS = ("numpy", "compiled")
#: Validation rows (CIFAR-10 as the course splits it: 49,000 train, 1,000 validation); also
#: the test split's size.
VAL_ROWS = 1_000
QUICK_VAL_ROWS = 100


def _backend_env(name: str) -> dict[str, str]:
    """The environment variables that make a fresh process train with backend ``name``
    (``numpy``, ``compiled`` or ``auto``).

    ``OPTLAB_BACKEND`` chooses the backend when a run's objective is built; optlab before
    backends read ``OPTLAB_KERNELS`` once at import instead (``0``: no compiled kernels), so
    ``numpy`` sets both and the choice holds for either.
    """
    env = {"OPTLAB_BACKEND": name}
    if name == "numpy":
        env["OPTLAB_KERNELS"] = "0"
    return env


def _subprocess_env(name: str) -> dict[str, str]:
    """This process's environment with backend ``name`` chosen (an inherited
    ``OPTLAB_KERNELS=0`` is dropped for the other backends: it would turn the kernels off)."""
    env = dict(os.environ)
    if name != "numpy" and env.get("OPTLAB_KERNELS", "").strip() == "0":
        del env["OPTLAB_KERNELS"]
    env.update(_backend_env(name))
    return env


def _plan(c: int, quick: bool) -> tuple[int, int]:
    """(epochs per run, rounds) for ``C = c``: fewer samples where an epoch takes seconds."""
    if quick:
        return 1, 1
    if c <= 10:
        return 3, 3
    if c <= 100:
        return 2, 3
    return 2, 2


def _setup(c: int, n: int, d: int, epochs: int, val_rows: int) -> Setup:
    return Setup(
        f"C{c}",
        f"{n}x{d} float32 (synthetic, npz plugin), {c} classes, softmax+l2, sgd batch 200",
        lr=1e-7,
        batch=200,
        epochs=epochs,
        val=val_rows / (n + val_rows),
    )


# ------------------------------------------------------------------------------------------
# The worker (a fresh process per backend)
# ------------------------------------------------------------------------------------------


def _unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run in this process, or ``None`` when it can."""
    if name in ("numpy", "auto"):
        return None
    try:
        from optlab import kernels  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # optlab with backends: build it as a run would
        try:
            from optlab._contract.plugin_manager import get_registry

            record = get_registry().get("backend", name)
            record.factory(record.params())
        except Exception as exc:  # not registered, not built, turned off, CPU without AVX2
            return f"{exc}"
        return None
    if kernels.instruction_set() is None:
        return "optlab's compiled kernels are not in use (not built, no AVX2, OPTLAB_KERNELS=0)"
    return None


def _backend_used(tags: dict[str, str]) -> str:
    """What trained the run: its ``optlab.backend`` tag, else (optlab before backends) whether
    the compiled kernels were loaded."""
    if "optlab.backend" in tags:
        return tags["optlab.backend"]
    from optlab import kernels  # type: ignore[attr-defined,unused-ignore]

    isa = kernels.instruction_set()
    return "numpy" if isa is None else f"compiled ({isa})"


def _run_epochs(result: Any) -> list[float]:
    """Seconds of each epoch of a finished run: between its evaluation reports, the first one
    the run's training time less the others."""
    stamps = [float(e.time) for e in result.evaluations]
    later = list(np.diff(stamps))
    first = float(result.metrics["train_time_s"]) - sum(later)
    return [first, *later]


def worker(name: str, items: list[tuple[int, Path]], quick: bool) -> dict[str, Any]:
    """In the subprocess: for each ``(C, folder)``, optlab runs (backend ``name``) alternated
    with bare epochs; the seconds of every epoch of both."""
    why = _unavailable(name)
    if why is not None:
        return {"backend": name, "unavailable": why}
    out: dict[str, Any] = {"backend": name, "by_classes": {}}
    for c, folder in items:
        epochs, rounds = _plan(c, quick)
        X_shape = np.load(folder / "X.npy", mmap_mode="r").shape
        n_val = len(np.load(folder / "y_test.npy"))
        setup = _setup(c, X_shape[0] - n_val, X_shape[1] + 1, epochs, n_val)
        spec = write_spec(folder / f"spec-{name}.yaml", folder, setup)
        if quick:  # a smoke run: the figures time epochs, not the sanity checks before them
            # (their gradient check is the run's second at C = 1,000)
            spec.write_text(spec.read_text() + "checks: {gradient: off}\n", encoding="utf-8")
        uri = f"sqlite:///{folder / f'mlflow-{name}.db'}"
        bare = bare_prepare(folder, setup)
        optlab_s: list[float] = []
        bare_s: list[float] = []
        used = ""
        for _ in range(rounds):  # alternate, so both sides see the same machine load
            results = optlab_run(spec, uri, track=False)
            info, result = results.runs[0]
            if result.W is None or result.W.shape[1] != c:
                raise RuntimeError(f"C={c}: the run trained W of shape {result.W.shape}")
            used = _backend_used(dict(info.tags))
            optlab_s.extend(_run_epochs(result))
            del results, result
            for _ in range(epochs):
                start = time.perf_counter()
                bare_epoch(bare, setup)
                bare_s.append(time.perf_counter() - start)
        out["by_classes"][str(c)] = {
            "optlab_epochs_s": optlab_s,
            "bare_epochs_s": bare_s,
            "optlab_s": min(optlab_s),
            "bare_s": min(bare_s),
            "backend_used": used,
            "epochs_per_run": epochs,
            "rounds": rounds,
        }
    return out


# ------------------------------------------------------------------------------------------
# The parent
# ------------------------------------------------------------------------------------------


def _in_subprocess(name: str, items: list[tuple[int, Path]], quick: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.bench_classes", "--worker", name]
    argv += ["--quick"] if quick else []
    argv += [f"{c}={folder}" for c, folder in items]
    done = subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env=_subprocess_env(name), check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"classes worker ({name}) failed: {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _epoch_roofline(n: int, d: int, c: int) -> dict[str, Any]:
    """The roofline of an epoch here: the SGD steps (one read of X, 4*N*D*C FLOPs) and the
    evaluation's prediction (one more read, 2*N*D*C)."""
    return roofline(2.0 * n * d * 4, 6.0 * n * d * c, threads_used(), np.float32)


def run(quick: bool = False) -> list[Figure]:
    """The figures of every ``C``: numpy backend vs bare loop, compiled vs numpy backend."""
    n, d, _ = QUICK_SHAPE if quick else CIFAR_SHAPE
    n_val = QUICK_VAL_ROWS if quick else VAL_ROWS
    with tempfile.TemporaryDirectory(prefix="optlab-bench-classes-") as tmp:
        items = []
        classes = QUICK_CLASSES if quick else CLASSES
        for c in classes:
            folder = Path(tmp) / f"C{c}"
            folder.mkdir()
            write_synthetic(folder, n + n_val, n_val, d - 1, c)
            items.append((c, folder))
        measured = {name: _in_subprocess(name, items, quick) for name in BACKENDS}
    numpy_side = measured["numpy"]
    if "unavailable" in numpy_side:
        raise RuntimeError(f"the numpy backend did not run: {numpy_side['unavailable']}")
    compiled = measured["compiled"]
    why_not = compiled.get("unavailable")
    figures: list[Figure] = []
    for c in classes:
        size = f"{n}x{d} float32, {c} classes"
        np_c = numpy_side["by_classes"][str(c)]
        bound = _epoch_roofline(n, d, c)
        figures.append(
            Figure(
                f"classes.C{c}.numpy_vs_bare",
                f"optlab epoch (numpy backend) / plain numpy loop's epoch, {size}",
                np_c["optlab_s"] / np_c["bare_s"],
                "x",
                1.0,
                note=f"softmax+l2, sgd batch 200, epoch + train/val accuracy; fastest of "
                f"{np_c['rounds']} runs x {np_c['epochs_per_run']} epochs, same subprocess "
                f"(trained by: {np_c['backend_used']})"
                + ("" if why_not is None else f"; compiled backend not measured: {why_not}"),
                detail={
                    **np_c,
                    "env": _backend_env("numpy"),
                    "roofline": bound,
                    "optlab_vs_roofline": np_c["optlab_s"] / bound["seconds"],
                    "bare_vs_roofline": np_c["bare_s"] / bound["seconds"],
                },
            )
        )
        if why_not is not None:
            continue
        co_c = compiled["by_classes"][str(c)]
        relative = (co_c["optlab_s"] / co_c["bare_s"]) / (np_c["optlab_s"] / np_c["bare_s"])
        figures.append(
            Figure(
                f"classes.C{c}.compiled_vs_numpy",
                f"optlab epoch, compiled backend / numpy backend, {size}",
                relative,
                "x",
                1.0,
                note="each backend's epoch over the bare loop's epoch in its own subprocess, "
                f"then compiled over numpy (trained by: {co_c['backend_used']})",
                detail={
                    "compiled": co_c,
                    "numpy": np_c,
                    "env": _backend_env("compiled"),
                    "direct_ratio": co_c["optlab_s"] / np_c["optlab_s"],
                    "compiled_vs_roofline": co_c["optlab_s"] / bound["seconds"],
                },
            )
        )
    return figures


def _main(argv: list[str]) -> int:
    if not argv or argv[0] != "--worker":
        print("usage: python -m benchmarks.bench_classes --worker BACKEND [--quick] C=FOLDER ...")
        return 2
    name, rest = argv[1], argv[2:]
    quick = "--quick" in rest
    items = []
    for arg in rest:
        if arg != "--quick":
            c, _, folder = arg.partition("=")
            items.append((int(c), Path(folder)))
    print(json.dumps(worker(name, items, quick)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
