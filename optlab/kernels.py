"""The two products of a training step: compiled kernels where they beat BLAS, numpy elsewhere.

Both products of a linear classifier's step are skinny: ``C`` classes against ``D`` features,
a shape on which OpenBLAS reaches about a quarter of a core's peak. ``optlab/_kernels.c`` has
an AVX-512 kernel for each (measured on a 2-core Xeon, float32 and float64, see
``benchmarks/README.md``):

- the scores ``X @ W``: 1.3-1.7x OpenBLAS (on ``W`` padded to 16 columns) in cache and 1.7x
  streaming ``X`` from memory, for ``C <= MAX_SCORE_CLASSES`` and ``D >= MIN_SCORE_FEATURES``;
- the weight gradient ``dS.T @ X``: 1.5-3x OpenBLAS for ``C <= MAX_CLASSES`` (from about 100
  classes BLAS is faster, and is used).

:func:`scores`, :func:`add_weight_grad` and :func:`weight_grad` use a kernel when it was built,
the CPU has AVX-512F, the dtypes are one of float32 and float64 and the shapes fit; otherwise
numpy. Both paths give the same results up to floating-point reassociation (tested to 1e-10 in
float64 and 1e-5 relative in float32). A kernel computes each output element the same way
whichever thread runs it (and a row's scores however the rows are shared out), so results do
not depend on threads. ``OPTLAB_KERNELS=0`` in the environment turns the kernels off (read at
import).
"""

from __future__ import annotations

import importlib
import os
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np

from optlab.components import Array

__all__ = [
    "ENV_VAR",
    "MAX_CLASSES",
    "MAX_SCORE_CLASSES",
    "MIN_SCORE_FEATURES",
    "add_weight_grad",
    "compiled",
    "scores",
    "scores_fit",
    "weight_grad",
]

#: Environment variable that turns the compiled kernel off when set to ``0``.
ENV_VAR = "OPTLAB_KERNELS"
#: The most classes the kernel is used for: it beat OpenBLAS by 1.2-3x up to 16 classes, and
#: lost at 100.
MAX_CLASSES = 16

#: The scores kernel is used for at most this many classes (from 13 to 16 OpenBLAS on ``W``
#: padded to 16 columns was as fast or faster, see :func:`optlab.fastpath.score_width`) ...
MAX_SCORE_CLASSES = 12
#: ... and at least this many features: on digits' 64 packing ``W`` cost more than it saved.
MIN_SCORE_FEATURES = 256

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _load() -> ModuleType | None:
    if os.environ.get(ENV_VAR, "1").strip() == "0":
        return None
    try:
        module = importlib.import_module("optlab._kernels")
    except ImportError:  # built without a C compiler, or not on x86-64
        return None
    return module if module.avx512 else None


_kernel: Any = _load()


def compiled() -> bool:
    """Whether the compiled kernel is in use (built, AVX-512F, not turned off)."""
    return _kernel is not None


def _fits(dscores: Array, X: Array) -> bool:
    return (
        _kernel is not None
        and X.dtype in _DTYPES
        and dscores.dtype == X.dtype
        and dscores.ndim == 2
        and dscores.shape[1] <= MAX_CLASSES
        and X.flags.c_contiguous
    )


def add_weight_grad(grad_t: Array, dscores: Array, X: Array) -> None:
    """Add ``dscores.T @ X`` to ``grad_t`` in place.

    Parameters
    ----------
    grad_t : (C, D) float array
        The transposed weight gradient to add to; shares no memory with the others.
    dscores : (n, C) float array
        Gradient of the loss with respect to the scores.
    X : (n, D) float array
        The rows the scores came from.
    """
    if (
        _fits(dscores, X)
        and grad_t.dtype == X.dtype
        and grad_t.flags.c_contiguous
        and grad_t.flags.writeable
    ):
        _kernel.add_weight_grad(grad_t, np.ascontiguousarray(dscores), X)
    else:
        grad_t += dscores.T @ X


def weight_grad(dscores: Array, X: Array) -> Array:
    """``X.T @ dscores``: the weight gradient (D, C) of scores ``X @ W``.

    Parameters
    ----------
    dscores : (n, C) float array
        Gradient of the loss with respect to the scores.
    X : (n, D) float array
        The rows the scores came from.

    Returns
    -------
    grad : (D, C) array
        C-contiguous from the kernel; from numpy a transposed view of a C-contiguous (C, D)
        array, as ``(dscores.T @ X).T`` gives.
    """
    if _fits(dscores, X):
        grad_t = np.zeros((dscores.shape[1], X.shape[1]), dtype=X.dtype)
        _kernel.add_weight_grad(grad_t, np.ascontiguousarray(dscores), X)
        # one copy (about 20 us at 3,073 x 10) saves more in what follows: the regularizer's
        # gradient added in, the update, both 3-9x slower across the two layouts
        return np.ascontiguousarray(grad_t.T)
    # (dS.T @ X).T is X.T @ dS computed with X read row-major: measurably faster
    return (dscores.T @ X).T


def scores_fit(X: Array, W: Array) -> bool:
    """Whether :func:`scores` computes ``X @ W`` with the compiled kernel.

    Parameters
    ----------
    X : (n, D) array
    W : (D, C) array
    """
    return (
        _kernel is not None
        and X.dtype in _DTYPES
        and W.dtype == X.dtype
        and X.ndim == 2
        and W.ndim == 2
        and W.shape[1] <= MAX_SCORE_CLASSES
        and X.shape[1] >= MIN_SCORE_FEATURES
        and X.flags.c_contiguous
    )


def scores(X: Array, W: Array, out: Array | None = None, *, threads: int = 1) -> Array:
    """The scores ``X @ W``, into ``out`` if given.

    Parameters
    ----------
    X : (n, D) float array
        Examples.
    W : (D, C) float array
        Weights.
    out : (n, C) array or None
        Where to write them (C-contiguous, of ``X``'s dtype, for the kernel to be used).
    threads : int
        With the kernel, the rows are shared out among this many threads (one per run of
        rows). Each row's scores are computed the same way whichever thread does it, so the
        result does not depend on ``threads``. Numpy's product uses BLAS's own threads.

    Returns
    -------
    scores : (n, C) array
        ``out`` when given.
    """
    if scores_fit(X, W) and (
        out is None or (out.dtype == X.dtype and out.flags.c_contiguous and out.flags.writeable)
    ):
        result = np.empty((X.shape[0], W.shape[1]), dtype=X.dtype) if out is None else out
        Wc = np.ascontiguousarray(W)
        n = X.shape[0]
        parts = max(1, min(int(threads), n // 64))
        if parts == 1:
            _kernel.scores(result, X, Wc)
            return result
        bounds = [n * k // parts for k in range(parts + 1)]
        runs = [slice(bounds[k], bounds[k + 1]) for k in range(parts)]
        with ThreadPoolExecutor(parts - 1, "optlab-scores") as pool:
            helpers = [pool.submit(_kernel.scores, result[r], X[r], Wc) for r in runs[1:]]
            _kernel.scores(result[runs[0]], X[runs[0]], Wc)
            for helper in helpers:
                helper.result()
        return result
    return np.matmul(X, W, out=out)
