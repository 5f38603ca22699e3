"""The two products of a training step: compiled kernels where they beat BLAS, numpy elsewhere.

Both products of a linear classifier's step are skinny: ``C`` classes against ``D`` features,
a shape on which OpenBLAS reaches about a quarter of a core's peak. ``optlab/_kernels.c`` has a
kernel for each, in two instruction sets (:data:`INSTRUCTION_SETS`): AVX-512F, and AVX2 with
FMA for the many x86-64 CPUs without AVX-512 (most laptops). Measured on a 2-core Xeon, float32
and float64, one thread (see ``benchmarks/README.md``):

- the scores ``X @ W``: with AVX-512 1.3-1.7x OpenBLAS (on ``W`` padded to 16 columns) in cache
  and 1.7x streaming ``X`` from memory; with AVX2 1.2-1.4x OpenBLAS's AVX2 (Haswell) kernels;
  for ``C <= MAX_SCORE_CLASSES`` and ``D >= MIN_SCORE_FEATURES``;
- the weight gradient ``dS.T @ X``: 1.5-3x OpenBLAS with AVX-512, 1.1-1.6x with AVX2, for
  ``C <= MAX_CLASSES`` (from about 100 classes BLAS is faster, and is used).

For a minibatch step of a bundled loss (a :class:`~optlab.components.KernelForm`),
:func:`step` does both products and the loss's gradient in one pass over rows read in place
(used by :mod:`optlab.steps`), and :func:`add_transposed` adds the two halves' gradients into
the layout of ``W``.

:func:`scores`, :func:`add_weight_grad` and :func:`weight_grad` use a kernel when it was built,
the CPU runs its instruction set (the best one it runs is used), the dtypes are one of float32
and float64 and the shapes fit; otherwise numpy. Both paths give the same results up to
floating-point reassociation (tested to 1e-10 in float64 and 1e-5 relative in float32). A
kernel computes each output element the same way whichever thread runs it (and a row's scores
however the rows are shared out), so results do not depend on threads; they do depend, in the
last bits, on the instruction set. ``OPTLAB_KERNELS`` in the environment (read at import):
``0`` turns the kernels off, ``avx2`` uses AVX2 even where AVX-512 runs (to compare them).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from optlab.components import Array, KernelForm

__all__ = [
    "ENV_VAR",
    "INSTRUCTION_SETS",
    "MAX_CLASSES",
    "MAX_SCORE_CLASSES",
    "MIN_SCORE_FEATURES",
    "KernelSet",
    "add_transposed",
    "add_weight_grad",
    "choose_instruction_set",
    "compiled",
    "instruction_set",
    "scores",
    "scores_fit",
    "step",
    "step_fit",
    "weight_grad",
]

#: Environment variable: ``0`` turns the compiled kernels off; an instruction set's name caps
#: the kernels at that one (``avx2``); unset, empty or ``1``: the best the CPU runs.
ENV_VAR = "OPTLAB_KERNELS"
#: The instruction sets the kernels are built for, best first.
INSTRUCTION_SETS: tuple[str, ...] = ("avx512", "avx2")
#: The most classes the kernel is used for: it beat OpenBLAS by 1.2-3x up to 16 classes, and
#: lost at 100.
MAX_CLASSES = 16

#: The scores kernel is used for at most this many classes (from 13 to 16 OpenBLAS on ``W``
#: padded to 16 columns was as fast or faster, see :func:`optlab.fastpath.score_width`) ...
MAX_SCORE_CLASSES = 12
#: ... and at least this many features: on digits' 64 packing ``W`` cost more than it saved.
MIN_SCORE_FEATURES = 256

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class KernelSet:
    """One instruction set's kernels (see ``optlab/_kernels.c`` for their contracts)."""

    name: str
    add_weight_grad: Callable[[Array, Array, Array], None]
    scores: Callable[[Array, Array, Array], None]
    step: Callable[..., float]
    add_transposed: Callable[[Array, Array, Array], None]

    @classmethod
    def from_module(cls, module: Any, isa: str) -> KernelSet:
        """The kernels of instruction set ``isa`` in the compiled module ``optlab._kernels``."""
        return cls(
            isa,
            getattr(module, f"add_weight_grad_{isa}"),
            getattr(module, f"scores_{isa}"),
            getattr(module, f"step_{isa}"),
            module.add_transposed,
        )


def choose_instruction_set(setting: str, runnable: Sequence[str]) -> str | None:
    """The instruction set the kernels use.

    Parameters
    ----------
    setting : str
        The value of :data:`ENV_VAR`: ``""`` or ``"1"`` for the best in ``runnable``, ``"0"``
        for none, or a name from :data:`INSTRUCTION_SETS` for the best no better than it.
    runnable : sequence of str
        The instruction sets the CPU runs (and the module was built with).

    Returns
    -------
    str or None
        ``None`` when the kernels are off or none runs. An unknown ``setting`` warns and is
        taken as ``""``.
    """
    value = setting.strip().lower()
    if value == "0":
        return None
    if value in ("", "1"):
        allowed = INSTRUCTION_SETS
    elif value in INSTRUCTION_SETS:
        allowed = INSTRUCTION_SETS[INSTRUCTION_SETS.index(value) :]
    else:
        warnings.warn(
            f"{ENV_VAR}={setting!r} is not one of 0, 1, {', '.join(INSTRUCTION_SETS)}; "
            "using the best instruction set the CPU runs",
            RuntimeWarning,
            stacklevel=2,
        )
        allowed = INSTRUCTION_SETS
    return next((isa for isa in allowed if isa in runnable), None)


def _load(setting: str) -> KernelSet | None:
    try:
        module = importlib.import_module("optlab._kernels")
    except ImportError:  # built without a C compiler, or not on x86-64
        return None
    isa = choose_instruction_set(setting, module.isas)
    return None if isa is None else KernelSet.from_module(module, isa)


_kernel: Any = _load(os.environ.get(ENV_VAR, ""))


def compiled() -> bool:
    """Whether a compiled kernel is in use (built, run by the CPU, not turned off)."""
    return _kernel is not None


def instruction_set() -> str | None:
    """The instruction set of the kernels in use (``"avx512"`` or ``"avx2"``), or ``None``."""
    return None if _kernel is None else str(_kernel.name)


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


#: The step kernel's code for each :attr:`KernelForm.kind` (``optlab/_kernels.c``).
_LOSS_CODES = {"hinge": 0, "squared_hinge": 1, "softmax": 2}


def step_fit(X: Array, n_classes: int) -> bool:
    """Whether :func:`step` runs for training set ``X`` (N, D) and ``n_classes`` classes: a
    kernel is in use, ``X`` is C-contiguous float32 or float64 and the shape is one the scores
    kernel takes (``C <= MAX_SCORE_CLASSES``, ``D >= MIN_SCORE_FEATURES``)."""
    return (
        _kernel is not None
        and X.dtype in _DTYPES
        and X.ndim == 2
        and X.flags.c_contiguous
        and 1 <= n_classes <= MAX_SCORE_CLASSES
        and X.shape[1] >= MIN_SCORE_FEATURES
    )


def step(
    grad_t: Array,
    scores: Array,
    X: Array,
    index: Array,
    y: Array,
    W: Array,
    form: KernelForm,
    batch: int,
) -> float:
    """Part of a minibatch step of a loss with a :class:`~optlab.components.KernelForm`, on
    the rows ``X[index]`` read in place (only where :func:`step_fit` holds).

    Per chunk of rows (kept in L2 while the next is prefetched) the kernel computes their
    scores, the loss's gradient of them and their part of the weight gradient, so each row is
    read from memory once. The scores and the weight gradient are summed as :func:`scores` and
    :func:`add_weight_grad` sum them.

    Parameters
    ----------
    grad_t : (C, D) array
        The transposed weight gradient, added to in place.
    scores : (n, C) array
        Scratch for the rows' scores; on return the gradient of the mean loss with respect to
        them.
    X : (N, D) array
        The training set.
    index : (n,) int64 array
        The rows, each in ``0..N-1``.
    y : (N,) int64 array
        The training set's labels, each in ``0..C-1``.
    W : (D, C) array
        C-contiguous, of ``X``'s dtype (as are ``grad_t`` and ``scores``).
    form : KernelForm
        The loss.
    batch : int
        The rows of the whole batch (``>= n``): the gradients are of the mean over it.

    Returns
    -------
    float
        The sum of the rows' losses (not the mean).
    """
    return float(
        _kernel.step(
            grad_t, scores, X, index, y, W, _LOSS_CODES[form.kind], float(form.margin), batch
        )
    )


def add_transposed(out: Array, a: Array, b: Array) -> None:
    """``out = (a + b).T``: two transposed weight gradients added into the layout of ``W``.

    Parameters
    ----------
    out : (D, C) array
        Written; C-contiguous, of the dtype of ``a`` and ``b``, for the kernel to be used.
    a, b : (C, D) arrays
    """
    if (
        _kernel is not None
        and a.dtype in _DTYPES
        and a.dtype == b.dtype == out.dtype
        and a.flags.c_contiguous
        and b.flags.c_contiguous
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        _kernel.add_transposed(out, a, b)
    else:
        np.add(a.T, b.T, out=out)
