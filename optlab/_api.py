"""optlab from Python: run an experiment, load a spec, compare runs - in a script or a notebook.

::

    import optlab

    results = optlab.run("experiments/svm_vs_softmax.yaml", overrides={"optimizer.epochs": 5})
    results.to_pandas()              # a row per run: name, status, optimizer.lr, metrics...
    results.comparison               # the table `optlab run` prints (a Table)
    optlab.compare("svm_vs_softmax").to_pandas()   # the same Results, read back from MLflow

A spec is a path to a YAML file or the same content as a dict. Nothing here exits by itself:
bad input raises :class:`~optlab._errors.InputError` (a :class:`~optlab._errors.SpecError` with
every located issue for a bad spec), a failed run is a row whose ``status`` is ``FAILED``, and
signal handlers are installed only while runs train and restored after, so that a notebook
can call :func:`run` again. Ctrl-C ends the current run as KILLED (its metrics written), then
:func:`run` raises ``KeyboardInterrupt``: a script's loop over :func:`run` stops. SIGTERM
(``kill PID``) ends the run the same way, then goes to the handler the caller had: Python's
own ends the process, as without optlab.
"""

from __future__ import annotations

import inspect
import json
import numbers
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from optlab._errors import InputError, OptlabWarning
from optlab._meta import exported

if TYPE_CHECKING:
    import pandas

    from optlab._contract.records import RunInfo, RunResult
    from optlab._spec.experiment import Experiment

__all__ = ["Results", "Table", "compare", "load_spec", "run"]

Spec = str | PathLike[str] | Mapping[str, Any]
Overrides = Mapping[str, Any] | Sequence[str] | None

#: held while :func:`run` runs: the observers it registers and the stop flag are the
#: process's, so that two calls at once (from two threads) would mix their runs
_RUNNING = threading.Lock()


def _refuse(name: str, expected: str, value: object, hint: str = "") -> InputError:
    """The one message of a wrong argument: ``name: expected ..., got ...``."""
    got = f"{value!r}"
    got = got if len(got) <= 60 else got[:57] + "..."
    return InputError(f"{name}: expected {expected}, got {type(value).__name__} {got}{hint}")


def _check_spec(spec: object) -> None:
    if isinstance(spec, Mapping | PathLike) or (isinstance(spec, str) and "\n" not in spec):
        return
    if isinstance(spec, str):  # YAML text: say what to pass instead of "no such file"
        raise _refuse("spec", "a path or a mapping (for YAML text: yaml.safe_load(text))", spec)
    raise _refuse("spec", "a path (str or os.PathLike) or a mapping", spec)


def _check_options(**options: object) -> int:
    """Every keyword argument of :func:`run` other than the spec, checked in one place (the
    executor's name, ``jobs``' range and the overrides' items are checked where they are
    used); returns ``jobs`` as an int (``np.int64(2)`` is 2, as numpy values are in specs)."""
    for name in ("track", "resume", "fail_fast", "quiet"):
        if not isinstance(options[name], bool):
            raise _refuse(name, "True or False", options[name])
    jobs = options["jobs"]
    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral):
        raise _refuse("jobs", "an int", jobs)
    for name in ("tracking_uri", "scheduler"):
        value = options[name]
        if value is not None and not isinstance(value, str):
            path = "; for a SQLite store at a path: f'sqlite:///{path}'"
            hint = path if name == "tracking_uri" and isinstance(value, PathLike) else ""
            raise _refuse(name, "a str or None", value, hint)
    if not isinstance(options["executor"], str):
        raise _refuse("executor", "a str ('local' or 'dask')", options["executor"])
    return int(jobs)


def _check_not_reimported() -> None:
    """Refuse a call made by the top level of a script that a worker process is importing.

    Worker processes (``jobs > 1``) start by importing the script that started them, as
    ``__mp_main__`` (Python's multiprocessing does, to find what the script defines): a call
    of :func:`run` at its top level would run the experiment again in each worker, and start
    workers of its own. The error names the cure, Python's usual one, in one line on standard
    error, and ends the worker (exit status 2): raised, it reached the user as multiprocessing's
    traceback of the worker's start, once per worker.
    """
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            print(
                "optlab: error: optlab.run was called by a worker process importing the "
                "script that started it: with jobs > 1, call optlab.run under "
                '`if __name__ == "__main__":`',
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(InputError.exit_code)
        frame = frame.f_back


def _check_script_is_a_file(jobs: int, executor: str) -> None:
    """Refuse local workers where they cannot import the script that started them: one read
    from standard input (``python - <<EOF``) has ``<stdin>`` for its file, and each run would
    fail in its worker with a traceback. (``python -c``, notebooks and the REPL have no file:
    the workers import nothing.)"""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if jobs > 1 and executor == "local" and isinstance(path, str) and not os.path.isfile(path):
        raise InputError(
            f"jobs={jobs}: worker processes start by importing the script that started them, "
            f"and {path!r} is no file (a script read from standard input?): save the script "
            "to a file and run that, or use jobs=1"
        )


def _as_json(key: object, value: object) -> str:
    """``value`` as JSON (which is YAML), numpy values and paths as plain ones
    (:func:`~optlab._spec.load.plain_data`)."""
    from optlab._spec.load import plain_data

    try:
        return json.dumps(plain_data(value))
    except (TypeError, ValueError) as exc:  # not a value a spec can hold
        expected = "a number, a string, a bool, a list or a mapping of those"
        raise _refuse(f"overrides[{key!r}]", expected, value) from exc


def _overrides(overrides: Overrides) -> list[str]:
    """``{"optimizer.lr": 0.1}`` -> ``["optimizer.lr=0.1"]`` (values as JSON, which is YAML);
    a sequence of ``KEY=VALUE`` strings as it is."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={_as_json(key, value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        hint = f"; pass [{overrides!r}]" if "=" in overrides else ""
        raise _refuse("overrides", "a mapping or a list of 'KEY=VALUE' strings", overrides, hint)
    if not isinstance(overrides, Sequence) or not all(isinstance(o, str) for o in overrides):
        raise _refuse("overrides", "a mapping or a list of 'KEY=VALUE' strings", overrides)
    return list(overrides)


def _source(spec: Spec) -> Mapping[str, Any] | Path:
    """The spec as :func:`~optlab._spec.load.load_experiment` takes it: a mapping as it is, a
    path with ``~`` expanded (as a shell expands it for ``optlab run``, and optlab expands it
    in ``data.path``)."""
    return spec if isinstance(spec, Mapping) else Path(spec).expanduser()


def load_spec(spec: Spec, *, overrides: Overrides = None) -> Experiment:
    """Validate a spec and expand it into its runs, as ``optlab validate`` does before it
    reads the data (the data are checked by :func:`run` before any run starts, and by
    ``optlab validate``).

    Parameters
    ----------
    spec : str, path or mapping
        A YAML spec file (``~`` is expanded), or its content as a dict.
    overrides : mapping or sequence of str, optional
        ``{"optimizer.lr": 0.1}`` or ``["optimizer.lr=0.1"]``, as ``--set``.

    Returns
    -------
    Experiment
        Its ``runs`` hold one validated :class:`~optlab._spec.experiment.RunSpec` each.

    Raises
    ------
    SpecError
        Every issue of the spec, each located (``FILE:LINE:COL: key.path: message``).
    """
    from optlab._spec.load import load_experiment

    _check_spec(spec)
    return load_experiment(_source(spec), _overrides(overrides), overrides_label="overrides")


@dataclass(frozen=True, repr=False)
class Table(Sequence[dict[str, Any]]):
    """Rows of plain values, shown as the terminal table (by ``print`` and in IPython and
    Jupyter); :meth:`to_pandas` for a DataFrame."""

    rows: tuple[dict[str, Any], ...]
    render: Any = field(default=None, repr=False, compare=False)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def to_pandas(self) -> pandas.DataFrame:
        """One row per entry; nested mappings become dotted columns (``optimizer.lr``)."""
        import pandas

        return pandas.json_normalize(list(self.rows))

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self.rows)} rows>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """What IPython and Jupyter show for a cell that ends with a table: ``str(table)``."""
        printer.text(f"{type(self).__name__}(...)" if cycle else str(self))

    def __str__(self) -> str:
        if self.render is None:
            return json.dumps(list(self.rows), indent=2, default=str)
        from rich.console import Console

        console = Console(width=160, highlight=False, markup=False)
        with console.capture() as captured:
            console.print(self.render(list(self.rows)))
        return captured.get().rstrip()


@dataclass(frozen=True, repr=False)
class Results(Table):
    """What :func:`run` returns: one row per run, in the plan's order.

    Each row is the run's record (:func:`~optlab._report.rows.run_records`), the one
    ``optlab run --json`` and ``optlab compare --json`` print and ``comparison.json`` holds
    (README, "JSON output"), of JSON values (a number that is not finite is ``None``):
    ``name``, ``variant``, ``sweep``, ``seed``, ``status`` (``FINISHED``, ``FAILED``,
    ``KILLED``), ``error``, the resolved settings ``data``, ``loss``, ``optimizer`` (mappings:
    ``row["optimizer"]["lr"]``) and ``regularizer`` (a list of them), the measures
    ``final_loss``, ``best_val_accuracy``, ``test_accuracy``, ``train_time_s``, ``metrics``
    (every final value), ``key``, ``run_id`` (the MLflow run, ``None`` untracked), ``reused``
    (``resume`` found it FINISHED: not trained by this call), ``best``
    and ``group`` (its row of :attr:`comparison`).

    Attributes
    ----------
    experiment : str
        The MLflow experiment (the spec's ``name``).
    tracking_uri : str or None
        Where the runs were logged (``None`` untracked); a SQLite store's path is absolute.
    comparison : Table
        The comparison table ``optlab run`` prints (replicates grouped, best marked).
    skipped : tuple of str
        Runs ``resume`` found finished already (their rows come from the store).
    interrupted : bool
        Whether a signal stopped the invocation early and the caller's handler let the
        script go on (after SIGINT :func:`run` raises ``KeyboardInterrupt``; after SIGTERM
        Python's default handler ends the process).
    runs : tuple of (RunInfo, RunResult)
        Each row's whole record, as observer plugins see it: the resolved spec and tags, and
        what the run measured - the trained ``W`` (D, C), every evaluation and step, the test
        confusion matrix (``results.runs[0][1].W``). A run ``resume`` reused is read back from
        the store without ``W`` and the confusion matrix (``None``): its ``weights.npz``
        artifact holds the weights.
    """

    experiment: str = ""
    tracking_uri: str | None = None
    comparison: Table = field(default_factory=lambda: Table(()))
    skipped: tuple[str, ...] = ()
    interrupted: bool = False
    #: not compared: ``==`` of numpy arrays has no truth value (results == other raised)
    runs: tuple[tuple[RunInfo, RunResult], ...] = field(default=(), repr=False, compare=False)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The rows of runs that did not finish."""
        return [row for row in self.rows if row["status"] != "FINISHED"]

    def __str__(self) -> str:
        return str(self.comparison)


def run(
    spec: Spec,
    *,
    overrides: Overrides = None,
    tracking_uri: str | None = None,
    track: bool = True,
    resume: bool = False,
    fail_fast: bool = False,
    jobs: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    quiet: bool = False,
) -> Results:
    """Run every run of a spec, as ``optlab run`` does, and return their results.

    Parameters
    ----------
    spec : str, path or mapping
        A YAML spec file (``~`` is expanded), or its content as a dict.
    overrides : mapping or sequence of str, optional
        ``{"optimizer.lr": 0.1}`` or ``["optimizer.lr=0.1"]``, as ``--set``.
    tracking_uri : str, optional
        The MLflow store (default: the spec's ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``,
        else ``sqlite:///mlflow.db`` in the working folder).
    track : bool
        Log to MLflow (``False``: nothing is written anywhere; a ``tracking_uri`` given with it
        is ignored, with an :class:`~optlab._errors.OptlabWarning`).
    resume, fail_fast, jobs, executor, scheduler
        As ``--resume``, ``--fail-fast``, ``--jobs``, ``--executor``, ``--scheduler``.
    quiet : bool
        No progress display (otherwise a progress bar in a terminal, or a widget in Jupyter
        with ``ipywidgets`` installed: ``pip install 'optlab[notebook]'``).

    Returns
    -------
    Results
        One row per run; a run that failed is a row with ``status`` ``FAILED``.

    Raises
    ------
    InputError
        Bad input (a :class:`~optlab._errors.SpecError` for the spec or its data, an unknown
        executor, an unusable tracking store), or a call while another runs in this process;
        nothing was run.
    KeyboardInterrupt
        Ctrl-C (SIGINT) while the runs trained: the current run ended KILLED with its
        metrics written (the runs that had not started are not recorded); the message says
        what is saved. After SIGTERM the same is recorded, then the signal is raised again
        for the handler the caller had (Python's default one ends the process).
    """
    from optlab._execution.by_name import make_executor
    from optlab._execution.invocation import Invocation

    _check_not_reimported()
    _check_spec(spec)
    _overrides(overrides)  # checked before any worker starts
    jobs = _check_options(
        tracking_uri=tracking_uri,
        track=track,
        resume=resume,
        fail_fast=fail_fast,
        jobs=jobs,
        executor=executor,
        scheduler=scheduler,
        quiet=quiet,
    )
    _check_script_is_a_file(jobs, executor)
    if not track and tracking_uri is not None:  # not silently: the caller named a store
        warnings.warn(
            OptlabWarning(
                f"tracking_uri={tracking_uri!r} is ignored: track=False logs nothing anywhere; "
                "drop tracking_uri, or leave track=True to log the runs there"
            ),
            stacklevel=2,
        )
    if not _RUNNING.acquire(blocking=False):
        raise InputError(
            "optlab.run is running already in this process (called from another thread, or "
            "from a plugin during a run): call it once at a time; jobs=N trains N runs at once"
        )
    try:
        with make_executor(**_executor_options(executor, jobs, scheduler)) as where:
            experiment = load_spec(spec, overrides=overrides)
            invocation = Invocation(
                experiment,
                spec_path="<spec>" if isinstance(spec, Mapping) else str(_source(spec)),
                tracking_uri=tracking_uri,
                track=track,
                resume=resume,
                fail_fast=fail_fast,
                quiet=quiet,
                executor=where,
                # the messages name what the caller wrote, not optlab run's options
                command="optlab.run(...)",
                resume_command="optlab.run(..., resume=True)",
                resume_label="resume=True",
                no_track_label="track=False",
                uri_label="tracking_uri",
            )
            outcome = invocation.run()
    finally:
        _RUNNING.release()
    if invocation.stopped_by == "SIGINT":  # Ctrl-C stops the script, once the runs are saved
        raise KeyboardInterrupt(invocation.interrupted_line())
    if invocation.stopped_by == "SIGTERM":  # kill PID: the caller's handler, once runs are saved
        signal.raise_signal(signal.SIGTERM)
    from optlab._tracking.store import absolute_uri

    # absolute: after os.chdir a relative sqlite:///mlflow.db names another store
    uri = absolute_uri(invocation.tracker.uri) if invocation.tracker is not None else None
    return _results(experiment.name, outcome, uri, invocation.run_ids())


def _executor_options(executor: str, jobs: int, scheduler: str | None) -> dict[str, Any]:
    """:func:`~optlab._execution.by_name.make_executor`'s arguments, its messages naming the
    keywords of :func:`run`."""
    return {
        "name": executor,
        "jobs": jobs,
        "scheduler": scheduler,
        "executor_label": "executor",
        "scheduler_label": "scheduler",
    }


def _results(experiment: str, outcome: Any, uri: str | None, run_ids: Mapping[str, str]) -> Results:
    """Results from an :class:`optlab._execution.executor.Outcome`: a record per run that ran
    or was reused (:func:`~optlab._report.rows.run_records`, with ``run_ids``, by run key)."""
    from optlab._report.rows import comparison_rows, run_records
    from optlab._report.table import render_table

    table = Table(tuple(comparison_rows(outcome.results)), render_table)
    return Results(
        tuple(run_records(outcome.results, run_ids, outcome.skipped)),
        render_table,
        experiment=experiment,
        tracking_uri=uri,
        comparison=table,
        skipped=tuple(outcome.skipped),
        interrupted=outcome.interrupted,
        runs=tuple(outcome.results),
    )


def compare(
    experiment: str, *, tracking_uri: str | None = None, out: str | PathLike[str] | None = None
) -> Results:
    """The runs of an experiment's latest invocation, read back from the store: the
    :class:`Results` :func:`run` returned for it (a record per run, as ``optlab compare
    --json`` prints them; printed, the table ``optlab compare`` prints; ``runs`` as read back,
    without ``W``: each run's ``weights.npz`` artifact holds it). With ``out``, also writes
    ``comparison.png``, ``.json`` and ``.md`` there.

    Raises
    ------
    InputError
        No such store or experiment, or no invocation yet; an argument of the wrong type.
    """
    from optlab._report.table import render_table
    from optlab._tracking import resolve_tracking_uri
    from optlab._tracking.readback import compare as compare_runs
    from optlab._tracking.store import absolute_uri

    if not isinstance(experiment, str):
        raise _refuse("experiment", "an experiment's name (a str)", experiment)
    if tracking_uri is not None and not isinstance(tracking_uri, str):
        raise _refuse("tracking_uri", "a str or None", tracking_uri)
    if out is not None and not isinstance(out, str | PathLike):
        raise _refuse("out", "a folder's path (str or os.PathLike) or None", out)
    uri = resolve_tracking_uri(tracking_uri, None)
    out_dir = Path(out) if out is not None else None
    compared = compare_runs(experiment, uri, out_dir, uri_label="tracking_uri", out_label="out")
    return Results(
        tuple(compared.records),
        render_table,
        experiment=experiment,
        tracking_uri=absolute_uri(uri),
        comparison=Table(tuple(compared.rows), render_table),
        runs=tuple(compared.runs),
    )


exported(Results, Table, compare, load_spec, run)
