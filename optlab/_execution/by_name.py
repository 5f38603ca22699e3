"""The executors by the name ``--executor`` and ``optlab.run(executor=...)`` take."""

from __future__ import annotations

from optlab._errors import InputError, as_written
from optlab._execution.executor import Executor

__all__ = ["EXECUTORS", "make_executor"]

#: the names :func:`make_executor` knows
EXECUTORS = ("local", "dask")


def make_executor(
    name: str = "local",
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    executor_label: str = "--executor",
    scheduler_label: str = "--scheduler",
) -> Executor:
    """The executor called ``name`` (``local``: this process with ``jobs=1``, else ``jobs``
    local worker processes; ``dask``: the Dask cluster at ``scheduler``). The labels name the
    options in messages as the user passes them (the Python API's ``executor``,
    ``scheduler``).

    Raises
    ------
    InputError
        An unknown name, ``jobs < 1``, ``dask`` without a scheduler address, or an option of
        the other executor (a scheduler for ``local``, ``jobs > 1`` for ``dask``), which would
        be ignored.
    """
    if name not in EXECUTORS:
        raise InputError(f"unknown executor '{name}'; use {' or '.join(EXECUTORS)}")
    if jobs < 1:
        raise InputError(f"jobs: must be at least 1, got {jobs}")
    if name == "local" and scheduler:
        raise InputError(
            f"scheduler {scheduler}: only executor 'dask' uses one, and the runs would stay on "
            f"this machine; choose executor 'dask' ({as_written(executor_label, 'dask')}) or leave "
            "the scheduler out"
        )
    if name == "dask" and jobs > 1:
        raise InputError(
            f"jobs: {jobs} local worker processes are for executor 'local'; executor 'dask' "
            "runs as many runs at once as its cluster's workers take: leave jobs out"
        )
    if name == "dask":
        if not scheduler:
            address = as_written(scheduler_label, "tcp://127.0.0.1:8786")
            raise InputError(f"executor 'dask' needs a scheduler address ({address})")
        from optlab._execution.dask import DaskCluster

        return DaskCluster(scheduler, scheduler_label)
    if jobs == 1:
        from optlab._execution.in_process import InProcess

        return InProcess()
    from optlab._execution.local import LocalProcesses

    return LocalProcesses(jobs)
