"""The runs in local worker processes (``optlab run --jobs N``).

Workers are forked from a fork server (never from the invoking process, which may hold
threads) that has imported what a worker needs once (:mod:`optlab._execution.fork_server`);
it starts as soon as the executor is made, so that its imports overlap the invoking process
loading the data. Each worker takes the invoking process's environment as it is when the
executor starts, and uses one BLAS thread. Seeds are derived per run, never per worker, so the
numbers do not depend on ``--jobs``.

The runs are claimed all at once, before any is queued (a worker cannot reach the store); a
worker records a run's events and the invoking process replays them
(:mod:`optlab._execution.recording`): each as it happens, sent through a queue, so that the
runs in flight reach the store and the progress bar while they train
(:class:`~optlab._execution.recording.Live`), and the rest when the run ends. Leaving the
``with`` block cancels what has not started; on an error the workers are terminated instead
of being waited for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from optlab._contract.records import RunInfo, RunResult
from optlab._errors import RunError
from optlab._execution import recording
from optlab._execution.executor import Ended, Executor, Job
from optlab._execution.recording import (
    Live,
    ended,
    execute_recorded,
    outcome,
    render_comparison,
    replay,
    without_artifacts,
)
from optlab._spec.experiment import RunSpec
from optlab._training.monitor import stop_flag

__all__ = ["ORPHAN_CHECK_S", "LocalProcesses"]

T = TypeVar("T")

#: How often a worker checks that the invoking process is still there (seconds).
ORPHAN_CHECK_S = 0.5

#: How often the invoking process looks at the stop flag while runs are in flight (seconds).
POLL_S = 0.2


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


def _worker_init(environ: dict[str, str], invoker: int, events: Any) -> None:
    """The invoking process's environment; one BLAS thread per worker; the runs' events sent
    to ``events`` (a queue) as they happen; SIGINT/SIGTERM end the current run as KILLED; the
    worker ends itself within :data:`ORPHAN_CHECK_S` of the invoking process's death."""
    from threadpoolctl import threadpool_limits

    os.environ.clear()
    os.environ.update(environ)
    threadpool_limits(1)
    events.cancel_join_thread()  # at exit, never wait for a reader: the results hold it all
    recording.live_sink = events.put
    threading.Thread(
        target=_exit_when_orphaned, args=(invoker,), name="optlab-orphan-check", daemon=True
    ).start()

    def handler(signum: int, frame: object) -> None:
        stop_flag.request(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class LocalProcesses(Executor):
    """``jobs`` local worker processes, forked from the preloaded fork server."""

    def __init__(self, jobs: int) -> None:
        from optlab._execution import fork_server

        context = fork_server.start()  # the server imports now, unless it already has
        self.jobs = jobs
        self.live = Live(context.Queue())
        self.pool = ProcessPoolExecutor(
            jobs,
            mp_context=context,
            initializer=_worker_init,
            initargs=(dict(os.environ), os.getpid(), self.live.queue),
        )
        self._futures: dict[Future[Any], RunSpec] = {}

    # -------------------------------------------------------------------------------- runs
    def run(self, runs: Sequence[RunSpec], job: Job) -> Iterator[Ended]:
        mine, others = job.claim(runs)
        yield from others
        futures = self._submit(mine, job)
        try:
            yield from self._ended(futures, job)
        finally:  # also when the caller stops iterating: the queued runs are not started
            self._cancel()

    def _ended(self, futures: dict[Future[Any], RunSpec], job: Job) -> Iterator[Ended]:
        stopping = False
        on_all_done = job.on_all_done
        for fut in self._completed(futures, job):
            self.live.replay(job)  # what the run sent before its end, in order
            if on_all_done is not None and all(f.done() for f in futures):
                # every run has ended: the caller can start what needs every result
                every = [ended(f, futures[f], job.describe) for f in futures]
                on_all_done([outcome(events) for events in every if events])
                on_all_done = None
            if not (events := ended(fut, futures[fut], job.describe)):
                continue  # cancelled, or stopped before it started
            info, result = outcome(events)
            events = self.live.rest(info.name, events, own=fut.exception() is None)
            if job.stops_after(result) and not stopping:
                # before the observers (writing to the store takes a while, and the workers
                # would start queued runs meanwhile); the runs in flight end as they would
                stopping = True
                self._cancel()
            replay(events, job.observer, job.log)
            if job.claims is not None:
                job.claims.release(info.name)
            yield info, result

    def _submit(self, runs: Sequence[RunSpec], job: Job) -> dict[Future[Any], RunSpec]:
        try:
            for run in runs:
                fut = self.pool.submit(
                    execute_recorded, run, job.experiment, job.base_tags, job.render
                )
                self._futures[fut] = run
        except Exception as exc:  # the pool could not start its workers
            self._cancel()
            raise RunError(f"could not start the worker processes: {exc}") from exc
        return dict(self._futures)

    def _completed(self, futures: dict[Future[Any], RunSpec], job: Job) -> Iterator[Future[Any]]:
        """``futures`` as they complete, polling ``job.flag`` and ``job.should_stop()`` (the
        tracking store is lost, say the heartbeat found it full): then the queued runs are
        cancelled and the running workers are asked (SIGTERM) to end their run as KILLED."""
        pending = set(futures)
        signalled = False
        while pending:
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            self.live.replay(job)
            yield from done
            if (job.flag.reason is not None or job.should_stop()) and not signalled:
                signalled = True
                self._cancel()
                # the signal this process got (after a Ctrl-C the runs say SIGINT), else SIGTERM
                got = signal.Signals.__members__.get(job.flag.reason or "", signal.SIGTERM)
                self._terminate(got)
                pending = {f for f in pending if not f.cancelled()}

    def render_comparison(
        self, results: Sequence[tuple[RunInfo, RunResult]]
    ) -> Future[bytes] | None:
        """Drawn in a worker, where matplotlib is imported already (``None``, drawn by the
        invoking process, when the workers are gone)."""
        try:
            return self.pool.submit(render_comparison, without_artifacts(results))
        except BrokenExecutor:
            return None

    # -------------------------------------------------------------------------------- map
    def map(self, fn: Callable[[RunSpec], T], runs: Sequence[RunSpec]) -> Iterator[T]:
        return self.pool.map(fn, runs)

    # -------------------------------------------------------------------------------- end
    def _cancel(self) -> None:
        """Cancel the runs that have not started."""
        for fut in self._futures:
            fut.cancel()

    def _terminate(self, signum: signal.Signals = signal.SIGTERM) -> None:
        """Send ``signum`` to the live workers (their handler ends the current run as KILLED,
        interrupted by that signal)."""
        for process in list(getattr(self.pool, "_processes", {}).values()):
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def close(self, *, abort: bool = False) -> None:
        self._cancel()
        if abort:
            self._terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.live.queue.close()
