"""Minibatch steps of a loss the compiled kernel knows, in one pass over rows read in place.

A loss with a :attr:`~optlab.components.Loss.kernel_form` (the bundled ``svm`` and
``softmax``) lets :func:`optlab.kernels.step` compute a minibatch's scores, the loss's gradient
of them and the weight gradient chunk by chunk of rows, straight from the training set: each
row is read from memory once. Copying a batch out and multiplying with it reads the rows three
times (the copy, then each product).

On one core the two products take about as long as reading the rows from memory, so a step is
split in two: each half of the batch goes into its own gradient, and the two are added, first
half first. Inside :meth:`StepKernel.batches`, where :func:`splits_steps` says so, the second
half runs on a helper thread. The sums are the same either way, so ``--jobs 1`` and
``--jobs N`` train the same weights. Measured at the CIFAR-10 shape on two cores with AVX-512
(batch 200), an SGD epoch took 1.03-1.79x one read of ``X`` (median 1.41x) over nine runs of
the suite, where copying each batch ahead and multiplying with the copy took 1.47-2.05x
(median 1.86x); see ``benchmarks/README.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from optlab import kernels
from optlab.batches import Batch, gathers_ahead
from optlab.blas_threads import single_threaded
from optlab.components import Array, KernelForm

__all__ = ["StepKernel", "splits_steps"]


def splits_steps(X: Array, batch_size: int) -> bool:
    """Whether :meth:`StepKernel.batches` runs the second half of each step of ``batch_size``
    rows of ``X`` on a helper thread: where a helper thread pays for copying such batches ahead
    (:func:`~optlab.batches.gathers_ahead`: BLAS was given a second thread to lend, and a
    batch has :data:`~optlab.batches.AHEAD_MIN_BYTES` of rows or more)."""
    return gathers_ahead(X, batch_size)


class StepKernel:
    """The data loss and weight gradient of minibatches of a loss with a kernel form.

    Parameters
    ----------
    X : (N, D) array
        The training set; :func:`optlab.kernels.step_fit` must hold for it.
    y : (N,) int array
        Labels in ``0..C-1``.
    n_classes : int
        ``C``.
    form : KernelForm
        The loss.
    """

    def __init__(self, X: Array, y: Array, n_classes: int, form: KernelForm) -> None:
        self.X = X
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        self.n_classes = int(n_classes)
        self.form = form
        self._pool: ThreadPoolExecutor | None = None

    def fits(self, W: Array) -> bool:
        """Whether ``W`` is a (D, C) weight matrix of the training set's dtype."""
        return W.dtype == self.X.dtype and W.shape == (self.X.shape[1], self.n_classes)

    @contextmanager
    def batches(self, indices: Sequence[Array]) -> Iterator[Iterator[Batch]]:
        """The batches of ``indices``, in order, their rows not copied (the steps read them
        in place); BLAS runs on one thread inside the block, and the halves of each step on
        two where a core is free (see the module's docstring).

        Parameters
        ----------
        indices : sequence of (B,) int arrays
            The batches' row indices, e.g. one epoch's shuffled partition of ``range(N)``.
        """
        helper = len(indices) > 0 and splits_steps(self.X, max(len(i) for i in indices))
        with single_threaded():
            stream = (Batch(i, self.y[i], self.X) for i in indices)
            if not helper:
                yield stream
                return
            with ThreadPoolExecutor(1, "optlab-step") as pool:
                self._pool = pool
                try:
                    yield stream
                finally:
                    self._pool = None

    def loss_and_grad(self, W: Array, index: Array) -> tuple[float, Array]:
        """Mean loss over the rows ``X[index]`` and its gradient.

        Parameters
        ----------
        W : (D, C) array
            Of the training set's dtype (see :meth:`fits`).
        index : (B,) int array
            Rows of the training set, each in ``-N..N-1`` (negative ones from the end).

        Returns
        -------
        loss : float
        grad : (D, C) array
            A fresh C-contiguous array of ``W``'s dtype.
        """
        X, y, form = self.X, self.y, self.form
        index = np.ascontiguousarray(index, dtype=np.int64)
        B = int(index.shape[0])
        if B and index.min() < 0:  # counted from the end, as numpy's X[index] counts them
            index = np.where(index < 0, index + X.shape[0], index)
        grad = np.empty((X.shape[1], self.n_classes), X.dtype)
        if B == 0:
            grad.fill(0)
            return 0.0, grad
        Wc = np.ascontiguousarray(W)
        # the halves' transposed gradients (C, D): fresh each call, so that steps may run
        # on several threads at once
        first = np.zeros((self.n_classes, X.shape[1]), X.dtype)
        second = np.zeros_like(first)
        scores = np.empty((B, self.n_classes), X.dtype)
        h = (B + 1) // 2
        pending: Future[float] | None = None
        if self._pool is not None and h < B:
            pending = self._pool.submit(
                kernels.step, second, scores[h:], X, index[h:], y, Wc, form, B
            )
        rest = 0.0
        try:
            total = kernels.step(first, scores[:h], X, index[:h], y, Wc, form, B)
        finally:
            if pending is not None:  # it writes into `second`: wait even if the first failed
                rest = pending.result()
        if pending is None and h < B:
            rest = kernels.step(second, scores[h:], X, index[h:], y, Wc, form, B)
        kernels.add_transposed(grad, first, second)
        return (total + rest) / B, grad
