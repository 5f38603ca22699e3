"""Figure 3: optlab against scikit-learn's ``SGDClassifier`` (hinge and log_loss).

- Time per epoch at the CIFAR-10 shape, float64 (scikit-learn's SGD works in float64): optlab's
  minibatch SGD (batch 200) against ``SGDClassifier(max_iter=1)`` (one pass over the data; one
  binary classifier per class, all cores through ``n_jobs=-1``).
- Time to reach the same test accuracy on scikit-learn's digits: ``SGDClassifier`` with its
  defaults trains to convergence; optlab's SGD (the demo's settings) stops at the first epoch
  whose test accuracy is at least scikit-learn's.
"""

from __future__ import annotations

import contextlib
import warnings
from functools import partial
from typing import Any

import numpy as np

from benchmarks._common import (
    CIFAR_SHAPE,
    QUICK_SHAPE,
    Figure,
    NullMonitor,
    backend_kwargs,
    best_of,
    loss,
    optimizer,
    regularizer,
    synthetic,
)
from optlab import Array, Monitor
from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective

__all__ = ["run"]

PAIRS = (("svm", "hinge"), ("softmax", "log_loss"))
MAX_EPOCHS = 100


def _sgd_classifier(sk_loss: str, **kwargs: Any) -> Any:
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss=sk_loss, random_state=0, **kwargs)


def _fit_quietly(model: Any, X: Array, y: Array) -> Any:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def epoch_figures(quick: bool) -> list[Figure]:
    """optlab SGD epoch vs ``SGDClassifier`` one-epoch fit, same float64 data."""
    n, d, c = QUICK_SHAPE if quick else CIFAR_SHAPE
    X, y = synthetic(n, d, c, np.float64, seed=4)
    X_sk = np.ascontiguousarray(X[:, :-1])  # scikit-learn fits its own intercept
    W = (1e-4 * np.random.default_rng(5).standard_normal((d, c))).astype(np.float64)
    k = 3 if quick else 2
    figures = []
    for name, sk_loss in PAIRS:
        impl = loss(name)
        obj = Objective(X, y, c, BoundLoss(impl, name, "optlab"), **backend_kwargs(X, y, c, impl))
        sgd = optimizer("sgd", lr=1e-7, batch_size=200, epochs=1)
        monitor = NullMonitor()
        # a fixed batch order for every repetition, as scikit-learn's random_state gives it
        t_opt = best_of(partial(sgd.minimize, obj, W, np.random.default_rng(6), monitor), k + 1)
        model = _sgd_classifier(sk_loss, max_iter=1, tol=None, n_jobs=-1)
        t_sk = best_of(partial(_fit_quietly, model, X_sk, y), k)
        figures.append(
            Figure(
                f"sklearn_epoch.{name}",
                f"SGDClassifier({sk_loss}) epoch time / optlab sgd {name} epoch, {n}x{d} float64",
                t_sk / t_opt,
                "x faster",
                10.0,
                ">=",
                note="optlab: sgd batch 200, 1 epoch; sklearn: max_iter=1, tol=None, n_jobs=-1",
                detail={"optlab_seconds": t_opt, "sklearn_seconds": t_sk},
            )
        )
    return figures


class _Reached(Exception):
    """Raised by the monitor when the target accuracy is reached."""


class _TargetMonitor(Monitor):
    """Stops training at the first epoch whose test accuracy reaches ``target``."""

    def __init__(self, objective: Objective, X: Array, y: Array, target: float) -> None:
        self.objective, self.X, self.y, self.target = objective, X, y, target
        self.accuracy = float("nan")
        self.epochs = 0.0

    def step(self, examples: int, loss: float, data_loss: float, reg_loss: float) -> None:
        pass

    def evaluate(self, epoch: float, W: Array) -> None:
        self.accuracy = self.objective.accuracy(W, self.X, self.y)
        self.epochs = epoch
        if self.accuracy >= self.target:
            raise _Reached


def _digits() -> tuple[Array, Array, Array, Array]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    mean = X_tr.mean(axis=0)
    return X_tr - mean, X_te - mean, y_tr.astype(np.int64), y_te.astype(np.int64)


def _with_bias(X: Array) -> Array:
    return np.hstack([X, np.ones((X.shape[0], 1), X.dtype)])


def digits_figures(quick: bool) -> list[Figure]:
    """Time to scikit-learn's test accuracy on digits, and the accuracies."""
    X_tr, X_te, y_tr, y_te = _digits()
    Xb_tr, Xb_te = _with_bias(X_tr), _with_bias(X_te)
    k = 3 if quick else 5
    figures = []
    for name, sk_loss in PAIRS:
        model = _sgd_classifier(sk_loss)
        t_sk = best_of(partial(_fit_quietly, model, X_tr, y_tr), k)
        acc_sk = float(model.score(X_te, y_te))

        def train(target: float, name: str = name) -> _TargetMonitor:
            impl = loss(name)
            obj = Objective(
                Xb_tr,
                y_tr,
                10,
                BoundLoss(impl, name, "optlab"),
                [BoundRegularizer(regularizer("l2", strength=1e-4), "l2")],
                **backend_kwargs(Xb_tr, y_tr, 10, impl),
            )
            monitor = _TargetMonitor(obj, Xb_te, y_te, target)
            sgd = optimizer("sgd", lr=0.01, batch_size=64, epochs=MAX_EPOCHS, momentum=0.9)
            W0 = 1e-3 * np.random.default_rng(0).standard_normal(obj.shape)
            with contextlib.suppress(_Reached):
                sgd.minimize(obj, W0, np.random.default_rng(1), monitor)
            return monitor

        result = train(acc_sk)
        reached = result.accuracy >= acc_sk
        t_opt = best_of(partial(train, acc_sk), k)
        detail = {
            "optlab_seconds": t_opt,
            "sklearn_seconds": t_sk,
            "optlab_epochs": result.epochs,
            "optlab_accuracy": result.accuracy,
            "sklearn_accuracy": acc_sk,
            "sklearn_epochs": int(model.n_iter_),
        }
        figures.append(
            Figure(
                f"sklearn_digits_time.{name}",
                f"digits: SGDClassifier({sk_loss}) fit time / optlab {name} time to its accuracy",
                t_sk / t_opt if reached else 0.0,
                "x faster",
                1.0,
                ">",
                note=(
                    f"optlab reached {result.accuracy:.4f} >= {acc_sk:.4f} in "
                    f"{result.epochs:g} epochs (sgd lr 0.01, batch 64, momentum 0.9, l2 1e-4)"
                    if reached
                    else f"optlab did not reach {acc_sk:.4f} in {MAX_EPOCHS} epochs"
                ),
                detail=detail,
            )
        )
        figures.append(
            Figure(
                f"sklearn_digits_accuracy.{name}",
                f"digits: optlab {name} test accuracy - SGDClassifier({sk_loss}) test accuracy",
                result.accuracy - acc_sk,
                "points",
                0.0,
                ">=",
                note="same centered split (75/25, stratified, seed 0)",
                detail=detail,
            )
        )
    return figures


def run(quick: bool = False) -> list[Figure]:
    """Figure 3: epoch time at the CIFAR-10 shape, and time to accuracy on digits."""
    return epoch_figures(quick) + digits_figures(quick)
