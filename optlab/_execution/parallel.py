"""Running runs in worker processes (``--jobs N``) or on a Dask cluster (``--executor dask``).

Workers train; the invoking process writes. A worker executes a run with a
:class:`RecordingObserver` and returns the observer events it recorded; the invoking process
replays them to its own hooks (tracking, progress, third-party observers) as each run
completes. So there is one writer to the tracking store whatever the parallelism, and a
worker never needs to reach it.

Seeds are derived per run (``SeedSequence(run.seed)``), never per worker, and every worker
uses one BLAS thread, so the numbers do not depend on ``--jobs``.

Local workers are forked from a fork server (never from the invoking process, which may hold
threads) that has imported what a worker needs once (:mod:`optlab._execution.fork_server`). Each
worker takes the invoking process's current environment, so a variable set after the fork server
started is still seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optlab._contract.records import EpochReport, RunInfo, RunResult
from optlab._errors import InputError, RunError
from optlab._spec.experiment import RunSpec
from optlab._training.monitor import stop_flag
from optlab._training.runner import Observer, execute

__all__ = [
    "LocalWorkers",
    "RecordingObserver",
    "execute_recorded",
    "run_parallel",
]


@dataclass
class RecordingObserver:
    """An observer that keeps the hook calls it receives, to be replayed elsewhere."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def optlab_run_started(self, *, run: RunInfo) -> None:
        self.events.append(("optlab_run_started", {"run": run}))

    def optlab_epoch_ended(self, *, run: RunInfo, report: EpochReport) -> None:
        self.events.append(("optlab_epoch_ended", {"run": run, "report": report}))

    def optlab_run_finished(
        self, *, run: RunInfo, result: RunResult, error: BaseException | None
    ) -> None:
        # exceptions do not always pickle: the result carries the message
        self.events.append(("optlab_run_finished", {"run": run, "result": result}))


def replay(events: Sequence[tuple[str, dict[str, Any]]], observer: Observer) -> None:
    """Call ``observer``'s hooks with recorded events, in order."""
    for name, kwargs in events:
        if name == "optlab_run_finished":
            result: RunResult = kwargs["result"]
            error = RunError(result.error) if result.error else None
            observer.optlab_run_finished(run=kwargs["run"], result=result, error=error)
        else:
            getattr(observer, name)(**kwargs)


#: How often a worker checks that the invoking process is still there (seconds).
ORPHAN_CHECK_S = 0.5


def _exit_when_orphaned(invoker: int) -> None:
    """End this worker at once when the invoking process is gone, however it died (``kill
    -9`` runs no handler): its runs can no longer be reported, and a worker is forked from
    the fork server, so the invoker's death does not end it by itself."""
    while True:
        time.sleep(ORPHAN_CHECK_S)
        try:
            os.kill(invoker, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # pid reused by another user's process: ours is gone
            os._exit(1)


def _worker_init(environ: dict[str, str], invoker: int) -> None:
    """The invoking process's environment; one BLAS thread per worker; SIGINT/SIGTERM end
    the current run as KILLED; the worker ends itself within :data:`ORPHAN_CHECK_S` of the
    invoking process's death."""
    from threadpoolctl import threadpool_limits

    os.environ.clear()
    os.environ.update(environ)
    threadpool_limits(1)
    threading.Thread(
        target=_exit_when_orphaned, args=(invoker,), name="optlab-orphan-check", daemon=True
    ).start()

    def handler(signum: int, frame: object) -> None:
        stop_flag.request(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class LocalWorkers:
    """``jobs`` local worker processes, forked from the preloaded fork server.

    Started as soon as an invocation knows it runs in parallel, so that the fork server
    imports while the invoking process loads the data, and runs can be submitted before the
    tracking store is open (:meth:`submit`; collected by :func:`run_parallel`). Leaving the
    ``with`` block cancels what has not started; on an error the workers are terminated
    instead of being waited for.
    """

    def __init__(self, jobs: int) -> None:
        from optlab._execution import fork_server

        context = fork_server.start()  # the server imports now, unless it already has
        self.pool = ProcessPoolExecutor(
            jobs,
            mp_context=context,
            initializer=_worker_init,
            initargs=(dict(os.environ), os.getpid()),
        )
        self._submitted: dict[Future[Any], RunSpec] = {}
        self._submitter: threading.Thread | None = None
        self._submit_error: Exception | None = None

    def submit(
        self, runs: Sequence[RunSpec], experiment: str, base_tags: dict[str, str], render: bool
    ) -> None:
        """Queue ``runs``; each worker takes the next one when it is free.

        Returns at once: the first submission waits for the fork server to finish importing
        (it forks the workers), which a helper thread does while this process goes on."""

        def submit_all() -> None:
            try:
                for run in runs:
                    fut = self.pool.submit(execute_recorded, run, experiment, base_tags, render)
                    self._submitted[fut] = run
            except Exception as exc:  # the pool could not start its workers
                self._submit_error = exc

        self._submitter = threading.Thread(target=submit_all, name="optlab-submit", daemon=True)
        self._submitter.start()

    @property
    def futures(self) -> dict[Future[Any], RunSpec]:
        """Every submitted run's future (waits until :meth:`submit` has queued them all)."""
        if self._submitter is not None:
            self._submitter.join()
        if self._submit_error is not None:
            raise RunError(f"could not start the worker processes: {self._submit_error}")
        return self._submitted

    def render_comparison(self, results: Sequence[tuple[RunInfo, RunResult]]) -> Future[bytes]:
        """Draw ``comparison.png`` of ``results`` in a worker (where matplotlib is imported
        already) while this process goes on writing; the result is the PNG's bytes."""
        light = [(info, dataclasses.replace(result, artifacts=None)) for info, result in results]
        return self.pool.submit(render_comparison, light)

    def cancel(self) -> None:
        """Cancel the runs that have not started."""
        if self._submitter is not None:
            self._submitter.join()
        for fut in self._submitted:
            fut.cancel()

    def __enter__(self) -> LocalWorkers:
        return self

    def terminate(self) -> None:
        """Send SIGTERM to the live workers (their handler ends the current run as KILLED)."""
        for process in list(getattr(self.pool, "_processes", {}).values()):
            if process.is_alive():
                process.terminate()

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.cancel()
        if kind is not None:
            self.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


def render_comparison(results: Sequence[tuple[RunInfo, RunResult]]) -> bytes:
    """The comparison figure of ``results`` as PNG bytes (see
    :func:`optlab._report.comparison.comparison_figure`)."""
    from optlab._report.comparison import comparison_figure

    with tempfile.TemporaryDirectory(prefix="optlab-comparison-") as tmp:
        return comparison_figure(results, Path(tmp) / "comparison.png").read_bytes()


def execute_recorded(
    run: RunSpec, experiment: str, base_tags: dict[str, str], render: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """Run ``run`` in this (worker) process; return the observer events it produced: none
    when a stop was requested before the run started (it waited in the queue; it is not
    recorded at all, and ``--resume`` trains it).

    With ``render``, the run's artifact files are drawn here and travel in
    ``result.artifacts``."""
    from optlab._contract.plugin_manager import get_registry

    if stop_flag.reason is not None:
        return []

    observer = RecordingObserver()
    info, result = execute(
        run, experiment=experiment, observer=observer, registry=get_registry(), base_tags=base_tags
    )
    if render:
        # drawing the figures is the costly part of tracking a small run: do it here, in
        # parallel, so that the invoking process only uploads the files
        from optlab._tracking.artifacts import render_to_bytes

        result.artifacts = render_to_bytes(info, result)
    return observer.events


def _dask_execute(
    run: RunSpec, experiment: str, base_tags: dict[str, str], render: bool
) -> list[tuple[str, dict[str, Any]]]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return execute_recorded(run, experiment, base_tags, render)


def _crashed(info: RunInfo, exc: BaseException) -> list[tuple[str, dict[str, Any]]]:
    """Events for a run whose worker died or raised outside the runner."""
    result = RunResult(name=info.name, status="FAILED", error=f"worker failed: {exc!r}")
    return [
        ("optlab_run_started", {"run": info}),
        ("optlab_run_finished", {"run": info, "result": result}),
    ]


def _completed_local(
    workers: LocalWorkers, should_stop: Callable[[], bool] | None = None
) -> Iterator[Future[Any]]:
    """Futures as they complete, polling the stop flag and ``should_stop()`` (the tracking
    store is lost, say the heartbeat found it full): then the queued runs are cancelled and
    the running workers are asked (SIGTERM) to end their run as KILLED."""
    pending = set(workers.futures)
    signalled = False
    while pending:
        done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        yield from done
        if (stop_flag.reason is not None or _asked(should_stop)) and not signalled:
            signalled = True
            workers.cancel()
            workers.terminate()
            pending = {f for f in pending if not f.cancelled()}


def _events(
    fut: Any, run: RunSpec, describe: Callable[[RunSpec], RunInfo]
) -> list[tuple[str, dict[str, Any]]]:
    """The events of ``run``'s finished future: none when it was cancelled or stopped before
    it started (it is not recorded at all), a FAILED run's when its worker crashed."""
    if fut.cancelled():
        return []
    try:
        events: list[tuple[str, dict[str, Any]]] = fut.result()
        return events
    except Exception as exc:
        return _crashed(describe(run), exc)


def run_parallel(
    runs: Sequence[RunSpec],
    *,
    experiment: str,
    observer: Observer,
    jobs: int,
    base_tags: dict[str, str],
    describe: Callable[[RunSpec], RunInfo],
    executor: str = "local",
    scheduler: str | None = None,
    fail_fast: bool = False,
    should_stop: Callable[[], bool] | None = None,
    render: bool = False,
    workers: LocalWorkers | None = None,
    on_all_done: Callable[[list[tuple[RunInfo, RunResult]]], None] | None = None,
) -> Iterator[tuple[RunInfo, RunResult]]:
    """Run ``runs`` on ``jobs`` local worker processes or a Dask cluster.

    Yields ``(info, result)`` as runs complete, after replaying their events to ``observer``.
    ``describe`` gives the :class:`RunInfo` of a run whose worker crashed, so that it is still
    recorded as FAILED. With ``fail_fast`` the runs not yet started are cancelled after the
    first failure; an interrupt cancels them too, and so does ``should_stop()`` returning true
    after a failure (the tracking store is gone). With ``render`` the workers also draw
    each run's artifact files (see :mod:`optlab._tracking.artifacts`). ``workers``: local
    workers to which ``runs`` were submitted already (see :class:`LocalWorkers`); without
    them the local workers are started here. ``on_all_done(results)`` is called once every
    local run has ended, before the runs not yet replayed are (so the caller can start work
    that needs every result, such as the comparison figure, while they are written).
    """
    if executor == "dask":
        from distributed import Client
        from distributed import as_completed as dask_completed

        try:
            client = Client(scheduler, timeout="10s")  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise InputError(
                f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc}); "
                "start one with `dask scheduler` or check the address"
            ) from exc
        with client:
            futures = {
                client.submit(_dask_execute, run, experiment, base_tags, render, pure=False): run
                for run in runs
            }
            for fut in dask_completed(list(futures)):  # type: ignore[no-untyped-call]
                if not (events := _events(fut, futures[fut], describe)):
                    continue
                try:
                    info, result = _finish(events, observer)
                except BaseException:
                    client.cancel(list(futures))  # type: ignore[no-untyped-call]
                    raise
                yield info, result
                stop = result.status == "FAILED" and (fail_fast or _asked(should_stop))
                if stop or stop_flag.reason is not None:
                    client.cancel(list(futures))  # type: ignore[no-untyped-call]
                    return
        return

    with contextlib.ExitStack() as stack:
        if workers is None:
            workers = stack.enter_context(LocalWorkers(jobs))
            workers.submit(runs, experiment, base_tags, render)
        yield from _collect_local(workers, observer, describe, fail_fast, should_stop, on_all_done)


def _collect_local(
    workers: LocalWorkers,
    observer: Observer,
    describe: Callable[[RunSpec], RunInfo],
    fail_fast: bool,
    should_stop: Callable[[], bool] | None,
    on_all_done: Callable[[list[tuple[RunInfo, RunResult]]], None] | None = None,
) -> Iterator[tuple[RunInfo, RunResult]]:
    futures = workers.futures
    stopping = False
    for fut in _completed_local(workers, should_stop):
        if on_all_done is not None and all(f.done() for f in futures):
            ended = [_events(f, futures[f], describe) for f in futures]
            on_all_done([_outcome(events) for events in ended if events])
            on_all_done = None
        if not (events := _events(fut, futures[fut], describe)):
            continue  # cancelled, or stopped before it started
        try:
            info, result = _finish(events, observer)
        except BaseException:
            workers.cancel()
            raise
        yield info, result
        failed = result.status == "FAILED" and (fail_fast or _asked(should_stop))
        if failed and not stopping:
            stopping = True
            workers.cancel()


def _asked(should_stop: Callable[[], bool] | None) -> bool:
    return should_stop is not None and should_stop()


def _outcome(events: list[tuple[str, dict[str, Any]]]) -> tuple[RunInfo, RunResult]:
    _, last = events[-1]
    return last["run"], last["result"]


def _finish(
    events: list[tuple[str, dict[str, Any]]], observer: Observer
) -> tuple[RunInfo, RunResult]:
    replay(events, observer)
    return _outcome(events)
