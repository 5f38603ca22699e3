"""A run executed in a worker, its observer events recorded there and replayed here.

Workers train; the invoking process writes. A worker executes a run with a
:class:`RecordingObserver` and returns the events it recorded; the invoking process replays
them to its own observers (tracking, progress, third-party observers) as each run completes.
So there is one writer to the tracking store whatever the parallelism, and a worker never
needs to reach it. A worker also sends each event as it happens (a local worker through a
queue, :data:`live_sink`; a Dask worker through the scheduler, :mod:`optlab._execution.dask`),
and the invoking process replays those at once (:class:`Live`): a run's curves reach the store
while it trains; the events it returns at its end are the whole record, whatever was sent or
lost.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optlab._contract.records import EpochReport, RunInfo, RunResult
from optlab._errors import RunError
from optlab._spec.experiment import RunSpec
from optlab._training.checks import WARNING
from optlab._training.monitor import StopFlag, stop_flag
from optlab._training.runner import Observer, execute

if TYPE_CHECKING:
    from optlab._execution.executor import Job

__all__ = [
    "Event",
    "Events",
    "Live",
    "RecordingObserver",
    "Sent",
    "ended",
    "execute_recorded",
    "live_sink",
    "outcome",
    "render_comparison",
    "replay",
    "without_artifacts",
]

#: one observer event: (hook name, keyword arguments)
Event = tuple[str, dict[str, Any]]
#: a run's observer events, in order
Events = list[Event]
#: an event sent as it happens: (the run's name, the event's index among the run's events,
#: the event)
Sent = tuple[str, int, Event]

#: In a local worker, where the events of a run are also sent as they happen (set by the
#: worker's initializer, :mod:`optlab._execution.local`); ``None`` elsewhere.
live_sink: Callable[[Sent], None] | None = None


@dataclass
class RecordingObserver:
    """An observer that keeps the hook calls it receives, to be replayed elsewhere, and
    sends each one but the run's end to ``send`` as it comes (the end travels with the
    run's result); a ``send`` that fails is not called again."""

    events: Events = field(default_factory=list)
    send: Callable[[Sent], None] | None = None

    def _keep(self, name: str, kwargs: dict[str, Any]) -> None:
        self.events.append((name, kwargs))
        if self.send is not None:
            try:
                self.send((kwargs["run"].name, len(self.events) - 1, (name, kwargs)))
            except Exception:  # the events are kept all the same, and returned at the end
                self.send = None

    def optlab_run_started(self, *, run: RunInfo) -> None:
        self._keep("optlab_run_started", {"run": run})

    def optlab_epoch_ended(self, *, run: RunInfo, report: EpochReport) -> None:
        self._keep("optlab_epoch_ended", {"run": run, "report": report})

    def optlab_run_finished(
        self, *, run: RunInfo, result: RunResult, error: BaseException | None
    ) -> None:
        # exceptions do not always pickle: the result carries the message
        self.events.append(("optlab_run_finished", {"run": run, "result": result}))


def replay(events: Events, observer: Observer, log: Callable[[str], None] | None = None) -> None:
    """Call ``observer``'s hooks with recorded events, in order; the run's warnings (the
    lines its console starts with ``warning:``, which the worker could only keep) go to
    ``log`` before the run's end is reported, as a run in this process says them."""
    for name, kwargs in events:
        if name == "optlab_run_finished":
            result: RunResult = kwargs["result"]
            if log is not None:
                for line in result.console:
                    if line.startswith(WARNING):
                        log(f"{result.name}: {line}")
            error = RunError(result.error) if result.error else None
            observer.optlab_run_finished(run=kwargs["run"], result=result, error=error)
        else:
            getattr(observer, name)(**kwargs)


def execute_recorded(
    run: RunSpec,
    experiment: str,
    base_tags: dict[str, str],
    render: bool = False,
    send: Callable[[Sent], None] | None = None,
    flag: StopFlag | None = None,
) -> Events:
    """Run ``run`` in this (worker) process; return the observer events it produced: none
    when a stop was requested before the run started (it waited in the queue; it is not
    recorded at all, and ``--resume`` trains it).

    With ``render``, the run's artifact files are drawn here and travel in
    ``result.artifacts``. Each event is also sent as it happens to ``send`` (default
    :data:`live_sink`), see :class:`RecordingObserver`. ``flag`` is the stop flag the run
    polls (default: the process's, which a local worker's signal handler sets; a Dask task
    has its own, :mod:`optlab._execution.dask`)."""
    from optlab._contract.plugin_manager import get_registry

    flag = flag if flag is not None else stop_flag
    if flag.reason is not None:
        return []

    observer = RecordingObserver(send=send if send is not None else live_sink)
    info, result = execute(
        run,
        experiment=experiment,
        observer=observer,
        registry=get_registry(),
        base_tags=base_tags,
        flag=flag,
    )
    if render:
        # drawing the figures is the costly part of tracking a small run: do it here, in
        # parallel, so that the invoking process only uploads the files
        from optlab._tracking.artifacts import render_to_bytes

        result.artifacts = render_to_bytes(info, result)
    return observer.events


class Live:
    """The events the workers send as they happen (:data:`Sent`, read from ``events``, a
    queue whose ``get_nowait()`` raises once it is empty), replayed in this process at once,
    so that a run's epochs reach the store and the progress bar while it trains; at the run's
    end, :meth:`rest` gives what its returned events hold beyond.

    A run's events are replayed in order only: one that was lost (a worker killed while
    sending) leaves the rest of that run to its returned events.
    """

    def __init__(self, events: Any) -> None:
        self.queue = events
        #: run name -> how many of its events were replayed
        self.replayed: dict[str, int] = {}
        #: the runs whose end has been replayed: what they still send is stale
        self.ended: set[str] = set()

    def replay(self, job: Job) -> None:
        """Replay what has been sent, without waiting."""
        while True:
            try:
                name, index, event = self.queue.get_nowait()
            except Exception:  # queue.Empty, or part of an event (a worker killed mid-send)
                return
            if name in self.ended or index != self.replayed.get(name, 0):
                continue
            self.replayed[name] = index + 1
            replay([event], job.observer, job.log)

    def rest(self, name: str, events: Events, *, own: bool) -> Events:
        """The events of ``name``'s end not replayed yet: of the events the run returned
        (``own``), those past the ones replayed; of the events standing for a worker that
        failed, all but the start when the run was seen to start."""
        count = self.replayed.pop(name, 0)
        self.ended.add(name)
        if own:
            return events[count:]
        return [e for e in events if not (count and e[0] == "optlab_run_started")]

    def forget(self, name: str) -> None:
        """``name`` will not end here (cancelled): what it still sends is stale."""
        self.replayed.pop(name, None)
        self.ended.add(name)


def ended(
    fut: Future[Events] | Any, run: RunSpec, describe: Callable[[RunSpec], RunInfo]
) -> Events:
    """The events of ``run``'s finished future (a concurrent or a Dask future): none when it
    was cancelled or stopped before it started (it is not recorded at all); a FAILED run's,
    described by ``describe``, when its worker crashed or the task raised."""
    if fut.cancelled():
        return []
    try:
        events: Events = fut.result()
        return events
    except BrokenExecutor:  # the process itself ended: killed, out of memory, failed to start
        error = (
            "its process ended abruptly (killed, out of memory, or failed to start: its own "
            "error, if it had one, is printed above)"
        )
    except Exception as exc:
        error = repr(exc)
    info = describe(run)
    result = RunResult(name=info.name, status="FAILED", error=f"worker failed: {error}")
    return [
        ("optlab_run_started", {"run": info}),
        ("optlab_run_finished", {"run": info, "result": result}),
    ]


def outcome(events: Events) -> tuple[RunInfo, RunResult]:
    """The (info, result) a run's events end with."""
    _, last = events[-1]
    return last["run"], last["result"]


def without_artifacts(
    results: Sequence[tuple[RunInfo, RunResult]],
) -> list[tuple[RunInfo, RunResult]]:
    """``results`` without the drawn artifact files (lighter to send to a worker)."""
    return [(info, dataclasses.replace(result, artifacts=None)) for info, result in results]


def render_comparison(results: Sequence[tuple[RunInfo, RunResult]]) -> bytes:
    """The comparison figure of ``results`` as PNG bytes (see
    :func:`optlab._report.comparison.comparison_figure`)."""
    from optlab._report.comparison import comparison_figure

    with tempfile.TemporaryDirectory(prefix="optlab-comparison-") as tmp:
        return comparison_figure(results, Path(tmp) / "comparison.png").read_bytes()
