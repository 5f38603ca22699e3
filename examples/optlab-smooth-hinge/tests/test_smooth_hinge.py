"""The smoothed hinge's own properties, beyond conformance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optlab_smooth_hinge import SmoothHingeLoss, SmoothHingeParams


def _svm(scores: np.ndarray, y: np.ndarray, margin: float) -> float:
    """The lecture's multiclass SVM loss, written out independently."""
    rows = np.arange(len(y))
    margins = np.maximum(0.0, scores - scores[rows, y][:, None] + margin)
    margins[rows, y] = 0.0
    return float(margins.sum()) / len(y)


def test_value_by_hand() -> None:
    # one example, C = 3, correct class 0, margin 1, smoothing 1:
    # m_1 = 0.2 - 1 + 1 = 0.2 (quadratic piece: 0.02), m_2 = 2.5 - 1 + 1 = 2.5 (linear: 2.0)
    scores = np.array([[1.0, 0.2, 2.5]])
    loss, grad = SmoothHingeLoss(1.0, 1.0).loss_and_grad(scores, np.array([0]))
    assert loss == pytest.approx(0.02 + 2.0)
    np.testing.assert_allclose(grad, [[-1.2, 0.2, 1.0]])


def test_tends_to_the_svm_loss_as_smoothing_vanishes() -> None:
    rng = np.random.default_rng(0)
    scores = 3 * rng.standard_normal((50, 10))
    y = rng.integers(0, 10, 50)
    svm = _svm(scores, y, 1.0)
    gaps = [abs(SmoothHingeLoss(g, 1.0).loss(scores, y) - svm) for g in (1.0, 0.1, 1e-3)]
    assert gaps[0] > gaps[1] > gaps[2]
    # the gap is at most (C - 1) * gamma / 2 per example
    assert gaps[2] <= 9 * 1e-3 / 2


def test_correct_class_winning_by_more_than_the_margin_costs_nothing() -> None:
    scores = np.array([[5.0, 1.0, -2.0]])
    loss, grad = SmoothHingeLoss(0.5, 1.0).loss_and_grad(scores, np.array([0]))
    assert loss == 0.0
    assert not grad.any()


@pytest.mark.parametrize(("smoothing", "margin"), [(1.0, 1.0), (0.5, 2.0), (3.0, 1.0)])
def test_expected_initial_loss(smoothing: float, margin: float) -> None:
    loss = SmoothHingeLoss(smoothing, margin)
    expected = loss.expected_initial_loss(10)
    assert expected is not None
    assert loss.loss(np.zeros((4, 10)), np.array([0, 3, 5, 9])) == pytest.approx(expected)
    assert math.isfinite(expected) and expected > 0


def test_float32_stays_float32() -> None:
    scores = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    _, grad = SmoothHingeLoss(0.7, 1.0).loss_and_grad(scores, np.arange(6) % 4)
    assert grad.dtype == np.float32


def test_params_reject_a_non_positive_smoothing() -> None:
    with pytest.raises(ValueError, match="smoothing"):
        SmoothHingeParams(smoothing=0.0)
