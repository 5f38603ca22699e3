"""check_optimizer: an optimizer lowers the objective of a small convex problem,
reproducibly, keeping shapes, dtypes and constraints."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from optlab._contract.components import Array, Regularizer
from optlab._contract.objective import BoundRegularizer, Objective
from optlab._contract.optimizer import Optimizer
from optlab.testing._common import (
    DTYPES,
    build,
    check_array,
    fail,
)
from optlab.testing._doubles import RecordingMonitor, toy_objective


class _ColumnNormCap(Regularizer):
    """Caps each column's norm at ``c`` (a max-norm constraint without a plugin)."""

    has_projection: ClassVar[bool] = True

    def __init__(self, c: float) -> None:
        self.c = c

    def project(self, W: Array) -> None:
        norms = np.linalg.norm(W, axis=0)
        W *= np.minimum(1.0, self.c / np.maximum(norms, 1e-30)).astype(W.dtype)


def check_optimizer(
    component: Any, *, params: Mapping[str, Any] | None = None, seed: int = 0
) -> None:
    """Check an optimizer (an :class:`~optlab.OptimizerRecord` or an :class:`~optlab.Optimizer`)
    on :func:`toy_objective` (240 examples): pass ``params`` if the defaults do not suit it.

    Raises
    ------
    AssertionError
        Naming the optimizer and what is wrong.
    """
    opt: Optimizer
    opt, name = build(component, Optimizer, "optimizer", params)
    kind = "optimizer"
    for dtype in DTYPES:
        W_first = _run_once(opt, name, toy_objective(dtype), seed)
        W_again = _run_once(opt, name, toy_objective(dtype), seed)
        if not np.array_equal(W_first, W_again):
            raise fail(kind, name, f"two {np.dtype(dtype)} runs with the same seed differ")
    cap = 0.5
    capped = toy_objective(
        np.float64, regularizers=[BoundRegularizer(_ColumnNormCap(cap), "cap", "optlab.testing")]
    )
    W = _run_once(opt, name, capped, seed, require_decrease=False)
    norms = np.linalg.norm(W[:-1], axis=0)
    if np.any(norms > cap * (1 + 1e-6)):
        raise fail(
            kind,
            name,
            f"final W breaks a max-norm constraint (column norms {np.round(norms, 4)} > {cap}); "
            "call objective.project(W) after each update",
        )


def _run_once(
    opt: Optimizer, name: str, objective: Objective, seed: int, require_decrease: bool = True
) -> Array:
    kind = "optimizer"
    dtype = objective.dtype
    W0 = (1e-3 * np.random.default_rng(seed + 1).standard_normal(objective.shape)).astype(dtype)
    before = W0.copy()
    monitor = RecordingMonitor()
    try:
        W = opt.minimize(objective, W0, np.random.default_rng(seed), monitor)
    except AssertionError:
        raise
    except Exception as exc:
        raise fail(kind, name, f"raised {exc!r} on a {dtype} problem") from exc
    W = check_array(kind, name, f"returned weights ({dtype} problem)", W, objective.shape, dtype)
    if not np.array_equal(W0, before):
        raise fail(kind, name, "modified W0 in place; work on a copy")
    if not monitor.steps:
        raise fail(kind, name, "never called monitor.step")
    if not monitor.evaluations:
        raise fail(kind, name, "never called monitor.evaluate (call it at least at the end)")
    for s in monitor.steps:
        if not (isinstance(s.examples, int | np.integer) and s.examples > 0):
            raise fail(kind, name, f"monitor.step got examples={s.examples!r}; a positive int")
        if not all(math.isfinite(float(v)) for v in (s.loss, s.data_loss, s.reg_loss)):
            raise fail(kind, name, f"monitor.step got a non-finite loss {s}")
    if require_decrease:
        start, end = objective.value(W0).total, objective.value(W).total
        if not end < start:
            raise fail(
                kind,
                name,
                f"did not decrease a convex {dtype} problem: objective {start:.6g} at W0, "
                f"{end:.6g} at the end",
            )
    return W
