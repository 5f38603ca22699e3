"""4 runs at --jobs 4, all writing at once: every metric point reaches the store, SQLite default
and a real server (runs queued for a worker are tested in test_executors)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow_server import MlflowServer, mlflow_server  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SPEC = """\
name: jobs4
data: {name: digits, limit: 400}
loss: {name: softmax}
optimizer: {name: sgd, lr: 0.01, batch_size: 40, epochs: 3}
variants:
  softmax: {}
  svm: {loss: {name: svm}}
sweep:
  grid:
    optimizer.lr: [0.003, 0.01]
"""


def run_jobs4(tmp_path: Path, uri: str) -> list[dict[str, object]]:
    spec = tmp_path / "jobs4.yaml"
    spec.write_text(SPEC)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "optlab",
            "run",
            str(spec),
            "--json",
            "--jobs",
            "4",
            "--tracking-uri",
            uri,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    assert len(rows) == 4
    return rows


def check_every_point(uri: str, tmp: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("jobs4")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=100)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = {r.data.tags["mlflow.parentRunId"] for r in children}
    assert len(children) == 4 and len(parents) == 1
    assert len({r.info.run_name for r in children}) == 4
    for run in children:
        assert run.info.status == "FINISHED"
        n_train = json.loads(run.data.tags["optlab.data"])["n_train"]
        per_epoch = math.ceil(n_train / 40)
        # the x-axis: training examples processed before each step (the loss is of the
        # weights the step starts from)
        expected = [e * n_train + j * 40 for e in range(3) for j in range(per_epoch)]
        for name in ("curves/loss", "curves/data_loss", "curves/reg_loss"):
            history = client.get_metric_history(run.info.run_id, name)
            assert sorted(m.step for m in history) == expected, (run.info.run_name, name)
        for name in ("curves/val_accuracy", "curves/train_accuracy", "epoch"):
            assert len(client.get_metric_history(run.info.run_id, name)) == 3
        assert "summary/test_accuracy" in run.data.metrics
        # drawn by the worker, uploaded by the invoking process
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"learning_curves.png", "weight_templates.png", "confusion_matrix.png"} <= files
        assert {"console.log", "weights.npz", "spec.yaml"} <= files
        # start and end are the run's own, not when the invoking process recorded it: the
        # UI's durations are the real ones
        stamps = [m.timestamp for m in client.get_metric_history(run.info.run_id, "curves/loss")]
        assert run.info.start_time <= min(stamps) <= max(stamps) <= run.info.end_time
        train_ms = 1000 * run.data.metrics["summary/train_time_s"]
        assert run.info.end_time - run.info.start_time >= train_ms - 1
    parent_id = parents.pop()
    parent = client.get_run(parent_id).info
    # drawn by a worker while the invoking process wrote the runs
    png = Path(client.download_artifacts(parent_id, "comparison.png", str(tmp))).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert parent.start_time <= min(r.info.start_time for r in children)
    assert parent.end_time >= max(r.info.end_time for r in children)


def test_jobs_4_into_the_default_sqlite_store(
    tmp_path: Path, new_store: Callable[[Path], str]
) -> None:
    uri = new_store(tmp_path / "mlflow.db")
    run_jobs4(tmp_path, uri)
    check_every_point(uri, tmp_path)


def test_jobs_4_into_a_real_mlflow_server(
    tmp_path: Path,
    mlflow_server: MlflowServer,  # noqa: F811
) -> None:
    run_jobs4(tmp_path, mlflow_server.url)
    check_every_point(mlflow_server.url, tmp_path)
