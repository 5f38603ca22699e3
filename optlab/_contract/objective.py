"""The training objective: mean data loss over a batch plus the regularizers' penalties.

``L(W) = (1/N) sum_i L_i(x_i W, y_i) + sum_r R_r(W)``, with ``W`` of shape (D, C).

Components are resolved once, when the objective is built; the per-step methods call them
directly and check their outputs cheaply (shape, dtype, finiteness of the reduced gradient), so
a misbehaving plugin fails the run with a :class:`~optlab._errors.ComponentError` that names it.

Its size (about 500 lines) is kept on purpose: the objective's full-batch pass, its minibatch
session and the choices between them (blocked reads, score padding, BLAS threads) depend on
each other, and are read together when the numbers move.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np

from optlab._contract.backend import Backend, Stepper
from optlab._contract.batches import Batch, minibatches
from optlab._contract.blas_threads import blas_threads, cores, single_threaded
from optlab._contract.components import Array, Loss, Regularizer
from optlab._contract.fastpath import (
    BLOCKED_MIN_BYTES,
    blocked_loss_and_accuracy,
    blocked_loss_and_grad,
    full_batch_parts,
)
from optlab._errors import ComponentError
from optlab._meta import exported

__all__ = [
    "SPLIT_MIN_BYTES",
    "SPLIT_MIN_CLASSES",
    "BoundLoss",
    "BoundRegularizer",
    "LossParts",
    "Objective",
]

T = TypeVar("T")

#: A minibatch's products are split into parts from this many classes and this many bytes of
#: the batch's rows on: with fewer classes the products are short and the helper thread that
#: copies the next batch ahead (optlab._contract.batches) keeps the second core busy already
#: (benchmarks/README.md, "Measurements behind the code").
SPLIT_MIN_CLASSES = 32
SPLIT_MIN_BYTES = 512 * 1024


class _SplitProducts:
    """A batch's two products in ``parts`` pieces, walked by ``threads`` threads, each calling
    the backend with BLAS held to one thread (see :data:`SPLIT_MIN_CLASSES`): the scores by
    runs of rows, the weight gradient by runs of features (no piece is summed with another)."""

    def __init__(self, parts: int, threads: int) -> None:
        self.parts = parts
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _SplitProducts:
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads - 1, "optlab-products")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _runs(self, n: int) -> list[slice]:
        bounds = [n * k // self.parts for k in range(self.parts + 1)]
        return [slice(bounds[k], bounds[k + 1]) for k in range(self.parts)]

    def _map(self, fn: Callable[[slice], T], runs: list[slice]) -> list[T]:
        """``fn`` of each run, the first on this thread, the others on the pool's."""
        if self._pool is None:
            return [fn(r) for r in runs]
        others = [self._pool.submit(fn, r) for r in runs[1:]]
        try:
            first = fn(runs[0])
        finally:
            done = [f.result() for f in others]  # wait for them even if the first failed
        return [first, *done]

    def scores(self, backend: Backend, X: Array, W: Array) -> Array:
        """``X @ W`` (B, C), each run of rows by the backend."""
        out = np.empty((X.shape[0], W.shape[1]), np.result_type(X.dtype, W.dtype))
        self._map(lambda r: backend.scores(X[r], W, out[r]), self._runs(X.shape[0]))
        return out

    def weight_grad(self, backend: Backend, dscores: Array, X: Array) -> Array:
        """``X.T @ dscores`` (D, C), each run of features (rows of the result) by the
        backend."""
        out = np.empty((X.shape[1], dscores.shape[1]), np.result_type(X.dtype, dscores.dtype))

        def part(r: slice) -> None:
            out[r] = backend.weight_grad(dscores, X[:, r])

        self._map(part, self._runs(X.shape[1]))
        return out


class LossParts(NamedTuple):
    """The objective's value split into its parts: ``total = data + reg``."""

    total: float
    data: float
    reg: float


@dataclass(frozen=True)
class BoundLoss:
    """A loss object with the name and provider used in error messages."""

    impl: Loss
    name: str
    provider: str = "unknown"


@dataclass(frozen=True)
class BoundRegularizer:
    """A regularizer object with the name and provider used in error messages."""

    impl: Regularizer
    name: str
    provider: str = "unknown"


class Objective:
    """Data loss plus regularization over a training set.

    Parameters
    ----------
    X : (N, D) float array
        Training examples (already preprocessed; the bias column, if any, is last).
    y : (N,) int array
        Labels in ``0..C-1``.
    n_classes : int
        ``C``.
    loss : BoundLoss
    regularizers : sequence of BoundRegularizer
    has_bias : bool
        Whether the last row of ``W`` multiplies a constant-1 bias column; regularizers skip it
        unless their ``include_bias`` is true.
    rng : numpy.random.Generator
        Source of the randomness of input perturbations (dropout).
    backend : Backend, optional
        Computes the products and, where it has one, the fused minibatch step
        (:mod:`optlab.backend`; default: the numpy backend).
    """

    def __init__(
        self,
        X: Array,
        y: Array,
        n_classes: int,
        loss: BoundLoss,
        regularizers: list[BoundRegularizer] | tuple[BoundRegularizer, ...] = (),
        *,
        has_bias: bool = True,
        rng: np.random.Generator | None = None,
        backend: Backend | None = None,
    ) -> None:
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise ValueError(f"X must be (N, D) and y (N,); got {X.shape} and {y.shape}")
        self.X = X
        self.y = y
        self.n_classes = int(n_classes)
        self.loss = loss
        self.regularizers = tuple(regularizers)
        self.has_bias = has_bias
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.backend = backend if backend is not None else Backend()
        # names resolved once: the per-step path iterates over these short tuples only
        self._penalties = tuple(r for r in self.regularizers if r.impl.has_penalty)
        self._projections = tuple(r for r in self.regularizers if r.impl.has_projection)
        self._perturbations = tuple(r for r in self.regularizers if r.impl.has_perturbation)
        self._steps = self._stepper()
        self._split: _SplitProducts | None = None  # inside minibatches(), for large batches

    # ----------------------------------------------------------------------------- shapes
    @property
    def n_examples(self) -> int:
        """``N``, the number of training examples."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """``D``, the number of features (including the bias column)."""
        return int(self.X.shape[1])

    @property
    def dtype(self) -> np.dtype[np.floating]:
        """The dtype of ``X``, which ``W`` and every gradient keep."""
        return self.X.dtype

    @property
    def shape(self) -> tuple[int, int]:
        """The shape of ``W``: ``(D, C)``."""
        return (self.n_features, self.n_classes)

    def _stepper(self) -> Stepper | None:
        """The backend's fused minibatch steps of this loss (none when a regularizer perturbs
        the inputs: the step reads the rows as they are)."""
        if self._perturbations:
            return None
        try:
            return self.backend.stepper(self.X, self.y, self.n_classes, self.loss.impl)
        except ComponentError:  # a plugin's backend names itself
            raise
        except Exception as exc:
            raise ComponentError(
                "backend", self.backend.name, self.backend.provider, f"stepper raised {exc!r}"
            ) from exc

    # ----------------------------------------------------------------------------- parts
    def _penalized(self, W: Array, reg: BoundRegularizer) -> Array:
        return W if (reg.impl.include_bias or not self.has_bias) else W[:-1]

    def reg_value_and_grad(
        self, W: Array, *, with_grad: bool = True, out: Array | None = None
    ) -> tuple[float, Array | None]:
        """Sum of the penalties and, if asked, their gradient (D, C) (``None`` when zero).

        ``out`` (D, C): the gradient is added into it (no new array) and it is returned."""
        total = 0.0
        grad: Array | None = out
        for reg in self._penalties:
            Wr = self._penalized(W, reg)
            try:
                value, g = reg.impl.penalty_and_grad(Wr)
            except Exception as exc:  # a plugin's fault: name it
                raise ComponentError(
                    "regularizer", reg.name, reg.provider, f"raised {exc!r}"
                ) from exc
            total += float(value)
            if with_grad and g is not None:
                self._check_array(g, Wr, "regularizer", reg.name, reg.provider, "gradient")
                if grad is None:
                    grad = np.zeros_like(W)
                grad[: Wr.shape[0]] += g
        return total, grad

    def data_loss_and_grad(self, W: Array, X: Array, y: Array) -> tuple[float, Array]:
        """Mean data loss over ``X`` (B, D) and its gradient with respect to ``W`` (D, C).

        Inside :meth:`minibatches`, a large batch's products are split into the machine's parts
        (:func:`~optlab._contract.fastpath.full_batch_parts`), the scores by rows and the weight
        gradient by features, each part's through the backend on a thread of its own where BLAS
        lends one: the same sums however many threads do them."""
        split = self._split if self._split is not None and len(X) >= self._split.parts else None
        scores = self.backend.scores(X, W) if split is None else split.scores(self.backend, X, W)
        try:
            value, dscores = self.loss.impl.loss_and_grad(scores, y)
        except Exception as exc:
            raise ComponentError(
                "loss", self.loss.name, self.loss.provider, f"raised {exc!r}"
            ) from exc
        self._check_array(
            dscores, scores, "loss", self.loss.name, self.loss.provider, "score gradient"
        )
        value = float(value)
        if not math.isfinite(value) and np.isfinite(scores).all():
            # finite scores cannot diverge a loss: the component is at fault, not the run
            raise ComponentError(
                "loss",
                self.loss.name,
                self.loss.provider,
                f"returned a non-finite loss ({value}) for finite scores",
            )
        if split is not None:
            return value, split.weight_grad(self.backend, dscores, X)
        return value, self.backend.weight_grad(dscores, X)

    def _blocked_data_loss_and_grad(self, W: Array) -> tuple[float, Array]:
        """:meth:`data_loss_and_grad` on the training set, one block of rows at a time."""
        loss = self.loss

        def loss_and_grad(scores: Array, y: Array) -> tuple[float, Array]:
            try:
                return loss.impl.loss_and_grad(scores, y)
            except Exception as exc:
                raise ComponentError("loss", loss.name, loss.provider, f"raised {exc!r}") from exc

        def check(dscores: object, scores: Array) -> None:
            self._check_array(dscores, scores, "loss", loss.name, loss.provider, "score gradient")

        parts = full_batch_parts(cores())
        return blocked_loss_and_grad(
            self.X,
            self.y,
            W,
            loss_and_grad,
            check=check,
            parts=parts,
            threads=min(blas_threads(), parts),
            backend=self.backend,
        )

    def data_loss(self, W: Array, X: Array | None = None, y: Array | None = None) -> float:
        """Mean data loss over ``X`` (default: the training set), without the gradient."""
        X = self.X if X is None else X
        y = self.y if y is None else y
        scores = self.backend.scores(X, W, threads=self._score_threads(X))
        try:
            return float(self.loss.impl.loss(scores, y))
        except Exception as exc:
            raise ComponentError(
                "loss", self.loss.name, self.loss.provider, f"raised {exc!r}"
            ) from exc

    # ----------------------------------------------------------------------------- public
    def value(self, W: Array) -> LossParts:
        """The full objective on the whole training set (no perturbation)."""
        data = self.data_loss(W)
        reg, _ = self.reg_value_and_grad(W, with_grad=False)
        return LossParts(data + reg, data, reg)

    def minibatches(self, indices: Sequence[Array]) -> AbstractContextManager[Iterator[Batch]]:
        """The minibatches of ``indices``, for :meth:`value_and_grad`. Where the backend has a
        fused step for this loss, each batch's rows are read in place by it (with a second
        thread where a core is free); otherwise each batch's rows are copied, while the
        previous one trains where that is faster (:mod:`optlab._contract.batches`). BLAS runs on one
        thread inside the block either way, so ``--jobs 1`` and ``--jobs N`` train alike::

            with objective.minibatches(batches) as stream:
                for batch in stream:
                    parts, grad = objective.value_and_grad(W, batch)

        Parameters
        ----------
        indices : sequence of (B,) int arrays
            Row indices of each batch, in training order.

        Returns
        -------
        context manager of an iterator of Batch
            Consume the iterator inside the ``with`` block.
        """
        if self._steps is not None:
            return self._stepped(self._steps, indices)
        return self._gathered(indices)

    @contextmanager
    def _gathered(self, indices: Sequence[Array]) -> Iterator[Iterator[Batch]]:
        """The batches of ``indices``, copied (:mod:`optlab._contract.batches`); a large batch's
        products split into parts (see :meth:`data_loss_and_grad`), walked by as many threads as
        BLAS was given (decided before BLAS is held to one thread)."""
        threads = blas_threads()
        size = max((len(i) for i in indices), default=0)
        split = (
            self.n_classes >= SPLIT_MIN_CLASSES
            and size * self.X.shape[1] * self.X.dtype.itemsize >= SPLIT_MIN_BYTES
        )
        with minibatches(self.X, self.y, indices) as stream:
            if not split:
                yield stream
                return
            parts = full_batch_parts(cores())
            with _SplitProducts(parts, min(threads, parts)) as self._split:
                try:
                    yield stream
                finally:
                    self._split = None

    @contextmanager
    def _stepped(self, steps: Stepper, indices: Sequence[Array]) -> Iterator[Iterator[Batch]]:
        """The batches of ``indices`` for the backend's fused step (rows not copied)."""
        threads = blas_threads()  # what the steps may use, before BLAS is held to one
        size = max((len(i) for i in indices), default=0)
        with single_threaded(), steps.session(size, threads):
            yield (Batch(i, self.y[i], self.X) for i in indices)

    def value_and_grad(
        self, W: Array, batch: Array | Batch | None = None
    ) -> tuple[LossParts, Array]:
        """Objective and gradient on the whole training set or on a batch.

        Parameters
        ----------
        W : (D, C) array
        batch : (B,) int array, Batch or None
            The minibatch, as row indices or as a :class:`~optlab._contract.batches.Batch` from
            :meth:`minibatches`; ``None`` for the full training set.

        Returns
        -------
        parts : LossParts
        grad : (D, C) array, dtype of ``W``
        """
        # the rows the data gradient is of (X[rows], y[rows] when rows is not None) and the
        # backend's method that made it: a third-party backend's NaN is traced to it
        X, y, rows = self.X, self.y, None
        if batch is None and not self._perturbations and self.X.nbytes >= BLOCKED_MIN_BYTES:
            # large full batch: one cache-blocked read of X (optlab._contract.fastpath)
            data, grad = self._blocked_data_loss_and_grad(W)
            made_by = "add_weight_grad"
        elif (rows := self._in_place_rows(W, batch)) is not None:
            # a minibatch of the backend's fused step, its rows read in place
            assert self._steps is not None
            data, grad = self._steps.loss_and_grad(W, rows)
            made_by = "stepper's loss_and_grad"
            if not math.isfinite(data):  # its loss, or a divergence the monitor reports
                self._blame_backend(made_by, W, X[rows], y[rows])
        else:
            if batch is None:
                X, y = self.X, self.y
            elif isinstance(batch, Batch):
                X, y = batch.X, batch.y
            else:
                X, y = self.X[batch], self.y[batch]
            X, made_by = self.perturbed(X), "weight_grad"
            data, grad = self.data_loss_and_grad(W, X, y)
        reg_value, _ = self.reg_value_and_grad(W, out=grad)
        if grad.dtype != W.dtype:
            grad = grad.astype(W.dtype, copy=False)
        # a non-finite loss is divergence, judged by the monitor; a finite loss with a
        # non-finite gradient is a component's fault: name the one whose gradient it is (a
        # finite sum means every element is finite: the sum is the cheap test)
        if (
            math.isfinite(data)
            and math.isfinite(reg_value)
            and not math.isfinite(float(grad.sum()))
            and not np.isfinite(grad).all()
        ):
            if rows is not None:
                X, y = X[rows], y[rows]
            self.blame_non_finite_gradient(W, (made_by, X, y))
        return LossParts(data + reg_value, data, reg_value), grad

    def _blame_backend(self, made_by: str, W: Array, X: Array, y: Array) -> None:
        """Raise a fault naming a third-party backend's ``made_by`` when numpy's data loss
        and gradient over ``X`` (n, D), ``y`` (n,) at ``W`` (D, C) are finite (called once
        the backend's were not)."""
        blame = getattr(self.backend, "blame_gradient", None)
        if blame is not None:
            blame(made_by, W, X, y, self.loss.impl)

    def perturbed(self, X: Array) -> Array:
        """The examples ``X`` (B, D) as a gradient step sees them: each regularizer's input
        perturbation (dropout) applied in turn, drawn from :attr:`rng` (``X`` itself when no
        regularizer perturbs). The bias column (the last, when :attr:`has_bias`) comes out as
        it went in unless the regularizer's ``include_bias`` is true, as the bias row of ``W``
        is left out of penalties. A fault names the regularizer (not the optimizer or loss it
        would break)."""
        for reg in self._perturbations:
            try:
                out = reg.impl.perturb_inputs(X, self.rng)
            except Exception as exc:
                fault = f"raised {exc!r}"
                raise ComponentError("regularizer", reg.name, reg.provider, fault) from exc
            self._check_array(out, X, "regularizer", reg.name, reg.provider, "perturbed batch")
            if self.has_bias and not reg.impl.include_bias and out is not X:
                if not out.flags.writeable:
                    out = out.copy()
                out[:, -1] = X[:, -1]
            X = out
        return X

    def _in_place_rows(self, W: Array, batch: Array | Batch | None) -> Array | None:
        """The row indices of ``batch`` when the backend's fused step takes it (else
        ``None``): integer indices into this training set, ``W`` of its shape and dtype."""
        if batch is None or self._steps is None or not self._steps.fits(W):
            return None
        if isinstance(batch, Batch):
            return batch.index if batch.source is self.X else None
        index = np.asarray(batch)
        return index if index.ndim == 1 and index.dtype.kind in "iu" else None

    def blame_non_finite_gradient(
        self, W: Array, made: tuple[str, Array, Array] | None = None
    ) -> None:
        """Raise a :class:`ComponentError` naming the component whose gradient is not finite
        (only called once a non-finite total gradient was seen: this path is never hot).

        ``made``: the backend's method that made the data gradient and its rows ``X`` (n, D)
        and ``y`` (n,), to name a third-party backend (before the loss) when numpy's is
        finite."""
        for reg in self._penalties:
            _, g = reg.impl.penalty_and_grad(self._penalized(W, reg))
            if g is not None and not np.isfinite(g).all():
                raise ComponentError(
                    "regularizer", reg.name, reg.provider, "returned a non-finite gradient"
                )
        if made is not None:
            self._blame_backend(made[0], W, made[1], made[2])
        raise ComponentError(
            "loss", self.loss.name, self.loss.provider, "returned a non-finite gradient"
        )

    def project(self, W: Array) -> None:
        """Apply every regularizer's projection (max norm) to ``W`` in place."""
        for reg in self._projections:
            Wr = self._penalized(W, reg)
            try:
                reg.impl.project(Wr)
            except Exception as exc:
                raise ComponentError(
                    "regularizer", reg.name, reg.provider, f"raised {exc!r}"
                ) from exc

    def predict(self, W: Array, X: Array) -> Array:
        """Predicted labels (M,) for examples ``X`` (M, D)."""
        scores = self.backend.scores(X, W, threads=self._score_threads(X))
        return np.asarray(np.argmax(scores, axis=1))

    @staticmethod
    def _score_threads(X: Array) -> int:
        """Threads for the scores of all of ``X`` (without a gradient): one per core, as many
        as BLAS was given, when ``X`` is as large as the blocked pass's (otherwise one)."""
        if X.nbytes < BLOCKED_MIN_BYTES:
            return 1
        return min(blas_threads(), full_batch_parts(cores()))

    def value_and_accuracy(self, W: Array) -> tuple[LossParts, float]:
        """The full objective on the whole training set (as :meth:`value`) and the training
        accuracy (as :meth:`accuracy`), from the same scores ``X @ W``: what an evaluation point
        measures, for the price of the accuracy alone plus the loss over the scores. A training
        set as large as the blocked pass's is walked a block of rows at a time on the machine's
        parts (:func:`~optlab._contract.fastpath.blocked_loss_and_accuracy`): the scores and the
        loss's temporaries stay in cache, and the numbers do not depend on the threads."""
        n = self.X.shape[0]
        if n == 0:
            return self.value(W), float("nan")
        if self.X.nbytes >= BLOCKED_MIN_BYTES:
            parts = full_batch_parts(cores())
            data, correct = blocked_loss_and_accuracy(
                self.X,
                self.y,
                W,
                self._loss_value,
                parts=parts,
                threads=min(blas_threads(), parts),
                backend=self.backend,
            )
            accuracy = correct / n
        else:
            scores = self.backend.scores(self.X, W, threads=self._score_threads(self.X))
            accuracy = float(np.mean(np.argmax(scores, axis=1) == self.y))  # before the loss
            data = self._loss_value(scores, self.y)
        reg, _ = self.reg_value_and_grad(W, with_grad=False)
        return LossParts(data + reg, data, reg), accuracy

    def _loss_value(self, scores: Array, y: Array) -> float:
        """The loss's mean over ``scores`` (n, C); a fault of the loss names it."""
        try:
            return float(self.loss.impl.loss(scores, y))
        except Exception as exc:
            raise ComponentError(
                "loss", self.loss.name, self.loss.provider, f"raised {exc!r}"
            ) from exc

    def accuracy(self, W: Array, X: Array, y: Array) -> float:
        """Fraction of ``X`` (M, D) classified as ``y`` (M,); ``nan`` when ``M == 0``."""
        if X.shape[0] == 0:
            return float("nan")
        return float(np.mean(self.predict(W, X) == y))

    # ----------------------------------------------------------------------------- checks
    @staticmethod
    def _check_array(
        got: object, like: Array, kind: str, name: str, provider: str, what: str
    ) -> None:
        if not isinstance(got, np.ndarray):
            raise ComponentError(
                kind, name, provider, f"{what} is {type(got).__name__}, not an array"
            )
        if got.shape != like.shape:
            raise ComponentError(
                kind, name, provider, f"{what} has shape {got.shape}, expected {like.shape}"
            )
        if got.dtype != like.dtype:
            raise ComponentError(
                kind, name, provider, f"{what} has dtype {got.dtype}, expected {like.dtype}"
            )


exported(LossParts, Objective)
