"""The runs on a Dask cluster (``optlab run --executor dask --scheduler ADDRESS``).

Each run is one Dask task, executed with one BLAS thread; its observer events travel back
and are replayed here (:mod:`optlab._execution.recording`), so the cluster never reaches the
tracking store. The runs are claimed all at once, before any is submitted.

A task sends each event as it happens, as a structured event of its worker
(``Worker.log_event`` on :data:`TOPIC`) that the scheduler forwards to this client
(``Client.subscribe_topic``), where :class:`~optlab._execution.recording.Live` replays it at
once, as for local workers: the runs in flight reach the store and the progress bar while they
train. The events a run returns at its end are the whole record: what was replayed is skipped,
what was lost on the way (a worker that cannot reach the scheduler) follows then.

Why structured events: ``log_event`` hands the event to the worker's batched stream to the
scheduler and returns (about 20 us an event, measured on a loopback cluster of worker
processes), where a ``distributed.Queue`` put is a round trip to the scheduler that the
training thread waits for (about 0.9 ms), from a client each worker must open, and keeps what
no one reads on the scheduler for as long as the scheduler lives (after a ``kill -9`` of the
invoking process, say); a ``Variable`` holds one value, and ``Pub``/``Sub`` are gone from
distributed. The scheduler keeps the last ``distributed.admin.low-level-log-length`` events of
a topic (1000 by default; an epoch of SGD on digits pickles to 3.4 KB, with its 22 steps):
every invocation shares the one topic so that this stays bounded, and tells its own events by
a token.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from optlab._errors import InputError, as_written
from optlab._execution.executor import Ended, Executor, Job
from optlab._execution.recording import (
    Events,
    Live,
    Sent,
    ended,
    execute_recorded,
    outcome,
    replay,
)
from optlab._spec.experiment import RunSpec

__all__ = ["POLL_S", "TOPIC", "DaskCluster"]

T = TypeVar("T")

#: The structured-event topic the runs' events travel on, from the workers to the client.
TOPIC = "optlab-run-events"

#: How often the invoking process looks for ended runs besides when told (seconds).
POLL_S = 0.2


def _one_thread(fn: Callable[..., T], *args: Any) -> T:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(*args)


def _execute_live(
    token: str, run: RunSpec, experiment: str, base_tags: dict[str, str], render: bool
) -> Events:
    """:func:`~optlab._execution.recording.execute_recorded` in a Dask task, each event also
    sent to the client of invocation ``token`` as it happens (:func:`_sender`)."""
    return execute_recorded(run, experiment, base_tags, render, send=_sender(token))


def _sender(token: str) -> Callable[[Sent], None] | None:
    """What sends an event from this task to the client, tagged with ``token``: a structured
    event of this task's worker, pickled (it must be msgpack data); ``None`` outside a worker
    (the events then travel with the result alone)."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        return None

    def send(sent: Sent) -> None:
        worker.log_event(TOPIC, [token, pickle.dumps(sent)])

    return send


def _receiver(
    token: str, events: queue.SimpleQueue[Sent], wake: threading.Event
) -> Callable[[tuple[float, Any]], None]:
    """The handler of :data:`TOPIC`'s events on the client (called on its event loop): those
    of invocation ``token`` go to ``events``, and ``wake`` is set; another invocation's, and
    anything malformed, are ignored."""

    def receive(event: tuple[float, Any]) -> None:
        # not ours, or broken: ignored (the run's result holds every event)
        with contextlib.suppress(Exception):
            sender, blob = event[1]
            if sender == token:
                events.put(pickle.loads(blob))
                wake.set()

    return receive


class DaskCluster(Executor):
    """The Dask scheduler at ``scheduler`` (e.g. ``tcp://127.0.0.1:8786``); ``scheduler_label``
    names it in messages as the user passed it (``--scheduler``; the Python API's
    ``scheduler``)."""

    def __init__(self, scheduler: str, scheduler_label: str = "--scheduler") -> None:
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            raise InputError(
                "executor 'dask' needs Dask's distributed scheduler: pip install 'optlab[dask]'"
            )
        self.scheduler = scheduler
        self.scheduler_label = scheduler_label
        self._client: Any = None

    def __enter__(self) -> DaskCluster:
        self._connected()  # an unreachable scheduler is bad input, found before anything runs
        return self

    def _connected(self) -> Any:
        if self._client is None:
            from distributed import Client

            try:
                self._client = Client(self.scheduler, timeout="10s")  # type: ignore[no-untyped-call]
            except OSError as exc:
                raise InputError(
                    f"{as_written(self.scheduler_label, self.scheduler)}: cannot reach the Dask "
                    f"scheduler ({exc}); "
                    "start one with `dask scheduler` or check the address"
                ) from exc
        return self._client

    def run(self, runs: Sequence[RunSpec], job: Job) -> Iterator[Ended]:
        client = self._connected()
        mine, others = job.claim(runs)
        yield from others
        token = uuid.uuid4().hex
        wake = threading.Event()
        live = Live(queue.SimpleQueue())
        # sent before the tasks, on the same stream: the scheduler knows it before they run
        client.subscribe_topic(TOPIC, _receiver(token, live.queue, wake))
        futures = {
            client.submit(
                _one_thread,
                _execute_live,
                token,
                run,
                job.experiment,
                job.base_tags,
                job.render,
                pure=False,
            ): run
            for run in mine
        }
        for fut in futures:
            fut.add_done_callback(lambda _: wake.set())
        try:
            yield from self._ended(client, futures, live, wake, job)
        finally:
            client.cancel(list(futures))
            if client.status == "running":
                client.unsubscribe_topic(TOPIC)

    @staticmethod
    def _ended(
        client: Any, futures: dict[Any, RunSpec], live: Live, wake: threading.Event, job: Job
    ) -> Iterator[Ended]:
        """The runs of ``futures`` as they end, their events replayed as they come (``wake``
        is set when one comes or a run ends). After an interrupt (or a run KILLED) no run is
        waited for: the runs in flight are cancelled (those seen to start are ended KILLED by
        the tracker with the invocation). After a failure that stops the others
        (``--fail-fast``, the store lost) the runs not seen to start are cancelled, and those
        seen to start end as they would, so that every run in the store gets its end."""
        pending = dict(futures)
        stopping = interrupted = False
        while pending and not interrupted:
            wake.wait(POLL_S)
            wake.clear()
            live.replay(job)  # what the runs sent before their end, in order
            for fut in [f for f in pending if f.done()]:
                run = pending.pop(fut)
                if not (events := ended(fut, run, job.describe)):
                    live.forget(run.name)  # cancelled
                    continue
                info, result = outcome(events)
                events = live.rest(info.name, events, own=fut.status == "finished")
                interrupted |= result.status == "KILLED" or job.flag.reason is not None
                if job.stops_after(result) and not stopping and not interrupted:
                    # before the observers: the cluster would start queued runs meanwhile
                    stopping = True
                    unseen = [
                        f
                        for f, r in pending.items()
                        if not f.done() and r.name not in live.replayed
                    ]
                    client.cancel(unseen)
                    for f in unseen:
                        live.forget(pending.pop(f).name)
                replay(events, job.observer, job.log)
                if job.claims is not None:
                    job.claims.release(info.name)
                yield info, result

    def map(self, fn: Callable[[RunSpec], T], runs: Sequence[RunSpec]) -> Iterator[T]:
        client = self._connected()
        futures = client.map(_one_thread, [fn] * len(runs), runs, pure=False)
        try:
            for fut in futures:
                yield fut.result()
        finally:
            client.cancel(futures)

    def close(self, *, abort: bool = False) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
