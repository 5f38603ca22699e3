"""The lecture's regularizers: L2, L1, elastic net (penalties), max norm (a constraint) and
dropout (an input perturbation while training).

Each receives ``W`` (D', C) without the bias row unless its ``include_bias`` param is true,
and keeps ``W``'s dtype.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

import optlab
from optlab import Array

__all__ = [
    "L1",
    "L2",
    "Dropout",
    "DropoutParams",
    "ElasticNet",
    "ElasticNetParams",
    "MaxNorm",
    "MaxNormParams",
    "StrengthParams",
    "optlab_register_regularizers",
]


class StrengthParams(optlab.RegularizerParams):
    """Params of a penalty with one strength ``lambda``."""

    strength: float = Field(1e-3, ge=0, description="Regularization strength lambda.")


class ElasticNetParams(optlab.RegularizerParams):
    """Params of the elastic net ``l2 * sum W^2 + l1 * sum |W|``."""

    l1: float = Field(1e-4, ge=0, description="Strength of the L1 term sum |W|.")
    l2: float = Field(1e-3, ge=0, description="Strength of the L2 term sum W^2.")


class MaxNormParams(optlab.RegularizerParams):
    """Params of the max-norm constraint."""

    c: float = Field(3.0, gt=0, description="Largest allowed Euclidean norm of a class column.")


class DropoutParams(optlab.RegularizerParams):
    """Params of input dropout."""

    include_bias: bool = Field(
        default=False,
        description="Also drop the inputs' bias column (its 1s), by default never dropped.",
    )
    rate: float = Field(0.2, ge=0, lt=1, description="Probability of zeroing an input feature.")


class L2(optlab.Regularizer):
    """``R(W) = lambda * sum W^2``; gradient ``2 * lambda * W``."""

    has_penalty: ClassVar[bool] = True

    def __init__(self, strength: float, include_bias: bool = False) -> None:
        self.strength = float(strength)
        self.include_bias = include_bias

    def penalty_and_grad(self, W: Array) -> tuple[float, Array | None]:
        """Penalty and gradient (D', C) for ``W`` (D', C)."""
        value = self.strength * float(np.vdot(W, W))
        return value, W * W.dtype.type(2.0 * self.strength)


class L1(optlab.Regularizer):
    """``R(W) = lambda * sum |W|``; subgradient ``lambda * sign(W)`` (0 at 0)."""

    has_penalty: ClassVar[bool] = True

    def __init__(self, strength: float, include_bias: bool = False) -> None:
        self.strength = float(strength)
        self.include_bias = include_bias

    def penalty_and_grad(self, W: Array) -> tuple[float, Array | None]:
        """Penalty and subgradient (D', C) for ``W`` (D', C)."""
        value = self.strength * float(np.sum(np.abs(W)))
        return value, np.sign(W) * W.dtype.type(self.strength)


class ElasticNet(optlab.Regularizer):
    """``R(W) = l2 * sum W^2 + l1 * sum |W|``; gradient ``2 * l2 * W + l1 * sign(W)``."""

    has_penalty: ClassVar[bool] = True

    def __init__(self, l1: float, l2: float, include_bias: bool = False) -> None:
        self.l1 = float(l1)
        self.l2 = float(l2)
        self.include_bias = include_bias

    def penalty_and_grad(self, W: Array) -> tuple[float, Array | None]:
        """Penalty and subgradient (D', C) for ``W`` (D', C)."""
        value = self.l2 * float(np.vdot(W, W)) + self.l1 * float(np.sum(np.abs(W)))
        grad = W * W.dtype.type(2.0 * self.l2)
        grad += np.sign(W) * W.dtype.type(self.l1)
        return value, grad


class MaxNorm(optlab.Regularizer):
    """The constraint ``||W[:, k]||_2 <= c`` for every class ``k``, enforced by projection.

    Its penalty is zero: a column longer than ``c`` is rescaled to norm ``c`` after each update.
    """

    has_projection: ClassVar[bool] = True

    def __init__(self, c: float, include_bias: bool = False) -> None:
        self.c = float(c)
        self.include_bias = include_bias

    def project(self, W: Array) -> None:
        """Rescale, in place, each column of ``W`` (D', C) whose norm exceeds ``c``."""
        norms = np.sqrt(np.einsum("dk,dk->k", W, W))
        too_long = norms > self.c
        if np.any(too_long):
            scale = np.ones_like(norms)
            scale[too_long] = self.c / norms[too_long]
            W *= scale.astype(W.dtype, copy=False)


class Dropout(optlab.Regularizer):
    """Inverted dropout on the training inputs: each feature is zeroed with probability
    ``rate`` and the survivors are scaled by ``1 / (1 - rate)``, so nothing changes at
    evaluation (the objective's ``value`` never perturbs).

    Every column it is given may be dropped: in a run, the objective keeps the bias column
    (when the run has one) unless ``include_bias`` is true.
    """

    has_perturbation: ClassVar[bool] = True

    def __init__(self, rate: float, include_bias: bool = False) -> None:
        self.rate = float(rate)
        self.include_bias = include_bias

    def perturb_inputs(self, X: Array, rng: np.random.Generator) -> Array:
        """A perturbed copy of the batch ``X`` (B, D), same dtype; ``X`` is not modified."""
        if self.rate == 0.0 or X.size == 0:
            return X
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        keep = rng.random(X.shape, dtype=dtype) >= self.rate
        mask = keep.astype(X.dtype) * X.dtype.type(1.0 / (1.0 - self.rate))
        return np.asarray(X * mask)


def _l2(params: StrengthParams) -> L2:
    return L2(params.strength, params.include_bias)


def _l1(params: StrengthParams) -> L1:
    return L1(params.strength, params.include_bias)


def _elastic_net(params: ElasticNetParams) -> ElasticNet:
    return ElasticNet(params.l1, params.l2, params.include_bias)


def _max_norm(params: MaxNormParams) -> MaxNorm:
    return MaxNorm(params.c, params.include_bias)


def _dropout(params: DropoutParams) -> Dropout:
    return Dropout(params.rate, params.include_bias)


@optlab.hookimpl
def optlab_register_regularizers() -> list[optlab.RegularizerRecord]:
    """The bundled regularizers: ``l2``, ``l1``, ``elastic_net``, ``max_norm``, ``dropout``."""
    return [
        optlab.RegularizerRecord(
            name="l2",
            factory=_l2,
            params=StrengthParams,
            summary="L2 penalty lambda * sum W^2 (spreads weight).",
        ),
        optlab.RegularizerRecord(
            name="l1",
            factory=_l1,
            params=StrengthParams,
            summary="L1 penalty lambda * sum |W| (encourages sparsity).",
        ),
        optlab.RegularizerRecord(
            name="elastic_net",
            factory=_elastic_net,
            params=ElasticNetParams,
            summary="Elastic net: l2 * sum W^2 + l1 * sum |W|.",
        ),
        optlab.RegularizerRecord(
            name="max_norm",
            factory=_max_norm,
            params=MaxNormParams,
            summary="Max-norm constraint ||W[:, k]|| <= c, projected after each update.",
        ),
        optlab.RegularizerRecord(
            name="dropout",
            factory=_dropout,
            params=DropoutParams,
            summary="Inverted dropout on the training inputs (never at evaluation).",
        ),
    ]
