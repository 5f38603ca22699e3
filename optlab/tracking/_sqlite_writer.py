"""The writer process's program: metric batches into an MLflow SQLite store, with ``sqlite3``.

Run as a script, ``python -I -S _sqlite_writer.py RX_FD TX_FD``, by
:class:`optlab.tracking.writer_process.WriterProcess`. It imports the standard library only
(not numpy, not optlab, not MLflow), so it is up in a few tens of milliseconds and costs the
machine almost nothing while a run trains.

Protocol, over two pipes framed by :class:`multiprocessing.connection.Connection`:

- in: the database's path (a ``str``); then batches ``(seq, run_id, columns)`` (see
  :func:`decode` for ``columns``); then ``None`` to stop (or the pipe closes);
- out: ``(0, None)`` once up; then ``(seq, None)`` for a stored batch or ``(seq, why)``.

Each batch is stored as MLflow's SQL store stores ``log_batch`` (and
:func:`optlab.tracking.sql_metrics.sql_metric_writer`): in one transaction, after checking
that the run exists and is active, one INSERT into ``metrics``, and into ``latest_metrics``
the newest point of each key, kept only if newer by (step, timestamp, value) than the one
there. The database is opened at the first batch, never created, and its tables are checked
to have the columns and keys written here; otherwise every batch is refused and the invoking
process writes them itself.
"""

from __future__ import annotations

import sqlite3
import sys
from array import array
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import quote

HELLO = 0  # sequence number of the first answer: the process is up

#: what is written, and must be found in the database before the first write
SCHEMA = {
    "metrics": {"key", "value", "timestamp", "run_uuid", "step", "is_nan"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "runs": {"run_uuid", "lifecycle_stage"},
}
INSERT = (
    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, ?)"
)
LATEST = (
    "INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
    "VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, "
    "timestamp = excluded.timestamp, step = excluded.step, is_nan = excluded.is_nan "
    "WHERE (excluded.step, excluded.timestamp, excluded.value) "
    "> (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)"
)

Row = tuple[str, float, int, str, int, int]


def decode(run_id: str, columns: tuple[list[str], bytes, bytes, bytes, bytes]) -> list[Row]:
    """Rows of the ``metrics`` table from a batch's columns.

    ``columns`` is ``(keys, values, is_nan, timestamps, steps)``: the keys, then the machine's
    float64 values as stored (NaN as 0, infinities clipped), uint8 NaN flags, int64
    timestamps (ms) and int64 steps, each as bytes.
    """
    keys, values, is_nan, stamps, steps = columns
    return list(
        zip(
            keys,
            array("d", values),
            array("q", stamps),
            [run_id] * len(keys),
            array("q", steps),
            array("B", is_nan),
            strict=True,
        )
    )


def newest(rows: list[Row]) -> list[Row]:
    """The row ``latest_metrics`` keeps for each key: the largest (step, timestamp, value)."""
    best: dict[str, Row] = {}
    for row in rows:
        seen = best.get(row[0])
        if seen is None or (row[4], row[2], row[1]) > (seen[4], seen[2], seen[1]):
            best[row[0]] = row
    return list(best.values())


class SqliteMetrics:
    """Stores batches in the MLflow SQLite database at ``path`` (opened at the first batch)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            f"file:{quote(self.path)}?mode=rw", uri=True, timeout=60.0, isolation_level=None
        )
        try:
            for table, needed in SCHEMA.items():
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if not needed <= columns:
                    missing = ", ".join(sorted(needed - columns))
                    raise RuntimeError(f"table {table!r} lacks {missing}: not a schema known here")
            info = db.execute("PRAGMA table_info(latest_metrics)")
            keys = sorted(row[1] for row in info if row[5])
            if keys != ["key", "run_uuid"]:
                raise RuntimeError(f"latest_metrics is keyed by {keys}: not a schema known here")
        except BaseException:
            db.close()
            raise
        return db

    def write(self, run_id: str, rows: list[Row]) -> None:
        """Store ``rows`` (see :func:`decode`) on run ``run_id``, in one transaction."""
        if self.db is None:
            self.db = self._open()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            found = db.execute(
                "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)
            ).fetchone()
            if found is None or found[0] != "active":
                state = "not found" if found is None else f"in the {found[0]!r} state"
                raise RuntimeError(f"run {run_id} is {state}; metrics go to active runs only")
            db.executemany(INSERT, rows)
            db.executemany(LATEST, newest(rows))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def serve(rx: Connection, tx: Connection) -> int:
    """Answer batches until the stop message or the pipe's end."""
    try:
        path = rx.recv()
    except EOFError:
        return 0
    metrics = SqliteMetrics(path)
    tx.send((HELLO, None))
    while True:
        try:
            message: Any = rx.recv()
        except EOFError:
            return 0
        if message is None:
            return 0
        seq, run_id, columns = message
        try:
            metrics.write(run_id, decode(run_id, columns))
            tx.send((seq, None))
        except Exception as exc:
            tx.send((seq, f"{type(exc).__name__}: {exc}".splitlines()[0]))


def main(argv: list[str]) -> int:
    """``_sqlite_writer.py RX_FD TX_FD``."""
    rx = Connection(int(argv[0]), writable=False)
    tx = Connection(int(argv[1]), readable=False)
    try:
        return serve(rx, tx)
    except (BrokenPipeError, EOFError):  # the invoking process is gone
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
