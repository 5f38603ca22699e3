"""Executing an experiment: its runs in this process, in local processes or on Dask.

::

    executor.py     the Executor interface, and the Job its runs share
    by_name.py      make_executor: an executor by its name (local, dask)
    in_process.py   InProcess: the runs one after another in this process
    local.py        LocalProcesses: the runs in local worker processes (--jobs N)
    dask.py         DaskCluster: the runs on a Dask cluster (--executor dask)
    recording.py    a run's observer events recorded in a worker, replayed here
    fork_server.py  the local worker processes' start method
    invocation.py   Invocation: one ``optlab run`` (tracking, resume, claims, the summary)
    progress.py     the progress bar (terminal or notebook) over the runs
    check.py        ``optlab check``: the checks of every run, without training, on an executor
"""
