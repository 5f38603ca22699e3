"""The single-INSERT metric writer stores exactly what MLflow's ``log_batch`` stores."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from optlab.tracking.sql_metrics import sql_metric_writer


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("sql-metrics") / "mlflow.db"
    return MlflowClient(f"sqlite:///{db}")


def _points() -> list[Any]:
    from mlflow.entities import Metric

    values = [0.5, math.nan, math.inf, -math.inf, 2.0, 1.0]
    points = [Metric("loss", v, 1_000 + i, 10 * i) for i, v in enumerate(values)]
    points += [Metric("acc", 0.25 * i, 2_000, 10 * i) for i in range(4)]
    points.append(Metric("acc", 0.1, 1_999, 30))  # same step, older: not the latest
    return points


def _stored(client: Any, run_id: str) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    def history(key: str) -> list[Any]:
        points = client.get_metric_history(run_id, key)
        return sorted((m.step, m.timestamp, str(m.value)) for m in points)

    latest = client.get_run(run_id).data.metrics
    return {k: str(v) for k, v in latest.items()}, {k: history(k) for k in ("loss", "acc")}


def _new_run(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name("e") or client.get_experiment(
        client.create_experiment("e")
    )
    return str(client.create_run(experiment.experiment_id, run_name=name).info.run_id)


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
    fast, slow = _new_run(client, "fast"), _new_run(client, "slow")
    write(fast, _points()[:4])  # in two batches: latest_metrics is updated across them
    write(fast, _points()[4:])
    client.log_batch(slow, metrics=_points())
    assert _stored(client, fast) == _stored(client, slow)
    latest, history = _stored(client, fast)
    assert len(history["loss"]) == 6 and len(history["acc"]) == 5
    assert latest["acc"] == "0.75" and latest["loss"] == "1.0"


def test_a_batch_sent_again_is_not_stored_twice(client: Any) -> None:
    write = sql_metric_writer(client)
    assert write is not None
    run_id = _new_run(client, "again")
    write(run_id, _points()[:5])
    write(run_id, _points())  # the first five are stored already
    assert len(client.get_metric_history(run_id, "loss")) == 6
    assert len(client.get_metric_history(run_id, "acc")) == 5


def test_a_deleted_run_refuses_points_like_log_batch(client: Any) -> None:
    from mlflow.exceptions import MlflowException

    write = sql_metric_writer(client)
    assert write is not None
    run_id = _new_run(client, "deleted")
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match="active") as fast:
        write(run_id, _points())
    with pytest.raises(MlflowException, match="active") as slow:
        client.log_batch(run_id, metrics=_points())
    assert str(fast.value) == str(slow.value)
    client.restore_run(run_id)
    assert client.get_metric_history(run_id, "loss") == []


def test_the_tracker_writes_through_it(tmp_path: Path) -> None:
    from optlab.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "e", plots=False)
    assert getattr(tracker.write_metrics, "__qualname__", "").startswith("sql_metric_writer")
