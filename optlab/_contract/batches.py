"""Minibatches gathered ahead of use (where the backend has no fused step for the run's loss;
a fused step reads its rows in place, see :meth:`optlab._contract.backend.Backend.stepper`).

A minibatch step copies the batch's rows out of ``X`` (a gather: ``X[batch]``, about one
streaming read of ``X`` per epoch, since the rows are shuffled) and then multiplies with them
while they are in cache. The gather does not depend on ``W``, so :func:`minibatches` copies
batch ``k + 1`` on a helper thread while batch ``k`` trains. BLAS is limited to one thread
while the batches are in use (:mod:`optlab._contract.blas_threads`): OpenBLAS gains little from a
second thread on these products, the helper takes that core, and one thread rounds the same whatever
cores a run was given, so the steps of ``--jobs 1`` and ``--jobs N`` are the same.

An SGD epoch takes less time so (benchmarks/README.md, "Measurements behind the code").
Batches smaller than :data:`AHEAD_MIN_BYTES` are gathered in place: handing work to a thread
and back costs tens of microseconds, more than copying a small batch. The batches, and so the
trained weights, are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from optlab._contract.blas_threads import blas_threads, single_threaded
from optlab._contract.components import Array

__all__ = ["AHEAD_MIN_BYTES", "Batch", "gathers_ahead", "minibatches"]

#: Bytes of one batch's rows from which they are gathered ahead (batch 200 of CIFAR-10's 3,073
#: float32 features is 2.4 MB; digits' 64 features, 16 KB at batch 32).
AHEAD_MIN_BYTES = 512 * 1024


@dataclass(frozen=True, eq=False)
class Batch:
    """One minibatch: its row indices, its labels and its rows.

    Attributes
    ----------
    index : (B,) int array
        Row indices into the training set.
    y : (B,) int array
        ``y_train[index]``.
    source : (N, D) array
        The training set the rows come from.
    copied : (B, D) array or None
        ``source[index]`` when it was copied ahead of use; ``None`` for a batch whose step
        reads its rows in place (a backend's fused step).
    X : (B, D) array
        ``source[index]``, a fresh array: ``copied``, or copied on first use.
    """

    index: Array
    y: Array
    source: Array = field(repr=False)
    copied: Array | None = field(default=None, repr=False)

    @cached_property
    def X(self) -> Array:
        return self.copied if self.copied is not None else self.source[self.index]

    def __len__(self) -> int:
        return int(self.index.shape[0])


def gathers_ahead(X: Array, batch_size: int) -> bool:
    """Whether :func:`minibatches` would gather batches of ``batch_size`` rows of ``X`` on a
    helper thread: batches of at least :data:`AHEAD_MIN_BYTES`, and a BLAS with a second
    thread to lend (:func:`~optlab._contract.blas_threads.blas_threads`)."""
    row_bytes = X.shape[1] * X.dtype.itemsize if X.ndim == 2 else 0
    return batch_size * row_bytes >= AHEAD_MIN_BYTES and blas_threads() > 1


@contextmanager
def minibatches(X: Array, y: Array, indices: Sequence[Array]) -> Iterator[Iterator[Batch]]:
    """The batches ``X[i], y[i]`` for ``i`` in ``indices``, in order, each gathered while the
    previous one is in use when :func:`gathers_ahead` says so.

    Parameters
    ----------
    X : (N, D) array
    y : (N,) array
    indices : sequence of (B,) int arrays
        The batches' row indices, e.g. one epoch's shuffled partition of ``range(N)``.

    Yields
    ------
    iterator of Batch
        To be consumed inside the ``with`` block, where BLAS runs on one thread. Leaving the
        block early (an exception, a ``break``) waits for the one gather in flight and
        restores BLAS's thread count.
    """
    ahead = len(indices) > 1 and gathers_ahead(X, max(len(i) for i in indices))
    # single-threaded BLAS either way: OpenBLAS on two threads can round differently, and the
    # steps must not depend on the cores a run was given (--jobs 1 or --jobs N)
    with single_threaded():
        if not ahead:
            yield (Batch(i, y[i], X, X[i]) for i in indices)
            return
        with ThreadPoolExecutor(1, "optlab-gather") as pool:
            yield _ahead(pool, X, y, indices)


def _gather(X: Array, y: Array, index: Array) -> Batch:
    return Batch(index, y[index], X, X[index])


def _ahead(
    pool: ThreadPoolExecutor, X: Array, y: Array, indices: Sequence[Array]
) -> Iterator[Batch]:
    pending: Future[Batch] = pool.submit(_gather, X, y, indices[0])
    for k in range(1, len(indices)):
        batch = pending.result()
        pending = pool.submit(_gather, X, y, indices[k])
        yield batch
    yield pending.result()
