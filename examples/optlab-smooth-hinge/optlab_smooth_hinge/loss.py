"""The quadratically smoothed multiclass hinge loss.

For one example with scores ``s`` (C,) and label ``y``, each wrong class ``j`` contributes
``h(m_j)`` of its margin violation ``m_j = s_j - s_y + margin``, where ``h`` is the hinge
``max(0, m)`` with its corner rounded off over a width ``gamma`` (``smoothing``)::

    h(m) = 0                  if m <= 0
           m**2 / (2 gamma)   if 0 < m < gamma
           m - gamma / 2      if m >= gamma

``h`` is differentiable everywhere (``h'(m) = clip(m / gamma, 0, 1)``), so gradient-based
optimizers see no kink, and as ``gamma -> 0`` it becomes the multiclass SVM loss of the lecture.
The loss of a batch is the mean over its ``N`` examples of ``sum_{j != y_i} h(m_ij)``.
"""

from __future__ import annotations

import numpy as np
import optlab
from optlab import Array
from pydantic import Field

__all__ = ["SmoothHingeLoss", "SmoothHingeParams", "smooth_hinge_term"]


class SmoothHingeParams(optlab.Params):
    """Params of the smoothed hinge loss."""

    smoothing: float = Field(
        1.0, gt=0, description="Width gamma of the quadratic piece (-> 0: the SVM hinge)."
    )
    margin: float = Field(1.0, gt=0, description="The margin Delta each wrong class must keep.")


def smooth_hinge_term(m: Array, gamma: float) -> tuple[Array, Array]:
    """``h(m)`` and ``h'(m)`` elementwise, in the dtype of ``m``.

    Parameters
    ----------
    m : (N, C) array
        Margin violations ``s_j - s_y + margin``.
    gamma : float
        Smoothing width, > 0.

    Returns
    -------
    value, slope : (N, C) arrays, dtype of ``m``
    """
    t = m.dtype.type
    pos = np.maximum(m, t(0))
    quadratic = pos < t(gamma)
    value = np.where(quadratic, pos * pos * t(0.5 / gamma), pos - t(0.5 * gamma))
    slope = np.minimum(pos * t(1.0 / gamma), t(1))
    return value, slope


class SmoothHingeLoss(optlab.Loss):
    """Mean over the batch of ``sum_{j != y_i} h(s_j - s_{y_i} + margin)``.

    Parameters
    ----------
    smoothing : float
        ``gamma`` > 0, the width of the quadratic piece of ``h``.
    margin : float
        ``Delta`` > 0.
    """

    def __init__(self, smoothing: float = 1.0, margin: float = 1.0) -> None:
        self.smoothing = float(smoothing)
        self.margin = float(margin)

    def _terms(self, scores: Array, y: Array) -> tuple[Array, Array, Array]:
        """Per-term values and slopes (N, C), zero in each row's correct class, and rows."""
        rows = np.arange(scores.shape[0])
        m = scores - scores[rows, y][:, None] + scores.dtype.type(self.margin)
        value, slope = smooth_hinge_term(m, self.smoothing)
        value[rows, y] = 0
        slope[rows, y] = 0
        return value, slope, rows

    def loss(self, scores: Array, y: Array) -> float:
        """Mean smoothed hinge loss of ``scores`` (N, C) with labels ``y`` (N,)."""
        value, _, _ = self._terms(scores, y)
        return float(np.sum(value)) / max(int(scores.shape[0]), 1)

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        """Mean loss and its gradient (N, C), dtype of ``scores``, with respect to ``scores``.

        ``dL/ds_j = h'(m_j) / N`` for ``j != y`` and ``dL/ds_y = -sum_{j != y} h'(m_j) / N``.
        """
        value, slope, rows = self._terms(scores, y)
        n = max(int(scores.shape[0]), 1)
        dscores = slope * scores.dtype.type(1.0 / n)
        dscores[rows, y] = -np.sum(dscores, axis=1)
        return float(np.sum(value)) / n, dscores

    def expected_initial_loss(self, n_classes: int) -> float | None:
        """``(C - 1) * h(margin)``: with all scores about 0 every wrong class violates by
        ``margin``."""
        m, gamma = self.margin, self.smoothing
        per_class = m * m / (2 * gamma) if m < gamma else m - gamma / 2
        return (n_classes - 1) * per_class
