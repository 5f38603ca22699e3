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

A Dask worker does not get the invoking process's signals. A stop (Ctrl-C, SIGTERM: the
invocation's ``job.flag``; or the tracking store lost) reaches the runs in flight through the
scheduler: the invocation sets a ``distributed.Event`` named after its token
(:func:`_stop_name`, its reason in a ``distributed.Variable`` of the same name) and cancels the
runs not seen to start; each task has a stop flag of its own (:func:`_stop_requests`) that a
thread of the task sets when the Event is set. That thread asks the scheduler whether the Event
is set every :data:`STOP_POLL_S`, so the training loop only reads a Python attribute, as it
does the process's flag; a run ends KILLED with what it measured within about
:data:`STOP_POLL_S` of the request, and its end comes back as any run's. (A wait on the Event
in the scheduler would be heard sooner, but outlives its task by up to its timeout, and a
scheduler that closes meanwhile logs the cancelled wait as an error.) Runs that do not end
within :data:`STOP_WAIT_S` (a worker of an older optlab, a run busy drawing its figures) are
left: cancelled, and ended KILLED by the tracker with the evaluations they reached. The request
is removed from the scheduler once no task can still be looking for it (:meth:`_Stop.forget`);
after a second Ctrl-C, which ends the invocation at once, it stays there, a name and a word.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import threading
import time
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
from optlab._training.monitor import StopFlag, stop_flag

__all__ = ["POLL_S", "STOP_POLL_S", "STOP_WAIT_S", "TOPIC", "DaskCluster"]

T = TypeVar("T")

#: The structured-event topic the runs' events travel on, from the workers to the client.
TOPIC = "optlab-run-events"

#: How often the invoking process looks for ended runs besides when told (seconds).
POLL_S = 0.2

#: How often a task asks the scheduler whether its invocation asked its runs to stop
#: (seconds): a scheduler call this often per run in flight, none in the training loop.
STOP_POLL_S = 0.5

#: How long the runs in flight get to end KILLED after a stop request before the invocation
#: leaves them (seconds).
STOP_WAIT_S = 10.0


def _one_thread(fn: Callable[..., T], *args: Any) -> T:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(*args)


def _execute_live(
    token: str, run: RunSpec, experiment: str, base_tags: dict[str, str], render: bool
) -> Events:
    """:func:`~optlab._execution.recording.execute_recorded` in a Dask task, each event also
    sent to the client of invocation ``token`` as it happens (:func:`_sender`), stopped when
    that invocation asks its runs to stop (:func:`_stop_requests`)."""
    with _stop_requests(token) as flag:
        return execute_recorded(run, experiment, base_tags, render, send=_sender(token), flag=flag)


def _stop_name(token: str) -> str:
    """The name of invocation ``token``'s stop request on the scheduler (an Event, and a
    Variable holding its reason)."""
    return f"optlab-stop-{token}"


def _request_stop(client: Any, token: str, reason: str) -> None:
    """Ask the runs of invocation ``token`` to stop (``reason``: ``SIGINT``, ``SIGTERM``):
    the reason first, then the Event the tasks wait on. A scheduler gone is not an error
    here: its runs are gone too."""
    from distributed import Event, Variable

    name = _stop_name(token)
    with contextlib.suppress(Exception):
        Variable(name, client=client).set(reason)  # type: ignore[no-untyped-call]
        Event(name, client=client).set()  # type: ignore[no-untyped-call]


def _forget_stop(client: Any, token: str) -> None:
    """Remove invocation ``token``'s stop request from the scheduler (once no task of it can
    still be waiting for it)."""
    from distributed import Event, Variable

    name = _stop_name(token)
    with contextlib.suppress(Exception):
        Event(name, client=client).clear()  # type: ignore[no-untyped-call]
        Variable(name, client=client).delete()  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def _stop_requests(token: str) -> Iterator[StopFlag]:
    """The stop flag of this Dask task: set (with the reason) when invocation ``token`` asks
    its runs to stop (:func:`_request_stop`), by a thread of the task that looks at the
    request's Event every :data:`STOP_POLL_S` until the task ends; set before the run starts
    when the request came first. Outside a worker: the process's flag.
    Should the scheduler be unreachable from here, the run ends as it would."""
    from distributed import Event, Variable, get_client, get_worker

    try:
        get_worker()
        client = get_client()
    except Exception:  # not in a worker, or it cannot reach the scheduler
        client = None
    if client is None:
        yield stop_flag
        return
    name = _stop_name(token)
    event = Event(name, client=client)  # type: ignore[no-untyped-call]
    flag = StopFlag()
    ended = threading.Event()

    def stop() -> None:
        try:
            reason = Variable(name, client=client).get(timeout=STOP_POLL_S)  # type: ignore[no-untyped-call]
        except Exception:  # set without a reason (or gone meanwhile)
            reason = "a stop request"
        flag.request(str(reason))

    def watch() -> None:
        with contextlib.suppress(Exception):  # the scheduler gone: the run ends as it would
            while not ended.wait(STOP_POLL_S):  # ends as soon as the task does
                if event.is_set():  # type: ignore[no-untyped-call]
                    stop()
                    return

    with contextlib.suppress(Exception):
        if event.is_set():  # type: ignore[no-untyped-call]
            stop()
    if flag.reason is None:
        threading.Thread(target=watch, name="optlab-stop-request", daemon=True).start()
    try:
        yield flag
    finally:
        ended.set()


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


class _Stop:
    """Invocation ``token``'s stop request to its runs on the cluster, made once
    (:func:`_request_stop`); ``asked``: when (``time.monotonic()``), or ``None``;
    ``cancelled``: runs were cancelled that may have been executing (Dask cannot stop a task
    that runs: only the request does)."""

    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.token = token
        self.asked: float | None = None
        self.cancelled = False

    def request(self, reason: str) -> None:
        if self.asked is None:
            self.asked = time.monotonic()
            _request_stop(self.client, self.token, reason)

    def cancel(self, futures: Sequence[Any]) -> None:
        """Cancel ``futures`` (those not started do not start)."""
        if futures:
            self.client.cancel(list(futures))
            self.cancelled = True

    def forget(self) -> threading.Timer | None:
        """Remove the request from the scheduler once every task that could be waiting for
        it has seen it: at once when every task ended with its result, else
        :data:`STOP_POLL_S` twice after it was made (each task looks every
        :data:`STOP_POLL_S`; one cancelled as it trained would train on, unheard, without
        it), by the timer returned."""
        if self.asked is None:
            return None
        left = 2 * STOP_POLL_S - (time.monotonic() - self.asked)
        if left <= 0 or not self.cancelled:
            _forget_stop(self.client, self.token)
            return None
        timer = threading.Timer(left, _forget_stop, (self.client, self.token))
        timer.daemon = True
        timer.start()
        return timer


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
        #: the stop requests to remove from the scheduler before the client closes
        self._forgetting: list[threading.Timer] = []

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
        stop = _Stop(client, token)
        try:
            yield from self._ended(futures, live, wake, job, stop)
        finally:
            if not all(f.done() for f in futures):
                # closed early, a second Ctrl-C, runs left after STOP_WAIT_S: those in flight
                # are asked to stop all the same (a cancelled task trains on otherwise)
                stop.request(job.flag.reason or "the invocation ending")
                stop.cancelled = True
            client.cancel(list(futures))
            if (timer := stop.forget()) is not None:
                self._forgetting.append(timer)
            if client.status == "running":
                client.unsubscribe_topic(TOPIC)

    @staticmethod
    def _ended(
        futures: dict[Any, RunSpec],
        live: Live,
        wake: threading.Event,
        job: Job,
        stop: _Stop,
    ) -> Iterator[Ended]:
        """The runs of ``futures`` as they end, their events replayed as they come (``wake``
        is set when one comes or a run ends). After an interrupt (``job.flag``, a run KILLED,
        or the tracking store lost: ``job.should_stop()``, as local workers get SIGTERM then)
        the runs not seen to start are cancelled and those in flight are asked to stop
        (``stop``): they end KILLED with what they measured, and are waited for at most
        :data:`STOP_WAIT_S` (those left then are cancelled, and those seen to start are ended
        KILLED by the tracker with the invocation). After a failure that stops the others
        (``--fail-fast``, the store lost) the runs not seen to start are cancelled, and those
        seen to start end as they would, so that every run in the store gets its end."""
        pending = dict(futures)
        stopping = killed = False

        def cancel_unseen() -> None:
            unseen = [f for f, r in pending.items() if not f.done() and r.name not in live.replayed]
            stop.cancel(unseen)
            for f in unseen:
                live.forget(pending.pop(f).name)

        while pending:
            lost = job.should_stop()  # the tracking store: nothing the runs measure is kept
            if stop.asked is None and (job.flag.reason is not None or killed or lost):
                why = "the loss of the tracking store" if lost else "the invocation stopping"
                stop.request(job.flag.reason or why)
                stopping = True
                cancel_unseen()  # before they start; a task that starts meanwhile sees the stop
            if stop.asked is not None and time.monotonic() - stop.asked > STOP_WAIT_S:
                return  # the runs left are cancelled (run's finally)
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
                killed |= result.status == "KILLED"
                if job.stops_after(result) and not stopping:
                    # before the observers: the cluster would start queued runs meanwhile
                    stopping = True
                    cancel_unseen()
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
        """Close the connection, once the stop requests made less than a second ago are
        removed from the scheduler (``abort``: at once, leaving them there, a name each)."""
        for timer in self._forgetting:
            if abort:
                timer.cancel()
            else:
                timer.join()
        self._forgetting.clear()
        if self._client is not None:
            self._client.close()
            self._client = None
