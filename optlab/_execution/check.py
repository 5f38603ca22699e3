"""``optlab check``: the sanity checks of every run, without training."""

from __future__ import annotations

from collections.abc import Iterator

from optlab._spec.experiment import Experiment
from optlab._training.checks import run_checks
from optlab._training.preflight import data_key, preflight
from optlab._training.runner import build_objective, initial_weights, run_streams

__all__ = ["check_runs"]


def check_runs(experiment: Experiment) -> Iterator[tuple[str, list[str], bool]]:
    """For each run: its name, the checks' report lines, and whether every check passed.

    The data, initial weights and check sample are drawn exactly as ``optlab run`` draws
    them; an ``error`` policy is reported like ``warn`` here (nothing is trained).
    """
    prepared = preflight(experiment.runs)
    for run in experiment.runs:
        _, init_rng, check_rng, opt_rng = run_streams(run.seed)
        objective, _ = build_objective(run, prepared[data_key(run)], None, opt_rng)
        W0 = initial_weights(objective, init_rng)
        policy = {
            k: "warn" for k in ("initial_loss", "gradient") if getattr(run.checks, k) == "error"
        }
        checks = run_checks(objective, W0, run.checks.model_copy(update=policy), check_rng)
        yield run.name, list(checks.lines()), not checks.warnings()
