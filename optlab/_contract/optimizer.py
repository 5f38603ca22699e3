"""The optimizer interface and its record: what an optimizer plugin implements and registers,
and :class:`MinibatchParams`, the params every minibatch optimizer takes.

Apart from :mod:`optlab._contract.components` because an optimizer works on an
:class:`~optlab._contract.objective.Objective`, which is built from the component interfaces there.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from optlab._contract.components import Array, ComponentKind, ComponentRecord, Monitor, Params
from optlab._contract.objective import Objective
from optlab._errors import InputError
from optlab._meta import exported

__all__ = ["MAX_STEPS", "MinibatchParams", "Optimizer", "OptimizerRecord"]

#: The most parameter updates (optimizer steps) one run may make. Every bundled optimizer's
#: :meth:`~Optimizer.check_problem` refuses a run needing more (minibatch optimizers:
#: ``epochs * ceil(N / batch_size)``; ``gd``: ``iterations``; the random searches: ``trials``)
#: with an :class:`~optlab._errors.InputError` giving the count, this limit and, as its ``key``,
#: the param to lower. Even at a microsecond a step that many take 17 minutes, and a real step
#: takes far longer: such a run is a mistake in the spec (an extra digit), not work to start.
MAX_STEPS = 10**9


class Optimizer(ABC):
    """Owns the training loop over an :class:`~optlab._contract.objective.Objective`."""

    #: whether the optimizer takes gradient steps (``objective.value_and_grad``,
    #: ``minibatches`` or ``perturbed``), the only ones an input perturbation (dropout)
    #: changes; an optimizer that only compares ``objective.value`` (the random searches) sets
    #: it False, and a run that gives it a perturbing regularizer warns at its start
    takes_gradient_steps: ClassVar[bool] = True

    @abstractmethod
    def minimize(
        self,
        objective: Objective,
        W0: Array,
        rng: np.random.Generator,
        monitor: Monitor,
    ) -> Array:
        """Minimize ``objective`` from ``W0`` (D, C); return the final weights (D, C).

        Must keep ``W0``'s dtype, draw all randomness from ``rng``, call ``monitor.step`` once
        per step and ``monitor.evaluate`` at least once (at the end).
        """

    def check_problem(self, n_examples: int, n_features: int, n_classes: int) -> None:  # noqa: B027
        """Refuse a problem this optimizer cannot handle, before any run starts.

        Called for each run after the data is loaded (or measured, by ``optlab validate``)
        and before anything is trained or logged, and again as the run starts; raise
        :class:`~optlab._errors.InputError` (one line: which param, what to change) with
        ``key=`` the param at fault, e.g. ``InputError(..., key="batch_size")`` for a
        ``batch_size`` larger than ``n_examples``, or a run of more than :data:`MAX_STEPS`
        steps. Anything else it raises is a fault of the plugin: that run fails, naming it,
        and the others go on. Default: accept everything.

        Parameters
        ----------
        n_examples : int
            ``N``, the training split's examples.
        n_features : int
            ``D``, the columns of ``X`` (the bias column included, when there is one).
        n_classes : int
            ``C``.
        """


class MinibatchParams(Params):
    """Params every bundled minibatch optimizer takes (``sgd``, ``adagrad``, ``rmsprop``,
    ``adam``); subclass it for an optimizer of your own that trains on minibatches.

    - ``lr`` (default ``1e-3``, > 0): the step size of the first epoch.
    - ``batch_size`` (default 200, >= 1): examples per minibatch; more than the training set
      is refused (:meth:`check_problem`).
    - ``epochs`` (default 10, >= 1): each epoch is ``ceil(N / batch_size)`` steps, followed by
      one evaluation.
    - ``sampling`` (default ``shuffle``): ``shuffle`` draws a permutation of the training set
      each epoch and cuts it into batches, so every example is used exactly once per epoch (the
      last batch is smaller when ``batch_size`` does not divide ``N``); ``replacement`` draws
      each batch's ``batch_size`` row indices uniformly and independently (with replacement),
      so an example may appear more than once in a batch or an epoch, or not at all, and
      every batch is full.
    - ``lr_decay`` (default 1, in (0, 1]): the learning rate is multiplied by it after each
      epoch, so epoch ``e`` (from 1) steps with ``lr * lr_decay ** (e - 1)``.

    A subclass adds its own fields and may change a default (``adagrad``'s ``lr`` is
    ``1e-2``). An optimizer using it must honour every field: :meth:`epoch_batches` draws an
    epoch's batches as the bundled optimizers do, and :meth:`check_problem` refuses what they
    refuse.
    """

    lr: float = Field(1e-3, gt=0, description="Step size (learning rate).")
    batch_size: int = Field(200, ge=1, description="Examples per minibatch.")
    epochs: int = Field(10, ge=1, description="Passes over the training set.")
    sampling: Literal["shuffle", "replacement"] = Field(
        "shuffle",
        description="Shuffle once per epoch (each example once), or draw with replacement.",
    )
    lr_decay: float = Field(
        1.0, gt=0, le=1, description="Multiply the learning rate by this after each epoch."
    )

    def epoch_batches(self, n_examples: int, rng: np.random.Generator) -> list[Array]:
        """One epoch's batches: ``ceil(N / batch_size)`` int64 arrays of row indices into the
        training set, drawn from ``rng`` as :attr:`sampling` says (pass them to
        :meth:`Objective.minibatches <optlab.Objective.minibatches>`)."""
        B = self.batch_size
        if self.sampling == "shuffle":
            order = rng.permutation(n_examples)
            return [order[i : i + B] for i in range(0, n_examples, B)]
        return list(rng.integers(0, n_examples, size=(math.ceil(n_examples / B), B)))

    def check_problem(self, n_examples: int) -> None:
        """Refuse a ``batch_size`` larger than the training set's ``n_examples``, and a run of
        more than :data:`MAX_STEPS` steps (``epochs * ceil(N / batch_size)``), with an
        :class:`~optlab._errors.InputError` keyed at the param to change. Call it from your
        optimizer's :meth:`Optimizer.check_problem`."""
        if self.batch_size > n_examples:
            raise InputError(
                f"optimizer.batch_size={self.batch_size} is larger than the training set "
                f"({n_examples} examples); use a batch_size of at most {n_examples}",
                key="batch_size",
            )
        steps = self.epochs * -(-n_examples // self.batch_size)
        if steps > MAX_STEPS:
            raise InputError(
                f"optimizer.epochs: epochs*ceil(N/batch_size) = {self.epochs}*ceil({n_examples}/"
                f"{self.batch_size}) = {steps} steps is more than the {MAX_STEPS} a run may take "
                "(optlab.MAX_STEPS); lower optimizer.epochs",
                key="epochs",
            )


@dataclass(frozen=True)
class OptimizerRecord(ComponentRecord[Optimizer]):
    kind: ClassVar[ComponentKind] = "optimizer"


exported(MinibatchParams, Optimizer, OptimizerRecord)
