"""The same spec and seed give bit-identical metric histories, read back from MLflow: across
two invocations, and whether the runs execute in one process (``--jobs 1``) or in two worker
processes (``--jobs 2``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

# a 2 x 2 sweep of minibatch SGD on a random split of random spirals: the data, the split,
# the initial weights and every minibatch come from the seed
SPEC = """\
name: repro
seed: 11
data: {name: spiral, n_classes: 3, n_points: 80, noise: 0.3, val: 0.25, test: 0.2}
loss: {name: softmax}
regularizer: {name: l2, strength: 0.001}
optimizer: {name: sgd, lr: 0.1, batch_size: 16, epochs: 4, momentum: 0.5}
sweep:
  grid:
    optimizer.lr: [0.05, 0.5]
    regularizer.strength: [0.0001, 0.01]
tracking: {figures: false}  # the histories are compared, not the figures (seconds each run)
"""
CURVES = ("curves/loss", "curves/data_loss", "curves/reg_loss", "curves/val_accuracy")
COMMAND = (sys.executable, "-m", "optlab", "run")


def _histories(uri: str, name: str = "repro") -> dict[str, dict[str, tuple[list[int], bytes]]]:
    """``{run name: {metric: (steps, values as float64 bytes)}}`` of the child runs."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`optlab.role` = 'run'"
    )
    out: dict[str, dict[str, tuple[list[int], bytes]]] = {}
    for run in runs:
        assert run.info.status == "FINISHED"
        curves: dict[str, tuple[list[int], bytes]] = {}
        for key in CURVES:
            points: list[Any] = sorted(
                client.get_metric_history(run.info.run_id, key), key=lambda m: m.step
            )
            steps = [int(m.step) for m in points]
            curves[key.removeprefix("curves/")] = (
                steps,
                np.array([m.value for m in points], np.float64).tobytes(),
            )
        out[run.info.run_name] = curves
    return out


def test_same_seed_same_histories_across_invocations_and_parallelism(
    tmp_path: Path, new_store: Callable[[Path], str]
) -> None:
    spec = tmp_path / "repro.yaml"
    spec.write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # two invocations, each its own process: the same histories across invocations and
    # across parallelism at once (a third, a repeat at --jobs 1, added 4 s and no case)
    uris = {name: new_store(tmp_path / f"{name}.db") for name in ("first", "parallel")}
    jobs = {"first": "1", "parallel": "2"}
    processes = {
        name: subprocess.Popen(
            [*COMMAND, str(spec), "--json", "--tracking-uri", uri, "--jobs", jobs[name]],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, uri in uris.items()
    }
    for name, process in processes.items():
        _, err = process.communicate(timeout=240)
        assert process.returncode == 0, f"{name}: {err}"
    first = _histories(uris["first"])
    assert len(first) == 4
    for curves in first.values():
        steps, values = curves["loss"]
        assert len(steps) > 20 and len(set(steps)) == len(steps)
        assert len(curves["val_accuracy"][0]) == 4  # one evaluation per epoch
        assert np.isfinite(np.frombuffer(values)).all()
    # different hyperparameters do give different curves (the comparison can fail)
    losses = {curves["loss"][1] for curves in first.values()}
    assert len(losses) == 4
    for other in ("parallel",):
        histories = _histories(uris[other])
        assert histories.keys() == first.keys()
        for name, curves in first.items():
            for key, curve in curves.items():
                assert histories[name][key] == curve, f"{other}: {name}: {key} differs"


# large enough for the fast paths: X is 37 MiB (over BLOCKED_MIN_BYTES, so GD's full-batch pass
# is blocked in parts, on two threads where BLAS has two) and a batch of 200 rows is 2.4 MB
# (softmax's step kernel reads it in place, its two halves on two threads); a --jobs 2 worker
# has one BLAS thread and walks the same parts, and the same halves, on one
FAST_PATHS = """\
name: repro_fast
seed: 5
data: {name: blobs, n_samples: 3200, n_features: 3072, n_classes: 10, dtype: float32,
       val: 0.05, test: 0.05}
loss: {name: softmax}
regularizer: {name: l2, strength: 0.0001}
variants:
  gd: {optimizer: {name: gd, lr: 0.000001, iterations: 12, eval_every: 4}}
  sgd: {optimizer: {name: sgd, lr: 0.000001, batch_size: 200, epochs: 2, momentum: 0.9}}
tracking: {figures: false}
"""


def test_fast_paths_give_the_same_histories_on_one_or_two_cores(
    tmp_path: Path, new_store: Callable[[Path], str]
) -> None:
    spec = tmp_path / "fast.yaml"
    spec.write_text(FAST_PATHS)
    from typer.testing import CliRunner

    from optlab._cli import app

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    uris = {jobs: new_store(tmp_path / f"jobs{jobs}.db") for jobs in ("1", "2")}
    # --jobs 1 in this process (a new one would import MLflow again), --jobs 2 in workers
    alone = CliRunner().invoke(app, ["run", str(spec), "--tracking-uri", uris["1"]])
    assert alone.exit_code == 0, alone.output
    done = subprocess.run(
        [*COMMAND, str(spec), "--json", "--tracking-uri", uris["2"], "--jobs", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    one, two = (_histories(uris[jobs], "repro_fast") for jobs in ("1", "2"))
    assert set(one) == {"gd", "sgd"}
    assert len(one["gd"]["loss"][0]) == 12 and len(one["sgd"]["loss"][0]) == 2 * 15
    for name, curves in one.items():
        for key, curve in curves.items():
            assert two[name][key] == curve, f"{name}: {key} differs between --jobs 1 and 2"
