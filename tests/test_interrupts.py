"""SIGINT, SIGTERM and SIGKILL mid-sweep: runs end KILLED with their metrics, ``--resume``
finishes the rest, and no finished run is repeated."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SPEC = """\
name: interrupt_test
data: {name: digits}
loss: {name: softmax}
optimizer: {name: sgd, lr: 0.001, batch_size: 1000, epochs: 60}
checks: {gradient: off}
tracking: {figures: false}  # what is recorded is tested, not the figures (seconds each run)
variants:
  a: {}
  b: {optimizer: {name: sgd, lr: 0.002, batch_size: 1000, epochs: 100000}}
  c: {optimizer: {name: sgd, lr: 0.003, batch_size: 1000, epochs: 60}}
"""


def start(spec: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "optlab", "run", str(spec), "--tracking-uri", _uri(spec), *extra],
        cwd=spec.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ended_by(sig: signal.Signals) -> int:
    """The return code of ``optlab run`` that ``sig`` ended once its runs were recorded: killed
    by SIGINT after Ctrl-C (Python's end on an uncaught Ctrl-C, so that a shell loop stops;
    130 in a shell), 143 after SIGTERM."""
    return -signal.SIGINT if sig == signal.SIGINT else 143


def _uri(spec: Path) -> str:
    return f"sqlite:///{spec.parent / 'mlflow.db'}"


def children(spec: Path) -> list[Any]:
    from optlab._tracking.store import connect

    client = connect(_uri(spec))  # waits while the run creates the store
    exp = client.get_experiment_by_name("interrupt_test")
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def ended(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """What ``proc`` printed, once it has ended: killed if it still runs (a test that stops
    waiting must not wait for a run of 100,000 epochs, nor leave it training)."""
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate(timeout=30)
    return out, err


def wait_until_running(spec: Path, name: str, proc: subprocess.Popen[str]) -> None:
    """Until run ``name`` trains and logs: RUNNING, with its first evaluation in the store (the
    tracker writes a run's first evaluation point as its first epoch ends, the rest every 2 s;
    its per-step curves once it ends, also when a signal ends it)."""
    from mlflow.tracking import MlflowClient

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, ended(proc)
        try:
            running = [r for r in children(spec) if r.info.run_name == name]
        except Exception:  # the store is being created
            running = []
        if running and running[0].info.status == "RUNNING":
            client = MlflowClient(_uri(spec))
            if client.get_metric_history(running[0].info.run_id, "curves/val_accuracy"):
                return
        time.sleep(0.1)
    raise AssertionError(f"run {name} never started")


def wait_until_only_b_trains(spec: Path, proc: subprocess.Popen[str]) -> None:
    """Until runs a and c are FINISHED while run b trains on, for 100,000 epochs (under
    ``--jobs N`` too its MLflow run is RUNNING from its start)."""
    deadline = time.monotonic() + 90
    while statuses(spec) != {"a": ["FINISHED"], "b": ["RUNNING"], "c": ["FINISHED"]}:
        assert proc.poll() is None, ended(proc)
        assert time.monotonic() < deadline, statuses(spec)
        time.sleep(0.2)


def descendants(pid: int) -> set[int]:
    """Process ids of ``pid``'s children, grandchildren, ... (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def statuses(spec: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in sorted(children(spec), key=lambda r: r.info.start_time):
        out.setdefault(r.info.run_name, []).append(r.info.status)
    return out


def invoke(*args: str) -> Any:
    """The ``optlab`` command in this process (quicker than a new one, which imports MLflow
    again): for the commands after the interrupted one, which no signal reaches."""
    from typer.testing import CliRunner

    from optlab._cli import app

    return CliRunner().invoke(app, list(args))


def resume_to_the_end(spec: Path, text: str = SPEC) -> None:
    """``optlab run --resume`` with the long runs (b) shortened so that they finish."""
    spec.write_text(text.replace("epochs: 100000", "epochs: 20"))
    resumed = invoke("run", str(spec), "--tracking-uri", _uri(spec), "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr


@pytest.fixture
def spec(tmp_path: Path, new_store: Callable[[Path], str]) -> Path:
    """The spec, next to an empty store (``_uri``): what is tested starts once the store
    exists (its creation is tested elsewhere and takes seconds)."""
    path = tmp_path / "long.yaml"
    path.write_text(SPEC)
    new_store(tmp_path / "mlflow.db")
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_kills_the_current_run_keeps_its_metrics_and_resume_finishes(
    spec: Path, sig: signal.Signals
) -> None:
    from mlflow.tracking import MlflowClient

    proc = start(spec)
    wait_until_running(spec, "b", proc)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10, "the process must exit within a few seconds"
    assert proc.returncode == _ended_by(sig), err
    assert "Traceback" not in err
    assert statuses(spec) == {"a": ["FINISHED"], "b": ["KILLED"]}

    killed = next(r for r in children(spec) if r.info.run_name == "b")
    client = MlflowClient(_uri(spec))
    assert len(client.get_metric_history(killed.info.run_id, "curves/loss")) > 0
    assert len(client.get_metric_history(killed.info.run_id, "curves/val_accuracy")) > 0
    assert sig.name in killed.data.tags["optlab.status_reason"]
    parent_id = killed.data.tags["mlflow.parentRunId"]
    assert client.get_run(parent_id).info.status == "KILLED"

    # --resume: a is not repeated; b (killed) and c run to the end
    resume_to_the_end(spec)
    assert statuses(spec) == {"a": ["FINISHED"], "b": ["KILLED", "FINISHED"], "c": ["FINISHED"]}

    # the comparison after a resume shows the whole plan: the reused run and the new ones
    compared = invoke("compare", "interrupt_test", "--json", "--tracking-uri", _uri(spec))
    assert compared.exit_code == 0, compared.stderr
    rows = {row["name"]: row for row in json.loads(compared.stdout)}
    assert set(rows) == {"a", "b", "c"}
    assert all(row["status"] == "FINISHED" for row in rows.values())


def test_sigkill_mid_sweep_compare_shows_it_stopped_then_resume_redoes_only_the_unfinished(
    spec: Path,
) -> None:
    """``kill -9`` mid-sweep, then ``--resume`` redoes only the unfinished runs. In between
    (one killed process for both checks): MLflow keeps the run RUNNING until a ``--resume``;
    ``optlab compare`` (and ``optlab.compare``) showed it RUNNING as if it still trained. Its
    invocation's process is gone: it is shown ``RUNNING?``, with a line saying what that means
    and how to finish it."""
    import optlab

    proc = start(spec)
    try:
        wait_until_running(spec, "b", proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert statuses(spec) == {"a": ["FINISHED"], "b": ["RUNNING"]}  # as MLflow has them

    compared = invoke("compare", "interrupt_test", "--tracking-uri", _uri(spec))
    assert compared.exit_code == 0, compared.stderr
    table = [line.split() for line in compared.stdout.splitlines()]
    assert [cells[-1] for cells in table if cells[:1] == ["b"]] == ["RUNNING?"]
    assert (
        "RUNNING?: its invocation stopped without ending it (process gone, or no heartbeat); "
        "`optlab run SPEC --resume` or optlab.run(..., resume=True) finishes it"
    ) in " ".join(compared.stdout.split())  # the note wraps at the terminal's width
    rows = optlab.compare("interrupt_test", tracking_uri=_uri(spec))
    assert [row["status"] for row in rows] == ["FINISHED", "RUNNING?"]

    resume_to_the_end(spec)
    final = statuses(spec)
    assert final["a"] == ["FINISHED"], "a finished run must not be repeated"
    assert final["b"][0] in ("KILLED", "FAILED") and final["b"][1:] == ["FINISHED"]
    assert final["c"] == ["FINISHED"]


def test_sigkill_of_the_invoker_with_jobs_2_leaves_no_process_behind(spec: Path) -> None:
    """``kill -9`` runs no handler in the invoking process: its fork server, workers and
    multiprocessing's resource tracker must still end within seconds (they used to train on
    for as long as the run lasted, ignoring SIGTERM)."""
    proc = start(spec, "--jobs", "2")
    wait_until_only_b_trains(spec, proc)
    helpers = descendants(proc.pid)  # the fork server, the workers, the resource tracker
    assert len(helpers) >= 3, helpers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)  # not communicate(): the helpers hold its pipes until they end
    deadline = time.monotonic() + 10
    while alive := [pid for pid in helpers if Path(f"/proc/{pid}").exists() and not _zombie(pid)]:
        if time.monotonic() > deadline:
            for pid in alive:  # do not leave them to the next test
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"left behind 10 s after kill -9: {alive}")
        time.sleep(0.1)
    proc.communicate()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_sigterm_with_jobs_2_kills_the_running_run_and_resume_finishes(spec: Path) -> None:
    """Workers hear the signal too: the long run ends KILLED with what it measured, the
    short ones are recorded FINISHED, the command exits within seconds and leaves no worker
    behind. While it trained, the long run's evaluations were in the store already."""
    from mlflow.tracking import MlflowClient

    proc = start(spec, "--jobs", "2")
    wait_until_only_b_trains(spec, proc)
    training = next(r for r in children(spec) if r.info.run_name == "b")
    client = MlflowClient(_uri(spec))
    deadline = time.monotonic() + 10  # b's first evaluation is written as it comes
    while not client.get_metric_history(training.info.run_id, "curves/val_accuracy"):
        assert time.monotonic() < deadline, "no evaluation of the training run in the store"
        time.sleep(0.1)
    helpers = descendants(proc.pid)  # the fork server and the workers
    assert len(helpers) >= 3, helpers
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10, "the process must exit within a few seconds"
    assert proc.returncode == _ended_by(signal.SIGTERM), err
    assert "Traceback" not in err
    assert statuses(spec) == {"a": ["FINISHED"], "b": ["KILLED"], "c": ["FINISHED"]}
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in helpers):
        assert time.monotonic() < deadline, f"left behind: {descendants(1) & helpers}"
        time.sleep(0.1)
    killed = next(r for r in children(spec) if r.info.run_name == "b")
    assert len(client.get_metric_history(killed.info.run_id, "curves/loss")) > 0
    assert client.get_run(killed.data.tags["mlflow.parentRunId"]).info.status == "KILLED"

    resume_to_the_end(spec)
    assert statuses(spec) == {"a": ["FINISHED"], "b": ["KILLED", "FINISHED"], "c": ["FINISHED"]}


def _resume_command(spec: Path) -> str:
    """What optlab says to run next after an interrupt (``start`` gives the store)."""
    return shlex.join(["optlab", "run", str(spec), "--tracking-uri", _uri(spec)]) + " --resume"


def test_a_second_ctrl_c_ends_at_once_and_a_resume_s_counts_the_runs_it_reuses(
    spec: Path,
) -> None:
    """Ctrl-C twice: exit 130 at once, with one line on what is saved and the command that
    finishes the rest (it used to end with no output at all). Then Ctrl-C twice during the
    ``--resume`` of that: what is saved counts the FINISHED runs it reuses (it said "no runs
    FINISHED and saved" with run a finished in the store). With figures: drawing the killed
    run's keeps each invocation going when the second Ctrl-C comes."""
    spec.write_text(SPEC.replace("tracking: {figures: false}", "tracking: {figures: true}"))
    said = (
        f"optlab: interrupted: 1 run FINISHED and saved in {_uri(spec)} (experiment "
        f"'interrupt_test'); finish the others with `{_resume_command(spec)}`"
    )
    first = start(spec)
    wait_until_running(spec, "b", first)
    first.send_signal(signal.SIGINT)
    time.sleep(0.3)  # two signals sent at once may reach the process as one
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=30)
    assert first.returncode == _ended_by(signal.SIGINT), err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == said
    assert statuses(spec) == {"a": ["FINISHED"], "b": ["KILLED"]}  # c not run

    proc = start(spec, "--resume")
    deadline = time.monotonic() + 90
    while statuses(spec).get("b") != ["KILLED", "RUNNING"]:
        assert proc.poll() is None and time.monotonic() < deadline, ended(proc)
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # two signals sent at once may reach the process as one
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == _ended_by(signal.SIGINT), err
    assert err.splitlines()[-1] == said


def _full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: a process that writes to it blocks until it is read."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write, b"." * 65536)
    os.set_blocking(write, True)
    return read, write


def test_ctrl_c_once_every_run_has_ended_says_so_in_one_line(spec: Path) -> None:
    """A Ctrl-C after the runs have ended (here while the table is printed: stdout is a full
    pipe, so the process waits there) is no longer a silent exit 130."""
    spec.write_text(SPEC.split("variants:")[0])
    read, write = _full_pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "optlab", "run", str(spec), "--tracking-uri", _uri(spec)],
        cwd=spec.parent,
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write)
    deadline = time.monotonic() + 90
    while _invocation_status(spec) != "FINISHED":
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    with os.fdopen(read, "rb") as stdout:
        stdout.read()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == _ended_by(signal.SIGINT), err
    assert err == (
        f"optlab: interrupted after every run had ended: 1 run FINISHED and saved in "
        f"{_uri(spec)} (experiment 'interrupt_test'); see them with `optlab compare "
        f"interrupt_test --tracking-uri {_uri(spec)}`\n"
    )


#: ``optlab`` as its console script runs it (``sys.exit(main())``), with a Ctrl-C sent at a
#: moment after the command has returned: in main()'s last step (gc.freeze), or at the
#: interpreter's exit (an exit handler registered after main()'s, so run before it)
CTRL_C_LATE = {
    "as_main_returns": """\
import gc, signal, sys
from optlab._cli import main
freeze = gc.freeze
def ctrl_c_then_freeze():
    signal.raise_signal(signal.SIGINT)
    freeze()
gc.freeze = ctrl_c_then_freeze
sys.exit(main())
""",
    "at_exit": """\
import atexit, signal, sys
from optlab._cli import main
status = main()
atexit.register(signal.raise_signal, signal.SIGINT)
sys.exit(status)
""",
}


@pytest.mark.parametrize("moment", list(CTRL_C_LATE))
def test_a_ctrl_c_after_the_command_returned_still_says_the_line_and_ends_by_sigint(
    tmp_path: Path, moment: str
) -> None:
    """A Ctrl-C once ``optlab run`` has printed its summary and returned its status, as the
    process ends: the line, then the end by SIGINT (it ended with a KeyboardInterrupt
    traceback, or with status 0 and an "Exception ignored in atexit callback"). Untracked:
    the moments are the same with a store, whose line test_cli checks."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.split("variants:")[0].replace("epochs: 60", "epochs: 2"))
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_LATE[moment], "run", str(spec), "--no-track"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "FINISHED" in done.stdout, done.stderr
    assert done.returncode == _ended_by(signal.SIGINT), done.stderr
    assert done.stderr == "optlab: interrupted; nothing is recorded (tracking is off)\n"


def _invocation_status(spec: Path) -> str | None:
    from optlab._tracking.store import connect

    client = connect(_uri(spec))
    exp = client.get_experiment_by_name("interrupt_test")
    runs = [] if exp is None else client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("optlab.role") == "invocation"]
    return parents[0].info.status if parents else None


def test_ctrl_c_with_jobs_2_records_no_run_that_was_still_queued(spec: Path) -> None:
    """Runs queued behind the running ones when Ctrl-C comes are not recorded at all (they
    used to be recorded KILLED "at step 1", with one point, as if they had trained), and
    ``--resume`` trains them."""
    queued = SPEC.replace("lr: 0.003, batch_size: 1000, epochs: 60", "lr: 0.003, epochs: 100000")
    queued += "  d: {optimizer: {name: sgd, lr: 0.004, batch_size: 1000}}\n"
    spec.write_text(queued)
    proc = start(spec, "--jobs", "2")
    deadline = time.monotonic() + 90
    # b and c train (long; RUNNING in the store from their start), d waits in the queue
    while statuses(spec) != {"a": ["FINISHED"], "b": ["RUNNING"], "c": ["RUNNING"]}:
        assert proc.poll() is None and time.monotonic() < deadline, ended(proc)
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == _ended_by(signal.SIGINT), err
    assert statuses(spec) == {"a": ["FINISHED"], "b": ["KILLED"], "c": ["KILLED"]}
    assert f"finish the remaining runs with `{_resume_command(spec)}`" in out
    # the workers' runs say the signal the user sent (they said SIGTERM, the invoker's own)
    reasons = {r.info.run_name: r.data.tags.get("optlab.status_reason") for r in children(spec)}
    assert "SIGINT" in str(reasons["b"]) and "SIGINT" in str(reasons["c"]), reasons

    # --resume trains d (b and c are left out here: resuming KILLED runs is tested above)
    lines = queued.splitlines(keepends=True)
    resume_to_the_end(spec, "".join(x for x in lines if not x.startswith(("  b:", "  c:"))))
    assert statuses(spec) == {
        "a": ["FINISHED"],
        "b": ["KILLED"],
        "c": ["KILLED"],
        "d": ["FINISHED"],
    }


API_LOOP = """\
import sys
import optlab

for lr in (0.002, 0.02):  # a script's loop: Ctrl-C during the first call stops it
    print("calling optlab.run", lr, flush=True)
    optlab.run(sys.argv[1], tracking_uri=sys.argv[2], overrides={"optimizer.lr": lr}, quiet=True)
print("the loop went on", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_a_signal_to_a_scripts_loop_over_optlab_run_records_the_run_and_stops_the_script(
    spec: Path, sig: signal.Signals
) -> None:
    """``optlab.run`` records the interrupted run KILLED with its metrics, as ``optlab run``
    does, then raises KeyboardInterrupt after Ctrl-C, and hands SIGTERM to Python's own
    handler: the script's loop stops (it used to go on with the next call, as if the signal
    ended only the current run)."""
    from mlflow.tracking import MlflowClient

    script = spec.parent / "loop.py"
    script.write_text(API_LOOP)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(spec), _uri(spec)],
        cwd=spec.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_running(spec, "b", proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()  # the loop's next call would train run b for 100,000 epochs
    assert proc.returncode == -sig, err  # Python's end for an uncaught Ctrl-C, or SIGTERM's
    assert out.splitlines() == ["calling optlab.run 0.002"], err
    if sig == signal.SIGINT:
        said = err.rstrip().splitlines()[-1]
        assert said.startswith("KeyboardInterrupt: interrupted: 1 run FINISHED"), err
    assert statuses(spec) == {"a": ["FINISHED"], "b": ["KILLED"]}
    killed = next(r for r in children(spec) if r.info.run_name == "b")
    assert MlflowClient(_uri(spec)).get_metric_history(killed.info.run_id, "curves/loss")


def test_ctrl_c_while_a_write_waits_for_the_store_reads_as_an_interrupt(
    tmp_path: Path, new_store: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that came while a write was being retried (the store away) ended the command
    with 'optlab: error: tracking store ... was unreachable for 0.0 s ...', exit 1: the wait
    stopped, but it was recorded as an outage, which every later write then reported, and the
    run was FAILED. It is an interrupt like any other: the run KILLED, the interrupted line,
    status 130, at once (not after the retry budget). In this process: the store's writes are
    made to fail as an unreachable one's do, and the signal is sent from the failing write."""
    from mlflow.tracking import MlflowClient

    from optlab._tracking.retry import RETRY_ENV

    path = tmp_path / "away.yaml"
    path.write_text(SPEC.replace("epochs: 100000", "epochs: 2").replace("epochs: 60", "epochs: 2"))
    uri = new_store(tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(RETRY_ENV, "60")
    log_batch = MlflowClient.log_batch
    calls = {"n": 0}

    def away(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:  # the first run's params: stored
            return log_batch(self, *args, **kwargs)
        if calls["n"] == 2:  # its first points: the server went away, and the user pressed Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(MlflowClient, "log_batch", away)
    started = time.monotonic()
    result = invoke("run", str(path), "--tracking-uri", uri)
    assert time.monotonic() - started < 30  # not the 60 s retry budget
    assert result.exit_code == 130, (result.stdout, result.stderr)
    assert "unreachable" not in result.stdout + result.stderr
    assert result.stderr == ""
    assert f"interrupted: finish the remaining runs with `optlab run {path} --tracking-uri" in (
        result.stdout
    )
    assert "a: KILLED: interrupted by SIGINT while waiting for the tracking store" in result.stdout


def test_a_stop_keeps_the_first_signals_name() -> None:
    """A worker that the terminal's Ctrl-C reached, and then its invoker's SIGTERM, recorded
    its run as interrupted by SIGTERM."""
    from optlab._training.monitor import StopFlag

    flag = StopFlag()
    flag.request("SIGINT")
    flag.request("SIGTERM")
    assert flag.reason == "SIGINT"


def test_signals_held_reach_their_handlers_in_order_once_the_block_has_ended() -> None:
    """:func:`~optlab._report.drawing.signals_held`: SIGINT and SIGTERM sent in the block reach
    the handlers in place before it only after it, each one, in the order they came; the
    handlers are put back."""
    from optlab._report.drawing import signals_held

    came: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        came.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with signals_held():
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
                signal.raise_signal(s)
            assert came == []
        assert came == [signal.SIGINT, signal.SIGTERM, signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is handler
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


#: a Ctrl-C as the command line loads (when typer is imported), the ``optlab`` console script's
#: way or ``python -m optlab``'s (SIGINT made deliverable first, as in CTRL_C_IN_FT2FONT)
CTRL_C_AS_THE_COMMAND_LOADS = """\
import importlib.abc, runpy, signal, sys
signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGINT}})
signal.signal(signal.SIGINT, signal.default_int_handler)
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "typer":
            signal.raise_signal(signal.SIGINT)
sys.meta_path.insert(0, Finder())
sys.argv = ["optlab", "--version"]
{start}
print("not interrupted")
"""


@pytest.mark.parametrize(
    "start",
    [
        "from optlab._console import main\nsys.exit(main())",
        "runpy.run_module('optlab', run_name='__main__')",
    ],
    ids=["console script", "python -m optlab"],
)
def test_a_ctrl_c_as_the_command_line_loads_ends_it_by_the_signal_saying_nothing(
    start: str,
) -> None:
    """Loading the command line takes a fraction of a second before ``optlab`` has a handler:
    a Ctrl-C then printed a ``KeyboardInterrupt`` traceback from inside an import. Nothing
    has started, so the process ends by SIGINT, as after any Ctrl-C of ``optlab``, silently."""
    script = CTRL_C_AS_THE_COMMAND_LOADS.format(start=start)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (-signal.SIGINT, "", "")


def test_the_optlab_command_is_the_console_script_that_loads_it_so() -> None:
    from importlib.metadata import entry_points

    [script] = entry_points(group="console_scripts", name="optlab")
    assert script.value == "optlab._console:main"


#: a Ctrl-C in the middle of matplotlib's ft2font initialisation, the 100th Python call it
#: makes (it builds its enums in Python), sent by a trace function: where a second Ctrl-C
#: came while `optlab run` drew its first figure. SIGINT is first made deliverable: a child
#: inherits its parent's blocked and ignored signals, and a pytest worker's main thread may
#: have SIGINT blocked (then the signal never came, and nothing was raised at all)
CTRL_C_IN_FT2FONT = """\
import importlib.abc, signal, sys
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
signal.signal(signal.SIGINT, signal.default_int_handler)
from optlab._report.drawing import load_matplotlib
state = {"on": False, "calls": 0, "loaded before": "matplotlib.ft2font" in sys.modules}
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        state["on"] = state["on"] or name == "matplotlib.ft2font"
def trace(frame, event, arg):
    if state["on"] and event == "call":
        state["calls"] += 1
        if state["calls"] == 100:
            state["on"] = False
            signal.raise_signal(signal.SIGINT)
sys.meta_path.insert(0, Finder())
sys.settrace(trace)
try:
    load_matplotlib()
except KeyboardInterrupt:
    sys.settrace(None)
    from matplotlib.ft2font import FT2Font
    print("KeyboardInterrupt once matplotlib was in", state["calls"])
else:
    print("no KeyboardInterrupt:", state, file=sys.stderr)
"""


def test_a_ctrl_c_while_matplotlib_loads_comes_once_it_is_in() -> None:
    """A ``KeyboardInterrupt`` raised inside ft2font's initialisation came out as
    ``ImportError: initialization failed`` and the interpreter then aborted as it ended
    (SIGABRT, ``Fatal Python error: PyThreadState_Get``): the second Ctrl-C of
    ``test_a_second_ctrl_c_ends_at_once_...`` ended `optlab run` so, with a traceback, on CI.
    Held until matplotlib is in, it is raised there, and the process ends normally."""
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_IN_FT2FONT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "KeyboardInterrupt once matplotlib was in 100\n", done.stderr
