"""The MLflow observer plugin: one parent run per invocation, one child run per optlab run.

Everything goes through ``MlflowClient``'s public methods with explicit run ids (never the
fluent active-run stack). What is logged, and when:

- per evaluation point (each epoch, or every ``eval_every`` steps): ``epoch``,
  ``curves/train_accuracy``, ``curves/val_accuracy`` and ``curves/train_loss`` (the full
  training objective, the loss that compares runs), buffered and written with
  ``log_batch`` at the run's first evaluation point and then at the first one
  ``flush_interval_s`` after the last write, so that the MLflow UI follows a long run as it
  trains: at most ``step_points`` points per
  curve, every evaluation of a run that has no more, else the first half of them as they
  come and the rest thinned evenly when the run ends (a run of 10,000 epochs would
  otherwise log 30,000 points, seconds of writes);
- at the end of a run: the per-step curves ``curves/loss``, ``curves/data_loss`` and
  ``curves/reg_loss``, at most ``step_points`` points each (default 320, what MLflow's charts
  draw of a curve), evenly thinned with the first and the last step kept
  (:func:`~optlab._tracking.points.thinned`); the full per-step history at full resolution is
  the run's ``steps.npz`` artifact; then the final numbers as ``summary/<name>`` at step 0,
  the artifacts and the status.

(Why these names and steps: :mod:`optlab._tracking.points`.)

Storing a point costs MLflow far more than computing it (benchmarks/README.md, "Measurements
behind the code"), so the budget, not the number of steps, bounds what tracking costs a run.

A store that becomes unreachable during a run is waited for (see :mod:`optlab._tracking.retry`):
buffered points stay in the buffer until the store acknowledges them, and a write is sent
again only where doing so cannot duplicate anything.

Its size (about 600 lines) is one protocol with the store: the three observer hooks, the
parent run, and the writes - buffered, acknowledged, never duplicated, given up cleanly when
the store is gone or full. What it builds on lives beside it: points (points.py), retries
(retry.py), run claims (claims.py), resume (resume.py), reading runs back (readback.py).
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optlab._contract.hookspecs import hookimpl
from optlab._contract.records import EpochReport, RunInfo, RunResult, StepHistory
from optlab._errors import OptlabError, RunInterrupted, TrackingError, TrackingUnavailable
from optlab._tracking.no_room import RESUME, quiet_no_room_logs
from optlab._tracking.points import (
    DEFAULT_STEP_POINTS,
    EPOCH_METRICS,
    STEP_METRICS,
    Points,
    evaluation_points,
    spread,
    step_points,
    summary_key,
    thinned,
)
from optlab._tracking.retry import Retrier, bound_http_retries, retry_budget
from optlab._tracking.store import URI_LABEL, connect, ensure_experiment, first_line

__all__ = [
    "DATA_TAG",
    "EPOCH_METRICS",
    "HOST_TAG",
    "NOTE_TAG",
    "PARENT_TAG",
    "PID_TAG",
    "ROLE_TAG",
    "RUN_KEY_TAG",
    "STATUS_REASON_TAG",
    "STEP_METRICS",
    "Tracker",
    "list_tags",
    "read_list_tags",
]

RUN_KEY_TAG = "optlab.run_key"
STATUS_REASON_TAG = "optlab.status_reason"
PARENT_TAG = "mlflow.parentRunId"
ROLE_TAG = "optlab.role"  # "invocation" (parent) or "run" (child)
PID_TAG = "optlab.pid"
HOST_TAG = "optlab.host"
DATA_TAG = "optlab.data"
REUSED_TAG = "optlab.reused_runs"  # on a --resume parent: finished runs it did not repeat
#: on a parent: the run keys of runs it left to another invocation still training them
LEFT_TAG = "optlab.left_runs"
#: on a parent: the run keys of its plan, in order (the order `optlab compare` shows)
PLAN_TAG = "optlab.plan"
NOTE_TAG = "mlflow.note.content"  # the description MLflow shows for an experiment or a run

_MAX_METRICS = 1000  # per log_batch call (MLflow's limit)
_MAX_PARAMS = 100
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 8000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _nth(name: str, i: int) -> str:
    return name if i == 0 else f"{name}.{i + 1}"


def list_tags(name: str, values: Sequence[str]) -> dict[str, str]:
    """``values`` (run ids, run keys) joined by commas under the tag ``name``, then
    ``name.2``, ``name.3``, ... each within MLflow's limit of a tag value: a sweep of a few
    hundred runs names more than one tag holds (a value cut there was a broken run id)."""
    chunks: list[list[str]] = []
    size = 0  # of the last chunk, joined
    for value in values:
        if not chunks or size + 1 + len(value) > _MAX_TAG_VALUE:
            chunks.append([])
            size = -1
        chunks[-1].append(value)
        size += 1 + len(value)
    return {_nth(name, i): ",".join(chunk) for i, chunk in enumerate(chunks)}


def read_list_tags(tags: Mapping[str, str], name: str) -> list[str]:
    """The values :func:`list_tags` wrote under ``name`` into ``tags``, in order."""
    out: list[str] = []
    i = 0
    while (value := tags.get(_nth(name, i))) is not None:
        out += [v for v in value.split(",") if v]
        i += 1
    return out


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return _clip(text, _MAX_PARAM_VALUE)


def _ms(seconds: float) -> int:
    return round(seconds * 1000.0)


@dataclass
class _Child:
    run_id: str
    evals_logged: int = 0  # evaluation points buffered so far
    steps: list[StepHistory] = field(default_factory=list)  # reported, written at the end
    pending: list[Points] = field(default_factory=list)  # not yet acknowledged by the store
    flushed_at: float = 0.0  # never: the run's first evaluation point is written at once

    def count(self) -> int:
        """Points not yet acknowledged by the store."""
        return sum(map(len, self.pending))


class Tracker:
    """Logs optlab runs to MLflow; register it with ``pm.register(tracker, name=...)``.

    The constructor checks the store and creates the experiment, before any training.

    Parameters
    ----------
    uri : str
        Tracking URI (see :func:`~optlab._tracking.resolve_tracking_uri`).
    experiment_name : str
        The MLflow experiment (the spec's ``name``).
    plots : bool
        Draw the figures: per run (learning curves, weight templates, confusion matrix) and
        the comparison (``tracking.figures`` of the spec).
    flush_interval_s : float
        Evaluation points are buffered and written at the first evaluation point after this
        many seconds, and at the end of the run.
    retry_s : float, optional
        How long a write keeps being retried while the store is unreachable (default
        ``$OPTLAB_TRACKING_RETRY_S``, else 60 s); then
        :class:`~optlab._tracking.retry.TrackingUnavailable` ends the run as FAILED.
    step_points : int
        Most points logged per curve and run (>= 2): longer curves are thinned evenly,
        keeping the first and the last point; ``steps.npz`` keeps every step.
    interrupted : callable, optional
        Returns the signal that asked the invocation to stop (or ``None``): waiting for an
        unreachable store ends then.
    description : str
        The spec's ``description``: set as the experiment's description in MLflow.
    resume : str
        The command that finishes the remaining runs, for the message of a lost store.
    uri_label : str
        What the user passes another store by, in hints (``--tracking-uri``; the Python
        API's ``tracking_uri``).

    Raises
    ------
    TrackingError
        The store is unusable (bad scheme, unwritable folder, unreachable server), or
        ``retry_s``/``OPTLAB_TRACKING_RETRY_S`` is not a number of seconds.
    """

    #: most metric points per ``log_batch`` call (MLflow's limit)
    max_batch = _MAX_METRICS

    def __init__(
        self,
        uri: str,
        experiment_name: str,
        *,
        plots: bool = True,
        flush_interval_s: float = 2.0,
        retry_s: float | None = None,
        step_points: int = DEFAULT_STEP_POINTS,
        interrupted: Callable[[], str | None] | None = None,
        description: str = "",
        resume: str = RESUME,
        uri_label: str = URI_LABEL,
    ) -> None:
        if step_points < 2:
            raise ValueError(
                f"step_points must be at least 2 (the first and last step), got {step_points}"
            )
        self.uri = uri
        self.experiment_name = experiment_name
        self.plots = plots
        self.flush_interval_s = flush_interval_s
        self.step_points = step_points
        self.description = description
        self.uri_label = uri_label
        self.experiment_id = ""
        self.parent_run_id: str | None = None
        self._client: Any = None
        self._lock = threading.RLock()
        self._children: dict[str, _Child] = {}
        #: the MLflow run id of each run started under the latest parent run, by run key
        self.run_ids: dict[str, str] = {}
        self._counts = {"FINISHED": 0, "FAILED": 0, "KILLED": 0}
        self._retry = Retrier(uri, retry_budget(retry_s), interrupted=interrupted, resume=resume)
        self._start_failed: set[str] = set()  # runs whose child run could not be created
        self.open()

    def open(self) -> None:
        """Check the store and get or create the experiment (idempotent)."""
        if self._client is not None:
            return
        # the CLI prints where runs went; MLflow would print a URL per run to stdout
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        bound_http_retries()  # the retry budget decides how long to wait
        quiet_no_room_logs()  # a full disk is reported in one line, without MLflow's traceback
        client = connect(self.uri, uri_label=self.uri_label)
        self.experiment_id = ensure_experiment(client, self.experiment_name, self.uri)
        self._client = client
        if self.description:  # the spec's description, as the experiment's in MLflow
            what = "set the experiment's description"
            self.call(
                what, client.set_experiment_tag, self.experiment_id, NOTE_TAG, self.description
            )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    @property
    def retry_s(self) -> float:
        """How long a write is retried while the store is unreachable (seconds)."""
        return self._retry.budget_s

    @property
    def unreachable(self) -> str | None:
        """The message writes fail with since the store was lost (``None`` while it works)."""
        return self._retry.lost

    @property
    def ended(self) -> dict[str, int]:
        """How many runs of the current (or last) invocation were recorded, by status."""
        return dict(self._counts)

    def out_of_room(self, error: BaseException, what: str) -> str | None:
        """Whether ``error``, of a write made outside :meth:`_call` (the claims' heartbeat),
        says the store has no room: then the store is lost (:attr:`unreachable`), the run in
        progress fails at its next evaluation point, and this is the message."""
        return self._retry.out_of_room(error, what)

    def _end_quietly(self, run_id: str, status: str, reason: str) -> None:
        """One attempt, without retries, to end a run once the store has no room: a status
        may fit where points or files did not; where it does not either, ``--resume`` ends
        the run later (as after ``kill -9``)."""
        from mlflow.exceptions import MlflowException

        with suppress(MlflowException, OSError):
            self.client.set_tag(run_id, STATUS_REASON_TAG, _clip(reason, 8000))
            self.client.set_terminated(run_id, status, _ms(time.time()))

    def pending_points(self, run_name: str) -> int:
        """Metric points of an open run still waiting in the buffer (not yet acknowledged)."""
        with self._lock:
            child = self._children.get(run_name)
        return 0 if child is None else child.count()

    @property
    def client(self) -> Any:
        """The ``MlflowClient`` (reconnected after unpickling)."""
        if self._client is None:
            self._client = connect(self.uri, uri_label=self.uri_label)
        return self._client

    # ------------------------------------------------------------------------ plumbing
    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, retried while the store is unreachable (only for writes
        that are safe to repeat, see :mod:`optlab._tracking.retry`)."""
        from mlflow.exceptions import MlflowException

        try:
            with self._lock:
                return self._retry.call(what, fn, *args, **kwargs)
        except (MlflowException, OSError) as exc:
            full = self._retry.out_of_room(exc, what)
            if full is not None:  # the run fails; so does every later write, at once
                raise TrackingUnavailable(full) from exc
            raise TrackingError(
                f"tracking store {self.uri!r}: could not {what}: {first_line(exc)}"
            ) from exc

    def _buffer_steps(self, child: _Child, steps: StepHistory) -> None:
        """Buffer the run's per-step curves, thinned to :attr:`step_points` per metric."""
        with self._lock:
            child.pending.append(step_points(thinned(steps, self.step_points)))
            child.steps = []

    def _flush(self, name: str, child: _Child, meanwhile: Callable[[], None] | None = None) -> None:
        """Write the run's buffered points with ``log_batch``, at most :attr:`max_batch` a
        call; a chunk leaves the buffer only once the store acknowledged it (a re-sent point
        is not stored twice: its timestamp is fixed).

        With ``meanwhile`` (drawing and logging the run's figures), the chunks are first
        written by a thread while ``meanwhile()`` runs; what that thread could not store is
        then written here, with retries. (MLflow's own asynchronous logging, tried for this,
        was slower: benchmarks/README.md, "Measurements behind the code".)"""
        with self._lock:
            batch = Points.concat(child.pending)
            child.pending = [
                batch[i : i + self.max_batch] for i in range(0, len(batch), self.max_batch)
            ]
            if meanwhile is not None:
                with ThreadPoolExecutor(1, thread_name_prefix="optlab-tracking") as writer:
                    sent = [
                        (chunk, writer.submit(self.client.log_batch, child.run_id, chunk.metrics()))
                        for chunk in child.pending
                    ]
                    meanwhile()
                    child.pending = [chunk for chunk, write in sent if write.exception()]
            while child.pending:
                metrics = child.pending[0].metrics()
                self.call(
                    f"log metrics of '{name}'", self.client.log_batch, child.run_id, metrics=metrics
                )
                del child.pending[0]
            child.flushed_at = time.monotonic()

    def _create_run(
        self, what: str, run_name: str, tags: dict[str, str], started_at: float | None = None
    ) -> str:
        """Create a run (starting at ``started_at``, default now); if an attempt failed, first
        look for the run it may have created."""
        start_time = _ms(time.time() if started_at is None else started_at)
        attempts = 0

        def create() -> Any:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                earlier = self._created_earlier(run_name, start_time, tags)
                if earlier is not None:
                    return earlier
            return self.client.create_run(
                self.experiment_id, start_time=start_time, run_name=run_name, tags=tags
            )

        return str(self.call(what, create).info.run_id)

    def _created_earlier(self, run_name: str, start_time: int, tags: Mapping[str, str]) -> Any:
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"attributes.start_time = {start_time} and "
            f"tags.`{PID_TAG}` = '{tags[PID_TAG]}'",
        )
        for run in found:
            same = all(run.data.tags.get(k) == tags[k] for k in (HOST_TAG, ROLE_TAG))
            if same and run.info.run_name == run_name:
                return run
        return None

    def _own_tags(self, role: str) -> dict[str, str]:
        return {ROLE_TAG: role, PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}

    def end_run(
        self,
        run_id: str,
        status: str,
        reason: str | None,
        what: str,
        finished_at: float | None = None,
    ) -> None:
        if reason:
            self.call(what, self.client.set_tag, run_id, STATUS_REASON_TAG, _clip(reason, 8000))
        end = _ms(time.time() if finished_at is None else finished_at)
        self.call(what, self.client.set_terminated, run_id, status, end)

    # ------------------------------------------------------------------------ parent run
    @contextmanager
    def parent(
        self,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        started_at: float | None = None,
    ) -> Iterator[str]:
        """One parent run around an invocation (that started at ``started_at``, default
        now); yields its run id.

        Ends FINISHED; KILLED on ``KeyboardInterrupt``/:class:`~optlab._errors.RunInterrupted`;
        FAILED (with ``optlab.status_reason``) if the invocation raised. Child runs still open
        at exit are ended the same way.
        """
        from mlflow.entities import RunTag

        run_tags = {k: _clip(str(v), _MAX_TAG_VALUE) for k, v in (tags or {}).items()}
        run_tags.update(self._own_tags("invocation"))
        with self._lock:  # a new invocation tries a store lost by an earlier one again
            self._retry.reset()
            self._children.clear()
            self.run_ids.clear()
            self._start_failed.clear()
        run_id = self._create_run("start the parent run", run_name, run_tags, started_at)
        self.parent_run_id = run_id
        self._counts = dict.fromkeys(self._counts, 0)
        status, reason = "FINISHED", None
        try:
            yield run_id
        except (KeyboardInterrupt, RunInterrupted) as exc:
            status, reason = "KILLED", f"interrupted ({type(exc).__name__}: {exc})"
            raise
        except BaseException as exc:
            status, reason = "FAILED", f"{type(exc).__name__}: {first_line(exc)}"
            raise
        finally:
            if self._retry.full is not None:  # no room: end the runs if a status still fits
                with self._lock:
                    leftovers, self._children = list(self._children.items()), {}
                for _, child in leftovers:
                    self._end_quietly(child.run_id, "FAILED", self._retry.full)
                ended = "FAILED" if status == "FINISHED" else status
                self._end_quietly(run_id, ended, reason or self._retry.full)
            try:
                with self._lock:
                    leftovers = list(self._children.items())
                for name, child in leftovers:  # a child stays (with its buffer) if this fails
                    self._buffer_steps(child, StepHistory.concat(child.steps))
                    self._flush(name, child)
                    self.end_run(
                        child.run_id,
                        "FINISHED" if status == "FINISHED" else status,
                        None if status == "FINISHED" else f"invocation ended: {reason}",
                        f"end run '{name}'",
                    )
                    with self._lock:
                        self._children.pop(name, None)
                counts = [RunTag(f"optlab.n_{k.lower()}", str(v)) for k, v in self._counts.items()]
                self.call("tag the parent run", self.client.log_batch, run_id, tags=counts)
                self.end_run(run_id, status, reason, "end the parent run")
            except TrackingError:
                if status == "FINISHED":
                    raise  # otherwise the invocation's own error is the one to report
            finally:
                self.parent_run_id = None

    # ------------------------------------------------------------------------ hooks
    @hookimpl
    def optlab_run_started(self, run: RunInfo) -> None:
        """Create the child run: tags, params (batches of 100) and ``spec.yaml`` (the run's
        resolved spec, runnable as it is)."""
        import yaml
        from mlflow.entities import Param

        tags = {k: _clip(str(v), _MAX_TAG_VALUE) for k, v in run.tags.items()}
        tags.update(self._own_tags("run"))
        tags[RUN_KEY_TAG] = run.key
        tags[DATA_TAG] = _clip(json.dumps(asdict(run.data)), _MAX_TAG_VALUE)
        if self.parent_run_id is not None:
            tags[PARENT_TAG] = self.parent_run_id
        try:
            run_id = self._create_run(f"start run '{run.name}'", run.name, tags, run.started_at)
            child = _Child(run_id)
        except OptlabError:
            with self._lock:
                self._start_failed.add(run.name)
            raise
        with self._lock:
            self._children[run.name] = child
            self.run_ids[run.key] = run_id
        params = [Param(k, _param_value(v)) for k, v in run.params.items()]
        for start in range(0, len(params), _MAX_PARAMS):
            chunk = params[start : start + _MAX_PARAMS]
            self.call(
                f"log params of '{run.name}'", self.client.log_batch, child.run_id, params=chunk
            )
        # a spec of this one run that `optlab run spec.yaml` runs again: the experiment's name,
        # the resolved settings, and the run's name as the one variant's
        # (without data.test for a dataset with its own test split, which refuses it)
        spec_data = run.spec.get("data")
        resolved = dict(run.spec)
        if run.data.own_test and isinstance(spec_data, dict):
            resolved["data"] = {k: v for k, v in spec_data.items() if k != "test"}
        runnable = {"name": self.experiment_name, **resolved, "variants": {run.name: {}}}
        spec = f"# run '{run.name}' of experiment '{self.experiment_name}', resolved\n" + (
            yaml.safe_dump(runnable, sort_keys=False, allow_unicode=True)
        )
        self.call(
            f"log spec of '{run.name}'", self.client.log_text, child.run_id, spec, "spec.yaml"
        )

    @hookimpl
    def optlab_epoch_ended(self, run: RunInfo, report: EpochReport) -> None:
        """Buffer the report's evaluation points (those of the first half of
        :attr:`step_points` evaluations; the rest are thinned when the run ends); write the
        buffer when ``flush_interval_s`` has passed, also once that half is buffered (the
        per-step curves are written when the run ends, thinned)."""
        if self._retry.full is not None:  # found by the heartbeat: nothing can be recorded
            raise TrackingUnavailable(self._retry.full)
        child = self._child(run)
        with self._lock:
            child.steps.append(report.steps)
            if child.evals_logged < self.step_points // 2:  # the rest: thinned, at the end
                child.pending.append(evaluation_points([report]))  # timestamps fixed now
                child.evals_logged += 1
            due = time.monotonic() - child.flushed_at >= self.flush_interval_s
        if due and child.pending:
            self._flush(run.name, child)

    @hookimpl
    def optlab_run_finished(
        self, run: RunInfo, result: RunResult, error: BaseException | None
    ) -> None:
        """Flush what was not reported, log final metrics and artifacts, end the child run
        (once every point is stored).

        Does nothing once the store is lost (:attr:`unreachable`) or if the run's child run
        could not be created: the run already failed with that error."""
        with self._lock:
            if self._retry.lost is not None or run.name in self._start_failed:
                self._start_failed.discard(run.name)
                return  # the run failed with the tracking error already
        child = self._child(run)
        rest = result.evaluations[child.evals_logged :]  # not buffered while it trained
        most = self.step_points - child.evals_logged
        metrics = [evaluation_points([rest[i] for i in spread(len(rest), most)])]
        child.evals_logged = len(result.evaluations)
        self._buffer_steps(child, result.steps)
        final = dict(result.metrics)
        if "best_val_accuracy" not in final:
            vals = [e.val_accuracy for e in result.evaluations if e.val_accuracy is not None]
            if vals:
                final["best_val_accuracy"] = max(vals)
        finals = {
            summary_key(k): float(v)
            for k, v in final.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)
        }
        metrics.append(Points.at(finals, _ms(time.time()), 0))  # step 0: bars in MLflow's charts
        with self._lock:
            child.pending += metrics
        self._flush(run.name, child, lambda: self._log_artifacts(run, result, child.run_id))
        reason = None
        if result.status != "FINISHED":
            reason = result.error or (f"{type(error).__name__}: {error}" if error else None)
            reason = reason or result.status.lower()
        self.end_run(
            child.run_id, result.status, reason, f"end run '{run.name}'", result.finished_at
        )
        with self._lock:
            self._children.pop(run.name, None)
            self._counts[result.status] = self._counts.get(result.status, 0) + 1

    def _child(self, run: RunInfo) -> _Child:
        with self._lock:
            child = self._children.get(run.name)
        if child is None:
            raise TrackingError(f"run '{run.name}' was not started in the tracker (no run_started)")
        return child

    # ------------------------------------------------------------------------ artifacts
    def _log_artifacts(self, run: RunInfo, result: RunResult, run_id: str) -> None:
        from optlab._tracking.artifacts import write_run_artifacts

        with tempfile.TemporaryDirectory(prefix="optlab-artifacts-") as tmp:
            write_run_artifacts(run, result, Path(tmp), plots=self.plots)
            if any(Path(tmp).iterdir()):
                self.call(f"log artifacts of '{run.name}'", self.client.log_artifacts, run_id, tmp)

    def log_comparison(
        self,
        results: Sequence[tuple[RunInfo, RunResult]],
        figure: bytes | None = None,
        run_ids: Mapping[str, str] | None = None,
    ) -> None:
        """Store the comparison on the parent run: ``comparison.md`` (the table),
        ``comparison.json`` (a record per run, :func:`~optlab._report.rows.run_records`, with
        the MLflow run ids of the runs started here and ``run_ids``, by run key, of the others:
        those ``--resume`` reused), ``comparison.png`` (``figure``, if it was drawn elsewhere;
        else drawn here unless :attr:`plots` is off), for a sweep ``val_accuracy_sweep.png``
        (:func:`~optlab._report.sweep.sweep_figure`), tag ``optlab.best_run`` and the best
        run's accuracies (for a group of replicates, ``optlab.best_group`` and
        ``optlab.best_group_runs``, the runs' names, and the group's mean accuracies)."""
        from mlflow.entities import Metric, RunTag

        from optlab._report import rows as summary
        from optlab._report.comparison import comparison_figure
        from optlab._report.sweep import SWEEP_FIGURE, sweep_figure

        run_id = self.parent_run_id
        if run_id is None:
            raise TrackingError("log_comparison needs an open parent run (use tracker.parent())")
        rows = summary.comparison_rows(results)
        with tempfile.TemporaryDirectory(prefix="optlab-comparison-") as tmp:
            folder = Path(tmp)
            (folder / "comparison.md").write_text(summary.rows_to_markdown(rows))
            reused = [info.name for info, _ in results if info.key in (run_ids or {})]
            records = summary.run_records(results, {**(run_ids or {}), **self.run_ids}, reused)
            (folder / "comparison.json").write_text(summary.records_to_json(records))
            if figure is not None:
                (folder / "comparison.png").write_bytes(figure)
            elif self.plots:
                comparison_figure(results, folder / "comparison.png")
            if self.plots:  # a sweep of one or two values: validation accuracy against them
                sweep_figure(rows, folder / SWEEP_FIGURE)
            self.call("log the comparison", self.client.log_artifacts, run_id, tmp)
        best = next((r for r in rows if r["best"]), None)
        if best is not None:
            now = _ms(time.time())
            metrics = [
                Metric(summary_key(k), float(best[k]), now, 0)
                for k in ("best_val_accuracy", "test_accuracy")
                if best[k] is not None
            ]
            if best["replicates"] > 1:  # a group of seeds: its name is no run's, its values means
                tags = [
                    RunTag("optlab.best_group", str(best["run"])),
                    RunTag("optlab.best_group_runs", ",".join(best["members"])),
                ]
            else:
                tags = [RunTag("optlab.best_run", str(best["run"]))]
            self.call(
                "log the comparison", self.client.log_batch, run_id, metrics=metrics, tags=tags
            )

    # ------------------------------------------------------------------------ resume

    def search_runs(self, filter_string: str) -> list[Any]:
        """Every run of the experiment matching ``filter_string`` (MLflow's search syntax),
        all pages, each search retried like any write."""
        runs: list[Any] = []
        token: str | None = None
        while True:
            page = self.call(
                "search runs",
                self.client.search_runs,
                [self.experiment_id],
                filter_string=filter_string,
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs
