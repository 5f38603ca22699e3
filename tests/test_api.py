"""The Python API: optlab.run / load_spec / compare from a script or a notebook - results as
rows and DataFrames, MLflow run ids that exist, errors raised rather than the process ended,
signal handlers restored, and a second call in the same process that works."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import signal
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest

import optlab
from optlab._api import Results
from optlab._errors import SpecError
from optlab._report.rows import records_to_json

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
        assert row["loss"]["name"] == {"soft": "softmax", "hinge": "svm"}[row["name"]]
        assert 0.0 <= row["metrics"]["test_accuracy"] <= 1.0
    for row, (info, result) in zip(results, results.runs, strict=True):  # the whole records
        assert info.name == row["name"] and result.metrics == row["metrics"]
        assert result.W is not None and result.W.shape == (3, 3)  # 2 features + bias, 3 blobs
    assert after is before  # the handlers installed for the run were restored


def test_results_rows_are_the_records_of_comparison_json_and_of_json_output(
    first: tuple[Results, Any, Any], store: str, tmp_path: Path
) -> None:
    """Results had rows of their own (name, status, error, run_id, params as dotted keys,
    metrics), the parent run's comparison.json the table's rows (run, the components' names,
    means, members): two more shapes than --json's record per run. All are that record now,
    so that a script reading one reads all."""
    results = first[0]
    client = mlflow.MlflowClient(store)
    parent = client.get_run(results[0]["run_id"]).data.tags["mlflow.parentRunId"]
    stored = json.loads(
        Path(client.download_artifacts(parent, "comparison.json", str(tmp_path))).read_text()
    )
    assert list(results) == stored
    soft = results[0]
    assert soft["loss"] == {"name": "softmax"} and soft["regularizer"] == []
    assert soft["optimizer"] == {**soft["optimizer"], "name": "sgd", "lr": 0.1, "epochs": 2}
    assert soft["group"]["runs"] == ["soft"] and soft["key"] == results.runs[0][0].key
    assert json.loads(records_to_json(results)) == list(results)  # JSON values already


def test_results_as_a_dataframe_and_as_the_table(first: tuple[Results, Any, Any]) -> None:
    results = first[0]
    frame = results.to_pandas()
    assert list(frame["name"]) == ["soft", "hinge"]
    columns = {"run_id", "status", "optimizer.lr", "loss.name", "metrics.test_accuracy"}
    assert columns | {"group.name", "best_val_accuracy"} <= set(frame)
    assert [row["run"] for row in results.comparison].count("hinge") == 1
    assert "soft" in str(results) and "hinge" in str(results)


def test_ipython_shows_the_results_as_the_table(first: tuple[Results, Any, Any]) -> None:
    """A notebook cell ending with the results shows the comparison table, not a dump of the
    rows."""
    from IPython.core.formatters import PlainTextFormatter

    results, _, _ = first
    shown = PlainTextFormatter()(results)
    assert shown == str(results) == str(results.comparison)
    assert "best val" in shown and "soft" in shown and not shown.startswith("Results(")
    assert PlainTextFormatter()(results.comparison) == str(results.comparison)
    assert repr(results) == "<Results: 2 rows>"


def test_results_compare_by_their_rows(first: tuple[Results, Any, Any]) -> None:
    """``results == other`` raised numpy's "The truth value of an array with more than one
    element is ambiguous" (it compared the runs' weights)."""
    import pickle

    results = first[0]
    assert results == pickle.loads(pickle.dumps(results))
    assert results != dataclasses.replace(results, rows=results.rows[:1])


def test_a_second_call_in_the_same_process_and_compare(
    first: tuple[Results, Any, Any], store: str
) -> None:
    again = optlab.run(SPEC, overrides={"optimizer.epochs": 1}, tracking_uri=store)
    assert [row["optimizer"]["epochs"] for row in again] == [1, 1]
    assert {row["run_id"] for row in again}.isdisjoint(row["run_id"] for row in first[0])
    # compare gives the Results of the latest call, read back: the same records and table
    compared = optlab.compare("api_demo", tracking_uri=store)
    assert isinstance(compared, Results) and compared.rows == again.rows
    assert compared.comparison == again.comparison and str(compared) == str(again)
    assert [info.name for info, _ in compared.runs] == [row["name"] for row in again]


def test_untracked_and_failed_runs_are_rows_not_exits(tmp_path: Path) -> None:
    spec = {**SPEC, "optimizer": {"name": "sgd", "lr": 1e30, "batch_size": 20, "epochs": 2}}
    results = optlab.run(spec, track=False, overrides=["variants.hinge.loss.margin=2"])
    assert results.tracking_uri is None and [row["run_id"] for row in results] == [None, None]
    assert {row["status"] for row in results} == {"FAILED"}
    assert all(row["error"] for row in results.failed)


def test_a_tracking_uri_that_track_false_ignores_is_warned_of(tmp_path: Path) -> None:
    """track=False with tracking_uri=...: the store the caller named was ignored without a
    word; one warning now names both, at the caller's line, and nothing is written."""
    with pytest.warns(optlab.OptlabWarning) as warned:
        results = optlab.run(SPEC, track=False, tracking_uri="sqlite:///elsewhere.db", quiet=True)
    assert [str(w.message) for w in warned] == [
        "tracking_uri='sqlite:///elsewhere.db' is ignored: track=False logs nothing anywhere; "
        "drop tracking_uri, or leave track=True to log the runs there"
    ]
    assert warned[0].filename == __file__
    assert results.tracking_uri is None and list(tmp_path.iterdir()) == []


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


def test_overrides_take_a_notebooks_numpy_values_and_paths(tmp_path: Path) -> None:
    """np.logspace(...) as a sweep or np.int64 as a seed: json could not write them (a
    TypeError out of optlab.run)."""
    import numpy as np

    experiment = optlab.load_spec(
        SPEC,
        overrides={
            "sweep.grid.optimizer.lr": np.logspace(-2, -1, 2),
            "seed": np.int64(4),
            "optimizer.epochs": np.int32(3),
            "data.n_samples": np.array(90),
        },
    )
    runs = experiment.runs
    lrs = sorted({run.optimizer.params.lr for run in runs})  # type: ignore[attr-defined]
    assert lrs == pytest.approx([0.01, 0.1]) and {run.seed for run in runs} == {4}
    assert {run.optimizer.params.epochs for run in runs} == {3}  # type: ignore[attr-defined]
    assert {run.dataset.params.n_samples for run in runs} == {90}  # type: ignore[attr-defined]
    np.savez(tmp_path / "my data.npz", X=np.ones((60, 2)), y=np.arange(60) % 2)
    (run, *_) = optlab.load_spec(
        {**SPEC, "data": {"name": "npz", "path": "elsewhere.npz"}},
        overrides={"data.path": tmp_path / "my data.npz", "data.x_key": np.str_("X")},
    ).runs
    assert run.dataset.params.path == tmp_path / "my data.npz"  # type: ignore[attr-defined]


def test_a_spec_as_a_dict_takes_a_notebooks_numpy_values_tuples_and_paths(
    tmp_path: Path,
) -> None:
    """The spec itself, not only the overrides: np.int64 as a seed was refused ("must be a
    valid integer, got np.int64(3)"), and a tuple or an array as a sweep's values crashed
    (KeyError) instead of giving one run each."""
    import numpy as np

    spec = {
        **SPEC,
        "seed": np.int64(3),
        "seeds": list(np.arange(2)),
        "optimizer": {**SPEC["optimizer"], "epochs": np.int32(1)},
        "sweep": {"grid": {"optimizer.lr": np.logspace(-2, -1, 2), "loss.name": ("svm",)}},
    }
    runs = optlab.load_spec(spec).runs
    assert len(runs) == 2 * 2 * 2  # variants x sweep points x seeds
    assert {run.seed for run in runs} == {0, 1}
    lrs = sorted({run.optimizer.params.lr for run in runs})  # type: ignore[attr-defined]
    assert lrs == pytest.approx([0.01, 0.1])
    assert spec["seeds"] == [np.int64(0), np.int64(1)]  # the caller's dict is left as it was
    np.savez(tmp_path / "data.npz", X=np.ones((60, 2)), y=np.arange(60) % 2)
    (run, *_) = optlab.load_spec(
        {**SPEC, "data": {"name": "npz", "path": tmp_path / "data.npz"}}
    ).runs
    assert run.dataset.params.path == tmp_path / "data.npz"  # type: ignore[attr-defined]


def test_a_bad_override_is_named_as_the_api_takes_it_not_as_a_command_line_option() -> None:
    with pytest.raises(optlab.SpecError) as caught:
        optlab.load_spec(SPEC, overrides={"optimizer.momentum": 2})
    assert str(caught.value) == (
        "overrides: optimizer.momentum: must be less than 1, got 2 "
        "(in overrides optimizer.momentum=2)"
    )
    with pytest.raises(optlab.SpecError) as caught:  # it said "--set changes ... in the file"
        optlab.load_spec(SPEC, overrides={"variants.sofr.optimizer.lr": 0.5})
    assert str(caught.value) == (
        "overrides: no variant 'sofr' (did you mean 'soft'?); overrides changes existing "
        "variants (add one in the spec) (in overrides variants.sofr.optimizer.lr=0.5)"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda tmp: optlab.run(SPEC, track=False, resume=True),
            "resume=True skips the runs the tracking store has FINISHED, and this invocation "
            "tracks nothing (track=False): drop resume=True, or track the runs",
        ),
        (
            lambda tmp: optlab.load_spec({**SPEC, "data": {"name": "npz"}}),
            "<spec>: data: missing required key 'path'; add it under data: or pass "
            "overrides={'data.path': ...}",
        ),
        (
            lambda tmp: optlab.run(SPEC, tracking_uri=f"sqlite:///{tmp}/no/mlflow.db"),
            "does not exist; create it or pass another tracking_uri (for example",
        ),
        (
            lambda tmp: optlab.run(SPEC, tracking_uri="sqlite:////proc/optlab-test/mlflow.db"),
            "pass tracking_uri with a folder on a disk",
        ),
        (
            lambda tmp: optlab.compare("api_demo", tracking_uri=f"sqlite:///{tmp}/none.db"),
            "run an experiment first (optlab run SPEC) or pass another tracking_uri (for",
        ),
        (
            lambda tmp: optlab.run(SPEC, executor="dask"),
            "executor 'dask' needs a scheduler address (scheduler='tcp://127.0.0.1:8786')",
        ),
        (
            lambda tmp: optlab.run(SPEC, scheduler="tcp://10.0.0.5:8786"),
            "choose executor 'dask' (executor='dask') or leave the scheduler out",
        ),
    ],
    ids=["resume", "overrides", "tracking_uri", "tracking_uri_proc", "compare", "dask", "local"],
)
def test_messages_name_the_arguments_the_caller_wrote_not_the_commands_options(
    tmp_path: Path, call: Any, message: str
) -> None:
    """What the Python API raises names its keywords (resume=True, track=False,
    tracking_uri, overrides, executor, scheduler): it used to say --resume, --no-track,
    --tracking-uri, --set, --executor and --scheduler to a caller who wrote none of them."""
    with pytest.raises(optlab.InputError) as caught:
        call(tmp_path)
    assert message in str(caught.value)
    assert " --" not in str(caught.value) and "(--" not in str(caught.value)


def test_an_out_compare_cannot_write_is_named_as_the_api_takes_it(
    first: tuple[Results, Any, Any], store: str, tmp_path: Path
) -> None:
    """optlab.compare(name, out=a_file) said '--out ...' to a caller who wrote out=."""
    (tmp_path / "figs").write_text("a file")
    with pytest.raises(optlab.InputError) as caught:
        optlab.compare("api_demo", tracking_uri=store, out=tmp_path / "figs")
    assert str(caught.value) == (
        f"out={str(tmp_path / 'figs')!r}: a file, not a folder; give the folder to write in"
    )


def test_ctrl_c_raises_keyboard_interrupt_naming_resume_as_the_api_takes_it(store: str) -> None:
    """Ctrl-C during a run: the run is recorded, then KeyboardInterrupt says how to finish
    the rest with optlab.run (it said `optlab run SPEC --resume`)."""
    from optlab._contract.plugin_manager import get_plugin_manager

    class CtrlC:
        @optlab.hookimpl
        def optlab_run_started(self, run: Any) -> None:
            signal.raise_signal(signal.SIGINT)

    pm, _ = get_plugin_manager()
    pm.register(CtrlC(), name="ctrl_c")
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            optlab.run({**SPEC, "name": "api_ctrl_c"}, tracking_uri=store, quiet=True)
    finally:
        pm.unregister(name="ctrl_c")
    assert str(caught.value).startswith("interrupted: no runs FINISHED and saved in sqlite:///")
    assert str(caught.value).endswith("; finish the others with `optlab.run(..., resume=True)`")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"jobs": "2"}, "jobs: expected an int, got str '2'"),
        ({"jobs": 1.5}, "jobs: expected an int, got float 1.5"),
        ({"jobs": True}, "jobs: expected an int, got bool True"),
        ({"track": "no"}, "track: expected True or False, got str 'no'"),
        ({"resume": 1}, "resume: expected True or False, got int 1"),
        ({"tracking_uri": 3}, "tracking_uri: expected a str or None, got int 3"),
        (  # refused without a word on what to write
            {"tracking_uri": Path("runs.db")},
            "got PosixPath PosixPath('runs.db'); for a SQLite store at a path: f'sqlite:///{path}'",
        ),
        ({"executor": None}, "executor: expected a str ('local' or 'dask'), got NoneType None"),
        ({"overrides": 5}, "overrides: expected a mapping or a list of 'KEY=VALUE' strings"),
        (
            {"overrides": "optimizer.lr=0.1"},
            "overrides: expected a mapping or a list of 'KEY=VALUE' strings, got str "
            "'optimizer.lr=0.1'; pass ['optimizer.lr=0.1']",
        ),
        ({"overrides": ["a=1", 2]}, "got list ['a=1', 2]"),
        (  # was json's TypeError, raised out of optlab.run
            {"overrides": {"optimizer.lr": object()}},
            "overrides['optimizer.lr']: expected a number, a string, a bool, a list or a mapping",
        ),
        ({"spec": b"name: x"}, "spec: expected a path (str or os.PathLike) or a mapping"),
        ({"spec": "name: x\ndata: {}"}, "(for YAML text: yaml.safe_load(text))"),
    ],
)
def test_wrong_arguments_are_one_input_error_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: dict[str, Any], message: str
) -> None:
    """A wrong type is an InputError naming the argument, before anything runs or is
    written (a truthy track="no" used to turn tracking on; a str of overrides was split into
    characters)."""
    monkeypatch.chdir(tmp_path)
    spec = arguments.pop("spec", SPEC)
    with pytest.raises(optlab.InputError) as caught:
        optlab.run(spec, **arguments)
    assert message in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(optlab.InputError, match="experiment: expected an experiment's name"):
        optlab.compare(5)  # type: ignore[arg-type]


def test_a_call_while_another_thread_runs_one_is_refused() -> None:
    """Two optlab.run at once in one process (a thread pool): the second failed inside with
    pluggy's "ValueError: Plugin name already registered: optlab.progress=<...>"."""
    import threading
    import time

    from optlab._contract.plugin_manager import get_plugin_manager

    pm, _ = get_plugin_manager()
    long = {**SPEC, "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 1, "epochs": 100}}
    ended: list[Results] = []
    worker = threading.Thread(
        target=lambda: ended.append(optlab.run(long, track=False, quiet=True))
    )
    worker.start()
    try:
        while worker.is_alive() and not pm.has_plugin("optlab.progress"):
            time.sleep(0.005)
        with pytest.raises(optlab.InputError, match=r"optlab\.run is running already in this"):
            optlab.run(SPEC, track=False, quiet=True)
    finally:
        worker.join()
    assert [row["status"] for row in ended[0]] == ["FINISHED", "FINISHED"]
    assert [row["status"] for row in optlab.run(SPEC, track=False, quiet=True)] == [
        "FINISHED",
        "FINISHED",
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"experiment": 3}, "experiment: expected an experiment's name (a str), got int 3"),
        ({"tracking_uri": 3}, "tracking_uri: expected a str or None, got int 3"),
        # were TypeErrors out of pathlib: "expected str, bytes or os.PathLike object, not int"
        ({"out": 5}, "out: expected a folder's path (str or os.PathLike) or None, got int 5"),
        ({"out": b"figs"}, "out: expected a folder's path (str or os.PathLike) or None, got "),
    ],
)
def test_wrong_arguments_of_compare_are_one_input_error_each(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(optlab.InputError) as caught:
        optlab.compare(**{"experiment": "api_demo", **arguments})
    assert str(caught.value).startswith(message)


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


def test_a_ctrl_c_as_the_signal_handlers_are_installed_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C that lands just as the runs' signal handlers are installed stops the call
    before any run (it raises KeyboardInterrupt, nothing is trained): the stop flag used to be
    cleared after they were installed, and every run trained as if no Ctrl-C had come."""
    import optlab._execution.invocation as invocation
    from optlab._training.monitor import stop_flag

    install = invocation.stop_on_signals

    @contextlib.contextmanager
    def ctrl_c_as_installed() -> Any:
        with install() as flag:
            signal.raise_signal(signal.SIGINT)
            yield flag

    monkeypatch.setattr(invocation, "stop_on_signals", ctrl_c_as_installed)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="nothing is recorded"):
        optlab.run(SPEC, track=False, quiet=True)
    assert signal.getsignal(signal.SIGINT) is before
    assert (stop_flag.reason, stop_flag.forced) == (None, False)


UNGUARDED = """\
import optlab
spec = {
    "name": "unguarded",
    "data": {"name": "blobs", "n_samples": 120},
    "loss": {"name": "softmax"},
    "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 20, "epochs": 1},
    "tracking": {"figures": False},
    "variants": {"soft": {}, "hinge": {"loss": {"name": "svm"}}},
}
first = optlab.run(spec, tracking_uri="sqlite:///s.db", quiet=True)
second = optlab.run(spec, tracking_uri="sqlite:///s.db", quiet=True, jobs=2)
print([row["status"] for row in first], [row["error"] for row in second])
"""


def test_a_script_without_a_main_guard_is_not_run_again_by_its_workers(
    tmp_path: Path, _empty_store: Path
) -> None:
    """optlab.run(jobs=2) at a script's top level: each worker imports the script (Python's
    multiprocessing does); its calls of optlab.run there are refused with the cure, so nothing
    runs twice, and the parent records the runs as FAILED with the reason instead of crashing
    (it used to re-run the script's experiments in every worker, then end in a traceback;
    then each worker's refusal was printed as a traceback of its start)."""
    import subprocess
    import sys

    shutil.copyfile(_empty_store, tmp_path / "s.db")
    (tmp_path / "script.py").write_text(UNGUARDED)
    proc = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert 'call optlab.run under `if __name__ == "__main__":`' in proc.stderr
    assert "Traceback" not in proc.stderr  # one line per worker, not multiprocessing's traceback
    statuses, errors = proc.stdout.strip().split("] [")
    assert statuses == "['FINISHED', 'FINISHED'"
    assert errors.count("worker failed: its process ended abruptly") == 2
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 's.db'}")
    experiment = client.get_experiment_by_name("unguarded")
    children = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    assert sorted(r.info.status for r in children) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]


def test_a_script_read_from_standard_input_is_told_to_use_a_file_for_workers(
    tmp_path: Path,
) -> None:
    """``python - <<EOF`` with jobs=2: the workers cannot import '<stdin>', and every run
    failed with a traceback; refused before any run, with what to do (jobs=1 runs)."""
    import subprocess
    import sys

    script = (
        "import optlab\n"
        f"spec = {SPEC!r}\n"
        "try:\n"
        "    optlab.run(spec, jobs=2, track=False, quiet=True)\n"
        "except optlab.InputError as exc:\n"
        "    print(exc)\n"
        "print([row['status'] for row in optlab.run(spec, jobs=1, track=False, quiet=True)])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-"], input=script, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    refused, statuses = proc.stdout.strip().splitlines()
    assert refused == (
        "jobs=2: worker processes start by importing the script that started them, and "
        "'<stdin>' is no file (a script read from standard input?): save the script to a file "
        "and run that, or use jobs=1"
    )
    assert statuses == "['FINISHED', 'FINISHED']"


def test_resume_keeps_the_finished_runs_in_the_results_and_the_comparison(
    tmp_path: Path, _empty_store: Path
) -> None:
    """After --resume the results, the printed table and the parent run's comparison hold the
    whole plan: the runs it reused as the store has them, and those it ran again (the reused
    ones used to be missing, so the summary said there was no best run)."""
    shutil.copyfile(_empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = {**SPEC, "variants": {"ok": {}, "boom": {"optimizer": {"lr": 1e30}}}}
    first = optlab.run(spec, tracking_uri=uri, quiet=True)
    assert [(row["name"], row["status"]) for row in first] == [
        ("ok", "FINISHED"),
        ("boom", "FAILED"),
    ]
    again = optlab.run(spec, tracking_uri=uri, quiet=True, resume=True)
    assert again.skipped == ("ok",)
    assert [(row["name"], row["status"]) for row in again] == [
        ("ok", "FINISHED"),
        ("boom", "FAILED"),
    ]
    assert again[0]["run_id"] == first[0]["run_id"]  # the same MLflow run, reused
    assert again[0]["metrics"]["best_val_accuracy"] == first[0]["metrics"]["best_val_accuracy"]
    assert [row["run"] for row in again.comparison if row["best"]] == ["ok"]
    client = mlflow.MlflowClient(uri)
    parents = client.search_runs(
        [client.get_experiment_by_name("api_demo").experiment_id],
        filter_string="tags.`optlab.role` = 'invocation'",
        order_by=["attributes.start_time DESC"],
    )
    assert parents[0].data.tags["optlab.best_run"] == "ok"
    assert parents[0].data.tags["optlab.reused_runs"] == first[0]["run_id"]
    # its comparison.json: the same records, the reused run's id among them
    saved = client.download_artifacts(parents[0].info.run_id, "comparison.json", str(tmp_path))
    assert json.loads(Path(saved).read_text()) == list(again)
    # the run trained again named the reused runs too, as if it had reused them
    assert "optlab.reused_runs" not in client.get_run(again[1]["run_id"]).data.tags


def test_resume_names_more_reused_runs_than_one_tag_holds(
    tmp_path: Path, _empty_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent of a --resume names the runs it reuses in tags of at most MLflow's 8,000
    characters, as many as it takes: a sweep of 243 or more reused runs had its list cut in the
    middle of a run id, and `optlab compare` failed on that id. Here a tag holds one id."""
    from optlab._tracking import tracker

    shutil.copyfile(_empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    three = {"a": {}, "b": {"loss": {"name": "svm"}}, "c": {"optimizer": {"lr": 0.05}}}
    optlab.run({**SPEC, "variants": three}, tracking_uri=uri, quiet=True)
    monkeypatch.setattr(tracker, "_MAX_TAG_VALUE", 40)  # one run id (32 characters) a tag
    spec = {**SPEC, "variants": {**three, "d": {"optimizer": {"lr": 0.2}}}}
    again = optlab.run(spec, tracking_uri=uri, quiet=True, resume=True)
    assert again.skipped == ("a", "b", "c")
    assert [row["name"] for row in optlab.compare("api_demo", tracking_uri=uri)] == [
        "a",
        "b",
        "c",
        "d",
    ]


def test_the_spec_file_tag_is_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _empty_store: Path
) -> None:
    """``optlab.spec_file`` on the parent run is the spec's absolute path (it was the path as
    given: relative in one invocation, absolute in another)."""
    import yaml

    monkeypatch.chdir(tmp_path)
    shutil.copyfile(_empty_store, tmp_path / "mlflow.db")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    optlab.run("spec.yaml", quiet=True)
    client = mlflow.MlflowClient("sqlite:///mlflow.db")
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("api_demo").experiment_id],
        filter_string="tags.`optlab.role` = 'invocation'",
    )
    assert parent.data.tags["optlab.spec_file"] == str(tmp_path.resolve() / "spec.yaml")


def test_a_spec_path_in_the_home_folder_may_start_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """optlab.run("~/specs/x.yaml") said "~/specs/x.yaml: no such file; check the path" of a
    file that is there (a shell expands ``~`` for ``optlab run``; optlab does in data.path)."""
    import yaml

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    assert optlab.load_spec("~/spec.yaml").name == "api_demo"
    assert [row["status"] for row in optlab.run(Path("~/spec.yaml"), track=False, quiet=True)] == [
        "FINISHED",
        "FINISHED",
    ]


def test_results_name_a_relative_store_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _empty_store: Path
) -> None:
    """results.tracking_uri was sqlite:///rel.db as given: after os.chdir it named another
    store."""
    shutil.copyfile(_empty_store, tmp_path / "rel.db")
    monkeypatch.chdir(tmp_path)
    spec = {**SPEC, "name": "relative", "variants": {"soft": {}}}
    results = optlab.run(spec, tracking_uri="sqlite:///rel.db", quiet=True)
    assert results.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'rel.db'}"
    assert optlab.compare("relative", tracking_uri="sqlite:///rel.db").tracking_uri == (
        results.tracking_uri
    )


def test_jobs_may_be_a_numpy_integer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """jobs=np.int64(1) (from a sweep over np.arange) was refused as 'expected an int', though
    numpy values are taken everywhere in specs."""
    monkeypatch.chdir(tmp_path)
    spec = {**SPEC, "name": "np_jobs", "variants": {"soft": {}}}
    results = optlab.run(spec, jobs=np.int64(1), track=False, quiet=True)
    assert [row["status"] for row in results] == ["FINISHED"]
