"""``optlab check``: the sanity checks of every run, without training, on any executor."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from optlab._errors import ComponentError
from optlab._execution.executor import Executor
from optlab._execution.in_process import InProcess
from optlab._spec.experiment import Experiment, RunSpec
from optlab._training.checks import run_checks
from optlab._training.data import PreparedData
from optlab._training.preflight import data_key, preflight
from optlab._training.runner import build_objective, initial_weights, run_streams

__all__ = ["CheckReport", "check_run", "check_runs"]


@dataclass(frozen=True)
class CheckReport:
    """One run's checks: its name, the report lines, and whether every check passed."""

    name: str
    lines: list[str]
    passed: bool


def check_run(run: RunSpec, prepared: dict[str, PreparedData] | None = None) -> CheckReport:
    """The checks of ``run``, its data taken from ``prepared`` or loaded here (in a worker).

    The data, initial weights and check sample are drawn exactly as ``optlab run`` draws
    them; an ``error`` policy is reported like ``warn`` here (nothing is trained).
    """
    key = data_key(run)
    prepared = prepared if prepared is not None and key in prepared else preflight([run])
    _, init_rng, check_rng, opt_rng = run_streams(run.seed)
    policy = {k: "warn" for k in ("initial_loss", "gradient") if getattr(run.checks, k) == "error"}
    try:
        objective, _ = build_objective(run, prepared[key], None, opt_rng)
        W0 = initial_weights(objective, init_rng)
        checks = run_checks(objective, W0, run.checks.model_copy(update=policy), check_rng)
    except ComponentError as exc:  # this run's plugin failed: it, not the other runs' checks
        return CheckReport(run.name, [str(exc)], False)
    return CheckReport(run.name, list(checks.lines()), not checks.warnings())


def check_runs(experiment: Experiment, executor: Executor | None = None) -> Iterator[CheckReport]:
    """The checks of every run of ``experiment``, in the plan's order, run by ``executor``
    (default: this process). Every run's data is read (or measured) first, so bad data stops
    the command before any check runs."""
    executor = executor if executor is not None else InProcess()
    # workers load the data they need themselves (it is not sent to them): here it is only
    # measured, which finds bad data as well
    prepared = preflight(experiment.runs, load=executor.in_process)
    if executor.in_process:
        return executor.map(functools.partial(check_run, prepared=prepared), experiment.runs)
    return executor.map(check_run, experiment.runs)
