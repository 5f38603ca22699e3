"""optlab._training.checks: numeric gradients, the initial-loss and gradient checks, and their
policies."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import optlab
from optlab import Array
from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
from optlab._spec.experiment import ChecksOptions
from optlab._training.checks import (
    gradient_check,
    initial_loss_check,
    numeric_gradient,
    probe_gradient,
    relative_error,
    run_checks,
)
from optlab_plugins.losses import SoftmaxLoss, SVMLoss
from optlab_plugins.regularizers import L1, L2, Dropout, ElasticNet, MaxNorm


def make_objective(
    loss: optlab.Loss,
    regs: tuple[optlab.Regularizer, ...] = (),
    dtype: type = np.float64,
    seed: int = 0,
) -> Objective:
    """Four Gaussian blobs in 8-D, centered, with a bias column: N=200, D=9, C=4."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 200)
    X = 3.0 * np.eye(4, 8)[y] + rng.standard_normal((200, 8))
    X = np.hstack([X - X.mean(axis=0), np.ones((200, 1))]).astype(dtype)
    return Objective(
        X, y, 4, BoundLoss(loss, "loss", "tests"), [BoundRegularizer(r, "reg") for r in regs]
    )


def small_w(obj: Objective, seed: int = 1, scale: float = 1e-3) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(obj.shape)).astype(obj.dtype)


class DoubledGradient(optlab.Loss):
    """A broken loss: softmax with the gradient off by a factor of 2."""

    def loss_and_grad(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = SoftmaxLoss().loss_and_grad(scores, y)
        return value, 2 * grad

    def expected_initial_loss(self, n_classes: int) -> float | None:
        return math.log(n_classes)


class NoExpectation(optlab.Loss):
    def loss_and_grad(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return SoftmaxLoss().loss_and_grad(scores, y)


# ------------------------------------------------------------------------------- numeric tools


def test_numeric_gradient_of_a_quadratic() -> None:
    A = np.random.default_rng(0).standard_normal((3, 2))

    def f(W: np.ndarray) -> float:
        return float(np.sum(A * W**2))

    W = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)
    grad = numeric_gradient(f, W)
    assert grad.dtype == np.float64 and grad.shape == W.shape
    np.testing.assert_allclose(grad, 2 * A * W.astype(np.float64), rtol=1e-8)
    some = numeric_gradient(f, W, coords=[(0, 1), (2, 0)])
    np.testing.assert_allclose(some, [grad[0, 1], grad[2, 0]], rtol=1e-12)
    assert W.dtype == np.float32  # not modified


def test_probe_gradient_detects_kinks() -> None:
    W = np.array([3e-6, 0.5, -0.7])  # |w| has a kink within h = 1e-5 of the first entry

    def f(V: np.ndarray) -> float:
        return float(np.sum(np.abs(V)))

    centered, kinks = probe_gradient(f, W, [(0,), (1,), (2,)])
    assert list(kinks) == [True, False, False]
    np.testing.assert_allclose(centered[1:], [1.0, -1.0])


def test_relative_error_has_a_floor_for_tiny_gradients() -> None:
    assert relative_error(np.array([1.0]), np.array([1.0 + 1e-9]))[0] < 1e-9
    assert relative_error(np.array([0.0]), np.array([1e-11]))[0] < 1e-2
    assert relative_error(np.array([1.0]), np.array([2.0]))[0] == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------- initial loss


@pytest.mark.parametrize(
    ("loss", "expected"), [(SVMLoss(), 3.0), (SoftmaxLoss(), math.log(4))], ids=["svm", "softmax"]
)
def test_initial_loss_is_near_the_lecture_value(loss: optlab.Loss, expected: float) -> None:
    obj = make_objective(loss, (L2(10.0),))  # the penalty is not part of the check
    check = initial_loss_check(obj, small_w(obj))
    assert check is not None and check.ok
    assert check.expected == pytest.approx(expected)
    assert check.value == pytest.approx(expected, rel=1e-2)


def test_initial_loss_check_fails_for_a_large_w() -> None:
    obj = make_objective(SoftmaxLoss())
    check = initial_loss_check(obj, small_w(obj, scale=1.0), tolerance=0.1)
    assert check is not None and not check.ok
    assert "expected 1.386" in check.message and "off by" in check.message


def test_initial_loss_check_says_by_how_much_under_a_tight_tolerance() -> None:
    # initial_loss_tolerance: 0.001 read "(tolerance 0%): off by 0%" for a loss 0.12% off
    obj = make_objective(SVMLoss())
    check = initial_loss_check(obj, small_w(obj), tolerance=1e-3)
    assert check is not None
    deviation = abs(check.value - check.expected) / check.expected
    assert 1e-3 < deviation < 5e-3, deviation  # the small W0's loss: off, by less than 0.5%
    assert not check.ok
    assert f"(tolerance 0.1%): off by {deviation * 100:.3g}%;" in check.message


def test_a_failed_initial_loss_check_prints_the_numbers_apart() -> None:
    """Under a tolerance tighter than four digits show, the check failed saying 'initial loss
    1.386, expected 1.386': the numbers get the digits that tell them apart."""
    obj = make_objective(SoftmaxLoss())
    check = initial_loss_check(obj, small_w(obj, scale=1e-4), tolerance=1e-7)
    assert check is not None and not check.ok
    assert f"{check.value:.4g}" == f"{check.expected:.4g}"  # what four digits would show
    found = re.match(r"initial loss (\S+), expected (\S+) for", check.message)
    assert found is not None, check.message
    measured, expected = found.groups()
    assert measured != expected, check.message
    assert abs(float(measured) - check.value) < abs(check.value - check.expected)
    assert abs(float(expected) - check.expected) < abs(check.value - check.expected)
    # enough digits, no more: four when four tell them apart
    svm = make_objective(SVMLoss())
    apart = initial_loss_check(svm, small_w(svm), tolerance=1e-3)
    assert apart is not None and apart.message.startswith("initial loss 2.997, expected 3 for")


def test_initial_loss_check_skips_losses_without_an_expectation() -> None:
    obj = make_objective(NoExpectation())
    assert initial_loss_check(obj, small_w(obj)) is None


# ------------------------------------------------------------------------------- gradient check


@pytest.mark.parametrize(
    "regs",
    [(), (L2(0.1),), (L1(0.1),), (ElasticNet(0.05, 0.1),), (MaxNorm(1.0),), (Dropout(0.5),)],
    ids=["none", "l2", "l1", "elastic_net", "max_norm", "dropout"],
)
@pytest.mark.parametrize("loss", [SVMLoss(), SoftmaxLoss(), SVMLoss(squared=True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_correct_gradients_pass(
    loss: optlab.Loss, regs: tuple[optlab.Regularizer, ...], dtype: type
) -> None:
    obj = make_objective(loss, regs, dtype)
    check = gradient_check(obj, small_w(obj), np.random.default_rng(0))
    assert check.ok, check.message
    assert check.n_checked == 20
    assert check.max_rel_error < 1e-6


def test_svm_kinks_are_skipped_not_failed() -> None:
    # at a trained W many hinge margins sit near 0: a big batch crosses some of them
    obj = make_objective(SVMLoss())
    W = np.random.default_rng(0).standard_normal(obj.shape)
    rng = np.random.default_rng(0)
    check = gradient_check(obj, W, rng, n_coords=40, batch_size=200, h=1e-2)
    assert check.ok, check.message
    assert check.n_skipped > 0
    assert f"({check.n_skipped} skipped at kinks)" in check.message


def test_a_smooth_objective_has_no_kinks_where_its_slope_is_near_zero() -> None:
    """Softmax + L2 over features that are 0 in every example (an image's constant border):
    there the slope is the penalty's alone, about 1e-7, and its one-sided differences disagree
    by its curvature, h * 2 * strength. They were skipped as kinks ('121 skipped at kinks' over
    20 checks of a loss that has none); they are measured."""
    obj = make_objective(SoftmaxLoss(), (L2(1e-4),))
    X = obj.X.copy()
    X[:, :4] = 0.0
    smooth = Objective(
        X, obj.y, 4, BoundLoss(SoftmaxLoss(), "softmax", "t"), [BoundRegularizer(L2(1e-4), "l2")]
    )
    for seed in range(5):
        check = gradient_check(
            smooth, small_w(smooth, seed), np.random.default_rng(seed), n_coords=36
        )
        assert check.ok and check.n_skipped == 0, check.message


def test_a_penalty_slope_below_the_data_loss_round_off_is_measured() -> None:
    """SVM with margin 10 (a data loss of 30) + L2 over features that are 0 in the batch:
    there the slope is the penalty's alone, about 1e-10, below the round-off of the data loss
    in a finite difference of their sum. Raw digits pixels with margin 3 (a data loss of 27)
    failed their runs with 'not measurable ... the features' scale is at fault' (relative
    error 1.2e-2); data loss and penalty are differenced apart now."""
    obj = make_objective(SVMLoss(margin=10.0), (L2(1e-4),))
    X = obj.X.copy()
    X[:, :6] = 0.0
    zeros = Objective(
        X, obj.y, 4, BoundLoss(SVMLoss(margin=10.0), "svm", "t"), [BoundRegularizer(L2(1e-4), "l2")]
    )
    for seed in range(5):
        W = small_w(zeros, seed, scale=1e-6)
        check = gradient_check(zeros, W, np.random.default_rng(seed), n_coords=36)
        assert check.ok and check.max_rel_error < 1e-6, check.message


def test_a_wrong_gradient_is_caught() -> None:
    obj = make_objective(DoubledGradient())
    check = gradient_check(obj, small_w(obj), np.random.default_rng(0))
    assert not check.ok
    assert check.max_rel_error == pytest.approx(1 / 3, rel=1e-3)  # |2n - n| / (2n + n)
    assert check.worst is not None
    assert check.analytic == pytest.approx(2 * check.numeric, rel=1e-4)
    assert "wrong gradient at W[" in check.message


def test_features_too_large_to_check_blame_their_scale_not_the_loss() -> None:
    """Features of 1e200: the loss is about 1e197 and finite differences resolve no slope
    below about 1e176, so the check failed and named the (correct) loss at fault."""
    obj = make_objective(SoftmaxLoss())
    huge = Objective(
        obj.X * np.r_[np.full(8, 1e200), 1.0], obj.y, 4, BoundLoss(SoftmaxLoss(), "softmax", "t")
    )
    check = gradient_check(huge, small_w(huge), np.random.default_rng(0))
    assert not check.ok
    assert "the features' scale is at fault: standardize them" in check.message
    assert "is at fault" not in check.message.replace("the features' scale is at fault", "")
    assert "finite differences resolve no slope below" in check.message


class WrongL2(optlab.Regularizer):
    has_penalty = True

    def penalty_and_grad(self, W: np.ndarray) -> tuple[float, np.ndarray | None]:
        return float(np.sum(W**2)), W  # gradient should be 2W


def test_a_wrong_regularizer_gradient_is_caught() -> None:
    obj = make_objective(SoftmaxLoss(), (WrongL2(),))
    W = small_w(obj, scale=1.0)
    check = gradient_check(obj, W, np.random.default_rng(0))
    assert not check.ok and check.max_rel_error > 1e-2


# ------------------------------------------------------------------------------- policies


def test_run_checks_reports_metrics_and_lines() -> None:
    obj = make_objective(SVMLoss(), (L2(1e-3),))
    report = run_checks(obj, small_w(obj), ChecksOptions(), np.random.default_rng(0))
    metrics = report.metrics()
    assert set(metrics) == {"initial_loss", "expected_initial_loss", "grad_check_max_rel_error"}
    assert metrics["expected_initial_loss"] == 3.0
    assert metrics["grad_check_max_rel_error"] < 1e-6
    assert report.ok and report.warnings() == []
    lines = report.lines()
    assert len(lines) == 2 and lines[0].startswith("initial loss 2.99") and "ok" in lines[1]


def test_warn_policy_reports_without_raising() -> None:
    obj = make_objective(DoubledGradient())
    W = small_w(obj, scale=1.0)
    report = run_checks(obj, W, ChecksOptions(gradient="warn"), np.random.default_rng(0))
    warnings = report.warnings()
    assert len(warnings) == 2 and not report.ok
    assert warnings[0].startswith("warning: initial loss")
    assert "gradient check" in warnings[1] and "tolerance 0.01" in warnings[1]


@pytest.mark.parametrize("which", ["initial_loss", "gradient"])
def test_error_policy_raises_with_both_numbers(which: str) -> None:
    obj = make_objective(DoubledGradient())
    W = small_w(obj, scale=1.0 if which == "initial_loss" else 1e-3)
    options = ChecksOptions(**{which: "error"})  # type: ignore[arg-type]
    with pytest.raises(optlab.CheckError) as info:
        run_checks(obj, W, options, np.random.default_rng(0))
    message = str(info.value)
    if which == "initial_loss":
        assert "expected 1.386" in message and "initial loss" in message
    else:
        assert "analytic" in message and "numeric" in message and "0.01" in message
    assert info.value.exit_code == 1


def test_off_policy_measures_nothing() -> None:
    obj = make_objective(DoubledGradient())
    options = ChecksOptions(initial_loss="off", gradient="off")
    report = run_checks(obj, small_w(obj, scale=1.0), options, np.random.default_rng(0))
    assert report.metrics() == {}
    assert report.initial_loss is None and report.gradient is None
    assert report.ok
    assert all("not" in line for line in report.lines())


def test_no_expectation_is_noted_not_failed() -> None:
    obj = make_objective(NoExpectation())
    report = run_checks(
        obj, small_w(obj), ChecksOptions(initial_loss="error"), np.random.default_rng(0)
    )
    assert "initial_loss" not in report.metrics()
    assert "declares no expected initial value" in report.lines()[0]


class _NoMeanGradient(optlab.Loss):
    """Softmax whose gradient misses its 1/N (the loss itself is right)."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        value, grad = SoftmaxLoss().loss_and_grad(scores, y)
        return value, grad * scores.dtype.type(scores.shape[0])


class _HalfL2(L2):
    """L2 whose gradient is half what it should be."""

    def penalty_and_grad(self, W: Array) -> tuple[float, Array | None]:
        value, grad = super().penalty_and_grad(W)
        return value, None if grad is None else grad / 2


@pytest.mark.parametrize(
    ("loss", "regs", "culprit"),
    [
        (_NoMeanGradient(), (), "the loss 'loss' (from tests) is at fault"),
        (SoftmaxLoss(), (_HalfL2(10.0),), "the regularizer 'reg' (from unknown) is at fault"),
    ],
)
def test_a_wrong_gradient_fails_the_run_by_default_naming_the_culprit(
    loss: optlab.Loss, regs: tuple[optlab.Regularizer, ...], culprit: str
) -> None:
    """A loss missing its 1/N trained to the end and was ranked best: now it fails, and the
    message says which component to fix; ``checks: {gradient: warn}`` relaxes it."""
    objective = make_objective(loss, regs)
    W = small_w(objective, scale=0.1)
    with pytest.raises(optlab.CheckError, match=r"wrong gradient at W\[.*" + re.escape(culprit)):
        run_checks(objective, W, ChecksOptions(), np.random.default_rng(0))
    report = run_checks(objective, W, ChecksOptions(gradient="warn"), np.random.default_rng(0))
    assert any(culprit in line for line in report.warnings())
