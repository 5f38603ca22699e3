"""Executing an experiment: its runs in sequence, in local processes or on Dask.

::

    invocation.py   Invocation: one ``optlab run`` (tracking, resume, claims, the summary)
    progress.py     the progress bar (terminal or notebook) over the runs
    sequential.py   run_all: the runs one after another in this process
    parallel.py     the runs in local worker processes or on a Dask cluster
    fork_server.py  the worker processes' start method
    check.py        ``optlab check``: the checks of every run, without training
"""
