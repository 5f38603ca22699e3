"""The Python API: optlab.run / load_spec / compare from a script or a notebook - results as
rows and DataFrames, MLflow run ids that exist, errors raised rather than the process ended,
signal handlers restored, and a second call in the same process that works."""

from __future__ import annotations

import contextlib
import shutil
import signal
from pathlib import Path
from typing import Any

import mlflow
import pytest

import optlab
from optlab._api import Results
from optlab._errors import SpecError

SPEC: dict[str, Any] = {
    "name": "api_demo",
    "data": {"name": "blobs", "n_samples": 120},
    "loss": {"name": "softmax"},
    "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 20, "epochs": 2},
    "tracking": {"figures": False},
    "variants": {"soft": {}, "hinge": {"loss": {"name": "svm"}}},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, _empty_store: Path) -> str:
    """An empty migrated store (copied: creating one is not what these tests are about)."""
    path = tmp_path_factory.mktemp("api") / "mlflow.db"
    shutil.copyfile(_empty_store, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def first(store: str) -> tuple[Results, Any, Any]:
    before = signal.getsignal(signal.SIGINT)
    results = optlab.run(SPEC, tracking_uri=store)
    return results, before, signal.getsignal(signal.SIGINT)


def test_run_returns_one_row_per_run_with_its_mlflow_run(
    first: tuple[Results, Any, Any], store: str
) -> None:
    results, before, after = first
    assert [row["name"] for row in results] == ["soft", "hinge"]
    assert [row["status"] for row in results] == ["FINISHED", "FINISHED"]
    assert results.failed == [] and results.experiment == "api_demo"
    client = mlflow.MlflowClient(store)
    for row in results:
        logged = client.get_run(row["run_id"])
        assert logged.info.run_name == row["name"] and logged.info.status == "FINISHED"
        assert row["params"]["loss.name"] == {"soft": "softmax", "hinge": "svm"}[row["name"]]
        assert 0.0 <= row["metrics"]["test_accuracy"] <= 1.0
    for row, (info, result) in zip(results, results.runs, strict=True):  # the whole records
        assert info.name == row["name"] and result.metrics == row["metrics"]
        assert result.W is not None and result.W.shape == (3, 3)  # 2 features + bias, 3 blobs
    assert after is before  # the handlers installed for the run were restored


def test_results_as_a_dataframe_and_as_the_table(first: tuple[Results, Any, Any]) -> None:
    results = first[0]
    frame = results.to_pandas()
    assert list(frame["name"]) == ["soft", "hinge"]
    assert {"run_id", "status", "params.optimizer.lr", "metrics.test_accuracy"} <= set(frame)
    assert [row["run"] for row in results.comparison].count("hinge") == 1
    assert "soft" in str(results) and "hinge" in str(results)


def test_a_second_call_in_the_same_process_and_compare(
    first: tuple[Results, Any, Any], store: str
) -> None:
    again = optlab.run(SPEC, overrides={"optimizer.epochs": 1}, tracking_uri=store)
    assert [row["params"]["optimizer.epochs"] for row in again] == [1, 1]
    assert {row["run_id"] for row in again}.isdisjoint(row["run_id"] for row in first[0])
    table = optlab.compare("api_demo", tracking_uri=store)
    assert [row["run"] for row in table] == [row["run"] for row in again.comparison]


def test_untracked_and_failed_runs_are_rows_not_exits(tmp_path: Path) -> None:
    spec = {**SPEC, "optimizer": {"name": "sgd", "lr": 1e30, "batch_size": 20, "epochs": 2}}
    results = optlab.run(spec, track=False, overrides=["variants.hinge.loss.margin=2"])
    assert results.tracking_uri is None and [row["run_id"] for row in results] == [None, None]
    assert {row["status"] for row in results} == {"FAILED"}
    assert all(row["error"] for row in results.failed)


def test_bad_input_raises(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"<spec>: loss.margin: must be greater than 0"):
        optlab.load_spec({**SPEC, "loss": {"name": "svm", "margin": -1}})
    path = tmp_path / "spec.yaml"
    path.write_text("name: x\n")
    with pytest.raises(SpecError, match="missing required key 'data'"):
        optlab.run(path, track=False)
    with pytest.raises(optlab.InputError, match="unknown executor"):
        optlab.run(SPEC, executor="cloud")
    experiment = optlab.load_spec(SPEC, overrides={"optimizer.lr": 0.5})
    assert [run.optimizer.params.lr for run in experiment.runs] == [0.5, 0.5]  # type: ignore[attr-defined]


def test_a_second_ctrl_c_that_code_swallowed_still_ends_the_call() -> None:
    """Two SIGINTs during a run, the KeyboardInterrupt of the second caught by the code it
    interrupted (as can happen inside a C callback while a figure is drawn): the call still
    ends with KeyboardInterrupt, and the signal handlers are restored."""
    from optlab._contract.plugin_manager import get_plugin_manager

    class Swallower:
        @optlab.hookimpl
        def optlab_run_finished(self, run: Any, result: Any, error: Any) -> None:
            signal.raise_signal(signal.SIGINT)  # the first: stop after this run
            with contextlib.suppress(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)  # the second: stop at once

    pm, _ = get_plugin_manager()
    pm.register(Swallower(), name="swallower")
    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            optlab.run(SPEC, track=False, quiet=True)
    finally:
        pm.unregister(name="swallower")
    assert signal.getsignal(signal.SIGINT) is before
    from optlab._training.monitor import stop_flag

    assert (stop_flag.reason, stop_flag.forced) == (None, False)  # nothing left for later runs
