"""The runs one after another in this process (``optlab run`` without ``--jobs``).

The runs report to the invocation's observers as they train (the progress bar moves with
every epoch, the tracker writes as it goes), and each run is claimed just before it starts,
so that two invocations on one store share a plan run by run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from optlab._execution.executor import Ended, Executor, Job
from optlab._spec.experiment import RunSpec
from optlab._training.data import PreparedData
from optlab._training.preflight import data_key, preflight
from optlab._training.runner import execute

__all__ = ["InProcess"]

T = TypeVar("T")


def _data(run: RunSpec, prepared: dict[str, PreparedData]) -> PreparedData:
    """``run``'s data from ``prepared``, loaded there first if the caller has not."""
    key = data_key(run)
    if key not in prepared:
        prepared.update(preflight([run]))
    return prepared[key]


class InProcess(Executor):
    """Every run in this process, in the plan's order."""

    in_process = True

    def run(self, runs: Sequence[RunSpec], job: Job) -> Iterator[Ended]:
        for run in runs:
            if job.flag.reason is not None:  # asked to stop while the last run was recorded
                return
            data = _data(run, job.prepared)
            mine, others = job.claim([run])
            if not mine:
                yield from others
                continue
            info, result = execute(
                run,
                experiment=job.experiment,
                observer=job.observer,
                registry=job.registry,
                base_tags=job.base_tags,
                data=data,
                flag=job.flag,
                log=job.log,
            )
            if job.claims is not None:  # written with the next run's claim
                job.claims.release(run.name, later=True)
            yield info, result
            if job.stops_after(result):
                return

    def map(self, fn: Callable[[RunSpec], T], runs: Sequence[RunSpec]) -> Iterator[T]:
        for run in runs:
            yield fn(run)
