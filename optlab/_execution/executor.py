"""The executor interface: where a plan's runs execute.

An :class:`Executor` runs a list of runs for one invocation (:class:`Job`) and yields each
run's ``(info, result)`` as the run ends, after the run's observer events have reached
``job.observer`` (the tracker, the progress bar, third-party observers): in this process as
they happen (:class:`~optlab._execution.in_process.InProcess`), or replayed from what a
worker recorded (:class:`~optlab._execution.local.LocalProcesses`,
:class:`~optlab._execution.dask.DaskCluster`). Every executor keeps the same promises:

- a failed run does not stop the others, unless ``job.fail_fast``, or ``job.should_stop()``
  says the tracking store is gone (no later run could be recorded);
- an interrupt (``job.flag``, set by SIGINT/SIGTERM) ends the runs in progress as KILLED and
  starts no other; a run that never started is not recorded at all (``--resume`` trains it);
- a run that another live invocation on the same store has claimed is not run here
  (``job.claims``): an :class:`Elsewhere` is yielded for it instead.

:meth:`Executor.map` runs any picklable function over runs the same way (``optlab check``).
:func:`optlab._execution.by_name.make_executor` makes one by name; an executor is a context
manager that releases what it started (worker processes, a scheduler connection).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, TypeVar

from optlab._contract.records import RunInfo, RunResult
from optlab._contract.registry import Registry
from optlab._spec.experiment import RunSpec
from optlab._training.data import PreparedData
from optlab._training.monitor import StopFlag, stop_flag
from optlab._training.runner import Observer

__all__ = [
    "Claims",
    "Elsewhere",
    "Ended",
    "Executor",
    "Job",
    "Outcome",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Elsewhere:
    """A run left to another live invocation on the same store (see
    :mod:`optlab._tracking.claims`): ``by`` says which one (process, host, MLflow run);
    ``finished``: it FINISHED the run meanwhile (else it is training it)."""

    name: str
    by: str
    finished: bool = False

    def line(self) -> str:
        """One line for the user."""
        doing = "finished it meanwhile" if self.finished else "is training it"
        return f"{self.name}: not run here: another invocation {doing} ({self.by})"


#: what an executor yields for each run: its (info, result) once it ended, or where it went
Ended = tuple[RunInfo, RunResult] | Elsewhere


@dataclass
class Outcome:
    """What an invocation produced: one (info, result) per run that ran or that ``--resume``
    reused (FINISHED already, as the store has it; their names are in ``skipped``), in the
    plan's order, and what was left to other invocations."""

    results: list[tuple[RunInfo, RunResult]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    elsewhere: list[Elsewhere] = field(default_factory=list)

    @property
    def failed(self) -> list[tuple[RunInfo, RunResult]]:
        return [(i, r) for i, r in self.results if r.status != "FINISHED"]


class Claims(Protocol):
    """The invocation's run claims on the tracking store (:mod:`optlab._tracking.claims`)."""

    def acquire(self, runs: Sequence[RunSpec]) -> tuple[list[RunSpec], list[Elsewhere]]:
        """Claim ``runs`` (their data in ``Job.prepared``): those this invocation trains, and
        those another live invocation has."""
        ...

    def release(self, name: str, *, later: bool = False) -> None:
        """Release run ``name``'s claim once its end is recorded (``later``: with the next
        claim, one write for both)."""
        ...


@dataclass
class Job:
    """What the runs of one invocation share, for an :class:`Executor`.

    ``prepared`` holds the loaded data by :func:`~optlab._training.preflight.data_key`; an
    executor that runs in this process adds what is missing. ``render``: workers draw each
    run's figures (see :mod:`optlab._tracking.artifacts`). ``on_all_done(results)`` is called
    once every run has ended, before the last ones are replayed, where an executor can tell
    (so that the comparison figure is drawn while the results are written)."""

    experiment: str
    observer: Observer
    registry: Registry | None = None
    base_tags: dict[str, str] = field(default_factory=dict)
    prepared: dict[str, PreparedData] = field(default_factory=dict)
    claims: Claims | None = None
    fail_fast: bool = False
    should_stop: Callable[[], bool] = lambda: False
    log: Callable[[str], None] | None = None
    render: bool = False
    flag: StopFlag = stop_flag
    on_all_done: Callable[[list[tuple[RunInfo, RunResult]]], None] | None = None

    def stops_after(self, result: RunResult) -> bool:
        """Whether no run should start after ``result``: an interrupt, or a failure with
        ``fail_fast`` or with the tracking store gone."""
        if result.status == "KILLED" or self.flag.reason is not None:
            return True
        return result.status == "FAILED" and (self.fail_fast or self.should_stop())

    def describe(self, run: RunSpec) -> RunInfo:
        """``run``'s :class:`RunInfo` as the runner gives it (for a run whose worker crashed)."""
        from optlab._training.describe import describe_run
        from optlab._training.preflight import data_key

        data = self.prepared[data_key(run)]
        return describe_run(run, data, self.experiment, self.registry, self.base_tags)

    def claim(self, runs: Sequence[RunSpec]) -> tuple[list[RunSpec], list[Elsewhere]]:
        """``runs`` split into those this invocation runs and those left to another; the
        latter are logged."""
        if self.claims is None or not runs:
            return list(runs), []
        mine, others = self.claims.acquire(runs)
        for other in others:
            if self.log is not None:
                self.log(other.line())
        return mine, others


class Executor(ABC):
    """Where runs execute (see the module docstring for the promises every executor keeps)."""

    #: whether runs execute in this process (they use its loaded data and observers directly)
    in_process: ClassVar[bool] = False

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(abort=kind is not None)

    def close(self, *, abort: bool = False) -> None:  # noqa: B027 - most start nothing
        """Release what the executor started; ``abort``: without waiting for work in flight."""

    @abstractmethod
    def run(self, runs: Sequence[RunSpec], job: Job) -> Iterator[Ended]:
        """Run ``runs``; yield each one's ``(info, result)`` as it ends (after its events
        reached ``job.observer``), or an :class:`Elsewhere` for a run another invocation has.

        Closing the iterator early (``break``) starts no further run."""

    @abstractmethod
    def map(self, fn: Callable[[RunSpec], T], runs: Sequence[RunSpec]) -> Iterator[T]:
        """``fn(run)`` for each run, in the order of ``runs`` (``fn`` must pickle where the
        executor runs it in another process)."""

    def render_comparison(
        self, results: Sequence[tuple[RunInfo, RunResult]]
    ) -> Future[bytes] | None:
        """``comparison.png`` of ``results`` drawn where the runs ran, while this process goes
        on; ``None`` where that saves nothing (the caller draws it)."""
        return None
