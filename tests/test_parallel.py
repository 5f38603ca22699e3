"""--jobs N in worker processes and --executor dask on a local cluster: same numbers."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.context
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SWEEP = """\
name: parallel_test
data: {name: digits, limit: 250}
loss: {name: softmax}
optimizer: {name: sgd, lr: 0.01, batch_size: 50, epochs: 2}
variants:
  softmax: {}
  svm: {loss: {name: svm}}
sweep:
  grid:
    optimizer.lr: [0.001, 0.01]
seeds: [0, 1]
"""


def optlab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optlab", *args], capture_output=True, text=True, cwd=cwd
    )


def in_process(*args: str) -> Any:
    """The ``optlab`` command in this process (no new interpreter importing optlab): for the
    runs that are only the reference the parallel ones are compared with, and for what is
    refused before anything starts."""
    from typer.testing import CliRunner

    from optlab._cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    return path


def _numbers(stdout: str) -> dict[str, tuple[object, ...]]:
    return {
        r["name"]: (r["status"], r["final_loss"], r["metrics"]["test_accuracy"])
        for r in json.loads(stdout)
    }


@pytest.mark.slow
def test_jobs_2_gives_exactly_the_numbers_of_jobs_1(spec: Path) -> None:
    one = in_process("run", str(spec), "--json", "--no-track")
    two = optlab("run", str(spec), "--json", "--no-track", "--jobs", "2", cwd=spec.parent)
    assert one.exit_code == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a, b = _numbers(one.stdout), _numbers(two.stdout)
    assert len(a) == 8
    assert list(a) == list(b)  # results in spec order, not completion order
    assert a == b


@pytest.mark.slow
def test_dask_cluster_on_loopback_runs_the_sweep(spec: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        host="127.0.0.1",
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        done = optlab(
            "run",
            str(spec),
            "--json",
            "--no-track",
            "--executor",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
            cwd=spec.parent,
        )
    assert done.returncode == 0, done.stderr
    local = in_process("run", str(spec), "--json", "--no-track")
    assert local.exit_code == 0, local.stderr
    assert _numbers(done.stdout) == _numbers(local.stdout)


def test_dask_executor_needs_a_scheduler(spec: Path) -> None:
    done = in_process("run", str(spec), "--executor", "dask")
    assert done.exit_code == 2
    assert "--scheduler" in done.stderr and "Traceback" not in done.stderr


def test_workers_that_cannot_start_are_one_run_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from optlab._errors import RunError
    from optlab._execution.executor import Job
    from optlab._execution.local import LocalProcesses
    from optlab._execution.recording import RecordingObserver

    with LocalProcesses(1) as workers:

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("no processes")

        monkeypatch.setattr(workers.pool, "submit", broken)
        runs = workers.run([object()], Job("e", RecordingObserver()))  # type: ignore[list-item]
        with pytest.raises(RunError, match="could not start the worker processes: no processes"):
            list(runs)


def test_workers_see_the_environment_of_the_moment_they_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fork server lives as long as the process that started it; each pool's workers
    still take that process's environment as it is when the pool starts."""
    import os

    from optlab._execution.local import LocalProcesses

    for value in ("first", "second"):
        monkeypatch.setenv("OPTLAB_TEST_WORKER_ENV", value)
        with LocalProcesses(1) as workers:
            seen = workers.pool.submit(os.getenv, "OPTLAB_TEST_WORKER_ENV").result(60)
        assert seen == value


@pytest.mark.parametrize(("jobs", "started"), [("2", True), ("1", False)])
def test_run_with_jobs_starts_the_fork_server_before_reading_the_spec(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, jobs: str, started: bool
) -> None:
    """The fork server's imports take about a second of a core: ``optlab run --jobs N``
    starts it before anything else, so that they overlap reading the spec and the data."""
    from typer.testing import CliRunner

    import optlab._cli as cli
    from optlab._execution import fork_server

    order: list[str] = []

    def start() -> multiprocessing.context.BaseContext:
        order.append("fork server")
        return multiprocessing.get_context("spawn")  # starts nothing until a worker starts

    monkeypatch.setattr(fork_server, "start", start)

    def load(*args: object) -> None:
        order.append("spec")
        raise SystemExit(2)

    monkeypatch.setattr(cli, "_load", load)
    CliRunner().invoke(cli.app, ["run", str(tmp_path / "x.yaml"), "--jobs", jobs])
    assert order == (["fork server", "spec"] if started else ["spec"])


def test_the_fork_server_preloads_what_a_worker_imports() -> None:
    import importlib.util

    from optlab._execution import fork_server

    for name in fork_server.WORKER_PRELOAD:
        assert importlib.util.find_spec(name) is not None, name


def test_without_a_fork_server_the_workers_are_spawned_and_train_the_same(
    monkeypatch: pytest.MonkeyPatch, spec: Path
) -> None:
    """Platforms without the forkserver start method (Windows, some macOS builds) get
    spawned workers, which give the same results as a run in this process."""
    import multiprocessing

    from optlab._execution import fork_server
    from optlab._execution.local import LocalProcesses
    from optlab._execution.recording import RecordingObserver, execute_recorded
    from optlab._spec.load import load_experiment
    from optlab._training.runner import execute

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert fork_server.start().get_start_method() == "spawn"
    run = load_experiment(spec).runs[0]
    with LocalProcesses(1) as workers:
        events = workers.pool.submit(execute_recorded, run, "e", {}, False).result(120)
    name, finished = events[-1]
    spawned = finished["result"]
    assert name == "optlab_run_finished"
    _, here = execute(run, experiment="e", observer=RecordingObserver())
    assert spawned.status == here.status == "FINISHED"
    assert spawned.metrics["test_accuracy"] == here.metrics["test_accuracy"]
    np.testing.assert_array_equal(spawned.steps.loss, here.steps.loss)


FORK_SERVER_INTERRUPTED = """\
import os, signal, time
from multiprocessing import forkserver
from optlab._execution import fork_server

fork_server.start()
pid = forkserver._forkserver._forkserver_pid
os.kill(pid, signal.SIGINT)  # a Ctrl-C (the terminal's, to the process group) as it starts
time.sleep(1.0)
print("alive" if os.waitpid(pid, os.WNOHANG)[0] == 0 else "gone")
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


def test_a_ctrl_c_while_the_fork_server_starts_leaves_it_running_and_silent() -> None:
    """The terminal sends Ctrl-C to the whole process group, the fork server too: while it
    started and imported (about a second) it ended with a KeyboardInterrupt traceback under
    optlab's own one-line message. Now it ignores it (the invoking process's handler is back
    at once); its workers install their own."""
    import signal

    done = subprocess.run(
        [sys.executable, "-c", FORK_SERVER_INTERRUPTED],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "alive\nTrue\n"
    assert done.stderr == ""
