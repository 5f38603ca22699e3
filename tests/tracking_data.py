"""Real runs for the tracking tests: a tiny softmax classifier trained by minibatch SGD in numpy
on small synthetic "images" (4x4, three classes), with the records the runner would send."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optlab._contract.records import DataSummary, EpochReport, RunInfo, RunResult, StepHistory
from optlab._tracking.points import curve_key, summary_key

__all__ = ["TrainedRun", "drawn_figures", "make_data", "train"]

IMAGE_SHAPE = (4, 4)
CLASSES = ("bar", "dot", "ring")


def make_data(seed: int = 0, n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """(n, 17) features (16 pixels + bias column) and (n,) labels in 0..2."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((3, 16))
    y = rng.integers(0, 3, size=n)
    X = prototypes[y] + 1.5 * rng.standard_normal((n, 16))
    X -= X.mean(axis=0)
    return np.hstack([X, np.ones((n, 1))]), y


@dataclass
class TrainedRun:
    """What the runner would have sent to the observer hooks for one run."""

    info: RunInfo
    reports: list[EpochReport] = field(default_factory=list)
    result: RunResult | None = None


def _loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float) -> tuple[float, float, Any]:
    scores = X @ W
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    data_loss = float(-np.log(probs[np.arange(len(y)), y]).mean())
    grad_scores = probs
    grad_scores[np.arange(len(y)), y] -= 1.0
    grad = X.T @ grad_scores / len(y) + 2 * lam * W
    return data_loss, lam * float(np.sum(W * W)), grad


def train(
    name: str,
    *,
    lr: float = 0.1,
    epochs: int = 3,
    batch: int = 16,
    seed: int = 0,
    lam: float = 1e-3,
    fail_at_epoch: int | None = None,
    variant: str | None = None,
) -> TrainedRun:
    """Train, recording per-step losses and per-epoch accuracies; optionally stop FAILED."""
    X, y = make_data()
    Xtr, ytr, Xva, yva, Xte, yte = X[:90], y[:90], X[90:120], y[90:120], X[120:], y[120:]
    rng = np.random.default_rng(seed)
    W = 1e-3 * rng.standard_normal((17, 3))
    params = {
        "seed": seed,
        "loss.name": "softmax",
        "regularizer.name": "l2",
        "regularizer.l2.strength": lam,
        "optimizer.name": "sgd",
        "optimizer.lr": lr,
        "optimizer.batch_size": batch,
        "optimizer.epochs": epochs,
        "data.name": "blobs",
    }
    spec = {
        "seed": seed,
        "data": {"name": "blobs"},
        "loss": {"name": "softmax"},
        "regularizer": [{"name": "l2", "strength": lam}],
        "optimizer": {"name": "sgd", "lr": lr, "batch_size": batch, "epochs": epochs},
    }
    summary = DataSummary(
        "blobs", 90, 30, 30, 17, 3, CLASSES, "float64", "0" * 64, IMAGE_SHAPE, True
    )
    info = RunInfo(
        name=name,
        key=f"key-{name}-{lr}-{seed}",
        experiment="tracking-test",
        params=params,
        spec=spec,
        tags={"optlab.variant": variant or name, "optlab.provider.loss": "tests"},
        data=summary,
    )
    run = TrainedRun(info)
    history = StepHistory()
    examples = 0
    start = time.perf_counter()
    status, error = "FINISHED", None
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(ytr))
        ex, tm, lo, dl, rl = [], [], [], [], []
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            d, r, grad = _loss(W, Xtr[idx], ytr[idx], lam)
            W = W - lr * grad
            examples += len(idx)
            ex.append(examples)
            tm.append(time.time())
            lo.append(d + r)
            dl.append(d)
            rl.append(r)
        steps = StepHistory(
            np.array(ex, np.int64), np.array(tm), np.array(lo), np.array(dl), np.array(rl)
        )
        history.extend(steps)
        if fail_at_epoch == epoch:
            status, error = "FAILED", f"diverged: loss is not finite at epoch {epoch}"
            break
        report = EpochReport(
            epoch=float(epoch),
            examples=examples,
            time=time.time(),
            steps=steps,
            train_accuracy=float(np.mean((Xtr @ W).argmax(1) == ytr)),
            val_accuracy=float(np.mean((Xva @ W).argmax(1) == yva)),
            loss=lo[-1],
            train_loss=sum(_loss(W, Xtr, ytr, lam)[:2]),  # the full training objective
            elapsed=time.perf_counter() - start,
        )
        run.reports.append(report)
    pred = (Xte @ W).argmax(1)
    confusion = np.bincount(yte * 3 + pred, minlength=9).reshape(3, 3)
    vals = [r.val_accuracy for r in run.reports if r.val_accuracy is not None]
    metrics = {
        "initial_loss": float(np.log(3)),
        "expected_initial_loss": float(np.log(3)),
        "train_time_s": time.perf_counter() - start,
    }
    if status == "FINISHED":
        metrics["test_accuracy"] = float(np.mean(pred == yte))
        metrics["best_val_accuracy"] = max(vals)
    run.result = RunResult(
        name=name,
        status=status,  # type: ignore[arg-type]
        error=error,
        steps=history,
        evaluations=list(run.reports),
        metrics=metrics,
        W=W if status == "FINISHED" else None,
        confusion=confusion if status == "FINISHED" else None,
    )
    return run


def drive(tracker: Any, runs: list[TrainedRun]) -> None:
    """Send each run through the tracker's hooks, as the plugin manager would."""
    for run in runs:
        assert run.result is not None
        tracker.optlab_run_started(run=run.info)
        for report in run.reports:
            tracker.optlab_epoch_ended(run=run.info, report=report)
        tracker.optlab_run_finished(run=run.info, result=run.result, error=None)


def child_runs(client: Any, experiment_id: str, parent_id: str) -> dict[str, Any]:
    """The parent's child runs by name."""
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return {r.info.run_name: r for r in found}


def check_logged_run(client: Any, logged: Any, run: TrainedRun) -> None:
    """Everything the tracker promises for a child run, read back through MlflowClient."""
    result = run.result
    assert result is not None
    run_id = logged.info.run_id
    assert logged.info.status == result.status
    # params: strings, every key
    assert logged.data.params["optimizer.lr"] == str(run.info.params["optimizer.lr"])
    assert logged.data.params["loss.name"] == "softmax"
    assert set(logged.data.params) == set(run.info.params)
    # tags
    tags = logged.data.tags
    assert tags["optlab.run_key"] == run.info.key
    assert tags["optlab.variant"] == run.info.tags["optlab.variant"]
    # full per-step histories: every point, its step (examples) and timestamp (ms)
    steps = result.steps
    for key in ("loss", "data_loss", "reg_loss"):
        points = sorted(client.get_metric_history(run_id, curve_key(key)), key=lambda m: m.step)
        assert [m.step for m in points] == steps.examples.tolist()
        np.testing.assert_allclose([m.value for m in points], getattr(steps, key), rtol=1e-12)
        stamps = np.array([m.timestamp for m in points])
        np.testing.assert_array_equal(stamps, np.rint(steps.time * 1000).astype(np.int64))
    # per-epoch
    for key in ("train_accuracy", "val_accuracy", "epoch"):
        points = sorted(client.get_metric_history(run_id, curve_key(key)), key=lambda m: m.step)
        assert [m.step for m in points] == [r.examples for r in run.reports]
        assert [m.value for m in points] == [getattr(r, key) for r in run.reports]
    # final metrics, at step 0 (bar charts in MLflow's chart view)
    for key, value in result.metrics.items():
        assert logged.data.metrics[summary_key(key)] == value
        (point,) = client.get_metric_history(run_id, summary_key(key))
        assert point.step == 0
    if result.status != "FINISHED":
        assert tags["optlab.status_reason"] == result.error
    else:
        assert "optlab.status_reason" not in tags


def drawn_figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The matplotlib figures optlab's figure functions save from now on, in order."""
    from optlab._report import drawing

    figures: list[Any] = []
    save = drawing.save

    def keep(fig: Any, path: Path | str) -> Path:
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(drawing, "save", keep)
    return figures
