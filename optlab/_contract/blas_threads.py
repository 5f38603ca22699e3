"""The BLAS library's thread count, and lending its cores to optlab's own helper threads.

A linear classifier's products with the data (``X @ W``, ``dS.T @ X`` with ``C << D``) are
skinny; OpenBLAS gains little from running one of them on several threads. Three fast paths
therefore use the cores BLAS was given differently, as Python threads that each call
single-threaded BLAS or a compiled kernel:

- the full-batch pass splits ``X``'s rows between threads (:mod:`optlab._contract.fastpath`);
- a backend's fused minibatch step may compute part of its batch on a helper thread (the
  compiled backend's second half, ``optlab_plugins.compiled``);
- minibatch training without a fused step gathers the next batch's rows on a helper thread while
  the current batch trains (:mod:`optlab._contract.batches`).

All take :func:`blas_threads` as the number of threads they may use (1 in ``--jobs N``
workers and under ``OPENBLAS_NUM_THREADS=1``: then they stay on the calling thread) and run
inside :func:`single_threaded`, which restores the thread count afterwards. What they compute
never depends on that number: the full-batch pass is split by :func:`cores`, a property of
the machine, and one BLAS thread rounds the same in every process.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["blas_threads", "cores", "single_threaded"]


@functools.cache
def _controller() -> Any:
    """threadpoolctl's view of the BLAS libraries loaded (numpy's), made once: finding the
    libraries is slow next to reading or setting their thread count afterwards."""
    import numpy  # noqa: F401  (loads numpy's BLAS before threadpoolctl looks for it)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def cores() -> int:
    """The machine's processor count (``os.cpu_count()``): the same in every process of an
    invocation, workers included, whatever threads each was given."""
    return os.cpu_count() or 1


def blas_threads() -> int:
    """The number of threads BLAS may use now (the largest over the BLAS libraries loaded);
    1 when no BLAS library is found."""
    return max((int(info["num_threads"]) for info in _controller().info()), default=1)


@contextmanager
def single_threaded() -> Iterator[None]:
    """BLAS limited to one thread inside the ``with`` block, restored on leaving it (also
    when it raises)."""
    with _controller().limit(limits=1):
        yield
