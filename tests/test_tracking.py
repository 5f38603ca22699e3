"""The MLflow tracker against the embedded default store (SQLite in a tmp working folder):
real runs driven through the hook methods, read back through MlflowClient."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow_server import free_port
from tracking_data import TrainedRun, check_logged_run, child_runs, drive, train

from optlab._contract.records import RunResult
from optlab._errors import InputError, TrackingError
from optlab._report.rows import comparison_rows
from optlab._tracking import DEFAULT_TRACKING_URI, Tracker, resolve_tracking_uri
from optlab._tracking.readback import compare, load_latest_invocation
from optlab._tracking.resume import finished_runs, mark_stale_running
from optlab._tracking.store import absolute_uri, connect
from optlab._tracking.ui import chart_link, ui_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (no store yet)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def store(workdir: Path, _empty_store: Path) -> Path:
    """A working folder holding an empty default store ``./mlflow.db`` (a copy of the session's
    empty store: creating one costs seconds of schema migrations)."""
    shutil.copyfile(_empty_store, workdir / "mlflow.db")
    return workdir


@pytest.fixture(scope="module")
def runs() -> dict[str, TrainedRun]:
    return {
        "svm": train("svm", lr=0.5),
        "softmax": train("softmax", lr=0.05),
        "sgd-lr10": train("sgd-lr10", lr=10.0, fail_at_epoch=2),
    }


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(absolute_uri(uri))  # the workdir's file, not a cached store


def _artifacts(client: Any, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


# ------------------------------------------------------------------------------------ URI
def test_uri_precedence_flag_spec_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(None, None) == "http://env:5000"
    assert resolve_tracking_uri(None, "sqlite:///spec.db") == "sqlite:///spec.db"
    assert resolve_tracking_uri("sqlite:///flag.db", "sqlite:///spec.db") == "sqlite:///flag.db"


def test_import_does_not_load_mlflow_or_matplotlib() -> None:
    code = (
        "import sys, optlab._tracking, optlab._tracking.readback; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'matplotlib')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------ store
def test_bad_scheme_is_one_line_tracking_error(workdir: Path) -> None:
    with pytest.raises(TrackingError, match="unknown scheme 'ftp'") as info:
        Tracker("ftp://example.org/store", "exp")
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_an_unknown_scheme_says_which_ones_to_pass_in_one_sentence(workdir: Path) -> None:
    with pytest.raises(TrackingError) as info:
        connect("ftp://example.org/store")
    assert str(info.value) == (
        "tracking URI 'ftp://example.org/store': unknown scheme 'ftp'; pass another "
        "--tracking-uri: sqlite:///PATH.db, http(s)://HOST:PORT, postgresql://... or mysql://..."
    )


def test_a_path_to_a_file_that_is_not_a_store_is_not_offered_as_one(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--tracking-uri spec.yaml`` (the spec where the store was meant): optlab offered
    sqlite:///.../spec.yaml as the store to use, which MLflow then could not open."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    (workdir / "spec.yaml").write_text("name: x\n")
    with pytest.raises(TrackingError) as caught:
        connect("spec.yaml")
    assert str(caught.value) == (
        "tracking URI 'spec.yaml' is a path, to a file that is not a SQLite store; pass "
        "another --tracking-uri (for example sqlite:///mlflow.db)"
    )


def test_missing_or_unwritable_folder(workdir: Path) -> None:
    with pytest.raises(TrackingError, match="does not exist"):
        Tracker(f"sqlite:///{workdir}/nope/mlflow.db", "exp")
    (workdir / "file").write_text("not a folder")
    with pytest.raises(TrackingError, match="does not exist"):
        Tracker(f"sqlite:///{workdir}/file/mlflow.db", "exp")
    with pytest.raises(TrackingError, match="cannot write in /proc") as info:  # even as root
        Tracker("sqlite:////proc/mlflow.db", "exp")
    assert "--tracking-uri sqlite:///FOLDER/mlflow.db with a folder you can write in" in str(
        info.value
    )
    # "folder ~ does not exist; create it": MLflow would take ~ as a folder of that name
    with pytest.raises(TrackingError) as info:
        Tracker("sqlite:///~/runs/mlflow.db", "exp")
    assert str(info.value) == (
        "tracking store 'sqlite:///~/runs/mlflow.db': a SQLite URI's path is not expanded ('~' "
        f"would be a folder of that name); write it in full: sqlite:///{Path.home()}/runs/mlflow.db"
    )
    # a folder for the database: "cannot write in . (Is a directory)", "... does not exist"
    (workdir / "runs").mkdir()
    for write in (True, False):
        with pytest.raises(TrackingError) as info:
            connect("sqlite:///runs", must_exist=not write, write=write)
        assert str(info.value) == (
            "tracking store 'sqlite:///runs': runs is a folder; name the database file in it "
            "(sqlite:///runs/mlflow.db)"
        )
    assert not (workdir / "mlflow.db").exists()


def test_an_existing_store_that_cannot_be_written_is_not_sent_elsewhere() -> None:
    """Its runs are there (optlab landscape, a run on a read-only mount): another URI would
    not be the same store, and the example URI was the same store's."""
    with pytest.raises(TrackingError) as info:  # exists, and no one can write it
        Tracker("sqlite:////proc/version", "exp")
    message = str(info.value)
    assert "cannot write in /proc" in message
    assert message.endswith("this command writes to the store: make /proc writable")


def test_a_store_of_the_environment_is_named_so(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLFLOW_TRACKING_URI=./mlruns (MLflow's own habit) and no URI given: the error said
    "tracking URI './mlruns' is a path: ..." without saying where that URI came from."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "./mlruns")
    with pytest.raises(TrackingError) as info:
        Tracker(resolve_tracking_uri(None, None), "exp")
    assert str(info.value).startswith(
        "MLFLOW_TRACKING_URI (environment): tracking URI './mlruns' is a path: for a SQLite "
    )
    with pytest.raises(InputError, match=r"^tracking store 'sqlite:///mine\.db': mine\.db does"):
        compare("exp", resolve_tracking_uri("sqlite:///mine.db", None), None)  # not from it


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "ABSOLUTE"])
def test_a_missing_default_store_is_not_offered_as_another(workdir: Path, uri: str) -> None:
    """Without ./mlflow.db (optlab landscape or compare in another folder than the runs'),
    the hint offered sqlite:///mlflow.db, the store just found missing, as the other one to
    pass; it offers a folder of one's own."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}" if uri == "ABSOLUTE" else uri
    with pytest.raises(InputError) as info:
        compare("exp", uri, None)
    assert str(info.value).endswith(
        "does not exist; run an experiment first (optlab run SPEC) or pass another "
        "--tracking-uri (for example sqlite:///FOLDER/mlflow.db)"
    )
    with pytest.raises(InputError, match=r"\(for example sqlite:///mlflow\.db\)$"):
        compare("exp", f"sqlite:///{workdir / 'runs' / 'mlflow.db'}", None)  # another store


def test_unreachable_server_fails_in_seconds(workdir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingError, match="unreachable") as info:
        Tracker(url, "exp")
    assert time.monotonic() - start < 5
    assert url in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_processes_creating_one_store_at_once_all_succeed(workdir: Path) -> None:
    """MLflow migrates a new SQLite file in each process that opens it; without optlab's
    lock two at once collide ("table ... already exists")."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    code = "import sys; from optlab._tracking.store import connect; connect(sys.argv[1])"
    procs = [  # two are enough to collide
        subprocess.Popen([sys.executable, "-c", code, uri], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert connect(uri, must_exist=True).search_experiments()
    assert not (workdir / ".mlflow.db.lock").exists()  # nothing left beside the store


def test_a_store_whose_creation_was_interrupted_is_created_afresh(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the seconds MLflow migrates a new store (a first run's) left it half
    migrated, and every later run failed on it: "cannot be used: (sqlite3.OperationalError)
    table _alembic_tmp_datasets already exists", until the user deleted mlflow.db."""
    import mlflow.store.db.utils as db_utils

    def interrupted(engine: Any) -> None:  # a migration half done, then Ctrl-C
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE _alembic_tmp_datasets (id INTEGER)")
        raise KeyboardInterrupt

    uri = f"sqlite:///{workdir / 'interrupted.db'}"
    with monkeypatch.context() as patch:
        patch.setattr(db_utils, "_initialize_tables", interrupted)
        with pytest.raises(KeyboardInterrupt):
            connect(uri)
    assert not (workdir / "interrupted.db").exists()
    assert connect(uri).search_experiments()
    assert sorted(p.name for p in workdir.iterdir()) == ["interrupted.db"]  # nothing left over


@pytest.mark.slow
def test_what_a_creation_killed_with_kill_9_left_is_removed_by_the_next_command(
    workdir: Path,
) -> None:
    """``kill -9`` among the migrations of a new store left ``.mlflow.db.<hex>.new`` (and its
    journal) in the folder forever; the next command that creates the store removes them."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    code = "import sys; from optlab._tracking.store import connect; connect(sys.argv[1])"
    proc = subprocess.Popen([sys.executable, "-c", code, uri])
    deadline = time.monotonic() + 60
    while not list(workdir.glob(".mlflow.db.*.new")):  # migrating, for seconds
        assert proc.poll() is None and time.monotonic() < deadline, "no store was created"
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    assert list(workdir.glob(".mlflow.db.*.new"))  # what the kill left
    assert connect(uri).search_experiments()
    assert sorted(p.name for p in workdir.iterdir()) == ["mlflow.db"]


def test_leftovers_beside_a_store_are_removed_unless_a_live_process_is_creating_it(
    workdir: Path, new_store: Any
) -> None:
    """Opening a store removes what a killed creation left beside it, but not while another
    live process holds the creation lock (it may be creating the store): it waits for it."""
    uri = new_store(workdir / "mlflow.db")
    left = [
        workdir / f".mlflow.db.{'ab' * 16}.new",
        workdir / f".mlflow.db.{'ab' * 16}.new-journal",
    ]
    for path in left:
        path.write_bytes(b"half migrated")
    hold = (
        "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
        "lock.acquire(); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(workdir / ".mlflow.db.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    opened = threading.Thread(target=connect, args=(uri,), kwargs={"write": False})
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        opened.start()  # waits for the lock
        opened.join(timeout=1.0)
        assert opened.is_alive() and all(path.exists() for path in left)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    opened.join(timeout=60)
    assert sorted(p.name for p in workdir.iterdir()) == ["mlflow.db"]
    for path in left:  # and when the store is opened, as it is ready
        path.write_bytes(b"half migrated")
    connect(uri, must_exist=True, write=False)
    assert sorted(p.name for p in workdir.iterdir()) == ["mlflow.db"]


def test_artifacts_go_beside_a_store_in_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Any
) -> None:
    """A SQLite store outside the working folder: new experiments keep their runs' artifacts
    in ``mlruns/<experiment id>`` beside the database (MLflow's default is ``./mlruns`` of
    the working folder), each in its own id's folder, deleted experiments counted."""
    (tmp_path / "store").mkdir()
    (tmp_path / "work").mkdir()
    uri = new_store(tmp_path / "store" / "mlflow.db")
    monkeypatch.chdir(tmp_path / "work")
    first = Tracker(uri, "first", plots=False)
    client = _client(uri)
    client.delete_experiment(first.experiment_id)
    tracker = Tracker(uri, "second", plots=False)
    assert int(tracker.experiment_id) == int(first.experiment_id) + 1
    run = train("svm", epochs=1)
    with tracker.parent("second", {}) as parent_id:
        drive(tracker, [run])
    (child,) = child_runs(client, tracker.experiment_id, parent_id).values()

    folder = tmp_path / "store" / "mlruns"
    for experiment in (first, tracker):
        location = client.get_experiment(experiment.experiment_id).artifact_location
        assert location == str(folder / experiment.experiment_id)
    assert (
        child.info.artifact_uri == f"{folder / tracker.experiment_id / child.info.run_id}/artifacts"
    )
    assert (Path(child.info.artifact_uri) / "spec.yaml").is_file()
    assert list((tmp_path / "work").iterdir()) == []  # nothing in the working folder


def test_the_default_store_keeps_its_artifacts_in_mlruns_of_the_working_folder(
    store: Path,
) -> None:
    """``sqlite:///mlflow.db``: ``./mlruns/<experiment id>``, as MLflow's default puts them."""
    tracker = Tracker(DEFAULT_TRACKING_URI, "exp", plots=False)
    location = _client(DEFAULT_TRACKING_URI).get_experiment(tracker.experiment_id).artifact_location
    assert location == str(store / "mlruns" / tracker.experiment_id)


# ------------------------------------------------------------------------------------ runs
def test_invocation_logs_everything_to_default_sqlite(
    workdir: Path, runs: dict[str, TrainedRun]
) -> None:
    tracker = Tracker(resolve_tracking_uri(None, None), "cmp")
    assert (workdir / "mlflow.db").is_file()
    with tracker.parent("cmp", {"optlab.spec_hash": "abc"}) as parent_id:
        drive(tracker, list(runs.values()))
        tracker.log_comparison([(r.info, r.result) for r in runs.values()])  # type: ignore[misc]
    client = _client(DEFAULT_TRACKING_URI)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "cmp"
    assert parent.data.tags["optlab.spec_hash"] == "abc"
    assert parent.data.tags["optlab.n_finished"] == "2"
    assert parent.data.tags["optlab.n_failed"] == "1"
    assert _artifacts(client, parent_id) >= {"comparison.md", "comparison.json", "comparison.png"}
    best = max(("svm", "softmax"), key=lambda n: runs[n].result.metrics["best_val_accuracy"])  # type: ignore[union-attr]
    assert parent.data.tags["optlab.best_run"] == best
    children = child_runs(client, tracker.experiment_id, parent_id)
    assert set(children) == set(runs)
    for name, run in runs.items():
        check_logged_run(client, children[name], run)
    finished = children["svm"].info.run_id
    assert _artifacts(client, finished) == {
        "spec.yaml",
        "learning_curves.png",
        "weight_templates.png",
        "confusion_matrix.png",
        "weights.npz",
        "steps.npz",
    }
    local = Path(client.download_artifacts(finished, "weights.npz", str(workdir)))
    with np.load(local) as saved:
        np.testing.assert_array_equal(saved["W"], runs["svm"].result.W)  # type: ignore[union-attr]
        assert saved["classes"].tolist() == ["bar", "dot", "ring"]
    spec = Path(client.download_artifacts(finished, "spec.yaml", str(workdir))).read_text()
    assert "lr: 0.5" in spec
    failed = children["sgd-lr10"]
    assert failed.data.tags["optlab.status_reason"].startswith("diverged")
    assert _artifacts(client, failed.info.run_id) == {
        "spec.yaml",
        "learning_curves.png",
        "steps.npz",
    }
    assert set(finished_runs(tracker)) == {runs["svm"].info.key, runs["softmax"].info.key}


@pytest.mark.parametrize(
    ("options", "saved"),
    [
        ({"standardize": True}, {"mean", "std"}),
        ({}, {"mean"}),
        ({"center": False}, set()),
        ({"center": False, "standardize": True}, {"std"}),
    ],
)
def test_weights_npz_and_raw_images_give_the_runs_test_accuracy(
    store: Path, options: dict[str, bool], saved: set[str]
) -> None:
    """weights.npz had W and the class names only: without the training mean (and std) the
    run's test accuracy could not be recomputed from raw images."""
    import optlab

    rng = np.random.default_rng(0)
    centers = rng.uniform(0, 255, (3, 2, 3))  # 2 x 3 "images" of uint8 pixels, 3 classes

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 3
        X = centers[y] + rng.normal(0, 60, (n, 2, 3))
        return np.clip(X, 0, 255).astype(np.uint8), y

    X, y = images(150)
    X_test, y_test = images(60)
    np.savez(store / "raw.npz", X=X, y=y, X_test=X_test, y_test=y_test)
    spec = {
        "name": "reload",
        "data": {"name": "npz", "path": "raw.npz", "val": 0.2, **options},
        "loss": {"name": "softmax"},
        # raw pixels (up to 255) need a smaller step than standardized ones
        "optimizer": {"name": "sgd", "lr": 0.05 if "std" in saved else 1e-5, "batch_size": 16},
        "tracking": {"figures": False},
    }
    frame = optlab.run(spec, quiet=True).to_pandas()
    client = _client(DEFAULT_TRACKING_URI)
    path = Path(client.download_artifacts(frame["run_id"][0], "weights.npz", str(store)))
    with np.load(path) as artifact:
        assert set(artifact.files) == {"W", "classes"} | saved
        W = artifact["W"]
        features = X_test.reshape(len(X_test), -1).astype(np.float64)  # the raw pixels
        if "mean" in saved:
            assert artifact["mean"].shape == (6,) and artifact["mean"].dtype == np.float64
            features -= artifact["mean"]
        if "std" in saved:
            assert artifact["std"].shape == (6,) and artifact["std"].dtype == np.float64
            features /= artifact["std"]
    scores = np.hstack([features, np.ones((len(features), 1))]) @ W  # the bias trick
    accuracy = float(np.mean(np.argmax(scores, axis=1) == y_test))
    assert 0.5 < accuracy == frame["metrics.test_accuracy"][0]


def test_many_params_and_long_steps_are_batched(store: Path) -> None:
    run = train("wide", epochs=1, batch=1)  # 90 steps -> 270 step points
    long_steps = run.result.steps  # type: ignore[union-attr]
    for _ in range(4):  # 1,440 steps in one report: more than one log_batch chunk
        long_steps.extend(run.result.steps)  # type: ignore[union-attr]
    long_steps.examples = np.arange(1, len(long_steps) + 1)
    report = run.reports[0]
    report = type(report)(**{**report.__dict__, "steps": long_steps, "examples": len(long_steps)})
    params = dict(run.info.params, **{f"extra.p{i}": i for i in range(250)})
    params["extra.long"] = "x" * 7000
    info = type(run.info)(**{**run.info.__dict__, "params": params})
    result = RunResult("wide", "FINISHED", steps=long_steps, evaluations=[report])
    tracker = Tracker(DEFAULT_TRACKING_URI, "wide", step_points=2000)
    with tracker.parent("wide", {}) as parent_id:
        tracker.optlab_run_started(run=info)
        tracker.optlab_epoch_ended(run=info, report=report)
        tracker.optlab_run_finished(run=info, result=result, error=None)
    client = _client(DEFAULT_TRACKING_URI)
    logged = child_runs(client, tracker.experiment_id, parent_id)["wide"]
    assert len(logged.data.params) == len(params)
    assert len(logged.data.params["extra.long"]) == 6000
    history = client.get_metric_history(logged.info.run_id, "curves/loss")
    assert len(history) == len(long_steps) == 1440
    assert sorted(m.step for m in history) == long_steps.examples.tolist()


def test_killed_and_crashed_invocations(store: Path, runs: dict[str, TrainedRun]) -> None:
    tracker = Tracker(DEFAULT_TRACKING_URI, "stops")
    client = _client(DEFAULT_TRACKING_URI)
    run = runs["softmax"]
    first = run.reports[0]  # what the run measured before it was stopped
    killed = RunResult("softmax", "KILLED", "interrupted by SIGINT at step 3", first.steps, [first])
    with tracker.parent("stops", {}) as parent_id:
        tracker.optlab_run_started(run=run.info)
        tracker.optlab_epoch_ended(run=run.info, report=run.reports[0])
        tracker.optlab_run_finished(run=run.info, result=killed, error=None)
    child = child_runs(client, tracker.experiment_id, parent_id)["softmax"]
    assert child.info.status == "KILLED"
    assert child.data.tags["optlab.status_reason"] == "interrupted by SIGINT at step 3"
    assert len(client.get_metric_history(child.info.run_id, "curves/loss")) == len(first.steps)
    assert len(client.get_metric_history(child.info.run_id, "curves/val_accuracy")) == 1
    assert client.get_run(parent_id).info.status == "FINISHED"

    # Ctrl-C while a run is open: the parent and the open child end KILLED
    with pytest.raises(KeyboardInterrupt), tracker.parent("stops", {}) as parent_id:
        tracker.optlab_run_started(run=runs["svm"].info)
        raise KeyboardInterrupt
    assert client.get_run(parent_id).info.status == "KILLED"
    open_child = child_runs(client, tracker.experiment_id, parent_id)["svm"]
    assert open_child.info.status == "KILLED"
    assert "KeyboardInterrupt" in open_child.data.tags["optlab.status_reason"]

    # a crash of the invocation itself: FAILED with the reason
    with pytest.raises(ZeroDivisionError), tracker.parent("stops", {}) as parent_id:
        _ = 1 / 0
    parent = client.get_run(parent_id)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["optlab.status_reason"] == "ZeroDivisionError: division by zero"
    assert set(finished_runs(tracker)) == set()


def test_stale_running_runs_of_a_dead_process_are_marked_killed(store: Path) -> None:
    workdir = store
    code = (
        "import os\n"
        "from tracking_data import train\n"
        "from optlab._tracking import Tracker\n"
        "t = Tracker('sqlite:///mlflow.db', 'stale')\n"
        "run = train('orphan', epochs=1)\n"
        "with t.parent('stale', {}):\n"
        "    t.optlab_run_started(run=run.info)\n"
        "    os._exit(9)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=workdir, capture_output=True)
    assert done.returncode == 9, done.stderr.decode()[-2000:]
    tracker = Tracker(DEFAULT_TRACKING_URI, "stale")
    client = _client(DEFAULT_TRACKING_URI)
    running = client.search_runs([tracker.experiment_id], "attributes.status = 'RUNNING'")
    assert {r.info.run_name for r in running} == {"stale", "orphan"}
    with tracker.parent("stale", {}) as mine:
        ended = mark_stale_running(tracker)
        assert sorted(ended) == ["orphan", "stale"]
        assert client.get_run(mine).info.status == "RUNNING"  # our own run is alive
    for run in running:
        now = client.get_run(run.info.run_id)
        assert now.info.status == "KILLED"
        assert f"process {run.data.tags['optlab.pid']}" in now.data.tags["optlab.status_reason"]
    assert mark_stale_running(tracker) == []


# ------------------------------------------------------------------------------------ compare
def test_compare_reads_back_the_latest_invocation(
    store: Path, runs: dict[str, TrainedRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = store
    tracker = Tracker(DEFAULT_TRACKING_URI, "svm_vs_softmax", plots=False)
    with tracker.parent("old", {}):
        drive(tracker, [runs["svm"]])
    with tracker.parent("svm_vs_softmax", {}):
        drive(tracker, list(runs.values()))
    loaded = load_latest_invocation("svm_vs_softmax", DEFAULT_TRACKING_URI)
    assert [i.name for i, _ in loaded] == list(runs)
    for (info, result), run in zip(loaded, runs.values(), strict=True):
        expected = run.result
        assert expected is not None
        assert result.status == expected.status
        assert info.key == run.info.key
        assert info.data == run.info.data
        np.testing.assert_array_equal(result.steps.examples, expected.steps.examples)
        np.testing.assert_allclose(result.steps.loss, expected.steps.loss)
        np.testing.assert_allclose(result.steps.reg_loss, expected.steps.reg_loss)
        assert [e.val_accuracy for e in result.evaluations] == [r.val_accuracy for r in run.reports]
    original = comparison_rows([(r.info, r.result) for r in runs.values()])  # type: ignore[misc]
    _, rows, figure, _ = compare("svm_vs_softmax", DEFAULT_TRACKING_URI, workdir / "report")
    assert [r["run"] for r in rows] == [r["run"] for r in original]
    for got, want in zip(rows, original, strict=True):
        for key in ("final_loss", "best_val_accuracy", "test_accuracy", "status", "best"):
            assert got[key] == pytest.approx(want[key])
    assert figure == workdir / "report" / "comparison.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = json.loads((workdir / "report" / "comparison.json").read_text())
    assert records == compare("svm_vs_softmax", DEFAULT_TRACKING_URI, None)[0]
    assert [r["name"] for r in records] == list(runs) and all(r["run_id"] for r in records)
    assert compare("svm_vs_softmax", DEFAULT_TRACKING_URI, None)[2] is None
    (workdir / "report.png").write_bytes(b"")  # a file where the folder would be
    with pytest.raises(InputError, match=r"^--out \S*report\.png: a file, not a folder; give"):
        compare("svm_vs_softmax", DEFAULT_TRACKING_URI, workdir / "report.png")
    # optlab.compare(..., out="~/figs") made a folder named "~" in the working folder
    monkeypatch.setenv("HOME", str(workdir / "home"))
    figure = compare("svm_vs_softmax", DEFAULT_TRACKING_URI, Path("~/figs"))[2]
    assert figure == workdir / "home" / "figs" / "comparison.png" and figure.is_file()
    assert not (workdir / "~").exists()


def test_compare_errors_are_one_line_input_errors(workdir: Path, _empty_store: Path) -> None:
    with pytest.raises(InputError, match=r"mlflow\.db does not exist"):
        compare("anything", DEFAULT_TRACKING_URI, None)
    assert not (workdir / "mlflow.db").exists()
    shutil.copyfile(_empty_store, workdir / "mlflow.db")
    Tracker(DEFAULT_TRACKING_URI, "svm_vs_softmax")
    with pytest.raises(InputError, match="did you mean 'svm_vs_softmax'"):
        compare("svm_vs_sofmax", DEFAULT_TRACKING_URI, None)
    with pytest.raises(InputError, match="no optlab invocation yet"):
        compare("svm_vs_softmax", DEFAULT_TRACKING_URI, None)


def test_ui_command(workdir: Path, _empty_store: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        ui_command(DEFAULT_TRACKING_URI, 5000)
    shutil.copyfile(_empty_store, workdir / "mlflow.db")
    argv = ui_command(DEFAULT_TRACKING_URI, 5001)
    assert Path(argv[0]).name in ("mlflow", Path(sys.executable).name)
    joined = " ".join(argv)
    assert "server --backend-store-uri sqlite:///mlflow.db" in joined
    assert "--host 127.0.0.1 --port 5001 --workers 1" in joined
    assert chart_link(DEFAULT_TRACKING_URI, "http://127.0.0.1:5001") is None  # nothing run yet
    with pytest.raises(InputError, match="open http://srv:5000 in a browser"):
        ui_command("http://srv:5000", 5000)


def test_metrics_are_written_in_few_batches_of_at_most_1000(store: Path) -> None:
    """A demo-sized run's points (1,465, within a budget of 1,000 a curve) go out in log_batch
    calls of at most 1,000 (MLflow's limit): the evaluation points while it trains, the
    per-step curves when it ends."""
    run = train("speed", epochs=20, batch=4)  # 20 epochs * 23 steps * 3 curves = 1,380 points
    tracker = Tracker(
        DEFAULT_TRACKING_URI, "speed", plots=False, flush_interval_s=60.0, step_points=1000
    )
    calls: list[int] = []
    log_batch = tracker.client.log_batch

    def counting(run_id: str, **kwargs: Any) -> None:
        calls.append(len(kwargs.get("metrics") or ()))
        log_batch(run_id, **kwargs)

    tracker.client.log_batch = counting
    with tracker.parent("speed", {}) as parent_id:
        drive(tracker, [run])
    points = [c for c in calls if c]
    assert run.result is not None
    assert sum(points) == 3 * len(run.result.steps) + 4 * 20 + 5  # and 5 final metrics
    assert points == [4, 1000, sum(points) - 1004]  # the first epoch's at once, then 2 calls
    client = _client(DEFAULT_TRACKING_URI)
    child = child_runs(client, tracker.experiment_id, parent_id)["speed"]
    check_logged_run(client, child, run)
    # figures off (tracking: {figures: false}): the files, none of the pictures
    assert not any(name.endswith(".png") for name in _artifacts(client, child.info.run_id))


def test_without_figures_the_comparison_has_its_table_but_no_picture(store: Path) -> None:
    tracker = Tracker(DEFAULT_TRACKING_URI, "no-figures", plots=False)
    run = train("svm", epochs=1)
    assert run.result is not None
    with tracker.parent("no-figures", {}) as parent_id:
        drive(tracker, [run])
        tracker.log_comparison([(run.info, run.result)])
    client = _client(DEFAULT_TRACKING_URI)
    assert _artifacts(client, parent_id) == {"comparison.md", "comparison.json"}


def test_a_chunk_the_writer_thread_could_not_store_is_written_after_the_figures(
    store: Path,
) -> None:
    """At the end of a run its chunks are written on a thread while the figures are drawn;
    one that failed there is written again afterwards (with retries), the others not."""
    from mlflow.exceptions import MlflowException

    run = train("retried", epochs=20, batch=4)  # 1,465 points: the first epoch's 4, two chunks
    tracker = Tracker(
        DEFAULT_TRACKING_URI, "retried", plots=False, flush_interval_s=60.0, step_points=1000
    )
    calls: list[int] = []
    log_batch = tracker.client.log_batch

    def first_fails(run_id: str, *args: Any, **kwargs: Any) -> None:
        metrics = kwargs.get("metrics") or (args[0] if args else ())
        if metrics:
            calls.append(len(metrics))
            if len(calls) == 2:  # the first chunk of the run's end (after its first epoch's)
                raise MlflowException("lost on the way")
        log_batch(run_id, *args, **kwargs)

    tracker.client.log_batch = first_fails
    with tracker.parent("retried", {}) as parent_id:
        drive(tracker, [run])
    client = _client(DEFAULT_TRACKING_URI)
    check_logged_run(client, child_runs(client, tracker.experiment_id, parent_id)["retried"], run)
    assert calls == [4, 1000, 461, 1000], calls  # the failed chunk once more, the other not


def test_long_curves_are_thinned_to_the_budget_and_kept_whole_in_steps_npz(store: Path) -> None:
    """Past ``step_points`` steps, each per-step curve is thinned evenly to that many points,
    first and last step kept; steps.npz holds every step, and compare reads it."""
    run = train("long", epochs=4, batch=4)  # 4 * 23 = 92 steps
    assert run.result is not None
    steps = run.result.steps
    tracker = Tracker(DEFAULT_TRACKING_URI, "long", plots=False, step_points=10)
    with tracker.parent("long", {}) as parent_id:
        drive(tracker, [run])
    client = _client(DEFAULT_TRACKING_URI)
    child_id = child_runs(client, tracker.experiment_id, parent_id)["long"].info.run_id
    for key in ("loss", "data_loss", "reg_loss"):
        points = sorted(client.get_metric_history(child_id, f"curves/{key}"), key=lambda m: m.step)
        at = [m.step for m in points]
        assert len(at) == 10 and at[0] == steps.examples[0] and at[-1] == steps.examples[-1]
        gaps = np.diff(np.searchsorted(steps.examples, at))
        assert gaps.max() - gaps.min() <= 1  # evenly spaced
        index = np.searchsorted(steps.examples, at)
        np.testing.assert_array_equal([m.value for m in points], getattr(steps, key)[index])
    assert len(client.get_metric_history(child_id, "curves/val_accuracy")) == 4  # never thinned
    saved = Path(client.download_artifacts(child_id, "steps.npz", str(store)))
    with np.load(saved, allow_pickle=False) as history:
        for key in ("examples", "time", "loss", "data_loss", "reg_loss"):
            np.testing.assert_array_equal(history[key], getattr(steps, key))
    ((_, read),) = load_latest_invocation("long", DEFAULT_TRACKING_URI)
    np.testing.assert_array_equal(read.steps.examples, steps.examples)
    np.testing.assert_array_equal(read.steps.loss, steps.loss)
    with pytest.raises(ValueError, match="at least 2"):
        Tracker(DEFAULT_TRACKING_URI, "long", step_points=1)


def test_evaluations_past_the_budget_are_thinned_when_the_run_ends(store: Path) -> None:
    """A run with more evaluations than ``step_points`` logs the first half of that many as
    it trains and the rest thinned evenly when it ends, the last one kept: at most
    ``step_points`` points per curve."""
    run = train("many", epochs=25, batch=45)
    assert run.result is not None
    tracker = Tracker(DEFAULT_TRACKING_URI, "many", plots=False, step_points=10)
    with tracker.parent("many", {}) as parent_id:
        drive(tracker, [run])
    client = _client(DEFAULT_TRACKING_URI)
    child_id = child_runs(client, tracker.experiment_id, parent_id)["many"].info.run_id
    examples = [r.examples for r in run.reports]
    for key in ("curves/val_accuracy", "curves/train_accuracy", "epoch"):
        at = sorted(m.step for m in client.get_metric_history(child_id, key))
        assert at[:5] == examples[:5]  # every one of the first five
        assert len(at) == 10 and at[-1] == examples[-1] and len(set(at)) == 10


def test_flush_interval_writes_at_evaluation_points(store: Path) -> None:
    run = train("live", epochs=3)
    tracker = Tracker(DEFAULT_TRACKING_URI, "live", plots=False, flush_interval_s=0.0)
    client = _client(DEFAULT_TRACKING_URI)
    with tracker.parent("live", {}) as parent_id:
        tracker.optlab_run_started(run=run.info)
        tracker.optlab_epoch_ended(run=run.info, report=run.reports[0])
        child = child_runs(client, tracker.experiment_id, parent_id)["live"]
        visible = client.get_metric_history(child.info.run_id, "curves/val_accuracy")
        assert len(visible) == 1  # written while the run goes on
        for report in run.reports[1:]:
            tracker.optlab_epoch_ended(run=run.info, report=report)
        tracker.optlab_run_finished(run=run.info, result=run.result, error=None)  # type: ignore[arg-type]
    check_logged_run(client, client.get_run(child.info.run_id), run)


def test_points_buffered_before_the_last_live_one_are_written_within_the_interval(
    store: Path,
) -> None:
    """Evaluations faster than the write interval: once the first half of ``step_points``
    was buffered, a later evaluation still writes the buffer when the interval has passed
    (it used to wait for the run's end, so a run of quick epochs showed nothing while it
    trained)."""
    run = train("quick", epochs=3)
    tracker = Tracker(DEFAULT_TRACKING_URI, "quick", plots=False, step_points=4)
    tracker.flush_interval_s = 0.3
    client = _client(DEFAULT_TRACKING_URI)
    with tracker.parent("quick", {}) as parent_id:
        tracker.optlab_run_started(run=run.info)
        for report in run.reports[:2]:  # the live half: buffered, the interval not yet passed
            tracker.optlab_epoch_ended(run=run.info, report=report)
        assert tracker.pending_points("quick") > 0
        time.sleep(0.35)
        tracker.optlab_epoch_ended(run=run.info, report=run.reports[2])  # thinned at the end
        child = child_runs(client, tracker.experiment_id, parent_id)["quick"]
        assert len(client.get_metric_history(child.info.run_id, "curves/val_accuracy")) == 2
        assert tracker.pending_points("quick") == 0
        tracker.optlab_run_finished(run=run.info, result=run.result, error=None)  # type: ignore[arg-type]
    written = client.get_metric_history(child.info.run_id, "curves/val_accuracy")
    assert sorted(m.step for m in written) == [r.examples for r in run.reports]  # once each


def test_console_output_is_an_artifact(store: Path) -> None:
    run = train("chatty", epochs=1)
    tracker = Tracker(DEFAULT_TRACKING_URI, "console", plots=False)
    assert run.result is not None
    run.result.console = ["epoch 1 loss 0.9"]  # the runner's transcript of the run
    with tracker.parent("console", {}) as parent_id:
        tracker.optlab_run_started(run=run.info)
        tracker.optlab_run_finished(run=run.info, result=run.result, error=None)  # type: ignore[arg-type]
    client = _client(DEFAULT_TRACKING_URI)
    child = child_runs(client, tracker.experiment_id, parent_id)["chatty"]
    assert "console.log" in _artifacts(client, child.info.run_id)
    text = Path(client.download_artifacts(child.info.run_id, "console.log", str(store)))
    assert text.read_text() == "epoch 1 loss 0.9\n"


def test_the_spec_sets_the_step_budget_and_turns_the_figures_off(store: Path) -> None:
    from typer.testing import CliRunner

    from optlab._cli import app

    (store / "spec.yaml").write_text(
        "name: budget\nseed: 0\ndescription: SGD on blobs, for the budget test.\n"
        "data: {name: blobs, n_samples: 300, n_features: 4, n_classes: 3, val: 0.2, test: 0.2}\n"
        "loss: {name: softmax}\n"
        "optimizer: {name: sgd, lr: 0.05, batch_size: 16, epochs: 2}\n"
        "tracking: {step_points: 5, figures: false}\n"
    )
    done = CliRunner().invoke(app, ["run", "spec.yaml"])
    assert done.exit_code == 0, done.stderr
    client = _client(DEFAULT_TRACKING_URI)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("budget").experiment_id],
        filter_string="tags.`optlab.role` = 'run'",
    )
    assert len(client.get_metric_history(run.info.run_id, "curves/loss")) == 5
    assert not any(name.endswith(".png") for name in _artifacts(client, run.info.run_id))
    assert "steps.npz" in _artifacts(client, run.info.run_id)
    # the spec's description is the experiment's and the parent run's in MLflow
    experiment = client.get_experiment_by_name("budget")
    assert experiment.tags["mlflow.note.content"] == "SGD on blobs, for the budget test."
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["mlflow.note.content"] == "SGD on blobs, for the budget test."
    assert "mlflow.note.content" not in run.data.tags


def test_resume_with_nothing_left_logs_nothing_and_prints_the_finished_runs(
    store: Path,
) -> None:
    from typer.testing import CliRunner

    from optlab._cli import app

    (store / "spec.yaml").write_text(
        "name: done\nseed: 0\n"
        "data: {name: blobs, n_samples: 200, n_features: 4, n_classes: 3, val: 0.2, test: 0.2}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.05, batch_size: 16, epochs: 2}\n"
        "variants: {svm: {}, softmax: {loss: {name: softmax}}}\n"
    )
    runner = CliRunner()
    first = runner.invoke(app, ["run", "spec.yaml", "--json"])
    assert first.exit_code == 0, first.stderr
    again = runner.invoke(app, ["run", "spec.yaml", "--resume", "--json"])
    assert again.exit_code == 0, again.stderr
    before, after = json.loads(first.stdout), json.loads(again.stdout)
    assert [r["name"] for r in after] == [r["name"] for r in before] == ["svm", "softmax"]
    for old, new in zip(before, after, strict=True):
        assert new["status"] == "FINISHED"
        assert new["metrics"]["test_accuracy"] == old["metrics"]["test_accuracy"]
        assert new["final_loss"] == old["final_loss"]
    client = _client(DEFAULT_TRACKING_URI)
    experiment_id = client.get_experiment_by_name("done").experiment_id
    parents = client.search_runs([experiment_id], "tags.`optlab.role` = 'invocation'")
    assert len(parents) == 1  # the resume logged no parent run of its own
    table = runner.invoke(app, ["run", "spec.yaml", "--resume"])
    assert "softmax" in table.stdout and "skipped 2 run(s) already finished" in table.stdout


def test_the_best_group_of_replicates_is_named_as_a_group(store: Path) -> None:
    """With seeds the best row is a group: the parent names it ``optlab.best_group`` with its
    runs in ``optlab.best_group_runs`` and has its mean accuracy (``optlab.best_run`` named
    the group, which is no run)."""
    seeded = [train(f"svm-seed{s}", lr=0.5, seed=s, variant="svm") for s in range(2)]
    other = train("softmax", lr=1e-4, epochs=1)
    tracker = Tracker(DEFAULT_TRACKING_URI, "groups", plots=False)
    with tracker.parent("groups", {}) as parent_id:
        drive(tracker, [*seeded, other])
        tracker.log_comparison([(r.info, r.result) for r in [*seeded, other]])  # type: ignore[misc]
    parent = _client(DEFAULT_TRACKING_URI).get_run(parent_id)
    means = np.mean([r.result.metrics["best_val_accuracy"] for r in seeded])  # type: ignore[union-attr]
    assert means > other.result.metrics["best_val_accuracy"]  # type: ignore[union-attr]
    assert parent.data.tags["optlab.best_group"] == "svm"
    assert parent.data.tags["optlab.best_group_runs"] == "svm-seed0,svm-seed1"
    assert "optlab.best_run" not in parent.data.tags
    assert parent.data.metrics["summary/best_val_accuracy"] == pytest.approx(means)


@pytest.mark.parametrize("given", ["runs/x.db", "file:///tmp/elsewhere/x", "mlruns"])
def test_a_path_as_tracking_uri_says_which_sqlite_uri_to_use(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """A path means MLflow's file store, which MLflow 3 refuses with five sentences; optlab
    says in one line which sqlite:/// URI to use, and writes nothing."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    if given == "mlruns":  # an existing folder: the store is a file in it
        (workdir / given).mkdir()
    with pytest.raises(TrackingError) as caught:
        connect(given)
    absolute = workdir / given if "://" not in given else Path("/tmp/elsewhere/x")
    if given == "mlruns":
        absolute /= "mlflow.db"
    assert str(caught.value) == (
        f"tracking URI {given!r} is a path: for a SQLite store there use sqlite:///{absolute} "
        "(MLflow's file store, which a path means, needs MLFLOW_ALLOW_FILE_STORE=true)"
    )
    assert [p.name for p in workdir.iterdir()] == ([given] if given == "mlruns" else [])


def test_compare_shows_the_runs_in_the_plans_order_after_a_resume(store: Path) -> None:
    """--resume trains a failed run again: it started last, and `optlab compare` listed (and
    coloured) it last, unlike the table and figure of the run before."""
    from typer.testing import CliRunner

    from optlab._cli import app
    from optlab._tracking.readback import load_latest_invocation

    (store / "spec.yaml").write_text(
        "name: order\nseed: 0\ndata: {name: iris}\nloss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.05, batch_size: 16, epochs: 2}\n"
        "tracking: {figures: false}\n"
        "variants:\n  a: {}\n  b: {optimizer: {lr: 1.0e+12}}\n  c: {}\n"
    )
    runner = CliRunner()
    assert runner.invoke(app, ["run", "spec.yaml"]).exit_code == 1  # b diverges
    assert runner.invoke(app, ["run", "spec.yaml", "--resume"]).exit_code == 1  # b again
    runs = load_latest_invocation("order", DEFAULT_TRACKING_URI)
    assert [info.name for info, _ in runs] == ["a", "b", "c"]


def test_the_spec_yaml_of_a_run_on_data_with_their_own_test_split_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Any
) -> None:
    """A run's ``spec.yaml`` is runnable as it is: for data with a test split of their own it
    leaves out ``data.test`` (resolved to its default), which such data refuse."""
    import optlab

    monkeypatch.chdir(tmp_path)
    X = np.random.default_rng(0).normal(size=(60, 4))
    own = tmp_path / "own.npz"
    np.savez(own, X=X, y=np.arange(60) % 3, X_test=X[:9], y_test=np.arange(9) % 3)
    uri = new_store(tmp_path / "mlflow.db")
    spec = {
        "name": "own",
        "data": {"name": "npz", "path": str(own)},
        "loss": {"name": "svm"},
        "optimizer": {"name": "gd", "lr": 0.1, "iterations": 2},
        "tracking": {"figures": False},
    }
    (row,) = optlab.run(spec, tracking_uri=uri, quiet=True)
    client = _client(uri)
    stored = Path(client.download_artifacts(row["run_id"], "spec.yaml", str(tmp_path)))
    assert "test:" not in stored.read_text()
    (again,) = optlab.run(stored, track=False, quiet=True)
    assert again["status"] == "FINISHED"
    assert again["data"]["path"] == str(own)
