"""Minibatch steps of a bundled loss in one pass over rows read in place.

For the bundled ``svm`` and ``softmax`` the step kernel computes a minibatch's scores, the
loss's gradient of them and the weight gradient chunk by chunk of rows, straight from the
training set: each row is read from memory once. Copying a batch out and multiplying with it
reads the rows three times (the copy, then each product).

On one core the two products take about as long as reading the rows from memory, so a step is
split in two: each half of the batch goes into its own gradient, and the two are added, first
half first. Inside :meth:`StepKernel.session`, when the objective lends a second thread and a
batch is large enough (:data:`SPLIT_MIN_BYTES`), the second half runs on a helper thread. The
sums are the same either way, so ``--jobs 1`` and ``--jobs N`` train the same weights.
Measured at the CIFAR-10 shape on two cores with AVX-512 (batch 200), an SGD epoch took
1.03-1.79x one read of ``X`` (median 1.41x) over nine runs of the suite, where copying each
batch ahead and multiplying with the copy took 1.47-2.05x (median 1.86x); see
``benchmarks/README.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from optlab import Array

from ._kernelset import KernelSet

__all__ = ["SPLIT_MIN_BYTES", "StepKernel"]

#: Bytes of one batch's rows from which a step's second half runs on a helper thread (batch
#: 200 of CIFAR-10's 3,073 float32 features is 2.4 MB): handing work to a thread and back
#: costs tens of microseconds, more than a small batch's half step.
SPLIT_MIN_BYTES = 512 * 1024

#: The step kernel's code for each loss it computes (``_kernels.c``).
LOSS_CODES = {"hinge": 0, "squared_hinge": 1, "softmax": 2}


class StepKernel:
    """The data loss and weight gradient of minibatches of a loss the step kernel computes.

    Parameters
    ----------
    kernels : KernelSet
        The instruction set's kernels.
    X : (N, D) array
        The training set: C-contiguous float32 or float64.
    y : (N,) int array
        Labels in ``0..C-1``.
    n_classes : int
        ``C``.
    loss : str
        A key of :data:`LOSS_CODES`.
    margin : float
        The hinges' margin (unused by softmax).
    """

    def __init__(
        self,
        kernels: KernelSet,
        X: Array,
        y: Array,
        n_classes: int,
        loss: str,
        margin: float = 1.0,
    ) -> None:
        self.kernels = kernels
        self.X = X
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        self.n_classes = int(n_classes)
        self.loss = loss
        self._code = LOSS_CODES[loss]
        self.margin = float(margin)
        self._pool: ThreadPoolExecutor | None = None

    def fits(self, W: Array) -> bool:
        """Whether ``W`` is a (D, C) weight matrix of the training set's dtype."""
        return W.dtype == self.X.dtype and W.shape == (self.X.shape[1], self.n_classes)

    @contextmanager
    def session(self, batch_size: int, threads: int) -> Iterator[None]:
        """Steps of batches of up to ``batch_size`` rows, with ``threads`` threads to use:
        with two or more and large enough batches, each step's second half runs on a helper
        thread while the first runs on the caller's."""
        row_bytes = self.X.shape[1] * self.X.dtype.itemsize
        if threads < 2 or batch_size * row_bytes < SPLIT_MIN_BYTES:
            yield
            return
        with ThreadPoolExecutor(1, "optlab-step") as pool:
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None

    def _step(self, grad_t: Array, scores: Array, index: Array, W: Array, batch: int) -> float:
        """The step kernel on rows ``X[index]``: adds their part of the mean loss's weight
        gradient to ``grad_t`` (C, D); returns the sum of their losses."""
        return float(
            self.kernels.step(
                grad_t, scores, self.X, index, self.y, W, self._code, self.margin, batch
            )
        )

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
        X = self.X
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
            pending = self._pool.submit(self._step, second, scores[h:], index[h:], Wc, B)
        rest = 0.0
        try:
            total = self._step(first, scores[:h], index[:h], Wc, B)
        finally:
            if pending is not None:  # it writes into `second`: wait even if the first failed
                rest = pending.result()
        if pending is None and h < B:
            rest = self._step(second, scores[h:], index[h:], Wc, B)
        self.kernels.add_transposed(grad, first, second)
        return (total + rest) / B, grad
