"""The tracker against a real ``mlflow server`` (REST store, proxied artifacts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow_server import MlflowServer, mlflow_server  # noqa: F401
from tracking_data import check_logged_run, child_runs, drive, train

from optlab._tracking import Tracker
from optlab._tracking.readback import compare, load_latest_invocation
from optlab._tracking.resume import finished_runs

pytestmark = pytest.mark.integration


def _client(url: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(url)


def test_invocation_logged_through_the_server(
    mlflow_server: MlflowServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    runs = {
        "svm": train("svm", lr=0.5),
        "softmax": train("softmax", lr=0.05),
        "sgd-lr10": train("sgd-lr10", lr=10.0, fail_at_epoch=2),
    }
    tracker = Tracker(mlflow_server.url, "server-cmp")
    with tracker.parent("server-cmp", {"optlab.spec_hash": "s1"}) as parent_id:
        drive(tracker, list(runs.values()))
        tracker.log_comparison([(r.info, r.result) for r in runs.values()])  # type: ignore[misc]
    client = _client(mlflow_server.url)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent_id)} >= {
        "comparison.png",
        "comparison.md",
    }
    children = child_runs(client, tracker.experiment_id, parent_id)
    assert set(children) == set(runs)
    for name, run in runs.items():
        check_logged_run(client, children[name], run)
    svm = children["svm"].info.run_id
    assert {a.path for a in client.list_artifacts(svm)} == {
        "spec.yaml",
        "learning_curves.png",
        "weight_templates.png",
        "confusion_matrix.png",
        "weights.npz",
        "steps.npz",
    }
    # artifacts went through the server's proxy into its artifact folder
    assert list(mlflow_server.artifacts.rglob("weights.npz"))
    local = Path(client.download_artifacts(svm, "weights.npz", str(tmp_path)))
    with np.load(local) as saved:
        np.testing.assert_array_equal(saved["W"], runs["svm"].result.W)  # type: ignore[union-attr]
    assert set(finished_runs(tracker)) == {runs["svm"].info.key, runs["softmax"].info.key}

    loaded = load_latest_invocation("server-cmp", mlflow_server.url)
    assert [(i.name, r.status) for i, r in loaded] == [
        ("svm", "FINISHED"),
        ("softmax", "FINISHED"),
        ("sgd-lr10", "FAILED"),
    ]
    _, rows, figure, _ = compare("server-cmp", mlflow_server.url, tmp_path / "out")
    assert figure is not None and figure.stat().st_size > 10_000
    assert [r["best"] for r in rows].count(True) == 1


def test_killed_invocation_through_the_server(mlflow_server: MlflowServer) -> None:  # noqa: F811
    run = train("softmax", epochs=2)
    tracker = Tracker(mlflow_server.url, "server-killed", plots=False)
    with pytest.raises(KeyboardInterrupt), tracker.parent("server-killed", {}) as parent_id:
        tracker.optlab_run_started(run=run.info)
        tracker.optlab_epoch_ended(run=run.info, report=run.reports[0])
        raise KeyboardInterrupt
    client = _client(mlflow_server.url)
    assert client.get_run(parent_id).info.status == "KILLED"
    child = child_runs(client, tracker.experiment_id, parent_id)["softmax"]
    assert child.info.status == "KILLED"
    history = client.get_metric_history(child.info.run_id, "curves/loss")
    assert len(history) == len(run.reports[0].steps)


def test_run_on_a_server_suggests_what_works_with_a_server(
    mlflow_server: MlflowServer,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's last line says where to see the runs: a tracking server's own UI (``optlab
    ui`` refuses a server), and ``optlab compare`` on it, which works."""
    from typer.testing import CliRunner

    from optlab._cli import app

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: server-summary\ndata: {name: digits, limit: 200}\nloss: {name: softmax}\n"
        "optimizer: {name: sgd, lr: 0.01, batch_size: 32, epochs: 1}\n"
        "tracking: {figures: false}\n"
    )
    url = mlflow_server.url
    done = CliRunner().invoke(app, ["run", str(spec), "--tracking-uri", url])
    assert done.exit_code == 0, done.stderr
    compare_command = f"optlab compare server-summary --tracking-uri {url}"
    assert f"view: {url} in a browser, or {compare_command}" in done.stdout
    assert "optlab ui" not in done.stdout
    shown = CliRunner().invoke(app, compare_command.split()[1:])
    assert shown.exit_code == 0, shown.stderr
