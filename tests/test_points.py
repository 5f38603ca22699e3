"""Metric points in columns: what the tracker makes of a run's reports."""

from __future__ import annotations

import math

import numpy as np
from tracking_data import train

from optlab.events import StepHistory
from optlab.tracking.points import (
    EPOCH_METRICS,
    STEP_METRICS,
    Points,
    evaluation_points,
    report_points,
    report_size,
    step_points,
)


def _as_set(points: Points) -> set[tuple[str, float, int, int]]:
    return set(
        zip(
            points.keys,
            points.values.tolist(),
            points.timestamps.tolist(),
            points.steps.tolist(),
            strict=True,
        )
    )


def test_report_points_are_every_step_and_evaluation() -> None:
    run = train("points", epochs=3)
    reports = run.reports
    steps = StepHistory()
    for report in reports:
        steps.extend(report.steps)
    made = report_points(reports)
    assert len(made) == sum(map(report_size, reports)) == 3 * len(steps) + 3 * len(reports)
    assert _as_set(made) == _as_set(step_points(steps) + evaluation_points(reports))
    for name in STEP_METRICS:
        mine = [i for i, key in enumerate(made.keys) if key == name]
        np.testing.assert_array_equal(made.values[mine], getattr(steps, name))
        np.testing.assert_array_equal(made.steps[mine], steps.examples)
        np.testing.assert_array_equal(made.timestamps[mine], np.rint(steps.time * 1000))
    for name in EPOCH_METRICS:
        mine = [i for i, key in enumerate(made.keys) if key == name]
        assert made.values[mine].tolist() == [getattr(r, name) for r in reports]
    assert made.values.dtype == np.float64 and made.steps.dtype == np.int64


def test_no_validation_split_means_no_val_accuracy_points() -> None:
    run = train("points", epochs=2)
    reports = [type(r)(**{**r.__dict__, "val_accuracy": None}) for r in run.reports]
    made = report_points(reports)
    assert "val_accuracy" not in made.keys
    assert len(made) == sum(map(report_size, reports))


def test_step_points_from_an_offset_and_slices() -> None:
    run = train("points", epochs=1)
    steps = run.reports[0].steps
    assert len(steps) >= 4
    tail = step_points(steps, 2)
    assert len(tail) == 3 * (len(steps) - 2)
    assert len(step_points(steps, len(steps))) == 0
    assert len(tail[:2]) == 2 and tail[:2].keys == ["loss"] * 2
    np.testing.assert_array_equal(tail[:2].steps, steps.examples[2:4])


def test_stored_values_and_mlflow_metrics() -> None:
    points = Points.at({"a": math.nan, "b": math.inf, "c": -math.inf, "d": 1.5}, 7, 3)
    values, is_nan = points.stored_values()
    largest = np.finfo(np.float64).max
    assert values.tolist() == [0.0, largest, -largest, 1.5]
    assert is_nan.tolist() == [True, False, False, False]
    metrics = points.metrics()
    assert [m.key for m in metrics] == ["a", "b", "c", "d"]
    assert all(m.timestamp == 7 and m.step == 3 for m in metrics)
    assert math.isnan(metrics[0].value) and metrics[3].value == 1.5
    assert len(Points.concat([])) == 0 and len(Points.concat([Points(), points])) == 4
