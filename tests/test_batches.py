"""Minibatches gathered ahead on a helper thread are the same batches, in the same order, and
training on them gives bit-identical weights; BLAS gets its threads back however the stream
ends."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np
import pytest

import optlab
import optlab._contract.batches as batches_module
from optlab import Array
from optlab._contract.batches import Batch, gathers_ahead, minibatches
from optlab._contract.blas_threads import blas_threads
from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
from optlab.testing import RecordingMonitor
from optlab_plugins.losses import SoftmaxLoss
from optlab_plugins.optimizers import SGDParams, _sgd
from optlab_plugins.regularizers import L2, Dropout


def data(n: int = 230, d: int = 17, c: int = 4, seed: int = 0) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


def partition(n: int, size: int, seed: int = 1) -> list[Array]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def spy_on_gathers(monkeypatch: pytest.MonkeyPatch, *, ahead: bool) -> list[str]:
    """Record the name of the thread that gathers each batch; with ``ahead``, every batch is
    gathered ahead, as on a machine whose BLAS has two threads."""
    names: list[str] = []
    real = batches_module._gather

    def spy(X: Array, y: Array, index: Array) -> Batch:
        names.append(threading.current_thread().name)
        return real(X, y, index)

    if ahead:
        monkeypatch.setattr(batches_module, "AHEAD_MIN_BYTES", 0)
        monkeypatch.setattr(batches_module, "blas_threads", lambda: 2)
    monkeypatch.setattr(batches_module, "_gather", spy)
    return names


@pytest.fixture
def ahead(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every batch gathered ahead; returns the names of the threads that gathered."""
    return spy_on_gathers(monkeypatch, ahead=True)


@pytest.mark.parametrize("gather_ahead", [False, True])
def test_the_batches_are_the_rows_of_each_index_in_order(
    monkeypatch: pytest.MonkeyPatch, gather_ahead: bool
) -> None:
    X, y = data()
    indices = partition(len(y), 32)  # the last batch is short
    names = spy_on_gathers(monkeypatch, ahead=gather_ahead)
    with minibatches(X, y, indices) as stream:
        got = list(stream)
    assert [b.index.tolist() for b in got] == [i.tolist() for i in indices]
    for batch in got:
        np.testing.assert_array_equal(batch.X, X[batch.index])
        np.testing.assert_array_equal(batch.y, y[batch.index])
        assert len(batch) == len(batch.index)
    if gather_ahead:
        assert len(names) == len(indices)
        assert all(name.startswith("optlab-gather") for name in names)
    else:
        assert names == []  # gathered in place, by the consumer


def test_blas_is_single_threaded_while_the_stream_runs_and_restored_after(
    ahead: list[str],
) -> None:
    X, y = data()
    before = blas_threads()
    seen = []
    with minibatches(X, y, partition(len(y), 50)) as stream:
        for _ in stream:
            seen.append(blas_threads())
    assert seen and set(seen) == {1}
    assert blas_threads() == before
    assert ahead  # the helper thread did gather


def test_batches_gathered_in_place_train_on_single_threaded_blas_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # as in --jobs 1 with small batches: the products round as in a one-thread worker
    monkeypatch.setattr(batches_module, "blas_threads", lambda: 2)
    X, y = data()
    assert not gathers_ahead(X, 50)
    before = blas_threads()
    with minibatches(X, y, partition(len(y), 50)) as stream:
        seen = [blas_threads() for _ in stream]
    assert seen and set(seen) == {1}
    assert blas_threads() == before


@pytest.mark.parametrize("how", ["error", "break"])
def test_leaving_the_stream_early_restores_blas(ahead: list[str], how: str) -> None:
    X, y = data()
    before = blas_threads()
    indices = partition(len(y), 10)
    taken = 0
    expect = pytest.raises(RuntimeError) if how == "error" else contextlib.nullcontext()
    with expect, minibatches(X, y, indices) as stream:
        for _ in stream:
            taken += 1
            if taken == 3:
                if how == "error":
                    raise RuntimeError("stop")
                break
    assert taken == 3
    assert len(ahead) <= 4  # the three taken and at most the one in flight
    assert blas_threads() == before
    assert not any(t.name.startswith("optlab-gather") for t in threading.enumerate())


@pytest.mark.parametrize(
    ("batch", "threads", "expected"),
    [
        (200, 2, True),  # 200 rows of 3,073 float32: 2.4 MB, as CIFAR-10 at batch 200
        (200, 1, False),  # a --jobs N worker: BLAS has no second thread to lend
        (32, 2, False),  # 32 rows of 65 float64 (digits): 16 KB, cheaper copied in place
    ],
)
def test_which_batches_are_gathered_ahead(
    monkeypatch: pytest.MonkeyPatch, batch: int, threads: int, expected: bool
) -> None:
    monkeypatch.setattr(batches_module, "blas_threads", lambda: threads)
    X = np.empty((1, 3073), np.float32) if batch == 200 else np.empty((1, 65))
    assert gathers_ahead(X, batch) is expected


def test_a_single_batch_is_never_handed_to_a_thread(ahead: list[str]) -> None:
    X, y = data()
    with minibatches(X, y, [np.arange(10)]) as stream:
        (batch,) = list(stream)
    assert ahead == [] and batch.index.tolist() == list(range(10))


def objective(X: Array, y: Array, *regs: optlab.Regularizer) -> Objective:
    return Objective(
        X,
        y,
        4,
        BoundLoss(SoftmaxLoss(), "softmax", "tests"),
        [BoundRegularizer(r, type(r).__name__.lower(), "tests") for r in regs],
        rng=np.random.default_rng(3),
    )


def test_value_and_grad_of_a_batch_equals_that_of_its_indices() -> None:
    X, y = data()
    obj = objective(X, y, L2(0.01))
    W = np.random.default_rng(2).standard_normal(obj.shape) * 0.1
    index = np.random.default_rng(4).permutation(len(y))[:40]
    by_batch = obj.value_and_grad(W, Batch(index, y[index], X, X[index]))
    by_index = obj.value_and_grad(W, index)
    assert by_batch[0] == by_index[0]
    np.testing.assert_array_equal(by_batch[1], by_index[1])


def sgd_epochs(X: Array, y: Array, *regs: optlab.Regularizer) -> tuple[Array, RecordingMonitor]:
    obj = objective(X, y, *regs)
    sgd = _sgd(SGDParams(lr=0.05, batch_size=25, epochs=3, momentum=0.9))
    monitor = RecordingMonitor()
    W = sgd.minimize(obj, np.zeros(obj.shape), np.random.default_rng(7), monitor)
    return W, monitor


@pytest.mark.parametrize("regs", [(), (L2(0.01), Dropout(0.3))], ids=["plain", "dropout"])
def test_sgd_on_batches_gathered_ahead_trains_bit_identical_weights(
    monkeypatch: pytest.MonkeyPatch, regs: tuple[Any, ...]
) -> None:
    X, y = data()
    W_here, m_here = sgd_epochs(X, y, *regs)
    names = spy_on_gathers(monkeypatch, ahead=True)
    W_ahead, m_ahead = sgd_epochs(X, y, *regs)
    assert len(names) == 3 * 10 and all(n.startswith("optlab-gather") for n in names)
    np.testing.assert_array_equal(W_ahead, W_here)
    assert [s.loss for s in m_ahead.steps] == [s.loss for s in m_here.steps]
    assert [s.examples for s in m_ahead.steps] == [s.examples for s in m_here.steps]


# ------------------------------------------------------------------- products split into parts


def _many_classes(C: int = 300) -> tuple[Objective, Any]:
    """A problem whose batches' products are split (C >= SPLIT_MIN_CLASSES, 560 KB a batch)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((800, 700)).astype(np.float32)
    y = rng.integers(0, C, 800)
    objective = Objective(
        X, y, C, BoundLoss(SoftmaxLoss(), "softmax"), [BoundRegularizer(L2(1e-3), "l2")]
    )
    return objective, _sgd(SGDParams(lr=0.5, batch_size=200, epochs=2))


@pytest.mark.parametrize("threads", [1, 2])
def test_split_products_train_the_same_bits_on_any_number_of_threads(
    monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """With many classes a batch's products are split into the machine's parts (the scores by
    rows, the weight gradient by features), walked by as many threads as BLAS lends: --jobs 1
    (two threads) and a --jobs N worker (one) train the same weights, and the same as the
    products unsplit, to rounding."""
    import optlab._contract.objective as objective_module

    assert objective_module.SPLIT_MIN_CLASSES <= 300
    weights = {}
    for lend in (1, threads):
        monkeypatch.setattr(objective_module, "blas_threads", lambda lend=lend: lend)
        objective, sgd = _many_classes()
        W0 = np.zeros(objective.shape, np.float32)
        weights[lend] = sgd.minimize(objective, W0, np.random.default_rng(0), RecordingMonitor())
    np.testing.assert_array_equal(weights[1], weights[threads])
    monkeypatch.setattr(objective_module, "SPLIT_MIN_CLASSES", 10**9)  # unsplit
    objective, sgd = _many_classes()
    W0 = np.zeros(objective.shape, np.float32)
    unsplit = sgd.minimize(objective, W0, np.random.default_rng(0), RecordingMonitor())
    np.testing.assert_allclose(weights[1], unsplit, rtol=1e-4, atol=1e-6)


def test_split_products_use_a_helper_thread_where_blas_lends_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import optlab._contract.objective as objective_module

    monkeypatch.setattr(objective_module, "blas_threads", lambda: 2)
    objective, _ = _many_classes()
    seen: set[str] = set()
    scores = objective.backend.scores

    def watching(X: Array, W: Array, out: Array | None = None, *, threads: int = 1) -> Array:
        seen.add(threading.current_thread().name.split("_")[0])
        return scores(X, W, out, threads=threads)

    monkeypatch.setattr(objective.backend, "scores", watching)
    indices = [np.arange(200), np.arange(200, 400)]
    W = np.zeros(objective.shape, np.float32)
    with objective.minibatches(indices) as stream:
        for batch in stream:
            objective.value_and_grad(W, batch)
    assert seen == {"MainThread", "optlab-products"}
    assert not any(t.name.startswith("optlab-products") for t in threading.enumerate())
