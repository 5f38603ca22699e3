"""Sanity checks before training: the initial loss and a numeric gradient check.

- **Initial loss.** With a small ``W0`` every score is about 0, so the data loss must be about
  what the loss declares (:meth:`~optlab.Loss.expected_initial_loss`: ``C - 1`` for the SVM,
  ``log C`` for softmax).
- **Gradient check.** The analytic gradient of the data loss plus the penalties, on a small
  batch, against centered finite differences in float64 on a sample of coordinates (of the
  data loss and of the penalties apart, so that neither's round-off hides the other's slope). The
  relative error ``|a - n| / max(|a| + |n|, 1e-8)`` above ``1e-2`` means a wrong gradient
  (the course notes: ``1e-7`` and less is good, ``1e-2`` and more is probably wrong).
  Coordinates whose perturbation crosses a kink of a non-smooth loss (a hinge margin, ``|w|``
  at 0) are detected by comparing the one-sided differences and skipped, not counted.
  Inputs are never perturbed (dropout is off), as in :meth:`~optlab.Objective.value`.

:func:`run_checks` applies the ``warn`` / ``error`` / ``off`` policies of
:class:`~optlab._spec.experiment.ChecksOptions`.

Its size (about 460 lines): numeric gradients (also used by :mod:`optlab.testing`), the two
checks, finding the component at fault, and the policies that turn results into warnings or
errors - one concern, the sanity checks of the lecture, read top to bottom.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from optlab._contract.components import Array
from optlab._contract.objective import BoundRegularizer, Objective
from optlab._errors import CheckError, ComponentError
from optlab._spec.experiment import ChecksOptions

__all__ = [
    "DENOMINATOR_FLOOR",
    "WARNING",
    "ChecksReport",
    "GradientCheck",
    "InitialLossCheck",
    "gradient_check",
    "initial_loss_check",
    "numeric_gradient",
    "probe_gradient",
    "relative_error",
    "run_checks",
]

#: how a run's console (and the invoking process's output) starts a warning line
WARNING = "warning: "

#: floor of the relative error's denominator: float64 round-off in a centered difference of a
#: loss of order 1 with ``h = 1e-5`` is about ``1e-11``, so gradients below ``1e-8`` are compared
#: in absolute terms rather than amplified into false alarms
DENOMINATOR_FLOOR = 1e-8

Coords = Sequence[tuple[int, ...]] | Array


def _coord_list(W: Array, coords: Coords | None) -> list[tuple[int, ...]]:
    if coords is None:
        return [tuple(int(i) for i in c) for c in np.ndindex(W.shape)]
    return [tuple(int(i) for i in c) for c in np.asarray(coords, dtype=np.int64)]


def _both_sides(
    f: Callable[[Array], float], W64: Array, points: list[tuple[int, ...]], h: float
) -> tuple[Array, Array]:
    """``f(W + h e_c)`` and ``f(W - h e_c)`` for each coordinate ``c`` of ``points``, each
    (M,) float64; ``W64`` is perturbed in place and restored."""
    plus = np.empty(len(points), dtype=np.float64)
    minus = np.empty(len(points), dtype=np.float64)
    for i, c in enumerate(points):
        old = W64[c]
        W64[c] = old + h
        plus[i] = float(f(W64))
        W64[c] = old - h
        minus[i] = float(f(W64))
        W64[c] = old
    return plus, minus


def numeric_gradient(
    f: Callable[[Array], float],
    W: Array,
    h: float = 1e-5,
    coords: Coords | None = None,
) -> Array:
    """Centered finite differences ``(f(W + h e) - f(W - h e)) / 2h``, in float64.

    Parameters
    ----------
    f : callable
        Scalar function of an array shaped like ``W``.
    W : array, any shape
        The point; not modified (a float64 copy is perturbed).
    h : float
        Step.
    coords : (M, W.ndim) int array or sequence of index tuples, optional
        Coordinates to differentiate; default all.

    Returns
    -------
    grad : float64 array
        Shaped like ``W`` when ``coords`` is None, else (M,).
    """
    W64 = np.array(W, dtype=np.float64, copy=True)
    plus, minus = _both_sides(f, W64, _coord_list(W64, coords), h)
    out = (plus - minus) / (2.0 * h)
    return out.reshape(W64.shape) if coords is None else out


def probe_gradient(
    f: Callable[[Array], float],
    W: Array,
    coords: Coords,
    h: float = 1e-5,
    kink_tolerance: float = 1e-2,
) -> tuple[Array, Array]:
    """Centered differences at ``coords`` and whether each crosses a kink, in float64.

    A coordinate is at a kink when its one-sided differences disagree,
    ``|fwd - bwd| > kink_tolerance * max(|fwd| + |bwd|, 1e-8)``, unless the disagreement
    doubles with the step from ``h`` to ``2h`` and again to ``4h``. For a smooth function
    ``fwd - bwd = h f''``, proportional to the step (and larger than the slope where the slope
    is near 0, as an L2 penalty's at a constant-zero feature, which is no kink); across a kink
    at ``delta < h`` from ``W`` it is ``J (1 - delta / step)`` for a jump ``J`` of the
    derivative, which grows at most 1.5 times from ``2h`` to ``4h``. The centered difference
    is off by at most half the jump, so an undetected kink adds at most about
    ``kink_tolerance / 2`` to the relative error.

    Parameters
    ----------
    f : callable
    W : array
    coords : (M, W.ndim) int array or sequence of index tuples
    h : float
    kink_tolerance : float

    Returns
    -------
    centered : (M,) float64 array
    kinks : (M,) bool array
    """
    W64 = np.array(W, dtype=np.float64, copy=True)
    f0 = float(f(W64))
    points = _coord_list(W64, coords)
    plus, minus = _both_sides(f, W64, points, h)
    fwd, bwd = (plus - f0) / h, (f0 - minus) / h
    centered = (plus - minus) / (2.0 * h)
    scale = np.maximum(np.abs(fwd) + np.abs(bwd), DENOMINATOR_FLOOR)
    jump = np.abs(fwd - bwd)
    kinks = jump > kink_tolerance * scale
    if kinks.any():  # a disagreement that doubles with the step is curvature, not a kink
        suspects = np.flatnonzero(kinks)
        at = [points[i] for i in suspects]
        jumps = [jump[suspects]]
        for step in (2.0 * h, 4.0 * h):
            plus_s, minus_s = _both_sides(f, W64, at, step)
            jumps.append(np.abs((plus_s - f0) - (f0 - minus_s)) / step)
        doubles = (jumps[1] >= 1.75 * jumps[0]) & (jumps[2] >= 1.75 * jumps[1])
        kinks[suspects] = ~doubles
    return centered, kinks


def relative_error(analytic: Array, numeric: Array) -> Array:
    """``|a - n| / max(|a| + |n|, 1e-8)``, elementwise, in float64."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    return np.asarray(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), DENOMINATOR_FLOOR))


# --------------------------------------------------------------------------------------------
# Initial loss
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitialLossCheck:
    """The data loss at the initial ``W`` against the loss's expectation.

    Attributes
    ----------
    value : float
        Data loss (no regularization) at ``W0`` on the training set.
    expected : float
        ``loss.expected_initial_loss(C)``.
    tolerance : float
        Allowed relative deviation.
    ok : bool
    message : str
        One line for people.
    """

    value: float
    expected: float
    tolerance: float
    ok: bool
    message: str


def initial_loss_check(
    objective: Objective, W0: Array, tolerance: float = 0.1
) -> InitialLossCheck | None:
    """Compare the data loss at ``W0`` (D, C) with the loss's expected initial value.

    Returns ``None`` when the loss declares no expectation.
    """
    loss = objective.loss
    C = objective.n_classes
    try:
        expected = loss.impl.expected_initial_loss(C)
    except Exception as exc:
        raise ComponentError("loss", loss.name, loss.provider, f"raised {exc!r}") from exc
    if expected is None:
        return None
    expected = float(expected)
    value = objective.data_loss(W0)
    deviation = abs(value - expected) / max(abs(expected), 1e-12)
    ok = bool(deviation <= tolerance)
    # percentages to 3 digits: a tolerance of 0.001 is 0.1%, not "0%" (and a failure "off by 0%")
    off = f"off by {deviation * 100:.3g}%; is W0 small and are labels in 0..{C - 1}?"
    measured, wanted = _distinct(value, expected)
    message = (
        f"initial loss {measured}, expected {wanted} for loss '{loss.name}' with C={C} "
        f"(tolerance {tolerance * 100:.3g}%): {'ok' if ok else off}"
    )
    return InitialLossCheck(value, expected, tolerance, ok, message)


def _distinct(a: float, b: float, digits: int = 4) -> tuple[str, str]:
    """``a`` and ``b`` to ``digits`` significant digits, or to as many more as it takes for
    two different numbers to print differently (``2.302594`` and ``2.302585``, not ``2.303``
    twice under a tolerance tighter than four digits show)."""
    while f"{a:.{digits}g}" == f"{b:.{digits}g}" and a != b and digits < 17:
        digits += 1
    return f"{a:.{digits}g}", f"{b:.{digits}g}"


# --------------------------------------------------------------------------------------------
# Gradient check
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientCheck:
    """Analytic against numeric gradient on a sample of coordinates.

    Attributes
    ----------
    max_rel_error : float
        Largest relative error over the checked coordinates (``nan`` if none was checked).
    ok : bool
        ``max_rel_error <= tolerance`` (true when nothing could be checked).
    n_checked, n_skipped : int
        Coordinates compared, and coordinates skipped because they sit at a kink.
    tolerance : float
    worst : tuple of int or None
        ``(d, k)`` of the largest error.
    analytic, numeric : float
        The two values at ``worst`` (``nan`` if none).
    message : str
    """

    max_rel_error: float
    ok: bool
    n_checked: int
    n_skipped: int
    tolerance: float
    worst: tuple[int, int] | None
    analytic: float
    numeric: float
    message: str


def gradient_check(
    objective: Objective,
    W: Array,
    rng: np.random.Generator,
    *,
    n_coords: int = 20,
    batch_size: int = 32,
    h: float = 1e-5,
    tolerance: float = 1e-2,
) -> GradientCheck:
    """Check the analytic gradient of data loss + penalties at ``W`` (D, C), in float64.

    A batch of ``batch_size`` training examples (drawn from ``rng``) is copied to float64;
    up to ``n_coords`` smooth coordinates of ``W`` (drawn from ``rng``; at most ``5 * n_coords``
    tried) are compared; a coordinate is at a kink when the data loss or the penalties have
    one there. Inputs are not perturbed.
    """
    N = objective.n_examples
    idx = np.sort(rng.choice(N, size=min(batch_size, N), replace=False))
    X = np.asarray(objective.X[idx], dtype=np.float64)
    y = objective.y[idx]
    W64 = np.array(W, dtype=np.float64, copy=True)

    def data(V: Array) -> float:
        return objective.data_loss(V, X, y)

    def penalty(V: Array) -> float:
        return objective.reg_value_and_grad(V, with_grad=False)[0]

    has_penalty = any(r.impl.has_penalty for r in objective.regularizers)

    value, grad = objective.data_loss_and_grad(W64, X, y)
    reg_value, reg_grad = objective.reg_value_and_grad(W64)
    if reg_grad is not None:
        grad = grad + reg_grad
    finite = math.isfinite(value) and math.isfinite(reg_value)
    if finite and not np.isfinite(grad).all():  # a component's fault, named as training would
        objective.blame_non_finite_gradient(W64, ("weight_grad", X, y))

    D, C = W64.shape
    candidates = rng.permutation(D * C)[: 5 * n_coords]
    checked: list[tuple[int, int]] = []
    analytic: list[float] = []
    numeric: list[float] = []
    skipped = 0
    # probe in chunks so a smooth objective costs exactly n_coords probes
    pos = 0
    while len(checked) < n_coords and pos < len(candidates):
        chunk = candidates[pos : pos + (n_coords - len(checked))]
        pos += len(chunk)
        coords = np.stack(np.unravel_index(chunk, (D, C)), axis=1)
        # the data loss and the penalties differenced apart: a penalty's slope of 1e-10 (L2 at
        # a feature that is 0 in the batch) is lost in the round-off of a data loss of 27
        centered, kinks = probe_gradient(data, W64, coords, h, kink_tolerance=tolerance)
        if has_penalty:
            slope, kink = probe_gradient(penalty, W64, coords, h, kink_tolerance=tolerance)
            centered, kinks = centered + slope, kinks | kink
        for (d, k), n_val, kink in zip(coords, centered, kinks, strict=True):
            if kink:
                skipped += 1
                continue
            checked.append((int(d), int(k)))
            analytic.append(float(grad[d, k]))
            numeric.append(float(n_val))

    if not checked:
        return GradientCheck(
            float("nan"),
            True,
            0,
            skipped,
            tolerance,
            None,
            float("nan"),
            float("nan"),
            f"gradient check: not measured, all {skipped} sampled coordinates sit at kinks",
        )
    errors = relative_error(np.array(analytic), np.array(numeric))
    i = int(np.argmax(errors))
    max_err = float(errors[i])
    ok = bool(max_err <= tolerance)
    d, k = checked[i]
    # the least slope a central difference resolves at this loss: eps * |f| / h. A loss of
    # 1e197 (features of 1e200) hides every slope below 1e176, and the check would blame a
    # correct loss: such a coordinate is the data's scale, not a wrong gradient
    resolved = np.finfo(np.float64).eps * abs(value + reg_value) / h
    if ok:
        verdict = "ok"
    elif abs(analytic[i]) < 1e3 * resolved:
        verdict = (
            f"not measurable at W[{d}, {k}]: the loss is {value + reg_value:.3g}, at which "
            f"finite differences resolve no slope below {resolved:.2g} (analytic "
            f"{analytic[i]:.6g}, numeric {numeric[i]:.6g}); the features' scale is at fault: "
            "standardize them (data: {standardize: true}) or rescale the data"
        )
    else:
        verdict = (
            f"wrong gradient at W[{d}, {k}]: analytic {analytic[i]:.6g}, numeric "
            f"{numeric[i]:.6g}{_culprit(objective, W64, X, y, checked, h, tolerance)}"
        )
    message = (
        f"gradient check: max relative error {max_err:.2e} over {len(checked)} coordinates"
        f" ({skipped} skipped at kinks), tolerance {tolerance:g}: {verdict}"
    )
    return GradientCheck(
        max_err, ok, len(checked), skipped, tolerance, (d, k), analytic[i], numeric[i], message
    )


def _culprit(
    objective: Objective,
    W64: Array,
    X: Array,
    y: Array,
    coords: list[tuple[int, int]],
    h: float,
    tolerance: float,
) -> str:
    """``"; the loss 'svm' (from losses (optlab 0.1.0)) is at fault"``: the data loss and each
    penalty checked on their own at ``coords`` (float64), the first wrong one named."""
    points = np.array(coords)

    def wrong(f: Callable[[Array], float], grad: Array | None, rows: int) -> bool:
        inside = [i for i, (d, _) in enumerate(coords) if d < rows]
        if not inside:
            return False
        centered, kinks = probe_gradient(f, W64, points[inside], h, kink_tolerance=tolerance)
        analytic = np.zeros(len(inside)) if grad is None else grad[tuple(points[inside].T)]
        smooth = ~kinks
        errors = relative_error(analytic[smooth], centered[smooth])
        return bool(errors.size and errors.max() > tolerance)

    loss = objective.loss
    _, data_grad = objective.data_loss_and_grad(W64, X, y)
    if wrong(lambda V: objective.data_loss(V, X, y), data_grad, W64.shape[0]):
        return f"; the loss '{loss.name}' (from {loss.provider}) is at fault"
    for reg in objective.regularizers:
        if not reg.impl.has_penalty:
            continue
        rows = W64.shape[0] - (0 if reg.impl.include_bias or not objective.has_bias else 1)

        def penalty(V: Array, reg: BoundRegularizer = reg, rows: int = rows) -> float:
            return float(reg.impl.penalty_and_grad(V[:rows])[0])

        _, g = reg.impl.penalty_and_grad(W64[:rows])
        if wrong(penalty, g, rows):
            return f"; the regularizer '{reg.name}' (from {reg.provider}) is at fault"
    return ""


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


@dataclass
class ChecksReport:
    """What :func:`run_checks` measured, and the warnings its policies produced.

    Attributes
    ----------
    initial_loss : InitialLossCheck or None
        ``None`` when off or when the loss declares no expectation.
    gradient : GradientCheck or None
        ``None`` when off.
    notes : list of str
        Lines explaining checks that did not run.
    """

    options: ChecksOptions
    initial_loss: InitialLossCheck | None = None
    gradient: GradientCheck | None = None
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """``initial_loss``, ``expected_initial_loss`` and ``grad_check_max_rel_error`` when
        measured."""
        out: dict[str, float] = {}
        if self.initial_loss is not None:
            out["initial_loss"] = self.initial_loss.value
            out["expected_initial_loss"] = self.initial_loss.expected
        if self.gradient is not None and self.gradient.n_checked:
            out["grad_check_max_rel_error"] = self.gradient.max_rel_error
        return out

    def warnings(self) -> list[str]:
        """One line per failed check under the ``warn`` policy."""
        out = []
        if self.initial_loss is not None and not self.initial_loss.ok:
            out.append(WARNING + self.initial_loss.message)
        if self.gradient is not None and not self.gradient.ok:
            out.append(WARNING + self.gradient.message)
        return out

    @property
    def ok(self) -> bool:
        """No check failed."""
        return not self.warnings()

    def lines(self) -> list[str]:
        """Every check's result, one line each, for ``optlab check``."""
        out = list(self.notes)
        if self.initial_loss is not None:
            out.append(self.initial_loss.message)
        if self.gradient is not None:
            out.append(self.gradient.message)
        return out


def run_checks(
    objective: Objective,
    W0: Array,
    options: ChecksOptions,
    rng: np.random.Generator,
) -> ChecksReport:
    """Run the enabled checks at ``W0`` (D, C) under their policies.

    Raises
    ------
    CheckError
        A check failed under the ``error`` policy (the message has the measured and the
        expected numbers).
    """
    report = ChecksReport(options)
    failures: list[str] = []
    if options.initial_loss == "off":
        report.notes.append("initial loss: not checked (checks.initial_loss: off)")
    else:
        check = initial_loss_check(objective, W0, options.initial_loss_tolerance)
        if check is None:
            report.notes.append(
                f"initial loss: not checked (loss '{objective.loss.name}' declares no "
                "expected initial value)"
            )
        else:
            report.initial_loss = check
            if not check.ok and options.initial_loss == "error":
                failures.append(check.message)
    if options.gradient == "off":
        report.notes.append("gradient check: not run (checks.gradient: off)")
    else:
        grad = gradient_check(objective, W0, rng, tolerance=options.gradient_tolerance)
        report.gradient = grad
        if not grad.ok and options.gradient == "error":
            failures.append(grad.message)
    if failures:
        raise CheckError("sanity check failed: " + "; ".join(failures))
    return report
