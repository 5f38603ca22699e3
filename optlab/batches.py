"""Minibatches, their rows copied out of the training set, or read where they are.

A minibatch step reads the batch's rows of ``X`` (about one streaming read of ``X`` per
epoch, since the rows are shuffled) and multiplies with them. Two ways, both giving the same
batches in the same order:

- **In place** (``in_place=True``, which :meth:`optlab.Objective.minibatches` asks for when the
  compiled kernels of :mod:`optlab.kernels` take its ``X``): the kernels read the rows
  ``X[index]`` where they are, and nothing is copied; a :class:`Batch` copies its rows only if
  ``batch.X`` is read. At the CIFAR-10 shape (batch 200) this was the fastest way measured,
  ahead of copying on a helper thread and of reading the next batch into cache on one.
- **Copied** (``X[index]``): large batches on a helper thread while the previous one trains,
  small ones in place by the consumer. "Large" is :data:`AHEAD_MIN_BYTES` of rows, with a BLAS
  that has a second thread to lend (:func:`gathers_ahead`): handing work to a thread and back
  costs tens of microseconds, more than copying a small batch. Measured at the CIFAR-10 shape
  on two cores with OpenBLAS's products, an SGD epoch took 10-20% less time copying ahead.

BLAS is limited to one thread while the batches are in use (:mod:`optlab.blas_threads`):
OpenBLAS gains little from a second thread on these products, a helper takes that core, and
one thread rounds the same whatever cores a run was given, so the steps of ``--jobs 1`` and
``--jobs N`` are the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from optlab.blas_threads import blas_threads, single_threaded
from optlab.components import Array

__all__ = ["AHEAD_MIN_BYTES", "Batch", "gathers_ahead", "minibatches"]

#: Bytes of one batch's rows from which they are gathered ahead (batch 200 of CIFAR-10's 3,073
#: float32 features is 2.4 MB; digits' 64 features, 16 KB at batch 32).
AHEAD_MIN_BYTES = 512 * 1024


class Batch:
    """One minibatch of the training set.

    Parameters
    ----------
    index : (B,) int array
        Row indices into the training set.
    X : (B, D) array or None
        The rows ``X_train[index]``; ``None`` to leave them in ``source`` until read.
    y : (B,) int array
        ``y_train[index]``.
    source : (N, D) array or None
        The training set ``X_train``, when ``X`` is ``None``.

    Attributes
    ----------
    index, y
        As given.
    X : (B, D) array
        ``X_train[index]``, a fresh array: copied out of ``source`` when first read if the
        batch was made without it.
    source : (N, D) array or None
        The training set while the rows have not been copied out of it (the objective's kernels
        then read them there); ``None`` once they have, or if they were given.
    """

    __slots__ = ("_X", "index", "source", "y")

    def __init__(
        self, index: Array, X: Array | None, y: Array, *, source: Array | None = None
    ) -> None:
        if X is None and source is None:
            raise ValueError("Batch needs its rows X or the source X_train they are rows of")
        self.index = index
        self.y = y
        self._X = X
        self.source = source if X is None else None

    @property
    def X(self) -> Array:
        if self._X is None:
            assert self.source is not None
            self._X = self.source[self.index]
            self.source = None
        return self._X

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __repr__(self) -> str:
        where = "in place" if self.source is not None else "copied"
        return f"Batch({len(self)} rows, {where})"


def gathers_ahead(X: Array, batch_size: int) -> bool:
    """Whether :func:`minibatches` would gather batches of ``batch_size`` rows of ``X`` on a
    helper thread: batches of at least :data:`AHEAD_MIN_BYTES`, and a BLAS with a second
    thread to lend (:func:`~optlab.blas_threads.blas_threads`)."""
    row_bytes = X.shape[1] * X.dtype.itemsize if X.ndim == 2 else 0
    return batch_size * row_bytes >= AHEAD_MIN_BYTES and blas_threads() > 1


@contextmanager
def minibatches(
    X: Array, y: Array, indices: Sequence[Array], *, in_place: bool = False
) -> Iterator[Iterator[Batch]]:
    """The batches of ``X[i], y[i]`` for ``i`` in ``indices``, in order; large batches copied
    while the previous one is in use (:func:`gathers_ahead`).

    Parameters
    ----------
    X : (N, D) array
    y : (N,) array
    indices : sequence of (B,) int arrays
        The batches' row indices, e.g. one epoch's shuffled partition of ``range(N)``.
    in_place : bool
        Leave the rows in ``X`` (``Batch.source``) until ``batch.X`` is read, for consumers
        that read rows in place (:func:`optlab.kernels.rows_fit`); no helper thread. Otherwise
        every batch's rows are copied.

    Yields
    ------
    iterator of Batch
        To be consumed inside the ``with`` block, where BLAS runs on one thread. Leaving the
        block early (an exception, a ``break``) waits for the one batch in flight and
        restores BLAS's thread count.
    """
    ahead = not in_place and len(indices) > 1 and gathers_ahead(X, max(len(i) for i in indices))
    # single-threaded BLAS either way: OpenBLAS on two threads can round differently, and the
    # steps must not depend on the cores a run was given (--jobs 1 or --jobs N)
    with single_threaded():
        if in_place:
            yield (Batch(i, None, y[i], source=X) for i in indices)
        elif ahead:
            with ThreadPoolExecutor(1, "optlab-gather") as pool:
                yield _ahead(pool, X, y, indices)
        else:
            yield (Batch(i, X[i], y[i]) for i in indices)


def _gather(X: Array, y: Array, index: Array) -> Batch:
    return Batch(index, X[index], y[index])


def _ahead(
    pool: ThreadPoolExecutor, X: Array, y: Array, indices: Sequence[Array]
) -> Iterator[Batch]:
    pending: Future[Batch] = pool.submit(_gather, X, y, indices[0])
    for k in range(1, len(indices)):
        batch = pending.result()
        pending = pool.submit(_gather, X, y, indices[k])
        yield batch
    yield pending.result()
