"""check_backend: a backend agrees with the numpy backend to rounding."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from optlab._contract.backend import Backend
from optlab._contract.components import Array, ComponentRecord, Loss
from optlab._contract.plugin_manager import get_registry
from optlab._errors import BackendUnavailable
from optlab.testing._common import (
    build,
    check_array,
    fail,
)

#: (N, D, C) of the products checked: few and many features and classes, a bias-free shape,
#: empty batches
_BACKEND_SHAPES = ((40, 5, 3), (70, 300, 10), (33, 260, 17), (64, 320, 1), (0, 300, 4))


def _tolerance(dtype: Any) -> float:
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-5


def _check_close(name: str, what: str, got: object, want: Array, dtype: Any) -> None:
    """``got`` is an array of ``want``'s shape and ``dtype`` equal to it to rounding."""
    got = check_array("backend", name, what, got, want.shape, np.dtype(dtype))
    rtol = _tolerance(dtype)
    scale = float(np.abs(want).max()) if want.size else 1.0
    if not np.allclose(got, want, rtol=rtol, atol=rtol * (scale or 1.0)):
        error = float(np.abs(got - want).max())
        raise fail(
            "backend", name, f"{what} differs from numpy's by {error:.3g} in {np.dtype(dtype)}"
        )


def check_backend(component: Any, *, losses: Sequence[Loss] | None = None) -> None:
    """Check a backend (a :class:`~optlab.BackendRecord` or a :class:`~optlab.Backend`)
    against the numpy backend.

    - ``label`` is a non-empty string and ``accelerates`` returns a bool;
    - ``scores`` (also into ``out``, and on a thread per part), ``add_weight_grad`` and
      ``weight_grad`` give numpy's results to rounding (1e-10 relative in float64, 1e-5 in
      float32), in the inputs' dtype, for few and many features and classes and for empty
      operands, and leave their inputs alone; ``score_width`` is at least ``C``;
    - where the backend offers a fused step for a loss (``stepper``), its mean loss and weight
      gradient over a batch agree with ``loss.loss_and_grad`` and numpy's products, with one
      thread and with two, and its gradient is a fresh (D, C) array of ``W``'s dtype.

    Parameters
    ----------
    component : BackendRecord or Backend
    losses : sequence of Loss, optional
        The losses to check the fused step with (default: every registered loss, with its
        default params).

    Raises
    ------
    AssertionError
        Naming the backend and what is wrong.
    BackendUnavailable
        The record's factory says the backend cannot run here (skip the check).
    """
    if isinstance(component, ComponentRecord):
        try:
            backend, name = build(component, Backend, "backend", None)
        except AssertionError as exc:
            if isinstance(exc.__cause__, BackendUnavailable):
                raise exc.__cause__ from None
            raise
    else:
        backend, name = build(component, Backend, "backend", None)
    label = backend.label
    if not isinstance(label, str) or not label:
        raise fail("backend", name, f"label is {label!r}, not a non-empty string")
    reference = Backend()
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        for n, d, c in _BACKEND_SHAPES:
            X: Array = rng.standard_normal((n, d)).astype(dtype)
            W: Array = rng.standard_normal((d, c)).astype(dtype)
            dS: Array = rng.standard_normal((n, c)).astype(dtype)
            kept = (X.copy(), W.copy(), dS.copy())
            shape = f"({n}, {d}) x ({d}, {c})"
            want = reference.scores(X, W)
            _check_close(name, f"scores of {shape}", backend.scores(X, W), want, dtype)
            out = np.empty((n, c), dtype)
            if backend.scores(X, W, out) is not out:
                raise fail("backend", name, f"scores of {shape} did not return out")
            _check_close(name, f"scores of {shape} into out", out, want, dtype)
            threaded = backend.scores(X, W, threads=3)
            _check_close(name, f"scores of {shape} on 3 threads", threaded, want, dtype)
            grad_t: Array = rng.standard_normal((c, d)).astype(dtype)
            want_t = grad_t + dS.T @ X
            backend.add_weight_grad(grad_t, dS, X)
            _check_close(name, f"add_weight_grad of {shape}", grad_t, want_t, dtype)
            grad = backend.weight_grad(dS, X)
            _check_close(name, f"weight_grad of {shape}", grad, X.T @ dS, dtype)
            if not all(np.array_equal(a, b) for a, b in zip((X, W, dS), kept, strict=True)):
                raise fail("backend", name, f"the products of {shape} modified their inputs")
            width = backend.score_width(X, W)
            if not isinstance(width, int) or width < c:
                raise fail("backend", name, f"score_width is {width!r} for {c} classes")
    _check_steppers(backend, name, _registered_losses() if losses is None else losses, rng)


def _registered_losses() -> list[Loss]:
    """Every registered loss, built with its default params (those that build)."""
    built = []
    for record in get_registry().records("loss"):
        try:
            loss = record.factory(record.params())
        except Exception:  # a broken third-party loss is its own check's business
            continue
        if isinstance(loss, Loss):
            built.append(loss)
    return built


def _check_steppers(
    backend: Backend, name: str, losses: Sequence[Loss], rng: np.random.Generator
) -> None:
    """The fused step of each loss the backend offers one for, against numpy."""
    N, D, C = 300, 270, 7
    y = rng.integers(0, C, N).astype(np.int64)
    index = rng.permutation(N)[:201]
    for loss in losses:
        what = type(loss).__name__
        for dtype in (np.float64, np.float32):
            X = rng.standard_normal((N, D)).astype(dtype)
            W = (0.1 * rng.standard_normal((D, C))).astype(dtype)
            accelerates = backend.accelerates(X, C, loss)
            if not isinstance(accelerates, bool):
                raise fail("backend", name, f"accelerates returned {accelerates!r}, not a bool")
            stepper = backend.stepper(X, y, C, loss)
            if stepper is None:
                continue
            if not stepper.fits(W):
                raise fail("backend", name, f"its {what} step does not take W {W.shape}")
            X64, W64 = X[index].astype(np.float64), W.astype(np.float64)
            want, dS = loss.loss_and_grad(X64 @ W64, y[index])
            want_grad = X64.T @ dS
            for threads in (1, 2):
                with stepper.session(len(index), threads):
                    value, grad = stepper.loss_and_grad(W, index)
                rtol = _tolerance(dtype)
                if not math.isclose(float(value), float(want), rel_tol=rtol, abs_tol=rtol):
                    raise fail(
                        "backend",
                        name,
                        f"its {what} step gives loss {value:.10g} on {np.dtype(dtype)} data "
                        f"where loss_and_grad gives {want:.10g} ({threads} thread(s))",
                    )
                _check_close(
                    name, f"the {what} step's gradient", grad, want_grad.astype(dtype), dtype
                )
                if np.shares_memory(grad, W):
                    raise fail("backend", name, f"its {what} step's gradient shares W's memory")
