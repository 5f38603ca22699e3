"""Lookahead SGD (Zhang, Lucas, Hinton and Ba, 2019, "Lookahead Optimizer: k steps forward,
1 step back").

Two copies of the weights: *fast* weights take ``k`` minibatch SGD steps (optionally with
momentum); then the *slow* weights move a fraction ``alpha`` of the way towards them,
``slow += alpha * (fast - slow)``, and the fast weights restart from the slow ones. The slow
weights are what is evaluated and returned.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optlab
from optlab import Array
from pydantic import Field

__all__ = ["LookaheadParams", "LookaheadSGD"]


class LookaheadParams(optlab.Params):
    """Params of Lookahead SGD."""

    lr: float = Field(1e-2, gt=0, description="Step size of the fast (inner SGD) weights.")
    batch_size: int = Field(128, ge=1, description="Examples per minibatch.")
    epochs: int = Field(10, ge=1, description="Passes over the training set.")
    k: int = Field(5, ge=1, description="Fast steps between two slow-weight updates.")
    alpha: float = Field(
        0.5, gt=0, le=1, description="Slow step: fraction of the way towards the fast weights."
    )
    momentum: float = Field(0.0, ge=0, lt=1, description="Momentum of the inner SGD (0: none).")


class LookaheadSGD(optlab.Optimizer):
    """Lookahead around minibatch SGD.

    Each epoch visits the training set once in a random order drawn from ``rng``; every ``k``
    fast steps the slow weights are pulled towards the fast ones; the monitor evaluates the slow
    weights after each epoch. Pending fast steps are folded in before the last evaluation, so
    the returned weights are the last ones evaluated.

    Parameters
    ----------
    params : LookaheadParams
    """

    def __init__(self, params: LookaheadParams) -> None:
        self.params = params

    def check_problem(self, n_examples: int, n_features: int, n_classes: int) -> None:
        """Refuse a ``batch_size`` larger than the training set, and a run of more than
        ``optlab.MAX_STEPS`` steps; ``key=`` names the param, so the error is shown at its line
        in the spec file."""
        p = self.params
        if p.batch_size > n_examples:
            raise optlab.InputError(
                f"optimizer.batch_size={p.batch_size} is larger than the training set "
                f"({n_examples} examples); use a batch_size of at most {n_examples}",
                key="batch_size",
            )
        steps = p.epochs * -(-n_examples // p.batch_size)
        if steps > optlab.MAX_STEPS:
            raise optlab.InputError(
                f"optimizer.epochs={p.epochs} makes {steps} steps, more than the "
                f"{optlab.MAX_STEPS} a run may take (optlab.MAX_STEPS); lower optimizer.epochs",
                key="epochs",
            )

    def minimize(
        self,
        objective: optlab.Objective,
        W0: Array,
        rng: np.random.Generator,
        monitor: optlab.Monitor,
    ) -> Array:
        """Minimize ``objective`` from ``W0`` (D, C); return the slow weights (D, C).

        All arithmetic stays in ``W0``'s dtype (hyperparameters are cast to it).
        """
        p = self.params
        n = objective.n_examples
        self.check_problem(n, *objective.shape)
        t = W0.dtype.type
        lr, alpha, mu = t(p.lr), t(p.alpha), t(p.momentum)
        slow = W0.copy()
        fast = W0.copy()
        velocity = np.zeros_like(W0) if p.momentum > 0 else None
        pending = 0  # fast steps since the last slow update
        for epoch in range(1, p.epochs + 1):
            order = rng.permutation(n)
            for start in range(0, n, p.batch_size):
                batch = order[start : start + p.batch_size]
                parts, grad = objective.value_and_grad(fast, batch)
                grad *= lr
                if velocity is None:
                    fast -= grad
                else:
                    velocity *= mu
                    velocity -= grad
                    fast += velocity
                objective.project(fast)
                pending += 1
                if pending == p.k:
                    self._pull(slow, fast, alpha, objective)
                    pending = 0
                monitor.step(len(batch), parts.total, parts.data, parts.reg)
            if epoch == p.epochs and pending:
                self._pull(slow, fast, alpha, objective)
            monitor.evaluate(float(epoch), slow)
        return slow

    @staticmethod
    def _pull(
        slow: Array, fast: Array, alpha: np.floating[Any], objective: optlab.Objective
    ) -> None:
        """``slow += alpha * (fast - slow)``; the fast weights restart from ``slow`` (in place)."""
        diff = fast - slow
        diff *= alpha
        slow += diff
        objective.project(slow)
        fast[...] = slow
