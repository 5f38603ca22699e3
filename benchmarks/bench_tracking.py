"""What tracking a run costs, against the training it tracks.

A real digits run (the demo's spec, SGD, trained by :func:`optlab.runner.execute`) is recorded,
then its records are replayed into a :class:`~optlab.tracking.Tracker` on a fresh SQLite store:

- ``curves_s``: the metric curves alone (every per-step and per-epoch point, final metrics)
  through the tracker's buffered writer (one ``INSERT`` per batch on SQLite, see
  :mod:`optlab.tracking.sql_metrics`);
- ``tracked_run_s``: everything the tracker does for the run except figures (child run, params,
  ``spec.yaml``, curves, weights, end);
- ``log_metric_s``: the same curves written one ``log_metric`` call per point, for scale
  (measured on a sample of points and extrapolated);

each against ``train_s`` (the training's wall time, ``train_time_s``) and ``run_s`` (the
whole :func:`~optlab.runner.execute`, checks and evaluations included).

Run: ``python -m benchmarks.bench_tracking``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from optlab.events import EpochReport, RunInfo, RunResult

SPEC = Path(__file__).resolve().parents[1] / "experiments" / "svm_vs_softmax.yaml"


class _Recorder:
    """An observer that keeps what the runner reports."""

    def __init__(self) -> None:
        self.reports: list[EpochReport] = []

    def optlab_run_started(self, *, run: RunInfo) -> None:
        self.reports.clear()

    def optlab_epoch_ended(self, *, run: RunInfo, report: EpochReport) -> None:
        self.reports.append(report)

    def optlab_run_finished(
        self, *, run: RunInfo, result: RunResult, error: BaseException | None
    ) -> None:
        pass


def _train(spec: Path, epochs: int | None) -> tuple[RunInfo, RunResult, list[EpochReport], float]:
    from optlab.runner import execute
    from optlab.spec import load_experiment

    overrides = [f"optimizer.epochs={epochs}"] if epochs else []
    experiment = load_experiment(spec, overrides)
    run = experiment.runs[0]
    recorder = _Recorder()
    start = time.perf_counter()
    info, result = execute(run, experiment=experiment.name, observer=recorder)
    run_s = time.perf_counter() - start
    if result.status != "FINISHED":
        raise RuntimeError(f"benchmark run {info.name} ended {result.status}: {result.error}")
    return info, result, list(recorder.reports), run_s


def _replay(tracker: Any, info: RunInfo, result: RunResult, reports: list[EpochReport]) -> float:
    start = time.perf_counter()
    tracker.optlab_run_started(run=info)
    for report in reports:
        tracker.optlab_epoch_ended(run=info, report=report)
    tracker.optlab_run_finished(run=info, result=result, error=None)
    return time.perf_counter() - start


def run(spec: Path = SPEC, epochs: int | None = None, sample: int = 200) -> dict[str, Any]:
    """Measure tracking costs for the first run of ``spec``; returns seconds and fractions.

    Parameters
    ----------
    spec : path
        Experiment spec (default: the demo, SVM vs softmax on digits).
    epochs : int, optional
        Override ``optimizer.epochs`` (a longer run has more points to log).
    sample : int
        Points written with per-call ``log_metric`` to estimate that cost.
    """
    from mlflow.entities import Metric

    from optlab.tracking import Tracker
    from optlab.tracking.tracker import _Child, _epoch_metrics, _step_metrics

    info, result, reports, run_s = _train(spec, epochs)
    train_s = float(result.metrics["train_time_s"])
    points = 3 * len(result.steps) + 3 * len(reports) + len(result.metrics)
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        tracker = Tracker(uri, "bench", plots=False)  # creating the store is a one-off
        with tracker.parent("bench", {}):
            tracked_run_s = _replay(tracker, info, result, reports)
            # the curves alone, on a run that already exists
            child = tracker.client.create_run(tracker.experiment_id, run_name="curves")
            run_id = child.info.run_id
            metrics = _step_metrics(result.steps, 0)
            for report in reports:
                metrics += _epoch_metrics(report)
            now = int(time.time() * 1000)
            metrics += [Metric(k, float(v), now, 0) for k, v in result.metrics.items()]
            start = time.perf_counter()
            tracker._flush("curves", _Child(run_id, pending=list(metrics)))
            curves_s = time.perf_counter() - start
            start = time.perf_counter()
            for m in metrics[:sample]:
                tracker.client.log_metric(run_id, m.key, m.value, m.timestamp, m.step)
            per_point = (time.perf_counter() - start) / min(sample, len(metrics))
            tracker.client.set_terminated(run_id)
    return {
        "run": info.name,
        "steps": len(result.steps),
        "epochs": len(reports),
        "points": points,
        "train_s": train_s,
        "run_s": run_s,
        "curves_s": curves_s,
        "tracked_run_s": tracked_run_s,
        "log_metric_s": per_point * points,
        "curves_fraction_of_train": curves_s / train_s,
        "curves_fraction_of_run": curves_s / run_s,
        "tracked_fraction_of_run": tracked_run_s / run_s,
        "batch_speedup": per_point * points / curves_s,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    print(json.dumps(run(epochs=200), indent=2))
