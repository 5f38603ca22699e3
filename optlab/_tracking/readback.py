"""An invocation's runs read back from MLflow, for ``optlab compare`` and ``optlab landscape``.

The runs come back as the records they were logged from (:class:`~optlab.RunInfo`,
:class:`~optlab.RunResult`), so the rows, table and figures are drawn by :mod:`optlab._report`
exactly as after ``optlab run`` (the tracker stores the same report on the parent run).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np

from optlab._contract.records import (
    DataSummary,
    EpochReport,
    RunInfo,
    RunResult,
    RunStatus,
    StepHistory,
)
from optlab._contract.registry import did_you_mean
from optlab._errors import InputError, TrackingError, as_written
from optlab._report.comparison import comparison_figure
from optlab._report.rows import (
    STOPPED,
    comparison_rows,
    decoded_param,
    nested_params,
    records_to_json,
    rows_to_markdown,
    run_records,
)
from optlab._report.sweep import SWEEP_FIGURE, sweep_figure
from optlab._tracking import artifacts as artifact_files
from optlab._tracking.points import (
    CURVES,
    EPOCH_METRICS,
    STEP_METRICS,
    SUMMARY,
    optlab_name,
)
from optlab._tracking.store import URI_LABEL, connect, experiment_names
from optlab._tracking.tracker import (
    DATA_TAG,
    LEFT_TAG,
    PARENT_TAG,
    PLAN_TAG,
    REUSED_TAG,
    ROLE_TAG,
    RUN_KEY_TAG,
    STATUS_REASON_TAG,
    read_list_tags,
)

__all__ = [
    "Compared",
    "compare",
    "landscape",
    "load_latest_invocation",
    "read_runs",
]


def _search_all(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    runs: list[Any] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _history(client: Any, run_id: str, key: str) -> tuple[Any, Any, Any]:
    """(steps, timestamps in s, values) of a metric's full history, sorted by step then time."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    steps = np.array([m.step for m in points], dtype=np.int64)
    stamps = np.array([m.timestamp for m in points], dtype=np.float64) / 1000.0
    values = np.array([m.value for m in points], dtype=np.float64)
    return steps, stamps, values


def _unflatten(params: dict[str, str]) -> dict[str, Any]:
    """Dotted string params back to a nested dict, JSON values decoded where they parse."""
    return nested_params({key: decoded_param(text) for key, text in sorted(params.items())})


def _data_summary(tags: dict[str, str], name: str) -> DataSummary:
    try:
        raw = json.loads(tags[DATA_TAG])
        raw["classes"] = tuple(raw["classes"])
        if raw.get("image_shape") is not None:
            raw["image_shape"] = tuple(raw["image_shape"])
        return DataSummary(**raw)
    except (KeyError, ValueError, TypeError):
        return DataSummary(name, 0, 0, 0, 0, 0, (), "", "")


def _saved_steps(client: Any, run_id: str) -> StepHistory | None:
    """The run's per-step history at full resolution, from its ``steps.npz`` artifact (runs
    logged before optlab wrote one have none)."""
    if not any(a.path == "steps.npz" for a in client.list_artifacts(run_id)):
        return None
    with tempfile.TemporaryDirectory(prefix="optlab-steps-") as tmp:
        path = client.download_artifacts(run_id, "steps.npz", tmp)
        with np.load(path, allow_pickle=False) as saved:  # (older files have no elapsed)
            names = [f.name for f in fields(StepHistory) if f.name in saved.files]
            return StepHistory(**{name: saved[name] for name in names})


def _read_run(client: Any, run: Any, experiment: str) -> tuple[RunInfo, RunResult]:
    run_id = run.info.run_id
    tags = dict(run.data.tags)
    params = dict(run.data.params)
    logged = run.data.metrics
    saved = _saved_steps(client, run_id)
    curves = EPOCH_METRICS if saved is not None else (*STEP_METRICS, *EPOCH_METRICS)
    keys = {optlab_name(key): key for key in logged if not key.startswith(SUMMARY)}
    series = {k: _history(client, run_id, keys[k]) for k in curves if k in keys}
    steps = saved if saved is not None else StepHistory()
    if "loss" in series:  # no steps.npz: the logged (maybe thinned) curves
        examples, stamps, loss = series["loss"]
        n = len(loss)
        parts = [series[k][2] if k in series else np.zeros(n) for k in STEP_METRICS[1:]]
        n = min(n, *(len(p) for p in parts))
        steps = StepHistory(examples[:n], stamps[:n], loss[:n], parts[0][:n], parts[1][:n])
    evaluations: list[EpochReport] = []
    if "epoch" in series:
        at, stamps, epochs = series["epoch"]
        train = (
            dict(zip(*series["train_accuracy"][::2], strict=True))
            if "train_accuracy" in series
            else {}
        )
        val = (
            dict(zip(*series["val_accuracy"][::2], strict=True)) if "val_accuracy" in series else {}
        )
        full = dict(zip(*series["train_loss"][::2], strict=True)) if "train_loss" in series else {}
        for step, stamp, epoch in zip(at.tolist(), stamps.tolist(), epochs.tolist(), strict=True):
            i = int(np.searchsorted(steps.examples, step, side="right")) - 1
            evaluations.append(
                EpochReport(
                    epoch=epoch,
                    examples=step,
                    time=stamp,
                    steps=StepHistory(),
                    train_accuracy=float(train.get(step, float("nan"))),
                    val_accuracy=float(val[step]) if step in val else None,
                    loss=float(steps.loss[i]) if i >= 0 else float("nan"),
                    train_loss=float(full[step]) if step in full else None,
                    # on the run's clock: its last step before the evaluation
                    elapsed=float(steps.elapsed[i]) if i >= 0 else 0.0,
                )
            )
    metrics = {  # summary/... (and the latest accuracies of runs logged before the sections)
        optlab_name(k): float(v)
        for k, v in logged.items()
        if not k.startswith(CURVES) and k not in (*STEP_METRICS, "epoch")
    }
    name = str(run.info.run_name)
    info = RunInfo(
        name=name,
        key=tags.get(RUN_KEY_TAG, ""),
        experiment=experiment,
        params=params,
        spec=_unflatten(params),
        tags={k: v for k, v in tags.items() if not k.startswith("mlflow.")},
        data=_data_summary(tags, params.get("data.name", "")),
    )
    # RUNNING as MLflow reports it (load_latest_invocation marks those whose process died)
    status = cast(RunStatus, run.info.status)
    result = RunResult(
        name=name,
        status=status,
        error=tags.get(STATUS_REASON_TAG),
        steps=steps,
        evaluations=evaluations,
        metrics=metrics,
    )
    return info, result


def read_runs(client: Any, run_ids: list[str], experiment: str) -> list[tuple[RunInfo, RunResult]]:
    """Read back the runs ``run_ids`` of ``experiment`` (as :func:`load_latest_invocation`
    reads each run), in the order given."""
    return [_read_run(client, client.get_run(run_id), experiment) for run_id in run_ids]


def load_latest_invocation(
    experiment_name: str, uri: str, uri_label: str = URI_LABEL
) -> list[tuple[RunInfo, RunResult]]:
    """Read back the child runs of an experiment's latest invocation (parent run);
    ``uri_label`` names how the user passes another store, in hints (``--tracking-uri``; the
    Python API's ``tracking_uri``).

    Returns
    -------
    list of (RunInfo, RunResult)
        In start order, with params (as logged: strings), tags, statuses, the full ``loss``,
        ``data_loss``, ``reg_loss`` histories (``StepHistory``), one ``EpochReport`` per
        evaluation point and the final metrics. ``W`` and ``confusion`` are not loaded.

    Raises
    ------
    InputError
        No store, unknown experiment (with did-you-mean) or no invocation yet.
    TrackingError
        The store cannot be used.
    """
    return _latest_invocation(experiment_name, uri, uri_label)[0]


def _latest_invocation(
    experiment_name: str, uri: str, uri_label: str
) -> tuple[list[tuple[RunInfo, RunResult]], dict[str, str], list[str]]:
    """:func:`load_latest_invocation`'s runs, their MLflow run ids by run key, and the names of
    those the invocation did not train (reused, or left to another invocation)."""
    client = connect(uri, must_exist=True, write=False, uri_label=uri_label)
    runs, parent_id = _latest_runs(client, experiment_name, uri)
    stopped = _stopped(client, runs)
    results = [_read_run(client, run, experiment_name) for run in runs]
    loaded = [
        (info, replace(result, status=cast(RunStatus, STOPPED)))
        if run.info.run_id in stopped
        else (info, result)
        for run, (info, result) in zip(runs, results, strict=True)
    ]
    ids = {  # (runs logged before optlab tagged run keys have none)
        info.key: str(run.info.run_id)
        for run, (info, _) in zip(runs, results, strict=True)
        if info.key
    }
    elsewhere = [
        info.name
        for run, (info, _) in zip(runs, results, strict=True)
        if run.data.tags.get(PARENT_TAG) != parent_id
    ]
    return loaded, ids, elsewhere


def _stopped(client: Any, runs: list[Any]) -> set[str]:
    """The ids of the RUNNING runs among ``runs`` whose invocation has stopped: it ended, or
    its claims are stale (its process on this host is gone, or it has not beaten for the
    staleness interval; :meth:`~optlab._tracking.claims.Holder.stale`), as after ``kill -9``.
    MLflow keeps them RUNNING until a ``--resume`` ends them."""
    from optlab._tracking.claims import Holder, stale_after

    stopped: set[str] = set()
    parents: dict[str, Any] = {}
    for run in runs:
        parent_id = run.data.tags.get(PARENT_TAG)
        if run.info.status != "RUNNING" or parent_id is None:
            continue
        if parent_id not in parents:
            parents[parent_id] = client.get_run(parent_id)
        parent = parents[parent_id]
        if parent.info.status != "RUNNING" or Holder.of(parent).stale(stale_after()):
            stopped.add(run.info.run_id)
    return stopped


def _latest_parent(client: Any, experiment_name: str, uri: str) -> tuple[str, Any]:
    """The experiment's id and the parent run of its latest invocation.

    Raises
    ------
    InputError
        Unknown experiment (with did-you-mean) or no invocation yet.
    """
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        names = experiment_names(client)
        hint = did_you_mean(experiment_name, names)
        known = f"; experiments: {', '.join(sorted(names))}" if names and not hint else ""
        raise InputError(f"tracking store {uri!r}: no experiment '{experiment_name}'{hint}{known}")
    exp_id = str(experiment.experiment_id)
    parents = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'invocation'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not parents:
        raise InputError(
            f"experiment '{experiment_name}' in {uri!r} has no optlab invocation yet; "
            "run it first (optlab run SPEC)"
        )
    return exp_id, parents[0]


def _latest_runs(client: Any, experiment_name: str, uri: str) -> tuple[list[Any], str]:
    """The MLflow runs of an experiment's latest invocation, in the plan's order (see
    :func:`load_latest_invocation`), and the id of its parent run."""
    exp_id, parent = _latest_parent(client, experiment_name, uri)
    children = _search_all(client, exp_id, f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
    # after --resume: the finished runs of earlier invocations that this one reused
    reused = read_list_tags(parent.data.tags, REUSED_TAG)
    runs = [client.get_run(run_id) for run_id in reused] + list(children)
    # the runs it left to another invocation still training them: the latest run of each key
    # (that invocation's, RUNNING or ended by now), none while it has not started it
    have = {r.data.tags.get(RUN_KEY_TAG) for r in runs}
    for key in read_list_tags(parent.data.tags, LEFT_TAG):
        if key not in have:
            latest = client.search_runs(
                [exp_id],
                filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            runs.extend(latest)
    # in the plan's order (start order differs after --resume and with --jobs); runs of a
    # parent logged before optlab named its plan in start order
    plan = {key: i for i, key in enumerate(read_list_tags(parent.data.tags, PLAN_TAG))}
    runs.sort(key=lambda r: (plan.get(r.data.tags.get(RUN_KEY_TAG), len(plan)), r.info.start_time))
    return runs, str(parent.info.run_id)


class Compared(NamedTuple):
    """What :func:`compare` read and drew."""

    #: a record per run (:func:`~optlab._report.rows.run_records`, with its MLflow run id)
    records: list[dict[str, Any]]
    #: the comparison table's rows
    rows: list[dict[str, Any]]
    #: the comparison figure, when an ``out_dir`` was given
    figure: Path | None
    #: each run as read back, in the plan's order
    runs: list[tuple[RunInfo, RunResult]]


def compare(
    experiment_name: str,
    uri: str,
    out_dir: Path | None,
    uri_label: str = URI_LABEL,
    out_label: str = "--out",
) -> Compared:
    """The records of the latest invocation's runs (:func:`~optlab._report.rows.run_records`,
    with their MLflow run ids), the rows of its comparison table, with ``out_dir`` its figure,
    and the runs read back (``uri_label``: as :func:`load_latest_invocation`; ``out_label``
    names ``out_dir`` in messages as the user passed it: ``--out``, the Python API's ``out``).

    Writes ``comparison.png``, ``comparison.json`` (the records) and ``comparison.md`` (the
    table) in ``out_dir`` (``~`` expanded; created if needed), for a sweep of one or two values
    ``val_accuracy_sweep.png`` (:func:`~optlab._report.sweep.sweep_figure`), and returns the
    comparison figure's path.
    """
    results, run_ids, reused = _latest_invocation(experiment_name, uri, uri_label)
    if not results:
        raise InputError(_no_runs(experiment_name, uri))
    rows = comparison_rows(results)
    records = run_records(results, run_ids, reused)
    if out_dir is None:
        return Compared(records, rows, None, results)
    out_dir = out_dir.expanduser()  # not a folder named "~" in the working folder
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "comparison.json").write_text(records_to_json(records))
        (out_dir / "comparison.md").write_text(rows_to_markdown(rows))
        figure = comparison_figure(results, out_dir / "comparison.png")
        sweep_figure(rows, out_dir / SWEEP_FIGURE)  # a sweep of one or two values only
    except OSError as exc:
        raise _cannot_write(out_dir, exc, out_label) from exc
    return Compared(records, rows, figure, results)


def _no_runs(experiment_name: str, uri: str) -> str:
    """Why the latest invocation has no run to compare: still starting, or ended (Ctrl-C
    before a run ended, ``kill -9``, a lost store) before it recorded one, with the command
    that runs them."""
    import shlex

    from optlab._tracking.claims import Holder, stale_after
    from optlab._tracking.store import resolve_tracking_uri

    _, parent = _latest_parent(connect(uri, must_exist=True, write=False), experiment_name, uri)
    holder = Holder.of(parent)
    status = parent.info.status
    ended = holder.stale(stale_after()) if status == "RUNNING" else f"it ended {status}"
    if ended is None:
        return (
            f"experiment '{experiment_name}': its latest invocation ({holder}) has no run "
            "recorded yet (still starting; a run is recorded once it ends under --jobs)"
        )
    command = ["optlab", "run", parent.data.tags.get("optlab.spec_file", "SPEC"), "--resume"]
    if uri != resolve_tracking_uri(None, None):
        command += ["--tracking-uri", uri]
    return (
        f"experiment '{experiment_name}': its latest invocation ({holder}) recorded no run "
        f"({ended}); run them with `{shlex.join(command)}`"
    )


def _cannot_write(out_dir: Path, exc: OSError, label: str = "--out") -> InputError:
    """The error for an ``--out`` folder (``label``) that could not be written (a file of that
    name was 'cannot write (File exists)')."""
    out = as_written(label, str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        return InputError(f"{out}: a file, not a folder; give the folder to write in")
    return InputError(f"{out}: cannot write ({exc.strerror or exc})")


def _cannot_store(uri: str, run_name: str, file: str, exc: OSError) -> TrackingError:
    """The error for a figure that could not be stored on its run: the folder of the run's
    files that refused it, to be made writable (another store would not hold the run)."""
    where = Path(exc.filename).parent if isinstance(exc.filename, str) else None
    folder = f" in {where}" if where is not None else ""
    fix = f"make {where} writable" if where is not None else "make its files writable"
    return TrackingError(
        f"tracking store {uri!r}: cannot store {file} on run '{run_name}'{folder} "
        f"({exc.strerror or exc}); the run's figures are stored with it: {fix}"
    )


def _folder_name(run_name: str) -> str:
    """The folder of a run in ``--out``: its name as one path component, never a path (a
    variant named ``..`` or ``../x`` wrote outside the folder given): separators become
    ``_``, and a leading dot (``.``, ``..``, a hidden folder) gets a ``_`` before it."""
    name = run_name.replace("/", "_").replace("\\", "_")
    return f"_{name}" if name.startswith(".") or not name else name


def _rebuilt_run(spec_text: str, experiment_name: str) -> Any:
    """The RunSpec of a run's stored ``spec.yaml`` (its resolved spec), validated again."""
    import yaml

    from optlab._spec.load import load_experiment

    resolved = yaml.safe_load(spec_text)
    if not isinstance(resolved, dict):
        raise InputError("the run's spec.yaml is not a mapping")
    with tempfile.TemporaryDirectory(prefix="optlab-landscape-") as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump({"name": experiment_name, **resolved}, sort_keys=False))
        return load_experiment(path, []).runs[0]


def landscape(
    experiment_name: str,
    uri: str,
    out_dir: Path | None,
    run_name: str | None = None,
    seed: int = 0,
) -> list[tuple[str, Path | None]]:
    """Draw the loss landscape (:func:`optlab._training.landscape.loss_landscape`) of finished runs
    of an experiment's latest invocation and store it as each run's ``loss_landscape.png``
    (and the slices' numbers as its ``loss_landscape.npz``:
    :func:`~optlab._tracking.artifacts.write_landscape`, as a run does when its spec asks).

    Each run is rebuilt from its ``spec.yaml`` (the same data, split and preprocessing, from
    its seed) and its ``weights.npz``; the directions are drawn from ``seed``.

    Parameters
    ----------
    run_name : str, optional
        Only this run (default: every FINISHED run with weights).
    out_dir : path, optional
        Also write ``<out_dir>/<run>/loss_landscape.png`` (the run's name as one folder:
        :func:`_folder_name`).

    Returns
    -------
    list of (run name, path in ``out_dir`` or None)

    Raises
    ------
    InputError
        No such experiment, invocation or run; a run without weights; no run to draw; data
        that are not those a run trained on (their sha256 differs from its tag).
    """
    from optlab._training.data import load_data
    from optlab._training.landscape import loss_landscape
    from optlab._training.preflight import data_rng
    from optlab._training.runner import build_objective

    out_dir = out_dir.expanduser() if out_dir is not None else None  # as compare's
    client = connect(uri, must_exist=True)
    runs, _ = _latest_runs(client, experiment_name, uri)
    names = [str(r.info.run_name) for r in runs]
    every = ", ".join(f"{r.info.run_name} {r.info.status}" for r in runs)
    if run_name is not None:
        runs = [r for r in runs if r.info.run_name == run_name]
        if not runs:
            hint = did_you_mean(run_name, names)
            raise InputError(
                f"experiment '{experiment_name}': its latest invocation has no run "
                f"'{run_name}'{hint or '; runs: ' + ', '.join(names)}"
            )
    else:
        runs = [r for r in runs if r.info.status == "FINISHED"]
    drawn: list[tuple[str, Path | None]] = []
    for run in runs:
        name, run_id = str(run.info.run_name), run.info.run_id
        stored = {a.path for a in client.list_artifacts(run_id)}
        if not {"spec.yaml", "weights.npz"} <= stored:
            if run_name is None:
                continue
            raise InputError(f"run '{name}' has no learned weights (it did not finish)")
        with tempfile.TemporaryDirectory(prefix="optlab-landscape-") as tmp:
            folder = Path(tmp)
            spec = Path(client.download_artifacts(run_id, "spec.yaml", tmp)).read_text()
            with np.load(client.download_artifacts(run_id, "weights.npz", tmp)) as saved:
                W = saved["W"]
            rebuilt = _rebuilt_run(spec, experiment_name)
            data = load_data(rebuilt.dataset, rebuilt.data, data_rng(rebuilt))
            trained_on = run.data.tags.get("optlab.data_sha256")
            if trained_on and trained_on != data.summary.sha256:  # rewritten since the run
                raise InputError(
                    f"run '{name}': dataset '{rebuilt.dataset.name}' is not the data it trained "
                    "on (changed since: another sha256); restore those data to draw its landscape"
                )
            objective, _ = build_objective(rebuilt, data, None, np.random.default_rng(seed))
            if W.shape != objective.shape:
                raise InputError(
                    f"run '{name}': weights of shape {W.shape} do not fit its data "
                    f"({objective.shape}); was the dataset changed?"
                )
            slices = loss_landscape(objective, W, np.random.default_rng(seed))
            for file in artifact_files.write_landscape(slices, folder, name):
                try:
                    client.log_artifact(run_id, str(file))
                except OSError as exc:  # its runs' files are read-only (a traceback)
                    raise _cannot_store(uri, name, file.name, exc) from exc
            figure = folder / artifact_files.LANDSCAPE_FIGURE
            copy = None
            if out_dir is not None:
                try:
                    (out_dir / _folder_name(name)).mkdir(parents=True, exist_ok=True)
                    copy = out_dir / _folder_name(name) / artifact_files.LANDSCAPE_FIGURE
                    copy.write_bytes(figure.read_bytes())
                except OSError as exc:
                    raise _cannot_write(out_dir, exc) from exc
        drawn.append((name, copy))
    if not drawn:  # no run named, and none finished with weights
        raise InputError(
            f"experiment '{experiment_name}': its latest invocation has no finished run with "
            f"learned weights ({every or 'no runs'}); nothing to draw"
        )
    return drawn
