"""Metric points in columns: what the tracker makes of a run's steps and reports, and how a
long curve is thinned to the per-metric budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tracking_data import train

from optlab._contract.records import StepHistory
from optlab._tracking.points import (
    EPOCH_METRICS,
    STEP_METRICS,
    Points,
    curve_key,
    evaluation_points,
    optlab_name,
    step_points,
    summary_key,
    thinned,
)


def test_step_points_are_every_step_of_every_curve() -> None:
    steps = train("points", epochs=3).result.steps  # type: ignore[union-attr]
    made = step_points(steps)
    assert len(made) == 3 * len(steps)
    for name in STEP_METRICS:
        mine = [i for i, key in enumerate(made.keys) if key == f"curves/{name}"]
        np.testing.assert_array_equal(made.values[mine], getattr(steps, name))
        np.testing.assert_array_equal(made.steps[mine], steps.examples)
        np.testing.assert_array_equal(made.timestamps[mine], np.rint(steps.time * 1000))
    assert made.values.dtype == np.float64 and made.steps.dtype == np.int64
    assert len(step_points(StepHistory())) == 0


def test_evaluation_points_and_no_val_accuracy_without_a_validation_split() -> None:
    reports = train("points", epochs=3).reports
    made = evaluation_points(reports)
    for name in EPOCH_METRICS:
        mine = [i for i, key in enumerate(made.keys) if key == curve_key(name)]
        assert made.values[mine].tolist() == [getattr(r, name) for r in reports]
        assert made.steps[mine].tolist() == [r.examples for r in reports]
    unvalidated = [type(r)(**{**r.__dict__, "val_accuracy": None}) for r in reports]
    assert "curves/val_accuracy" not in evaluation_points(unvalidated).keys
    assert len(evaluation_points(unvalidated)) == 3 * len(reports)


@pytest.mark.parametrize(("n", "most"), [(5, 10), (10, 10), (11, 10), (1000, 3), (9999, 1000)])
def test_thinning_keeps_the_first_and_last_step_evenly_spaced(n: int, most: int) -> None:
    steps = StepHistory(
        np.arange(1, n + 1, dtype=np.int64) * 7,
        np.linspace(0.0, 1.0, n),
        np.linspace(2.0, 0.1, n),
        np.linspace(1.9, 0.05, n),
        np.full(n, 0.05),
    )
    kept = thinned(steps, most)
    assert len(kept) == min(n, most)
    assert kept.examples[0] == steps.examples[0] and kept.examples[-1] == steps.examples[-1]
    index = np.searchsorted(steps.examples, kept.examples)
    gaps = np.diff(index)
    assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1
    for name in ("time", "loss", "data_loss", "reg_loss"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(steps, name)[index])


def test_slices_concatenation_and_mlflow_metrics() -> None:
    points = Points.at({"a": math.nan, "b": math.inf, "d": 1.5}, 7, 3)
    metrics = points.metrics()
    assert [m.key for m in metrics] == ["a", "b", "d"]
    assert all(m.timestamp == 7 and m.step == 3 for m in metrics)
    assert math.isnan(metrics[0].value) and metrics[2].value == 1.5
    assert len(Points.concat([])) == 0 and len(Points.concat([Points(), points])) == 3
    assert (points + points)[2:4].keys == ["d", "a"]


def test_mlflow_keys_put_curves_first_summaries_next_epoch_last() -> None:
    """MLflow's chart view sorts sections (the key before its last "/") alphabetically, before
    the unprefixed "Model metrics": curves, then summary, then epoch."""
    keys = [curve_key(n) for n in (*STEP_METRICS, *EPOCH_METRICS)] + [summary_key("test_accuracy")]
    sections = sorted({k.rpartition("/")[0] for k in keys if "/" in k})
    assert sections == ["curves", "summary"] and curve_key("epoch") == "epoch"
    for name in (*STEP_METRICS, *EPOCH_METRICS, "test_accuracy"):
        assert optlab_name(curve_key(name)) == optlab_name(summary_key(name)) == name
