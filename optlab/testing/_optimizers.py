"""check_optimizer: an optimizer lowers the objective of a small convex problem,
reproducibly, keeping shapes, dtypes and constraints."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from optlab._contract.components import Array, Regularizer
from optlab._contract.objective import BoundRegularizer, Objective
from optlab._contract.optimizer import MinibatchParams, Optimizer, OptimizerRecord
from optlab.testing._common import (
    DTYPES,
    build,
    check_array,
    fail,
)
from optlab.testing._doubles import RecordingMonitor, toy_objective


class _ColumnNormCap(Regularizer):
    """Caps each column's norm at ``c`` (a max-norm constraint without a plugin)."""

    has_projection: ClassVar[bool] = True

    def __init__(self, c: float) -> None:
        self.c = c

    def project(self, W: Array) -> None:
        norms = np.linalg.norm(W, axis=0)
        W *= np.minimum(1.0, self.c / np.maximum(norms, 1e-30)).astype(W.dtype)


def check_optimizer(
    component: Any, *, params: Mapping[str, Any] | None = None, seed: int = 0
) -> None:
    """Check an optimizer (an :class:`~optlab.OptimizerRecord` or an :class:`~optlab.Optimizer`)
    on :func:`toy_objective` (240 examples): pass ``params`` if the defaults do not suit it.

    In float32 and float64: weights of the right shape and dtype, ``W0`` unmodified, a lower
    objective, steps and an evaluation reported, the same weights for the same seed, and a
    max-norm constraint holding at the end. Given a record, also: ``lr`` (where its params
    model has one) and, for an :class:`~optlab.MinibatchParams` subclass, ``lr_decay`` and
    ``sampling``, each changed alone, change the weights (an optimizer ignoring them passes
    every other check).

    Raises
    ------
    AssertionError
        Naming the optimizer and what is wrong.
    """
    opt: Optimizer
    opt, name = build(component, Optimizer, "optimizer", params)
    kind = "optimizer"
    for dtype in DTYPES:
        W_first = _run_once(opt, name, toy_objective(dtype), seed)
        W_again = _run_once(opt, name, toy_objective(dtype), seed)
        if not np.array_equal(W_first, W_again):
            raise fail(kind, name, f"two {np.dtype(dtype)} runs with the same seed differ")
    cap = 0.5
    capped = toy_objective(
        np.float64, regularizers=[BoundRegularizer(_ColumnNormCap(cap), "cap", "optlab.testing")]
    )
    W = _run_once(opt, name, capped, seed, require_decrease=False)
    norms = np.linalg.norm(W[:-1], axis=0)
    if np.any(norms > cap * (1 + 1e-6)):
        raise fail(
            kind,
            name,
            f"final W breaks a max-norm constraint (column norms {np.round(norms, 4)} > {cap}); "
            "call objective.project(W) after each update",
        )
    if isinstance(component, OptimizerRecord):
        _check_knobs(component, name, params, seed)


def _other(knob: str, value: Any) -> Any:
    """A value of ``knob`` that must change an optimizer's weights, given the one in use."""
    if knob == "lr":
        return value / 2
    if knob == "lr_decay":
        return 0.5 if value == 1 else 1.0
    return "replacement" if value == "shuffle" else "shuffle"  # sampling


def _check_knobs(
    record: OptimizerRecord, name: str, params: Mapping[str, Any] | None, seed: int
) -> None:
    """The params a spec expects to matter do: ``lr`` where the params model has it, and
    ``lr_decay`` and ``sampling`` of an :class:`~optlab.MinibatchParams` subclass. Each is
    changed alone (``lr`` halved, ``lr_decay`` 1 against 0.5 over two epochs at least,
    ``sampling`` the other way), and the weights on the float64 toy problem must change."""
    kind = "optimizer"
    model = record.params
    knobs = ["lr"] if "lr" in model.model_fields else []
    if issubclass(model, MinibatchParams):
        knobs += ["lr_decay", "sampling"]
    settings = dict(params or {})
    for knob in knobs:
        given = dict(settings)
        if knob == "lr_decay":  # the decay applies after each epoch: from the second on
            given["epochs"] = max(2, model(**settings).epochs)  # type: ignore[attr-defined]
        value = getattr(model(**given), knob)
        try:
            other = _other(knob, value)
            changed = record.factory(model(**{**given, knob: other}))
        except Exception:  # a value its params refuse (a bound, a type): nothing to compare
            continue
        W = _run_once(record.factory(model(**given)), name, toy_objective(np.float64), seed)
        W_other = _run_once(changed, name, toy_objective(np.float64), seed, require_decrease=False)
        if np.array_equal(W, W_other):
            raise fail(
                kind,
                name,
                f"{knob}={value!r} and {knob}={other!r} give the same weights; a spec's "
                f"optimizer.{knob} must change the training (it is ignored)",
            )


def _run_once(
    opt: Optimizer, name: str, objective: Objective, seed: int, require_decrease: bool = True
) -> Array:
    kind = "optimizer"
    dtype = objective.dtype
    W0 = (1e-3 * np.random.default_rng(seed + 1).standard_normal(objective.shape)).astype(dtype)
    before = W0.copy()
    monitor = RecordingMonitor()
    try:
        W = opt.minimize(objective, W0, np.random.default_rng(seed), monitor)
    except AssertionError:
        raise
    except Exception as exc:
        raise fail(kind, name, f"raised {exc!r} on a {dtype} problem") from exc
    W = check_array(kind, name, f"returned weights ({dtype} problem)", W, objective.shape, dtype)
    if not np.array_equal(W0, before):
        raise fail(kind, name, "modified W0 in place; work on a copy")
    if not monitor.steps:
        raise fail(kind, name, "never called monitor.step")
    if not monitor.evaluations:
        raise fail(kind, name, "never called monitor.evaluate (call it at least at the end)")
    for s in monitor.steps:
        if not (isinstance(s.examples, int | np.integer) and s.examples > 0):
            raise fail(kind, name, f"monitor.step got examples={s.examples!r}; a positive int")
        if not all(math.isfinite(float(v)) for v in (s.loss, s.data_loss, s.reg_loss)):
            raise fail(kind, name, f"monitor.step got a non-finite loss {s}")
    if require_decrease:
        start, end = objective.value(W0).total, objective.value(W).total
        if not end < start:
            raise fail(
                kind,
                name,
                f"did not decrease a convex {dtype} problem: objective {start:.6g} at W0, "
                f"{end:.6g} at the end",
            )
    return W
