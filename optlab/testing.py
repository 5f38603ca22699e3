"""Conformance checks and test doubles for plugin authors (and for optlab's own components).

One line in a plugin's test suite checks a component the way optlab's loop will use it::

    from optlab.testing import check_loss
    from my_plugin import optlab_register_losses

    def test_my_loss():
        check_loss(optlab_register_losses()[0])

Each ``check_*`` takes a record (its factory is called with the params model's defaults, or
with ``params`` overrides) or an already built component, and raises :class:`AssertionError`
naming the component and the fault. What is checked:

- :func:`check_loss`: output types, shapes and dtypes (float32 and float64 in, same out),
  finite values (also for scores of 1e3), inputs left unmodified, ``loss`` agreeing with
  ``loss_and_grad``, the gradient against centered finite differences in float64, float32
  agreeing with float64, the loss being a mean of per-example terms (a batch repeated, a
  batch in two parts), and the declared initial loss at scores of about 0.
- :func:`check_regularizer`: the same for the penalty; a projection that changes a random ``W``
  of scale 1e6 in place (also through a view such as ``W[:-1]``), keeps shape and dtype and is
  idempotent; an input perturbation that keeps shape and dtype,
  leaves its input alone and is reproducible from the generator; finite results at edge
  inputs (all zeros, a zero row or column, tiny weights); ``include_bias`` passed on by the
  factory.
- :func:`check_dataset`: what ``load(rng)`` returns is accepted by optlab (labels, class
  names, shapes, finite features, image shape), two classes at least, the same data for the
  same seed, and no use of the global random state; a ``shape(rng)`` gives the sizes ``load``
  gives.
- :func:`check_optimizer`: on a small convex softmax problem, in float32 and float64, the
  weights come back with the shape and dtype of ``W0`` (unmodified), finite and with a lower
  objective; the monitor saw steps and an evaluation; the same seed gives the same weights;
  a max-norm-like constraint holds at the end (the optimizer projects).
- :func:`check_backend`: a backend's products (also into ``out`` and on several threads) and
  its fused steps agree with the numpy backend's to rounding and leave their inputs alone.

Also here: :class:`RecordingMonitor`, a :class:`~optlab.Monitor` that only records, and
:func:`register_plugin`, a context manager that registers a plugin for the duration of a test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from optlab._contract.backend import Backend
from optlab._contract.components import Array, ComponentRecord, Loss, Monitor, Regularizer
from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
from optlab._contract.optimizer import Optimizer
from optlab._contract.plugin_manager import get_registry, registered_plugin
from optlab._errors import BackendUnavailable
from optlab._meta import exported
from optlab._training.checks import probe_gradient, relative_error

__all__ = [
    "GRADIENT_TOLERANCE",
    "Evaluation",
    "RecordingMonitor",
    "Step",
    "check_backend",
    "check_dataset",
    "check_loss",
    "check_optimizer",
    "check_regularizer",
    "get_registry",
    "register_plugin",
    "toy_objective",
]

#: largest relative error allowed between an analytic gradient and float64 finite differences
#: on the small, smooth problems used here (the course notes call < 1e-7 good)
GRADIENT_TOLERANCE = 1e-5

#: register a plugin (module or object with hook implementations) inside a ``with`` block
register_plugin = registered_plugin
exported(get_registry, registered_plugin, module=__name__)

_DTYPES = (np.float32, np.float64)


# --------------------------------------------------------------------------------------------
# Test doubles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One :meth:`Monitor.step` call."""

    examples: int
    loss: float
    data_loss: float
    reg_loss: float


@dataclass(frozen=True)
class Evaluation:
    """One :meth:`Monitor.evaluate` call, with a copy of ``W``."""

    epoch: float
    W: Array


@dataclass
class RecordingMonitor(Monitor):
    """A :class:`~optlab.Monitor` that records every step and evaluation and does nothing else.

    Attributes
    ----------
    steps : list of Step
    evaluations : list of Evaluation
    """

    steps: list[Step] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)

    def step(self, examples: int, loss: float, data_loss: float, reg_loss: float) -> None:
        self.steps.append(Step(examples, loss, data_loss, reg_loss))

    def evaluate(self, epoch: float, W: Array) -> None:
        self.evaluations.append(Evaluation(float(epoch), np.array(W, copy=True)))

    @property
    def examples(self) -> int:
        """Examples processed over all steps."""
        return sum(s.examples for s in self.steps)

    @property
    def losses(self) -> list[float]:
        """The loss of every step, in order."""
        return [s.loss for s in self.steps]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _fail(kind: str, name: str, fault: str) -> AssertionError:
    return AssertionError(f"{kind} '{name}': {fault}")


def _build(
    component: Any, interface: type[Any], kind: str, params: Mapping[str, Any] | None
) -> tuple[Any, str]:
    """The component object and its name, from a record or an object."""
    if isinstance(component, ComponentRecord):
        name = component.name
        try:
            model = component.params(**dict(params or {}))
            obj = component.factory(model)
        except Exception as exc:
            fault = f"factory failed with its params {params or {}}: {exc!r}"
            raise _fail(kind, name, fault) from exc
    else:
        if params:
            raise TypeError("params overrides need a record, not a built component")
        obj, name = component, type(component).__name__
    if not isinstance(obj, interface):
        raise _fail(
            kind, name, f"factory returned {type(obj).__name__}, not a {interface.__name__}"
        )
    return obj, name


def _check_array(kind: str, name: str, what: str, got: object, shape: Any, dtype: Any) -> Array:
    if not isinstance(got, np.ndarray):
        raise _fail(kind, name, f"{what} is {type(got).__name__}, not a numpy array")
    if got.shape != tuple(shape):
        raise _fail(kind, name, f"{what} has shape {got.shape}, expected {tuple(shape)}")
    if got.dtype != np.dtype(dtype):
        raise _fail(kind, name, f"{what} has dtype {got.dtype}, expected {np.dtype(dtype)}")
    if not np.all(np.isfinite(got)):
        raise _fail(kind, name, f"{what} has non-finite values")
    return got


def _check_scalar(kind: str, name: str, what: str, got: object) -> float:
    try:
        value = float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _fail(kind, name, f"{what} is {type(got).__name__}, not a number") from None
    if not math.isfinite(value):
        raise _fail(kind, name, f"{what} is not finite ({value})")
    return value


def _check_gradient(
    kind: str,
    name: str,
    f: Callable[[Array], float],
    point: Array,
    analytic: Array,
) -> None:
    """Compare ``analytic`` with finite differences of ``f`` at ``point`` (float64)."""
    coords = np.array(list(np.ndindex(point.shape)))
    centered, kinks = probe_gradient(f, point, coords, kink_tolerance=1e-4)
    smooth = ~kinks
    if smooth.sum() < max(1, len(coords) // 2):
        raise _fail(kind, name, f"{kinks.sum()} of {len(coords)} coordinates sit at kinks")
    a = analytic.reshape(-1)[smooth]
    errors = relative_error(a, centered[smooth])
    worst = int(np.argmax(errors))
    if errors[worst] > GRADIENT_TOLERANCE:
        where = tuple(int(i) for i in coords[smooth][worst])
        raise _fail(
            kind,
            name,
            f"gradient does not match finite differences: relative error {errors[worst]:.2e} "
            f"at {where} (analytic {a[worst]:.6g}, numeric {centered[smooth][worst]:.6g}); "
            f"allowed {GRADIENT_TOLERANCE:g}",
        )


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def check_loss(component: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """Check a loss (a :class:`~optlab.LossRecord` or a :class:`~optlab.Loss`).

    Raises
    ------
    AssertionError
        Naming the loss and what is wrong.
    """
    loss: Loss
    loss, name = _build(component, Loss, "loss", params)
    kind = "loss"
    rng = np.random.default_rng(20240)
    N, C = 9, 4
    y = np.concatenate([np.arange(C), rng.integers(0, C, N - C)]).astype(np.int64)
    base = 2.0 * rng.standard_normal((N, C))

    results: dict[Any, tuple[float, Array]] = {}
    for dtype in _DTYPES:
        for scale in (1.0, 1e3):
            scores = (scale * base).astype(dtype)
            before = scores.copy()
            try:
                out = loss.loss_and_grad(scores, y)
                only = loss.loss(scores, y)
            except Exception as exc:
                raise _fail(kind, name, f"raised {exc!r} on {np.dtype(dtype)} scores") from exc
            what = f"loss_and_grad on {np.dtype(dtype)} scores of scale {scale:g}"
            if not (isinstance(out, tuple) and len(out) == 2):
                raise _fail(kind, name, f"{what} returned {type(out).__name__}, not (loss, grad)")
            value = _check_scalar(kind, name, f"the loss value of {what}", out[0])
            grad = _check_array(kind, name, f"the score gradient of {what}", out[1], (N, C), dtype)
            if not np.array_equal(scores, before):
                raise _fail(kind, name, f"{what} modified its input scores")
            rtol = 1e-4 if dtype == np.float32 else 1e-10
            if not math.isclose(_check_scalar(kind, name, "loss()", only), value, rel_tol=rtol):
                raise _fail(kind, name, f"loss() gives {only}, loss_and_grad() gives {value}")
            if scale == 1.0:
                results[dtype] = (value, grad)

    v64, g64 = results[np.float64]
    v32, g32 = results[np.float32]
    if not math.isclose(v32, v64, rel_tol=1e-4, abs_tol=1e-6):
        raise _fail(kind, name, f"float32 loss {v32} differs from float64 loss {v64}")
    if not np.allclose(g32, g64, rtol=1e-3, atol=1e-5):
        raise _fail(kind, name, "float32 gradient differs from the float64 gradient")

    scores64 = base.astype(np.float64)
    _check_gradient(kind, name, lambda S: loss.loss_and_grad(S, y)[0], scores64, g64)
    _check_mean(loss, name, scores64, y, v64)

    expected = loss.expected_initial_loss(C)
    if expected is not None:
        tiny = 1e-6 * rng.standard_normal((N, C))
        got = loss.loss(tiny, y)
        if not math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-6):
            raise _fail(
                kind,
                name,
                f"expected_initial_loss({C}) is {expected}, but the loss at scores of about 0 "
                f"is {got}",
            )


def _check_mean(loss: Loss, name: str, scores: Array, y: Array, value: float) -> None:
    """The loss of a batch is the mean of per-example terms: twice the batch gives the same
    loss (a sum would double), and the size-weighted mean of two parts' losses is the whole's
    (the full-batch pass computes a large training set in blocks of rows and relies on it)."""
    twice = loss.loss_and_grad(np.concatenate([scores, scores]), np.concatenate([y, y]))[0]
    if not math.isclose(float(twice), value, rel_tol=1e-9, abs_tol=1e-12):
        ratio = float(twice) / value if value else float("nan")
        raise _fail(
            "loss",
            name,
            f"the loss of a batch repeated twice is {float(twice):.6g}, not the batch's "
            f"{value:.6g} ({ratio:.3g}x): the loss must be the mean over the batch, "
            "(1/N) sum_i L_i, not a sum",
        )
    k = len(y) // 3
    first = float(loss.loss_and_grad(scores[:k], y[:k])[0])
    rest = float(loss.loss_and_grad(scores[k:], y[k:])[0])
    weighted = (k * first + (len(y) - k) * rest) / len(y)
    if not math.isclose(weighted, value, rel_tol=1e-9, abs_tol=1e-12):
        raise _fail(
            "loss",
            name,
            f"the losses of the first {k} and the other {len(y) - k} examples weigh up to "
            f"{weighted:.6g}, not the whole batch's {value:.6g}: the loss must be a mean of "
            "per-example terms L_i (a large training set is computed in blocks of rows)",
        )


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def check_dataset(component: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """Check a dataset (a :class:`~optlab.DatasetRecord` or a :class:`~optlab.DatasetSource`).

    - ``load(rng)`` returns an :class:`~optlab.RawDataset` that optlab accepts: class names,
      integer labels in ``0..C-1``, numeric finite features, matching shapes, both parts of a
      test split or neither, an ``image_shape`` that holds a row's features;
    - at least two classes, distinct class names;
    - loading twice with generators of the same seed gives the same arrays and names (the
      splits and every run's numbers depend on it), and loading leaves numpy's and Python's
      global random state alone (all randomness from ``rng``);
    - a source that measures itself (:class:`~optlab._training.data.SupportsShape`) gives the
      :class:`~optlab.DataShape` of what it loads.

    Raises
    ------
    AssertionError
        Naming the dataset and what is wrong.
    """
    import random

    from optlab._contract.components import DatasetSource, DataShape, RawDataset
    from optlab._errors import DataError
    from optlab._training.data import SupportsShape, validate_raw

    source, name = _build(component, DatasetSource, "dataset", params)
    try:  # first, the imports a first load may make (some touch the global state)
        source.load(np.random.default_rng(1234))
    except Exception as exc:
        raise _fail("dataset", name, f"load raised {exc!r}") from exc
    loads = []
    for _ in range(2):
        numpy_state = np.random.get_state()  # noqa: NPY002 - watching the legacy global state
        python_state = random.getstate()
        try:
            raw = source.load(np.random.default_rng(1234))
        except Exception as exc:
            raise _fail("dataset", name, f"load raised {exc!r}") from exc
        after = np.random.get_state()  # noqa: NPY002
        if not _same_state(numpy_state, after) or random.getstate() != (python_state):
            raise _fail(
                "dataset",
                name,
                "load used the global random state (np.random.* or random.*); draw from the "
                "rng argument, so that a seed gives the same data",
            )
        if not isinstance(raw, RawDataset):
            raise _fail("dataset", name, f"load returned {type(raw).__name__}, not a RawDataset")
        loads.append(raw)
    raw = loads[0]
    try:
        X, _ = validate_raw(raw, name)
    except DataError as exc:
        raise _fail("dataset", name, str(exc)) from exc
    if len(raw.classes) < 2:
        raise _fail("dataset", name, f"{len(raw.classes)} class(es); a classifier needs two")
    if len(set(raw.classes)) != len(raw.classes):
        raise _fail("dataset", name, f"class names repeat: {list(raw.classes)}")
    if raw.image_shape is not None and int(np.prod(raw.image_shape)) != X.shape[1]:
        raise _fail(
            "dataset",
            name,
            f"image_shape {tuple(raw.image_shape)} holds {int(np.prod(raw.image_shape))} "
            f"values, a row has {X.shape[1]} features",
        )
    if isinstance(source, SupportsShape):
        try:
            shape = source.shape(np.random.default_rng(1234))
        except Exception as exc:
            raise _fail("dataset", name, f"shape raised {exc!r}") from exc
        n_test = None if raw.X_test is None else int(raw.X_test.shape[0])
        loaded = DataShape(X.shape[0], X.shape[1], len(raw.classes), n_test, raw.source)
        if shape != loaded:
            raise _fail("dataset", name, f"shape() gave {shape}, load gives {loaded}")
    again = loads[1]
    pairs = [(raw.X, again.X), (raw.y, again.y), (raw.X_test, again.X_test)]
    pairs.append((raw.y_test, again.y_test))
    same = all(
        (a is None and b is None)
        or (a is not None and b is not None and np.array_equal(np.asarray(a), np.asarray(b)))
        for a, b in pairs
    )
    if not same or list(raw.classes) != list(again.classes):
        raise _fail(
            "dataset",
            name,
            "two loads with generators of the same seed gave different data; draw every "
            "random number from the rng argument",
        )


def _same_state(a: Any, b: Any) -> bool:
    """Two ``np.random.get_state()`` tuples are equal."""
    return all(
        np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
        for x, y in zip(a, b, strict=True)
    )


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------

#: (N, D, C) of the products checked: few and many features and classes, a bias-free shape,
#: empty batches
_BACKEND_SHAPES = ((40, 5, 3), (70, 300, 10), (33, 260, 17), (64, 320, 1), (0, 300, 4))


def _tolerance(dtype: Any) -> float:
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-5


def _check_close(name: str, what: str, got: object, want: Array, dtype: Any) -> None:
    """``got`` is an array of ``want``'s shape and ``dtype`` equal to it to rounding."""
    got = _check_array("backend", name, what, got, want.shape, np.dtype(dtype))
    rtol = _tolerance(dtype)
    scale = float(np.abs(want).max()) if want.size else 1.0
    if not np.allclose(got, want, rtol=rtol, atol=rtol * (scale or 1.0)):
        error = float(np.abs(got - want).max())
        raise _fail(
            "backend", name, f"{what} differs from numpy's by {error:.3g} in {np.dtype(dtype)}"
        )


def check_backend(component: Any, *, losses: Sequence[Loss] | None = None) -> None:
    """Check a backend (a :class:`~optlab.BackendRecord` or a :class:`~optlab.Backend`)
    against the numpy backend.

    - ``label`` is a non-empty string and ``accelerates`` returns a bool;
    - ``scores`` (also into ``out``, and on a thread per part), ``add_weight_grad`` and
      ``weight_grad`` give numpy's results to rounding (1e-10 relative in float64, 1e-5 in
      float32), in the inputs' dtype, for few and many features and classes and for empty
      operands, and leave their inputs alone; ``score_width`` is at least ``C``;
    - where the backend offers a fused step for a loss (``stepper``), its mean loss and weight
      gradient over a batch agree with ``loss.loss_and_grad`` and numpy's products, with one
      thread and with two, and its gradient is a fresh (D, C) array of ``W``'s dtype.

    Parameters
    ----------
    component : BackendRecord or Backend
    losses : sequence of Loss, optional
        The losses to check the fused step with (default: every registered loss, with its
        default params).

    Raises
    ------
    AssertionError
        Naming the backend and what is wrong.
    BackendUnavailable
        The record's factory says the backend cannot run here (skip the check).
    """
    if isinstance(component, ComponentRecord):
        try:
            backend, name = _build(component, Backend, "backend", None)
        except AssertionError as exc:
            if isinstance(exc.__cause__, BackendUnavailable):
                raise exc.__cause__ from None
            raise
    else:
        backend, name = _build(component, Backend, "backend", None)
    label = backend.label
    if not isinstance(label, str) or not label:
        raise _fail("backend", name, f"label is {label!r}, not a non-empty string")
    reference = Backend()
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        for n, d, c in _BACKEND_SHAPES:
            X: Array = rng.standard_normal((n, d)).astype(dtype)
            W: Array = rng.standard_normal((d, c)).astype(dtype)
            dS: Array = rng.standard_normal((n, c)).astype(dtype)
            kept = (X.copy(), W.copy(), dS.copy())
            shape = f"({n}, {d}) x ({d}, {c})"
            want = reference.scores(X, W)
            _check_close(name, f"scores of {shape}", backend.scores(X, W), want, dtype)
            out = np.empty((n, c), dtype)
            if backend.scores(X, W, out) is not out:
                raise _fail("backend", name, f"scores of {shape} did not return out")
            _check_close(name, f"scores of {shape} into out", out, want, dtype)
            threaded = backend.scores(X, W, threads=3)
            _check_close(name, f"scores of {shape} on 3 threads", threaded, want, dtype)
            grad_t: Array = rng.standard_normal((c, d)).astype(dtype)
            want_t = grad_t + dS.T @ X
            backend.add_weight_grad(grad_t, dS, X)
            _check_close(name, f"add_weight_grad of {shape}", grad_t, want_t, dtype)
            grad = backend.weight_grad(dS, X)
            _check_close(name, f"weight_grad of {shape}", grad, X.T @ dS, dtype)
            if not all(np.array_equal(a, b) for a, b in zip((X, W, dS), kept, strict=True)):
                raise _fail("backend", name, f"the products of {shape} modified their inputs")
            width = backend.score_width(X, W)
            if not isinstance(width, int) or width < c:
                raise _fail("backend", name, f"score_width is {width!r} for {c} classes")
    _check_steppers(backend, name, _registered_losses() if losses is None else losses, rng)


def _registered_losses() -> list[Loss]:
    """Every registered loss, built with its default params (those that build)."""
    built = []
    for record in get_registry().records("loss"):
        try:
            loss = record.factory(record.params())
        except Exception:  # a broken third-party loss is its own check's business
            continue
        if isinstance(loss, Loss):
            built.append(loss)
    return built


def _check_steppers(
    backend: Backend, name: str, losses: Sequence[Loss], rng: np.random.Generator
) -> None:
    """The fused step of each loss the backend offers one for, against numpy."""
    N, D, C = 300, 270, 7
    y = rng.integers(0, C, N).astype(np.int64)
    index = rng.permutation(N)[:201]
    for loss in losses:
        what = type(loss).__name__
        for dtype in (np.float64, np.float32):
            X = rng.standard_normal((N, D)).astype(dtype)
            W = (0.1 * rng.standard_normal((D, C))).astype(dtype)
            accelerates = backend.accelerates(X, C, loss)
            if not isinstance(accelerates, bool):
                raise _fail("backend", name, f"accelerates returned {accelerates!r}, not a bool")
            stepper = backend.stepper(X, y, C, loss)
            if stepper is None:
                continue
            if not stepper.fits(W):
                raise _fail("backend", name, f"its {what} step does not take W {W.shape}")
            X64, W64 = X[index].astype(np.float64), W.astype(np.float64)
            want, dS = loss.loss_and_grad(X64 @ W64, y[index])
            want_grad = X64.T @ dS
            for threads in (1, 2):
                with stepper.session(len(index), threads):
                    value, grad = stepper.loss_and_grad(W, index)
                rtol = _tolerance(dtype)
                if not math.isclose(float(value), float(want), rel_tol=rtol, abs_tol=rtol):
                    raise _fail(
                        "backend",
                        name,
                        f"its {what} step gives loss {value:.10g} on {np.dtype(dtype)} data "
                        f"where loss_and_grad gives {want:.10g} ({threads} thread(s))",
                    )
                _check_close(
                    name, f"the {what} step's gradient", grad, want_grad.astype(dtype), dtype
                )
                if np.shares_memory(grad, W):
                    raise _fail("backend", name, f"its {what} step's gradient shares W's memory")


# --------------------------------------------------------------------------------------------
# Regularizers
# --------------------------------------------------------------------------------------------


def check_regularizer(component: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """Check a regularizer (a :class:`~optlab.RegularizerRecord` or a
    :class:`~optlab.Regularizer`).

    Raises
    ------
    AssertionError
        Naming the regularizer and what is wrong.
    """
    reg: Regularizer
    reg, name = _build(component, Regularizer, "regularizer", params)
    kind = "regularizer"
    rng = np.random.default_rng(7)
    shape = (6, 4)
    base = rng.standard_normal(shape)
    values: dict[Any, tuple[float, Array | None]] = {}
    for dtype in _DTYPES:
        W = base.astype(dtype)
        before = W.copy()
        value, grad = reg.penalty_and_grad(W)
        value = _check_scalar(kind, name, f"penalty on {np.dtype(dtype)} W", value)
        if grad is not None:
            grad = _check_array(
                kind, name, f"penalty gradient on {np.dtype(dtype)} W", grad, shape, dtype
            )
        if not np.array_equal(W, before):
            raise _fail(kind, name, "penalty_and_grad modified W")
        if not reg.has_penalty and (value != 0.0 or grad is not None):
            raise _fail(
                kind,
                name,
                "has_penalty is False but penalty_and_grad returns a penalty; the objective "
                "would ignore it (set has_penalty = True)",
            )
        values[dtype] = (value, grad)
        if reg.has_projection:
            _check_projection(reg, name, (4.0 * base).astype(dtype))
        if reg.has_perturbation:
            _check_perturbation(reg, name, dtype)

    if reg.has_penalty:
        v64, g64 = values[np.float64]
        v32, _ = values[np.float32]
        if not math.isclose(v32, v64, rel_tol=1e-4, abs_tol=1e-6):
            raise _fail(kind, name, f"float32 penalty {v32} differs from float64 penalty {v64}")
        if g64 is None:
            if v64 != 0.0:
                raise _fail(kind, name, "returns a nonzero penalty but no gradient")
        else:
            _check_gradient(kind, name, lambda V: reg.penalty_and_grad(V)[0], base, g64)
    _check_edges(reg, name, base)
    if isinstance(component, ComponentRecord):
        _check_include_bias(component, name, params)


def _check_edges(reg: Regularizer, name: str, base: Array) -> None:
    """Finite penalty, gradient and projection at ``W`` of zeros, with a zero row, with a zero
    column, and at tiny weights (a norm's gradient ``w / ||w||`` is 0/0 at zero)."""
    zero_row, zero_column = base.copy(), base.copy()
    zero_row[2] = 0.0
    zero_column[:, 1] = 0.0
    edges = {
        "all-zero W": np.zeros_like(base),
        "W with a zero row": zero_row,
        "W with a zero column": zero_column,
        "W of scale 1e-30": 1e-30 * base,
    }
    for what, W in edges.items():
        for dtype in _DTYPES:
            Wd = W.astype(dtype)
            where = f"{what} ({np.dtype(dtype)})"
            with np.errstate(all="ignore"):
                value, grad = reg.penalty_and_grad(Wd.copy())
                finite = math.isfinite(float(value))
                if grad is not None:
                    finite = finite and bool(np.isfinite(grad).all())
                if not finite:
                    raise _fail(
                        "regularizer", name, f"penalty or gradient is not finite at {where}"
                    )
                if reg.has_projection:
                    projected = Wd.copy()
                    reg.project(projected)
                    if not np.isfinite(projected).all():
                        raise _fail("regularizer", name, f"project gives NaN or inf at {where}")


def _check_include_bias(
    record: ComponentRecord[Any], name: str, params: Mapping[str, Any] | None
) -> None:
    """A regularizer's factory passes ``include_bias`` on: the objective reads it from the
    object to decide whether the bias row is penalized (or constrained)."""
    if "include_bias" not in record.params.model_fields:
        return
    for wanted in (True, False):
        reg = record.factory(record.params(**{**dict(params or {}), "include_bias": wanted}))
        if getattr(reg, "include_bias", None) is not wanted:
            raise _fail(
                "regularizer",
                name,
                f"built with include_bias={wanted}, its include_bias is "
                f"{getattr(reg, 'include_bias', None)!r}: set it from the params in the "
                "factory (the objective reads it from the object)",
            )


def _check_projection(reg: Regularizer, name: str, W: Array) -> None:
    kind = "regularizer"
    huge = W * W.dtype.type(1e6)
    reg.project(huge)
    if np.array_equal(huge, W * W.dtype.type(1e6)):
        raise _fail(
            kind,
            name,
            "projection changed nothing, even on a random W of scale 1e6; it must modify W "
            "in place (W *= ..., W[...] = ...), not rebind it",
        )
    once = W.copy()
    reg.project(once)
    _check_array(kind, name, "projected W", once, W.shape, W.dtype)
    twice = once.copy()
    reg.project(twice)
    rtol = 1e-5 if W.dtype == np.float32 else 1e-12
    if not np.allclose(twice, once, rtol=rtol, atol=rtol):
        raise _fail(kind, name, "projection is not idempotent: project(project(W)) != project(W)")
    # the objective passes a view without the bias row: the projection must work in place
    full = np.vstack([W, np.ones((1, W.shape[1]), dtype=W.dtype)])
    reg.project(full[:-1])
    if not np.allclose(full[:-1], once, rtol=rtol, atol=rtol):
        raise _fail(kind, name, "projection does not work in place on a view of W (W[:-1])")
    if not np.all(full[-1] == 1):
        raise _fail(kind, name, "projection of W[:-1] changed the row outside the view")


def _check_perturbation(reg: Regularizer, name: str, dtype: Any) -> None:
    kind = "regularizer"
    X = np.random.default_rng(3).standard_normal((50, 6)).astype(dtype)
    before = X.copy()
    out = reg.perturb_inputs(X, np.random.default_rng(11))
    _check_array(kind, name, f"perturbed {np.dtype(dtype)} inputs", out, X.shape, dtype)
    if not np.array_equal(X, before):
        raise _fail(kind, name, "perturb_inputs modified its input in place; return a copy")
    again = reg.perturb_inputs(X, np.random.default_rng(11))
    if not np.array_equal(out, again):
        raise _fail(kind, name, "perturb_inputs is not reproducible from the generator")


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------


class _ToySoftmax(Loss):
    """Reference softmax cross-entropy for the optimizer checks (independent of plugins)."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(scores.shape[0])
        dscores = np.exp(log_p)
        dscores[rows, y] -= 1
        return -float(log_p[rows, y].mean()), dscores / scores.dtype.type(scores.shape[0])


class _ColumnNormCap(Regularizer):
    """Caps each column's norm at ``c`` (a max-norm constraint without a plugin)."""

    has_projection: ClassVar[bool] = True

    def __init__(self, c: float) -> None:
        self.c = c

    def project(self, W: Array) -> None:
        norms = np.linalg.norm(W, axis=0)
        W *= np.minimum(1.0, self.c / np.maximum(norms, 1e-30)).astype(W.dtype)


def toy_objective(
    dtype: Any = np.float64,
    *,
    n_per_class: int = 80,
    regularizers: list[BoundRegularizer] | tuple[BoundRegularizer, ...] = (),
    seed: int = 0,
) -> Objective:
    """A small convex problem: softmax on three Gaussian blobs in 4-D plus a bias column.

    Returns an :class:`~optlab.Objective` with ``N = 3 * n_per_class`` examples, ``D = 5``,
    ``C = 3``, of the given dtype.
    """
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = np.repeat(np.arange(3), n_per_class).astype(np.int64)
    X = centers[y] + rng.standard_normal((y.size, 4))
    X = np.hstack([X - X.mean(axis=0), np.ones((y.size, 1))]).astype(dtype)
    return Objective(
        X, y, 3, BoundLoss(_ToySoftmax(), "toy_softmax", "optlab.testing"), regularizers
    )


def check_optimizer(
    component: Any, *, params: Mapping[str, Any] | None = None, seed: int = 0
) -> None:
    """Check an optimizer (an :class:`~optlab.OptimizerRecord` or an :class:`~optlab.Optimizer`)
    on :func:`toy_objective` (240 examples): pass ``params`` if the defaults do not suit it.

    Raises
    ------
    AssertionError
        Naming the optimizer and what is wrong.
    """
    opt: Optimizer
    opt, name = _build(component, Optimizer, "optimizer", params)
    kind = "optimizer"
    for dtype in _DTYPES:
        W_first = _run_once(opt, name, toy_objective(dtype), seed)
        W_again = _run_once(opt, name, toy_objective(dtype), seed)
        if not np.array_equal(W_first, W_again):
            raise _fail(kind, name, f"two {np.dtype(dtype)} runs with the same seed differ")
    cap = 0.5
    capped = toy_objective(
        np.float64, regularizers=[BoundRegularizer(_ColumnNormCap(cap), "cap", "optlab.testing")]
    )
    W = _run_once(opt, name, capped, seed, require_decrease=False)
    norms = np.linalg.norm(W[:-1], axis=0)
    if np.any(norms > cap * (1 + 1e-6)):
        raise _fail(
            kind,
            name,
            f"final W breaks a max-norm constraint (column norms {np.round(norms, 4)} > {cap}); "
            "call objective.project(W) after each update",
        )


def _run_once(
    opt: Optimizer, name: str, objective: Objective, seed: int, require_decrease: bool = True
) -> Array:
    kind = "optimizer"
    dtype = objective.dtype
    W0 = (1e-3 * np.random.default_rng(seed + 1).standard_normal(objective.shape)).astype(dtype)
    before = W0.copy()
    monitor = RecordingMonitor()
    try:
        W = opt.minimize(objective, W0, np.random.default_rng(seed), monitor)
    except AssertionError:
        raise
    except Exception as exc:
        raise _fail(kind, name, f"raised {exc!r} on a {dtype} problem") from exc
    W = _check_array(kind, name, f"returned weights ({dtype} problem)", W, objective.shape, dtype)
    if not np.array_equal(W0, before):
        raise _fail(kind, name, "modified W0 in place; work on a copy")
    if not monitor.steps:
        raise _fail(kind, name, "never called monitor.step")
    if not monitor.evaluations:
        raise _fail(kind, name, "never called monitor.evaluate (call it at least at the end)")
    for s in monitor.steps:
        if not (isinstance(s.examples, int | np.integer) and s.examples > 0):
            raise _fail(kind, name, f"monitor.step got examples={s.examples!r}; a positive int")
        if not all(math.isfinite(float(v)) for v in (s.loss, s.data_loss, s.reg_loss)):
            raise _fail(kind, name, f"monitor.step got a non-finite loss {s}")
    if require_decrease:
        start, end = objective.value(W0).total, objective.value(W).total
        if not end < start:
            raise _fail(
                kind,
                name,
                f"did not decrease a convex {dtype} problem: objective {start:.6g} at W0, "
                f"{end:.6g} at the end",
            )
    return W
