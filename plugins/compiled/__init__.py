"""The compiled backend: a linear classifier's products as AVX-512 and AVX2 kernels.

Both products of a linear classifier's step are skinny: ``C`` classes against ``D`` features,
a shape on which OpenBLAS reaches about a quarter of a core's peak. ``_kernels.c`` has a
kernel for each, in two instruction sets: AVX-512F, and AVX2 with FMA for the many x86-64 CPUs
without AVX-512 (most laptops). Measured on a 2-core Xeon, float32 and float64, one thread
(see ``benchmarks/README.md``):

- the scores ``X @ W``: with AVX-512 1.3-1.7x OpenBLAS (on ``W`` padded to 16 columns) in cache
  and 1.7x streaming ``X`` from memory; with AVX2 1.2-1.4x OpenBLAS's AVX2 (Haswell) kernels;
  for ``C <= MAX_SCORE_CLASSES`` and ``D >= MIN_SCORE_FEATURES``;
- the weight gradient ``dS.T @ X``: 1.5-3x OpenBLAS with AVX-512, 1.1-1.6x with AVX2, for
  ``C <= MAX_CLASSES`` (from about 100 classes BLAS is faster, and is used);
- a minibatch step of the bundled ``svm`` and ``softmax`` losses in one pass over rows read in
  place (:mod:`._steps`).

:class:`CompiledBackend` uses a kernel where the dtype (float32, float64), the layout and the
shapes fit, and the numpy backend it extends elsewhere. Both give the same results up to
floating-point reassociation (1e-10 in float64, 1e-5 relative in float32). A kernel computes
each output element the same way whichever thread runs it, so results do not depend on
threads; they do depend, in the last bits, on the instruction set. ``auto`` chooses this
backend where it accelerates a run: a bundled loss (the fused step), or ``C <= MAX_CLASSES``
(the products). ``OPTLAB_KERNELS``: ``0`` turns the backend off, ``avx2`` uses AVX2 even where
AVX-512 runs (to compare them).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import optlab
from optlab import Array, Backend, BackendRecord, BackendUnavailable, Loss

from ..losses import SoftmaxLoss, SVMLoss
from ._kernelset import (
    ENV_VAR,
    INSTRUCTION_SETS,
    KernelSet,
    choose_instruction_set,
    load,
)
from ._steps import StepKernel

__all__ = [
    "ENV_VAR",
    "INSTRUCTION_SETS",
    "MAX_CLASSES",
    "MAX_SCORE_CLASSES",
    "MIN_SCORE_FEATURES",
    "CompiledBackend",
    "KernelSet",
    "StepKernel",
    "choose_instruction_set",
    "optlab_register_backends",
]

#: The most classes the gradient kernel is used for: it beat OpenBLAS by 1.2-3x up to 16
#: classes, and lost at 100.
MAX_CLASSES = 16
#: The scores kernel (and the fused step) is used for at most this many classes (from 13 to
#: 16 OpenBLAS on ``W`` padded to 16 columns was as fast or faster) ...
MAX_SCORE_CLASSES = 12
#: ... and at least this many features: on digits' 64 packing ``W`` cost more than it saved.
MIN_SCORE_FEATURES = 256

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def loss_form(loss: Loss) -> tuple[str, float] | None:
    """The step kernel's form of ``loss`` (``("hinge", margin)``, ``("squared_hinge",
    margin)`` or ``("softmax", 0)``), or ``None``: only the bundled losses in their default
    form (an ``svm`` with ``include_correct`` or ``classes: mean`` trains on numpy), and not a
    subclass that computes its loss differently (overrides ``loss_and_grad``)."""
    method = type(loss).loss_and_grad
    if isinstance(loss, SVMLoss) and method is SVMLoss.loss_and_grad:
        if loss.include_correct or loss.classes != "sum":
            return None
        return ("squared_hinge" if loss.squared else "hinge", loss.margin)
    if isinstance(loss, SoftmaxLoss) and method is SoftmaxLoss.loss_and_grad:
        return ("softmax", 0.0)
    return None


class CompiledBackend(Backend):
    """The numpy backend with compiled kernels where they fit.

    Parameters
    ----------
    kernels : KernelSet
        One instruction set's kernels (the factory loads the best the CPU runs).
    """

    name = "compiled"

    def __init__(self, kernels: KernelSet) -> None:
        self.kernels = kernels

    @property
    def label(self) -> str:
        """``compiled (avx512)`` or ``compiled (avx2)``."""
        return f"{self.name} ({self.kernels.name})"

    # ------------------------------------------------------------------------------ fit
    @staticmethod
    def _step_fits(X: Array, n_classes: int) -> bool:
        return (
            X.dtype in _DTYPES
            and X.ndim == 2
            and X.flags.c_contiguous
            and 1 <= n_classes <= MAX_SCORE_CLASSES
            and X.shape[1] >= MIN_SCORE_FEATURES
        )

    @classmethod
    def _scores_fit(cls, X: Array, W: Array) -> bool:
        """The scores kernel takes ``X @ W``: the fused step's shapes, ``W`` of ``X``'s dtype."""
        return W.ndim == 2 and W.dtype == X.dtype and cls._step_fits(X, int(W.shape[1]))

    @staticmethod
    def _grad_fits(dscores: Array, X: Array) -> bool:
        return (
            X.dtype in _DTYPES
            and dscores.dtype == X.dtype
            and dscores.ndim == 2
            and dscores.shape[1] <= MAX_CLASSES
            and X.flags.c_contiguous
        )

    def accelerates(self, X: Array, n_classes: int, loss: Loss) -> bool:
        """A bundled loss on data the fused step takes, or products the kernels take."""
        if X.dtype not in _DTYPES or X.ndim != 2 or not X.flags.c_contiguous:
            return False
        if loss_form(loss) is not None and self._step_fits(X, n_classes):
            return True
        return 1 <= n_classes <= MAX_CLASSES

    # ------------------------------------------------------------------------------ products
    def scores(self, X: Array, W: Array, out: Array | None = None, *, threads: int = 1) -> Array:
        """``X @ W`` (n, C); with the kernel, the rows are shared out among ``threads``
        threads (each row's scores are computed the same way whichever thread does it)."""
        if not self._scores_fit(X, W) or (
            out is not None
            and not (out.dtype == X.dtype and out.flags.c_contiguous and out.flags.writeable)
        ):
            return super().scores(X, W, out, threads=threads)
        result = np.empty((X.shape[0], W.shape[1]), dtype=X.dtype) if out is None else out
        Wc = np.ascontiguousarray(W)
        n = X.shape[0]
        parts = max(1, min(int(threads), n // 64))
        kernel = self.kernels.scores
        if parts == 1:
            kernel(result, X, Wc)
            return result
        bounds = [n * k // parts for k in range(parts + 1)]
        runs = [slice(bounds[k], bounds[k + 1]) for k in range(parts)]
        with ThreadPoolExecutor(parts - 1, "optlab-scores") as pool:
            helpers = [pool.submit(kernel, result[r], X[r], Wc) for r in runs[1:]]
            kernel(result[runs[0]], X[runs[0]], Wc)
            for helper in helpers:
                helper.result()
        return result

    def add_weight_grad(self, grad_t: Array, dscores: Array, X: Array) -> None:
        """``grad_t`` (C, D) ``+= dscores.T @ X``."""
        if (
            self._grad_fits(dscores, X)
            and grad_t.dtype == X.dtype
            and grad_t.flags.c_contiguous
            and grad_t.flags.writeable
        ):
            self.kernels.add_weight_grad(grad_t, np.ascontiguousarray(dscores), X)
        else:
            super().add_weight_grad(grad_t, dscores, X)

    def weight_grad(self, dscores: Array, X: Array) -> Array:
        """``X.T @ dscores`` (D, C), C-contiguous from the kernel."""
        if not self._grad_fits(dscores, X):
            return super().weight_grad(dscores, X)
        grad_t = np.zeros((dscores.shape[1], X.shape[1]), dtype=X.dtype)
        self.kernels.add_weight_grad(grad_t, np.ascontiguousarray(dscores), X)
        # one copy (about 20 us at 3,073 x 10) saves more in what follows: the regularizer's
        # gradient added in, the update, both 3-9x slower across the two layouts
        return np.ascontiguousarray(grad_t.T)

    def score_width(self, X: Array, W: Array) -> int:
        """``C`` where the scores kernel takes ``X @ W`` (it needs no padding)."""
        return int(W.shape[1]) if self._scores_fit(X, W) else super().score_width(X, W)

    def stepper(self, X: Array, y: Array, n_classes: int, loss: Loss) -> StepKernel | None:
        """The fused step of a bundled loss, where the training set fits the kernel."""
        form = loss_form(loss)
        if form is None or not self._step_fits(X, n_classes):
            return None
        return StepKernel(self.kernels, X, y, n_classes, form[0], form[1])


def _compiled(params: optlab.Params) -> CompiledBackend:
    found = load()
    if isinstance(found, str):
        raise BackendUnavailable(found)
    return CompiledBackend(found)


@optlab.hookimpl
def optlab_register_backends() -> list[BackendRecord]:
    """The bundled compiled backend: ``compiled``."""
    return [
        BackendRecord(
            name="compiled",
            factory=_compiled,
            summary="AVX-512/AVX2 kernels for the products and the svm/softmax minibatch step.",
        )
    ]
