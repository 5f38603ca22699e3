"""The compiled backend's raw step kernel (``KernelSet.step``), of each instruction set the CPU
runs, equals the bundled losses and the products computed apart (on the batch copied out and in
float64), and refuses what it cannot do; ``add_transposed`` adds two transposed gradients. The
step as the backend offers it (``StepKernel``, ``CompiledBackend.stepper``) and as the objective
uses it: test_backend_compiled_steps.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from kernel_sets import rtol

import optlab
from optlab import Array
from optlab_plugins.compiled import loss_form
from optlab_plugins.compiled._kernelset import KernelSet
from optlab_plugins.compiled._steps import LOSS_CODES
from optlab_plugins.losses import SoftmaxLoss, SVMLoss

#: The losses the step kernel computes, each with its form (loss name, margin).
LOSSES: dict[str, optlab.Loss] = {
    "hinge": SVMLoss(1.0),
    "hinge-margin": SVMLoss(0.3),
    "squared_hinge": SVMLoss(0.7, squared=True),
    "softmax": SoftmaxLoss(),
}
Form = tuple[str, float]


def form_of(name: str) -> Form:
    form = loss_form(LOSSES[name])
    assert form is not None
    return form


def problem(
    N: int, D: int, C: int, n: int, dtype: Any, seed: int = 0
) -> tuple[Array, Array, Array, Array]:
    """X (N, D), y (N,), W (D, C) and n row indices (repeats and any order)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)).astype(dtype)
    y = rng.integers(0, C, N)
    W = (rng.standard_normal((D, C)) / np.sqrt(D)).astype(dtype)
    return X, y, W, rng.integers(0, N, n)


def run_step(
    kernel: KernelSet,
    form: Form,
    X: Array,
    y: Array,
    W: Array,
    index: Array,
    batch: int,
) -> tuple[float, Array, Array]:
    """(sum of losses, grad_t (C, D) added to zeros, score gradient (n, C))."""
    C, D = W.shape[1], W.shape[0]
    grad_t = np.zeros((C, D), X.dtype)
    dscores = np.full((len(index), C), np.nan, X.dtype)
    total = kernel.step(grad_t, dscores, X, index, y, W, LOSS_CODES[form[0]], form[1], batch)
    return total, grad_t, dscores


def assert_close(got: Array, want: Array, dtype: Any) -> None:
    tol = rtol(dtype)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", list(LOSSES))
@pytest.mark.parametrize(
    ("D", "C", "n"),
    [
        (256, 10, 200),  # chunks of rows (64 float32 / 32 float64) and of the gradient (32)
        (257, 3, 1),  # one row
        (300, 12, 33),  # AVX2's two class chunks; an odd number of rows
        (513, 7, 65),  # feature tails
        (3073, 10, 40),  # CIFAR-10's rows
    ],
)
def test_step_equals_the_loss_and_the_products_apart(
    kernel: KernelSet, form: str, D: int, C: int, n: int, dtype: Any
) -> None:
    loss = LOSSES[form]
    X, y, W, index = problem(90, D, C, n, dtype, seed=D + C + n)
    total, grad_t, dscores = run_step(kernel, form_of(form), X, y, W, index, n)
    X64 = X[index].astype(np.float64)
    want_loss, want_dscores = loss.loss_and_grad(X64 @ W.astype(np.float64), y[index])
    assert total / n == pytest.approx(want_loss, rel=rtol(dtype))
    assert_close(dscores, want_dscores, dtype)
    assert_close(grad_t, want_dscores.T @ X64, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_part_of_a_batch_is_scaled_by_the_whole_batch_and_adds_to_grad_t(
    kernel: KernelSet, dtype: Any
) -> None:
    kform = form_of("softmax")
    X, y, W, index = problem(120, 260, 5, 100, dtype)
    whole, grad_whole, ds_whole = run_step(kernel, kform, X, y, W, index, 100)
    a, grad_a, ds_a = run_step(kernel, kform, X, y, W, index[:60], 100)
    b, grad_b, ds_b = run_step(kernel, kform, X, y, W, index[60:], 100)
    assert a + b == pytest.approx(whole, rel=rtol(dtype))
    # score gradients are per row: a part's are the whole batch's rows, bit for bit
    np.testing.assert_array_equal(np.concatenate([ds_a, ds_b]), ds_whole)
    assert_close(grad_a + grad_b, grad_whole, dtype)
    G = grad_a.copy()
    kernel.step(G, ds_b, X, index[60:], y, W, LOSS_CODES["softmax"], 1.0, 100)
    np.testing.assert_array_equal(G, grad_whole)  # rows in order: the same sums


def test_step_reads_rows_in_place_exactly_as_the_kernels_read_a_copy(
    kernel: KernelSet,
) -> None:
    """Scores and weight gradient are summed as scores() and add_weight_grad() sum them on
    X[index]: the same bits."""
    kform, loss = form_of("hinge"), LOSSES["hinge"]
    for dtype in (np.float32, np.float64):
        X, y, W, index = problem(300, 700, 10, 150, dtype)
        _, grad_t, dscores = run_step(kernel, kform, X, y, W, index, 150)
        rows = np.ascontiguousarray(X[index])
        scores = np.empty((150, 10), dtype)
        kernel.scores(scores, rows, W)
        _, want_dscores = loss.loss_and_grad(scores, y[index])
        want = np.zeros_like(grad_t)
        kernel.add_weight_grad(want, dscores, rows)
        np.testing.assert_array_equal(grad_t, want)
        assert_close(dscores, want_dscores, dtype)


@pytest.mark.parametrize("form", list(LOSSES))
def test_a_nan_score_gives_a_nan_loss(kernel: KernelSet, form: str) -> None:
    X, y, W, index = problem(10, 256, 4, 10, np.float64)
    X[index[3], 7] = np.nan
    total, _, _ = run_step(kernel, form_of(form), X, y, W, index, 10)
    assert np.isnan(total)


def test_step_takes_empty_operands(kernel: KernelSet) -> None:
    X, y, W, _ = problem(10, 256, 4, 0, np.float64)
    total, grad_t, _ = run_step(kernel, form_of("softmax"), X, y, W, np.empty(0, np.int64), 1)
    assert total == 0.0 and not grad_t.any()
    X0, W0 = np.empty((10, 0)), np.empty((0, 4))
    total, grad_t, dscores = run_step(kernel, form_of("softmax"), X0, y, W0, np.arange(3), 3)
    # no features: every score 0, so every class equally likely
    assert total == pytest.approx(3 * np.log(4))
    np.testing.assert_allclose(dscores.sum(axis=1), 0, atol=1e-15)


def good_args(dtype: Any = np.float64) -> list[Any]:
    X, y, W, index = problem(10, 8, 3, 4, dtype)
    return [np.zeros((3, 8), dtype), np.empty((4, 3), dtype), X, index, y, W, 0, 1.0, 4]


def with_arg(position: int, value: Any) -> list[Any]:
    args = good_args()
    args[position] = value
    return args


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (good_args()[:8], TypeError, r"step_avx\w+ takes 9 arguments"),
        (with_arg(6, 3), ValueError, "loss must be 0"),
        (with_arg(8, 3), ValueError, r"batch \(3\) must be at least 1 and the rows \(4\)"),
        (with_arg(3, np.array([0, 1, 10, 2])), IndexError, r"index\[2\] = 10 is not a row"),
        (with_arg(3, np.array([0, -1, 1, 2])), IndexError, r"index\[1\] = -1"),
        (with_arg(3, np.arange(4, dtype=np.int32)), TypeError, "int64"),
        (with_arg(4, np.full(10, 3)), ValueError, r"y\[\d+\] = 3 is not a class in 0..2"),
        (with_arg(2, np.zeros((10, 8), np.float32)), TypeError, "one dtype"),
        (with_arg(5, np.zeros((7, 3))), ValueError, "shapes do not match"),
        (with_arg(4, np.zeros(9, np.int64)), ValueError, "shapes do not match"),
        (with_arg(2, np.zeros((8, 10)).T), ValueError, "contiguous"),
    ],
)
def test_step_refuses_what_it_cannot_do(
    kernel: KernelSet, args: list[Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        kernel.step(*args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("C", "D"), [(1, 1), (3, 63), (10, 3073), (12, 65)])
def test_add_transposed(kernel: KernelSet, dtype: Any, C: int, D: int) -> None:
    rng = np.random.default_rng(C * D)
    a, b = (rng.standard_normal((C, D)).astype(dtype) for _ in range(2))
    out = np.full((D, C), np.nan, dtype)
    kernel.add_transposed(out, a, b)
    np.testing.assert_array_equal(out, (a + b).T)
    with pytest.raises(ValueError, match="shapes do not match"):
        kernel.add_transposed(np.empty((C, D + 1), dtype), a, b)
    with pytest.raises(TypeError, match="one dtype"):
        other = np.float32 if np.dtype(dtype) == np.float64 else np.float64
        kernel.add_transposed(out, a, b.astype(other))
