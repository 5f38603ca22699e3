"""The executor interface: this process, local worker processes and Dask keep one contract.

Each executor runs a plan's runs and yields their results, reports every run's events to the
observer, leaves claimed runs to another invocation, stops after a failure with ``fail_fast``,
and runs ``optlab check`` the same way (:meth:`Executor.map`).
"""

from __future__ import annotations

import operator
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from optlab._execution.by_name import make_executor
from optlab._execution.check import check_runs
from optlab._execution.executor import Elsewhere, Ended, Executor, Job
from optlab._execution.in_process import InProcess
from optlab._execution.local import LocalProcesses
from optlab._execution.recording import RecordingObserver
from optlab._spec.experiment import Experiment, RunSpec
from optlab._spec.load import load_experiment
from optlab._training.monitor import StopFlag, stop_flag
from optlab._training.preflight import preflight

SPEC = """\
name: executors_test
data: {name: digits, limit: 120}
loss: {name: softmax}
optimizer: {name: sgd, lr: 0.05, batch_size: 40, epochs: 1}
variants:
  a: {}
  b: {optimizer: {name: sgd, lr: 1.0e+12}}
  c: {loss: {name: svm}}
"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Experiment:
    path = tmp_path_factory.mktemp("executors") / "spec.yaml"
    path.write_text(SPEC)
    return load_experiment(path)


def _loopback_cluster(threads: int = 1) -> Any:
    """A Dask cluster of one worker of ``threads`` threads in this process, on 127.0.0.1 over
    TCP (what travels is serialized as to a remote worker; the scheduler's HTTP server takes
    a free port)."""
    distributed = pytest.importorskip("distributed")
    return distributed.LocalCluster(
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        n_workers=1,
        threads_per_worker=threads,
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": False},
    )


@pytest.fixture(scope="module")
def loopback_cluster() -> Iterator[str]:
    """The address of a :func:`_loopback_cluster`'s scheduler."""
    with _loopback_cluster() as cluster:
        yield cluster.scheduler_address


@pytest.fixture(params=["in_process", "local", "dask"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """Each executor: this process, two local worker processes, the loopback cluster."""
    if request.param == "in_process":
        with InProcess() as executor:
            yield executor
    elif request.param == "local":
        with LocalProcesses(2) as executor:
            yield executor
    else:
        address = request.getfixturevalue("loopback_cluster")
        with make_executor("dask", scheduler=address) as executor:
            yield executor


class FakeClaims:
    """Claims that leave run ``b`` to another invocation and note what is released."""

    def __init__(self) -> None:
        self.released: list[str] = []

    def acquire(self, runs: Sequence[RunSpec]) -> tuple[list[RunSpec], list[Elsewhere]]:
        mine = [run for run in runs if run.name != "b"]
        return mine, [Elsewhere(run.name, "pid 1 on elsewhere") for run in runs if run not in mine]

    def release(self, name: str, *, later: bool = False) -> None:
        self.released.append(name)


def _job(experiment: Experiment, **kwargs: object) -> Job:
    return Job(
        experiment.name,
        RecordingObserver(),
        prepared=preflight(experiment.runs),
        **kwargs,  # type: ignore[arg-type]
    )


def _statuses(ended: Sequence[Ended]) -> dict[str, str]:
    """Run name -> status of the runs that ran (not those left elsewhere)."""
    return {e[0].name: e[1].status for e in ended if not isinstance(e, Elsewhere)}


def test_every_executor_runs_every_run_and_reports_its_events(
    experiment: Experiment, executor: Executor
) -> None:
    job = _job(experiment)
    ended = list(executor.run(experiment.runs, job))
    assert _statuses(ended) == {"a": "FINISHED", "b": "FAILED", "c": "FINISHED"}
    observer = job.observer
    assert isinstance(observer, RecordingObserver)
    finished = [kw["run"].name for name, kw in observer.events if name == "optlab_run_finished"]
    assert sorted(finished) == ["a", "b", "c"]


def test_every_executor_gives_the_numbers_of_this_process(
    experiment: Experiment, executor: Executor
) -> None:
    def accuracies(where: Executor) -> dict[str, float]:
        return {
            e[0].name: e[1].metrics["test_accuracy"]
            for e in where.run(experiment.runs, _job(experiment))
            if not isinstance(e, Elsewhere) and e[1].status == "FINISHED"
        }

    assert accuracies(executor) == accuracies(InProcess())


def test_every_executor_leaves_claimed_runs_to_the_other_invocation(
    experiment: Experiment, executor: Executor
) -> None:
    claims = FakeClaims()
    lines: list[str] = []
    ended = list(executor.run(experiment.runs, _job(experiment, claims=claims, log=lines.append)))
    elsewhere = [e for e in ended if isinstance(e, Elsewhere)]
    assert [e.name for e in elsewhere] == ["b"]
    assert _statuses(ended) == {
        "a": "FINISHED",
        "c": "FINISHED",
    }
    assert sorted(claims.released) == ["a", "c"]
    assert lines == ["b: not run here: another invocation is training it (pid 1 on elsewhere)"]


def test_fail_fast_starts_no_run_after_the_failure(experiment: Experiment) -> None:
    ended = list(InProcess().run(experiment.runs, _job(experiment, fail_fast=True)))
    assert _statuses(ended) == {"a": "FINISHED", "b": "FAILED"}


class SlowToRecordFailures(RecordingObserver):
    """Takes a second to record a failed run, as a tracking store might."""

    def optlab_run_finished(self, *, run: Any, result: Any, error: Any) -> None:
        if result.status == "FAILED":
            time.sleep(1.0)
        super().optlab_run_finished(run=run, result=result, error=error)


def test_fail_fast_with_workers_starts_no_queued_run_while_it_records_the_failure(
    tmp_path: Path,
) -> None:
    """With worker processes, a failure cancels the queued runs as soon as it is known, not
    once the observers have recorded it: only the runs the pool has handed over already may
    still run."""
    spec = SPEC.replace("  a: {}\n", "").replace("  c: {loss: {name: svm}}\n", "")
    spec += "".join(f"  r{k}: {{optimizer: {{lr: 0.0{k + 1}}}}}\n" for k in range(8))
    (tmp_path / "spec.yaml").write_text(spec)
    experiment = load_experiment(tmp_path / "spec.yaml")
    assert experiment.runs[0].name == "b"
    job = Job(
        experiment.name,
        SlowToRecordFailures(),
        prepared=preflight(experiment.runs),
        fail_fast=True,
    )
    with LocalProcesses(1) as executor:
        statuses = _statuses(list(executor.run(experiment.runs, job)))
    assert statuses["b"] == "FAILED"
    # b, the run the worker took next, and the two in the pool's call queue (its size is the
    # workers plus one)
    assert len(statuses) <= 4, statuses


def test_a_lost_store_stops_the_runs_after_a_failure(experiment: Experiment) -> None:
    """``should_stop`` (the tracking store is gone) counts only once a run has failed."""
    job = _job(experiment, should_stop=lambda: True)
    assert _statuses(list(InProcess().run(experiment.runs, job))) == {
        "a": "FINISHED",
        "b": "FAILED",
    }


def test_breaking_off_the_iteration_starts_no_further_run(experiment: Experiment) -> None:
    job = _job(experiment)
    for _ in InProcess().run(experiment.runs, job):
        break
    assert isinstance(job.observer, RecordingObserver)
    started = [name for name, _ in job.observer.events if name == "optlab_run_started"]
    assert len(started) == 1


def test_every_executor_maps_in_the_order_of_the_runs(
    experiment: Experiment, executor: Executor
) -> None:
    name: Callable[[RunSpec], str] = operator.attrgetter("name")
    assert list(executor.map(name, experiment.runs)) == ["a", "b", "c"]


def test_check_gives_the_same_reports_on_every_executor(
    experiment: Experiment, executor: Executor
) -> None:
    assert list(check_runs(experiment, executor)) == list(check_runs(experiment))


def test_check_with_jobs_prints_what_it_prints_without(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from optlab._cli import app

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    one = CliRunner().invoke(app, ["check", str(spec)])
    two = CliRunner().invoke(app, ["check", str(spec), "--jobs", "2"])
    assert one.exit_code == two.exit_code == 0, one.stdout + two.stdout
    assert one.stdout == two.stdout and "a:" in one.stdout and "c:" in one.stdout


@pytest.mark.parametrize(
    ("name", "jobs", "scheduler", "message"),
    [
        ("cloud", 1, None, "unknown executor 'cloud'; use local or dask"),
        ("local", 0, None, "jobs: must be at least 1, got 0"),
        ("dask", 1, None, "executor 'dask' needs a scheduler address"),
        # an option of the other executor was ignored: the runs stayed local, or jobs unused
        ("local", 1, "tcp://10.0.0.5:8786", "only executor 'dask' uses one"),
        ("dask", 4, "tcp://10.0.0.5:8786", "jobs: 4 local worker processes are for executor"),
    ],
)
def test_bad_executor_choices_are_one_input_error(
    name: str, jobs: int, scheduler: str | None, message: str
) -> None:
    from optlab._errors import InputError

    with pytest.raises(InputError, match=message):
        make_executor(name, jobs=jobs, scheduler=scheduler)


@pytest.mark.parametrize(("jobs", "kind"), [(1, InProcess), (2, LocalProcesses)])
def test_local_is_this_process_for_one_job_and_workers_for_more(
    jobs: int, kind: type[Executor]
) -> None:
    with make_executor("local", jobs=jobs) as executor:
        assert type(executor) is kind


def test_dask_without_dask_installed_is_one_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from optlab._errors import InputError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name)
    )
    with pytest.raises(InputError, match=r"pip install 'optlab\[dask\]'"):
        make_executor("dask", scheduler="tcp://127.0.0.1:8786")


def test_an_unreachable_scheduler_is_found_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``optlab run`` enters the executor before it reads the spec or opens the store."""
    distributed = pytest.importorskip("distributed")
    from optlab._errors import InputError

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("Timed out trying to connect")

    monkeypatch.setattr(distributed, "Client", refuse)
    executor = make_executor("dask", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"), executor:
        pass


def test_every_executor_says_a_runs_warnings(tmp_path: Path, executor: Executor) -> None:
    """A run's warnings (here the initial-loss check's, under ``warn``) reach the invoking
    process's output from a worker too, not only the run's console.log."""
    path = tmp_path / "warn.yaml"
    path.write_text(
        SPEC.split("variants:")[0]
        + "checks: {initial_loss: warn, initial_loss_tolerance: 1.0e-9}\n"
    )
    warned = load_experiment(path)
    lines: list[str] = []
    ended = list(executor.run(warned.runs, _job(warned, log=lines.append)))
    assert _statuses(ended) == {"softmax": "FINISHED"}
    assert [line.split(": initial loss")[0] for line in lines] == ["softmax: warning"]


@pytest.fixture(params=["local", "dask"])
def workers(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """One local worker process (``--jobs``), or the worker of :func:`loopback_cluster`."""
    if request.param == "local":
        with LocalProcesses(1) as executor:
            yield executor
    else:
        address = request.getfixturevalue("loopback_cluster")
        with make_executor("dask", scheduler=address) as executor:
            yield executor


def test_workers_report_each_epoch_while_the_run_trains(tmp_path: Path, workers: Executor) -> None:
    """Under ``--jobs N`` and Dask the observers (the store, the progress bar) get a run's
    epochs as they end, not all at once when it has ended: here the first epoch they get stops
    the run (a Dask worker in this process sees the stop too), which would otherwise train
    20,000 epochs (ten seconds or more) and end FINISHED. Each event reaches them once and in
    order, the end last."""
    path = tmp_path / "long.yaml"
    path.write_text(SPEC.split("variants:")[0].replace("epochs: 1", "epochs: 20000"))
    long = load_experiment(path)

    class StopAtFirstEpoch(RecordingObserver):
        def optlab_epoch_ended(self, *, run: Any, report: Any) -> None:
            super().optlab_epoch_ended(run=run, report=report)
            stop_flag.request("SIGINT")

    observer = StopAtFirstEpoch()
    try:
        ended = list(
            workers.run(long.runs, Job(long.name, observer, prepared=preflight(long.runs)))
        )
    finally:
        stop_flag.clear()
    [(_, result)] = ended  # type: ignore[misc]
    assert result.status == "KILLED"
    names = [name for name, _ in observer.events]
    assert names[0] == "optlab_run_started" and names[-1] == "optlab_run_finished"
    assert set(names[1:-1]) == {"optlab_epoch_ended"}
    epochs = [kw["report"].epoch for name, kw in observer.events if name == "optlab_epoch_ended"]
    assert epochs == sorted(set(epochs)) and epochs[-1] == result.evaluations[-1].epoch


def _long_run(tmp_path: Path) -> Experiment:
    """One run that would train for minutes (400,000 epochs), for tests that stop it."""
    path = tmp_path / "long.yaml"
    path.write_text(SPEC.split("variants:")[0].replace("epochs: 1", "epochs: 400000"))
    return load_experiment(path)


@contextmanager
def _process_flag_set_4_s_later() -> Iterator[None]:
    """The process's stop flag set 4 s into the block (a worker in this process then ends its
    run: a stop that was not heard ends the test, late), cleared after it."""
    unheard = threading.Timer(4.0, stop_flag.request, ("the process's flag",))
    unheard.start()
    try:
        yield
    finally:
        unheard.cancel()
        stop_flag.clear()


def test_a_stop_reaches_the_dask_runs_in_flight_at_once(
    tmp_path: Path, loopback_cluster: str
) -> None:
    """Dask workers do not get the invoking process's signals: after a Ctrl-C or SIGTERM,
    ``optlab run --executor dask`` waited for the next run to end (minutes, for long runs).
    The invocation's stop (``job.flag``, which its signal handler sets) now reaches the runs
    in flight through the scheduler: this run, which would train for minutes, is stopped at
    its first epoch and ends KILLED within seconds, saying the signal, with its epochs. The
    flag is the invocation's own, not the process's, which this worker (in this process)
    reads: when the stop is not heard, the process's flag ends the run 4 s later, too late."""
    long = _long_run(tmp_path)
    flag = StopFlag()
    asked: list[float] = []

    class StopAtFirstEpoch(RecordingObserver):
        def optlab_epoch_ended(self, *, run: Any, report: Any) -> None:
            super().optlab_epoch_ended(run=run, report=report)
            if not asked:
                asked.append(time.monotonic())
                flag.request("SIGTERM")  # as the signal handler does

    observer = StopAtFirstEpoch()
    job = Job(long.name, observer, prepared=preflight(long.runs), flag=flag)
    with _process_flag_set_4_s_later(), make_executor("dask", scheduler=loopback_cluster) as ex:
        ended = list(ex.run(long.runs, job))
        stopped = time.monotonic()
    [(_, result)] = ended  # type: ignore[misc]
    assert result.status == "KILLED"
    assert result.error is not None and result.error.startswith("interrupted by SIGTERM at")
    assert stopped - asked[0] < 3.0
    epochs = [kw["report"].epoch for name, kw in observer.events if name == "optlab_epoch_ended"]
    assert epochs and epochs == [report.epoch for report in result.evaluations]
    assert observer.events[-1][0] == "optlab_run_finished"


def test_a_store_lost_mid_run_stops_the_runs_in_flight(tmp_path: Path, workers: Executor) -> None:
    """Once the tracking store is lost (``job.should_stop()``, which the tracker's heartbeat
    sets) nothing the runs measure can be kept: local workers get SIGTERM, and the runs on a
    Dask cluster are asked to stop as after a Ctrl-C. Under Dask the loss counted only once a
    run had failed: this run, which would train for minutes, trained on. It ends KILLED within
    seconds, saying why (when the stop is not heard, the process's flag ends it 4 s later)."""
    long = _long_run(tmp_path)
    lost: list[float] = []

    class LoseTheStoreAtFirstEpoch(RecordingObserver):
        def optlab_epoch_ended(self, *, run: Any, report: Any) -> None:
            super().optlab_epoch_ended(run=run, report=report)
            if not lost:
                lost.append(time.monotonic())

    job = Job(
        long.name,
        LoseTheStoreAtFirstEpoch(),
        prepared=preflight(long.runs),
        should_stop=lambda: bool(lost),
    )
    with _process_flag_set_4_s_later():
        ended = list(workers.run(long.runs, job))
        stopped = time.monotonic()
    [(_, result)] = ended  # type: ignore[misc]
    assert result.status == "KILLED"
    why = "SIGTERM" if isinstance(workers, LocalProcesses) else "the loss of the tracking store"
    assert result.error is not None and result.error.startswith(f"interrupted by {why} at")
    assert stopped - lost[0] < 3.0


def test_a_dask_run_whose_events_stop_reaching_the_client_reaches_the_observers_whole(
    tmp_path: Path, loopback_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dask worker that loses its way to the scheduler mid-run (here: the run's start is
    sent, and replayed, then every send fails) still returns the run's whole record: the
    observers get each event once and in order, the rest when the run ends."""
    import distributed

    from optlab._execution.dask import TOPIC

    path = tmp_path / "short.yaml"
    path.write_text(SPEC.split("variants:")[0].replace("epochs: 1", "epochs: 3"))
    short = load_experiment(path)
    replayed_start = threading.Event()
    live: list[bool] = []  # whether the start was replayed before the first lost send
    real = distributed.Worker.log_event

    def lost_after_the_start(self: Any, topic: str, msg: Any) -> None:
        if topic != TOPIC or pickle.loads(msg[1])[1] == 0:  # the start (event 0) goes through
            return real(self, topic, msg)
        live.append(replayed_start.wait(5))
        raise OSError("connection to the scheduler lost")

    monkeypatch.setattr(distributed.Worker, "log_event", lost_after_the_start)

    class NoteTheStart(RecordingObserver):
        def optlab_run_started(self, *, run: Any) -> None:
            super().optlab_run_started(run=run)
            replayed_start.set()

    observer = NoteTheStart()
    with make_executor("dask", scheduler=loopback_cluster) as executor:
        [(_, result)] = executor.run(  # type: ignore[misc]
            short.runs, Job(short.name, observer, prepared=preflight(short.runs))
        )
    assert result.status == "FINISHED"
    assert live == [True]  # sent once, then never again
    names = [name for name, _ in observer.events]
    evaluations = ["optlab_epoch_ended"] * len(result.evaluations)
    assert names == ["optlab_run_started", *evaluations, "optlab_run_finished"]


def test_fail_fast_on_dask_lets_the_runs_seen_training_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failure with ``fail_fast``, a Dask run whose start the observers got (it is
    in the store, with its curves so far) ends as it would, its end recorded: cancelled, it
    would be left without one, and ended FINISHED with the invocation, half trained. Here run
    ``b`` fails once ``long`` has been seen to start, and ``long`` trains on only once the
    failure has been recorded."""
    from optlab._execution import recording

    path = tmp_path / "spec.yaml"
    variants = "variants:\n  long: {optimizer: {epochs: 3}}\n  b: {optimizer: {lr: 1.0e+12}}\n"
    path.write_text(SPEC.split("variants:")[0] + variants)
    two = load_experiment(path)
    long_started, b_failed = threading.Event(), threading.Event()

    class NoteThem(RecordingObserver):
        def optlab_run_started(self, *, run: Any) -> None:
            super().optlab_run_started(run=run)
            if run.name == "long":
                long_started.set()

        def optlab_run_finished(self, *, run: Any, result: Any, error: Any) -> None:
            super().optlab_run_finished(run=run, result=result, error=error)
            if run.name == "b":
                b_failed.set()

    class HeldAtItsEpochs:
        """``inner``, whose epochs wait until ``b``'s failure has been recorded."""

        def __init__(self, inner: RecordingObserver) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def optlab_epoch_ended(self, *, run: Any, report: Any) -> None:
            b_failed.wait(10)
            self.inner.optlab_epoch_ended(run=run, report=report)

    real = recording.execute

    def in_that_order(run: RunSpec, *, observer: Any, **kwargs: Any) -> Any:
        if run.name == "b":
            long_started.wait(10)
        else:
            observer = HeldAtItsEpochs(observer)
        return real(run, observer=observer, **kwargs)

    monkeypatch.setattr(recording, "execute", in_that_order)
    observer = NoteThem()
    job = Job(two.name, observer, prepared=preflight(two.runs), fail_fast=True)
    with (
        _loopback_cluster(threads=2) as cluster,  # its own: overlapping runs leave BLAS at 1
        make_executor("dask", scheduler=cluster.scheduler_address) as executor,
    ):
        statuses = _statuses(list(executor.run(two.runs, job)))
    assert statuses == {"long": "FINISHED", "b": "FAILED"}
    long_events = [name for name, kw in observer.events if kw["run"].name == "long"]
    assert long_events[0] == "optlab_run_started" and long_events[-1] == "optlab_run_finished"
