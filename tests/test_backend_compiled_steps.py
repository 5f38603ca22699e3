"""The compiled backend's fused minibatch step (``CompiledBackend.stepper``, a ``StepKernel``):
offered for the bundled svm and softmax losses (not for a subclass that changes them) where the
kernel takes the training set; its loss and gradient are the loss's and numpy's products (to
rounding), the same bits with the helper thread or without, also through the objective and a
whole SGD run; it counts negative indices from the end, takes empty batches, waits for its
helper when one half fails, and gives the helper thread and BLAS's threads back."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from kernel_sets import rtol

import optlab
import optlab._contract.objective as objective_module
import optlab_plugins.compiled._steps as steps_module
from optlab import Array, Backend
from optlab._contract.batches import Batch
from optlab._contract.blas_threads import blas_threads
from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
from optlab.testing import RecordingMonitor
from optlab_plugins.compiled import (
    MAX_SCORE_CLASSES,
    MIN_SCORE_FEATURES,
    CompiledBackend,
    StepKernel,
    loss_form,
)
from optlab_plugins.compiled._kernelset import KernelSet
from optlab_plugins.losses import SoftmaxLoss, SVMLoss, SVMParams, optlab_register_losses
from optlab_plugins.optimizers import SGDParams, _sgd
from optlab_plugins.regularizers import L2, Dropout

D = MIN_SCORE_FEATURES + 5
LOSSES = {
    "hinge": SVMLoss(),
    "hinge-margin": SVMLoss(0.3),
    "squared_hinge": SVMLoss(0.7, squared=True),
    "softmax": SoftmaxLoss(),
}


def data(n: int = 300, d: int = D, c: int = 10, dtype: Any = np.float64) -> tuple[Array, Array]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, c, n)


def objective(
    X: Array,
    y: Array,
    backend: Backend,
    loss: optlab.Loss | None = None,
    *regs: optlab.Regularizer,
) -> Objective:
    loss = loss if loss is not None else SoftmaxLoss()
    bound = [BoundRegularizer(r, type(r).__name__) for r in regs]
    return Objective(X, y, int(y.max()) + 1, BoundLoss(loss, "loss"), bound, backend=backend)


def weights(shape: tuple[int, int], dtype: Any = np.float64, seed: int = 2) -> Array:
    rng = np.random.default_rng(seed)
    return (0.05 * rng.standard_normal(shape)).astype(dtype)


def helper_threads() -> list[str]:
    """The step's helper threads alive now."""
    return [t.name for t in threading.enumerate() if t.name.startswith("optlab-step")]


@pytest.fixture
def split_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch, however small, has its second half run on the helper thread in a session
    with two threads (only large ones do otherwise)."""
    monkeypatch.setattr(steps_module, "SPLIT_MIN_BYTES", 0)


class ThirdPartySoftmax(optlab.Loss):
    """A loss of a third-party plugin: no fused step."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        return SoftmaxLoss().loss_and_grad(scores, y)


class SquaredSoftmax(SoftmaxLoss):
    """A subclass of a bundled loss that changes it: it must lose the fused step."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        value, grad = super().loss_and_grad(scores, y)
        return value**2, 2 * value * grad


class DoubledSVM(SVMLoss):
    """The same for the svm."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        value, grad = super().loss_and_grad(scores, y)
        return 2 * value, 2 * grad


class RenamedSoftmax(SoftmaxLoss):
    """A subclass that computes the loss as its parent does: it keeps the fused step."""


# ------------------------------------------------------------------------- which losses, where
def test_the_bundled_losses_have_a_form_and_changed_subclasses_do_not() -> None:
    assert loss_form(SVMLoss(0.5)) == ("hinge", 0.5)
    assert loss_form(SVMLoss(2.0, squared=True)) == ("squared_hinge", 2.0)
    assert loss_form(SoftmaxLoss()) == ("softmax", 0.0)
    assert loss_form(RenamedSoftmax()) == ("softmax", 0.0)
    assert loss_form(SquaredSoftmax()) is None
    assert loss_form(DoubledSVM()) is None
    assert loss_form(ThirdPartySoftmax()) is None


@pytest.mark.parametrize(
    ("params", "form"),
    [
        ({}, ("hinge", 1.0)),
        ({"squared": True}, ("squared_hinge", 1.0)),
        ({"include_correct": True}, None),
        ({"classes": "mean"}, None),
        ({"include_correct": True, "classes": "mean", "squared": True}, None),
    ],
)
def test_the_svm_keeps_the_step_in_its_default_forms_only(
    kernel: KernelSet, params: dict[str, Any], form: tuple[str, float] | None
) -> None:
    """An svm summed over every class or averaged over classes trains on numpy's path; the
    lecture's loss (the spec's defaults) keeps the fused step."""
    (record,) = [r for r in optlab_register_losses() if r.name == "svm"]
    loss = record.factory(SVMParams(**params))
    assert loss_form(loss) == form
    X, y = np.zeros((4, D), np.float64), np.zeros(4, np.int64)
    assert (CompiledBackend(kernel).stepper(X, y, 10, loss) is not None) is (form is not None)


@pytest.mark.parametrize(
    ("case", "offered"),
    [
        ("float64", True),
        ("float32 CIFAR-10 width", True),
        ("svm", True),
        ("features below MIN_SCORE_FEATURES", False),
        ("classes above MAX_SCORE_CLASSES", False),
        ("float16", False),
        ("Fortran-ordered X", False),
        ("third-party loss", False),
        ("changed subclass", False),
    ],
)
def test_the_step_is_offered_exactly_where_the_kernel_takes_the_training_set(
    kernel: KernelSet, case: str, offered: bool
) -> None:
    d, c = MIN_SCORE_FEATURES, MAX_SCORE_CLASSES
    dtype: Any = np.float64
    loss: optlab.Loss = SoftmaxLoss()
    if case == "float32 CIFAR-10 width":
        d, dtype = 3073, np.float32
    elif case == "svm":
        loss = SVMLoss()
    elif case == "features below MIN_SCORE_FEATURES":
        d -= 1
    elif case == "classes above MAX_SCORE_CLASSES":
        c += 1
    elif case == "float16":
        dtype = np.float16
    elif case == "third-party loss":
        loss = ThirdPartySoftmax()
    elif case == "changed subclass":
        loss = SquaredSoftmax()
    X, y = np.zeros((4, d), dtype), np.zeros(4, np.int64)
    if case == "Fortran-ordered X":
        X = np.asfortranarray(X)
    stepper = CompiledBackend(kernel).stepper(X, y, c, loss)
    assert (stepper is not None) is offered
    if stepper is not None:
        assert stepper.fits(np.zeros((d, c), dtype))
        assert not stepper.fits(np.zeros((d, c), np.float16))
        assert not stepper.fits(np.zeros((d, c + 1), dtype))
    assert Backend().stepper(X, y, c, loss) is None  # numpy has none: batches are copied


# ------------------------------------------------------------------------------ the step itself
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_the_step_equals_the_loss_and_the_products_on_one_thread_or_two(
    kernel: KernelSet, split_every_step: None, loss: str, dtype: Any
) -> None:
    """Against the loss and products on the copied rows in float64, the same bits whether the
    second half runs on the helper thread or not; a fresh gradient of W's dtype."""
    X, y = data(dtype=dtype)
    stepper = CompiledBackend(kernel).stepper(X, y, 10, LOSSES[loss])
    assert stepper is not None
    W = weights((D, 10), dtype)
    assert stepper.fits(W)
    index = np.random.default_rng(5).integers(0, 300, 77)  # repeats, any order
    X64 = X[index].astype(np.float64)
    want_loss, dscores = LOSSES[loss].loss_and_grad(X64 @ W.astype(np.float64), y[index])
    want = X64.T @ dscores
    results = []
    for threads in (1, 2):
        with stepper.session(len(index), threads):
            results.append(stepper.loss_and_grad(W, index))
    tol = rtol(dtype)
    for value, grad in results:
        assert value == pytest.approx(want_loss, rel=tol)
        assert grad.shape == W.shape and grad.dtype == np.dtype(dtype)
        assert not np.shares_memory(grad, W)
        np.testing.assert_allclose(grad, want, rtol=tol, atol=tol * float(np.abs(want).max()))
    (one, grad_one), (two, grad_two) = results
    assert one == two
    np.testing.assert_array_equal(grad_one, grad_two)


@pytest.mark.parametrize("B", [1, 2, 3, 200, 201])
def test_halves_on_the_helper_thread_give_the_same_bits_as_in_turn(
    kernel: KernelSet, split_every_step: None, B: int
) -> None:
    X, y = data(n=400)
    stepper = StepKernel(kernel, X, y, 10, "softmax")
    W = weights((D, 10))
    index = np.random.default_rng(B).permutation(400)[:B]
    in_turn = stepper.loss_and_grad(W, index)
    with stepper.session(B, 2):
        helped = stepper.loss_and_grad(W, index)
        if B > 1:
            assert helper_threads()
    assert not helper_threads()
    assert helped[0] == in_turn[0]
    np.testing.assert_array_equal(helped[1], in_turn[1])


@pytest.mark.parametrize(
    ("rows", "threads", "split"),
    [(200, 2, True), (200, 1, False), (2, 2, False)],
    ids=["cifar-batch", "one-thread", "tiny-batch"],
)
def test_which_steps_are_split_over_two_threads(
    kernel: KernelSet, rows: int, threads: int, split: bool
) -> None:
    """A helper thread only where a thread is lent and a batch's rows are large enough
    (SPLIT_MIN_BYTES: CIFAR-10's batch of 200 float32 rows is)."""
    X = np.zeros((10, 3073), np.float32)
    stepper = StepKernel(kernel, X, np.zeros(10, np.int64), 10, "hinge", 1.0)
    W = np.zeros((3073, 10), np.float32)
    with stepper.session(rows, threads):
        stepper.loss_and_grad(W, np.arange(rows) % 10)
        assert bool(helper_threads()) is split
    assert not helper_threads()


@pytest.mark.parametrize("threads", [1, 2])
def test_an_empty_batch_has_no_loss_and_a_zero_gradient(
    kernel: KernelSet, split_every_step: None, threads: int
) -> None:
    for dtype in (np.float32, np.float64):
        X, y = data(dtype=dtype)
        stepper = StepKernel(kernel, X, y, 10, "softmax")
        with stepper.session(0, threads):
            value, grad = stepper.loss_and_grad(weights((D, 10), dtype), np.empty(0, np.int64))
        assert value == 0.0
        assert grad.shape == (D, 10) and grad.dtype == np.dtype(dtype) and not grad.any()


@pytest.mark.parametrize("threads", [1, 2])
def test_indices_from_the_end_and_out_of_range_behave_as_numpy_indexing(
    kernel: KernelSet, split_every_step: None, threads: int
) -> None:
    X, y = data()
    W = weights((D, 10))
    stepper = StepKernel(kernel, X, y, 10, "hinge", 1.0)
    obj = objective(X, y, CompiledBackend(kernel), SVMLoss())
    with stepper.session(4, threads):
        from_end = stepper.loss_and_grad(W, np.array([-1, -300, 5, -2]))
        counted = stepper.loss_and_grad(W, np.array([299, 0, 5, 298]))
        for bad in (300, -301):
            with pytest.raises(IndexError):
                stepper.loss_and_grad(W, np.array([0, 1, bad, 2]))
    assert from_end[0] == counted[0]
    np.testing.assert_array_equal(from_end[1], counted[1])
    through_objective = obj.value_and_grad(W, np.array([-1, -300, 5, -2]))
    assert through_objective[0].data == from_end[0]
    np.testing.assert_array_equal(through_objective[1], from_end[1])
    for bad in (300, -301):
        with pytest.raises(IndexError):
            obj.value_and_grad(W, np.array([0, bad]))


def test_an_error_in_one_half_waits_for_the_other(
    kernel: KernelSet, split_every_step: None
) -> None:
    """The helper's half writes into the step's arrays: a failing first half returns only once
    the helper is done; a failing second half reaches the caller."""
    done: list[float] = []

    def slow_helper(*args: Any) -> float:
        if threading.current_thread().name.startswith("optlab-step"):
            time.sleep(0.05)
            value = float(kernel.step(*args))
            done.append(value)
            return value
        return float(kernel.step(*args))

    X, y = data()
    stepper = StepKernel(dataclasses.replace(kernel, step=slow_helper), X, y, 10, "softmax")
    W = weights((D, 10))
    first_bad, second_bad = np.arange(100), np.arange(100)
    first_bad[3] = second_bad[80] = 300
    with stepper.session(100, 2):
        with pytest.raises(IndexError, match=r"index\[3\] = 300 is not a row of X"):
            stepper.loss_and_grad(W, first_bad)
        assert len(done) == 1  # the helper's half had finished
        with pytest.raises(IndexError, match=r"= 300 is not a row of X"):
            stepper.loss_and_grad(W, second_bad)
        value, grad = stepper.loss_and_grad(W, np.arange(100))  # and the stepper still works
    want = StepKernel(kernel, X, y, 10, "softmax").loss_and_grad(W, np.arange(100))
    assert value == want[0]
    np.testing.assert_array_equal(grad, want[1])


# --------------------------------------------------------------------------- through the objective
@pytest.mark.parametrize(
    ("case", "in_place"),
    [
        ("softmax", True),
        ("svm", True),
        ("l2", True),
        ("float32", True),
        ("numpy backend", False),
        ("third-party loss", False),
        ("changed subclass", False),
        ("dropout", False),
        ("few features", False),
    ],
)
def test_the_objective_reads_rows_in_place_exactly_where_the_backend_has_a_step(
    kernel: KernelSet, case: str, in_place: bool
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
    backend = Backend() if case == "numpy backend" else CompiledBackend(kernel)
    obj = objective(X, y, backend, losses.get(case), *regs)
    indices = [np.arange(0, 100), np.arange(100, 300)]
    with obj.minibatches(indices) as stream:
        batches = list(stream)
    assert [b.copied is None for b in batches] == [in_place, in_place]
    for batch, index in zip(batches, indices, strict=True):
        np.testing.assert_array_equal(batch.index, index)
        np.testing.assert_array_equal(batch.y, y[index])
        np.testing.assert_array_equal(batch.X, X[index])  # copied on first use if not before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_step_in_place_equals_the_numpy_backend_on_the_copied_rows(
    kernel: KernelSet, loss: str, dtype: Any
) -> None:
    X, y = data(dtype=dtype)
    obj = objective(X, y, CompiledBackend(kernel), LOSSES[loss], L2(0.01))
    reference = objective(X, y, Backend(), LOSSES[loss], L2(0.01))
    W = weights(obj.shape, dtype)
    index = np.random.default_rng(5).permutation(300)[:77]
    parts, grad = obj.value_and_grad(W, index)
    want_parts, want = reference.value_and_grad(W, index)
    tol = rtol(dtype)
    assert parts.data == pytest.approx(want_parts.data, rel=tol)
    assert parts.total == pytest.approx(want_parts.total, rel=tol)
    assert parts.reg == want_parts.reg
    assert grad.dtype == np.dtype(dtype) and grad.shape == W.shape
    np.testing.assert_allclose(grad, want, rtol=tol, atol=tol * float(np.abs(want).max()))


def test_a_batch_and_its_indices_give_the_same_bits(kernel: KernelSet) -> None:
    X, y = data()
    obj = objective(X, y, CompiledBackend(kernel))
    W = weights(obj.shape)
    index = np.arange(40, 120)
    with obj.minibatches([index]) as stream:
        (batch,) = list(stream)
        by_batch = obj.value_and_grad(W, batch)
    by_index = obj.value_and_grad(W, index)
    assert by_batch[0] == by_index[0]
    np.testing.assert_array_equal(by_batch[1], by_index[1])


def test_a_batch_of_another_training_set_is_read_from_its_copy(kernel: KernelSet) -> None:
    X, y = data()
    obj = objective(X, y, CompiledBackend(kernel))
    other = Batch(np.arange(5), y[:5], X.copy())
    parts, _ = obj.value_and_grad(weights(obj.shape), other)
    want, _ = obj.data_loss_and_grad(weights(obj.shape), X[:5], y[:5])
    assert parts.data == pytest.approx(want, rel=1e-10)


def sgd_epochs(
    X: Array, y: Array, backend: Backend, loss: optlab.Loss, *regs: optlab.Regularizer
) -> tuple[Array, RecordingMonitor]:
    obj = objective(X, y, backend, loss, *regs)
    sgd = _sgd(SGDParams(lr=0.05, batch_size=50, epochs=2, momentum=0.9))
    monitor = RecordingMonitor()
    W = sgd.minimize(obj, np.zeros(obj.shape, X.dtype), np.random.default_rng(7), monitor)
    return W, monitor


@pytest.mark.parametrize("loss", [SVMLoss(), SoftmaxLoss()], ids=["svm", "softmax"])
def test_sgd_trains_the_same_bits_with_a_helper_thread_and_without(
    monkeypatch: pytest.MonkeyPatch, kernel: KernelSet, split_every_step: None, loss: optlab.Loss
) -> None:
    """``--jobs 1`` (BLAS given one thread) and ``--jobs N`` train the same weights."""
    X, y = data()
    runs = []
    for threads in (1, 2):
        monkeypatch.setattr(objective_module, "blas_threads", lambda threads=threads: threads)
        runs.append(sgd_epochs(X, y, CompiledBackend(kernel), loss))
    (W_alone, m_alone), (W_two, m_two) = runs
    np.testing.assert_array_equal(W_two, W_alone)
    assert [s.loss for s in m_two.steps] == [s.loss for s in m_alone.steps]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_in_place_trains_the_numpy_backends_weights_to_rounding(
    kernel: KernelSet, dtype: Any
) -> None:
    X, y = data(dtype=dtype)
    W_in_place, m_in_place = sgd_epochs(X, y, CompiledBackend(kernel), SVMLoss(), L2(0.01))
    W_copied, m_copied = sgd_epochs(X, y, Backend(), SVMLoss(), L2(0.01))
    tol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(W_in_place, W_copied, rtol=tol, atol=tol * np.abs(W_copied).max())
    np.testing.assert_allclose(
        [s.loss for s in m_in_place.steps], [s.loss for s in m_copied.steps], rtol=tol
    )


@pytest.mark.parametrize("how", ["exhausted", "break", "exception"])
def test_blas_threads_and_the_helper_are_given_back_however_the_stream_ends(
    monkeypatch: pytest.MonkeyPatch, kernel: KernelSet, split_every_step: None, how: str
) -> None:
    monkeypatch.setattr(objective_module, "blas_threads", lambda: 2)  # a thread to lend
    X, y = data()
    obj = objective(X, y, CompiledBackend(kernel))
    before = blas_threads()
    W = weights(obj.shape)
    expected = pytest.raises(RuntimeError) if how == "exception" else contextlib.nullcontext()
    with expected, obj.minibatches([np.arange(0, 100), np.arange(100, 200)]) as stream:
        for batch in stream:
            assert batch.copied is None
            assert blas_threads() == 1
            obj.value_and_grad(W, batch)
            assert helper_threads()
            if how == "break":
                break
            if how == "exception":
                raise RuntimeError("the optimizer failed")
    assert blas_threads() == before
    assert not helper_threads()


def test_steps_on_several_threads_at_once_each_get_their_own_result(kernel: KernelSet) -> None:
    X, y = data(n=400)
    obj = objective(X, y, CompiledBackend(kernel))
    W = weights(obj.shape)
    indices = [np.random.default_rng(k).permutation(400)[:150] for k in range(8)]
    alone = [obj.value_and_grad(W, index) for index in indices]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda index: obj.value_and_grad(W, index), indices * 4))
    for k, (parts, grad) in enumerate(together):
        assert parts == alone[k % 8][0]
        np.testing.assert_array_equal(grad, alone[k % 8][1])
