"""Small, real components used by the spec tests (independent of the bundled plugins).

``svm`` and ``softmax`` losses, an ``l2`` regularizer, ``sgd`` and ``gd`` optimizers and
``digits`` / ``blobs`` datasets, registered through the same hooks as any plugin.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import Field, PositiveInt

import optlab
from optlab import (
    Array,
    DatasetRecord,
    DatasetSource,
    Loss,
    LossRecord,
    Monitor,
    Objective,
    Optimizer,
    OptimizerRecord,
    Params,
    RawDataset,
    Regularizer,
    RegularizerParams,
    RegularizerRecord,
)
from optlab._contract.plugin_manager import build_registry
from optlab._contract.registry import Registry


class SVMParams(Params):
    margin: float = Field(1.0, gt=0, description="Delta.")


class SVM(Loss):
    def __init__(self, params: SVMParams) -> None:
        self.margin = params.margin

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        n = scores.shape[0]
        correct = scores[np.arange(n), y][:, None]
        margins = np.maximum(0, scores - correct + scores.dtype.type(self.margin))
        margins[np.arange(n), y] = 0
        mask = (margins > 0).astype(scores.dtype)
        mask[np.arange(n), y] = -mask.sum(axis=1)
        return float(margins.sum() / n), mask / n


class SoftmaxParams(Params):
    pass


class Softmax(Loss):
    def __init__(self, params: SoftmaxParams) -> None:
        pass

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        n = scores.shape[0]
        shifted = scores - scores.max(axis=1, keepdims=True)
        p = np.exp(shifted)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(n), y]).mean()
        p[np.arange(n), y] -= 1
        return float(loss), p / n


class L2Params(RegularizerParams):
    strength: float = Field(1e-4, ge=0, description="lambda.")


class L2(Regularizer):
    has_penalty = True

    def __init__(self, params: L2Params) -> None:
        self.strength = params.strength
        self.include_bias = params.include_bias

    def penalty_and_grad(self, W: Array) -> tuple[float, Array | None]:
        return float(self.strength * np.sum(W * W)), W.dtype.type(2 * self.strength) * W


class SGDParams(Params):
    lr: float = Field(0.1, gt=0, description="Step size.")
    batch_size: PositiveInt = 200
    epochs: PositiveInt = 20


class SGD(Optimizer):
    def __init__(self, params: SGDParams) -> None:
        self.p = params

    def minimize(
        self, objective: Objective, W0: Array, rng: np.random.Generator, monitor: Monitor
    ) -> Array:
        W = W0.copy()
        n = objective.n_examples
        for epoch in range(self.p.epochs):
            order = rng.permutation(n)
            for start in range(0, n, self.p.batch_size):
                batch = order[start : start + self.p.batch_size]
                parts, grad = objective.value_and_grad(W, batch)
                W -= W.dtype.type(self.p.lr) * grad
                monitor.step(len(batch), parts.total, parts.data, parts.reg)
            monitor.evaluate(epoch + 1, W)
        return W


class GDParams(Params):
    lr: float = Field(0.5, gt=0)
    iterations: PositiveInt = 100


class GD(Optimizer):
    def __init__(self, params: GDParams) -> None:
        self.p = params

    def minimize(
        self, objective: Objective, W0: Array, rng: np.random.Generator, monitor: Monitor
    ) -> Array:
        W = W0.copy()
        for _ in range(self.p.iterations):
            parts, grad = objective.value_and_grad(W)
            W -= W.dtype.type(self.p.lr) * grad
            monitor.step(objective.n_examples, parts.total, parts.data, parts.reg)
        monitor.evaluate(1.0, W)
        return W


class DigitsParams(Params):
    n_samples: PositiveInt | None = Field(None, description="Keep the first N examples.")


class Digits(DatasetSource):
    def __init__(self, params: DigitsParams) -> None:
        self.n = params.n_samples

    def load(self, rng: np.random.Generator) -> RawDataset:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return RawDataset(X[: self.n], y[: self.n], [str(i) for i in range(10)], image_shape=(8, 8))


class BlobsParams(Params):
    n_samples: PositiveInt = 300
    n_classes: PositiveInt = Field(3, ge=2)
    n_features: PositiveInt = 2


class Blobs(DatasetSource):
    def __init__(self, params: BlobsParams) -> None:
        self.p = params

    def load(self, rng: np.random.Generator) -> RawDataset:
        centers = rng.normal(scale=5.0, size=(self.p.n_classes, self.p.n_features))
        y = rng.integers(self.p.n_classes, size=self.p.n_samples)
        X = centers[y] + rng.normal(size=(self.p.n_samples, self.p.n_features))
        return RawDataset(X, y, [f"c{i}" for i in range(self.p.n_classes)])


class SpecTestPlugin:
    """Registers every component above (hook implementations as methods)."""

    @optlab.hookimpl
    def optlab_register_losses(self) -> list[LossRecord]:
        return [
            LossRecord("svm", SVM, SVMParams, "multiclass hinge loss"),
            LossRecord("softmax", Softmax, SoftmaxParams, "cross-entropy"),
        ]

    @optlab.hookimpl
    def optlab_register_regularizers(self) -> list[RegularizerRecord]:
        return [RegularizerRecord("l2", L2, L2Params, "sum of squares")]

    @optlab.hookimpl
    def optlab_register_optimizers(self) -> list[OptimizerRecord]:
        return [
            OptimizerRecord("sgd", SGD, SGDParams, "minibatch SGD"),
            OptimizerRecord("gd", GD, GDParams, "full-batch gradient descent"),
        ]

    @optlab.hookimpl
    def optlab_register_datasets(self) -> list[DatasetRecord]:
        return [
            DatasetRecord("digits", Digits, DigitsParams, "sklearn digits"),
            DatasetRecord("blobs", Blobs, BlobsParams, "gaussian blobs"),
        ]


BUNDLED = "losses,regularizers,optimizers,datasets"


def make_registry() -> Registry:
    """A registry with only the test components (the bundled plugins are disabled)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTLAB_DISABLE_PLUGINS", BUNDLED)
        return build_registry(extra=[("spec_test", SpecTestPlugin())])[1]
