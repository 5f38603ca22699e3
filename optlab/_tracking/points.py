"""Metric points in columns: what the tracker buffers and writes, and how a long curve is
thinned to the per-metric budget.

A run's curves are arrays already (:class:`~optlab._contract.records.StepHistory`); keeping them as
columns until they reach the store costs a few array copies instead of one Python object per
point. MLflow's own ``Metric`` objects are made only for ``log_batch`` (:meth:`Points.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optlab._contract.components import Array
from optlab._contract.records import EpochReport, StepHistory
from optlab._spec.experiment import DEFAULT_STEP_POINTS

__all__ = [
    "CURVES",
    "DEFAULT_STEP_POINTS",
    "EPOCH_METRICS",
    "STEP_METRICS",
    "SUMMARY",
    "Points",
    "curve_key",
    "evaluation_points",
    "optlab_name",
    "spread",
    "step_points",
    "summary_key",
    "thinned",
]

#: per-step curves (step = examples processed before the step, where the weights whose loss
#: it measured were reached), logged as ``curves/<name>``
STEP_METRICS = ("loss", "data_loss", "reg_loss")
#: per-evaluation points (step = examples processed at the evaluation), logged as
#: ``curves/<name>``, but ``epoch`` as itself; ``train_loss`` is the full training objective
#: (the per-step ``loss`` is a minibatch's for SGD)
EPOCH_METRICS = ("epoch", "train_accuracy", "val_accuracy", "train_loss")

# MLflow's chart view groups metrics into sections by the part of their key before the last
# "/", lists sections alphabetically before the unprefixed "Model metrics", and draws a metric
# whose latest point is at step 0 as a bar chart. So the learning curves (curves/...) open
# the view, the run's final numbers (summary/..., at step 0) follow as bars that compare runs,
# and epoch (an x-axis to choose, not a curve to read) comes last.
CURVES = "curves/"
SUMMARY = "summary/"


def curve_key(name: str) -> str:
    """The MLflow key of a per-step or per-evaluation metric: ``curves/<name>``; ``epoch``."""
    return name if name == "epoch" else CURVES + name


def summary_key(name: str) -> str:
    """The MLflow key of a run's final number (``test_accuracy``): ``summary/<name>``."""
    return SUMMARY + name


def optlab_name(key: str) -> str:
    """The optlab name of an MLflow metric key: the key without ``curves/`` or ``summary/``
    (keys logged by optlab before it grouped them are their own names)."""
    return key.removeprefix(CURVES).removeprefix(SUMMARY)


def _ints(values: Any) -> Array:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _floats(values: Any) -> Array:
    return np.asarray(values, dtype=np.float64).reshape(-1)


@dataclass(frozen=True)
class Points:
    """``N`` metric points as parallel columns.

    Attributes
    ----------
    keys : list of str, length N
        Metric names.
    values : (N,) float64 array
    timestamps : (N,) int64 array
        Milliseconds since the Unix epoch.
    steps : (N,) int64 array
    """

    keys: list[str] = field(default_factory=list)
    values: Array = field(default_factory=lambda: np.empty(0, np.float64))
    timestamps: Array = field(default_factory=lambda: np.empty(0, np.int64))
    steps: Array = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: slice) -> Points:
        return Points(
            self.keys[index], self.values[index], self.timestamps[index], self.steps[index]
        )

    def __add__(self, other: Points) -> Points:
        return Points.concat([self, other])

    @classmethod
    def concat(cls, parts: Sequence[Points]) -> Points:
        """One batch of ``parts``' points, in order."""
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls()
        return cls(
            [key for p in parts for key in p.keys],
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.timestamps for p in parts]),
            np.concatenate([p.steps for p in parts]),
        )

    @classmethod
    def at(cls, values: Mapping[str, float], timestamp: int, step: int) -> Points:
        """One point per key of ``values``, all at ``timestamp`` and ``step``."""
        n = len(values)
        return cls(
            list(values),
            _floats(list(values.values())),
            np.full(n, timestamp, np.int64),
            np.full(n, step, np.int64),
        )

    def metrics(self) -> list[Any]:
        """The points as ``mlflow.entities.Metric`` objects (for ``log_batch``)."""
        from mlflow.entities import Metric

        return list(
            map(
                Metric,
                self.keys,
                self.values.tolist(),
                self.timestamps.tolist(),
                self.steps.tolist(),
            )
        )


def spread(n: int, most: int) -> Array:
    """Indices of at most ``most`` (>= 2) of ``n`` items, evenly spaced, the first and the
    last kept: (min(n, most),) int64."""
    if n <= most:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, most).round().astype(np.int64))


def thinned(steps: StepHistory, most: int) -> StepHistory:
    """At most ``most`` (>= 2) of ``steps``, evenly spaced, the first and the last kept."""
    return steps if len(steps) <= most else steps[spread(len(steps), most)]


def step_points(steps: StepHistory) -> Points:
    """``loss``, ``data_loss`` and ``reg_loss`` of every step (step = examples processed
    before it, timestamp = the wall time it started: see :class:`optlab.StepHistory`)."""
    k = len(STEP_METRICS)
    return Points(
        [curve_key(name) for name in STEP_METRICS for _ in range(len(steps))],
        np.concatenate([_floats(getattr(steps, name)) for name in STEP_METRICS]),
        np.tile(np.rint(_floats(steps.time) * 1000.0).astype(np.int64), k),
        np.tile(_ints(steps.examples), k),
    )


def evaluation_points(reports: Sequence[EpochReport]) -> Points:
    """``epoch``, ``train_accuracy``, ``val_accuracy`` (when there is a validation split) and
    ``train_loss`` (when measured) of each report, at step ``report.examples``."""
    keys: list[str] = []
    values: list[float] = []
    stamps: list[int] = []
    steps: list[int] = []
    for report in reports:
        at, step = round(report.time * 1000.0), int(report.examples)
        for key in EPOCH_METRICS:
            value = getattr(report, key)
            if value is not None:
                keys.append(curve_key(key))
                values.append(value)
                stamps.append(at)
                steps.append(step)
    return Points(keys, _floats(values), _ints(stamps), _ints(steps))
