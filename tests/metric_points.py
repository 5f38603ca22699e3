"""Metric points for the writer tests, and what a store holds of them (through MlflowClient)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optlab.tracking.points import Points

__all__ = ["new_run", "sample_points", "stored"]


def sample_points() -> Points:
    """NaN, infinities, and an older point at the newest step (not the latest value)."""
    values = [0.5, math.nan, math.inf, -math.inf, 2.0, 1.0]
    loss = Points(
        ["loss"] * 6,
        np.array(values),
        1_000 + np.arange(6, dtype=np.int64),
        10 * np.arange(6, dtype=np.int64),
    )
    acc = Points(
        ["acc"] * 5,
        np.array([0.0, 0.25, 0.5, 0.75, 0.1]),
        np.array([2_000] * 4 + [1_999], dtype=np.int64),
        np.array([0, 10, 20, 30, 30], dtype=np.int64),
    )
    return loss + acc


def stored(client: Any, run_id: str) -> tuple[dict[str, str], dict[str, list[Any]]]:
    """The run's latest values and its ``loss`` and ``acc`` histories, comparable as text."""

    def history(key: str) -> list[Any]:
        points = client.get_metric_history(run_id, key)
        return sorted((m.step, m.timestamp, str(m.value)) for m in points)

    latest = client.get_run(run_id).data.metrics
    return {k: str(v) for k, v in latest.items()}, {k: history(k) for k in ("loss", "acc")}


def new_run(client: Any, name: str) -> str:
    """A new run in experiment ``e`` (created on first use)."""
    experiment = client.get_experiment_by_name("e") or client.get_experiment(
        client.create_experiment("e")
    )
    return str(client.create_run(experiment.experiment_id, run_name=name).info.run_id)
