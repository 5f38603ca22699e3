"""The cache-blocked full-batch pass equals the straightforward one, split in parts and walked by
several threads too, and Objective uses it."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import optlab
import optlab._contract.fastpath as fastpath
import optlab._contract.objective as objective_module
from optlab import Array
from optlab._contract.backend import score_width
from optlab._contract.blas_threads import blas_threads
from optlab._contract.fastpath import (
    blocked_loss_and_accuracy,
    blocked_loss_and_grad,
    default_block_rows,
)
from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
from optlab_plugins.losses import SoftmaxLoss, SVMLoss
from optlab_plugins.regularizers import L2, Dropout

LOSSES: dict[str, optlab.Loss] = {
    "svm": SVMLoss(),
    "squared_svm": SVMLoss(margin=1.0, squared=True),
    "softmax": SoftmaxLoss(),
}


def problem(n: int, d: int, c: int, dtype: Any, seed: int = 0) -> tuple[Array, Array, Array]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, c, n)
    W = (rng.standard_normal((d, c)) * 0.1).astype(dtype)
    return X, y, W


def straightforward(loss: optlab.Loss, X: Array, y: Array, W: Array) -> tuple[float, Array]:
    scores = X @ W
    value, dscores = loss.loss_and_grad(scores, y)
    return float(value), X.T @ dscores


def assert_close(got: tuple[float, Array], want: tuple[float, Array], dtype: Any) -> None:
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    value, grad = got
    assert grad.dtype == want[1].dtype == np.dtype(dtype)
    assert grad.shape == want[1].shape
    assert value == pytest.approx(want[0], rel=rtol)
    scale = float(np.max(np.abs(want[1])))
    np.testing.assert_allclose(grad, want[1], rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("block_rows", [1, 7, 16, 99, 100, 101, 1000, None])
def test_blocked_equals_straightforward(name: str, dtype: Any, block_rows: int | None) -> None:
    # N = 100: blocks of 7 and 16 leave an uneven last block; 99 a last block of one row;
    # 100 exactly one block; 101 and 1000 a block larger than N
    loss = LOSSES[name]
    X, y, W = problem(100, 37, 10, dtype)
    got = blocked_loss_and_grad(X, y, W, loss.loss_and_grad, block_rows)
    assert_close(got, straightforward(loss, X, y, W), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("c", [2, 3, 8, 10, 16, 17])
def test_padded_score_widths_do_not_change_the_result(dtype: Any, c: int) -> None:
    X, y, W = problem(90, 25, c, dtype, seed=c)
    for loss in LOSSES.values():
        got = blocked_loss_and_grad(X, y, W, loss.loss_and_grad, 32)
        assert_close(got, straightforward(loss, X, y, W), dtype)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 20),
    c=st.integers(2, 12),
    block_rows=st.integers(1, 70),
    seed=st.integers(0, 2**16),
)
def test_blocked_equals_straightforward_any_shape(
    n: int, d: int, c: int, block_rows: int, seed: int
) -> None:
    X, y, W = problem(n, d, c, np.float64, seed)
    loss = LOSSES["softmax"]
    got = blocked_loss_and_grad(X, y, W, loss.loss_and_grad, block_rows)
    assert_close(got, straightforward(loss, X, y, W), np.float64)


def test_large_default_blocks_cover_every_row() -> None:
    # several default-sized blocks at the CIFAR-10 row length and an uneven last one
    rows = default_block_rows(3073, 8)
    n = 2 * rows + rows // 2 + 1
    X, y, W = problem(n, 3073, 10, np.float64)
    loss = LOSSES["svm"]
    assert_close(
        blocked_loss_and_grad(X, y, W, loss.loss_and_grad),
        straightforward(loss, X, y, W),
        np.float64,
    )


def test_float32_stays_float32_without_upcast() -> None:
    X, y, W = problem(50, 9, 4, np.float32)
    seen: list[np.dtype[Any]] = []

    def spy(scores: Array, labels: Array) -> tuple[float, Array]:
        seen.append(scores.dtype)
        return LOSSES["softmax"].loss_and_grad(scores, labels)

    _, grad = blocked_loss_and_grad(X, y, W, spy, 8)
    assert grad.dtype == np.float32
    assert seen and set(seen) == {np.dtype(np.float32)}


def test_check_sees_every_block_with_its_scores() -> None:
    X, y, W = problem(23, 5, 3, np.float64)
    sizes: list[int] = []

    def check(dscores: object, scores: Array) -> None:
        assert isinstance(dscores, np.ndarray) and dscores.shape == scores.shape
        sizes.append(scores.shape[0])

    blocked_loss_and_grad(X, y, W, LOSSES["svm"].loss_and_grad, 10, check=check)
    assert sizes == [10, 10, 3]


def test_loss_sees_contiguous_scores_of_the_true_width() -> None:
    X, y, W = problem(40, 6, 10, np.float32)  # width 10 is computed padded to 16
    assert score_width(10, np.dtype(np.float32)) == 16

    def loss_and_grad(scores: Array, labels: Array) -> tuple[float, Array]:
        assert scores.shape[1] == 10 and scores.flags.c_contiguous
        return LOSSES["softmax"].loss_and_grad(scores, labels)

    blocked_loss_and_grad(X, y, W, loss_and_grad, 16)


def test_empty_training_set_gives_zero_loss_and_gradient() -> None:
    X, y, W = problem(0, 4, 3, np.float64)
    value, grad = blocked_loss_and_grad(X, y, W, LOSSES["softmax"].loss_and_grad)
    assert value == 0.0
    assert grad.shape == (4, 3) and not grad.any()


@pytest.mark.parametrize(
    ("shapes", "message"),
    [(((5, 4), (5,), (3, 2)), "W must be"), (((5, 4), (4,), (4, 2)), "y must be")],
)
def test_inconsistent_shapes_are_refused(shapes: tuple[tuple[int, ...], ...], message: str) -> None:
    X, y, W = (np.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=message):
        blocked_loss_and_grad(X, y.astype(int), W, LOSSES["svm"].loss_and_grad)


def test_block_rows_must_be_positive() -> None:
    X, y, W = problem(5, 3, 2, np.float64)
    with pytest.raises(ValueError, match="block_rows"):
        blocked_loss_and_grad(X, y, W, LOSSES["svm"].loss_and_grad, 0)


@pytest.mark.parametrize(("d", "itemsize"), [(3073, 4), (3073, 8), (65, 8), (10**7, 8)])
def test_default_block_rows_fit_the_budget(d: int, itemsize: int) -> None:
    rows = default_block_rows(d, itemsize)
    assert rows >= 16 and rows % 16 == 0
    assert rows == 16 or rows * d * itemsize <= fastpath.BLOCK_BYTES


# --------------------------------------------------------------------------------------------
# Objective integration
# --------------------------------------------------------------------------------------------


def make_objective(
    dtype: Any, loss: optlab.Loss, regs: tuple[optlab.Regularizer, ...] = (), n: int = 300
) -> Objective:
    X, y, _ = problem(n, 40, 10, dtype, seed=3)
    return Objective(
        X,
        y,
        10,
        BoundLoss(loss, "test_loss", "tests"),
        [BoundRegularizer(r, type(r).__name__.lower(), "tests") for r in regs],
        rng=np.random.default_rng(7),
    )


def always_blocked(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Send every whole training set down the objective's blocked pass ``name``, in 64-row
    blocks; returns the list that records each call of it."""
    calls: list[int] = []
    real = getattr(objective_module, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(objective_module, "BLOCKED_MIN_BYTES", 0)
    monkeypatch.setattr(objective_module, name, counting)
    monkeypatch.setattr(fastpath, "BLOCK_BYTES", 40 * 8 * 64)  # 64-row blocks: several
    return calls


@pytest.fixture
def blocked_always(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Send every full batch down the blocked path; record how often it is taken."""
    return always_blocked(monkeypatch, "blocked_loss_and_grad")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["svm", "softmax"])
def test_objective_full_batch_takes_the_blocked_path(
    blocked_always: list[int], dtype: Any, name: str
) -> None:
    obj = make_objective(dtype, LOSSES[name], (L2(0.1),))
    W = (np.random.default_rng(1).standard_normal(obj.shape) * 0.1).astype(dtype)
    parts, grad = obj.value_and_grad(W)
    assert blocked_always == [1]
    data, data_grad = obj.data_loss_and_grad(W, obj.X, obj.y)
    reg, reg_grad = obj.reg_value_and_grad(W)
    assert reg_grad is not None
    assert_close((parts.data, grad), (data, data_grad + reg_grad), dtype)
    assert parts.reg == pytest.approx(reg)
    assert parts.total == pytest.approx(parts.data + parts.reg)
    # a minibatch still takes the simple path
    obj.value_and_grad(W, np.arange(50))
    assert blocked_always == [1]


def test_small_full_batch_stays_on_the_simple_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(objective_module, "blocked_loss_and_grad", lambda *a, **k: calls.append(1))
    obj = make_objective(np.float64, LOSSES["svm"])
    assert obj.X.nbytes < fastpath.BLOCKED_MIN_BYTES
    obj.value_and_grad(np.zeros(obj.shape))
    assert calls == []


def test_dropout_keeps_the_simple_path_and_its_randomness(blocked_always: list[int]) -> None:
    W = np.full((40, 10), 0.01)
    a = make_objective(np.float64, LOSSES["softmax"], (Dropout(0.5),))
    b = make_objective(np.float64, LOSSES["softmax"], (Dropout(0.5),))
    pa, ga = a.value_and_grad(W)
    # the same draws as perturbing the whole X once, then the straightforward pass
    Xp = b.perturbed(b.X)
    value, grad = b.data_loss_and_grad(W, Xp, b.y)
    assert blocked_always == []
    assert pa.data == value
    np.testing.assert_array_equal(ga, grad)


class WrongDtypeLoss(optlab.Loss):
    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        return 0.0, scores.astype(np.float64)


class WrongShapeLastBlockLoss(optlab.Loss):
    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        n = scores.shape[0]
        return 0.0, np.zeros((n if n >= 64 else n + 1, scores.shape[1]), scores.dtype)


class RaisingLoss(optlab.Loss):
    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        (WrongDtypeLoss(), "score gradient has dtype float64, expected float32"),
        (WrongShapeLastBlockLoss(), r"score gradient has shape \(45, 10\), expected \(44, 10\)"),
        (RaisingLoss(), "raised RuntimeError\\('boom'\\)"),
    ],
)
def test_objective_blocked_path_names_a_misbehaving_loss(
    blocked_always: list[int], loss: optlab.Loss, message: str
) -> None:
    obj = make_objective(np.float32, loss)  # 300 rows in blocks of 128: the last has 44
    with pytest.raises(optlab.ComponentError, match=message) as info:
        obj.value_and_grad(np.zeros(obj.shape, np.float32))
    assert "test_loss" in str(info.value)
    assert not isinstance(info.value.__cause__, optlab.ComponentError)


# --------------------------------------------------------------------------------------------
# Parts and threads
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["svm", "softmax"])
@pytest.mark.parametrize(("parts", "threads"), [(2, 1), (2, 2), (3, 2), (3, 3), (5, 4), (40, 2)])
def test_parts_and_threads_equal_straightforward(
    name: str, dtype: Any, parts: int, threads: int
) -> None:
    # 100 rows in blocks of 7: 15 blocks, uneven parts and an uneven last block; 40 parts are
    # capped at one block each
    loss = LOSSES[name]
    X, y, W = problem(100, 37, 10, dtype)
    got = blocked_loss_and_grad(X, y, W, loss.loss_and_grad, 7, parts=parts, threads=threads)
    assert_close(got, straightforward(loss, X, y, W), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_result_depends_on_parts_not_on_threads(dtype: Any) -> None:
    X, y, W = problem(2000, 300, 10, dtype, seed=5)
    loss = LOSSES["softmax"].loss_and_grad
    serial = blocked_loss_and_grad(X, y, W, loss, 64, parts=3, threads=1)
    threaded = blocked_loss_and_grad(X, y, W, loss, 64, parts=3, threads=3)
    with threadpool_limits(1):  # as in a --jobs N worker
        limited = blocked_loss_and_grad(X, y, W, loss, 64, parts=3, threads=1)
    assert serial[0] == threaded[0] == limited[0]
    np.testing.assert_array_equal(serial[1], threaded[1])
    np.testing.assert_array_equal(serial[1], limited[1])


def test_threads_walk_the_parts_and_never_call_the_loss_at_once() -> None:
    X, y, W = problem(400, 20, 5, np.float64)
    busy = threading.Lock()
    callers: set[str] = set()
    blas: set[int] = set()

    def loss(scores: Array, labels: Array) -> tuple[float, Array]:
        assert busy.acquire(blocking=False), "the loss was called by two threads at once"
        try:
            callers.add(threading.current_thread().name)
            blas.add(blas_threads())
            time.sleep(0.001)  # widen the window another thread would have to enter
            return LOSSES["svm"].loss_and_grad(scores, labels)
        finally:
            busy.release()

    got = blocked_loss_and_grad(X, y, W, loss, 20, parts=3, threads=3)
    assert_close(got, straightforward(LOSSES["svm"], X, y, W), np.float64)
    assert len(callers) == 3  # the calling thread and two helpers
    assert blas == {1}


def test_an_error_in_one_part_stops_the_others_and_restores_blas() -> None:
    X, y, W = problem(1000, 10, 3, np.float64)
    before = blas_threads()
    helper_calls: list[int] = []

    def loss(scores: Array, labels: Array) -> tuple[float, Array]:
        if threading.current_thread() is threading.main_thread():
            raise RuntimeError("boom")
        helper_calls.append(1)
        time.sleep(0.002)
        return LOSSES["svm"].loss_and_grad(scores, labels)

    with pytest.raises(RuntimeError, match="boom"):
        blocked_loss_and_grad(X, y, W, loss, 20, parts=2, threads=2)  # 25 blocks a part
    assert len(helper_calls) < 10
    assert blas_threads() == before


def test_an_error_in_a_helper_thread_reaches_the_caller() -> None:
    X, y, W = problem(100, 10, 3, np.float64)

    def loss(scores: Array, labels: Array) -> tuple[float, Array]:
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("helper")
        return LOSSES["svm"].loss_and_grad(scores, labels)

    with pytest.raises(ValueError, match="helper"):
        blocked_loss_and_grad(X, y, W, loss, 10, parts=2, threads=2)


@pytest.mark.parametrize(("machine", "threads"), [(2, 2), (2, 4), (4, 4), (4, 2), (16, 16)])
def test_objective_full_batch_is_the_same_on_any_number_of_threads(
    blocked_always: list[int], monkeypatch: pytest.MonkeyPatch, machine: int, threads: int
) -> None:
    """The parts come from the machine's core count; the threads that walk them (BLAS's
    count: 1 in a --jobs N worker) change nothing in the result."""
    obj = make_objective(np.float32, LOSSES["softmax"], (L2(0.1),), n=2000)
    W = (np.random.default_rng(1).standard_normal(obj.shape) * 0.1).astype(np.float32)
    walked: list[int] = []
    real = fastpath._Walker.walk

    def spy(*args: Any, **kwargs: Any) -> tuple[float, Array]:
        walked.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(fastpath._Walker, "walk", spy)
    monkeypatch.setattr(objective_module, "cores", lambda: machine)
    monkeypatch.setattr(objective_module, "blas_threads", lambda: 1)
    worker = obj.value_and_grad(W)
    parts = fastpath.full_batch_parts(machine)
    assert len(walked) == parts and len(set(walked)) == 1
    monkeypatch.setattr(objective_module, "blas_threads", lambda: threads)
    walked.clear()
    got = obj.value_and_grad(W)
    assert len(walked) == parts  # 2000 rows in 64-row blocks: 32 blocks, enough for 8 parts
    # the calling thread and at least one helper (a helper done early may take another part)
    assert 2 <= len(set(walked)) <= min(threads, parts)
    assert got[0] == worker[0]
    np.testing.assert_array_equal(got[1], worker[1])


@pytest.mark.parametrize(("machine", "parts"), [(1, 2), (2, 2), (3, 3), (8, 8), (64, 8)])
def test_full_batch_parts_follow_the_machine(machine: int, parts: int) -> None:
    assert fastpath.full_batch_parts(machine) == parts


# ------------------------------------------------------------------ evaluation (loss, accuracy)


def straightforward_evaluation(
    loss: optlab.Loss, X: Array, y: Array, W: Array
) -> tuple[float, int]:
    scores = X @ W
    correct = int(np.count_nonzero(np.argmax(scores, axis=1) == y))
    return float(loss.loss(scores, y)), correct


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize(("block_rows", "parts", "threads"), [(7, 1, 1), (7, 3, 2), (100, 2, 2)])
def test_blocked_evaluation_equals_straightforward(
    name: str, dtype: Any, block_rows: int, parts: int, threads: int
) -> None:
    X, y, W = problem(100, 37, 10, dtype)
    loss = LOSSES[name]
    value, correct = blocked_loss_and_accuracy(
        X, y, W, loss.loss, block_rows, parts=parts, threads=threads
    )
    want_value, want_correct = straightforward_evaluation(loss, X, y, W)
    assert value == pytest.approx(want_value, rel=1e-5 if dtype == np.float32 else 1e-12)
    assert correct == want_correct


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("c", [2, 3, 10, 16, 17])
def test_blocked_evaluation_on_padded_widths(dtype: Any, c: int) -> None:
    """W is padded to the backend's faster width for the product; the loss and the predictions
    see the C true columns only (zero padding would win every row whose scores are negative)."""
    X, y, W = problem(150, 33, c, dtype, seed=4)
    W -= 1.0  # negative scores: a padded column of zeros would be each row's maximum
    assert score_width(c, np.dtype(dtype)) >= c
    seen: list[int] = []

    def loss(scores: Array, labels: Array) -> float:
        seen.append(scores.shape[1])
        return LOSSES["softmax"].loss(scores, labels)

    got = blocked_loss_and_accuracy(X, y, W, loss, 64, parts=2, threads=2)
    want = straightforward_evaluation(LOSSES["softmax"], X, y, W)
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    assert got[1] == want[1]
    assert set(seen) == {c}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_evaluation_depends_on_parts_not_on_threads(dtype: Any) -> None:
    X, y, W = problem(2000, 300, 10, dtype, seed=5)
    loss = LOSSES["softmax"].loss
    serial = blocked_loss_and_accuracy(X, y, W, loss, 64, parts=3, threads=1)
    threaded = blocked_loss_and_accuracy(X, y, W, loss, 64, parts=3, threads=3)
    with threadpool_limits(1):  # as in a --jobs N worker
        limited = blocked_loss_and_accuracy(X, y, W, loss, 64, parts=3, threads=1)
    assert serial == threaded == limited


def test_blocked_evaluation_never_calls_the_loss_at_once() -> None:
    X, y, W = problem(400, 20, 5, np.float64)
    busy = threading.Lock()
    callers: set[str] = set()

    def loss(scores: Array, labels: Array) -> float:
        assert busy.acquire(blocking=False), "the loss was called by two threads at once"
        try:
            callers.add(threading.current_thread().name)
            time.sleep(0.001)
            return LOSSES["svm"].loss(scores, labels)
        finally:
            busy.release()

    value, _ = blocked_loss_and_accuracy(X, y, W, loss, 20, parts=3, threads=3)
    assert value == pytest.approx(straightforward_evaluation(LOSSES["svm"], X, y, W)[0])
    # the calling thread walks the first part and a pool thread the others: at least two
    # threads called the loss (a busy machine may let one pool thread walk both other parts)
    assert len(callers) >= 2


def test_blocked_evaluation_of_no_rows_and_bad_blocks() -> None:
    X, y, W = problem(0, 5, 3, np.float64)
    assert blocked_loss_and_accuracy(X, y, W, LOSSES["svm"].loss) == (0.0, 0)
    with pytest.raises(ValueError, match="block_rows"):
        blocked_loss_and_accuracy(X, y, W, LOSSES["svm"].loss, 0)


@pytest.mark.parametrize("name", ["svm", "softmax"])
def test_objective_evaluates_a_large_training_set_in_blocks(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """value_and_accuracy walks a training set of BLOCKED_MIN_BYTES or more in blocks, with the
    numbers of the one-product evaluation (to rounding), and names a loss that fails there."""
    obj = make_objective(np.float64, LOSSES[name], (L2(0.1),))
    W = (np.random.default_rng(1).standard_normal(obj.shape) * 0.1).astype(np.float64)
    whole, whole_accuracy = obj.value_and_accuracy(W)
    calls = always_blocked(monkeypatch, "blocked_loss_and_accuracy")
    blocked, blocked_accuracy = obj.value_and_accuracy(W)
    assert calls == [1]
    assert blocked.data == pytest.approx(whole.data, rel=1e-12)
    assert blocked.reg == whole.reg
    assert blocked_accuracy == whole_accuracy
    monkeypatch.setattr(objective_module, "BLOCKED_MIN_BYTES", obj.X.nbytes + 1)  # one product
    assert obj.value_and_accuracy(W)[1] == whole_accuracy
    assert calls == [1]
    monkeypatch.setattr(objective_module, "BLOCKED_MIN_BYTES", 0)

    def broken(scores: Array, labels: Array) -> float:
        raise RuntimeError("boom")

    monkeypatch.setattr(obj.loss.impl, "loss", broken)
    with pytest.raises(optlab.ComponentError, match=r"test_loss.*boom"):
        obj.value_and_accuracy(W)
