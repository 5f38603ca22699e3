"""The lecture's optimizers: random search, random local search, (vanilla) gradient descent
with an analytic or numeric gradient, and minibatch SGD with momentum/Nesterov, Adagrad,
RMSProp and Adam.

Every optimizer keeps ``W``'s dtype (hyperparameters are cast to it, so float32 stays
float32), draws all randomness from the generator it is given, projects ``W`` after each update
(max norm) and reports each step and evaluation point to the monitor. The minibatch optimizers
share one loop (:func:`minibatch_loop`) and the params :class:`optlab.MinibatchParams`; they
differ only in their update rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

import optlab
from optlab import Array, MinibatchParams

__all__ = [
    "AdaGradRule",
    "AdagradParams",
    "AdamParams",
    "AdamRule",
    "GDParams",
    "GradientDescent",
    "MinibatchOptimizer",
    "MinibatchParams",
    "RMSPropParams",
    "RMSPropRule",
    "RandomLocalSearch",
    "RandomLocalSearchParams",
    "RandomSearch",
    "RandomSearchParams",
    "SGDParams",
    "SGDRule",
    "UpdateRule",
    "minibatch_loop",
    "numeric_full_gradient",
    "optlab_register_optimizers",
]


# --------------------------------------------------------------------------------------------
# Params
# --------------------------------------------------------------------------------------------


class RandomSearchParams(optlab.Params):
    """Params of random search."""

    trials: int = Field(1000, ge=1, description="Number of random W tried (one step each).")
    scale: float = Field(1e-3, gt=0, description="Standard deviation of each random weight.")
    eval_every: int = Field(100, ge=1, description="Evaluate the best W every this many trials.")


class RandomLocalSearchParams(optlab.Params):
    """Params of random local search."""

    trials: int = Field(1000, ge=1, description="Number of random perturbations tried.")
    step: float = Field(1e-3, gt=0, description="Standard deviation of each perturbation.")
    eval_every: int = Field(100, ge=1, description="Evaluate the best W every this many trials.")


class GDParams(optlab.Params):
    """Params of full-batch (vanilla) gradient descent."""

    lr: float = Field(1e-3, gt=0, description="Step size (learning rate).")
    iterations: int = Field(100, ge=1, description="Number of full-batch steps.")
    eval_every: int = Field(10, ge=1, description="Evaluate every this many iterations.")
    gradient: Literal["analytic", "numeric"] = Field(
        "analytic", description="Analytic gradient, or centered finite differences (slow)."
    )
    numeric_h: float = Field(1e-5, gt=0, description="Finite-difference step (numeric only).")
    max_numeric_evaluations: int = Field(
        1_000_000,
        ge=1,
        description="Refuse a numeric-gradient run needing more loss evaluations (2*D*C each).",
    )


class SGDParams(MinibatchParams):
    """Params of minibatch SGD."""

    momentum: float = Field(0.0, ge=0, lt=1, description="Momentum mu (0: plain SGD).")
    nesterov: bool = Field(False, description="Use Nesterov momentum (needs momentum > 0).")

    @field_validator("nesterov")
    @classmethod
    def _needs_momentum(cls, nesterov: bool, info: ValidationInfo) -> bool:
        """Nesterov momentum with ``momentum: 0`` would train as plain SGD, saying nothing."""
        if nesterov and info.data.get("momentum") == 0:
            raise ValueError(
                "true needs a momentum > 0 (with 0 it is plain SGD); set momentum: 0.9"
            )
        return nesterov


class AdagradParams(MinibatchParams):
    """Params of Adagrad."""

    lr: float = Field(1e-2, gt=0, description="Step size (learning rate).")
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")


class RMSPropParams(MinibatchParams):
    """Params of RMSProp."""

    decay_rate: float = Field(0.99, ge=0, lt=1, description="Decay of the squared-gradient cache.")
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")


class AdamParams(MinibatchParams):
    """Params of Adam."""

    beta1: float = Field(0.9, ge=0, lt=1, description="Decay of the first-moment estimate.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Decay of the second-moment estimate.")
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")


def _refuse_many_steps(steps: int, key: str) -> None:
    """Raise :class:`optlab.InputError` (``key``: the param to lower, which counts the steps)
    when a run needs more than :data:`optlab.MAX_STEPS` steps. The minibatch optimizers refuse
    alike in :meth:`optlab.MinibatchParams.check_problem`."""
    if steps > optlab.MAX_STEPS:
        raise optlab.InputError(
            f"optimizer.{key}: {steps} steps is more than the {optlab.MAX_STEPS} a run "
            f"may take (optlab.MAX_STEPS); lower optimizer.{key}",
            key=key,
        )


# --------------------------------------------------------------------------------------------
# Random search
# --------------------------------------------------------------------------------------------


def _search(
    objective: optlab.Objective,
    start: Array,
    trials: int,
    eval_every: int,
    monitor: optlab.Monitor,
    propose: Callable[[Array], Array],
    *,
    start_is_candidate: bool,
) -> Array:
    """The loop both random searches share: ``propose(best)`` a new ``W`` (D, C), keep it if
    its training objective is lower. Each trial is one step over the whole training set and
    reports, as a gradient step does, the objective of the iterate it starts from (``start``,
    then the best so far). ``start`` competes only if ``start_is_candidate``."""
    _refuse_many_steps(trials, "trials")
    n = objective.n_examples
    best = start
    current = objective.value(start)
    best_parts = current if start_is_candidate else None
    for trial in range(1, trials + 1):
        W = propose(best)
        objective.project(W)
        parts = objective.value(W)
        if best_parts is None or parts.total < best_parts.total:
            best, best_parts = W, parts
        monitor.step(n, current.total, current.data, current.reg)
        current = best_parts
        if trial % eval_every == 0 or trial == trials:
            monitor.evaluate(float(trial), best)
    return best


class RandomSearch(optlab.Optimizer):
    """Strategy 1: try random ``W`` (D, C), keep the one with the lowest training objective.

    Each trial is one step that processes the whole training set. The loss reported per step is
    that of the iterate the trial starts from (the initial weights, then the best found so far).
    """

    takes_gradient_steps: ClassVar[bool] = False  # compares objective.value only

    def __init__(self, params: RandomSearchParams) -> None:
        self.params = params

    def check_problem(self, n_examples: int, n_features: int, n_classes: int) -> None:
        """Refuse more than :data:`optlab.MAX_STEPS` trials."""
        _refuse_many_steps(self.params.trials, "trials")

    def minimize(
        self,
        objective: optlab.Objective,
        W0: Array,
        rng: np.random.Generator,
        monitor: optlab.Monitor,
    ) -> Array:
        p = self.params
        dtype = W0.dtype
        scale = dtype.type(p.scale)

        def propose(best: Array) -> Array:
            W: Array = rng.standard_normal(W0.shape, dtype=dtype)
            W *= scale
            return W

        return _search(
            objective, W0, p.trials, p.eval_every, monitor, propose, start_is_candidate=False
        )


class RandomLocalSearch(optlab.Optimizer):
    """Random local search: perturb the best ``W`` (D, C) so far, keep the step if it helps."""

    takes_gradient_steps: ClassVar[bool] = False  # compares objective.value only

    def __init__(self, params: RandomLocalSearchParams) -> None:
        self.params = params

    def check_problem(self, n_examples: int, n_features: int, n_classes: int) -> None:
        """Refuse more than :data:`optlab.MAX_STEPS` trials."""
        _refuse_many_steps(self.params.trials, "trials")

    def minimize(
        self,
        objective: optlab.Objective,
        W0: Array,
        rng: np.random.Generator,
        monitor: optlab.Monitor,
    ) -> Array:
        p = self.params
        dtype = W0.dtype
        step = dtype.type(p.step)

        def propose(best: Array) -> Array:
            W: Array = rng.standard_normal(W0.shape, dtype=dtype)
            W *= step
            W += best
            return W

        best = W0.copy()
        objective.project(best)
        return _search(
            objective, best, p.trials, p.eval_every, monitor, propose, start_is_candidate=True
        )


# --------------------------------------------------------------------------------------------
# Full-batch gradient descent
# --------------------------------------------------------------------------------------------


def numeric_full_gradient(
    objective: optlab.Objective, W: Array, h: float = 1e-5, X: Array | None = None
) -> Array:
    """Centered finite-difference gradient (D, C) of the full objective, in float64.

    Uses the linearity of the scores: moving ``W[d, k]`` by ``h`` moves column ``k`` of the
    scores by ``h * X[:, d]``, so each of the ``2 * D * C`` loss evaluations costs ``O(N C)``
    instead of a new ``X @ W``. The data loss is over ``X``: by default the unperturbed
    training set (no dropout), as in :meth:`optlab.Objective.value`.

    Parameters
    ----------
    objective : Objective
    W : (D, C) array
    h : float
    X : (N, D) array, optional
        The training examples as perturbed for this step (:meth:`optlab.Objective.perturbed`).

    Returns
    -------
    grad : (D, C) float64 array
    """
    loss = objective.loss.impl
    X = (objective.X if X is None else X).astype(np.float64, copy=False)
    y = objective.y
    W64 = W.astype(np.float64, copy=True)
    scores = X @ W64
    grad = np.empty_like(W64)
    D, C = W64.shape
    for k in range(C):
        column = scores[:, k].copy()
        for d in range(D):
            delta = h * X[:, d]
            scores[:, k] = column + delta
            plus = loss.loss(scores, y)
            scores[:, k] = column - delta
            minus = loss.loss(scores, y)
            grad[d, k] = (plus - minus) / (2.0 * h)
        scores[:, k] = column
    if any(r.impl.has_penalty for r in objective.regularizers):
        for d in range(D):
            for k in range(C):
                old = W64[d, k]
                W64[d, k] = old + h
                plus = objective.reg_value_and_grad(W64, with_grad=False)[0]
                W64[d, k] = old - h
                minus = objective.reg_value_and_grad(W64, with_grad=False)[0]
                W64[d, k] = old
                grad[d, k] += (plus - minus) / (2.0 * h)
    return grad


class GradientDescent(optlab.Optimizer):
    """Vanilla gradient descent: ``W -= lr * grad L(W)`` on the full training set."""

    def __init__(self, params: GDParams) -> None:
        self.params = params

    def check_problem(self, n_examples: int, n_features: int, n_classes: int) -> None:
        """Refuse more than :data:`optlab.MAX_STEPS` iterations, and a numeric-gradient run
        needing more than ``max_numeric_evaluations``."""
        _refuse_many_steps(self.params.iterations, "iterations")
        if self.params.gradient == "numeric":
            self._refuse_large_numeric(n_features, n_classes)

    def _refuse_large_numeric(self, D: int, C: int) -> None:
        p = self.params
        needed = 2 * D * C * p.iterations
        if needed > p.max_numeric_evaluations:
            raise optlab.InputError(
                f"optimizer.gradient=numeric needs 2*D*C*iterations = 2*{D}*{C}*{p.iterations}"
                f" = {needed} loss evaluations, more than optimizer.max_numeric_evaluations="
                f"{p.max_numeric_evaluations}; use gradient: analytic, fewer iterations or "
                "features, or raise max_numeric_evaluations",
                key="gradient",
            )

    def minimize(
        self,
        objective: optlab.Objective,
        W0: Array,
        rng: np.random.Generator,
        monitor: optlab.Monitor,
    ) -> Array:
        p = self.params
        numeric = p.gradient == "numeric"
        self.check_problem(objective.n_examples, *objective.shape)
        dtype = W0.dtype
        lr = dtype.type(p.lr)
        n = objective.n_examples
        W = W0.copy()
        for it in range(1, p.iterations + 1):
            if numeric:  # of the objective the analytic step takes, dropout included
                X = objective.perturbed(objective.X)
                data = objective.data_loss(W, X)
                reg = objective.reg_value_and_grad(W, with_grad=False)[0]
                parts = optlab.LossParts(data + reg, data, reg)
                grad = numeric_full_gradient(objective, W, p.numeric_h, X).astype(dtype)
            else:
                parts, grad = objective.value_and_grad(W)
            grad *= lr
            W -= grad
            objective.project(W)
            monitor.step(n, parts.total, parts.data, parts.reg)
            if it % p.eval_every == 0 or it == p.iterations:
                monitor.evaluate(float(it), W)
        return W


# --------------------------------------------------------------------------------------------
# Minibatch optimizers: one loop, one update rule each
# --------------------------------------------------------------------------------------------


class UpdateRule(ABC):
    """How a minibatch optimizer turns a gradient into an in-place update of ``W``."""

    @abstractmethod
    def start(self, W: Array) -> None:
        """Reset the rule's state for a new run from ``W`` (D, C)."""

    @abstractmethod
    def apply(self, W: Array, grad: Array, lr: float) -> None:
        """Update ``W`` (D, C) in place from ``grad`` (D, C); both keep their dtype."""


class SGDRule(UpdateRule):
    """``W -= lr * g``; with momentum ``v = mu v - lr g; W += v`` (Nesterov: look-ahead form)."""

    def __init__(self, momentum: float = 0.0, nesterov: bool = False) -> None:
        self.momentum = momentum
        self.nesterov = nesterov
        self.v: Array | None = None

    def start(self, W: Array) -> None:
        self.v = np.zeros_like(W) if self.momentum > 0 or self.nesterov else None

    def apply(self, W: Array, grad: Array, lr: float) -> None:
        t = W.dtype.type
        if self.v is None:
            W -= t(lr) * grad
            return
        mu = t(self.momentum)
        if self.nesterov:
            v_prev = self.v.copy()
            self.v *= mu
            self.v -= t(lr) * grad
            W += (t(1) + mu) * self.v - mu * v_prev
        else:
            self.v *= mu
            self.v -= t(lr) * grad
            W += self.v


class AdaGradRule(UpdateRule):
    """``cache += g^2; W -= lr * g / (sqrt(cache) + eps)``."""

    def __init__(self, eps: float) -> None:
        self.eps = eps
        self.cache: Array | None = None

    def start(self, W: Array) -> None:
        self.cache = np.zeros_like(W)

    def apply(self, W: Array, grad: Array, lr: float) -> None:
        assert self.cache is not None, "start() was not called"
        t = W.dtype.type
        self.cache += grad * grad
        W -= t(lr) * grad / (np.sqrt(self.cache) + t(self.eps))


class RMSPropRule(UpdateRule):
    """``cache = r cache + (1 - r) g^2; W -= lr * g / (sqrt(cache) + eps)``."""

    def __init__(self, decay_rate: float, eps: float) -> None:
        self.decay_rate = decay_rate
        self.eps = eps
        self.cache: Array | None = None

    def start(self, W: Array) -> None:
        self.cache = np.zeros_like(W)

    def apply(self, W: Array, grad: Array, lr: float) -> None:
        assert self.cache is not None, "start() was not called"
        t = W.dtype.type
        self.cache *= t(self.decay_rate)
        self.cache += t(1 - self.decay_rate) * grad * grad
        W -= t(lr) * grad / (np.sqrt(self.cache) + t(self.eps))


class AdamRule(UpdateRule):
    """Adam with bias correction: first and second moment estimates ``m``, ``v``."""

    def __init__(self, beta1: float, beta2: float, eps: float) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m: Array | None = None
        self.v: Array | None = None
        self.t = 0

    def start(self, W: Array) -> None:
        self.m = np.zeros_like(W)
        self.v = np.zeros_like(W)
        self.t = 0

    def apply(self, W: Array, grad: Array, lr: float) -> None:
        assert self.m is not None and self.v is not None, "start() was not called"
        t = W.dtype.type
        self.t += 1
        self.m *= t(self.beta1)
        self.m += t(1 - self.beta1) * grad
        self.v *= t(self.beta2)
        self.v += t(1 - self.beta2) * grad * grad
        m_hat = self.m * t(1 / (1 - self.beta1**self.t))
        v_hat = self.v * t(1 / (1 - self.beta2**self.t))
        W -= t(lr) * m_hat / (np.sqrt(v_hat) + t(self.eps))


def minibatch_loop(
    objective: optlab.Objective,
    W0: Array,
    rng: np.random.Generator,
    monitor: optlab.Monitor,
    params: MinibatchParams,
    rule: UpdateRule,
) -> Array:
    """The minibatch training loop every minibatch optimizer shares.

    Each epoch draws ``ceil(N / batch_size)`` batches (a shuffled partition of the training set,
    or draws with replacement: :meth:`optlab.MinibatchParams.epoch_batches`), applies ``rule``
    to each batch's gradient, projects ``W`` and reports the step; the monitor evaluates after
    every epoch; the learning rate is multiplied by ``lr_decay`` after every epoch.
    ``objective.minibatches`` picks how the batches' rows are read (in place by the bundled
    losses' step kernel, or copied ahead); the steps are the same.

    Parameters
    ----------
    objective : Objective
    W0 : (D, C) array
        Start; not modified.
    rng : numpy.random.Generator
        The only source of randomness (batch order).
    monitor : Monitor
    params : MinibatchParams
    rule : UpdateRule

    Returns
    -------
    W : (D, C) array, dtype of ``W0``
    """
    n = objective.n_examples
    params.check_problem(n)
    W = W0.copy()
    rule.start(W)
    lr = float(params.lr)
    for epoch in range(1, params.epochs + 1):
        batches = params.epoch_batches(n, rng)
        with objective.minibatches(batches) as stream:
            for batch in stream:
                parts, grad = objective.value_and_grad(W, batch)
                rule.apply(W, grad, lr)
                objective.project(W)
                monitor.step(len(batch), parts.total, parts.data, parts.reg)
        monitor.evaluate(float(epoch), W)
        lr *= params.lr_decay
    return W


class MinibatchOptimizer(optlab.Optimizer):
    """A minibatch optimizer: :func:`minibatch_loop` with one update rule."""

    def __init__(self, params: MinibatchParams, rule: UpdateRule) -> None:
        self.params = params
        self.rule = rule

    def check_problem(self, n_examples: int, n_features: int, n_classes: int) -> None:
        """Refuse a ``batch_size`` larger than the training set, and more than
        :data:`optlab.MAX_STEPS` steps."""
        self.params.check_problem(n_examples)

    def minimize(
        self,
        objective: optlab.Objective,
        W0: Array,
        rng: np.random.Generator,
        monitor: optlab.Monitor,
    ) -> Array:
        return minibatch_loop(objective, W0, rng, monitor, self.params, self.rule)


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------


def _random_search(params: RandomSearchParams) -> RandomSearch:
    return RandomSearch(params)


def _random_local_search(params: RandomLocalSearchParams) -> RandomLocalSearch:
    return RandomLocalSearch(params)


def _gd(params: GDParams) -> GradientDescent:
    return GradientDescent(params)


def _sgd(params: SGDParams) -> MinibatchOptimizer:
    return MinibatchOptimizer(params, SGDRule(params.momentum, params.nesterov))


def _adagrad(params: AdagradParams) -> MinibatchOptimizer:
    return MinibatchOptimizer(params, AdaGradRule(params.eps))


def _rmsprop(params: RMSPropParams) -> MinibatchOptimizer:
    return MinibatchOptimizer(params, RMSPropRule(params.decay_rate, params.eps))


def _adam(params: AdamParams) -> MinibatchOptimizer:
    return MinibatchOptimizer(params, AdamRule(params.beta1, params.beta2, params.eps))


@optlab.hookimpl
def optlab_register_optimizers() -> list[optlab.OptimizerRecord]:
    """The bundled optimizers."""
    R = optlab.OptimizerRecord
    return [
        R("random_search", _random_search, RandomSearchParams, "Best of random W (strategy 1)."),
        R(
            "random_local_search",
            _random_local_search,
            RandomLocalSearchParams,
            "Perturb the best W at random, keep improvements.",
        ),
        R("gd", _gd, GDParams, "Full-batch gradient descent (analytic or numeric gradient)."),
        R("sgd", _sgd, SGDParams, "Minibatch SGD, optional (Nesterov) momentum."),
        R("adagrad", _adagrad, AdagradParams, "Minibatch Adagrad (per-weight step sizes)."),
        R("rmsprop", _rmsprop, RMSPropParams, "Minibatch RMSProp (leaky Adagrad)."),
        R("adam", _adam, AdamParams, "Minibatch Adam (momentum + RMSProp, bias-corrected)."),
    ]
