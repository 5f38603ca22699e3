"""The numerical work of training behind one interface, and the numpy/BLAS backend.

A linear classifier's training step needs two products with the data: the scores
``S = X @ W`` and the weight gradient ``dW = X.T @ dS``. A :class:`Backend` computes them;
:class:`~optlab._contract.objective.Objective` and the blocked full-batch pass
(:mod:`optlab._contract.fastpath`) call nothing else for the products. A backend may also offer a
fused minibatch step for a loss it knows (:meth:`Backend.stepper`): scores, the loss's score
gradient and the weight gradient in one pass over rows read in place.

This class is the numpy/BLAS backend the core ships (name ``numpy``): products through BLAS,
with ``W`` padded to widths OpenBLAS handles faster (:func:`score_width`), and
no fused step (minibatches are gathered ahead of use, :mod:`optlab._contract.batches`). Other
backends subclass it, override what they do faster, and are registered by plugins through the
``optlab_register_backends`` hook (the bundled compiled kernels are one, in
``optlab_plugins.compiled``).

Which backend trains a run (:func:`select_backend`): ``OPTLAB_BACKEND`` in the environment if
set, else the spec's ``backend`` key, else ``auto``: of the registered backends (other than
``numpy``) that run here and :meth:`~Backend.accelerates` the run's loss and data, one with a
fused step for the loss, else the first, else ``numpy``. The run's tag ``optlab.backend``
says which one did (:attr:`Backend.label`).

Shapes: ``X`` (n, D) examples, ``W`` (D, C) weights, ``dscores`` (n, C), ``grad_t`` (C, D)
(the weight gradient transposed, the layout in which rows of ``X`` are added cheaply).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import numpy as np

from optlab._contract.components import Array, ComponentKind, ComponentRecord, Loss
from optlab._errors import BackendUnavailable, ComponentError, InputError, PluginError
from optlab._meta import exported

_T = TypeVar("_T")

if TYPE_CHECKING:
    from optlab._contract.registry import Registry

__all__ = [
    "AUTO",
    "ENV_VAR",
    "Backend",
    "BackendRecord",
    "Stepper",
    "forced_backend",
    "requested_backend",
    "score_width",
    "select_backend",
]

#: Environment variable that forces a backend by name (``numpy``, ``compiled``, ``auto``);
#: it wins over the spec's ``backend`` key.
ENV_VAR = "OPTLAB_BACKEND"
#: The setting that lets optlab choose (the default).
AUTO = "auto"


class Stepper(Protocol):
    """Fused minibatch steps of one loss over one training set ``X`` (N, D), its rows read in
    place (see :meth:`Backend.stepper`). The objective uses it as::

        with stepper.session(batch_size, threads):
            for index in batches:  # (B,) row indices
                loss, grad = stepper.loss_and_grad(W, index)
    """

    def fits(self, W: Array) -> bool:
        """Whether ``W`` is a (D, C) weight matrix this stepper takes (shape, dtype)."""

    def session(self, batch_size: int, threads: int) -> AbstractContextManager[None]:
        """The steps of one pass over batches of up to ``batch_size`` rows happen inside this
        block, which may use up to ``threads`` threads (BLAS runs on one meanwhile)."""

    def loss_and_grad(self, W: Array, index: Array) -> tuple[float, Array]:
        """Mean loss over rows ``X[index]`` (``index`` (B,)) and its gradient: a fresh (D, C)
        array of ``W``'s dtype."""


class Backend:
    """The products of training, computed with numpy and BLAS (the ``numpy`` backend).

    Subclasses override the methods they compute faster and keep these as their fallback for
    the shapes and dtypes they do not take. Every method must give the same result as this
    class up to floating-point reassociation (``optlab.testing.check_backend`` checks it).
    """

    #: The registered name (``OPTLAB_BACKEND``, the spec's ``backend`` key): the registry sets
    #: it to the name of the :class:`BackendRecord` that built it.
    name = "numpy"
    #: The plugin that provided it, as messages name it (set when the registry builds it).
    provider = "optlab"

    @property
    def label(self) -> str:
        """What trained a run, as its ``optlab.backend`` tag says it (``numpy``)."""
        return self.name

    def accelerates(self, X: Array, n_classes: int, loss: Loss) -> bool:
        """Whether this backend is faster than ``numpy`` for training ``loss`` on ``X``
        (N, D) with ``n_classes`` classes (``auto`` picks a backend only where it is)."""
        return False

    def scores(self, X: Array, W: Array, out: Array | None = None, *, threads: int = 1) -> Array:
        """The scores ``X @ W``.

        Parameters
        ----------
        X : (n, D) float array
        W : (D, C) float array
        out : (n, C) array, optional
            Where to write them.
        threads : int
            Threads the product may use for its rows (BLAS uses its own).

        Returns
        -------
        (n, C) array
            ``out`` when given.
        """
        return np.matmul(X, W, out=out)

    def add_weight_grad(self, grad_t: Array, dscores: Array, X: Array) -> None:
        """Add ``dscores.T @ X`` to ``grad_t`` in place.

        Parameters
        ----------
        grad_t : (C, D) float array
            The transposed weight gradient to add to.
        dscores : (n, C) float array
            Gradient of the loss with respect to the scores of ``X``.
        X : (n, D) float array
        """
        grad_t += dscores.T @ X

    def weight_grad(self, dscores: Array, X: Array) -> Array:
        """The weight gradient ``X.T @ dscores`` (D, C).

        Parameters
        ----------
        dscores : (n, C) float array
        X : (n, D) float array

        Returns
        -------
        (D, C) array
            C-contiguous, of the dtype of the product.
        """
        # C-contiguous, as W is: the regularizer's gradient added in and the update then stay in
        # one layout; (dS.T @ X).T, a transposed view, made steps up to twice as slow
        # (benchmarks/README.md, "Measurements behind the code")
        return X.T @ dscores

    def score_width(self, X: Array, W: Array) -> int:
        """Columns the blocked pass's scores product should have: ``C``, or ``C`` padded with
        zero columns where this backend's product is faster on the wider ``W``.

        Parameters
        ----------
        X : (n, D) array
        W : (D, C) array
        """
        return score_width(int(W.shape[1]), np.result_type(X.dtype, W.dtype))

    def stepper(self, X: Array, y: Array, n_classes: int, loss: Loss) -> Stepper | None:
        """Fused minibatch steps of ``loss`` over the training set ``X`` (N, D), ``y`` (N,),
        or ``None`` where this backend has none (the ``numpy`` backend never has one: the
        objective gathers each batch's rows and calls ``loss.loss_and_grad``)."""
        return None


class _Named(Backend):
    """A plugin's backend whose faults name it: what one of its methods raises, and scores or
    a weight gradient of the wrong shape or dtype, are a :class:`ComponentError` of kind
    ``backend`` (they failed the run blaming the loss, or ended ``optlab run`` in a
    traceback).

    A third-party backend's (``finite``) NaN or inf where numpy's product of the same inputs is
    finite is one too (it failed the run as diverged, blaming the learning rate, or blamed the
    loss): its scores are checked on every call (one dot product of the (n, C) result with
    itself), and a non-finite gradient, which the objective finds on every step anyway, is
    traced to it by :meth:`blame_gradient`.
    """

    def __init__(self, inner: Backend, *, finite: bool = False) -> None:
        self.inner, self.name, self.provider = inner, inner.name, inner.provider
        #: whether NaN and inf it makes of finite inputs are its fault (not for optlab's own)
        self.finite = finite

    def _fault(self, what: str) -> ComponentError:
        return ComponentError("backend", self.name, self.provider, what)

    def _checked(
        self, what: str, got: object, shape: tuple[int, int], operands: tuple[Array, Array]
    ) -> Array:
        """``got``, a product of ``operands``, when it is an array of ``shape`` ((n, C) for
        scores, (D, C) for a weight gradient) in the operands' dtype."""
        dtype = np.result_type(*operands)
        if not isinstance(got, np.ndarray) or got.shape != shape or got.dtype != dtype:
            found = f"{got.shape} {got.dtype}" if isinstance(got, np.ndarray) else type(got)
            raise self._fault(f"{what} returned {found}, expected {shape} {dtype}")
        return got

    def _non_finite(self, what: str) -> ComponentError:
        return self._fault(
            f"{what} returned NaN or inf for finite inputs (numpy's result of them is finite)"
        )

    def _finite_scores(self, got: Array, X: Array, W: Array) -> Array:
        """``got``, the scores (n, C) of ``X`` (n, D) and ``W`` (D, C), unless it holds NaN or
        inf where numpy's ``X @ W`` does not."""
        # NaN and inf survive the sum of squares; a finite square overflowing is looked at again
        if not self.finite or math.isfinite(np.vdot(got, got)) or np.isfinite(got).all():
            return got
        if np.isfinite(X @ W).all():
            raise self._non_finite("scores")
        return got

    def blame_gradient(self, what: str, W: Array, X: Array, y: Array, loss: Loss) -> None:
        """Raise a fault naming ``what`` (the method that made the data gradient) when numpy's
        data gradient of ``loss`` over ``X`` (n, D), ``y`` (n,) at ``W`` (D, C) is finite:
        called once the gradient it made was not (never on the hot path)."""
        if not self.finite:
            return
        try:
            value, dscores = loss.loss_and_grad(X @ W, y)
        except Exception:  # the loss's fault, which the objective names
            return
        if math.isfinite(value) and np.isfinite(dscores).all() and np.isfinite(X.T @ dscores).all():
            raise self._non_finite(what)

    def _call(self, what: str, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``method(*args, **kwargs)``, whatever it raises a fault naming ``what``."""
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise self._fault(f"{what} raised {exc!r}") from exc

    @property
    def label(self) -> str:
        return self._call("label", lambda: self.inner.label)

    def accelerates(self, X: Array, n_classes: int, loss: Loss) -> bool:
        return bool(self._call("accelerates", self.inner.accelerates, X, n_classes, loss))

    def scores(self, X: Array, W: Array, out: Array | None = None, *, threads: int = 1) -> Array:
        got = self._call("scores", self.inner.scores, X, W, out, threads=threads)
        checked = self._checked("scores", got, (X.shape[0], W.shape[1]), (X, W))
        return self._finite_scores(checked, X, W)

    def add_weight_grad(self, grad_t: Array, dscores: Array, X: Array) -> None:
        self._call("add_weight_grad", self.inner.add_weight_grad, grad_t, dscores, X)

    def weight_grad(self, dscores: Array, X: Array) -> Array:
        got = self._call("weight_grad", self.inner.weight_grad, dscores, X)
        return self._checked("weight_grad", got, (X.shape[1], dscores.shape[1]), (dscores, X))

    def score_width(self, X: Array, W: Array) -> int:
        return int(self._call("score_width", self.inner.score_width, X, W))

    def stepper(self, X: Array, y: Array, n_classes: int, loss: Loss) -> Stepper | None:
        return self._call("stepper", self.inner.stepper, X, y, n_classes, loss)


@dataclass(frozen=True)
class BackendRecord(ComponentRecord[Backend]):
    """A backend a plugin provides (``optlab_register_backends``). Its ``factory`` is called
    with an instance of ``params`` (none by default) and returns the :class:`Backend`, or
    raises :class:`BackendUnavailable` saying why it cannot run here."""

    kind: ClassVar[ComponentKind] = "backend"


def score_width(n_classes: int, dtype: np.dtype[np.floating]) -> int:
    """Columns of the scores product: ``C``, or ``C`` padded with zero columns where faster.

    OpenBLAS's kernels for ``X_b @ W`` with few columns run faster on a width that fills their
    SIMD tiles (``C = 10 -> 16`` in both dtypes, ``C = 3 -> 8`` in float32; nothing from
    ``C >= 16``: benchmarks/README.md, "Measurements behind the code").

    Parameters
    ----------
    n_classes : int
        ``C``.
    dtype : numpy dtype
        Dtype of the product.

    Returns
    -------
    width : int
        ``>= n_classes``.
    """
    if 8 < n_classes < 16:
        return 16
    if dtype == np.float32 and 2 < n_classes < 8:
        return 8
    return n_classes


def requested_backend(spec_setting: str = AUTO) -> str:
    """The backend setting in force: ``$OPTLAB_BACKEND`` if set, else ``spec_setting``."""
    return os.environ.get(ENV_VAR, "").strip().lower() or spec_setting or AUTO


def _build(record: ComponentRecord[Any], registry: Registry) -> Backend:
    """Call a backend record's factory; a fault names the plugin."""
    try:
        backend = record.factory(record.params())
    except BackendUnavailable:
        raise
    except Exception as exc:
        label = registry.label(record.provider)
        raise ComponentError("backend", record.name, label, f"factory raised {exc!r}") from exc
    if not isinstance(backend, Backend):
        raise ComponentError(
            "backend",
            record.name,
            registry.label(record.provider),
            f"factory returned {type(backend).__name__}, expected a subclass of Backend",
        )
    # the name users choose it by (the record's), whatever its class says: in the run's tag
    # (``label``) and messages, as a loss is named by its record alone
    backend.name = record.name
    backend.provider = registry.label(record.provider)
    if type(backend) is Backend:  # numpy's cannot fail
        return backend
    return _Named(backend, finite=not registry.bundled(record.provider))


def select_backend(
    setting: str, registry: Registry, X: Array, y: Array, n_classes: int, loss: Loss
) -> Backend:
    """The backend that trains a run.

    Parameters
    ----------
    setting : str
        ``auto`` or a registered backend's name (:func:`requested_backend` gives it).
    registry : Registry
        The registered backends.
    X : (N, D) array
        The training set.
    y : (N,) int array
        Its labels.
    n_classes : int
        ``C``.
    loss : Loss
        The run's loss object.

    Returns
    -------
    Backend
        With ``auto``: among the registered backends other than ``numpy`` that run here and
        accelerate this loss on this data (in name order), the first with a fused step for
        the loss, else the first, else ``numpy``.

    Raises
    ------
    InputError
        An unknown name, or a backend forced by name that cannot run here (the message says
        why).
    """
    forced = forced_backend(setting, registry)
    if forced is not None:
        return forced
    faster: list[Backend] = []
    for record in registry.records("backend"):
        if record.name == Backend.name:
            continue
        try:
            backend = _build(record, registry)
        except BackendUnavailable:
            continue
        if backend.accelerates(X, n_classes, loss):
            if backend.stepper(X, y, n_classes, loss) is not None:
                return backend  # a fused step for this loss beats faster products alone
            faster.append(backend)
    return faster[0] if faster else Backend()


def forced_backend(setting: str, registry: Registry) -> Backend | None:
    """The backend a setting names (``None`` for ``auto``).

    Raises
    ------
    InputError
        An unknown name, or a backend that cannot run here (the message says why).
    """
    if setting == AUTO:
        return None
    try:
        record = registry.get("backend", setting)
    except PluginError as exc:
        raise InputError(f"{exc} (set by {_where_set()}; 'auto' lets optlab choose)") from None
    try:
        return _build(record, registry)
    except BackendUnavailable as exc:
        raise InputError(
            f"backend '{setting}' cannot run here: {exc} (set by {_where_set()}; "
            "use 'numpy' or 'auto')"
        ) from None


def _where_set() -> str:
    return ENV_VAR if os.environ.get(ENV_VAR, "").strip() else "the spec's 'backend' key"


exported(Backend, BackendRecord)
