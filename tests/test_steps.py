"""Minibatch steps of a bundled loss read their rows in place through the compiled step kernel:
the objective takes that path exactly when it applies, gives what the loss and products computed
apart give (to rounding), the same bits on one thread or two, and hands BLAS its threads back."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from kernel_sets import rtol

import optlab
import optlab.batches as batches_module
import optlab.kernels as kernels
import optlab.steps as steps_module
from optlab import Array
from optlab.blas_threads import blas_threads
from optlab.objective import BoundLoss, BoundRegularizer, Objective
from optlab.steps import StepKernel
from optlab.testing import RecordingMonitor
from optlab_plugins.losses import SoftmaxLoss, SVMLoss
from optlab_plugins.optimizers import SGDParams, _sgd
from optlab_plugins.regularizers import L2, Dropout

needs_step_kernel = pytest.mark.skipif(
    not kernels.compiled(), reason="no compiled kernel here (not built, or the CPU lacks it)"
)
D = kernels.MIN_SCORE_FEATURES + 5


def data(n: int = 300, d: int = D, c: int = 10, dtype: Any = np.float64) -> tuple[Array, Array]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, c, n)


def objective(
    X: Array, y: Array, loss: optlab.Loss | None = None, *regs: optlab.Regularizer
) -> Objective:
    loss = loss if loss is not None else SoftmaxLoss()
    bound = [BoundRegularizer(r, type(r).__name__) for r in regs]
    return Objective(X, y, int(y.max()) + 1, BoundLoss(loss, "loss"), bound)


def weights(obj: Objective, seed: int = 2) -> Array:
    rng = np.random.default_rng(seed)
    return (0.05 * rng.standard_normal(obj.shape)).astype(obj.dtype)


class ThirdPartySoftmax(optlab.Loss):
    """A loss of a third-party plugin: no kernel form."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        return SoftmaxLoss().loss_and_grad(scores, y)


class SquaredSoftmax(SoftmaxLoss):
    """A subclass of a bundled loss that changes it: it must lose the kernel form."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        value, grad = super().loss_and_grad(scores, y)
        return value**2, 2 * value * grad


def test_bundled_losses_have_kernel_forms_and_changed_subclasses_do_not() -> None:
    assert SVMLoss(0.5).kernel_form == optlab.KernelForm("hinge", 0.5)
    assert SVMLoss(2.0, squared=True).kernel_form == optlab.KernelForm("squared_hinge", 2.0)
    assert SoftmaxLoss().kernel_form == optlab.KernelForm("softmax")
    assert SquaredSoftmax().kernel_form is None
    assert ThirdPartySoftmax().kernel_form is None


@needs_step_kernel
@pytest.mark.parametrize(
    ("case", "in_place"),
    [
        ("softmax", True),
        ("svm", True),
        ("third-party loss", False),
        ("changed subclass", False),
        ("dropout", False),
        ("l2", True),
        ("few features", False),
        ("float32", True),
    ],
)
def test_the_objective_reads_rows_in_place_exactly_where_the_kernel_applies(
    case: str, in_place: bool
) -> None:
    losses: dict[str, optlab.Loss] = {
        "svm": SVMLoss(),
        "third-party loss": ThirdPartySoftmax(),
        "changed subclass": SquaredSoftmax(),
    }
    regs = {"dropout": (Dropout(0.3),), "l2": (L2(0.1),)}.get(case, ())
    X, y = data(d=64 if case == "few features" else D)
    if case == "float32":
        X = X.astype(np.float32)
    obj = objective(X, y, losses.get(case), *regs)
    indices = [np.arange(0, 100), np.arange(100, 300)]
    with obj.minibatches(indices) as stream:
        batches = list(stream)
    assert [b.copied is None for b in batches] == [in_place, in_place]
    for batch, index in zip(batches, indices, strict=True):
        np.testing.assert_array_equal(batch.index, index)
        np.testing.assert_array_equal(batch.y, y[index])
        np.testing.assert_array_equal(batch.X, X[index])  # copied on first use if not before


@needs_step_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", [SVMLoss(), SVMLoss(0.5, squared=True), SoftmaxLoss()])
def test_a_step_in_place_equals_the_loss_and_products_on_the_copied_rows(
    dtype: Any, loss: optlab.Loss
) -> None:
    X, y = data(dtype=dtype)
    obj = objective(X, y, loss, L2(0.01))
    W = weights(obj)
    index = np.random.default_rng(5).permutation(300)[:77]
    parts, grad = obj.value_and_grad(W, index)
    data_loss, data_grad = obj.data_loss_and_grad(W, X[index], y[index])
    reg, reg_grad = obj.reg_value_and_grad(W)
    assert reg_grad is not None
    assert parts.data == pytest.approx(data_loss, rel=rtol(dtype))
    assert parts.total == pytest.approx(data_loss + reg, rel=rtol(dtype))
    assert grad.dtype == np.dtype(dtype) and grad.flags.c_contiguous
    want = data_grad + reg_grad
    tol = rtol(dtype)
    np.testing.assert_allclose(grad, want, rtol=tol, atol=tol * float(np.abs(want).max()))


@needs_step_kernel
def test_a_batch_and_its_indices_give_the_same_bits() -> None:
    X, y = data()
    obj = objective(X, y)
    W = weights(obj)
    index = np.arange(40, 120)
    with obj.minibatches([index]) as stream:
        (batch,) = list(stream)
        by_batch = obj.value_and_grad(W, batch)
    by_index = obj.value_and_grad(W, index)
    assert by_batch[0] == by_index[0]
    np.testing.assert_array_equal(by_batch[1], by_index[1])


@needs_step_kernel
def test_a_batch_of_another_training_set_is_read_from_its_copy() -> None:
    X, y = data()
    obj = objective(X, y)
    other = optlab.Batch(np.arange(5), y[:5], X.copy())
    parts, _ = obj.value_and_grad(weights(obj), other)
    want, _ = obj.data_loss_and_grad(weights(obj), X[:5], y[:5])
    assert parts.data == pytest.approx(want, rel=1e-10)


@needs_step_kernel
@pytest.mark.parametrize("B", [1, 2, 3, 200, 201])
def test_halves_on_a_helper_thread_give_the_same_bits_as_in_turn(
    monkeypatch: pytest.MonkeyPatch, B: int
) -> None:
    monkeypatch.setattr(steps_module, "splits_steps", lambda X, size: True)
    X, y = data(n=400)
    form = SoftmaxLoss().kernel_form
    assert form is not None
    W = weights(objective(X, y))
    index = np.random.default_rng(B).permutation(400)[:B]
    in_turn = StepKernel(X, y, 10, form).loss_and_grad(W, index)
    helped = StepKernel(X, y, 10, form)
    with helped.batches([index]):
        assert helped._pool is not None
        on_two = helped.loss_and_grad(W, index)
    assert on_two[0] == in_turn[0]
    np.testing.assert_array_equal(on_two[1], in_turn[1])


def sgd_epochs(X: Array, y: Array, loss: optlab.Loss, *regs: optlab.Regularizer) -> Any:
    obj = objective(X, y, loss, *regs)
    sgd = _sgd(SGDParams(lr=0.05, batch_size=50, epochs=2, momentum=0.9))
    monitor = RecordingMonitor()
    W = sgd.minimize(obj, np.zeros(obj.shape, X.dtype), np.random.default_rng(7), monitor)
    return W, monitor


@needs_step_kernel
@pytest.mark.parametrize("loss", [SVMLoss(), SoftmaxLoss()])
def test_sgd_trains_the_same_bits_with_a_helper_thread_and_without(
    monkeypatch: pytest.MonkeyPatch, loss: optlab.Loss
) -> None:
    X, y = data()
    threads: list[str] = []
    real_step = kernels.step

    def spy(*args: Any) -> float:
        threads.append(threading.current_thread().name)
        return real_step(*args)

    monkeypatch.setattr(kernels, "step", spy)
    monkeypatch.setattr(steps_module, "splits_steps", lambda X, size: False)
    W_alone, m_alone = sgd_epochs(X, y, loss)
    assert threads and all(t == "MainThread" for t in threads)
    threads.clear()
    monkeypatch.setattr(steps_module, "splits_steps", lambda X, size: True)
    W_two, m_two = sgd_epochs(X, y, loss)
    assert {t.split("_")[0] for t in threads} == {"MainThread", "optlab-step"}
    np.testing.assert_array_equal(W_two, W_alone)
    assert [s.loss for s in m_two.steps] == [s.loss for s in m_alone.steps]


@needs_step_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_in_place_trains_the_weights_of_the_copied_path_to_rounding(
    monkeypatch: pytest.MonkeyPatch, dtype: Any
) -> None:
    X, y = data(dtype=dtype)
    W_in_place, m_in_place = sgd_epochs(X, y, SVMLoss(), L2(0.01))
    monkeypatch.setattr(kernels, "step_fit", lambda X, n_classes: False)
    W_copied, m_copied = sgd_epochs(X, y, SVMLoss(), L2(0.01))
    tol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(W_in_place, W_copied, rtol=tol, atol=tol * np.abs(W_copied).max())
    np.testing.assert_allclose(
        [s.loss for s in m_in_place.steps], [s.loss for s in m_copied.steps], rtol=tol
    )


@needs_step_kernel
@pytest.mark.parametrize("how", ["exhausted", "break", "exception"])
def test_blas_threads_and_the_helper_are_given_back_however_the_stream_ends(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(steps_module, "splits_steps", lambda X, size: True)
    X, y = data()
    obj = objective(X, y)
    assert obj._steps is not None
    before = blas_threads()
    W = weights(obj)
    expected = pytest.raises(RuntimeError) if how == "exception" else contextlib.nullcontext()
    with expected, obj.minibatches([np.arange(0, 100), np.arange(100, 200)]) as stream:
        for batch in stream:
            assert blas_threads() == 1
            obj.value_and_grad(W, batch)
            if how == "break":
                break
            if how == "exception":
                raise RuntimeError("the optimizer failed")
    assert blas_threads() == before
    assert obj._steps._pool is None
    assert not [t for t in threading.enumerate() if t.name.startswith("optlab-step")]


@needs_step_kernel
def test_steps_on_several_threads_at_once_each_get_their_own_result() -> None:
    X, y = data(n=400)
    obj = objective(X, y)
    W = weights(obj)
    indices = [np.random.default_rng(k).permutation(400)[:150] for k in range(8)]
    alone = [obj.value_and_grad(W, index) for index in indices]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda index: obj.value_and_grad(W, index), indices * 4))
    for k, (parts, grad) in enumerate(together):
        assert parts == alone[k % 8][0]
        np.testing.assert_array_equal(grad, alone[k % 8][1])


@pytest.mark.parametrize(
    ("rows", "threads", "split"),
    [(200, 2, True), (200, 1, False), (2, 2, False)],
    ids=["cifar-batch", "one-blas-thread", "tiny-batch"],
)
def test_which_steps_are_split_over_two_threads(
    monkeypatch: pytest.MonkeyPatch, rows: int, threads: int, split: bool
) -> None:
    monkeypatch.setattr(batches_module, "blas_threads", lambda: threads)
    assert steps_module.splits_steps(np.zeros((10, 3073), np.float32), rows) is split


@needs_step_kernel
def test_indices_from_the_end_and_out_of_range_behave_as_numpy_indexing() -> None:
    X, y = data()
    obj = objective(X, y)
    W = weights(obj)
    from_end = obj.value_and_grad(W, np.array([-1, -300, 5]))
    counted = obj.value_and_grad(W, np.array([299, 0, 5]))
    assert from_end[0] == counted[0]
    np.testing.assert_array_equal(from_end[1], counted[1])
    for bad in (300, -301):
        with pytest.raises(IndexError):
            obj.value_and_grad(W, np.array([0, bad]))
