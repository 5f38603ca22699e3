"""Running an experiment's runs: the sequence of runs, failures and interrupts.

Bad input is refused before anything is trained or logged, by :mod:`optlab._training.preflight`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optlab._contract.records import RunInfo, RunResult
from optlab._contract.registry import Registry
from optlab._spec.experiment import Experiment, RunSpec
from optlab._training.data import PreparedData, load_data
from optlab._training.monitor import StopFlag, stop_flag
from optlab._training.preflight import data_key, data_rng, preflight
from optlab._training.runner import Observer, execute

__all__ = ["Elsewhere", "Outcome", "git_tags", "result_row", "run_all"]


@dataclass(frozen=True)
class Elsewhere:
    """A run left to another live invocation on the same store (see
    :mod:`optlab._tracking.claims`): ``by`` says which one (process, host, MLflow run);
    ``finished``: it FINISHED the run meanwhile (else it is training it)."""

    name: str
    by: str
    finished: bool = False

    def line(self) -> str:
        """One line for the user."""
        doing = "finished it meanwhile" if self.finished else "is training it"
        return f"{self.name}: not run here: another invocation {doing} ({self.by})"


@dataclass
class Outcome:
    """What an invocation produced: one (info, result) per run that ran, what was skipped
    (FINISHED already, ``--resume``) and what was left to other invocations."""

    results: list[tuple[RunInfo, RunResult]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    elsewhere: list[Elsewhere] = field(default_factory=list)

    @property
    def failed(self) -> list[tuple[RunInfo, RunResult]]:
        return [(i, r) for i, r in self.results if r.status != "FINISHED"]


def git_tags(spec_path: str) -> dict[str, str]:
    """``optlab.git_commit`` and ``optlab.git_dirty`` when the spec lives in a git checkout."""
    folder = Path(spec_path).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"optlab.git_commit": commit, "optlab.git_dirty": str(bool(dirty)).lower()}


def run_all(
    experiment: Experiment,
    observer: Observer,
    *,
    registry: Registry | None = None,
    base_tags: dict[str, str] | None = None,
    prepared: dict[str, PreparedData] | None = None,
    skip_keys: Callable[[RunSpec, PreparedData], bool] | None = None,
    claim: Callable[[RunSpec, PreparedData], Elsewhere | None] | None = None,
    release: Callable[[RunSpec, PreparedData], None] | None = None,
    fail_fast: bool = False,
    on_result: Callable[[RunInfo, RunResult], None] | None = None,
    log: Callable[[str], None] | None = None,
    flag: StopFlag = stop_flag,
    should_stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Run every run of ``experiment`` in order, one process.

    A failed run does not stop the others unless ``fail_fast``; an interrupt (SIGINT/SIGTERM)
    ends the current run as KILLED and stops the sequence (the runs after it are not started,
    also when it came after the current run had trained); so does ``should_stop()``
    returning true after a run (the tracking store is gone: no later run could be recorded).

    ``claim(run, data)``, called just before a run would start, returns an
    :class:`Elsewhere` when another invocation has the run (it is not run here, and ``log``
    says so), else ``None``: the run is this invocation's, and ``release(run, data)`` is called
    once it has ended and been reported.
    """
    prepared = prepared if prepared is not None else preflight(experiment.runs)
    outcome = Outcome()
    for run in experiment.runs:
        if flag.reason is not None:  # asked to stop while the last run was being recorded
            outcome.interrupted = True
            break
        data = prepared.get(data_key(run))
        if data is None:
            data = prepared[data_key(run)] = load_data(run.dataset, run.data, data_rng(run))
        if skip_keys is not None and skip_keys(run, data):
            outcome.skipped.append(run.name)
            continue
        if claim is not None and (other := claim(run, data)) is not None:
            outcome.elsewhere.append(other)
            if log is not None:
                log(other.line())
            continue
        info, result = execute(
            run,
            experiment=experiment.name,
            observer=observer,
            registry=registry,
            base_tags=base_tags,
            data=data,
            flag=flag,
            log=log,
        )
        outcome.results.append((info, result))
        if release is not None:
            release(run, data)
        if on_result is not None:
            on_result(info, result)
        if result.status == "KILLED":
            outcome.interrupted = True
            break
        if result.status == "FAILED" and (fail_fast or (should_stop is not None and should_stop())):
            break
    return outcome


def result_row(info: RunInfo, result: RunResult) -> dict[str, Any]:
    """One run as a JSON-ready dict (for ``optlab run --json``)."""
    return {
        "name": info.name,
        "status": result.status,
        "error": result.error,
        "loss": info.spec.get("loss"),
        "regularizer": info.spec.get("regularizer"),
        "optimizer": info.spec.get("optimizer"),
        "data": info.spec.get("data"),
        "seed": info.spec.get("seed"),
        "final_loss": result.final_loss,
        "metrics": result.metrics,
        "key": info.key,
    }
