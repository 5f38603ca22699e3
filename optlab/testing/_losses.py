"""check_loss: a loss as the training loop will use it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from optlab._contract.components import Array, Loss
from optlab.testing._common import (
    DTYPES,
    build,
    check_array,
    check_gradient,
    check_scalar,
    fail,
)


def check_loss(component: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """Check a loss (a :class:`~optlab.LossRecord` or a :class:`~optlab.Loss`).

    Raises
    ------
    AssertionError
        Naming the loss and what is wrong.
    """
    loss: Loss
    loss, name = build(component, Loss, "loss", params)
    kind = "loss"
    rng = np.random.default_rng(20240)
    N, C = 9, 4
    y = np.concatenate([np.arange(C), rng.integers(0, C, N - C)]).astype(np.int64)
    base = 2.0 * rng.standard_normal((N, C))

    results: dict[Any, tuple[float, Array]] = {}
    for dtype in DTYPES:
        for scale in (1.0, 1e3):
            scores = (scale * base).astype(dtype)
            before = scores.copy()
            try:
                out = loss.loss_and_grad(scores, y)
                only = loss.loss(scores, y)
            except Exception as exc:
                raise fail(kind, name, f"raised {exc!r} on {np.dtype(dtype)} scores") from exc
            what = f"loss_and_grad on {np.dtype(dtype)} scores of scale {scale:g}"
            if not (isinstance(out, tuple) and len(out) == 2):
                raise fail(kind, name, f"{what} returned {type(out).__name__}, not (loss, grad)")
            value = check_scalar(kind, name, f"the loss value of {what}", out[0])
            grad = check_array(kind, name, f"the score gradient of {what}", out[1], (N, C), dtype)
            if not np.array_equal(scores, before):
                raise fail(kind, name, f"{what} modified its input scores")
            rtol = 1e-4 if dtype == np.float32 else 1e-10
            if not math.isclose(check_scalar(kind, name, "loss()", only), value, rel_tol=rtol):
                raise fail(kind, name, f"loss() gives {only}, loss_and_grad() gives {value}")
            if scale == 1.0:
                results[dtype] = (value, grad)

    v64, g64 = results[np.float64]
    v32, g32 = results[np.float32]
    if not math.isclose(v32, v64, rel_tol=1e-4, abs_tol=1e-6):
        raise fail(kind, name, f"float32 loss {v32} differs from float64 loss {v64}")
    if not np.allclose(g32, g64, rtol=1e-3, atol=1e-5):
        raise fail(kind, name, "float32 gradient differs from the float64 gradient")

    scores64 = base.astype(np.float64)
    check_gradient(kind, name, lambda S: loss.loss_and_grad(S, y)[0], scores64, g64)
    _check_mean(loss, name, scores64, y, v64)

    expected = loss.expected_initial_loss(C)
    if expected is not None:
        tiny = 1e-6 * rng.standard_normal((N, C))
        got = loss.loss(tiny, y)
        if not math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-6):
            raise fail(
                kind,
                name,
                f"expected_initial_loss({C}) is {expected}, but the loss at scores of about 0 "
                f"is {got}",
            )


def _check_mean(loss: Loss, name: str, scores: Array, y: Array, value: float) -> None:
    """The loss of a batch is the mean of per-example terms: twice the batch gives the same
    loss (a sum would double), and the size-weighted mean of two parts' losses is the whole's
    (the full-batch pass computes a large training set in blocks of rows and relies on it)."""
    twice = loss.loss_and_grad(np.concatenate([scores, scores]), np.concatenate([y, y]))[0]
    if not math.isclose(float(twice), value, rel_tol=1e-9, abs_tol=1e-12):
        ratio = float(twice) / value if value else float("nan")
        raise fail(
            "loss",
            name,
            f"the loss of a batch repeated twice is {float(twice):.6g}, not the batch's "
            f"{value:.6g} ({ratio:.3g}x): the loss must be the mean over the batch, "
            "(1/N) sum_i L_i, not a sum",
        )
    k = len(y) // 3
    first = float(loss.loss_and_grad(scores[:k], y[:k])[0])
    rest = float(loss.loss_and_grad(scores[k:], y[k:])[0])
    weighted = (k * first + (len(y) - k) * rest) / len(y)
    if not math.isclose(weighted, value, rel_tol=1e-9, abs_tol=1e-12):
        raise fail(
            "loss",
            name,
            f"the losses of the first {k} and the other {len(y) - k} examples weigh up to "
            f"{weighted:.6g}, not the whole batch's {value:.6g}: the loss must be a mean of "
            "per-example terms L_i (a large training set is computed in blocks of rows)",
        )
