"""check_regularizer: a penalty, its projection and its input perturbation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from optlab._contract.components import Array, ComponentRecord, Regularizer
from optlab.testing._common import (
    DTYPES,
    build,
    check_array,
    check_gradient,
    check_scalar,
    fail,
)


def check_regularizer(component: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """Check a regularizer (a :class:`~optlab.RegularizerRecord` or a
    :class:`~optlab.Regularizer`).

    Raises
    ------
    AssertionError
        Naming the regularizer and what is wrong.
    """
    reg: Regularizer
    reg, name = build(component, Regularizer, "regularizer", params)
    kind = "regularizer"
    rng = np.random.default_rng(7)
    shape = (6, 4)
    base = rng.standard_normal(shape)
    values: dict[Any, tuple[float, Array | None]] = {}
    for dtype in DTYPES:
        W = base.astype(dtype)
        before = W.copy()
        value, grad = reg.penalty_and_grad(W)
        value = check_scalar(kind, name, f"penalty on {np.dtype(dtype)} W", value)
        if grad is not None:
            grad = check_array(
                kind, name, f"penalty gradient on {np.dtype(dtype)} W", grad, shape, dtype
            )
        if not np.array_equal(W, before):
            raise fail(kind, name, "penalty_and_grad modified W")
        if not reg.has_penalty and (value != 0.0 or grad is not None):
            raise fail(
                kind,
                name,
                "has_penalty is False but penalty_and_grad returns a penalty; the objective "
                "would ignore it (set has_penalty = True)",
            )
        values[dtype] = (value, grad)
        if reg.has_projection:
            _check_projection(reg, name, (4.0 * base).astype(dtype))
        if reg.has_perturbation:
            _check_perturbation(reg, name, dtype)

    if reg.has_penalty:
        v64, g64 = values[np.float64]
        v32, _ = values[np.float32]
        if not math.isclose(v32, v64, rel_tol=1e-4, abs_tol=1e-6):
            raise fail(kind, name, f"float32 penalty {v32} differs from float64 penalty {v64}")
        if g64 is None:
            if v64 != 0.0:
                raise fail(kind, name, "returns a nonzero penalty but no gradient")
        else:
            check_gradient(kind, name, lambda V: reg.penalty_and_grad(V)[0], base, g64)
    _check_edges(reg, name, base)
    if isinstance(component, ComponentRecord):
        _check_include_bias(component, name, params)


def _check_edges(reg: Regularizer, name: str, base: Array) -> None:
    """Finite penalty, gradient and projection at ``W`` of zeros, with a zero row, with a zero
    column, and at tiny weights (a norm's gradient ``w / ||w||`` is 0/0 at zero)."""
    zero_row, zero_column = base.copy(), base.copy()
    zero_row[2] = 0.0
    zero_column[:, 1] = 0.0
    edges = {
        "all-zero W": np.zeros_like(base),
        "W with a zero row": zero_row,
        "W with a zero column": zero_column,
        "W of scale 1e-30": 1e-30 * base,
    }
    for what, W in edges.items():
        for dtype in DTYPES:
            Wd = W.astype(dtype)
            where = f"{what} ({np.dtype(dtype)})"
            with np.errstate(all="ignore"):
                value, grad = reg.penalty_and_grad(Wd.copy())
                finite = math.isfinite(float(value))
                if grad is not None:
                    finite = finite and bool(np.isfinite(grad).all())
                if not finite:
                    raise fail("regularizer", name, f"penalty or gradient is not finite at {where}")
                if reg.has_projection:
                    projected = Wd.copy()
                    reg.project(projected)
                    if not np.isfinite(projected).all():
                        raise fail("regularizer", name, f"project gives NaN or inf at {where}")


def _check_include_bias(
    record: ComponentRecord[Any], name: str, params: Mapping[str, Any] | None
) -> None:
    """A regularizer's factory passes ``include_bias`` on: the objective reads it from the
    object to decide whether the bias row is penalized (or constrained)."""
    if "include_bias" not in record.params.model_fields:
        return
    for wanted in (True, False):
        reg = record.factory(record.params(**{**dict(params or {}), "include_bias": wanted}))
        if getattr(reg, "include_bias", None) is not wanted:
            raise fail(
                "regularizer",
                name,
                f"built with include_bias={wanted}, its include_bias is "
                f"{getattr(reg, 'include_bias', None)!r}: set it from the params in the "
                "factory (the objective reads it from the object)",
            )


def _check_projection(reg: Regularizer, name: str, W: Array) -> None:
    kind = "regularizer"
    huge = W * W.dtype.type(1e6)
    reg.project(huge)
    if np.array_equal(huge, W * W.dtype.type(1e6)):
        raise fail(
            kind,
            name,
            "projection changed nothing, even on a random W of scale 1e6; it must modify W "
            "in place (W *= ..., W[...] = ...), not rebind it",
        )
    once = W.copy()
    reg.project(once)
    check_array(kind, name, "projected W", once, W.shape, W.dtype)
    twice = once.copy()
    reg.project(twice)
    rtol = 1e-5 if W.dtype == np.float32 else 1e-12
    if not np.allclose(twice, once, rtol=rtol, atol=rtol):
        raise fail(kind, name, "projection is not idempotent: project(project(W)) != project(W)")
    # the objective passes a view without the bias row: the projection must work in place
    full = np.vstack([W, np.ones((1, W.shape[1]), dtype=W.dtype)])
    reg.project(full[:-1])
    if not np.allclose(full[:-1], once, rtol=rtol, atol=rtol):
        raise fail(kind, name, "projection does not work in place on a view of W (W[:-1])")
    if not np.all(full[-1] == 1):
        raise fail(kind, name, "projection of W[:-1] changed the row outside the view")


def _check_perturbation(reg: Regularizer, name: str, dtype: Any) -> None:
    kind = "regularizer"
    X = np.random.default_rng(3).standard_normal((50, 6)).astype(dtype)
    before = X.copy()
    out = reg.perturb_inputs(X, np.random.default_rng(11))
    check_array(kind, name, f"perturbed {np.dtype(dtype)} inputs", out, X.shape, dtype)
    if not np.array_equal(X, before):
        raise fail(kind, name, "perturb_inputs modified its input in place; return a copy")
    again = reg.perturb_inputs(X, np.random.default_rng(11))
    if not np.array_equal(out, again):
        raise fail(kind, name, "perturb_inputs is not reproducible from the generator")
