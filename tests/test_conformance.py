"""optlab.testing's conformance checks over every registered component, and proof that they
catch broken ones (wrong gradient, dtype, shape, projection, optimizer protocol, backend
products)."""

from __future__ import annotations

import contextlib
import math
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import optlab
from optlab._contract.plugin_manager import get_registry
from optlab.testing import (
    RecordingMonitor,
    check_backend,
    check_dataset,
    check_loss,
    check_optimizer,
    check_regularizer,
    register_plugin,
    toy_objective,
)
from optlab_plugins.losses import SoftmaxLoss
from optlab_plugins.optimizers import GDParams, GradientDescent
from optlab_plugins.regularizers import L2

REGISTRY = get_registry()
BUNDLED = {
    "loss": {"svm", "softmax"},
    "regularizer": {"l2", "l1", "elastic_net", "max_norm", "dropout"},
    "optimizer": {
        "random_search",
        "random_local_search",
        "gd",
        "sgd",
        "adagrad",
        "rmsprop",
        "adam",
    },
}


@pytest.mark.parametrize("kind", sorted(BUNDLED))
def test_every_bundled_component_is_registered(kind: Any) -> None:
    assert set(REGISTRY.names(kind)) >= BUNDLED[kind]


@pytest.mark.parametrize("name", REGISTRY.names("loss"))
def test_loss_conforms(name: str) -> None:
    check_loss(REGISTRY.get("loss", name))


@pytest.mark.parametrize("name", REGISTRY.names("regularizer"))
def test_regularizer_conforms(name: str) -> None:
    check_regularizer(REGISTRY.get("regularizer", name))


@pytest.mark.parametrize("name", REGISTRY.names("optimizer"))
def test_optimizer_conforms(name: str) -> None:
    check_optimizer(REGISTRY.get("optimizer", name))


def test_numeric_gradient_descent_conforms() -> None:
    check_optimizer(
        REGISTRY.get("optimizer", "gd"), params={"gradient": "numeric", "iterations": 20}
    )


@pytest.mark.parametrize(
    "params", [{"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}, {"sampling": "replacement"}]
)
def test_sgd_variants_conform(params: dict[str, Any]) -> None:
    check_optimizer(REGISTRY.get("optimizer", "sgd"), params=params)


# ------------------------------------------------------------------------------- broken losses


class BrokenLoss(optlab.Loss):
    """Softmax with one fault switched on."""

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def loss_and_grad(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = SoftmaxLoss().loss_and_grad(scores, y)
        if self.fault == "gradient":
            grad = grad * 1.01
        elif self.fault == "dtype":
            grad = grad.astype(np.float64)
        elif self.fault == "shape":
            grad = grad[:, :-1]
        elif self.fault == "overflow":
            with np.errstate(over="ignore"):
                value = float(np.log(np.sum(np.exp(scores.astype(np.float64)))))
        elif self.fault == "mutates":
            scores -= scores.max()
        elif self.fault == "expectation":
            pass
        elif self.fault == "sum":  # no 1/N: the sum over the batch, gradient to match
            value, grad = value * len(y), grad * len(y)
        elif self.fault == "not a mean":  # log of the mean loss: exact gradient, not a mean
            grad = grad / value
            value = math.log(value)
        return value, grad

    def expected_initial_loss(self, n_classes: int) -> float | None:
        return float(n_classes - 1) if self.fault == "expectation" else None


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("gradient", "gradient does not match finite differences"),
        ("dtype", "dtype float64, expected float32"),
        ("shape", r"shape \(9, 3\), expected \(9, 4\)"),
        ("overflow", "not finite"),
        ("mutates", "modified its input scores"),
        ("expectation", r"expected_initial_loss\(4\) is 3.0"),
        ("sum", r"the loss of a batch repeated twice is .* \(2x\): the loss must be the mean"),
        ("not a mean", r"the losses of the first 3 and the other 6 examples weigh up to"),
    ],
)
def test_check_loss_catches(fault: str, message: str) -> None:
    with pytest.raises(AssertionError, match=rf"^loss 'BrokenLoss': .*{message}"):
        check_loss(BrokenLoss(fault))


# ------------------------------------------------------------------------------------ datasets


@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer", "blobs", "spiral"])
def test_bundled_offline_datasets_conform(name: str) -> None:
    check_dataset(REGISTRY.get("dataset", name))


class BrokenDataset(optlab.DatasetSource):
    """Three blobs with one fault switched on."""

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def load(self, rng: np.random.Generator) -> optlab.RawDataset:
        y = np.repeat(np.arange(3), 10)
        X = rng.standard_normal((30, 4)) + y[:, None]
        classes = ["a", "b", "c"]
        image_shape: tuple[int, ...] | None = None
        X_test: np.ndarray | None = None
        if self.fault == "global rng":
            X = X + np.random.standard_normal(X.shape)  # noqa: NPY002 - the fault
        elif self.fault == "unseeded":
            X = X + np.random.default_rng().standard_normal(X.shape)
        elif self.fault == "label range":
            y = y + 1
        elif self.fault == "one class":
            y, classes = np.zeros(30, int), ["only"]
        elif self.fault == "repeated names":
            classes = ["a", "b", "a"]
        elif self.fault == "image shape":
            image_shape = (3, 3)
        elif self.fault == "half a test split":
            X_test = X[:5]
        return optlab.RawDataset(X, y, classes, X_test=X_test, image_shape=image_shape)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("global rng", "load used the global random state"),
        ("unseeded", "two loads with generators of the same seed gave different data"),
        ("label range", r"label 3 out of range 0..2"),
        ("one class", "1 class\\(es\\); a classifier needs two"),
        ("repeated names", "class names repeat"),
        ("image shape", r"image_shape \(3, 3\) holds 9 values, a row has 4 features"),
        ("half a test split", "a test split needs both X_test and y_test"),
    ],
)
def test_check_dataset_catches(fault: str, message: str) -> None:
    with pytest.raises(AssertionError, match=rf"^dataset 'BrokenDataset': .*{message}"):
        check_dataset(BrokenDataset(fault))


class BadShapeData(optlab.DatasetSource):
    """120 examples, 117 labels, from a source with a name."""

    def load(self, rng: np.random.Generator) -> optlab.RawDataset:
        X = rng.standard_normal((120, 4))
        return optlab.RawDataset(X, np.arange(117) % 3, ["a", "b", "c"], source="bad")


def test_check_dataset_names_the_dataset_once() -> None:
    with pytest.raises(AssertionError) as caught:
        check_dataset(BadShapeData())
    assert str(caught.value) == (
        "dataset 'BadShapeData': training data has 120 examples but 117 labels; features and "
        "labels must have the same length"
    )


class MismeasuredDataset(BrokenDataset):
    """Measures itself wrong: one test example too many."""

    def shape(self, rng: np.random.Generator) -> optlab.DataShape:
        return optlab.DataShape(30, 4, 3, n_test=1)


def test_check_dataset_compares_shape_with_load(tmp_path: Path) -> None:
    with pytest.raises(
        AssertionError, match=r"shape\(\) gave .*n_test=1.*load gives .*n_test=None"
    ):
        check_dataset(MismeasuredDataset("none"))
    np.savez(tmp_path / "d.npz", X=np.ones((20, 3)), y=np.arange(20) % 2)
    check_dataset(REGISTRY.get("dataset", "npz"), params={"path": tmp_path / "d.npz"})


# ------------------------------------------------------------------------------------ backends


@pytest.mark.parametrize("name", REGISTRY.names("backend"))
def test_every_registered_backend_conforms(name: str) -> None:
    try:
        check_backend(REGISTRY.get("backend", name))
    except optlab.BackendUnavailable as exc:
        pytest.skip(f"backend {name} cannot run here: {exc}")


class _Step:
    """A fused softmax step that gets the loss wrong by 1%."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y

    def fits(self, W: np.ndarray) -> bool:
        return True

    def session(self, batch_size: int, threads: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def loss_and_grad(self, W: np.ndarray, index: np.ndarray) -> tuple[float, np.ndarray]:
        X = self.X[index]
        value, dS = SoftmaxLoss().loss_and_grad(X @ W, self.y[index])
        return value * 1.01, X.T @ dS


class BrokenBackend(optlab.Backend):
    """The numpy backend with one fault switched on."""

    name = "broken"

    def __init__(self, fault: str) -> None:
        self.fault = fault

    @property
    def label(self) -> str:
        return "" if self.fault == "label" else self.name

    def scores(
        self, X: np.ndarray, W: np.ndarray, out: np.ndarray | None = None, *, threads: int = 1
    ) -> np.ndarray:
        if self.fault == "threads" and threads > 1:
            return X @ W + 1e-3
        if self.fault == "out" and out is not None:
            return X @ W
        return super().scores(X, W, out, threads=threads)

    def add_weight_grad(self, grad_t: np.ndarray, dscores: np.ndarray, X: np.ndarray) -> None:
        super().add_weight_grad(grad_t, dscores, X)
        if self.fault == "mutates":  # its scratch space
            dscores *= 0.5

    def weight_grad(self, dscores: np.ndarray, X: np.ndarray) -> np.ndarray:
        grad = super().weight_grad(dscores, X)
        return grad.astype(np.float64) if self.fault == "dtype" else grad

    def score_width(self, X: np.ndarray, W: np.ndarray) -> int:
        return 1 if self.fault == "width" else super().score_width(X, W)

    def stepper(self, X: np.ndarray, y: np.ndarray, n_classes: int, loss: optlab.Loss) -> Any:
        return _Step(X, y) if self.fault == "step" and isinstance(loss, SoftmaxLoss) else None


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("label", "label is '', not a non-empty string"),
        ("threads", r"scores of .* on 3 threads differs from numpy's"),
        ("out", r"scores of .* did not return out"),
        ("mutates", "modified their inputs"),
        ("dtype", "dtype float64, expected float32"),
        ("width", "score_width is 1 for"),
        ("step", r"its SoftmaxLoss step gives loss .* where loss_and_grad gives"),
    ],
)
def test_check_backend_catches(fault: str, message: str) -> None:
    with pytest.raises(AssertionError, match=rf"^backend 'BrokenBackend': .*{message}"):
        check_backend(BrokenBackend(fault), losses=[SoftmaxLoss()])


# -------------------------------------------------------------------------- broken regularizers


class BrokenRegularizer(optlab.Regularizer):
    has_penalty: ClassVar[bool] = True
    has_projection: ClassVar[bool] = True
    has_perturbation: ClassVar[bool] = True

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def penalty_and_grad(self, W: np.ndarray) -> tuple[float, np.ndarray | None]:
        grad = W * W.dtype.type(2.0)
        if self.fault == "gradient":
            grad = W.copy()
        elif self.fault == "dtype":
            grad = grad.astype(np.float64)
        return float(np.sum(W**2)), grad

    def project(self, W: np.ndarray) -> None:
        if self.fault == "idempotent":
            W *= W.dtype.type(0.5)
        elif self.fault == "copy":
            W = np.clip(W, -1, 1)  # rebinding: the caller's W is not projected
        elif self.fault == "view":
            if W.base is not None:
                W = W.copy()  # a view is copied: the caller's array is not projected
            np.clip(W, -1, 1, out=W)
        else:
            np.clip(W, -1, 1, out=W)

    def perturb_inputs(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.fault == "inplace":
            X *= X.dtype.type(2.0)
            return X
        if self.fault == "upcast":
            return X * rng.random(X.shape)
        if self.fault == "unseeded":
            return X * np.random.default_rng().random(X.shape, dtype=X.dtype)
        return X * rng.random(X.shape, dtype=X.dtype)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("gradient", "gradient does not match finite differences"),
        ("dtype", "dtype float64, expected float32"),
        ("idempotent", "not idempotent"),
        ("copy", "changed nothing"),
        ("view", "does not work in place on a view"),
        ("inplace", "modified its input in place"),
        ("upcast", "dtype float64, expected float32"),
        ("unseeded", "not reproducible"),
    ],
)
def test_check_regularizer_catches(fault: str, message: str) -> None:
    with pytest.raises(AssertionError, match=rf"^regularizer 'BrokenRegularizer': .*{message}"):
        check_regularizer(BrokenRegularizer(fault))


class GroupLasso(optlab.Regularizer):
    """sum over columns of ||w_c||, its gradient w_c / ||w_c|| 0/0 at a zero column."""

    has_penalty: ClassVar[bool] = True

    def penalty_and_grad(self, W: np.ndarray) -> tuple[float, np.ndarray | None]:
        norms = np.sqrt(np.sum(W * W, axis=0))
        return float(norms.sum()), W / norms


def test_check_regularizer_tries_zeros() -> None:
    with (
        pytest.raises(AssertionError, match=r"not finite at all-zero W \(float32\)"),
        np.errstate(all="ignore"),
    ):
        check_regularizer(GroupLasso())


class _LassoParams(optlab.RegularizerParams):
    strength: float = 1.0


class ForgetsBias(optlab.Regularizer):
    has_penalty: ClassVar[bool] = True

    def __init__(self, params: _LassoParams) -> None:
        self.strength = params.strength  # include_bias is not passed on

    def penalty_and_grad(self, W: np.ndarray) -> tuple[float, np.ndarray | None]:
        return self.strength * float(np.sum(W * W)), W * W.dtype.type(2 * self.strength)


def test_check_regularizer_catches_a_factory_that_drops_include_bias() -> None:
    record = optlab.RegularizerRecord("forgets_bias", ForgetsBias, _LassoParams)
    with pytest.raises(AssertionError, match=r"built with include_bias=True, its include_bias"):
        check_regularizer(record)


def test_check_regularizer_catches_an_undeclared_penalty() -> None:
    class Undeclared(L2):
        has_penalty = False

    with pytest.raises(AssertionError, match="has_penalty is False"):
        check_regularizer(Undeclared(0.1))


# ------------------------------------------------------------------------------- broken optimizers


class BrokenOptimizer(optlab.Optimizer):
    """Gradient descent with one fault switched on."""

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def minimize(
        self,
        objective: optlab.Objective,
        W0: np.ndarray,
        rng: np.random.Generator,
        monitor: optlab.Monitor,
    ) -> np.ndarray:
        W = W0 if self.fault == "inplace" else W0.copy()
        if self.fault == "unseeded":
            W += 1e-3 * np.random.default_rng().standard_normal(W.shape).astype(W.dtype)
        lr = 0.1 if self.fault == "upcast" else W.dtype.type(0.1)
        for _ in range(20):
            parts, grad = objective.value_and_grad(W)
            if self.fault == "inplace":
                W -= lr * grad
            else:
                W = W + lr * grad if self.fault == "ascent" else W - lr * grad
            if self.fault != "no_projection":
                objective.project(W)
            if self.fault != "no_steps":
                monitor.step(objective.n_examples, parts.total, parts.data, parts.reg)
        if self.fault != "no_evaluation":
            monitor.evaluate(1.0, W)
        if self.fault == "upcast":
            W = W.astype(np.float64)
        return W


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("upcast", "dtype float64, expected float32"),
        ("ascent", "did not decrease a convex"),
        ("unseeded", "same seed differ"),
        ("no_projection", "breaks a max-norm constraint"),
        ("no_steps", "never called monitor.step"),
        ("no_evaluation", "never called monitor.evaluate"),
        ("inplace", "modified W0 in place"),
    ],
)
def test_check_optimizer_catches(fault: str, message: str) -> None:
    with pytest.raises(AssertionError, match=rf"^optimizer 'BrokenOptimizer': .*{message}"):
        check_optimizer(BrokenOptimizer(fault))


class KnobIgnoringSGD(optlab.Optimizer):
    """Plain SGD on optlab.MinibatchParams that ignores one of them (or none)."""

    def __init__(self, params: optlab.MinibatchParams, ignores: str) -> None:
        self.params, self.ignores = params, ignores

    def minimize(
        self,
        objective: optlab.Objective,
        W0: np.ndarray,
        rng: np.random.Generator,
        monitor: optlab.Monitor,
    ) -> np.ndarray:
        p, t = self.params, W0.dtype.type
        W, lr = W0.copy(), 0.01 if self.ignores == "lr" else p.lr
        shuffled = optlab.MinibatchParams(batch_size=p.batch_size)
        for epoch in range(1, p.epochs + 1):
            drawn = shuffled if self.ignores == "sampling" else p
            for batch in drawn.epoch_batches(objective.n_examples, rng):
                parts, grad = objective.value_and_grad(W, batch)
                W -= t(lr) * grad
                objective.project(W)
                monitor.step(len(batch), parts.total, parts.data, parts.reg)
            monitor.evaluate(float(epoch), W)
            if self.ignores != "lr_decay":
                lr *= p.lr_decay
        return W


def _knob_ignoring(ignores: str) -> optlab.OptimizerRecord:
    def factory(params: optlab.MinibatchParams) -> KnobIgnoringSGD:
        return KnobIgnoringSGD(params, ignores)

    return optlab.OptimizerRecord(f"ignores_{ignores}", factory, optlab.MinibatchParams)


@pytest.mark.parametrize(
    ("ignores", "message"),
    [
        ("lr", "lr=0.1 and lr=0.05 give the same weights"),
        ("lr_decay", "lr_decay=1.0 and lr_decay=0.5 give the same weights"),
        ("sampling", "sampling='shuffle' and sampling='replacement' give the same weights"),
    ],
)
def test_check_optimizer_catches_an_ignored_param(ignores: str, message: str) -> None:
    """A spec's lr (and, for optlab.MinibatchParams, lr_decay and sampling) must matter."""
    record = _knob_ignoring(ignores)
    with pytest.raises(AssertionError, match=rf"^optimizer 'ignores_{ignores}': {message}; "):
        check_optimizer(record, params={"lr": 0.1, "batch_size": 32, "epochs": 1})


def test_an_optimizer_honouring_its_params_passes_with_one_epoch() -> None:
    check_optimizer(_knob_ignoring("nothing"), params={"lr": 0.1, "batch_size": 32, "epochs": 1})


def test_a_correct_handwritten_optimizer_passes() -> None:
    check_optimizer(BrokenOptimizer("none"))
    check_optimizer(GradientDescent(GDParams(lr=0.1, iterations=20)))


# ------------------------------------------------------------------------------- test doubles


def test_recording_monitor_records_steps_and_copies_of_w() -> None:
    monitor = RecordingMonitor()
    W = np.ones((2, 2))
    monitor.step(10, 3.0, 2.0, 1.0)
    monitor.step(5, 2.0, 1.5, 0.5)
    monitor.evaluate(1.0, W)
    W[:] = 0
    assert monitor.examples == 15 and monitor.losses == [3.0, 2.0]
    assert monitor.evaluations[0].epoch == 1.0 and np.all(monitor.evaluations[0].W == 1)
    assert isinstance(monitor, optlab.Monitor)


def test_toy_objective_is_learnable() -> None:
    obj = toy_objective(np.float32)
    assert obj.shape == (5, 3) and obj.dtype == np.float32 and obj.n_examples == 240
    W = GradientDescent(GDParams(lr=0.5, iterations=50)).minimize(
        obj, np.zeros(obj.shape, np.float32), np.random.default_rng(0), RecordingMonitor()
    )
    assert obj.accuracy(W, obj.X, obj.y) > 0.85


def test_register_plugin_adds_a_plugin_for_one_block() -> None:
    plugin = types.SimpleNamespace()

    @optlab.hookimpl
    def optlab_register_losses() -> list[optlab.LossRecord]:
        return [optlab.LossRecord("doubled_softmax", lambda p: BrokenLoss("gradient"))]

    plugin.optlab_register_losses = optlab_register_losses
    with register_plugin(plugin, name="broken_plugin"):
        record = get_registry().get("loss", "doubled_softmax")
        assert record.provider == "broken_plugin"
        with pytest.raises(AssertionError, match=r"^loss 'doubled_softmax': .*gradient"):
            check_loss(record)
    assert "doubled_softmax" not in get_registry().names("loss")


def test_params_overrides_need_a_record() -> None:
    with pytest.raises(TypeError, match="need a record"):
        check_loss(SoftmaxLoss(), params={"margin": 1.0})
    with pytest.raises(AssertionError) as info:
        check_loss(get_registry().get("loss", "svm"), params={"margin": -1.0})
    assert str(info.value) == (
        "loss 'svm': its params refuse {'margin': -1.0}: margin: Input should be greater than 0"
    )


def test_a_class_or_a_foreign_object_is_named_for_what_it_is() -> None:
    """check_loss(SoftmaxLoss) said "loss 'ABCMeta': factory returned ABCMeta, not a Loss";
    an optimizer's message read 'not a Optimizer'."""
    with pytest.raises(AssertionError) as info:
        check_loss(SoftmaxLoss)
    assert str(info.value) == (
        "loss 'SoftmaxLoss': a class, not a Loss: pass SoftmaxLoss() or the record your hook "
        "returns"
    )
    with pytest.raises(AssertionError, match=r"^optimizer 'SoftmaxLoss': SoftmaxLoss is not an "):
        check_optimizer(SoftmaxLoss())
