"""Test doubles: a monitor that only records, and the small convex problem the optimizer
checks use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optlab._contract.components import Array, Loss, Monitor
from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective


@dataclass(frozen=True)
class Step:
    """One :meth:`Monitor.step` call."""

    examples: int
    loss: float
    data_loss: float
    reg_loss: float


@dataclass(frozen=True)
class Evaluation:
    """One :meth:`Monitor.evaluate` call, with a copy of ``W``."""

    epoch: float
    W: Array


@dataclass
class RecordingMonitor(Monitor):
    """A :class:`~optlab.Monitor` that records every step and evaluation and does nothing else.

    Attributes
    ----------
    steps : list of Step
    evaluations : list of Evaluation
    """

    steps: list[Step] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)

    def step(self, examples: int, loss: float, data_loss: float, reg_loss: float) -> None:
        self.steps.append(Step(examples, loss, data_loss, reg_loss))

    def evaluate(self, epoch: float, W: Array) -> None:
        self.evaluations.append(Evaluation(float(epoch), np.array(W, copy=True)))

    @property
    def examples(self) -> int:
        """Examples processed over all steps."""
        return sum(s.examples for s in self.steps)

    @property
    def losses(self) -> list[float]:
        """The loss of every step, in order."""
        return [s.loss for s in self.steps]


class _ToySoftmax(Loss):
    """Reference softmax cross-entropy for the optimizer checks (independent of plugins)."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(scores.shape[0])
        dscores = np.exp(log_p)
        dscores[rows, y] -= 1
        return -float(log_p[rows, y].mean()), dscores / scores.dtype.type(scores.shape[0])


def toy_objective(
    dtype: Any = np.float64,
    *,
    n_per_class: int = 80,
    regularizers: list[BoundRegularizer] | tuple[BoundRegularizer, ...] = (),
    seed: int = 0,
) -> Objective:
    """A small convex problem: softmax on three Gaussian blobs in 4-D plus a bias column.

    Returns an :class:`~optlab.Objective` with ``N = 3 * n_per_class`` examples, ``D = 5``,
    ``C = 3``, of the given dtype.
    """
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = np.repeat(np.arange(3), n_per_class).astype(np.int64)
    X = centers[y] + rng.standard_normal((y.size, 4))
    X = np.hstack([X - X.mean(axis=0), np.ones((y.size, 1))]).astype(dtype)
    return Objective(
        X, y, 3, BoundLoss(_ToySoftmax(), "toy_softmax", "optlab.testing"), regularizers
    )
