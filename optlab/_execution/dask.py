"""The runs on a Dask cluster (``optlab run --executor dask --scheduler ADDRESS``).

Each run is one Dask task, executed with one BLAS thread; its observer events travel back
and are replayed here (:mod:`optlab._execution.recording`), so the cluster never reaches the
tracking store. The runs are claimed all at once, before any is submitted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from optlab._errors import InputError, as_written
from optlab._execution.executor import Ended, Executor, Job
from optlab._execution.recording import ended, execute_recorded, outcome, replay
from optlab._spec.experiment import RunSpec

__all__ = ["DaskCluster"]

T = TypeVar("T")


def _one_thread(fn: Callable[..., T], *args: Any) -> T:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(*args)


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
        from distributed import as_completed

        client = self._connected()
        mine, others = job.claim(runs)
        yield from others
        futures = {
            client.submit(
                _one_thread,
                execute_recorded,
                run,
                job.experiment,
                job.base_tags,
                job.render,
                pure=False,
            ): run
            for run in mine
        }
        try:
            for fut in as_completed(list(futures)):  # type: ignore[no-untyped-call]
                if not (events := ended(fut, futures[fut], job.describe)):
                    continue
                replay(events, job.observer, job.log)
                info, result = outcome(events)
                if job.claims is not None:
                    job.claims.release(info.name)
                yield info, result
                if job.stops_after(result):
                    return
        finally:
            client.cancel(list(futures))

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
