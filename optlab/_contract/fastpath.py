"""A cache-blocked full-batch pass: data loss and weight gradient with one read of ``X``.

A full-batch loss and gradient needs two products with the data matrix: the scores
``S = X @ W`` and the weight gradient ``dW = X.T @ dS``. At CIFAR-10 shape (49,000 x 3,073)
``X`` is far larger than any cache, so doing them one after the other streams ``X`` from memory
twice. :func:`blocked_loss_and_grad` walks ``X`` in blocks of rows small enough to stay in
cache, and per block computes the scores, the loss and its score gradient, and the block's
contribution to ``dW`` while the block is still cached: one streaming read of ``X``.

The result equals the straightforward computation up to floating-point reassociation, because
the mean loss over ``N`` rows is the block means weighted by ``n_b / N`` and the gradient of the
mean is the sum of the block gradients scaled the same way.

With ``parts=k`` the blocks are shared out as ``k`` runs of consecutive blocks, and with
``threads=k`` each run has a thread of its own, with single-threaded BLAS
(:mod:`optlab._contract.blas_threads`): faster than one thread calling two-threaded OpenBLAS,
which gains little from threads on these skinny products (benchmarks/README.md, "Measurements
behind the code"). The sums are the same however many threads walk the parts,
and :class:`~optlab.Objective` takes the parts from the machine (:func:`full_batch_parts`), so
results do not depend on the cores a run was given (``--jobs 1`` or ``--jobs N``).

Per block both products go through the run's :class:`~optlab._contract.backend.Backend` (BLAS
releases the GIL, as the compiled kernels do, so the threads run at once), with ``W`` padded to the
width the backend's product handles fastest (:meth:`~optlab._contract.backend.Backend.score_width`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from optlab._contract.backend import Backend
from optlab._contract.blas_threads import single_threaded
from optlab._contract.components import Array

__all__ = [
    "BLOCKED_MIN_BYTES",
    "BLOCK_BYTES",
    "MAX_PARTS",
    "LossAndGrad",
    "ScoreGradCheck",
    "blocked_loss_and_accuracy",
    "blocked_loss_and_grad",
    "default_block_rows",
    "full_batch_parts",
]

#: A loss over a block of scores: ``(S_b (n_b, C), y_b (n_b,)) -> (mean loss, dS_b (n_b, C))``.
LossAndGrad = Callable[[Array, Array], tuple[float, Array]]
#: A loss over a block of scores, without its gradient: ``(S_b, y_b) -> mean loss``.
LossOnly = Callable[[Array, Array], float]
#: One part's share of a pass: ``(mean loss share, dW.T (C, D) share)``.
_Part = tuple[float, Array]
#: Called with ``(dS_b, S_b)`` for every block before ``dS_b`` is used; raises if it is wrong.
ScoreGradCheck = Callable[[object, Array], None]

#: Bytes of ``X`` per block: small blocks pay a per-block cost (Python, loss call, BLAS thread
#: wake-up), large ones leave the cache (benchmarks/README.md, "Measurements behind the code").
BLOCK_BYTES = 8 * 1024 * 1024
#: ``X`` smaller than this stays on the straightforward path, where the blocked pass's padding
#: and copies cost more than they save.
BLOCKED_MIN_BYTES = 16 * 1024 * 1024
#: The most parts :func:`full_batch_parts` gives (and so threads a full-batch pass uses).
MAX_PARTS = 8


def full_batch_parts(cores: int) -> int:
    """Parts of :class:`~optlab.Objective`'s full-batch pass on a machine with ``cores``
    processors: one per core, at least 2 and at most :data:`MAX_PARTS`.

    It depends on the machine only, never on the threads a process was given, so a run's
    numbers are the same with ``--jobs 1`` (the parts walked by up to as many threads as BLAS
    has) and in a ``--jobs N`` worker (one thread walks them all). A thread per part, each
    calling single-threaded BLAS, beats one thread calling multi-threaded OpenBLAS (measured on
    two cores only). With more cores each thread still walks its own share of the rows,
    with no hand-off between threads until the end.
    """
    return max(2, min(MAX_PARTS, int(cores)))


def default_block_rows(n_features: int, itemsize: int, block_bytes: int | None = None) -> int:
    """Rows per block so that one block of ``X`` takes about ``block_bytes``.

    Parameters
    ----------
    n_features : int
        ``D``, the row length of ``X``.
    itemsize : int
        Bytes per element of ``X`` (4 for float32, 8 for float64).
    block_bytes : int or None
        Target size of one block in bytes (default :data:`BLOCK_BYTES`).

    Returns
    -------
    rows : int
        At least 16, a multiple of 16 (SIMD- and BLAS-friendly) when above that.
    """
    budget = BLOCK_BYTES if block_bytes is None else block_bytes
    rows = budget // max(1, n_features * itemsize)
    return max(16, rows - rows % 16)


def blocked_loss_and_grad(
    X: Array,
    y: Array,
    W: Array,
    loss_and_grad: LossAndGrad,
    block_rows: int | None = None,
    *,
    check: ScoreGradCheck | None = None,
    parts: int = 1,
    threads: int = 1,
    backend: Backend | None = None,
) -> tuple[float, Array]:
    """Mean data loss over ``X`` and its gradient with respect to ``W``, reading ``X`` once.

    Parameters
    ----------
    X : (N, D) float array
        Examples, C-contiguous rows (a row slice of such an array is fine).
    y : (N,) int array
        Labels.
    W : (D, C) float array
        Weights; usually of ``X``'s dtype.
    loss_and_grad : callable
        ``(S_b (n_b, C), y_b (n_b,)) -> (mean loss over the block, dS_b (n_b, C))``, e.g. the
        ``loss_and_grad`` method of an :class:`optlab.Loss`.
    block_rows : int or None
        Rows per block; ``None`` picks :func:`default_block_rows` for ``X``. A value of ``N``
        or more does the whole set as one block.
    check : callable or None
        Called as ``check(dS_b, S_b)`` for every block before ``dS_b`` is used (shape and dtype
        checks of the loss's output); it raises to stop.
    parts : int
        The blocks are shared out as this many runs of consecutive blocks (fewer when there are
        fewer blocks), each accumulating its own gradient; the parts' gradients are then summed
        in order. The result depends on ``parts``, never on ``threads``.
    threads : int
        How many parts are walked at once, each by its own thread. BLAS is limited to one
        thread during the pass, however many walk it (see :mod:`optlab._contract.blas_threads`), so
        the products, too, are the same. ``loss_and_grad`` and ``check`` are never called by two
        threads at once.
    backend : Backend, optional
        Computes both products (default: the numpy backend).

    Returns
    -------
    mean_loss : float
        ``(1/N) sum_i L_i``.
    dW : (D, C) array, dtype of ``X @ W``
        Gradient of the mean loss with respect to ``W``.
    """
    n, d = X.shape
    if W.ndim != 2 or W.shape[0] != d:
        raise ValueError(f"W must be ({d}, C) for X of shape {X.shape}; got {W.shape}")
    if y.shape != (n,):
        raise ValueError(f"y must be ({n},) for X of shape {X.shape}; got {y.shape}")
    c = W.shape[1]
    dtype = np.result_type(X.dtype, W.dtype)
    backend = Backend() if backend is None else backend
    rows, bounds, threads, W = _layout(X, W, block_rows, parts, threads, backend)
    walker = _Walker(X, y, W, c, dtype, rows, n, loss_and_grad, check, backend)
    # single-threaded BLAS however many threads walk: OpenBLAS's X @ W on two threads can
    # differ in the last bits from one thread, and the result must not depend on the cores
    with single_threaded():
        if threads == 1:
            results = [walker.walk(bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
        else:
            results = walker.walk_threaded(bounds, threads)
    grad_t = results[0][1]
    for _, part in results[1:]:
        grad_t += part
    return sum(value for value, _ in results), np.ascontiguousarray(grad_t.T)


def _layout(
    X: Array, W: Array, block_rows: int | None, parts: int, threads: int, backend: Backend
) -> tuple[int, list[int], int, Array]:
    """How a blocked pass walks ``X`` (N, D): rows per block, the row bounds of the runs of
    consecutive blocks (``parts``, fewer when there are fewer blocks: the same blocks, hence
    loss calls, for any number of threads), the threads that walk them, and ``W`` (D, C)
    zero-padded to the width the backend's scores product handles fastest."""
    n, d = X.shape
    rows = default_block_rows(d, X.dtype.itemsize) if block_rows is None else int(block_rows)
    if rows < 1:
        raise ValueError(f"block_rows must be at least 1; got {block_rows}")
    rows = min(rows, max(n, 1))
    blocks = -(-n // rows)
    parts = max(1, min(int(parts), blocks))
    bounds = [min(n, (blocks * k // parts) * rows) for k in range(parts + 1)]
    c = W.shape[1]
    width = backend.score_width(X, W)  # OpenBLAS is faster on some padded widths
    if width != c:
        W = np.concatenate([W, np.zeros((d, width - c), dtype=W.dtype)], axis=1)
    return rows, bounds, max(1, min(int(threads), parts)), W


def blocked_loss_and_accuracy(
    X: Array,
    y: Array,
    W: Array,
    loss: LossOnly,
    block_rows: int | None = None,
    *,
    parts: int = 1,
    threads: int = 1,
    backend: Backend | None = None,
) -> tuple[float, int]:
    """Mean data loss over ``X`` and how many rows score their label highest, one block of
    rows at a time: no (N, C) scores array, and the same numbers however many threads walk.

    Parameters
    ----------
    X : (N, D) float array
    y : (N,) int array
    W : (D, C) float array
    loss : callable
        ``(S_b (n_b, C), y_b (n_b,)) -> mean loss over the block`` (e.g. ``Loss.loss``); never
        called by two threads at once, and after the block's predictions are read.
    block_rows, parts, threads, backend
        As for :func:`blocked_loss_and_grad`.

    Returns
    -------
    mean_loss : float
    correct : int
        Rows whose highest score is at their label (the first, on ties).
    """
    n = X.shape[0]
    c = W.shape[1]
    dtype = np.result_type(X.dtype, W.dtype)
    backend = Backend() if backend is None else backend
    rows, bounds, threads, W = _layout(X, W, block_rows, parts, threads, backend)
    width = W.shape[1]
    lock = threading.Lock()
    errors = np.geterr()  # a new thread starts with numpy's default floating-point state

    def walk(k: int) -> tuple[float, int]:
        first, end = bounds[k], bounds[k + 1]
        size = max(0, min(rows, end - first))
        wide = np.empty((size, width), dtype=dtype)
        narrow = wide if width == c else np.empty((size, c), dtype=dtype)
        total, correct = 0.0, 0
        with np.errstate(**errors):
            for start in range(first, end, rows):
                stop = min(start + rows, end)
                scores = backend.scores(X[start:stop], W, out=wide[: stop - start])
                if width != c:
                    scores = narrow[: stop - start]
                    np.copyto(scores, wide[: stop - start, :c])
                labels = y[start:stop]
                correct += int(np.count_nonzero(np.argmax(scores, axis=1) == labels))
                with lock:
                    value = loss(scores, labels)
                total += float(value) * ((stop - start) / n)
        return total, correct

    # single-threaded BLAS, as in blocked_loss_and_grad: the numbers must not depend on cores
    with single_threaded():
        if threads == 1:
            results = [walk(k) for k in range(len(bounds) - 1)]
        else:
            with ThreadPoolExecutor(threads - 1, "optlab-evaluate") as pool:
                others = [pool.submit(walk, k) for k in range(1, len(bounds) - 1)]
                results = [walk(0)] + [future.result() for future in others]
    return sum(value for value, _ in results), sum(hits for _, hits in results)


@dataclass(frozen=True)
class _Walker:
    """One pass's inputs: ``X`` (N, D), ``y`` (N,), ``W`` (D, width) zero-padded to a faster
    width than its ``c`` classes, ``rows`` per block, the loss and its check."""

    X: Array
    y: Array
    W: Array
    c: int
    dtype: np.dtype[Any]
    rows: int
    n: int
    loss_and_grad: LossAndGrad
    check: ScoreGradCheck | None
    backend: Backend

    def walk(self, first: int, end: int, stop: threading.Event | None = None) -> _Part:
        """Rows ``first:end`` in blocks: their share of the mean loss over all ``n`` rows and
        of its gradient, as ``dW.T`` (C, D). Returns early (a partial sum) once ``stop`` is
        set."""
        X, W, c, dtype, backend = self.X, self.W, self.c, self.dtype, self.backend
        d, width = W.shape
        rows = self.rows
        size = max(0, min(rows, end - first))
        wide = np.empty((size, width), dtype=dtype)
        scores = wide if width == c else np.empty((size, c), dtype=dtype)
        dscores = np.empty((size, c), dtype=dtype)
        # accumulate dW.T (C, D) += dS_b.T @ X_b (the backend), X_b read row by row
        grad_t = np.zeros((c, d), dtype=dtype)
        part = np.empty((c, d), dtype=dtype)
        total = 0.0
        for start in range(first, end, rows):
            if stop is not None and stop.is_set():
                break
            stop_row = min(start + rows, end)
            nb = stop_row - start
            Xb = X[start:stop_row]
            Sb = backend.scores(Xb, W, out=wide[:nb])
            if width != c:
                Sb = scores[:nb]
                np.copyto(Sb, wide[:nb, :c])
            value, dSb = self.loss_and_grad(Sb, self.y[start:stop_row])
            if self.check is not None:
                self.check(dSb, Sb)
            weight = nb / self.n
            total += float(value) * weight
            dSw = np.multiply(dSb, dtype.type(weight), out=dscores[:nb])
            if start == first:
                backend.add_weight_grad(grad_t, dSw, Xb)
            else:  # each block summed on its own, then added (less rounding than one long sum)
                part.fill(0)
                backend.add_weight_grad(part, dSw, Xb)
                grad_t += part
        return total, grad_t

    def walk_threaded(self, bounds: list[int], threads: int) -> list[_Part]:
        """Each part ``bounds[k]:bounds[k + 1]`` walked, ``threads`` at once, with the loss
        and check calls serialized; an exception in one part stops the others at their next
        block."""
        lock = threading.Lock()
        stop = threading.Event()
        check = self.check

        def guarded_loss(scores: Array, labels: Array) -> tuple[float, Array]:
            with lock:
                return self.loss_and_grad(scores, labels)

        def guarded_check(dscores: object, scores: Array) -> None:
            assert check is not None
            with lock:
                check(dscores, scores)

        guarded = replace(
            self, loss_and_grad=guarded_loss, check=None if check is None else guarded_check
        )

        errors = np.geterr()  # a new thread starts with numpy's default floating-point state

        def walk(k: int) -> _Part:
            try:
                with np.errstate(**errors):
                    return guarded.walk(bounds[k], bounds[k + 1], stop)
            except BaseException:
                stop.set()
                raise

        with ThreadPoolExecutor(threads - 1, "optlab-fastpath") as pool:
            others = [pool.submit(walk, k) for k in range(1, len(bounds) - 1)]
            first = walk(0)
            return [first] + [future.result() for future in others]
