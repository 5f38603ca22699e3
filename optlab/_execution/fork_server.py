"""The fork server that local worker processes (``--jobs N``) are forked from.

It is a fresh interpreter that imports what a worker needs (:data:`WORKER_PRELOAD`) once;
each worker is then a fork of it, with those modules already imported, instead of spending
about 2 s importing numpy, scikit-learn and matplotlib itself. Its imports take about a
second of one core, so ``optlab run --jobs N`` starts it first thing (:func:`start`), before
reading the spec and the data, and the workers can begin as soon as the runs are known.

This module imports only the standard library, so that starting the server costs the
invoking process nothing it would not pay anyway. Where there is no fork server, the workers
are spawned (:func:`start`).
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.context import BaseContext

__all__ = ["WORKER_PRELOAD", "start"]

#: modules the fork server imports once for all local workers (a missing one is skipped)
WORKER_PRELOAD = [
    "optlab._training.runner",
    "optlab._contract.plugin_manager",
    "optlab._tracking.artifacts",
    "optlab._report.comparison",
    "optlab._report.run_figures",
    "optlab_plugins.losses",
    "optlab_plugins.regularizers",
    "optlab_plugins.optimizers",
    "optlab_plugins.datasets",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "threadpoolctl",
]


def start() -> BaseContext:
    """Start the fork server now, if it is not running, so that it imports while this process
    goes on; returns the ``forkserver`` context, with :data:`WORKER_PRELOAD` set.

    Where the platform has no fork server (Windows, macOS builds without it) or it cannot be
    started, returns the ``spawn`` context instead: the workers then start as fresh
    interpreters that import what they need themselves (about 2 s each), and give the same
    results.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(WORKER_PRELOAD)
        try:
            with _sigint_ignored():
                forkserver.ensure_running()
        except OSError:
            pass
        else:
            return ctx
    return multiprocessing.get_context("spawn")


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the fork server is started, which it inherits (an ignored signal
    stays ignored across ``exec``): a Ctrl-C, which the terminal sends to the whole process
    group, would otherwise end it while it imports (about a second) with a KeyboardInterrupt
    traceback. It ignores SIGINT itself once it has imported, and the workers forked from it
    install their own handlers; the invoking process's own handler is back within
    milliseconds (starting the server does not wait for its imports)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
