"""What tracking a run costs, against the training it tracks.

A real digits run (the demo's spec, SGD, trained by :func:`optlab.runner.execute`) is recorded,
then its records are replayed into a :class:`~optlab.tracking.Tracker` on a fresh SQLite store,
through its hooks, in the order a run calls them:

- ``blocked_s``: what the run waits for because its metrics are logged, with the writer
  process an invocation starts (:mod:`optlab.tracking.writer_process`) and figures on, as in
  ``make demo``: the time spent in the tracker's per-evaluation hook (buffering), in handing
  batches over, and in waiting for them to be stored before the run ends (after its figures
  are drawn). Issue 4's target: at most 5% of the training time (``curves_fraction_of_train``);
- ``writer_s``: how long the writer process took to store them, on its own core (from the
  hand-over to the acknowledgement, waited for without figures);
- ``curves_s``: the same curves written by the invoking process itself (one ``INSERT`` per
  batch, :func:`optlab.tracking.sql_metrics.sqlite_metric_writer`), as without a writer
  process (``--jobs N`` replays; tracking servers use ``log_batch``);
- ``tracked_run_s``: everything the tracker does for the run except figures (child run,
  params, ``spec.yaml``, curves, weights, end), writing its curves itself;
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
from collections.abc import Callable
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


def _time_calls(tracker: Any, names: tuple[str, ...]) -> Callable[[], float]:
    """Time ``tracker``'s methods ``names`` (outermost calls only); returns a reader of the
    total."""
    spent = [0.0]
    depth = [0]

    def timed(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[0] += time.perf_counter() - start

        return call

    for name in names:
        setattr(tracker, name, timed(getattr(tracker, name)))
    return lambda: spent[0]


def _with_writer(
    uri: str, info: RunInfo, result: RunResult, reports: list[EpochReport], plots: bool
) -> tuple[float, int]:
    """Replay through a tracker with a ready writer process; (seconds the run waited for its
    metrics, batches handed over)."""
    from optlab.tracking import Tracker
    from optlab.tracking.writer_process import WriterProcess

    with WriterProcess(uri) as writer:
        if not writer.wait_ready(60):
            raise RuntimeError(f"the writer process did not start: {writer.failure}")
        handed: list[int] = []
        submit = writer.submit

        def counting(run_id: str, points: Any) -> int:
            handed.append(len(points))
            return submit(run_id, points)

        writer.submit = counting  # type: ignore[method-assign]
        tracker = Tracker(uri, "bench", plots=plots, writer=writer)
        blocked = _time_calls(tracker, ("optlab_epoch_ended", "_flush", "_settle"))
        with tracker.parent("bench", {}):
            _replay(tracker, info, result, reports)
        if tracker._writer_failed:
            raise RuntimeError(f"the writer process failed: {tracker._writer_failed}")
    return blocked(), len(handed)


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
    from optlab.tracking import Tracker
    from optlab.tracking.points import Points, evaluation_points, step_points
    from optlab.tracking.tracker import _Child

    info, result, reports, run_s = _train(spec, epochs)
    train_s = float(result.metrics["train_time_s"])
    points = 3 * len(result.steps) + 3 * len(reports) + len(result.metrics)
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        tracker = Tracker(uri, "bench", plots=False)  # creating the store is a one-off
        # as in the demo: figures drawn while the writer process stores the curves
        blocked_s, batches = min(
            (_with_writer(uri, info, result, reports, plots=True) for _ in range(3)),
            key=lambda pair: pair[0],
        )
        # the writer process's own time: nothing to hide it behind
        writer_s = min(_with_writer(uri, info, result, reports, plots=False)[0] for _ in range(3))
        with tracker.parent("bench", {}):
            tracked_run_s = _replay(tracker, info, result, reports)
            # the curves alone, written by this process, on a run that already exists
            child = tracker.client.create_run(tracker.experiment_id, run_name="curves")
            run_id = child.info.run_id
            final = Points.at(dict(result.metrics), int(time.time() * 1000), 0)
            curves = Points.concat([step_points(result.steps), evaluation_points(reports), final])
            start = time.perf_counter()
            tracker._flush("curves", _Child(run_id, pending=[curves]))
            curves_s = time.perf_counter() - start
            sampled = curves[:sample].metrics()
            start = time.perf_counter()
            for m in sampled:
                tracker.client.log_metric(run_id, m.key, m.value, m.timestamp, m.step)
            per_point = (time.perf_counter() - start) / len(sampled)
            tracker.client.set_terminated(run_id)
    return {
        "run": info.name,
        "steps": len(result.steps),
        "epochs": len(reports),
        "points": points,
        "batches_to_writer": batches,
        "train_s": train_s,
        "run_s": run_s,
        "blocked_s": blocked_s,
        "writer_s": writer_s,
        "curves_s": curves_s,
        "tracked_run_s": tracked_run_s,
        "log_metric_s": per_point * points,
        "curves_fraction_of_train": blocked_s / train_s,
        "writer_fraction_of_train": writer_s / train_s,
        "sync_curves_fraction_of_train": curves_s / train_s,
        "tracked_fraction_of_run": tracked_run_s / run_s,
        "batch_speedup": per_point * points / curves_s,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    print(json.dumps(run(epochs=200), indent=2))
