"""Metric points in columns: what the tracker buffers and what the writers store.

A run's curves are arrays already (:class:`~optlab.events.StepHistory`); keeping them as
columns until they reach the store costs a few array copies instead of one Python object per
point, and a batch pickles in microseconds when it is handed to the writer process
(:mod:`optlab.tracking.writer_process`). MLflow's own ``Metric`` objects are made only for
``log_batch`` (:meth:`Points.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optlab.components import Array
from optlab.events import EpochReport, StepHistory

__all__ = [
    "EPOCH_METRICS",
    "STEP_METRICS",
    "Points",
    "evaluation_points",
    "report_points",
    "report_size",
    "step_points",
]

#: per-step metric names (step = examples processed so far)
STEP_METRICS = ("loss", "data_loss", "reg_loss")
#: per-evaluation metric names (step = examples processed at the evaluation)
EPOCH_METRICS = ("epoch", "train_accuracy", "val_accuracy")


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

    def stored_values(self) -> tuple[Array, Array]:
        """The values as MLflow's SQL store keeps them, and their NaN flags: (N,) float64 with
        NaN as 0 and infinities clipped to the largest float, (N,) bool."""
        is_nan = np.isnan(self.values)
        largest = np.finfo(np.float64).max
        return np.clip(np.where(is_nan, 0.0, self.values), -largest, largest), is_nan

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


def _curve_points(histories: Sequence[StepHistory], then: Points | None = None) -> Points:
    """``loss``, ``data_loss`` and ``reg_loss`` of every step of ``histories`` (step =
    examples processed, timestamp = the step's wall time), then ``then``'s points: one
    concatenation per column (this runs while a run trains)."""
    then = Points() if then is None else then
    examples = _ints(np.concatenate([h.examples for h in histories]))
    stamps = np.rint(_floats(np.concatenate([h.time for h in histories])) * 1000.0)
    keys: list[str] = []
    for name in STEP_METRICS:
        keys += [name] * len(examples)
    k = len(STEP_METRICS)
    return Points(
        keys + then.keys,
        np.concatenate(
            [_floats(getattr(h, name)) for name in STEP_METRICS for h in histories] + [then.values]
        ),
        np.concatenate([*([stamps.astype(np.int64)] * k), then.timestamps]),
        np.concatenate([*([examples] * k), then.steps]),
    )


def step_points(steps: StepHistory, start: int = 0) -> Points:
    """``loss``, ``data_loss`` and ``reg_loss`` of steps ``start:`` (step = examples processed,
    timestamp = the step's wall time)."""
    if len(steps) <= start:
        return Points()
    fields = ("examples", "time", *STEP_METRICS)
    return _curve_points([StepHistory(*(getattr(steps, f)[start:] for f in fields))])


def evaluation_points(reports: Sequence[EpochReport]) -> Points:
    """``epoch``, ``train_accuracy`` and ``val_accuracy`` (when there is a validation split)
    of each report, at step ``report.examples``."""
    keys: list[str] = []
    values: list[float] = []
    stamps: list[int] = []
    steps: list[int] = []
    for report in reports:
        at, step = round(report.time * 1000.0), int(report.examples)
        for key in EPOCH_METRICS:
            value = getattr(report, key)
            if value is not None:
                keys.append(key)
                values.append(value)
                stamps.append(at)
                steps.append(step)
    return Points(keys, _floats(values), _ints(stamps), _ints(steps))


def report_points(reports: Sequence[EpochReport]) -> Points:
    """Everything ``reports`` carry: their steps' curves and their evaluations, one batch."""
    if not reports:
        return Points()
    return _curve_points([r.steps for r in reports], evaluation_points(reports))


def report_size(report: EpochReport) -> int:
    """How many points :func:`report_points` makes of ``report``."""
    return len(STEP_METRICS) * len(report.steps) + 2 + (report.val_accuracy is not None)
