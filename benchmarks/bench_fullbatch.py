"""Figures 1 and 2: a full-batch loss and gradient, and one SGD epoch, against one read of X
and against the machine's roofline.

The first reference is ``X.sum()`` on the same array: one streaming read of ``X`` on one core.
Both products of a full-batch pass (``X @ W`` and ``X.T @ dS``) need all of ``X``; the blocked
pass of :mod:`optlab._contract.fastpath` reads it once. Where memory is fast and the products'
arithmetic takes longer than the read, one read is not a floor; the second reference is the roofline
(:func:`benchmarks._common.roofline`): the larger of one read of ``X`` at the bandwidth of the
threads optlab uses and the products' ``4 * N * D * C`` FLOPs at the machine's measured
large-GEMM rate on those threads.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from benchmarks._common import (
    CIFAR_SHAPE,
    QUICK_SHAPE,
    Figure,
    NullMonitor,
    Timing,
    backend_kwargs,
    loss,
    machine_rates,
    optimizer,
    roofline,
    synthetic,
    timed_pair,
)
from optlab._contract.fastpath import BLOCKED_MIN_BYTES
from optlab._contract.objective import BoundLoss, Objective

__all__ = ["run"]

LOSSES = ("svm", "softmax")
DTYPES = ("float32", "float64")


def _objective(X: Any, y: Any, c: int, name: str) -> Objective:
    impl = loss(name)
    return Objective(
        X,
        y,
        c,
        BoundLoss(impl, name, "optlab"),
        rng=np.random.default_rng(0),
        **backend_kwargs(X, y, c, impl),
    )


def _against_roofline(
    figure_id: str, title: str, t: Timing, X: Any, c: int, target: float | None
) -> Figure:
    """``t``'s measured seconds over the roofline of a pass over ``X`` with ``c`` classes:
    one read of ``X``, and ``4 * N * D * C`` FLOPs (the scores and the weight gradient)."""
    n, d = X.shape
    bound = roofline(X.nbytes, 4.0 * n * d * c, dtype=X.dtype)
    return Figure(
        figure_id,
        title,
        t.seconds / bound["seconds"],
        "x roofline",
        target,
        note=f"{bound['bound']}-bound on {bound['threads']} thread(s): max(one read of X at "
        "the measured bandwidth, 4*N*D*C FLOPs at the measured large-GEMM rate)",
        detail={"seconds": t.seconds, "roofline": bound},
    )


def bare_epoch(X: Any, y: Any, W0: Any, name: str, seed: int = 3, batch: int = 200) -> Any:
    """One shuffled SGD epoch written inline in numpy (no framework): per batch the gather,
    the scores, the loss's score gradient, the weight gradient and the update. Returns W."""
    W = W0.copy()
    n = X.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    lr = X.dtype.type(1e-7)
    for start in range(0, n, batch):
        idx = order[start : start + batch]
        Xb, yb = X[idx], y[idx]
        rows = np.arange(len(idx))
        scores = Xb @ W
        if name == "softmax":
            scores -= scores.max(axis=1, keepdims=True)
            dS = np.exp(scores)
            dS /= dS.sum(axis=1, keepdims=True)
            dS[rows, yb] -= 1
        else:
            margins = scores - scores[rows, yb][:, None] + 1
            margins[rows, yb] = 0
            dS = (margins > 0).astype(X.dtype)
            dS[rows, yb] = -dS.sum(axis=1)
        dS /= X.dtype.type(len(idx))
        W -= lr * (dS.T @ Xb).T
    return W


def run(quick: bool = False) -> list[Figure]:
    """Measure figures 1 and 2 (and the straightforward two-read path, for scale)."""
    n, d, c = QUICK_SHAPE if quick else CIFAR_SHAPE
    k = 3 if quick else 5
    machine_rates()  # measured before X exists (a 512 MiB array of its own), once per process
    figures: list[Figure] = []
    for dtype in DTYPES:
        X, y = synthetic(n, d, c, dtype, seed=1)
        W = (1e-4 * np.random.default_rng(2).standard_normal((d, c))).astype(dtype)
        size = f"{n}x{d} {dtype} ({X.nbytes / 2**20:.0f} MiB)"
        read = X.sum
        for name in LOSSES:
            obj = _objective(X, y, c, name)
            # the full-batch path Objective takes for this X (blocked when X is large)
            blocked = X.nbytes >= BLOCKED_MIN_BYTES
            t = timed_pair(partial(obj.value_and_grad, W), read, k)
            figures.append(
                Figure(
                    f"fullbatch.{name}.{dtype}",
                    f"full-batch {name} loss+gradient / one read of X, {size}",
                    t.ratio,
                    "x read",
                    1.3,
                    note="Objective.value_and_grad(W) vs X.sum(); "
                    + ("blocked pass" if blocked else "simple path (X below the blocking size)"),
                    detail=t.detail(),
                )
            )
            figures.append(
                _against_roofline(
                    f"fullbatch.{name}.{dtype}.roofline",
                    f"full-batch {name} loss+gradient / the machine's roofline, {size}",
                    t,
                    X,
                    c,
                    1.5,
                )
            )
            t2 = timed_pair(partial(obj.data_loss_and_grad, W, obj.X, obj.y), read, k)
            figures.append(
                Figure(
                    f"fullbatch_2reads.{name}.{dtype}",
                    f"for scale: straightforward X@W then X.T@dS / one read, {size}",
                    t2.ratio,
                    "x read",
                    note="Objective.data_loss_and_grad (two reads of X); no target",
                    detail=t2.detail(),
                )
            )
            sgd = optimizer("sgd", lr=1e-7, batch_size=200, epochs=1, sampling="shuffle")
            monitor = NullMonitor()
            t3 = timed_pair(
                partial(sgd.minimize, obj, W, np.random.default_rng(3), monitor),
                read,
                k,  # best of as many as the full-batch figure: an epoch is as noisy
            )
            figures.append(
                Figure(
                    f"sgd_epoch.{name}.{dtype}",
                    f"one SGD epoch (batch 200, shuffled) {name} / one read of X, {size}",
                    t3.ratio,
                    "x read",
                    2.0,
                    note="bundled sgd optimizer, 1 epoch, no-op monitor, vs X.sum()",
                    detail=t3.detail(),
                )
            )
            figures.append(
                _against_roofline(
                    f"sgd_epoch.{name}.{dtype}.roofline",
                    f"one SGD epoch (batch 200, shuffled) {name} / the machine's roofline, {size}",
                    t3,
                    X,
                    c,
                    2.0,
                )
            )
            t4 = timed_pair(partial(bare_epoch, X, y, W, name), read, k)
            figures.append(
                Figure(
                    f"sgd_epoch_bare.{name}.{dtype}",
                    f"for scale: the same epoch as a bare numpy loop / one read of X, {size}",
                    t4.ratio,
                    "x read",
                    note="benchmarks.bench_fullbatch.bare_epoch (gather, X_b@W, dS, dS.T@X_b, "
                    "update); no target",
                    detail=t4.detail(),
                )
            )
            figures.append(
                _against_roofline(
                    f"sgd_epoch_bare.{name}.{dtype}.roofline",
                    f"for scale: the bare numpy epoch / the machine's roofline, {size}",
                    t4,
                    X,
                    c,
                    None,
                )
            )
            figures.append(
                Figure(
                    f"sgd_epoch_vs_bare.{name}.{dtype}",
                    f"the bare numpy epoch's time / optlab's sgd epoch, {size}",
                    t4.seconds / t3.seconds,
                    "x faster",
                    1.5,
                    ">=",
                    note="best-of-k seconds of the two epochs above, each timed alternately "
                    "with the same read",
                    detail={"optlab_seconds": t3.seconds, "bare_seconds": t4.seconds},
                )
            )
        del X
    return figures
