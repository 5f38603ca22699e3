"""Metric points written by a separate process, so that a run does not wait for the store.

A small run trains in tens of milliseconds and logs a few points per step; even one INSERT
per batch (:mod:`optlab.tracking.sql_metrics`) then costs about half of its training time.
:class:`WriterProcess` hands each batch (:class:`~optlab.tracking.points.Points`, a few
arrays: microseconds to pickle) to one process that stores it, on another core, while the run
goes on training or drawing its figures. The tracker waits for a run's batches only before it
ends that run, so a run is never FINISHED before its points are stored.

For the embedded SQLite store only (a server, or another database, is written to by the
invoking process). The process runs :mod:`optlab.tracking._sqlite_writer`, which writes with
Python's ``sqlite3`` straight into MLflow's tables, the rows
:func:`~optlab.tracking.sql_metrics.sql_metric_writer` writes through MLflow's own session:
one INSERT into ``metrics`` per batch, the newest point per key into ``latest_metrics`` (kept
only when newer by (step, timestamp, value), as MLflow keeps it), after checking that the
run exists and is active, all in one transaction. It checks the tables before its first
write; with another MLflow schema it refuses, and the tracker writes everything itself.

The process

- is a fresh interpreter running that one file (``python -I -S``): nothing is forked from the
  invoking process (which holds threads and open connections); unlike
  :mod:`multiprocessing`'s spawn, the user's ``__main__`` script is not imported again; it
  imports the standard library only, so it is up in tens of milliseconds and takes almost no
  CPU from the runs;
- runs in its own session, so Ctrl-C at the terminal reaches only the invoking process,
  which decides what an interrupt ends; its output goes nowhere;
- gets the database's path through its pipe, and opens it (never creating it) at its first
  batch, once the invoking process has created the store;
- writes batches in the order they come and acknowledges each; it ends when its pipe closes,
  so also when the invoking process is killed.

A batch the process could not store (it died, or the write raised) is the tracker's cue to
write it itself, synchronously, as it would without a writer process: nothing is lost and
errors are reported the usual way.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import numpy as np

from optlab.tracking import _sqlite_writer, store
from optlab.tracking.points import Points

__all__ = ["WRITER_ENV", "WriterProcess", "encode", "sqlite_path", "wanted_for"]

#: ``OPTLAB_WRITER_PROCESS=0`` (or ``false``, ``no``, ``off``): the invoking process writes
#: every metric itself
WRITER_ENV = "OPTLAB_WRITER_PROCESS"

_HELLO = _sqlite_writer.HELLO
_UNREAD = 256  # answers left in the pipe before submit reads them (the pipe holds ~1,500)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, absolute (see
    :func:`optlab.tracking.store.sqlite_path`); ``None`` for other stores or in-memory."""
    path = store.sqlite_path(uri)
    return None if path is None else path.absolute()


def wanted_for(uri: str) -> bool:
    """Whether an invocation that trains in its own process and tracks to ``uri`` should
    start a :class:`WriterProcess`: a SQLite store, on a POSIX system (it passes pipes to the
    process and polls them), not switched off by :data:`WRITER_ENV`."""
    return (
        os.name == "posix" and not store.switched_off(WRITER_ENV) and sqlite_path(uri) is not None
    )


def encode(points: Points) -> tuple[list[str], bytes, bytes, bytes, bytes]:
    """``points`` as the writer process takes them (see
    :func:`optlab.tracking._sqlite_writer.decode`): keys, then values as stored, NaN flags,
    timestamps and steps as bytes (plain types: it unpickles them without numpy)."""
    values, is_nan = points.stored_values()
    return (
        points.keys,
        values.tobytes(),
        is_nan.astype(np.uint8).tobytes(),
        points.timestamps.astype(np.int64, copy=False).tobytes(),
        points.steps.astype(np.int64, copy=False).tobytes(),
    )


class WriterProcess:
    """One process that writes metric batches to the SQLite store at ``uri``, in order.

    Batches are handed to it with :meth:`submit` once :meth:`ready` is true, and :meth:`wait`
    tells which of them were stored. Not for use from several threads at once.

    Raises
    ------
    ValueError
        ``uri`` is not a ``sqlite:///`` store (see :func:`wanted_for`).
    """

    def __init__(self, uri: str) -> None:
        path = sqlite_path(uri)
        if path is None:
            raise ValueError(f"{uri!r} is not a SQLite store: a writer process writes only there")
        self.uri = uri
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        program = str(Path(_sqlite_writer.__file__).resolve())
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", program, str(to_child), str(from_child)],
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(to_child)
            os.close(from_child)
        self._tx = Connection(from_parent, readable=False)
        self._rx = Connection(to_parent, writable=False)
        self._answers = select.poll()  # a poll object: far cheaper per call than Connection.poll
        self._answers.register(to_parent, select.POLLIN)
        self._next = _HELLO + 1
        self._outcome: dict[int, str | None] = {}  # sequence number -> None (stored) or error
        self._open: set[int] = {_HELLO}
        self._dead: str | None = None
        self._send(str(path))

    # --------------------------------------------------------------------- the pipe
    def _send(self, message: Any) -> None:
        if self._dead is None:
            # header and message in one write (Connection.send makes two of a large one),
            # in Connection's framing; a write a signal cut short goes on where it stopped
            payload = ForkingPickler.dumps(message)
            frame = memoryview(struct.pack("!i", len(payload)) + payload)
            try:
                while frame:
                    frame = frame[os.write(self._tx.fileno(), frame) :]
            except OSError as exc:  # the process is gone
                self._die(f"writer process gone ({exc})")

    def _die(self, reason: str) -> None:
        self._dead = reason
        for seq in self._open:
            self._outcome[seq] = reason
        self._open.clear()

    def _receive(self, timeout: float) -> bool:
        """Take one acknowledgement, waiting up to ``timeout`` s; whether one came."""
        if self._dead is not None:
            return False
        try:
            if not self._answers.poll(max(0, round(timeout * 1000))):
                return False
            seq, error = self._rx.recv()
        except (EOFError, OSError) as exc:
            self._die(f"writer process gone ({type(exc).__name__})")
            return False
        self._open.discard(seq)
        self._outcome[seq] = error
        return True

    def _await(self, batches: list[int], timeout: float | None) -> None:
        """Take answers until ``batches`` are all answered or ``timeout`` s have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(seq in self._open for seq in batches):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            self._receive(1.0 if left is None else min(left, 1.0))

    def _drain(self) -> None:
        while self._receive(0.0):
            pass

    # --------------------------------------------------------------------- public
    def ready(self) -> bool:
        """Up and able to take batches (never waits)."""
        if _HELLO in self._open:
            self._drain()
        return self._dead is None and _HELLO in self._outcome and not self._outcome[_HELLO]

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the process is up (or gone); whether it can take batches."""
        self._await([_HELLO], timeout)
        return self.ready()

    @property
    def failure(self) -> str | None:
        """Why the process cannot write (``None`` while it can, or is still starting)."""
        self._drain()
        return self._dead or self._outcome.get(_HELLO)

    def submit(self, run_id: str, points: Points) -> int:
        """Hand ``points`` of run ``run_id`` over; returns the batch's number for
        :meth:`wait` and :meth:`collect`."""
        seq, self._next = self._next, self._next + 1
        self._open.add(seq)
        self._send((seq, run_id, encode(points)))
        if len(self._open) > _UNREAD:  # answers must not fill the pipe
            self._drain()
        return seq

    def wait(self, batches: list[int], timeout: float | None = None) -> dict[int, str | None]:
        """Wait until ``batches`` are acknowledged (at most ``timeout`` s in all); returns
        each batch's outcome: ``None`` when stored, else why not (also for those that timed
        out, which may still be written later: a batch written twice is stored once)."""
        batches = [seq for seq in batches if seq != _HELLO]
        self._await(batches, timeout)
        return {
            seq: self._outcome.pop(seq, "no answer from the writer process in time")
            for seq in batches
        }

    def collect(self, batches: list[int]) -> dict[int, str | None]:
        """The outcomes of those of ``batches`` acknowledged by now (never waits)."""
        self._drain()
        return {seq: self._outcome.pop(seq) for seq in batches if seq in self._outcome}

    def close(self, *, wait: bool = True) -> None:
        """Let the queued writes finish (``wait``, up to a minute) or drop them, and end the
        process."""
        if wait and self._dead is None:
            self._send(None)
        self._tx.close()
        try:
            self._process.wait(timeout=60.0 if wait else 0.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._rx.close()
        self._dead = self._dead or "closed"

    def __enter__(self) -> WriterProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(wait=kind is None)
