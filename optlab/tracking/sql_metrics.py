"""Metric points written into an MLflow SQL store with one multi-row INSERT per batch.

MLflow's ``SqlAlchemyStore.log_batch`` builds one ORM object per point and flushes them
through the session's unit of work: about 70 µs a point on SQLite, so the curves of a small
run cost several times its training. :func:`sql_metric_writer` writes the same rows into the
same ``metrics`` table with one executemany ``INSERT`` (about 7 µs a point, most of it
SQLite's own index upkeep), inside the store's own session, after the store's own check that
the run is active, and keeps ``latest_metrics`` (the values the UI's run table shows) up to
date with the store's own method, given the newest point of each key.

It relies on three internals of MLflow's SQL store (``ManagedSessionMaker``, ``_get_run``
with ``_check_run_is_active``, ``_update_latest_metrics_if_necessary``) and on its
``metrics`` table model; when any is missing (another MLflow version) or the store is not a
SQL store (a tracking server, the file store), :func:`sql_metric_writer` returns ``None`` and
the tracker uses ``log_batch``. A batch whose points are partly stored already (a write sent
again after its answer was lost) violates the table's primary key; it is then handed to
``log_batch``, which skips the stored points.

On the embedded SQLite store, :func:`sqlite_metric_writer` writes the same rows with Python's
``sqlite3`` instead (about 6 µs a point against 9-10 µs through SQLAlchemy): the program of
the writer process (:mod:`optlab.tracking._sqlite_writer`), called in this process. Whatever
it refuses (a re-sent batch, a run that is not active, an unknown schema) goes to
``log_batch``, which stores it or raises MLflow's own error.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from optlab.tracking._sqlite_writer import Row, SqliteMetrics, newest
from optlab.tracking.points import Points

__all__ = ["MetricWriter", "sql_metric_writer", "sqlite_metric_writer"]

#: ``writer(run_id, points)``: store ``points`` on run ``run_id``
MetricWriter = Callable[[str, Points], None]

_COLUMNS = ("key", "value", "timestamp", "run_uuid", "step", "is_nan")


def _rows(run_id: str, points: Points) -> list[Row]:
    """The ``metrics`` table's rows (as :mod:`optlab.tracking._sqlite_writer` orders them),
    values stored as MLflow stores them: NaN as 0 with the ``is_nan`` flag, infinities
    clipped to the largest float."""
    values, is_nan = points.stored_values()
    return list(
        zip(
            points.keys,
            values.tolist(),
            points.timestamps.tolist(),
            [run_id] * len(points),
            points.steps.tolist(),
            is_nan.tolist(),
            strict=True,
        )
    )


def sqlite_metric_writer(client: Any, uri: str) -> MetricWriter | None:
    """A fast metric writer for the SQLite store at ``uri`` (``client``'s), or ``None`` if
    ``uri`` is not a SQLite file."""
    from optlab.tracking.writer_process import sqlite_path

    path = sqlite_path(uri)
    if path is None:
        return None
    store = SqliteMetrics(str(path))

    def write(run_id: str, points: Points) -> None:
        if not len(points):
            return
        try:
            store.write(run_id, _rows(run_id, points))
        except Exception:  # refused: MLflow stores what is new, or raises its own error
            client.log_batch(run_id, metrics=points.metrics())

    return write


def sql_metric_writer(client: Any) -> MetricWriter | None:
    """A fast metric writer for ``client``'s store, or ``None`` if the store is not one of
    MLflow's SQL stores (or its internals are not the ones this module knows)."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlMetric
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from sqlalchemy import insert
        from sqlalchemy.exc import IntegrityError

        store = client._tracking_client.store
    except (ImportError, AttributeError):
        return None
    needed = (
        "ManagedSessionMaker",
        "_get_run",
        "_check_run_is_active",
        "_update_latest_metrics_if_necessary",
    )
    if not isinstance(store, SqlAlchemyStore) or not all(hasattr(store, n) for n in needed):
        return None
    table = SqlMetric.__table__
    sql: Any = store  # MLflow's store methods are untyped

    def write(run_id: str, points: Points) -> None:
        if not len(points):
            return
        rows = _rows(run_id, points)
        latest = [SimpleNamespace(**dict(zip(_COLUMNS, row, strict=True))) for row in newest(rows)]
        try:
            with sql.ManagedSessionMaker(read_only=False) as session:
                sql._check_run_is_active(sql._get_run(run_uuid=run_id, session=session))
                session.execute(insert(table), [dict(zip(_COLUMNS, r, strict=True)) for r in rows])
                sql._update_latest_metrics_if_necessary(latest, session)
        except Exception as exc:  # the session wraps database errors in MlflowException
            if not isinstance(exc.__cause__, IntegrityError) and not isinstance(
                exc, IntegrityError
            ):
                raise
            client.log_batch(run_id, metrics=points.metrics())  # skips the points stored already

    return write
