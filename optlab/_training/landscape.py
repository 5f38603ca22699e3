"""Loss landscape: slices of the training objective along random directions through a ``W``.

As in the CS231n notes on optimization: ``L(W + a d1)`` along one random direction ``d1`` and
``L(W + a d1 + b d2)`` over a plane are a bowl for the full (convex) objective, while the
data loss of a single example along a line is piecewise linear for the SVM. Each direction
is a standard normal (D, C) matrix scaled to the Frobenius norm of ``W`` (so that ``a = 1``
moves as far as ``W`` is from 0; unit norm when ``W`` is 0).

The scores along a slice are affine in the steps: ``X (W + a d1 + b d2) = S0 + a S1 + b S2``.
The three products ``S0, S1, S2`` (N, C) are computed once; each point of a slice then costs
the loss over (N, C) scores and the penalty of a (D, C) matrix, not a product with ``X``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optlab._contract.components import Array
from optlab._contract.objective import Objective
from optlab._contract.records import Landscape
from optlab._errors import ComponentError

__all__ = ["Landscape", "loss_landscape"]


def _direction(W: Array, rng: np.random.Generator) -> Array:
    d = rng.standard_normal(W.shape)
    norm = float(np.linalg.norm(W))
    return d * ((norm if norm > 0 else 1.0) / float(np.linalg.norm(d)))


#: examples tried for the one-example slice
_CANDIDATES = 200


def _telling_example(
    S0: Array,
    S1: Array,
    y: Array,
    span: float,
    rng: np.random.Generator,
    data_loss: Callable[[Array, Array], float],
) -> int:
    """A training example whose own loss changes most between ``-span``, 0 and ``span``
    along the direction, among up to :data:`_CANDIDATES` drawn at random: at a learned ``W``
    most examples are classified with margin to spare, and their slice is flat at 0."""
    n = S0.shape[0]
    picks = rng.choice(n, size=min(n, _CANDIDATES), replace=False)
    best, spread = int(picks[0]), -1.0
    for k in picks.tolist():
        values = [
            data_loss(S0[k : k + 1] + a * S1[k : k + 1], y[k : k + 1]) for a in (-span, 0.0, span)
        ]
        if max(values) - min(values) > spread:
            best, spread = k, max(values) - min(values)
    return best


def loss_landscape(
    objective: Objective,
    W: Array,
    rng: np.random.Generator,
    *,
    span: float = 1.0,
    points: int = 81,
    grid: int = 31,
) -> Landscape:
    """1-D and 2-D slices of ``objective`` through ``W`` along random directions.

    Parameters
    ----------
    objective : Objective
        Its training set, loss and regularizers (input perturbations such as dropout are not
        applied: the slices are of the objective a run is evaluated with).
    W : (D, C) array
        The centre of the slices (a run's learned weights).
    rng : numpy.random.Generator
        Draws the two directions and the example.
    span : float
        The slices cover steps ``-span .. span`` (in units of ``||W||``).
    points, grid : int
        Points of the 1-D slices; points per side of the plane (odd numbers put ``W`` itself
        on the grid).
    """
    W = np.asarray(W, dtype=np.float64)
    d1, d2 = _direction(W, rng), _direction(W, rng)
    X, y = objective.X, objective.y
    if X.shape[0] == 0:
        raise ValueError("the objective has no training examples")
    dtype = X.dtype
    S0, S1, S2 = (
        np.asarray(objective.backend.scores(X, M.astype(dtype)), dtype=np.float64)
        for M in (W, d1, d2)
    )
    loss = objective.loss

    def data_loss(scores: Array, labels: Array) -> float:
        try:
            return float(loss.impl.loss(scores, labels))
        except Exception as exc:
            raise ComponentError("loss", loss.name, loss.provider, f"raised {exc!r}") from exc

    def penalty(M: Array) -> float:
        return objective.reg_value_and_grad(M.astype(dtype), with_grad=False)[0]

    steps = np.linspace(-span, span, points)
    line = np.array([data_loss(S0 + a * S1, y) + penalty(W + a * d1) for a in steps])
    k = _telling_example(S0, S1, y, span, rng, data_loss)
    s0, s1, yk = S0[k : k + 1], S1[k : k + 1], y[k : k + 1]
    example = np.array([data_loss(s0 + a * s1, yk) for a in steps])
    ticks = np.linspace(-span, span, grid)
    plane = np.empty((grid, grid))
    for i, b in enumerate(ticks):
        base = S0 + b * S2
        for j, a in enumerate(ticks):
            plane[i, j] = data_loss(base + a * S1, y) + penalty(W + a * d1 + b * d2)
    return Landscape(steps, line, example, k, ticks, plane, (d1, d2))
