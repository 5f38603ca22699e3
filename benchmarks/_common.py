"""Shared pieces of the benchmark suite: figures, timing, synthetic data, components.

Every figure is a ratio (or a time) measured in one process run, timed best-of-k with the two
sides interleaved, so it holds on a busy machine better than an absolute time would.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import optlab
from optlab import Array

__all__ = [
    "CIFAR_SHAPE",
    "QUICK_SHAPE",
    "Figure",
    "NullMonitor",
    "Timing",
    "best_of",
    "environment",
    "loss",
    "optimizer",
    "synthetic",
    "timed_pair",
]

#: (N, D, C): CIFAR-10 as the course uses it (49,000 training images, 3,072 pixels + bias).
CIFAR_SHAPE = (49_000, 3_073, 10)
#: the --quick stand-in: same C, a few MB
QUICK_SHAPE = (4_000, 257, 10)


@dataclass
class Figure:
    """One row of the results table.

    Attributes
    ----------
    id : str
        Stable key, ``group.name`` (``fullbatch.svm.float32``).
    title : str
        What was measured, one line.
    value : float or None
        The measured figure (``None`` only if the measurement failed: see ``note``).
    unit : str
        ``x read`` (multiple of one streaming read of X), ``x`` (a plain ratio), ``s``, ...
    target : float or None
        ``None``: reported, no target.
    op : str
        How ``value`` compares with ``target`` to pass: ``<=``, ``>=``, ``<`` or ``>``.
    note : str
        How it was measured, or why it failed.
    detail : dict
        The raw measurements behind the figure (seconds, sizes).
    """

    id: str
    title: str
    value: float | None
    unit: str
    target: float | None = None
    op: str = "<="
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        """``None`` without a target; ``False`` when the measurement failed."""
        if self.target is None:
            return None
        if self.value is None or not np.isfinite(self.value):
            return False
        compare: dict[str, Callable[[float, float], bool]] = {
            "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b,
            "<": lambda a, b: a < b,
            ">": lambda a, b: a > b,
        }
        return compare[self.op](self.value, self.target)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``passed``."""
        out = asdict(self)
        out["passed"] = self.passed
        return out


@dataclass
class Timing:
    """Best-of-k seconds of a measured function and of its reference, timed interleaved."""

    seconds: float
    reference: float
    rounds: int

    @property
    def ratio(self) -> float:
        return self.seconds / self.reference

    def detail(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "reference_seconds": self.reference, "rounds": self.rounds}


def best_of(f: Callable[[], object], k: int) -> float:
    """The fastest of ``k`` wall-clock timings of ``f()`` in seconds."""
    best = float("inf")
    for _ in range(k):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def timed_pair(f: Callable[[], object], reference: Callable[[], object], k: int) -> Timing:
    """Best-of-``k`` of ``f`` and of ``reference``, alternating, after one warm-up call each.

    Alternating the two makes both see the same machine load, so their ratio is stable even
    when the absolute times are not.
    """
    f()
    reference()
    t_f = t_ref = float("inf")
    for _ in range(k):
        t_ref = min(t_ref, best_of(reference, 1))
        t_f = min(t_f, best_of(f, 1))
    return Timing(t_f, t_ref, k)


def synthetic(
    n: int, d: int, c: int, dtype: Any, seed: int = 0, *, bias: bool = True
) -> tuple[Array, Array]:
    """Seeded CIFAR-like data: centered pixel-scale features and learnable labels.

    Parameters
    ----------
    n, d, c : int
        Examples, features (including the bias column when ``bias``), classes.
    dtype : numpy dtype
        float32 or float64; generated directly in it (no float64 temporary for float32).
    bias : bool
        Make the last column the constant-1 bias column.

    Returns
    -------
    X : (n, d) array of ``dtype``
    y : (n,) int64 array, ``argmax`` of a random linear teacher's noisy scores
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=dtype)
    X *= X.dtype.type(60.0)  # about the spread of centered CIFAR-10 pixels
    if bias:
        X[:, -1] = 1
    teacher = rng.standard_normal((d, c)).astype(dtype)
    scores = X @ teacher
    scores += rng.standard_normal(scores.shape).astype(dtype) * scores.std()
    return X, np.argmax(scores, axis=1).astype(np.int64)


def _component(kind: optlab.components.ComponentKind, name: str, **params: Any) -> Any:
    from optlab.plugin_manager import get_registry

    record = get_registry().get(kind, name)
    return record.factory(record.params(**params))


def loss(name: str, **params: Any) -> optlab.Loss:
    """A bundled (or installed) loss, built from its registry record like a run builds it."""
    out: optlab.Loss = _component("loss", name, **params)
    return out


def optimizer(name: str, **params: Any) -> optlab.Optimizer:
    """A registered optimizer with ``params``."""
    out: optlab.Optimizer = _component("optimizer", name, **params)
    return out


def regularizer(name: str, **params: Any) -> optlab.Regularizer:
    """A registered regularizer with ``params``."""
    out: optlab.Regularizer = _component("regularizer", name, **params)
    return out


class NullMonitor(optlab.Monitor):
    """Takes the optimizer's reports and does nothing: times the optimizer alone."""

    def step(self, examples: int, loss: float, data_loss: float, reg_loss: float) -> None:
        pass

    def evaluate(self, epoch: float, W: Array) -> None:
        pass


def environment() -> dict[str, Any]:
    """Machine, numpy, BLAS library and thread counts, optlab's compiled kernels (in use or
    not), and the tuning variables of both."""
    from threadpoolctl import threadpool_info

    from optlab import kernels

    blas = [
        {
            k: info.get(k)
            for k in ("internal_api", "prefix", "version", "num_threads", "architecture")
        }
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "optlab": optlab.__version__,
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count(),
        "blas": blas,
        "kernels": _kernels_in_use(kernels.instruction_set()),
        "env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO", kernels.ENV_VAR))
        },
    }


def _kernels_in_use(isa: str | None) -> str:
    """``"AVX-512 (compiled)"``, ``"AVX2 (compiled)"`` or ``"numpy (no compiled kernel)"``."""
    if isa is None:
        return "numpy (no compiled kernel)"
    return f"{ {'avx512': 'AVX-512', 'avx2': 'AVX2'}.get(isa, isa) } (compiled)"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
