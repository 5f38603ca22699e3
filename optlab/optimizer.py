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

__all__ = ["Optimizer", "OptimizerRecord"]


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

        Called once per run after the data is loaded and before anything is trained or logged;
        raise :class:`~optlab.errors.InputError` (one line: which param, what to change), e.g.
        a ``batch_size`` larger than ``n_examples``. Default: accept everything.
        """


@dataclass(frozen=True)
class OptimizerRecord(ComponentRecord[Optimizer]):
    kind: ClassVar[ComponentKind] = "optimizer"
