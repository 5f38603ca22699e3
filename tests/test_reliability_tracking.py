"""The tracking server going away during a run: writes wait (within a bounded budget), no
acknowledged point is lost and none is stored twice.

A real ``mlflow server`` on 127.0.0.1 is crashed (SIGKILL) and started again on the same port
and store while a real run (``optlab._training.runner.execute`` on a small blobs problem) is logging
to it; a small fault-injecting proxy in front of the server loses answers after the server
committed the write, to check that a re-sent write is not stored twice.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pluggy
import pytest
from mlflow_server import RestartableMlflowServer
from tracking_data import check_logged_run, child_runs, train

import optlab._contract.hookspecs
from optlab import hookimpl
from optlab._contract.plugin_manager import GuardedHooks, get_registry
from optlab._contract.records import EpochReport, RunInfo, RunResult
from optlab._errors import RunError, TrackingError
from optlab._spec.experiment import RunSpec
from optlab._spec.load import load_experiment
from optlab._tracking import STEP_METRICS, Tracker, TrackingUnavailable
from optlab._tracking.points import EPOCH_METRICS, curve_key
from optlab._tracking.retry import RETRY_ENV, is_transient, retry_budget, short_reason
from optlab._training.runner import execute

pytestmark = pytest.mark.integration

SPEC = """\
name: outage
seed: 5
data: {name: blobs, n_samples: 600, n_features: 8, n_classes: 4, val: 0.2, test: 0.2}
loss: {name: softmax}
regularizer: {name: l2, strength: 0.001}
optimizer: {name: sgd, lr: 0.05, batch_size: 16, epochs: 6}
"""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, _empty_store: Path
) -> Iterator[RestartableMlflowServer]:
    folder = tmp_path_factory.mktemp("restartable-mlflow")
    with RestartableMlflowServer(folder, template=_empty_store) as srv:
        yield srv


@pytest.fixture
def up(server: RestartableMlflowServer) -> RestartableMlflowServer:
    """The server, running (an earlier test may have left it stopped)."""
    server.start()
    return server


@pytest.fixture(scope="module")
def run_spec(tmp_path_factory: pytest.TempPathFactory) -> RunSpec:
    path = tmp_path_factory.mktemp("outage-spec") / "outage.yaml"
    path.write_text(SPEC)
    return load_experiment(path).runs[0]


def _client(url: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(url)


class Outage:
    """An observer that crashes the server when a given epoch ends (before the tracker writes
    that epoch's points: it is registered last, so it is called first) and, optionally,
    starts it again in the background."""

    def __init__(self, server: RestartableMlflowServer, at_epoch: float, restart: bool) -> None:
        self.server = server
        self.at_epoch = at_epoch
        self.restart = restart
        self.thread: threading.Thread | None = None
        self.stopped_at: float | None = None

    @hookimpl
    def optlab_epoch_ended(self, run: RunInfo, report: EpochReport) -> None:
        if report.epoch == self.at_epoch and self.stopped_at is None:
            self.server.stop()
            self.stopped_at = time.monotonic()
            if self.restart:
                self.thread = threading.Thread(target=self.server.start, daemon=True)
                self.thread.start()


def _hooks(*plugins: object) -> GuardedHooks:
    pm = pluggy.PluginManager("optlab")
    pm.add_hookspecs(optlab._contract.hookspecs)
    for i, plugin in enumerate(plugins):  # the tracker under its name in an invocation
        pm.register(plugin, name="optlab.tracking" if isinstance(plugin, Tracker) else f"plugin{i}")
    return GuardedHooks(pm, get_registry())


def _child_id(client: Any, tracker: Tracker, parent_id: str, name: str) -> str:
    children = child_runs(client, tracker.experiment_id, parent_id)
    assert list(children) == [name]
    return str(children[name].info.run_id)


def _assert_curves(client: Any, run_id: str, result: RunResult, n_evals: int) -> None:
    """Every per-step point of ``result`` exactly once (step, value) and ``n_evals``
    per-evaluation points."""
    for key in STEP_METRICS:
        points = sorted(client.get_metric_history(run_id, curve_key(key)), key=lambda m: m.step)
        assert [m.step for m in points] == result.steps.examples.tolist(), key
        np.testing.assert_array_equal([m.value for m in points], getattr(result.steps, key))
    for key in EPOCH_METRICS:
        points = sorted(client.get_metric_history(run_id, curve_key(key)), key=lambda m: m.step)
        assert [m.step for m in points] == [r.examples for r in result.evaluations[:n_evals]]
        assert [m.value for m in points] == [getattr(r, key) for r in result.evaluations[:n_evals]]


def test_server_restarted_within_the_budget_the_run_finishes_with_every_point_once(
    up: RestartableMlflowServer, run_spec: RunSpec
) -> None:
    tracker = Tracker(up.url, "outage-restart", plots=False, flush_interval_s=0.0, retry_s=120)
    outage = Outage(up, at_epoch=2.0, restart=True)
    starts = up.starts
    with tracker.parent("outage-restart") as parent_id:
        _, result = execute(run_spec, experiment="outage", observer=_hooks(tracker, outage))
    assert outage.thread is not None
    outage.thread.join(timeout=5)
    assert up.starts == starts + 1 and up.running
    assert result.status == "FINISHED", result.error
    assert tracker._retry.retries > 0  # the tracker did wait for the server
    assert len(result.evaluations) == 6 and len(result.steps) == 6 * 24

    client = _client(up.url)
    child_id = _child_id(client, tracker, parent_id, run_spec.name)
    assert client.get_run(parent_id).info.status == "FINISHED"
    child = client.get_run(child_id)
    assert child.info.status == "FINISHED"
    _assert_curves(client, child_id, result, n_evals=6)
    assert child.data.metrics["summary/test_accuracy"] == result.metrics["test_accuracy"]
    assert {a.path for a in client.list_artifacts(child_id)} >= {"spec.yaml", "weights.npz"}


# ---------------------------------------------------------------------- lost answers (proxy)
class FaultyProxy:
    """An HTTP proxy to the server that injects faults on chosen REST endpoints.

    ``faults[suffix]`` is a list of actions used up one per request whose path ends with
    ``suffix``: ``"lose"`` forwards the request (the server commits it) and closes the
    connection without answering; ``"503"`` answers 503 without forwarding.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: dict[str, list[str]] = {}
        self.bodies: list[tuple[str, bytes]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.bodies.append((self.path, body))
                action = proxy.take(self.path)
                if action == "503":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection(
                    str(proxy.upstream.hostname), proxy.upstream.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                if action == "lose":
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def take(self, path: str) -> str | None:
        for suffix, actions in self.faults.items():
            if path.split("?")[0].endswith(suffix) and actions:
                return actions.pop(0)
        return None

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()


def test_a_write_committed_but_not_answered_is_not_stored_twice(
    up: RestartableMlflowServer,
) -> None:
    run = train("lossy", epochs=6)
    assert run.result is not None
    with FaultyProxy(up.url) as proxy:
        tracker = Tracker(proxy.url, "lost-answers", plots=False, flush_interval_s=0.0, retry_s=20)
        with tracker.parent("lost-answers") as parent_id:
            proxy.faults["/runs/create"] = ["lose"]  # the child run is created, answer lost
            tracker.optlab_run_started(run=run.info)
            for i, report in enumerate(run.reports):
                if i == 1:
                    proxy.faults["/runs/log-batch"] = ["lose", "lose"]
                if i == 3:
                    proxy.faults["/runs/log-batch"] = ["503"]
                tracker.optlab_epoch_ended(run=run.info, report=report)
            tracker.optlab_run_finished(run=run.info, result=run.result, error=None)
    assert tracker._retry.retries == 4
    batches = Counter(body for path, body in proxy.bodies if path.endswith("/runs/log-batch"))
    sends = Counter(batches.values())  # one batch sent 3 times (answer lost twice), one twice
    assert sends[3] == 1 and sends[2] == 1 and set(sends) == {1, 2, 3}
    client = _client(up.url)
    children = client.search_runs(
        [tracker.experiment_id], filter_string="attributes.run_name = 'lossy'"
    )
    assert len(children) == 1  # the lost create was found, not made again
    assert children[0].data.tags["mlflow.parentRunId"] == parent_id
    check_logged_run(client, client.get_run(children[0].info.run_id), run)  # each point once


def test_an_error_that_retrying_cannot_fix_fails_at_once(up: RestartableMlflowServer) -> None:
    run = train("gone", epochs=2)
    tracker = Tracker(up.url, "not-transient", plots=False, flush_interval_s=0.0, retry_s=60)
    tracker.optlab_run_started(run=run.info)
    client = _client(up.url)
    (child,) = client.search_runs(
        [tracker.experiment_id], filter_string="attributes.run_name = 'gone'"
    )
    client.delete_run(child.info.run_id)
    started = time.monotonic()
    with pytest.raises(TrackingError, match="could not log metrics of 'gone'") as failed:
        tracker.optlab_epoch_ended(run=run.info, report=run.reports[0])
    assert time.monotonic() - started < 5.0
    assert not isinstance(failed.value, TrackingUnavailable)
    assert not is_transient(failed.value)
    assert tracker._retry.retries == 0 and tracker.unreachable is None


def test_unreachable_errors_are_transient_with_a_short_reason() -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow_server import free_port

    from optlab._tracking.retry import bound_http_retries

    bound_http_retries()
    client = MlflowClient(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(MlflowException) as refused:
        client.get_experiment("0")
    assert time.monotonic() - started < 3.0  # MLflow's own retries are off
    assert is_transient(refused.value)
    assert short_reason(refused.value) == "Connection refused"


def test_a_server_s_5xx_answer_has_one_short_reason_however_mlflow_words_it() -> None:
    """A 503 is "HTTP 503" whether urllib3 counted it ("too many 503 error responses") or
    MLflow read the answer ("failed with error code 503 != 200. Response body: ..."): the
    lost-server line of the CLI said either, depending on which call failed last."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import get_error_code

    answered = MlflowException(
        "API request to endpoint /api/2.0/mlflow/runs/log-batch failed with error code 503 "
        "!= 200. Response body: 'busy'",
        error_code=get_error_code(503),
    )
    assert is_transient(answered)
    assert short_reason(answered) == "HTTP 503"


def test_retry_budget_from_argument_environment_or_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, new_store: Callable[[Path], str]
) -> None:
    monkeypatch.delenv(RETRY_ENV, raising=False)
    assert retry_budget() == 60.0
    assert retry_budget(2.5) == 2.5
    monkeypatch.setenv(RETRY_ENV, "7")
    assert retry_budget() == 7.0 and retry_budget(1) == 1.0
    for bad in ("soon", "-1", "inf", "nan"):
        monkeypatch.setenv(RETRY_ENV, bad)
        with pytest.raises(TrackingError, match=f"{RETRY_ENV}: '{bad}' is not a number"):
            retry_budget()
    monkeypatch.setenv(RETRY_ENV, "0.5")
    assert Tracker(new_store(tmp_path / "m.db"), "budget", plots=False).retry_s == 0.5


def test_the_cli_reports_a_lost_server_in_one_line_and_exits_1(
    up: RestartableMlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from optlab._cli import app

    spec = tmp_path / "outage.yaml"
    spec.write_text(SPEC.replace("epochs: 6", "epochs: 2"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(RETRY_ENV, "1")
    with FaultyProxy(up.url) as proxy:
        proxy.faults["/runs/log-batch"] = ["503"] * 1000  # the server answers, but only 503
        started = time.monotonic()
        result = CliRunner().invoke(app, ["run", str(spec), "--tracking-uri", proxy.url])
    assert time.monotonic() - started < 15.0
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"optlab: error: tracking server {proxy.url} was unreachable for 1.")
    assert "(HTTP 503)" in last
    # what to run next is the user's own command (it said `optlab run SPEC --resume`)
    assert last.endswith(
        f"finish the remaining runs with `optlab run {spec} --tracking-uri {proxy.url} --resume`"
    )
    assert not (tmp_path / "mlflow.db").exists()

    # once the server answers again, --resume finishes the run: one FINISHED run, all its curves
    resumed = CliRunner().invoke(app, ["run", str(spec), "--tracking-uri", up.url, "--resume"])
    assert resumed.exit_code == 0, resumed.stderr
    client = _client(up.url)
    experiment = client.get_experiment_by_name("outage")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`optlab.role` = 'run'"
    )
    # the first attempt could not be ended (the store was lost); here it ran in this very
    # process, so --resume leaves it RUNNING (a separate, dead process's run it marks KILLED)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "RUNNING"]
    (finished,) = (r for r in runs if r.info.status == "FINISHED")
    losses = client.get_metric_history(finished.info.run_id, curve_key("loss"))
    assert len(losses) == 2 * 24 and len({m.step for m in losses}) == 2 * 24


def test_server_not_back_within_the_budget_the_run_fails_with_one_clear_line(
    up: RestartableMlflowServer, run_spec: RunSpec
) -> None:
    budget = 1.5
    tracker = Tracker(up.url, "outage-lost", plots=False, flush_interval_s=0.0, retry_s=budget)
    outage = Outage(up, at_epoch=2.0, restart=False)
    with (
        pytest.raises(TrackingUnavailable) as ended,
        tracker.parent("outage-lost") as parent_id,
    ):
        info, result = execute(run_spec, experiment="outage", observer=_hooks(tracker, outage))
    assert outage.stopped_at is not None
    waited = time.monotonic() - outage.stopped_at
    assert budget <= waited < budget + 6.0

    # the run: FAILED, with the one-line reason; the invocation ends with the same line
    assert result.status == "FAILED"
    message = str(result.error)
    assert message == str(ended.value) and "\n" not in message
    unreachable = re.search(rf"tracking server {up.url} was unreachable for (\d+\.\d) s", message)
    assert unreachable is not None and float(unreachable[1]) >= budget, message
    assert "Connection refused" in message and f"log metrics of '{run_spec.name}'" in message
    assert isinstance(ended.value, RunError) and isinstance(ended.value, TrackingError)
    assert ended.value.exit_code == 1
    # every later write fails at once instead of waiting again
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable, match="was unreachable for"):
        tracker.optlab_run_started(run=info)
    assert time.monotonic() - started < 0.5
    # what was not acknowledged is still buffered, none dropped: epoch 2's evaluation points
    # and the per-step curves of both epochs (written when a run ends)
    measured = len(result.evaluations[0].steps) + len(result.evaluations[1].steps)
    assert tracker.pending_points(run_spec.name) == len(EPOCH_METRICS) + 3 * measured

    # the points acknowledged before the outage are all in the server's store (read from its
    # SQLite file: the server is left down, this module's last test that needs it)
    client = _client(up.backend_uri)
    child_id = _child_id(client, tracker, parent_id, run_spec.name)
    first = result.evaluations[0]
    for key in EPOCH_METRICS:
        history = client.get_metric_history(child_id, curve_key(key))
        assert [m.value for m in history] == [getattr(first, key)]
    assert client.get_run(child_id).info.status == "RUNNING"  # nothing could end it


def test_no_room_to_write_is_never_retried_and_says_where() -> None:
    """A full disk or quota, or a read-only file system, whatever reports it (the OS, SQLite,
    a tracking server's answer), is not waited for: retrying cannot help."""
    import errno
    import sqlite3

    import requests
    from mlflow.exceptions import MlflowException

    from optlab._tracking.no_room import NoRoom, no_room, no_room_message
    from optlab._tracking.retry import Retrier

    copy = OSError(errno.ENOSPC, "No space left on device", "/tmp/f.png", None, "/mnt/f.png")
    assert no_room(copy) == NoRoom(errno.ENOSPC, "/mnt/f.png")  # a copy's destination
    assert no_room(OSError(errno.EDQUOT, "Disk quota exceeded")) == NoRoom(errno.EDQUOT)
    assert no_room(OSError(errno.EROFS, "Read-only file system")) == NoRoom(errno.EROFS)
    database = sqlite3.connect(":memory:")
    database.execute("pragma max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as full:
        database.executescript("create table a(x); create table b(x); create table c(x);")
    try:  # as MLflow passes SQLite's error on
        raise MlflowException(str(full.value), error_code="TEMPORARILY_UNAVAILABLE") from full.value
    except MlflowException as passed_on:
        assert no_room(passed_on) == NoRoom(errno.ENOSPC)
    answer = requests.Response()
    answer.status_code = 500
    server_full = requests.HTTPError("500: [Errno 28] No space left on device", response=answer)
    server_down = requests.HTTPError("500: Internal Server Error", response=answer)
    assert is_transient(server_down) and not is_transient(server_full)
    assert not is_transient(MlflowException("disk quota exceeded", error_code="INTERNAL_ERROR"))
    assert not is_transient(copy) and not is_transient(full.value)

    def fails() -> None:
        raise copy

    retrier = Retrier("http://127.0.0.1:5000", 60.0)
    with pytest.raises(OSError):
        retrier.call("log artifacts of 'a'", fails)
    assert retrier.retries == 0
    assert no_room_message(NoRoom(errno.ENOSPC), retrier.uri, "log artifacts of 'a'") == (
        "tracking server http://127.0.0.1:5000: its storage says no space left on device while "
        "trying to log artifacts of 'a'; the run was stopped: free space on the server, then "
        "finish the remaining runs with `optlab run SPEC --resume`"
    )


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(size, name=None)`` mounts a new tmpfs of that size (``mount -o size=``) on a
    new folder of the test's tmp_path (``name``, or ``tmpfsN``) and returns that folder; the
    test is skipped where mounting is not permitted (not root, a container)."""
    mounted: list[Path] = []

    def mount(size: str, name: str | None = None) -> Path:
        folder = tmp_path / (name or f"tmpfs{len(mounted)}")
        folder.mkdir()
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                capture_output=True,
                text=True,
            )
        except OSError as exc:
            pytest.skip(f"cannot mount a tmpfs here: {exc}")
        if done.returncode != 0:  # not root: "must be superuser to use mount"
            pytest.skip(
                f"cannot mount a tmpfs here: {(done.stderr.strip() or '?').splitlines()[0]}"
            )
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


def _fill(folder: Path, leave: int = 0) -> Path:
    """A file that takes all but ``leave`` bytes of the file system of ``folder``."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        out.write(b"\0" * (shutil.disk_usage(folder).free - leave))
        while leave == 0:
            out.write(b"\0" * 65536)
    return filler


def _optlab_run(spec: Path, uri: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "optlab", "run", str(spec), "--tracking-uri", uri],
        cwd=spec.parent,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


LONG = """\
name: disk_full
data: {name: digits}
loss: {name: softmax}
optimizer: {name: sgd, lr: 0.001, batch_size: 1000, epochs: 100000}
checks: {gradient: off}
"""


def test_a_disk_that_fills_up_mid_run_ends_it_in_seconds_with_one_line(
    tmpfs: Callable[..., Path], new_store: Callable[[Path], str]
) -> None:
    """The working folder (store and artifacts) on a small tmpfs that fills up while a run
    trains: the invocation ends within seconds, exit 1, with one line on what is full and what
    to do (it used to train on, with a traceback every 5 s, and end with exit 2). The store
    cannot take the runs' end either; once there is room, ``--resume`` ends them."""
    folder = tmpfs("64m")
    uri = new_store(folder / "mlflow.db")
    spec = folder / "long.yaml"
    spec.write_text(LONG + "tracking: {step_points: 2}\n")  # one evaluation point written
    proc = _optlab_run(spec, uri, OPTLAB_CLAIM_STALE_S="1.2")  # a heartbeat every 0.2 s
    deadline = time.monotonic() + 90
    while not list(folder.glob("mlruns/1/*/artifacts/spec.yaml")):  # the run has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    # from now on the run writes nothing until it ends: the heartbeat finds the disk full
    filler = _fill(folder)
    full = time.monotonic()
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()  # if it trains on
    assert time.monotonic() - full < 10.0
    assert proc.returncode == 1
    assert err.startswith(
        f"optlab: error: {folder / 'mlflow.db'}: no space left on device (file system {folder}: "
        "0.0 of 64.0 MiB free) while trying to record the runs in tracking store "
    )
    resume = f"optlab run {spec} --tracking-uri {uri} --resume"  # the user's own command
    assert (
        err.endswith(f"free space there, then finish the remaining runs with `{resume}`\n")
        and err.count("\n") == 1
    ), err

    filler.unlink()
    from optlab._tracking.resume import mark_stale_running

    ended = mark_stale_running(Tracker(uri, "disk_full", plots=False))
    assert sorted(ended) == ["disk_full", "softmax"]


def test_no_room_for_a_run_s_files_fails_it_and_the_store_records_why(
    tmpfs: Callable[..., Path], new_store: Callable[[Path], str], tmp_path: Path
) -> None:
    """The artifacts' folder full (a tmpfs on ``mlruns`` beside the store; the store on
    another file system): the run that cannot store its files ends FAILED with the reason, and
    so does its parent, where the store has room."""
    folder = tmpfs("256k", "mlruns")
    uri = new_store(tmp_path / "mlflow.db")
    spec = tmp_path / "short.yaml"
    spec.write_text(LONG.replace("epochs: 100000", "epochs: 5") + "tracking: {figures: false}\n")
    _fill(folder, leave=8192)  # two pages: spec.yaml fits when the run starts, weights.npz not
    from typer.testing import CliRunner

    from optlab._cli import app

    done = CliRunner().invoke(app, ["run", str(spec), "--tracking-uri", uri])  # in this process
    err = done.stderr
    assert done.exit_code == 1, err
    line = err.removeprefix("optlab: error: ").rstrip("\n")
    assert line.startswith(f"{folder}/1/") and "\n" not in line, err
    assert f": no space left on device (file system {folder}: " in line
    assert "while trying to log artifacts of 'softmax'" in line
    runs = _client(uri).search_runs(["1"])
    assert {r.info.run_name: r.info.status for r in runs} == {
        "disk_full": "FAILED",
        "softmax": "FAILED",
    }
    assert {
        r.data.tags["optlab.status_reason"].removeprefix("TrackingUnavailable: ") for r in runs
    } == {line}
