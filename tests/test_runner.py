"""One run end to end: statuses, divergence, interrupts, misbehaving components, params."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

import optlab
from optlab._contract.plugin_manager import registered_plugin
from optlab._contract.records import EpochReport, RunInfo, RunResult
from optlab._execution.recording import RecordingObserver
from optlab._spec.experiment import Experiment
from optlab._spec.load import load_experiment
from optlab._training.describe import flatten_params
from optlab._training.monitor import StopFlag, TrainingMonitor
from optlab._training.runner import execute

SPEC = """\
name: runner_test
seed: 1
data: {name: digits, limit: 300}
loss: {name: softmax}
regularizer: {name: l2, strength: 0.001}
optimizer: {name: sgd, lr: 0.05, batch_size: 50, epochs: 4}
"""


def experiment(tmp_path: Path, text: str = SPEC, *overrides: str) -> Experiment:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_experiment(path, list(overrides))


def run_one(exp: Experiment, flag: StopFlag | None = None) -> tuple[RunInfo, RunResult, Any]:
    observer = RecordingObserver()
    kwargs: dict[str, Any] = {} if flag is None else {"flag": flag}
    info, result = execute(exp.runs[0], experiment=exp.name, observer=observer, **kwargs)
    return info, result, observer


def test_the_transcript_tells_the_last_steps_loss_from_the_training_loss(tmp_path: Path) -> None:
    """An evaluation's line in ``console.log`` said ``loss=`` for the last minibatch's loss
    (measured before that step's update) next to ``train_loss=`` (the whole training set's,
    after it): read as one loss, the two disagreed. It says ``step_loss=`` now."""
    _, result, _ = run_one(experiment(tmp_path))
    lines = [line for line in result.console if line.startswith("epoch ")]
    assert len(lines) == len(result.evaluations) == 4
    for line, e in zip(lines, result.evaluations, strict=True):
        words = dict(word.split("=", 1) for word in line.split() if "=" in word)
        assert float(words["step_loss"]) == pytest.approx(e.loss, rel=1e-5)
        assert float(words["train_loss"]) == pytest.approx(e.train_loss, rel=1e-5)
        assert "loss" not in words
    ends = np.cumsum([len(e.steps) for e in result.evaluations]) - 1
    assert [e.loss for e in result.evaluations] == list(result.steps.loss[ends])


def test_classes_without_a_training_example_are_warned_about(tmp_path: Path) -> None:
    """Labels 1..3 (numbered from 1) make four classes, one of them empty: the run trained
    and drew a template and a confusion row for class 0 without a word."""
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    np.savez(tmp_path / "from_one.npz", X=rng.normal(size=(90, 4)) + y[:, None], y=y + 1)
    np.savez(tmp_path / "from_zero.npz", X=rng.normal(size=(90, 4)) + y[:, None], y=y)
    spec = SPEC.replace("{name: digits, limit: 300}", "{name: npz, path: PATH}").replace(
        "batch_size: 50", "batch_size: 10"
    )
    lines = {}
    for name in ("from_one", "from_zero"):
        text = spec.replace("PATH", str(tmp_path / f"{name}.npz"))
        _, result, _ = run_one(experiment(tmp_path, text))
        assert result.status == "FINISHED", result.error
        lines[name] = [line for line in result.console if line.startswith("warning: ")]
    assert lines["from_one"] == [
        "warning: 1 of 4 classes has no training example ('0'); labels numbered from 1? "
        "integer labels are class indices 0..C-1"
    ]
    assert lines["from_zero"] == []


def test_classes_of_no_example_are_not_blamed_on_a_limit_the_spec_does_not_set(
    tmp_path: Path,
) -> None:
    """Labels 0, 1 and 5 make six classes, three of no example anywhere: the warning said
    "a larger data.limit ... would train them" of a spec without a limit."""
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 5])[np.arange(90) % 3]
    np.savez(tmp_path / "gap.npz", X=rng.normal(size=(90, 4)) + y[:, None], y=y)
    spec = SPEC.replace("{name: digits, limit: 300}", "{name: npz, path: PATH}").replace(
        "batch_size: 50", "batch_size: 10"
    )
    warned = {}
    for limit in ("", ", limit: 40"):
        text = spec.replace("PATH", str(tmp_path / "gap.npz") + limit)
        _, result, _ = run_one(experiment(tmp_path, text))
        warned[limit] = [line for line in result.console if line.startswith("warning: ")]
    shown = "warning: 3 of 6 classes have no training example ('2', '3', '4'); "
    assert warned[""] == [
        shown + "no example has some of these labels: integer labels are class indices "
        "0..C-1, renumber them without gaps"
    ]
    assert warned[", limit: 40"] == [
        shown + "a larger data.limit, or more examples of them, would train them"
    ]
    X = rng.normal(size=(60, 4))  # the own test split alone has class 2
    np.savez(tmp_path / "t.npz", X=X, y=np.arange(60) % 2, X_test=X[:9], y_test=np.arange(9) % 3)
    _, result, _ = run_one(experiment(tmp_path, spec.replace("PATH", str(tmp_path / "t.npz"))))
    assert [line for line in result.console if line.startswith("warning: ")] == [
        "warning: 1 of 3 classes has no training example ('2'); only the validation or test "
        "split has examples of them; training needs some"
    ]


def test_a_check_that_warns_says_warning_once(tmp_path: Path) -> None:
    """An initial loss off by more than its tolerance (``warn``): the run's console.log said
    "warning: warning: initial loss ..."."""
    exp = experiment(tmp_path, SPEC + "checks: {initial_loss_tolerance: 1.0e-9}\n")
    logged: list[str] = []
    _, result = execute(
        exp.runs[0], experiment=exp.name, observer=RecordingObserver(), log=logged.append
    )
    warned = [line for line in result.console if "warning" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: initial loss "), warned
    assert logged == [f"softmax: {warned[0]}"]


@pytest.mark.parametrize(
    ("optimizer", "regularizer", "warned"),
    [
        ("{name: random_search, trials: 20, eval_every: 10}", "{name: dropout, rate: 0.5}", 1),
        ("{name: random_local_search, trials: 20, eval_every: 10}", "{name: dropout}", 1),
        ("{name: random_search, trials: 20, eval_every: 10}", "{name: l2}", 0),
        ("{name: sgd, lr: 0.05, batch_size: 50, epochs: 1}", "{name: dropout, rate: 0.5}", 0),
    ],
)
def test_dropout_with_an_optimizer_that_takes_no_gradient_step_is_warned_about(
    tmp_path: Path, optimizer: str, regularizer: str, warned: int
) -> None:
    """Random search compares the unperturbed training loss: dropout changed nothing and
    nothing said so. One warning at the run's start, in its console and the log."""
    text = SPEC.replace("{name: sgd, lr: 0.05, batch_size: 50, epochs: 4}", optimizer).replace(
        "{name: l2, strength: 0.001}", f"[{{name: l2, strength: 0.001}}, {regularizer}]"
    )
    exp = experiment(tmp_path, text)
    logged: list[str] = []
    _, result = execute(
        exp.runs[0], experiment=exp.name, observer=RecordingObserver(), log=logged.append
    )
    assert result.status == "FINISHED", result.error
    lines = [line for line in result.console if "no effect" in line]
    assert len(lines) == warned and len(logged) == warned, result.console
    if warned:
        name = exp.runs[0].optimizer.name
        assert lines[0] == (
            f"warning: regularizer 'dropout' has no effect with optimizer '{name}': it "
            f"perturbs only the examples of gradient steps, and '{name}' takes none (it "
            "compares the unperturbed training loss); remove it, or train with gd or sgd"
        )
        assert result.console.index(lines[0]) < min(
            i for i, line in enumerate(result.console) if line.startswith("check: ")
        )


def test_finished_run_fires_hooks_and_measures_everything(tmp_path: Path) -> None:
    info, result, observer = run_one(experiment(tmp_path))
    names = [name for name, _ in observer.events]
    assert names[0] == "optlab_run_started" and names[-1] == "optlab_run_finished"
    assert names.count("optlab_epoch_ended") == 4
    assert result.status == "FINISHED" and result.error is None
    # one step per minibatch; the x-axis is examples processed (before each step: its loss
    # is that of the weights it started from)
    n_train = info.data.n_train
    steps_per_epoch = -(-n_train // 50)
    assert len(result.steps) == 4 * steps_per_epoch
    last_batch = n_train - 50 * (steps_per_epoch - 1)
    assert result.steps.examples[0] == 0
    assert result.steps.examples[-1] == 4 * n_train - last_batch
    assert np.all(np.diff(result.steps.examples) > 0)
    np.testing.assert_allclose(
        result.steps.loss, result.steps.data_loss + result.steps.reg_loss, rtol=1e-12
    )
    for key in (
        "test_accuracy",
        "train_time_s",
        "initial_loss",
        "expected_initial_loss",
        "grad_check_max_rel_error",
        "best_val_accuracy",
    ):
        assert key in result.metrics, key
    assert result.metrics["test_accuracy"] > 0.8
    assert result.metrics["expected_initial_loss"] == pytest.approx(np.log(10))
    assert result.W is not None and result.W.shape == (info.data.n_features, 10)
    assert result.confusion is not None and result.confusion.sum() == info.data.n_test
    assert info.params["optimizer.lr"] == 0.05 and info.params["data.name"] == "digits"
    assert info.params["regularizer.l2.strength"] == 0.001
    assert info.tags["optlab.provider.loss"].startswith("losses (optlab ")


def test_a_steps_loss_is_kept_at_the_examples_and_time_before_the_step(tmp_path: Path) -> None:
    """GD's per-step loss (the whole training set's, at the weights the step started from)
    was kept at the examples processed after the step: a pass behind the full training loss
    of the evaluations, from the initial loss at one pass. The weights after ``t`` passes
    are measured at ``t`` passes by both, from the initial weights at 0 examples and 0 s."""
    gd = "optimizer: {name: gd, lr: 0.1, iterations: 3, eval_every: 1}\n"
    info, result, _ = run_one(experiment(tmp_path, SPEC.replace(SPEC.splitlines()[-1], gd)))
    assert result.status == "FINISHED"
    n = info.data.n_train
    steps, evals = result.steps, result.evaluations
    assert list(steps.examples) == [0, n, 2 * n]
    assert [e.examples for e in evals] == [n, 2 * n, 3 * n]
    np.testing.assert_allclose(steps.loss[1:], [e.train_loss for e in evals[:-1]], rtol=1e-10)
    assert steps.loss[0] == pytest.approx(result.metrics["initial_loss"], rel=1e-3)
    assert steps.elapsed[0] == 0.0 and np.all(steps.elapsed[1:] <= [e.elapsed for e in evals[1:]])
    assert np.all(steps.elapsed[1:] >= [e.elapsed for e in evals[:-1]])


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path: Path) -> None:
    _, a, _ = run_one(experiment(tmp_path))
    _, b, _ = run_one(experiment(tmp_path))
    _, c, _ = run_one(experiment(tmp_path, SPEC.replace("seed: 1", "seed: 2")))
    np.testing.assert_array_equal(a.steps.loss, b.steps.loss)
    assert not np.array_equal(a.steps.loss, c.steps.loss)


def test_divergence_fails_the_run_with_the_step_and_keeps_the_curve(tmp_path: Path) -> None:
    _, result, observer = run_one(experiment(tmp_path, SPEC, "optimizer.lr=1e12", "loss.name=svm"))
    assert result.status == "FAILED"
    assert "diverged" in result.error and "step" in result.error
    assert len(result.steps) >= 1
    assert observer.events[-1][0] == "optlab_run_finished"


def test_divergence_factor_is_configurable(tmp_path: Path) -> None:
    text = SPEC + "checks: {divergence_factor: 1.01}\n"
    _, result, _ = run_one(experiment(tmp_path, text, "optimizer.lr=5", "loss.name=svm"))
    assert result.status == "FAILED" and "1.01x the initial loss" in result.error


def test_stop_request_ends_the_run_as_killed_with_metrics_kept(tmp_path: Path) -> None:
    flag = StopFlag()

    class StopAfterFirstEpoch:
        def __init__(self) -> None:
            self.inner = RecordingObserver()

        def optlab_run_started(self, *, run: RunInfo) -> None:
            self.inner.optlab_run_started(run=run)

        def optlab_epoch_ended(self, *, run: RunInfo, report: EpochReport) -> None:
            self.inner.optlab_epoch_ended(run=run, report=report)
            flag.request("SIGTERM")

        def optlab_run_finished(self, *, run: RunInfo, result: RunResult, error: Any) -> None:
            self.inner.optlab_run_finished(run=run, result=result, error=error)

    exp = experiment(tmp_path)
    _, result = execute(exp.runs[0], experiment=exp.name, observer=StopAfterFirstEpoch(), flag=flag)
    assert result.status == "KILLED" and "SIGTERM" in result.error
    assert len(result.evaluations) == 1 and len(result.steps) > 0


def test_a_run_stopped_between_evaluations_says_how_many_examples_it_processed() -> None:
    """A KILLED run's reason said "at step 6215", a count of minibatches, while its curves'
    steps (and the MLflow charts' x-axis) count training examples; it names both, as a
    diverged run's reason does."""
    from optlab._errors import RunInterrupted

    flag = StopFlag()
    monitor = TrainingMonitor(
        cast(Any, None),
        np.zeros((0, 2)),
        np.zeros(0),
        cast(Any, None),
        print,
        initial_loss=1.0,
        flag=flag,
    )
    monitor.step(32, 1.0, 1.0, 0.0)
    flag.request("SIGINT")
    with pytest.raises(RunInterrupted, match=r"^interrupted by SIGINT at step 2 \(64 examples\)$"):
        monitor.step(32, 1.0, 1.0, 0.0)


def test_a_stop_requested_before_a_run_trains_trains_nothing(tmp_path: Path) -> None:
    """A stop that came before a run trained (during its checks, while the run before it was
    being recorded, or while it waited for a worker) trains not a step: the run ends KILLED
    "before training started", the in-process executor starts no later run, and a worker does
    not start a queued one (such runs used to be recorded KILLED "at step 1", with one point)."""
    from optlab._execution.executor import Job
    from optlab._execution.in_process import InProcess
    from optlab._execution.recording import execute_recorded
    from optlab._training.monitor import stop_flag

    flag = StopFlag()
    flag.request("SIGINT")
    _, result, _ = run_one(experiment(tmp_path), flag)
    assert (result.status, result.error) == (
        "KILLED",
        "interrupted by SIGINT before training started",
    )
    assert len(result.steps) == 0 and not result.evaluations
    exp = experiment(tmp_path, SPEC + "variants: {a: {}, b: {}}\n")
    assert list(InProcess().run(exp.runs, Job(exp.name, RecordingObserver(), flag=flag))) == []
    stop_flag.request("SIGTERM")  # as a worker's signal handler does
    try:
        assert execute_recorded(exp.runs[0], exp.name, {}) == []
    finally:
        stop_flag.clear()


class _BadLoss(optlab.Loss):
    def __init__(self, fault: str) -> None:
        self.fault = fault

    def loss_and_grad(self, scores: optlab.Array, y: optlab.Array) -> tuple[float, optlab.Array]:
        if self.fault == "raise":
            raise RuntimeError("kaboom")
        if self.fault == "shape":
            return 1.0, scores[:, :-1]
        if self.fault == "dtype":
            return 1.0, scores.astype(np.float32)
        if self.fault == "nanloss":
            return float("nan"), np.zeros_like(scores)
        grad = np.full_like(scores, np.nan)
        return 1.0, grad


class _BadParams(optlab.Params):
    fault: str = "raise"


def _bad_plugin() -> SimpleNamespace:
    @optlab.hookimpl
    def optlab_register_losses() -> list[optlab.LossRecord]:
        return [optlab.LossRecord("bad_loss", lambda p: _BadLoss(p.fault), _BadParams, "broken")]

    return SimpleNamespace(optlab_register_losses=optlab_register_losses)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("raise", "raised RuntimeError('kaboom')"),
        ("shape", "score gradient has shape"),
        ("dtype", "score gradient has dtype float32, expected float64"),
        ("nan", "non-finite gradient"),
        ("nanloss", "returned a non-finite loss (nan) for finite scores"),
    ],
)
def test_misbehaving_loss_fails_the_run_naming_plugin_and_fault(
    tmp_path: Path, fault: str, message: str
) -> None:
    text = SPEC.replace("loss: {name: softmax}", f"loss: {{name: bad_loss, fault: {fault}}}")
    text += "checks: {initial_loss: off, gradient: off}\n"
    with registered_plugin(_bad_plugin(), name="bad_plugin"):
        _, result, _ = run_one(experiment(tmp_path, text))
    assert result.status == "FAILED"
    assert "loss 'bad_loss' (from bad_plugin" in result.error
    assert message in result.error


@pytest.mark.parametrize("initial_check", ["warn", "off"])
def test_divergence_baseline_is_the_objective_at_W0_from_one_pass_over_the_training_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, initial_check: str
) -> None:
    import optlab._training.runner as runner_module

    passes: list[tuple[np.ndarray, float]] = []  # data losses over the whole training set
    data_loss = optlab.Objective.data_loss

    def counting(self: optlab.Objective, W: Any, X: Any = None, y: Any = None) -> float:
        value = data_loss(self, W, X, y)
        if X is None:
            passes.append((W.copy(), value))
        return value

    seen: dict[str, Any] = {}

    def monitor(objective: optlab.Objective, *args: Any, **kwargs: Any) -> TrainingMonitor:
        seen.update(objective=objective, initial=kwargs["initial_loss"], passes=len(passes))
        return TrainingMonitor(objective, *args, **kwargs)

    monkeypatch.setattr(optlab.Objective, "data_loss", counting)
    monkeypatch.setattr(runner_module, "TrainingMonitor", monitor)
    text = SPEC + f"checks: {{initial_loss: {initial_check}}}\n"
    _, result, _ = run_one(experiment(tmp_path, text))
    assert result.status == "FINISHED"
    assert seen["passes"] == 1  # the initial loss check's pass is reused
    W0, value = passes[0]
    assert seen["initial"] == seen["objective"].value(W0).total
    if initial_check == "warn":
        assert result.metrics["initial_loss"] == value
    else:
        assert "initial_loss" not in result.metrics


def test_flatten_params_keys_regularizers_by_name() -> None:
    flat = flatten_params(
        {
            "seed": 0,
            "loss": {"name": "svm", "margin": 1.0},
            "regularizer": [{"name": "l2", "strength": 0.1}, {"name": "max_norm", "c": 3}],
        }
    )
    assert flat == {
        "seed": 0,
        "loss.name": "svm",
        "loss.margin": 1.0,
        "regularizer.name": "l2+max_norm",
        "regularizer.l2.strength": 0.1,
        "regularizer.max_norm.c": 3,
    }
    assert flatten_params({"regularizer": []})["regularizer.name"] == "none"


def test_flatten_params_keeps_both_of_two_regularizers_of_one_name() -> None:
    # L2 on W and a lighter one on the bias: the second's params overwrote the first's, and
    # MLflow showed regularizer.l2.strength 1e-05 for a run penalized with 0.001 as well
    flat = flatten_params(
        {
            "regularizer": [
                {"name": "l2", "strength": 1e-3, "include_bias": False},
                {"name": "l2", "strength": 1e-5, "include_bias": True},
            ]
        }
    )
    assert flat == {
        "regularizer.name": "l2+l2",
        "regularizer.l2.strength": 1e-3,
        "regularizer.l2.include_bias": False,
        "regularizer.l2.2.strength": 1e-5,
        "regularizer.l2.2.include_bias": True,
    }


@pytest.mark.parametrize("pixel_scale", [1.0, 255.0, 1e4])
def test_initial_scores_are_near_zero_whatever_the_data_scale(pixel_scale: float) -> None:
    from optlab._contract.objective import BoundLoss
    from optlab._contract.plugin_manager import get_registry
    from optlab._training.runner import INIT_SCALE, initial_weights

    rng = np.random.default_rng(0)
    X = rng.uniform(0, pixel_scale, size=(500, 3073)).astype(np.float32)
    y = rng.integers(0, 10, size=500)
    record = get_registry().get("loss", "svm")
    objective = optlab.Objective(X, y, 10, BoundLoss(record.factory(record.params()), "svm"))
    W0 = initial_weights(objective, np.random.default_rng(1))
    assert W0.dtype == np.float32 and W0.shape == (3073, 10)
    scores = X @ W0
    assert 0.3 * INIT_SCALE < float(scores.std()) < 3 * INIT_SCALE
    assert objective.data_loss(W0) == pytest.approx(9.0, rel=0.01)  # C - 1: the lecture's check


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_diverging_run_leaks_no_numpy_warning(tmp_path: Path, optimizer: str) -> None:
    """Overflow in the update, the loss or the evaluation is the monitor's to report (one
    line, as divergence), not numpy's RuntimeWarnings with source paths."""
    spec = SPEC.replace("{name: digits, limit: 300}", "{name: digits, limit: 300, dtype: float32}")
    spec = spec.replace("sgd, lr: 0.05", f"{optimizer}, lr: 1.0e+38")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, result, _ = run_one(experiment(tmp_path, spec))
    assert result.status == "FAILED" and result.error is not None
    assert result.error.startswith("diverged: ")


def test_without_a_validation_split_there_is_no_best_validation_accuracy() -> None:
    """data.val 0: best_val_accuracy is nan (the table's "-"; in a run's record, of JSON
    values, None) and no run is the best; the training accuracy used to stand in for it, so
    the best run was chosen on training data."""
    import math

    import optlab

    spec = {
        "name": "noval",
        "data": {"name": "iris", "val": 0.0, "test": 0.2},
        "loss": {"name": "softmax"},
        "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 20, "epochs": 2},
        "variants": {"a": {}, "b": {"optimizer": {"lr": 0.01}}},
    }
    results = optlab.run(spec, track=False, quiet=True)
    assert all(row["best_val_accuracy"] is None for row in results)
    assert all(math.isnan(result.metrics["best_val_accuracy"]) for _, result in results.runs)
    assert all(row["metrics"]["train_accuracy"] > 0 for row in results)
    assert not any(row["best"] for row in results.comparison)


def test_finding_the_blas_libraries_is_not_training_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first run in a process found the BLAS libraries (threadpoolctl: 10-30 ms) inside its
    timed training: a seed group's first replicate looked ten times slower than the others."""
    import time

    import optlab
    import optlab._contract.blas_threads as blas

    made = blas._controller()
    blas._controller.cache_clear()

    def slow() -> object:
        time.sleep(0.3)  # a slow search: were it timed, the run would take 0.3 s
        return made

    monkeypatch.setattr(blas, "_controller", functools.cache(slow))
    spec = {
        "name": "timing",
        "data": {"name": "iris"},
        "loss": {"name": "svm"},
        "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 20, "epochs": 1},
    }
    (row,) = optlab.run(spec, track=False, quiet=True)
    assert row["metrics"]["train_time_s"] < 0.25


def test_time_the_observers_take_is_not_training_time(tmp_path: Path) -> None:
    """A tracking server that went away is waited for where the run reports an evaluation
    point: that wait (here 0.2 s at each of four evaluations) is not the run's training time,
    nor on the clock of its steps."""
    import time

    class Slow(RecordingObserver):
        def optlab_epoch_ended(self, *, run: RunInfo, report: EpochReport) -> None:
            super().optlab_epoch_ended(run=run, report=report)
            time.sleep(0.2)

    exp = experiment(tmp_path)
    _, result = execute(exp.runs[0], experiment=exp.name, observer=Slow())
    assert result.status == "FINISHED"
    assert len(result.evaluations) == 4
    assert result.metrics["train_time_s"] < 0.3
    assert result.steps.elapsed[-1] < 0.3
    assert result.evaluations[-1].elapsed < 0.3


UNRAISABLE = """\
import os, signal, weakref
from optlab._training.monitor import StopFlag, stop_on_signals

flag = StopFlag()

class Thing:
    pass

def interrupt(_):
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(100_000):  # the handler runs here, inside the callback
        pass

with stop_on_signals(flag):
    flag.request("SIGINT")  # the first Ctrl-C
    thing = Thing()
    ref = weakref.ref(thing, interrupt)
    del thing  # the second one lands in the callback, whose exception cannot propagate
print("forced" if flag.forced else "not forced")
"""


def test_a_second_ctrl_c_where_python_cannot_raise_it_prints_no_traceback() -> None:
    """A second Ctrl-C that lands in a weakref callback or a finalizer (garbage collected
    mid-run) still ends the invocation (``forced``), without Python's "Exception ignored in:
    ... Traceback ... KeyboardInterrupt" on stderr."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", UNRAISABLE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "forced\n"
    assert done.stderr == ""


def test_a_second_ctrl_c_while_the_handlers_are_put_back_leaves_none_of_them_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second Ctrl-C that lands as ``stop_on_signals`` puts the previous handlers back (sent
    here from the first ``signal.signal`` call that does so): it is ``forced`` (the caller ends
    as on a second Ctrl-C), and both previous handlers are back. Raised there, it left the
    context's own handlers installed for good: a later Ctrl-C only set a flag no one read."""
    import signal

    from optlab._training.monitor import stop_on_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    install = signal.signal
    closing = False

    def put_back(signum: int, handler: Any) -> Any:
        nonlocal closing
        if closing:  # the first handler put back: the second Ctrl-C comes now
            closing = False
            signal.raise_signal(signal.SIGINT)
        return install(signum, handler)

    flag = StopFlag()
    monkeypatch.setattr(signal, "signal", put_back)
    try:
        with stop_on_signals(flag):
            flag.request("SIGINT")  # the first Ctrl-C
            closing = True
    except KeyboardInterrupt:
        pass
    finally:
        after = {s: signal.getsignal(s) for s in before}
        for s, handler in before.items():
            install(s, handler)
    assert flag.forced
    assert after == before
