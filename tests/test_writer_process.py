"""The writer process stores exactly what MLflow's ``log_batch`` stores, never loses a point,
and never outlives the process that started it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from metric_points import new_run, sample_points, stored

from optlab.tracking._sqlite_writer import SqliteMetrics, decode
from optlab.tracking.points import Points
from optlab.tracking.writer_process import (
    WRITER_ENV,
    WriterProcess,
    encode,
    sqlite_path,
    wanted_for,
)


class _SqliteMetrics:
    """The writer process's program, called in this process."""

    def __init__(self, path: str) -> None:
        self.metrics = SqliteMetrics(path)

    def write(self, run_id: str, points: Points) -> None:
        self.metrics.write(run_id, decode(run_id, encode(points)))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "mlflow.db"


@pytest.fixture
def client(db: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{db}")


# ------------------------------------------------------------------------- what it writes
def test_same_rows_and_latest_values_as_log_batch(client: Any, db: Path) -> None:
    writer = _SqliteMetrics(str(db))
    mine, theirs = new_run(client, "mine"), new_run(client, "theirs")
    writer.write(mine, sample_points()[:4])  # in two batches: latest_metrics is kept across them
    writer.write(mine, sample_points()[4:])
    client.log_batch(theirs, metrics=sample_points().metrics())
    assert stored(client, mine) == stored(client, theirs)
    latest, history = stored(client, mine)
    assert len(history["loss"]) == 6 and len(history["acc"]) == 5
    assert latest["acc"] == "0.75" and latest["loss"] == "1.0"


def test_an_older_batch_does_not_replace_the_latest_value(client: Any, db: Path) -> None:
    writer = _SqliteMetrics(str(db))
    run_id = new_run(client, "order")
    writer.write(run_id, sample_points()[4:6])  # steps 40, 50
    writer.write(run_id, sample_points()[:4])  # steps 0..30 arrive later
    assert client.get_run(run_id).data.metrics["loss"] == 1.0


def test_a_deleted_or_missing_run_gets_nothing(client: Any, db: Path) -> None:
    writer = _SqliteMetrics(str(db))
    run_id = new_run(client, "deleted")
    client.delete_run(run_id)
    with pytest.raises(RuntimeError, match="'deleted' state"):
        writer.write(run_id, sample_points())
    with pytest.raises(RuntimeError, match="not found"):
        writer.write("0" * 32, sample_points())
    client.restore_run(run_id)
    assert client.get_metric_history(run_id, "loss") == []
    writer.write(run_id, sample_points())  # the failed transactions left the connection usable
    assert len(client.get_metric_history(run_id, "loss")) == 6


def test_a_batch_stored_already_is_refused_whole(client: Any, db: Path) -> None:
    """The primary key refuses a re-sent point; the transaction stores none of the batch (the
    tracker then writes it through MLflow, which skips the stored points)."""
    writer = _SqliteMetrics(str(db))
    run_id = new_run(client, "again")
    writer.write(run_id, sample_points()[:5])
    with pytest.raises(sqlite3.IntegrityError):
        writer.write(run_id, sample_points())
    assert len(client.get_metric_history(run_id, "loss")) == 5


def test_an_unknown_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE metrics (key TEXT, value REAL)")
    with pytest.raises(RuntimeError, match=r"lacks.*not a schema known here"):
        _SqliteMetrics(str(db)).write("r", sample_points())


def test_uris() -> None:
    assert sqlite_path("sqlite:///mlflow.db") == Path("mlflow.db").absolute()
    assert sqlite_path("sqlite:////tmp/x.db?timeout=5") == Path("/tmp/x.db")
    for other in ("sqlite:///:memory:", "http://127.0.0.1:5000", "postgresql://h/db", "x"):
        assert sqlite_path(other) is None
        assert not wanted_for(other)


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert wanted_for("sqlite:///mlflow.db")
    monkeypatch.setenv(WRITER_ENV, "0")
    assert not wanted_for("sqlite:///mlflow.db")


def test_only_on_posix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "name", "nt")
    assert not wanted_for("sqlite:///mlflow.db")


# ------------------------------------------------------------------------- the process
def test_the_process_writes_in_order_and_acknowledges(client: Any, db: Path) -> None:
    run_id = new_run(client, "process")
    with WriterProcess(f"sqlite:///{db}") as writer:
        # up: its program imports nothing outside the standard library (-S: no site-packages)
        assert writer.wait_ready(30)
        first = writer.submit(run_id, sample_points()[:4])
        second = writer.submit(run_id, sample_points()[4:])
        assert writer.wait([first, second], 30) == {first: None, second: None}
        gone = writer.submit("0" * 32, sample_points())
        assert "not found" in str(writer.wait([gone], 30)[gone])
    theirs = new_run(client, "theirs")
    client.log_batch(theirs, metrics=sample_points().metrics())
    assert stored(client, run_id) == stored(client, theirs)


def test_the_process_never_creates_the_database(tmp_path: Path) -> None:
    db = tmp_path / "not-yet.db"
    with WriterProcess(f"sqlite:///{db}") as writer:
        assert writer.wait_ready(30)  # up, but the store is opened at the first batch
        seq = writer.submit("r", sample_points())
        assert "unable to open" in str(writer.wait([seq], 30)[seq])
    assert not db.exists()


def test_a_dead_process_fails_its_batches_instead_of_hanging(client: Any, db: Path) -> None:
    writer = WriterProcess(f"sqlite:///{db}")
    assert writer.wait_ready(30)
    writer._process.kill()
    writer._process.wait()
    seq = writer.submit(new_run(client, "r"), sample_points())
    assert "gone" in str(writer.wait([seq], 30)[seq])
    assert not writer.ready()
    writer.close()


def test_its_own_session_keeps_ctrl_c_away(db: Path) -> None:
    with WriterProcess(f"sqlite:///{db}") as writer:
        assert os.getsid(writer._process.pid) != os.getsid(0)


def test_it_ends_when_the_invoking_process_is_killed(tmp_path: Path) -> None:
    script = (
        "import os, sys, time\n"
        "from optlab.tracking.writer_process import WriterProcess\n"
        f"w = WriterProcess('sqlite:///{tmp_path / 'mlflow.db'}')\n"
        "assert w.wait_ready(30)\n"
        "print(w._process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited (its parent, reaped by init, is gone)


# ------------------------------------------------------------------------- with the tracker
@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from optlab.tracking.store import connect

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    connect(uri)
    return uri


class _Counting(WriterProcess):
    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.batches: list[int] = []

    def submit(self, run_id: str, points: Points) -> int:
        self.batches.append(len(points))
        return super().submit(run_id, points)


def _tracked(uri: str, writer: WriterProcess, **kwargs: Any) -> tuple[Any, str, list[Any]]:
    from tracking_data import drive, train

    from optlab.tracking import Tracker

    runs = [train("svm", lr=0.5), train("sgd-lr10", lr=10.0, fail_at_epoch=2)]
    tracker = Tracker(uri, "w", plots=False, writer=writer, **kwargs)
    with tracker.parent("w", {}) as parent_id:
        drive(tracker, runs)
    return tracker, parent_id, runs


def _check(uri: str, tracker: Any, parent_id: str, runs: list[Any]) -> None:
    from mlflow import MlflowClient
    from tracking_data import check_logged_run, child_runs

    client = MlflowClient(uri)
    children = child_runs(client, tracker.experiment_id, parent_id)
    for run in runs:
        check_logged_run(client, children[run.info.name], run)


def test_the_tracker_hands_every_point_to_a_ready_writer(store: str) -> None:
    with _Counting(store) as writer:
        assert writer.wait_ready(30)
        tracker, parent_id, runs = _tracked(store, writer, flush_interval_s=0.0)
        total = sum(3 * len(r.result.steps) + 3 * len(r.reports) for r in runs)
        assert sum(writer.batches) >= total  # curves and accuracies (plus final metrics)
        assert len(writer.batches) > len(runs)  # flushed at evaluations too, not only at the end
        assert tracker._writer_failed is None
    _check(store, tracker, parent_id, runs)


class _Dying(_Counting):
    """Dies as the first batch is handed over."""

    def submit(self, run_id: str, points: Points) -> int:
        if not self.batches:
            self._process.kill()
            self._process.wait()
        return super().submit(run_id, points)


def test_what_a_dead_writer_did_not_store_the_tracker_writes(store: str) -> None:
    with _Dying(store) as writer:
        assert writer.wait_ready(30)
        tracker, parent_id, runs = _tracked(store, writer, flush_interval_s=0.0)
        assert len(writer.batches) == 1  # then never used again
        assert "gone" in str(tracker._writer_failed)
    _check(store, tracker, parent_id, runs)


class _Starting(_Counting):
    """Still starting, all along."""

    def ready(self) -> bool:
        return False


def test_a_writer_still_starting_is_not_waited_for(store: str) -> None:
    with _Starting(store) as writer:
        tracker, parent_id, runs = _tracked(store, writer)
        assert writer.batches == []
    _check(store, tracker, parent_id, runs)


def test_an_invocation_without_a_writer_process_writes_itself(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer process that cannot start (no interpreter to run) changes nothing a user sees."""
    from mlflow import MlflowClient

    from optlab.invocation import Invocation
    from optlab.spec import load_experiment
    from optlab.tracking import writer_process

    def cannot_start(uri: str) -> None:
        raise FileNotFoundError("no python here")

    monkeypatch.setattr(writer_process, "WriterProcess", cannot_start)
    spec = Path(__file__).resolve().parents[1] / "experiments" / "svm_vs_softmax.yaml"
    experiment = load_experiment(spec, ["optimizer.epochs=1", "tracking.uri=" + store])
    outcome = Invocation(experiment, spec_path=str(spec), quiet=True).run()
    assert not outcome.failed and len(outcome.results) == 2
    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name("svm_vs_softmax").experiment_id
    for info, result in outcome.results:
        (run,) = client.search_runs([experiment_id], f"attributes.run_name = '{info.name}'")
        assert len(client.get_metric_history(run.info.run_id, "loss")) == len(result.steps)


@pytest.mark.parametrize("switch", ["", "0"])
def test_an_invocation_starts_one_unless_switched_off(
    store: str, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    from mlflow import MlflowClient

    from optlab.invocation import Invocation
    from optlab.spec import load_experiment
    from optlab.tracking import writer_process

    started: list[_Counting] = []

    class Recorded(_Counting):
        def __init__(self, uri: str) -> None:
            super().__init__(uri)
            started.append(self)
            assert self.wait_ready(30)  # so that this test sees it used

    monkeypatch.setattr(writer_process, "WriterProcess", Recorded)
    monkeypatch.setenv(WRITER_ENV, switch)
    spec = Path(__file__).resolve().parents[1] / "experiments" / "svm_vs_softmax.yaml"
    experiment = load_experiment(spec, ["optimizer.epochs=2", "tracking.uri=" + store])
    outcome = Invocation(experiment, spec_path=str(spec), quiet=True).run()
    assert not outcome.failed and len(outcome.results) == 2
    if switch == "0":
        assert started == []
    else:
        assert len(started) == 1 and len(started[0].batches) == 2
        assert started[0]._process.poll() is not None  # ended with the invocation
    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name("svm_vs_softmax").experiment_id
    for info, result in outcome.results:
        (run,) = client.search_runs([experiment_id], f"attributes.run_name = '{info.name}'")
        assert len(client.get_metric_history(run.info.run_id, "loss")) == len(result.steps)
        assert run.data.metrics["test_accuracy"] == result.metrics["test_accuracy"]


def test_stored_batches_are_released_while_the_run_goes_on(store: str) -> None:
    """A long run does not keep every point in memory until it ends: each flush lets go of
    the batches the writer process has acknowledged by then."""
    from tracking_data import train

    from optlab.tracking import Tracker

    run = train("long", epochs=6)
    with _Counting(store) as writer:
        assert writer.wait_ready(30)
        tracker = Tracker(store, "w", plots=False, writer=writer, flush_interval_s=0.0)
        with tracker.parent("w", {}) as parent_id:
            tracker.optlab_run_started(run=run.info)
            for report in run.reports[:-1]:
                tracker.optlab_epoch_ended(run=run.info, report=report)
            deadline = time.monotonic() + 30
            while writer._open and time.monotonic() < deadline:  # every batch answered
                writer._receive(0.1)
            tracker.optlab_epoch_ended(run=run.info, report=run.reports[-1])
            last = 3 * len(run.reports[-1].steps) + 3
            assert tracker.pending_points(run.info.name) == last  # only the newest batch
            assert run.result is not None
            tracker.optlab_run_finished(run=run.info, result=run.result, error=None)
        assert len(writer.batches) == len(run.reports) + 1
    _check(store, tracker, parent_id, [run])


def test_a_batch_larger_than_the_pipe_arrives_whole(client: Any, db: Path) -> None:
    """50,000 points (about 1.2 MB pickled) cross a 64 KiB pipe in many pieces."""
    n = 50_000
    points = Points(["loss"] * n, np.linspace(0.0, 1.0, n), np.full(n, 5, np.int64), np.arange(n))
    run_id = new_run(client, "large")
    with WriterProcess(f"sqlite:///{db}") as writer:
        assert writer.wait_ready(30)
        seq = writer.submit(run_id, points)
        assert writer.wait([seq], 60) == {seq: None}
    with sqlite3.connect(db) as con:
        stored_rows = con.execute(
            "SELECT count(*), max(step) FROM metrics WHERE run_uuid = ?", (run_id,)
        ).fetchone()
    assert stored_rows == (n, n - 1)
    assert client.get_run(run_id).data.metrics["loss"] == 1.0
