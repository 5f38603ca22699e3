"""The bundled losses: the lecture's facts as properties, a loop-over-examples reference, and
scikit-learn where it defines the same quantity."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import hinge_loss, log_loss

from optlab_plugins.losses import (
    SoftmaxLoss,
    SVMLoss,
    SVMParams,
    optlab_register_losses,
)

# ------------------------------------------------------------------------------- references


def svm_reference(
    scores: np.ndarray, y: np.ndarray, margin: float = 1.0, squared: bool = False
) -> tuple[float, np.ndarray]:
    """The lecture's formula, one example and one class at a time."""
    N, C = scores.shape
    total = 0.0
    grad = np.zeros_like(scores, dtype=np.float64)
    for i in range(N):
        for j in range(C):
            if j == y[i]:
                continue
            m = scores[i, j] - scores[i, y[i]] + margin
            if m > 0:
                total += m * m if squared else m
                d = 2 * m if squared else 1.0
                grad[i, j] += d / N
                grad[i, y[i]] -= d / N
    return total / N, grad


def softmax_reference(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """``-log(exp(s_y) / sum_j exp(s_j))`` one example at a time (stable)."""
    N, C = scores.shape
    total = 0.0
    grad = np.zeros_like(scores, dtype=np.float64)
    for i in range(N):
        s = scores[i] - max(scores[i])
        z = sum(math.exp(v) for v in s)
        total += -(s[y[i]] - math.log(z))
        for j in range(C):
            grad[i, j] = (math.exp(s[j]) / z - (j == y[i])) / N
    return total / N, grad


def problem(seed: int, N: int = 13, C: int = 5, scale: float = 2.0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((N, C)), rng.integers(0, C, N)


# ------------------------------------------------------------------------------- references


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("margin", "squared"), [(1.0, False), (0.5, False), (1.0, True)])
def test_svm_matches_loop_reference(seed: int, margin: float, squared: bool) -> None:
    scores, y = problem(seed)
    value, grad = SVMLoss(margin, squared).loss_and_grad(scores, y)
    ref_value, ref_grad = svm_reference(scores, y, margin, squared)
    assert value == pytest.approx(ref_value, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-10)
    assert SVMLoss(margin, squared).loss(scores, y) == pytest.approx(ref_value, rel=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_softmax_matches_loop_reference(seed: int) -> None:
    scores, y = problem(seed, scale=5.0)
    value, grad = SoftmaxLoss().loss_and_grad(scores, y)
    ref_value, ref_grad = softmax_reference(scores, y)
    assert value == pytest.approx(ref_value, rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_binary_svm_equals_sklearn_hinge_loss(seed: int) -> None:
    # sklearn's multiclass hinge_loss is Crammer-Singer (max over wrong classes), not the
    # lecture's Weston-Watkins sum; the two coincide only with two classes. With scores
    # [0, d] our loss is max(0, 1 - t d) for t = +1 (y = 1) and t = -1 (y = 0): sklearn's binary
    # hinge loss on the decision value d.
    rng = np.random.default_rng(seed)
    d = 2 * rng.standard_normal(50)
    y = rng.integers(0, 2, 50)
    scores = np.stack([np.zeros_like(d), d], axis=1)
    ours = SVMLoss().loss(scores, y)
    assert ours == pytest.approx(hinge_loss(2 * y - 1, d), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_softmax_equals_sklearn_log_loss(seed: int) -> None:
    scores, y = problem(seed, N=40, C=6, scale=3.0)
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    expected = log_loss(y, probs, labels=np.arange(6))
    assert SoftmaxLoss().loss(scores, y) == pytest.approx(expected, rel=1e-10)


def test_softmax_is_stable_for_huge_logits() -> None:
    scores = np.array([[1e3, 0.0, -1e3], [1e3, 1e3, 0.0]])
    y = np.array([1, 0])
    for dtype in (np.float32, np.float64):
        value, grad = SoftmaxLoss().loss_and_grad(scores.astype(dtype), y)
        assert math.isfinite(value) and np.all(np.isfinite(grad))
        # example 0: -log softmax = 1e3; example 1: log 2
        assert value == pytest.approx((1e3 + math.log(2)) / 2, rel=1e-6)


@pytest.mark.parametrize("loss", [SVMLoss(), SVMLoss(squared=True), SoftmaxLoss()])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(loss: SVMLoss | SoftmaxLoss, dtype: type) -> None:
    scores, y = problem(0)
    _, grad = loss.loss_and_grad(scores.astype(dtype), y)
    assert grad.dtype == dtype


# ------------------------------------------------------------------------------- lecture facts

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def scored_batch(draw: st.DrawFn, max_n: int = 8, max_c: int = 7) -> tuple[np.ndarray, ...]:
    N = draw(st.integers(1, max_n))
    C = draw(st.integers(2, max_c))
    scores = np.array(draw(st.lists(finite, min_size=N * C, max_size=N * C))).reshape(N, C)
    y = np.array(draw(st.lists(st.integers(0, C - 1), min_size=N, max_size=N)))
    return scores, y


@given(scored_batch(), st.floats(0.01, 10))
def test_svm_loss_is_nonnegative(batch: tuple[np.ndarray, ...], margin: float) -> None:
    scores, y = batch
    assert SVMLoss(margin).loss(scores, y) >= 0
    assert SVMLoss(margin, squared=True).loss(scores, y) >= 0


@given(scored_batch())
def test_softmax_loss_is_nonnegative(batch: tuple[np.ndarray, ...]) -> None:
    scores, y = batch
    value, grad = SoftmaxLoss().loss_and_grad(scores, y)
    assert value >= 0
    assert np.all(np.isfinite(grad))


@given(
    scored_batch(),
    st.integers(0, 100),
    st.floats(0.1, 10),
    st.floats(-0.49, 0.49),
)
def test_svm_ignores_small_changes_of_a_correct_score_that_wins_by_more_than_the_margin(
    batch: tuple[np.ndarray, ...], pick: int, gap: float, fraction: float
) -> None:
    # lecture fact 1
    scores, y = batch
    i = pick % scores.shape[0]
    others = np.delete(scores[i], y[i])
    scores[i, y[i]] = others.max() + 1.0 + gap  # wins by margin + gap
    before = SVMLoss().loss(scores, y)
    scores[i, y[i]] += fraction * gap  # a change smaller than the excess
    assert SVMLoss().loss(scores, y) == before


@given(scored_batch(), st.floats(0.01, 10))
def test_summing_over_all_classes_adds_exactly_the_margin(
    batch: tuple[np.ndarray, ...], margin: float
) -> None:
    # lecture fact 4: the j = y_i term is max(0, margin) = margin
    scores, y = batch
    correct = scores[np.arange(len(y)), y][:, None]
    all_classes = np.maximum(0, scores - correct + margin).sum(axis=1).mean()
    assert all_classes == pytest.approx(SVMLoss(margin).loss(scores, y) + margin, rel=1e-9)


@given(st.integers(0, 10_000), st.integers(3, 8))
@settings(max_examples=30)
def test_mean_over_classes_orders_weights_like_the_sum(seed: int, C: int) -> None:
    # lecture fact 5: a positive rescaling does not change which W is best
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((20, 4))
    y = rng.integers(0, C, 20)
    candidates = [rng.standard_normal((4, C)) for _ in range(6)]

    def mean_over_classes(W: np.ndarray) -> float:
        S = X @ W
        m = np.maximum(0, S - S[np.arange(20), y][:, None] + 1.0)
        m[np.arange(20), y] = 0
        return float(np.mean(m.sum(axis=1) / (C - 1)))

    sums = [SVMLoss().loss(X @ W, y) for W in candidates]
    means = [mean_over_classes(W) for W in candidates]
    assert np.argmin(sums) == np.argmin(means)
    assert list(np.argsort(sums, kind="stable")) == list(np.argsort(means, kind="stable"))


def test_mean_over_classes_with_a_regularizer_is_said_to_be_the_sum_with_a_larger_lambda() -> None:
    """The README and `optlab components` said flatly that with `classes: mean` 'the best W
    does not change'; every spec has a regularizer, and with one it does: mean with lambda
    is the sum with (C - 1) * lambda, so the data loss weighs C - 1 times less."""
    from pathlib import Path

    rng = np.random.default_rng(0)
    C, lam = 4, 0.1
    X, y = rng.standard_normal((30, 3)), rng.integers(0, C, 30)
    W = rng.standard_normal((3, C))

    def objective(loss: SVMLoss, lam: float, W: np.ndarray) -> float:
        return loss.loss(X @ W, y) + lam * float(np.sum(W * W))

    mean, total = SVMLoss(classes="mean"), SVMLoss()
    for V in (W, 2 * W, 0.5 * W):  # the same objective up to the factor C - 1
        assert objective(mean, lam, V) * (C - 1) == pytest.approx(
            objective(total, (C - 1) * lam, V)
        )
    described = SVMParams.model_fields["classes"].description or ""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    paragraph = readme[readme.index("`classes: mean` divides") :][:700]
    for text in (described, " ".join(paragraph.split())):
        assert "regularizer" in text and "C - 1" in text.replace("`", "")


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("classes", ["sum", "mean"])
@pytest.mark.parametrize("include_correct", [False, True])
def test_svm_over_all_classes_or_their_mean_is_the_lecture_formula(
    include_correct: bool, classes: Literal["sum", "mean"], squared: bool
) -> None:
    # lecture facts 4 and 5 through the loss's params: the j = y_i term adds Delta (Delta**2
    # squared) and no gradient; the mean divides by the number of terms (C - 1, or C)
    scores, y = problem(3)
    C = scores.shape[1]
    want, want_grad = svm_reference(scores, y, 0.7, squared)
    if include_correct:
        want += 0.7**2 if squared else 0.7
    if classes == "mean":
        terms = C if include_correct else C - 1
        want, want_grad = want / terms, want_grad / terms
    loss = SVMLoss(0.7, squared, include_correct=include_correct, classes=classes)
    value, grad = loss.loss_and_grad(scores, y)
    assert value == pytest.approx(want, rel=1e-12)
    assert loss.loss(scores, y) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)
    # the initial-loss check's expectation: all scores about 0
    small = 1e-6 * np.random.default_rng(0).standard_normal((40, C))
    labels = np.arange(40) % C
    expected = loss.expected_initial_loss(C)
    assert expected == pytest.approx(loss.loss(small, labels), rel=1e-4)
    assert loss.loss(np.zeros((0, C)), np.zeros(0, np.int64)) == 0.0


@given(st.integers(2, 20), st.integers(1, 50), st.integers(0, 10_000))
def test_initial_losses_are_c_minus_one_and_log_c(C: int, N: int, seed: int) -> None:
    # lecture facts 3 (SVM) and softmax 2: small W, all scores about 0
    rng = np.random.default_rng(seed)
    scores = 1e-4 * rng.standard_normal((N, C))
    y = rng.integers(0, C, N)
    assert SVMLoss().loss(scores, y) == pytest.approx(C - 1, rel=1e-3)
    assert SoftmaxLoss().loss(scores, y) == pytest.approx(math.log(C), rel=1e-3)
    assert SVMLoss().expected_initial_loss(C) == C - 1
    assert SoftmaxLoss().expected_initial_loss(C) == pytest.approx(math.log(C))


@given(st.integers(0, 10_000), st.integers(2, 6))
def test_zero_svm_loss_for_w_means_zero_loss_for_2w(seed: int, C: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((15, 3))
    W = rng.standard_normal((3, C))
    S = X @ W
    y = np.argmax(S, axis=1)
    top2 = np.sort(S, axis=1)[:, -2:]
    gap = float(np.min(top2[:, 1] - top2[:, 0]))
    if gap <= 1e-6:
        return  # a tie: no scaling makes the loss 0
    W = W * (1.01 / gap)  # now the winner beats every other class by more than 1
    assert SVMLoss().loss(X @ W, y) == 0
    assert SVMLoss().loss(X @ (2 * W), y) == 0


def test_squared_hinge_is_a_different_loss() -> None:
    # lecture fact 6
    scores, y = problem(1)
    assert SVMLoss(squared=True).loss(scores, y) != pytest.approx(SVMLoss().loss(scores, y))
    assert SVMLoss(margin=2.0, squared=True).expected_initial_loss(5) == 4 * 4.0


# ------------------------------------------------------------------------------- registration


def test_the_svm_record_passes_every_param_to_the_loss() -> None:
    (svm,) = [r for r in optlab_register_losses() if r.name == "svm"]
    loss = svm.factory(SVMParams(include_correct=True, classes="mean"))
    assert isinstance(loss, SVMLoss) and loss.include_correct and loss.classes == "mean"
    schema = SVMParams.model_json_schema()["properties"]
    assert "including j = y_i" in schema["include_correct"]["description"]
    assert "mean instead of sum" in schema["classes"]["description"]


def test_records_and_params() -> None:
    records = {r.name: r for r in optlab_register_losses()}
    assert set(records) == {"svm", "softmax"}
    svm = records["svm"].factory(SVMParams(margin=2.0, squared=True))
    assert isinstance(svm, SVMLoss) and svm.margin == 2.0 and svm.squared
    assert isinstance(records["softmax"].factory(records["softmax"].params()), SoftmaxLoss)
    with pytest.raises(pydantic.ValidationError):
        SVMParams(margin=0)
    with pytest.raises(pydantic.ValidationError):
        SVMParams(delta=1.0)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        SVMParams(classes="avg")  # type: ignore[arg-type]
    schema = SVMParams.model_json_schema()
    assert schema["properties"]["margin"]["exclusiveMinimum"] == 0
    assert schema["properties"]["margin"]["description"]
