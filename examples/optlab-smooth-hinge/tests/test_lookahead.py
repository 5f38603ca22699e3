"""Lookahead SGD's own properties, beyond conformance."""

from __future__ import annotations

import numpy as np
import optlab
import pytest
from optlab.testing import RecordingMonitor, toy_objective

from optlab_smooth_hinge import LookaheadParams, LookaheadSGD


def _plain_sgd(
    objective: optlab.Objective, W0: optlab.Array, seed: int, p: LookaheadParams
) -> optlab.Array:
    """Minibatch SGD with the same batch order, written out independently."""
    rng = np.random.default_rng(seed)
    W = W0.copy()
    n = objective.n_examples
    for _ in range(p.epochs):
        order = rng.permutation(n)
        for start in range(0, n, p.batch_size):
            _, grad = objective.value_and_grad(W, order[start : start + p.batch_size])
            W = W - p.lr * grad
    return W


def test_alpha_one_is_plain_sgd() -> None:
    # with alpha = 1 the slow weights jump to the fast ones: nothing but SGD is left
    objective = toy_objective(np.float64)
    W0 = np.zeros(objective.shape)
    p = LookaheadParams(lr=0.1, batch_size=40, epochs=2, k=3, alpha=1.0)
    W = LookaheadSGD(p).minimize(objective, W0, np.random.default_rng(5), RecordingMonitor())
    np.testing.assert_allclose(W, _plain_sgd(objective, W0, 5, p), rtol=1e-12, atol=1e-12)


def test_slow_weights_move_alpha_of_the_way() -> None:
    # one epoch of exactly k steps: slow = W0 + alpha * (fast_k - W0)
    objective = toy_objective(np.float64)
    W0 = np.zeros(objective.shape)
    k = objective.n_examples // 40
    fast = LookaheadParams(lr=0.1, batch_size=40, epochs=1, k=k, alpha=1.0)
    slow = LookaheadParams(lr=0.1, batch_size=40, epochs=1, k=k, alpha=0.25)
    W_fast = LookaheadSGD(fast).minimize(
        objective, W0, np.random.default_rng(2), RecordingMonitor()
    )
    W_slow = LookaheadSGD(slow).minimize(
        objective, W0, np.random.default_rng(2), RecordingMonitor()
    )
    np.testing.assert_allclose(W_slow, 0.25 * W_fast, rtol=1e-12)


def test_monitor_sees_every_step_and_each_epoch() -> None:
    objective = toy_objective(np.float32)
    monitor = RecordingMonitor()
    p = LookaheadParams(lr=0.1, batch_size=50, epochs=3)
    W = LookaheadSGD(p).minimize(
        objective, np.zeros(objective.shape, np.float32), np.random.default_rng(0), monitor
    )
    assert W.dtype == np.float32
    assert monitor.examples == 3 * objective.n_examples
    assert [e.epoch for e in monitor.evaluations] == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(monitor.evaluations[-1].W, W)


def test_refuses_a_batch_larger_than_the_training_set() -> None:
    with pytest.raises(optlab.InputError, match="batch_size=500"):
        LookaheadSGD(LookaheadParams(batch_size=500)).check_problem(240, 5, 3)
