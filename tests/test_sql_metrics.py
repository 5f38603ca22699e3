"""The single-INSERT metric writer stores exactly what MLflow's ``log_batch`` stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from metric_points import new_run, sample_points, stored

from optlab.tracking.sql_metrics import sql_metric_writer, sqlite_metric_writer


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("sql-metrics") / "mlflow.db"
    return MlflowClient(f"sqlite:///{db}")


def test_sqlite_stores_get_the_fast_writer(client: Any) -> None:
    """Fails when MLflow's SQL store internals change: the tracker would then fall back to
    log_batch, correct but ten times slower."""
    assert sql_metric_writer(client) is not None


def test_other_stores_get_none() -> None:
    from mlflow import MlflowClient

    assert sql_metric_writer(MlflowClient("http://127.0.0.1:9")) is None  # never contacted


def test_same_rows_and_latest_values_as_log_batch(client: Any) -> None:
    write = sql_metric_writer(client)
    assert write is not None
    fast, slow = new_run(client, "fast"), new_run(client, "slow")
    write(fast, sample_points()[:4])  # in two batches: latest_metrics is updated across them
    write(fast, sample_points()[4:])
    client.log_batch(slow, metrics=sample_points().metrics())
    assert stored(client, fast) == stored(client, slow)
    latest, history = stored(client, fast)
    assert len(history["loss"]) == 6 and len(history["acc"]) == 5
    assert latest["acc"] == "0.75" and latest["loss"] == "1.0"


def test_a_batch_sent_again_is_not_stored_twice(client: Any) -> None:
    write = sql_metric_writer(client)
    assert write is not None
    run_id = new_run(client, "again")
    write(run_id, sample_points()[:5])
    write(run_id, sample_points())  # the first five are stored already
    assert len(client.get_metric_history(run_id, "loss")) == 6
    assert len(client.get_metric_history(run_id, "acc")) == 5


def test_a_deleted_run_refuses_points_like_log_batch(client: Any) -> None:
    from mlflow.exceptions import MlflowException

    write = sql_metric_writer(client)
    assert write is not None
    run_id = new_run(client, "deleted")
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match="active") as fast:
        write(run_id, sample_points())
    with pytest.raises(MlflowException, match="active") as slow:
        client.log_batch(run_id, metrics=sample_points().metrics())
    assert str(fast.value) == str(slow.value)
    client.restore_run(run_id)
    assert client.get_metric_history(run_id, "loss") == []


def test_the_tracker_writes_through_the_fastest_one(tmp_path: Path) -> None:
    from optlab.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "e", plots=False)
    assert getattr(tracker.write_metrics, "__qualname__", "").startswith("sqlite_metric_writer")
    assert tracker.max_batch >= 50_000
    assert sqlite_metric_writer(tracker.client, "postgresql://h/db") is None


def test_sqlite_writer_stores_what_log_batch_stores(client: Any) -> None:
    write = sqlite_metric_writer(client, client.tracking_uri)
    assert write is not None
    mine, theirs = new_run(client, "sqlite"), new_run(client, "theirs")
    write(mine, sample_points()[:4])
    write(mine, sample_points()[4:])
    client.log_batch(theirs, metrics=sample_points().metrics())
    assert stored(client, mine) == stored(client, theirs)


def test_sqlite_writer_hands_what_it_refuses_to_log_batch(client: Any) -> None:
    from mlflow.exceptions import MlflowException

    write = sqlite_metric_writer(client, client.tracking_uri)
    assert write is not None
    again = new_run(client, "sqlite-again")
    write(again, sample_points()[:5])
    write(again, sample_points())  # the first five are stored already: log_batch skips them
    assert len(client.get_metric_history(again, "loss")) == 6
    deleted = new_run(client, "sqlite-deleted")
    client.delete_run(deleted)
    with pytest.raises(MlflowException, match="active"):  # MLflow's own error
        write(deleted, sample_points())
