"""Figure 6: peak memory of a full-batch float32 run at the CIFAR-10 shape, in units of X.

Measured in a fresh subprocess (``python -m benchmarks.bench_memory N D C STEPS``): the
resident set size after the imports and one small product (BLAS's one-off work buffers), before
``X`` exists, is the baseline; ``X`` (N, D) float32 is
generated in place; then gradient descent (the bundled ``gd`` optimizer, softmax + L2, a few
full-batch steps) and a full-batch objective value and accuracy run. The figure is
``(peak RSS - baseline) / X.nbytes`` (peak: ``VmHWM`` on Linux, else ``ru_maxrss``): 1.0 means
nothing but ``X`` itself.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from benchmarks._common import CIFAR_SHAPE, QUICK_SHAPE, Figure

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]


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

    from benchmarks._common import NullMonitor, loss, optimizer, regularizer
    from optlab.objective import BoundLoss, BoundRegularizer, Objective

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
    obj = Objective(X, y, c, BoundLoss(softmax, "softmax"), [BoundRegularizer(l2, "l2")])
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


def run(quick: bool = False) -> list[Figure]:
    """Figure 6, measured in a subprocess."""
    n, d, c = QUICK_SHAPE if quick else CIFAR_SHAPE
    iterations = 2 if quick else 3
    argv = [
        sys.executable,
        "-m",
        "benchmarks.bench_memory",
        str(n),
        str(d),
        str(c),
        str(iterations),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker failed: {done.stderr[-800:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
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
        )
    ]


if __name__ == "__main__":
    n_, d_, c_, it_ = (int(a) for a in sys.argv[1:5])
    print(json.dumps(worker(n_, d_, c_, it_)))
