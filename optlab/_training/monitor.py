"""The monitor an optimizer reports to: per-step buffers, evaluation points, stop conditions.

:meth:`TrainingMonitor.step` is the only call in the per-step path: it appends five numbers to
Python lists, compares the loss with the divergence limit and reads the stop flag. Everything
else (accuracies, the full training objective, the ``epoch_ended`` observer hook, flushing the
buffers) happens at evaluation points.

Steps are timed on the monotonic clock (``time.perf_counter``) from the monitor's creation,
just before training: ``elapsed`` in the histories, which leaves out the time the observers
took at evaluation points (:attr:`TrainingMonitor.paused`: writing to the tracking store, which
may wait for a server that went away, the progress display); their wall-clock ``time`` (what
MLflow stores) is the wall-clock time of that start plus the elapsed seconds.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import numpy as np

from optlab._contract.components import Array, Monitor
from optlab._contract.objective import Objective
from optlab._contract.records import EpochReport, RunInfo, StepHistory
from optlab._errors import DivergenceError, RunInterrupted

__all__ = ["StopFlag", "TrainingMonitor", "stop_flag", "stop_on_signals"]


class StopFlag:
    """Set by SIGINT/SIGTERM; read by the monitor at every step. ``forced``: a second SIGINT
    came (stop at once). The first request's ``reason`` is kept: a worker that the terminal's
    Ctrl-C reached and then its invoker's SIGTERM recorded its run as interrupted by
    SIGTERM."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.forced = False

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason

    def clear(self) -> None:
        self.reason = None
        self.forced = False


#: the process-wide flag the signal handlers set
stop_flag = StopFlag()


@contextmanager
def stop_on_signals(flag: StopFlag = stop_flag) -> Iterator[StopFlag]:
    """Turn the first SIGINT/SIGTERM into a stop request (the current run ends as KILLED, its
    buffered metrics written); a second SIGINT raises :class:`KeyboardInterrupt` at once.

    While the previous handlers are put back, a second SIGINT only sets ``flag.forced`` (the
    caller ends as a second Ctrl-C does): raised there, it left this context's handlers
    installed for good, and a later Ctrl-C only set the flag that no one read any more.
    SIGINT is put back last, so that whatever its previous handler raises comes once both
    are back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    closing = False

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if flag.reason is not None and signum == signal.SIGINT:
            flag.forced = True  # seen by the caller also should the exception be swallowed
            if not closing:
                raise KeyboardInterrupt
            return
        flag.request(name)

    report_unraisable = sys.unraisablehook

    def unraisable(raised: Any) -> None:
        # a second Ctrl-C that landed where Python cannot raise it (a weakref callback, a
        # finalizer) is not printed with a traceback: flag.forced ends the invocation anyway
        if not (flag.forced and isinstance(raised.exc_value, KeyboardInterrupt)):
            report_unraisable(raised)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    sys.unraisablehook = unraisable
    try:
        yield flag
    finally:
        closing = True
        sys.unraisablehook = report_unraisable
        signal.signal(signal.SIGTERM, previous[signal.SIGTERM])
        signal.signal(signal.SIGINT, previous[signal.SIGINT])


class TrainingMonitor(Monitor):
    """Collects an optimizer's steps and evaluates at its evaluation points.

    Parameters
    ----------
    objective : Objective
        For accuracies on the training set.
    X_val, y_val : (M, D) and (M,) arrays
        Validation split (``M`` may be 0).
    run : RunInfo
        Passed to the observer hook.
    on_epoch : callable(run, report)
        The ``optlab_epoch_ended`` hook caller.
    initial_loss : float
        The objective at ``W0``; the run diverges when the loss exceeds
        ``divergence_factor * max(initial_loss, 1)`` or is not finite.
    snapshots : bool
        Keep a copy of ``W`` at each evaluation point in :attr:`snapshots` (``(epoch, W)``),
        for the decision regions of two-dimensional data (``W`` is then 3 x C).
    """

    def __init__(
        self,
        objective: Objective,
        X_val: Array,
        y_val: Array,
        run: RunInfo,
        on_epoch: Callable[..., Any],
        *,
        initial_loss: float,
        divergence_factor: float = 1e3,
        flag: StopFlag = stop_flag,
        snapshots: bool = False,
    ) -> None:
        self.objective = objective
        self.X_val, self.y_val = X_val, y_val
        self.run = run
        self.on_epoch = on_epoch
        self.flag = flag
        self.limit = divergence_factor * max(abs(initial_loss), 1.0)
        self.divergence_factor = divergence_factor
        self.initial_loss = initial_loss
        self.examples = 0
        self.n_steps = 0
        self.history = StepHistory()
        self.evaluations: list[EpochReport] = []
        self.keep_snapshots = snapshots
        self.snapshots: list[tuple[float, Array]] = []
        self.best_val_accuracy = float("nan")
        # the run's clock: wall-clock start, and monotonic seconds since it
        self.started_wall = time.time()
        self.started = time.perf_counter()
        #: when the current weights were reached (the last step or evaluation ended)
        self._reached = self.started
        #: seconds the observers took at evaluation points, left out of the run's clock
        self.paused = 0.0
        self._buf: tuple[list[int], list[float], list[float], list[float], list[float]] = (
            [],
            [],
            [],
            [],
            [],
        )

    # ----------------------------------------------------------------------------- per step
    def step(self, examples: int, loss: float, data_loss: float, reg_loss: float) -> None:
        # the loss is that of the weights the step started from: kept at the examples
        # processed (and the time taken) to reach them, the count and time before the step
        ex, tm, lo, dl, rl = self._buf
        ex.append(self.examples)
        tm.append(self._reached)
        self._reached = time.perf_counter()
        self.examples += examples
        self.n_steps += 1
        lo.append(loss)
        dl.append(data_loss)
        rl.append(reg_loss)
        if not loss <= self.limit:  # also catches NaN
            at = ex[-1]
            self.flush()
            what = (
                "is not finite"
                if not math.isfinite(loss)
                else (
                    f"exceeded {self.divergence_factor:g}x the initial loss {self.initial_loss:.4g}"
                )
            )
            raise DivergenceError(
                f"diverged: loss {loss:.4g} {what} at step {self.n_steps} "
                f"({at} examples); lower the learning rate",
                step=self.n_steps,
            )
        if self.flag.reason is not None:
            self.flush()
            raise RunInterrupted(
                f"interrupted by {self.flag.reason} at step {self.n_steps} "
                f"({self.examples} examples)"
            )

    # ----------------------------------------------------------------------------- buffers
    def flush(self) -> StepHistory:
        """Move the buffered steps into :attr:`history`; return just those steps."""
        ex, tm, lo, dl, rl = self._buf
        # every buffered step came after the last pause
        elapsed = np.asarray(tm, dtype=np.float64) - self.started - self.paused
        new = StepHistory(
            examples=np.asarray(ex, dtype=np.int64),
            time=self.started_wall + elapsed,
            loss=np.asarray(lo, dtype=np.float64),
            data_loss=np.asarray(dl, dtype=np.float64),
            reg_loss=np.asarray(rl, dtype=np.float64),
            elapsed=elapsed,
        )
        for buf in self._buf:
            buf.clear()
        if len(new):
            self.history.extend(new)
        return new

    # ----------------------------------------------------------------------------- evaluation
    def evaluate(self, epoch: float, W: Array) -> None:
        """Measure ``W`` at an evaluation point: the full training objective and the training
        accuracy (one product over the training set), the validation accuracy; report them."""
        elapsed = time.perf_counter() - self.started - self.paused
        steps = self.flush()
        obj = self.objective
        full, train_acc = obj.value_and_accuracy(W)
        val_acc = obj.accuracy(W, self.X_val, self.y_val) if self.X_val.shape[0] else None
        loss = float(steps.loss[-1]) if len(steps) else float(full.total)
        report = EpochReport(
            epoch=float(epoch),
            examples=self.examples,
            time=self.started_wall + elapsed,
            steps=steps,
            train_accuracy=train_acc,
            val_accuracy=val_acc,
            loss=loss,
            train_loss=float(full.total),
            elapsed=elapsed,
        )
        self.evaluations.append(report)
        if self.keep_snapshots:
            self.snapshots.append((float(epoch), np.array(W, copy=True)))
        # without a validation split there is no best validation accuracy (nan: shown as
        # "-", and such a run is never the best run); the training accuracy does not stand in
        if val_acc is not None and not val_acc <= self.best_val_accuracy:  # first, or better
            self.best_val_accuracy = val_acc
        observed = time.perf_counter()
        self.on_epoch(run=self.run, report=report)
        self.paused += time.perf_counter() - observed
        self._reached = time.perf_counter()
        if self.flag.reason is not None:
            raise RunInterrupted(f"interrupted by {self.flag.reason} at epoch {epoch:g}")
