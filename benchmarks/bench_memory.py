"""Figure 6: peak memory of full-batch runs at the CIFAR-10 shape, in units of the data.

Both figures are measured in a fresh subprocess, against a baseline taken there after the
imports and one small product (BLAS's one-off work buffers), before any data exists; the peak
is ``VmHWM`` on Linux, else ``ru_maxrss``. (Not ``getrusage(RUSAGE_CHILDREN)`` in the parent:
on Linux a child's ``ru_maxrss`` starts from its parent's peak, which ``exec`` keeps, so a
parent that wrote the data reports its own peak.)

- ``memory.fullbatch.float32`` (``python -m benchmarks.bench_memory N D C STEPS``): ``X`` (N,
  D) float32 is generated in place; then gradient descent (the bundled ``gd`` optimizer,
  softmax + L2, a few full-batch steps) and a full-batch objective value and accuracy run.
  The figure is ``(peak RSS - baseline) / X.nbytes``: 1.0 means nothing but ``X`` itself.
- ``memory.run.fullbatch.uint8`` (``python -m benchmarks.bench_memory run SPEC``): a whole
  ``optlab run SPEC --no-track`` (the command-line entry point, in the subprocess) of ``gd``
  on CIFAR-10-shaped uint8 ``.npy`` files (49,000 training + 1,000 validation rows and a
  10,000-row test split, 3,072 pixels, 10 classes; written as
  :func:`benchmarks.bench_overhead.write_synthetic` writes them) through the ``npz`` dataset
  plugin, float32, centered, with the bias column. The figure is ``(peak RSS - baseline) /
  (float32 training array + raw uint8 data)``, the training array being ``(49,000, 3,073)``
  float32 and the raw data every uint8 pixel loaded (``X`` and ``X_test``): what loading and
  preparing cannot avoid holding at once. The prepared validation and test arrays, the
  imports the run makes after the baseline and BLAS's buffers count against the figure too:
  its floor at this shape is 1.17, and two float copies of the training data at once would
  put it above 1.9 (see ``benchmarks/README.md``, Memory).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._common import CIFAR_SHAPE, QUICK_SHAPE, Figure

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]

#: the whole-run figure's spec: full-batch ``gd`` on the ``npz`` files in ``path``
RUN_SPEC = """\
name: bench_memory_run
seed: 0
data: {{name: npz, path: "{path}", dtype: float32, val: {val}, center: true, bias: true}}
loss: {{name: softmax}}
regularizer: {{name: l2, strength: 1e-4}}
optimizer: {{name: gd, lr: 1e-7, iterations: {iterations}, eval_every: {iterations}}}
"""
#: (training rows, validation rows, test rows, pixels, classes) of the whole-run figure:
#: CIFAR-10 as the course splits it (49,000 + 1,000 of the 50,000 training images)
RUN_SHAPE = (49_000, 1_000, 10_000, 3_072, 10)
#: the --quick stand-in, a few MB
RUN_QUICK_SHAPE = (4_000, 81, 800, 256, 10)


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of Linux's ``/proc/self/status`` in bytes (``None`` elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_bytes() -> int:
    """Current resident set size (else the peak so far)."""
    return _status_bytes("VmRSS") or _maxrss_bytes()


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process image.

    ``VmHWM`` where available: ``ru_maxrss`` survives ``exec`` on Linux, so a subprocess started
    by a large parent would report the parent's peak.
    """
    return _status_bytes("VmHWM") or _maxrss_bytes()


def worker(n: int, d: int, c: int, iterations: int) -> dict[str, float]:
    """Run in the subprocess: the measurement itself."""
    import numpy as np

    from benchmarks._common import NullMonitor, backend_kwargs, loss, optimizer, regularizer
    from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective

    rng = np.random.default_rng(0)
    y = rng.integers(0, c, n)
    W0 = (1e-4 * rng.standard_normal((d, c))).astype(np.float32)
    gd = optimizer("gd", lr=1e-7, iterations=iterations, eval_every=iterations)
    softmax, l2 = loss("softmax"), regularizer("l2", strength=1e-4)
    # one small product first: BLAS allocates its per-thread work buffers once, whatever X is
    small = np.ones((64, d), np.float32)
    small @ W0
    baseline = _rss_bytes()
    X = rng.standard_normal((n, d), dtype=np.float32)
    after_x = _rss_bytes()
    backend = backend_kwargs(X, y, c, softmax)  # the backend a run would train with
    obj = Objective(X, y, c, BoundLoss(softmax, "softmax"), [BoundRegularizer(l2, "l2")], **backend)
    W = gd.minimize(obj, W0, rng, NullMonitor())
    obj.value(W)
    obj.accuracy(W, X, y)
    peak = _peak_rss_bytes()
    return {
        "x_bytes": float(X.nbytes),
        "baseline_rss": float(baseline),
        "rss_after_x": float(after_x),
        "peak_rss": float(peak),
        "ratio": (peak - baseline) / X.nbytes,
    }


def run_worker(spec: str, features: int, classes: int) -> dict[str, float]:
    """Run in the subprocess: baseline, then ``optlab run SPEC --no-track``, then the peak.

    Parameters
    ----------
    spec : str
        Path of the spec file (:data:`RUN_SPEC`).
    features, classes : int
        ``D`` (pixels + bias) and ``C``, for the small product taken before the baseline.

    Returns
    -------
    dict
        ``baseline_rss`` and ``peak_rss`` in bytes.
    """
    import numpy as np

    import optlab  # noqa: F401  (the package, as ``optlab run`` imports it)
    from optlab._cli import main

    # one small product first: BLAS allocates its per-thread work buffers once, whatever X is
    np.ones((64, features), np.float32) @ np.ones((features, classes), np.float32)
    baseline = _rss_bytes()
    code = main(["run", spec, "--no-track"])
    if code != 0:
        raise RuntimeError(f"optlab run {spec} --no-track exited with {code}")
    return {"baseline_rss": float(baseline), "peak_rss": float(_peak_rss_bytes())}


def _child(argv: list[str]) -> dict[str, Any]:
    """Run ``python -m benchmarks.bench_memory ARGV...`` and return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory worker failed: {done.stderr[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_figure(quick: bool = False) -> Figure:
    """``memory.run.fullbatch.uint8``: a whole ``optlab run`` of full-batch ``gd`` on uint8
    ``.npy`` files, measured in a subprocess (see the module docstring)."""
    from benchmarks.bench_overhead import write_synthetic

    n_train, n_val, n_test, pixels, classes = RUN_QUICK_SHAPE if quick else RUN_SHAPE
    iterations = 2 if quick else 3
    x_train = n_train * (pixels + 1) * 4  # (N_train, D + bias) float32
    raw = (n_train + n_val + n_test) * pixels  # uint8 X and X_test
    with tempfile.TemporaryDirectory(prefix="optlab-bench-") as tmp:
        folder = Path(tmp)
        write_synthetic(folder, n_train + n_val, n_test, pixels, classes)
        spec = folder / "spec.yaml"
        spec.write_text(
            RUN_SPEC.format(path=folder, val=n_val / (n_train + n_val), iterations=iterations),
            encoding="utf-8",
        )
        result = _child(["run", str(spec), str(pixels + 1), str(classes)])
    used = result["peak_rss"] - result["baseline_rss"]
    detail: dict[str, float] = {
        **result,
        "x_train_float32_bytes": float(x_train),
        "raw_uint8_bytes": float(raw),
        "peak_minus_baseline_bytes": float(used),
        "in_x_train": used / x_train,
        "in_x_train_beyond_raw": (used - raw) / x_train,
    }
    return Figure(
        "memory.run.fullbatch.uint8",
        f"peak memory of optlab run --no-track (gd, {iterations} steps) / (float32 training "
        f"array + raw uint8), {n_train}+{n_val}+{n_test} x {pixels} uint8 .npy "
        f"({(x_train + raw) / 2**20:.0f} MiB)",
        used / (x_train + raw),
        "x (train f32 + raw)",
        1.3,
        note="subprocess: (peak RSS (VmHWM) - RSS after imports) / (N_train x D x 4 + uint8 "
        "bytes of X and X_test)",
        detail=detail,
    )


def run(quick: bool = False) -> list[Figure]:
    """Figure 6 (both figures), each measured in a subprocess."""
    n, d, c = QUICK_SHAPE if quick else CIFAR_SHAPE
    iterations = 2 if quick else 3
    result = _child([str(n), str(d), str(c), str(iterations)])
    return [
        Figure(
            "memory.fullbatch.float32",
            f"peak memory of full-batch gd (softmax+l2, {iterations} steps) / size of X, "
            f"{n}x{d} float32 ({result['x_bytes'] / 2**20:.0f} MiB)",
            result["ratio"],
            "x size of X",
            1.3,
            note="subprocess: (peak RSS (VmHWM) - RSS before X) / X.nbytes",
            detail=result,
        ),
        run_figure(quick),
    ]


if __name__ == "__main__":
    if sys.argv[1] == "run":
        measured = run_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        sys.stdout.flush()
        print(json.dumps(measured))
    else:
        n_, d_, c_, it_ = (int(a) for a in sys.argv[1:5])
        print(json.dumps(worker(n_, d_, c_, it_)))
