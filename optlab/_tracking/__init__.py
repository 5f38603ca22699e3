"""Tracking in MLflow: where runs go, the observer plugin that logs them, reading them back.

::

    store.py    resolve the tracking URI, check the store, open a client, get the experiment
    tracker.py  Tracker: the observer plugin (parent run per invocation, child run per run)
    points.py   metric points in columns, as the tracker buffers and writes them; thinning
    retry.py    retrying writes (tenacity) while the store is unreachable; TrackingUnavailable
    no_room.py  a full disk, quota or read-only file system: recognised, never retried, told
    claims.py   run claims: of the invocations alive on one store, one trains a given run
    resume.py   what --resume asks of the store: FINISHED runs, stale RUNNING ones ended
    artifacts.py  a run's files: console.log, weights.npz, steps.npz, figures
    readback.py  an invocation's runs read back from MLflow (``optlab compare``, landscape)
    ui.py       ``optlab ui``: the MLflow UI on the store

Importing this package does not import MLflow or matplotlib (they take seconds to load). It
turns MLflow's usage telemetry off (``MLFLOW_DISABLE_TELEMETRY=true``, unless the user set that
variable): MLflow 3 would otherwise send usage events to its servers from every process that
imports it, the ``mlflow server`` of ``optlab ui`` and the UI in the browser included, and
write an installation id to ``~/.config/mlflow/telemetry.json``. optlab makes no network call
of its own at run time and writes nothing outside the working folder and the store.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from optlab._tracking.retry import RETRY_ENV, TrackingUnavailable
from optlab._tracking.store import DEFAULT_TRACKING_URI, connect, resolve_tracking_uri
from optlab._tracking.tracker import (
    DATA_TAG,
    NOTE_TAG,
    PARENT_TAG,
    ROLE_TAG,
    RUN_KEY_TAG,
    STATUS_REASON_TAG,
    STEP_METRICS,
    Tracker,
)

__all__ = [
    "DATA_TAG",
    "DEFAULT_TRACKING_URI",
    "NOTE_TAG",
    "PARENT_TAG",
    "RETRY_ENV",
    "ROLE_TAG",
    "RUN_KEY_TAG",
    "STATUS_REASON_TAG",
    "STEP_METRICS",
    "Tracker",
    "TrackingUnavailable",
    "connect",
    "resolve_tracking_uri",
]
