"""The optimizer interface and its record: what an optimizer plugin implements and registers.

Apart from :mod:`optlab.components` because an optimizer works on an
:class:`~optlab.objective.Objective`, which is built from the component interfaces there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optlab.components import Array, ComponentKind, ComponentRecord, Monitor
from optlab.objective import Objective

__all__ = ["MAX_STEPS", "Optimizer", "OptimizerRecord"]

#: The most parameter updates (optimizer steps) one run may make. Every bundled optimizer's
#: :meth:`~Optimizer.check_problem` refuses a run needing more (minibatch optimizers:
#: ``epochs * ceil(N / batch_size)``; ``gd``: ``iterations``; the random searches: ``trials``)
#: with an :class:`~optlab.errors.InputError` giving the count, this limit and, as its ``key``,
#: the param to lower. Even at a microsecond a step that many take 17 minutes, and a real step
#: takes far longer: such a run is a mistake in the spec (an extra digit), not work to start.
MAX_STEPS = 10**9


class Optimizer(ABC):
    """Owns the training loop over an :class:`~optlab.objective.Objective`."""

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

        Called once per run after the data is loaded (or measured, by ``optlab validate``)
        and before anything is trained or logged; raise :class:`~optlab.errors.InputError`
        (one line: which param, what to change) with ``key=`` the param at fault, e.g.
        ``InputError(..., key="batch_size")`` for a ``batch_size`` larger than ``n_examples``,
        or a run of more than :data:`MAX_STEPS` steps. Default: accept everything.

        Parameters
        ----------
        n_examples : int
            ``N``, the training split's examples.
        n_features : int
            ``D``, the columns of ``X`` (the bias column included, when there is one).
        n_classes : int
            ``C``.
        """


@dataclass(frozen=True)
class OptimizerRecord(ComponentRecord[Optimizer]):
    kind: ClassVar[ComponentKind] = "optimizer"
