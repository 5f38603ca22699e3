"""Issue 21's figures: the full training loss measured at every evaluation point and drawn as
the loss that compares runs, the minibatch loss faint and smoothed, time on the run's own
clock, scales and colours chosen from the runs, the sweep's validation-accuracy figure, and
weight templates centred on zero."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tracking_data import drawn_figures, train

from optlab._contract.records import SWEEP_TAG, EpochReport, RunInfo, RunResult, StepHistory
from optlab._execution.recording import RecordingObserver
from optlab._report.comparison import comparison_figure
from optlab._report.drawing import full_loss, smoothed, smoothing_weight
from optlab._report.rows import comparison_rows
from optlab._report.run_figures import learning_curves_figure, weight_templates_figure
from optlab._report.sweep import SWEEP_FIGURE, sweep_figure
from optlab._spec.load import load_experiment
from optlab._training.monitor import TrainingMonitor
from optlab._training.runner import execute

GD_VS_SGD = """\
name: fair
seed: 0
data: {name: digits, limit: {train: 400, val: 100, test: 100}}
loss: {name: softmax}
regularizer: {name: l2, strength: 0.001}
optimizer: {name: sgd, lr: 0.05, batch_size: 20, epochs: 5}
variants:
  gd:
    optimizer: {name: gd, lr: 0.5, iterations: 6, eval_every: 1}
  sgd: {}
"""


def _run(tmp_path: Path, text: str = GD_VS_SGD) -> dict[str, tuple[RunInfo, RunResult]]:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    experiment = load_experiment(path, [])
    out = {}
    for run in experiment.runs:
        info, result = execute(run, experiment=experiment.name, observer=RecordingObserver())
        assert result.status == "FINISHED", result.error
        out[run.name] = (info, result)
    return out


@pytest.fixture(scope="module")
def fair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[RunInfo, RunResult]]:
    return _run(tmp_path_factory.mktemp("fair"))


# ------------------------------------------------------------------ the full training loss
def test_every_evaluation_measures_the_full_training_objective(
    fair: dict[str, tuple[RunInfo, RunResult]],
) -> None:
    """GD's step loss is the full objective at the W it steps from, so the objective measured
    at evaluation k must equal the loss of step k + 1: the evaluation measures the whole
    training set, with the regularization, at the current W."""
    _, gd = fair["gd"]
    full = [e.train_loss for e in gd.evaluations]
    assert len(full) == 6 and all(v is not None for v in full)
    np.testing.assert_allclose(full[:-1], gd.steps.loss[1:], rtol=1e-10)
    assert gd.final_loss == full[-1] == gd.metrics["train_loss"]
    # SGD: its last step's loss is one minibatch's; final loss and summary are the full one
    _, sgd = fair["sgd"]
    last = sgd.evaluations[-1]
    assert last.train_loss is not None and last.train_loss != last.loss == sgd.steps.loss[-1]
    assert sgd.final_loss == last.train_loss == sgd.metrics["train_loss"]
    row = {r["run"]: r for r in comparison_rows(list(fair.values()))}["sgd"]
    assert row["final_loss"] == last.train_loss
    assert any("train_loss=" in line for line in sgd.console)


def test_the_evaluation_reuses_its_product_for_the_loss(
    fair: dict[str, tuple[RunInfo, RunResult]],
) -> None:
    """An evaluation computes X @ W once for the training set (the accuracy and the full
    objective from the same scores) and once for the validation set."""
    from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
    from optlab_plugins.losses import SVMLoss
    from optlab_plugins.regularizers import L2

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)
    objective = Objective(
        X,
        y,
        3,
        BoundLoss(SVMLoss(), "svm"),
        [BoundRegularizer(L2(0.1), "l2")],
    )
    W = rng.standard_normal((5, 3))
    parts, accuracy = objective.value_and_accuracy(W)
    assert parts == objective.value(W)
    assert accuracy == objective.accuracy(W, X, y)

    calls: list[int] = []
    scores = objective.backend.scores

    def counted(X: Any, W: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(X))
        return scores(X, W, *args, **kwargs)

    objective.backend.scores = counted  # type: ignore[method-assign]
    info, _ = fair["gd"]
    reports: list[EpochReport] = []
    monitor = TrainingMonitor(
        objective,
        X[:20],
        y[:20],
        info,
        lambda run, report: reports.append(report),
        initial_loss=1.0,
    )
    monitor.step(60, 1.0, 0.9, 0.1)
    monitor.evaluate(1.0, W)
    assert calls == [60, 20]  # training set once, validation set once
    assert reports[0].train_loss == pytest.approx(parts.total, rel=1e-12)


def test_steps_keep_the_runs_monotonic_clock(fair: dict[str, tuple[RunInfo, RunResult]]) -> None:
    _, sgd = fair["sgd"]
    steps = sgd.steps
    assert len(steps.elapsed) == len(steps) and steps.elapsed[0] >= 0
    assert np.all(np.diff(steps.elapsed) >= 0)  # perf_counter: never backwards
    # the wall-clock stamps MLflow stores are the start plus the same elapsed seconds
    np.testing.assert_allclose(np.diff(steps.time - steps.elapsed), 0.0, atol=1e-6)
    for report in sgd.evaluations:
        assert report.elapsed is not None
        # a step is timed where it starts: the evaluation comes after its epoch's last step
        # started and before the next epoch's first step (at the evaluation's examples)
        following = int(np.searchsorted(steps.examples, report.examples))
        assert report.elapsed >= steps.elapsed[following - 1]
        assert following == len(steps) or report.elapsed <= steps.elapsed[following]


def test_the_runs_clock_starts_with_training_not_with_the_set_up_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run of a process finds the BLAS libraries (10-20 ms) before it trains: that
    was on its steps' clock, so 'loss vs time' drew it starting late, slower than the others,
    and its steps lasted longer than its train_time_s."""
    import time

    from optlab._training import runner

    found = runner.blas_threads

    def slow() -> int:  # as the first call in a process is
        time.sleep(0.2)
        return found()

    monkeypatch.setattr(runner, "blas_threads", slow)
    result = _run(tmp_path, GD_VS_SGD.replace("epochs: 5", "epochs: 1"))["sgd"][1]
    assert result.steps.elapsed[0] < 0.1
    assert result.steps.elapsed[-1] <= result.metrics["train_time_s"]


def test_a_history_without_elapsed_takes_it_from_its_wall_clock() -> None:
    old = StepHistory(
        np.array([5, 10]), np.array([100.0, 100.5]), np.ones(2), np.ones(2), np.zeros(2)
    )
    np.testing.assert_array_equal(old.elapsed, [0.0, 0.5])
    assert len(old[np.array([1])].elapsed) == 1


def test_final_loss_of_a_run_that_stopped_between_evaluations_is_its_last_step() -> None:
    run = train("stopped", lr=0.5, epochs=3)
    assert run.result is not None
    result = run.result
    assert result.final_loss == result.evaluations[-1].train_loss
    cut = replace(result, evaluations=result.evaluations[:-1])  # the last epoch not evaluated
    assert cut.final_loss == result.steps.loss[-1]


# ------------------------------------------------------------------ smoothing
def test_smoothing_is_tensorboards_debiased_moving_average() -> None:
    values = np.array([4.0, 2.0, math.nan, 3.0, 1.0])
    w = 0.6
    expected, last, count = [], 0.0, 0
    for v in values:  # TensorBoard's loop
        if not math.isfinite(v):
            expected.append(v)
            continue
        last = last * w + (1 - w) * v
        count += 1
        expected.append(last / (1 - w**count))
    np.testing.assert_allclose(smoothed(values, w), expected, rtol=1e-12)
    np.testing.assert_array_equal(smoothed(values[:2], 0.0), values[:2])
    assert smoothing_weight(40) == 0.0  # too few steps to smooth
    assert 0.7 < smoothing_weight(180) < 0.9 and smoothing_weight(10**6) == 0.999
    noisy = 1.0 + np.random.default_rng(0).standard_normal(400)
    assert smoothed(noisy, smoothing_weight(400))[100:].std() < 0.5 * noisy.std()


# ------------------------------------------------------------------ the comparison figure
def _lines(ax: Any) -> list[Any]:
    return list(ax.get_lines())


def test_comparison_draws_the_full_loss_and_the_minibatch_loss_faint_and_smoothed(
    tmp_path: Path, fair: dict[str, tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = drawn_figures(monkeypatch)

    def clocked(result: RunResult, seconds: float) -> RunResult:
        """The run's own clock set to end at ``seconds``: how long the runs really took on a
        busy machine must not decide the time axis' scale here."""
        n = len(result.steps)
        elapsed = np.linspace(seconds / n, seconds, n)
        return replace(result, steps=replace(result.steps, elapsed=elapsed))

    # a wall clock that jumped (NTP): the time axis must not follow it
    info, sgd = fair["sgd"]
    sgd = clocked(sgd, 2.0)
    jumped = replace(
        sgd.steps, time=sgd.steps.time + np.where(np.arange(len(sgd.steps)) > 5, 50, 0)
    )
    runs = [(fair["gd"][0], clocked(fair["gd"][1], 1.0)), (info, replace(sgd, steps=jumped))]
    comparison_figure(runs, tmp_path / "c.png")
    (fig,) = figures
    by_examples, by_time, by_val = fig.axes[:3]
    gd = fair["gd"][1]
    # from the initial loss at 0 examples (GD's first evaluation comes a pass later)
    full = {
        name: [result.metrics["initial_loss"], *(e.train_loss for e in result.evaluations)]
        for name, (_, result) in fair.items()
    }

    def drawn(ax: Any, y: Any) -> list[Any]:
        return [
            line
            for line in _lines(ax)
            if len(line.get_ydata()) == len(y) and np.allclose(line.get_ydata(), y)
        ]

    # the full objective: dots joined, for both runs, at the evaluations' examples
    for name, result in (("gd", gd), ("sgd", sgd)):
        (line,) = drawn(by_examples, full[name])
        assert line.get_marker() == "o" and line.get_linestyle() == "-"
        assert list(line.get_xdata()) == [0, *(e.examples for e in result.evaluations)]
    # SGD's per-step loss: faint, and its smoothed line over it; GD's steps are full batches
    (faint,) = drawn(by_examples, sgd.steps.loss)
    assert faint.get_alpha() is not None and faint.get_alpha() <= 0.3
    trend = smoothed(sgd.steps.loss, smoothing_weight(len(sgd.steps)))
    (smooth,) = drawn(by_examples, trend)
    assert smooth.get_alpha() is None or smooth.get_alpha() > 0.5
    assert smooth.get_color() == faint.get_color()
    assert not drawn(by_examples, gd.steps.loss)
    # loss vs time: the run's own monotonic seconds (not the wall clock that jumped)
    (faint_t,) = drawn(by_time, sgd.steps.loss)
    np.testing.assert_array_equal(faint_t.get_xdata(), sgd.steps.elapsed)
    assert max(faint_t.get_xdata()) < 50
    # validation accuracy against examples processed: GD and SGD on one scale
    for _, result in fair.values():
        accuracies = [e.val_accuracy for e in result.evaluations]
        (line,) = drawn(by_val, accuracies)
        assert list(line.get_xdata()) == [e.examples for e in result.evaluations]
    assert by_examples.get_xscale() == by_time.get_xscale() == "linear"


def test_where_a_diverged_run_stopped_is_marked_on_the_panel(
    fair: dict[str, tuple[RunInfo, RunResult]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its cross was drawn at its last loss, far above the range the others set: off the
    panel, so nothing showed that the run diverged."""
    figures = drawn_figures(monkeypatch)
    info, sgd = fair["sgd"]
    stop = len(sgd.steps) // 2
    steps = sgd.steps[np.arange(stop)]
    steps.loss[-1] = 1e9
    diverged = replace(sgd, status="FAILED", steps=steps, evaluations=sgd.evaluations[:1])
    runs = [fair["gd"], (replace(info, name="diverged"), diverged)]
    comparison_figure(runs, tmp_path / "c.png")
    (fig,) = figures
    by_examples = fig.axes[0]
    (cross,) = [line for line in by_examples.get_lines() if line.get_marker() == "x"]
    low, high = by_examples.get_ylim()
    assert list(cross.get_xdata()) == [steps.examples[-1]] and high < 1e3
    assert low <= cross.get_ydata()[0] <= high
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(text.startswith("where a run stopped") for text in legend)


def _loss_panels_of_the_first_two(
    runs: list[tuple[RunInfo, RunResult]], figures: list[Any], tmp_path: Path
) -> tuple[Any, float, list[str]]:
    """Draw the comparison of ``runs`` and check that its two loss panels range from 0 to
    just above the first two runs' losses (the third left them); the figure, that top, and
    the legend's texts."""
    comparison_figure(runs, tmp_path / "c.png")
    (fig,) = figures
    top = max(v for _, r in runs[:2] for v in [*full_loss(r)[2], r.steps.loss[0]])
    for ax in fig.axes[:2]:
        low, high = ax.get_ylim()
        assert low == 0 and high == pytest.approx(1.08 * top)
    return fig, top, [t.get_text() for t in fig.legends[0].get_texts()]


def test_a_diverging_learning_rate_leaves_the_loss_axis_to_the_runs_that_did_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep over optimizer.lr whose largest lr diverged (its loss at 1e30 before the guard
    failed it): the loss axis went up to 1e30 and every other curve was a flat line at the
    bottom, with nothing in the legend saying which run had diverged."""
    figures = drawn_figures(monkeypatch)
    runs = []
    for lr in (0.1, 0.5, 50.0):
        run = train(f"lr{lr:g}", lr=lr, fail_at_epoch=2 if lr == 50 else None)
        assert run.result is not None
        info = replace(
            run.info, tags={**run.info.tags, SWEEP_TAG: json.dumps({"optimizer.lr": lr})}
        )
        runs.append((info, run.result))
    info, diverged = runs[-1]
    steps = diverged.steps
    steps.loss[:] = np.geomspace(1.0, 1e30, len(steps))
    evaluations = [replace(diverged.evaluations[0], train_loss=1e20)]
    runs[-1] = (info, replace(diverged, steps=steps, evaluations=evaluations))
    fig, top, texts = _loss_panels_of_the_first_two(runs, figures, tmp_path)
    assert texts[:3] == ["lr=0.1", "lr=0.5", "lr=50 (diverged)"]
    (cross,) = [line for line in fig.axes[0].get_lines() if line.get_marker() == "x"]
    assert cross.get_ydata()[0] == pytest.approx(1.08 * top)  # at the top: off the scale


@pytest.mark.parametrize(("status", "rise"), [("FINISHED", 1e30), ("KILLED", math.inf)])
def test_a_run_whose_loss_rose_unstopped_leaves_the_loss_axis_to_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str, rise: float
) -> None:
    """A run the divergence guard did not stop (checks.divergence_factor raised: FINISHED
    with its loss at 1e30; or Ctrl-C as it reached inf: KILLED) set the loss axis: up to
    1e30, the other runs' curves flat lines at the bottom. The others set it; the run is
    drawn until it leaves the panels, and its legend entry says it diverged."""
    figures = drawn_figures(monkeypatch)
    ok, other, rising = (train(name, lr=lr) for name, lr in (("a", 0.1), ("b", 0.5), ("c", 1)))
    assert ok.result is not None and other.result is not None and rising.result is not None
    steps = rising.result.steps
    steps.loss[:] = np.geomspace(1.0, 1e30, len(steps))
    evaluations = [
        replace(e, train_loss=1e6 * 10**k) for k, e in enumerate(rising.result.evaluations)
    ]
    evaluations[-1] = replace(evaluations[-1], train_loss=rise)
    risen = replace(rising.result, status=status, steps=steps, evaluations=evaluations)
    runs = [(ok.info, ok.result), (other.info, other.result), (rising.info, risen)]
    _, _, texts = _loss_panels_of_the_first_two(runs, figures, tmp_path)
    ended = "" if status == "FINISHED" else f" ({status})"
    assert texts[:3] == ["a", "b", f"c{ended} (diverged)"]


def test_runs_without_a_validation_split_say_so_where_their_accuracy_would_be(
    fair: dict[str, tuple[RunInfo, RunResult]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data.val: 0: the panel was empty axes from 0 to 1, as if the accuracy were 0."""
    figures = drawn_figures(monkeypatch)
    runs = [
        (
            replace(info, data=replace(info.data, n_val=0)),
            replace(
                result, evaluations=[replace(e, val_accuracy=None) for e in result.evaluations]
            ),
        )
        for info, result in fair.values()
    ]
    comparison_figure(runs, tmp_path / "c.png")
    comparison_figure(list(fair.values()), tmp_path / "with_val.png")
    without, with_val = figures
    panel = without.axes[2]
    assert not panel.get_lines() and not panel.axison
    (text,) = [t.get_text() for t in panel.texts]
    assert (
        text == "no validation accuracy measured:\nthe runs have no validation split (data.val: 0)"
    )
    assert with_val.axes[2].get_lines() and not with_val.axes[2].texts


def test_an_axis_is_logarithmic_when_the_runs_differ_by_twenty_times_or_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """random_search_vs_gradient: 1,000 passes of random search against 10 of SGD."""
    figures = drawn_figures(monkeypatch)
    short = train("short", epochs=2)
    long = train("long", epochs=60, batch=45)  # 2 steps an epoch, 30x the examples
    pairs = [(r.info, r.result) for r in (short, long) if r.result is not None]
    comparison_figure(pairs, tmp_path / "wide.png")
    comparison_figure(pairs[:1], tmp_path / "one.png")
    wide, one = figures
    assert [ax.get_xscale() for ax in wide.axes[:3]][::2] == ["log", "log"]
    assert [ax.get_xscale() for ax in one.axes[:3]] == ["linear"] * 3


def test_a_run_that_stopped_early_does_not_turn_the_axes_logarithmic(
    tmp_path: Path, fair: dict[str, tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A learning rate that diverged at its second step (of a grid whose other runs all
    trained their 5 epochs) made every panel logarithmic: the finished runs' curves were
    squeezed into the right third, the validation accuracy over less than a decade."""
    figures = drawn_figures(monkeypatch)
    info, sgd = fair["sgd"]
    steps = sgd.steps[np.arange(2)]
    steps.loss[-1] = 1e4
    diverged = replace(sgd, status="FAILED", steps=steps, evaluations=[])
    comparison_figure([*fair.values(), (replace(info, name="lr100"), diverged)], tmp_path / "c.png")
    (fig,) = figures
    assert [ax.get_xscale() for ax in fig.axes[:3]] == ["linear"] * 3
    by_examples = fig.axes[0]
    (cross,) = [line for line in by_examples.get_lines() if line.get_marker() == "x"]
    assert list(cross.get_xdata()) == [steps.examples[-1]]  # still marked where it stopped


def test_a_group_of_seeds_of_which_some_failed_is_labelled_as_the_table_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One seed of two diverged: the table said 'FINISHED 1/2', the figure's legend
    'x (2 seeds) (FAILED)', as if the setting had failed."""
    figures = drawn_figures(monkeypatch)
    failed = train("x-seed0", lr=10.0, fail_at_epoch=2)
    ok = train("x-seed1", lr=10.0, seed=1)
    alone = train("y-seed0", lr=5.0, seed=2, fail_at_epoch=2)
    assert failed.result is not None and ok.result is not None and alone.result is not None
    ok_info = replace(ok.info, params={**failed.info.params, "seed": 1})
    runs = [(failed.info, failed.result), (ok_info, ok.result), (alone.info, alone.result)]
    comparison_figure(runs, tmp_path / "c.png")
    texts = [t.get_text() for t in figures[0].legends[0].get_texts()]
    assert texts[:2] == ["x (2 seeds) (FINISHED 1/2)", "y-seed0 (FAILED)"]
    assert comparison_rows(runs)[0]["status"] == "FINISHED 1/2"


def test_variants_of_identical_settings_are_not_drawn_as_seeds_of_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two variants with the same settings are two rows of the table; the figure drew them
    in one colour, labelled 'first (2 seeds)'."""
    figures = drawn_figures(monkeypatch)
    first, second = train("first", lr=0.5), train("second", lr=0.5)
    assert first.result is not None and second.result is not None
    assert first.info.params == second.info.params
    runs = [(first.info, first.result), (second.info, second.result)]
    comparison_figure(runs, tmp_path / "c.png")
    legend = figures[0].legends[0]
    assert [t.get_text() for t in legend.get_texts()][:2] == ["first", "second"]
    assert len({tuple(h.get_color()) for h in legend.legend_handles[:2]}) == 2
    assert [r["run"] for r in comparison_rows(runs)] == ["first", "second"]


def _sweep_runs() -> list[tuple[RunInfo, RunResult]]:
    """A 4 x 4 grid over L2 strength and learning rate (as reg_lr_sweep), in grid order."""
    pairs = []
    for strength in (1e-4, 1e-2, 1e-1, 1.0):
        for lr in (1e-3, 1e-2, 1e-1, 1.0):
            run = train(f"svm-strength{strength:g}-lr{lr:g}", lr=lr, lam=strength, epochs=2)
            assert run.result is not None
            point = {"regularizer.strength": strength, "optimizer.lr": lr}
            info = replace(run.info, tags={**run.info.tags, SWEEP_TAG: json.dumps(point)})
            pairs.append((info, run.result))
    return pairs


@pytest.fixture(scope="module")
def sweep() -> list[tuple[RunInfo, RunResult]]:
    return _sweep_runs()


def test_a_sweep_is_coloured_by_value_with_a_short_legend_under_the_panels(
    tmp_path: Path, sweep: list[tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = drawn_figures(monkeypatch)
    sweep = sweep[:8]  # two strengths x four learning rates: overlaid (16 runs: see below)
    comparison_figure(sweep, tmp_path / "sweep.png")
    (fig,) = figures
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    lrs = ["lr=0.001", "lr=0.01", "lr=0.1", "lr=1"]
    strengths = ["strength=0.0001", "strength=0.01"]
    assert texts[:6] == lrs + strengths  # one entry a value, not 8 runs from 10 colours
    handles = fig.legends[0].legend_handles
    colors = [tuple(h.get_color()) for h in handles[:4]]
    assert len(set(colors)) == 4
    from matplotlib import colormaps

    viridis = colormaps["viridis"]
    positions = [
        np.argmin([np.abs(np.array(viridis(t)) - c).sum() for t in np.linspace(0, 1, 256)])
        for c in colors
    ]
    assert positions == sorted(positions)  # ordered by the learning rate
    assert len({h.get_linestyle() for h in handles[4:6]}) == 2  # strength: line styles
    # the runs' lines take their value's colour and style
    by_val = fig.axes[2]
    for (info, _), line in zip(sweep, by_val.get_lines(), strict=True):
        point = json.loads(info.tags[SWEEP_TAG])
        assert (
            tuple(line.get_color()) == colors[[1e-3, 1e-2, 1e-1, 1.0].index(point["optimizer.lr"])]
        )
    # no empty strip: the panels reach the right edge, the legend sits under them
    assert fig.axes[2].get_position().x1 > 0.97
    fig.canvas.draw()
    box = fig.legends[0].get_window_extent().transformed(fig.transFigure.inverted())
    assert box.y1 < min(ax.get_position().y0 for ax in fig.axes[:3])
    assert box.width < 0.95


def test_a_sweep_of_many_runs_is_drawn_as_small_multiples(
    tmp_path: Path, sweep: list[tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """reg_lr_sweep's 16 runs cannot be told apart in one panel: a column of panels per
    strength (titled with it), its four runs coloured by learning rate, the rows (loss vs
    examples, loss vs time, val accuracy) sharing their axes, and a legend of the colours."""
    figures = drawn_figures(monkeypatch)
    comparison_figure(sweep, tmp_path / "sweep.png")
    (fig,) = figures
    axes = np.array(fig.axes).reshape(3, 4)
    strengths, lrs = [1e-4, 1e-2, 1e-1, 1.0], [1e-3, 1e-2, 1e-1, 1.0]
    titles = ["strength=0.0001", "strength=0.01", "strength=0.1", "strength=1"]
    assert [ax.get_title() for ax in axes[0]] == titles
    assert [ax.get_xlabel() for ax in axes[:, 0]] == [
        "examples processed",
        "training time (s)",
        "examples processed",
    ]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[:4] == ["lr=0.001", "lr=0.01", "lr=0.1", "lr=1"]
    assert not any(t.startswith("strength") for t in texts)  # the columns say it
    colors = [tuple(h.get_color()) for h in fig.legends[0].legend_handles[:4]]
    # each column: the runs of its strength, in order, one validation line each, by lr
    for k, strength in enumerate(strengths):
        column = [
            (json.loads(info.tags[SWEEP_TAG]), result)
            for info, result in sweep
            if json.loads(info.tags[SWEEP_TAG])["regularizer.strength"] == strength
        ]
        lines = axes[2, k].get_lines()
        assert len(lines) == len(column) == 4
        for (point, result), line in zip(column, lines, strict=True):
            assert list(line.get_ydata()) == [e.val_accuracy for e in result.evaluations]
            assert tuple(line.get_color()) == colors[lrs.index(point["optimizer.lr"])]
            assert line.get_linestyle() == "-"
    # one scale per row, to compare the columns; the y labels once, on the left
    for row in axes:
        assert len({ax.get_ylim() for ax in row}) == 1 and len({ax.get_xlim() for ax in row}) == 1
        assert row[0].get_ylabel() and not any(ax.get_ylabel() for ax in row[1:])
    fig.canvas.draw()
    box = fig.legends[0].get_window_extent().transformed(fig.transFigure.inverted())
    assert box.y1 < min(ax.get_position().y0 for ax in axes[2])
    assert axes[0, -1].get_position().x1 > 0.97


def test_wide_loss_ticks_keep_the_y_labels_of_small_multiples_inside_the_figure(
    tmp_path: Path, sweep: list[tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that finished with a loss of 6e5 gave the loss rows ticks such as "600000",
    which pushed the fixed margin's "training loss" off the figure's left edge."""
    figures = drawn_figures(monkeypatch)
    # every loss of a run that does not diverge (the last one's rises: it leaves the axis)
    info, result = sweep[-2]
    scale = 6e5 / result.evaluations[-1].train_loss
    huge = replace(
        result,
        steps=replace(result.steps, loss=result.steps.loss * scale),
        evaluations=[replace(e, train_loss=e.train_loss * scale) for e in result.evaluations],
        metrics={**result.metrics, "initial_loss": result.metrics["initial_loss"] * scale},
    )
    comparison_figure([*sweep[:-2], (info, huge), sweep[-1]], tmp_path / "sweep.png")
    (fig,) = figures
    axes = np.array(fig.axes).reshape(3, 4)
    assert axes[0, 0].get_ylim()[1] > 1e5  # wide ticks
    fig.canvas.draw()
    for ax in axes[:, 0]:
        assert ax.get_ylabel()
        label = ax.yaxis.label.get_window_extent()
        low, high = ax.get_ylim()
        ticks = [
            t.get_window_extent()
            for t, at in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
            if low <= at <= high
        ]
        assert label.x0 >= 0 and min(t.x0 for t in ticks) > label.x1


def test_the_keys_of_variants_and_of_swept_values_differ_in_more_than_colour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Variants x a sweep over lr: 'lr=0.001' (dark purple), 'variant=svm' (dark grey) and
    'full training loss (at evaluations)' (grey) were all a solid line with dots, told apart
    by a similar colour alone."""
    figures = drawn_figures(monkeypatch)
    runs = []
    for variant in ("svm", "softmax"):
        for lr in (0.01, 0.1, 1.0):
            run = train(f"{variant}-lr{lr:g}", lr=lr, variant=variant)
            assert run.result is not None
            tags = {**run.info.tags, SWEEP_TAG: json.dumps({"optimizer.lr": lr})}
            runs.append((replace(run.info, tags=tags), run.result))
    comparison_figure(runs, tmp_path / "c.png")
    (fig,) = figures
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[:5] == ["lr=0.01", "lr=0.1", "lr=1", "variant=svm", "variant=softmax"]

    def style(handle: Any) -> tuple[str, str, float]:
        return (str(handle.get_linestyle()), str(handle.get_marker()), handle.get_linewidth())

    keys = [style(h) for h in legend.legend_handles]
    values, others = keys[:3], keys[3:]
    assert len(set(values)) == 1  # the values: a colour each, one kind of key
    assert len(set(others)) == len(others) and values[0] not in others, keys


def test_a_grid_too_large_for_columns_draws_its_best_runs_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """7 learning rates x 7 strengths: more values than columns of small multiples, so every
    run got a colour of its own: 49 colours and a legend of 49 run names."""
    figures = drawn_figures(monkeypatch)
    runs = []
    for strength in np.geomspace(1e-4, 1e-1, 7):
        for lr in np.geomspace(1e-3, 1.0, 7):
            run = train(f"s{strength:.2g}-lr{lr:.2g}", lr=lr, lam=strength, epochs=2)
            assert run.result is not None
            point = {"regularizer.strength": float(strength), "optimizer.lr": float(lr)}
            runs.append(
                (
                    replace(run.info, tags={**run.info.tags, SWEEP_TAG: json.dumps(point)}),
                    run.result,
                )
            )
    comparison_figure(runs, tmp_path / "c.png")
    (fig,) = figures
    assert fig.get_suptitle() == (
        "the 8 best of 49 runs by validation accuracy; every run is in the table"
    )
    rows = sorted(comparison_rows(runs), key=lambda r: -r["best_val_accuracy"])
    best = [r["best_val_accuracy"] for r in rows]
    drawn = fig.axes[2].get_lines()
    assert len(drawn) == 8
    assert sorted(max(line.get_ydata()) for line in drawn) == sorted(best[:8])
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(texts) <= 8 + 2 + 2  # the shown runs' values or names, and the kinds of line
    # with seeds: the best 8 settings, each with its seeds
    seeds = [
        (replace(info, name=f"{info.name}-seed{k}", params={**info.params, "seed": k}), result)
        for info, result in runs
        for k in (0, 1)
    ]
    comparison_figure(seeds, tmp_path / "seeds.png")
    assert figures[-1].get_suptitle() == (
        "the 8 best of 49 settings (98 runs) by validation accuracy; every run is in the table"
    )
    assert len(figures[-1].axes[2].get_lines()) == 16


def test_no_run_is_drawn_in_the_grey_of_the_legends_key_for_the_lines(
    tmp_path: Path, sweep: list[tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight variants or more: the eighth took matplotlib's grey, its legend entry the same
    grey line with dots as "full training loss (at evaluations)" (and the 16th a light grey
    whose cross where it stopped hardly showed)."""
    from matplotlib.colors import to_rgb

    figures = drawn_figures(monkeypatch)
    variants = [  # runs of different settings, not a sweep: a colour and an entry each
        (replace(info, tags={k: v for k, v in info.tags.items() if k != SWEEP_TAG}), result)
        for info, result in sweep
    ]
    for n in (8, 10, 16):
        comparison_figure(variants[:n], tmp_path / f"{n}.png")
    for n, fig in zip((8, 10, 16), figures, strict=True):
        handles = fig.legends[0].legend_handles
        texts = [t.get_text() for t in fig.legends[0].get_texts()]
        names = [info.name for info, _ in variants[:n]]
        if n == 16:  # strength 1 and lr 1: its loss rose from 1.1 to 384
            names[-1] += " (diverged)"
        assert texts[:n] == names
        colors = [to_rgb(h.get_color()) for h in handles[:n]]
        assert len(set(colors)) == n
        greys = [c for c in colors if max(c) - min(c) < 0.05]
        assert not greys, (n, greys)
        lines = [line for ax in fig.axes[:3] for line in ax.get_lines()]
        assert not any(
            max(to_rgb(line.get_color())) - min(to_rgb(line.get_color())) < 0.05 for line in lines
        )


# ------------------------------------------------------------------ the sweep figure
def test_a_two_value_sweep_gets_the_courses_heatmap_best_cell_marked(
    tmp_path: Path, sweep: list[tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.patches import Rectangle

    figures = drawn_figures(monkeypatch)
    rows = comparison_rows(sweep)
    path = sweep_figure(rows, tmp_path / SWEEP_FIGURE)
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    (fig,) = figures
    ax = fig.axes[0]
    (image,) = ax.get_images()
    cells = np.asarray(image.get_array())
    assert cells.shape == (4, 4)  # rows: strength (up), columns: learning rate (across)
    for row in rows:
        point = row["sweep"]
        i = [1e-4, 1e-2, 1e-1, 1.0].index(point["regularizer.strength"])
        j = [1e-3, 1e-2, 1e-1, 1.0].index(point["optimizer.lr"])
        assert cells[i, j] == pytest.approx(row["best_val_accuracy"])
    assert ax.get_xlabel() == "optimizer.lr (log scale)"  # one decade a cell
    # one cell two decades, the others one: equal cells are no log scale (it said they were)
    assert ax.get_ylabel() == "regularizer.strength"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.001", "0.01", "0.1", "1"]
    best = next(r for r in rows if r["best"])
    (mark,) = [p for p in ax.patches if isinstance(p, Rectangle)]
    j = [1e-3, 1e-2, 1e-1, 1.0].index(best["sweep"]["optimizer.lr"])
    i = [1e-4, 1e-2, 1e-1, 1.0].index(best["sweep"]["regularizer.strength"])
    assert mark.get_xy() == (j - 0.5, i - 0.5)
    assert len(fig.axes) == 2  # and its colour bar


def test_a_random_sweep_is_scattered_on_log_axes_and_one_value_is_a_curve(
    tmp_path: Path, sweep: list[tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = drawn_figures(monkeypatch)
    scattered = comparison_rows(sweep[:-3])  # not a full grid: points where they are
    assert sweep_figure(scattered, tmp_path / "scatter.png") is not None
    ax = figures[-1].axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log") and not ax.get_images()
    one = []
    for info, result in sweep[:4]:  # strength fixed: one swept value, the learning rate
        point = json.loads(info.tags[SWEEP_TAG])
        tags = {**info.tags, SWEEP_TAG: json.dumps({"optimizer.lr": point["optimizer.lr"]})}
        one.append((replace(info, tags=tags), result))
    rows = comparison_rows(one)
    assert sweep_figure(rows, tmp_path / "line.png") is not None
    ax = figures[-1].axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "optimizer.lr"
    curve = ax.get_lines()[0]
    assert list(curve.get_xdata()) == [1e-3, 1e-2, 1e-1, 1.0]
    np.testing.assert_allclose(curve.get_ydata(), [r["best_val_accuracy"] for r in rows])
    star = [line for line in ax.get_lines() if line.get_marker() == "*"]
    best = next(r for r in rows if r["best"])
    assert len(star) == 1 and star[0].get_xdata()[0] == best["sweep"]["optimizer.lr"]


def _diverged_sweep(values: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Rows of a sweep whose learning rate 1000 diverged before it measured anything."""
    import itertools

    rows = []
    for point in itertools.product(*values.values()):
        sweep = dict(zip(values, point, strict=True))
        ok = sweep["optimizer.lr"] < 100
        rows.append(
            {
                "sweep": sweep,
                "best_val_accuracy": 0.8 + sweep["optimizer.lr"] if ok else None,
                "best": sweep["optimizer.lr"] == 0.1,
                "status": "FINISHED" if ok else "FAILED",
            }
        )
    return rows


def test_a_run_that_measured_nothing_is_marked_where_it_lies_on_the_sweep_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A learning rate that diverged in its first epoch has no accuracy: its cross was drawn
    at y=NaN (nowhere, the axis ending before it), its heatmap cell's '-' in white on white."""
    figures = drawn_figures(monkeypatch)
    lrs = [0.001, 0.01, 0.1, 1000.0]
    assert sweep_figure(_diverged_sweep({"optimizer.lr": lrs}), tmp_path / "l.png")
    ax = figures[-1].axes[0]
    (cross,) = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert list(cross.get_xdata()) == [1000.0] and ax.get_xlim()[1] > 1000.0
    assert "FAILED" in [t.get_text() for t in ax.texts]

    grid = _diverged_sweep({"optimizer.lr": lrs, "regularizer.strength": [1e-4, 1e-2]})
    assert sweep_figure(grid, tmp_path / "g.png")
    ax = figures[-1].axes[0]
    failed = [t for t in ax.texts if t.get_text() == "FAILED"]
    assert [t.get_position()[0] for t in failed] == [3, 3]  # the column of lr 1000
    assert all(t.get_color() == "black" for t in failed)  # on the empty (white) cell

    assert sweep_figure(grid[:-1], tmp_path / "s.png")  # not a full grid: scattered
    ax = figures[-1].axes[0]
    (cross,) = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert list(cross.get_xdata()) == [1000.0] and list(cross.get_ydata()) == [1e-4]


def test_a_sweep_of_replicates_says_it_draws_their_means_and_shows_their_spread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """seeds: [0, 1, 2] over a learning-rate sweep: the figure drew the means of three runs
    as if each were one run, and nothing of how far apart the seeds were (the table's
    ± std), the question replicates are run for."""
    import itertools

    from matplotlib.collections import LineCollection

    figures = drawn_figures(monkeypatch)
    lrs, strengths = [0.001, 0.01, 0.1], [1e-4, 1e-2]
    rows = [
        {
            "sweep": {"optimizer.lr": lr, "regularizer.strength": lam},
            "best_val_accuracy": 0.8 + lr,
            "best_val_accuracy_std": 0.01 + lr / 10,
            "replicates": 3,
            "best": lr == 0.1 and lam == 1e-4,
            "status": "FINISHED",
        }
        for lam, lr in itertools.product(strengths, lrs)
    ]
    line = [{**row, "sweep": {"optimizer.lr": row["sweep"]["optimizer.lr"]}} for row in rows[:3]]
    assert sweep_figure(line, tmp_path / "line.png")
    ax = figures[-1].axes[0]
    assert "mean ± std of 3 seeds" in ax.get_title()
    (bars,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    spans = sorted((seg[0][1], seg[1][1]) for seg in bars.get_segments())
    expected = [(0.8 + lr - (0.01 + lr / 10), 0.8 + lr + (0.01 + lr / 10)) for lr in lrs]
    np.testing.assert_allclose(spans, expected)
    assert sweep_figure(rows, tmp_path / "map.png")
    assert "mean of 3 seeds" in figures[-1].axes[0].get_title()
    single = [{**row, "replicates": 1, "best_val_accuracy_std": None} for row in line]
    assert sweep_figure(single, tmp_path / "one.png")  # one run a point: as before
    ax = figures[-1].axes[0]
    assert "seeds" not in ax.get_title() and not ax.collections


def test_no_sweep_figure_when_the_runs_have_no_validation_split(tmp_path: Path) -> None:
    """data.val: 0 over a grid: the figure was an empty heatmap of '-' under a colour bar
    from 0 to 1, titled 'best validation accuracy (best run marked)' with nothing marked."""
    import itertools

    grid = [
        {
            "sweep": {"optimizer.lr": lr, "regularizer.strength": lam},
            "best_val_accuracy": None,
            "best": False,
            "status": "FINISHED",
        }
        for lr, lam in itertools.product([0.001, 0.01, 0.1], [1e-4, 1e-2])
    ]
    assert sweep_figure(grid, tmp_path / "grid.png") is None
    line = [{**row, "sweep": {"optimizer.lr": row["sweep"]["optimizer.lr"]}} for row in grid[::2]]
    assert sweep_figure(line, tmp_path / "line.png") is None
    assert not list(tmp_path.iterdir())


def test_no_sweep_figure_for_variants_or_many_swept_values(
    tmp_path: Path, sweep: list[tuple[RunInfo, RunResult]], fair: dict[str, Any]
) -> None:
    assert sweep_figure(comparison_rows(list(fair.values())), tmp_path / "x.png") is None
    three = []
    for k, (info, result) in enumerate(sweep):
        point = {**json.loads(info.tags[SWEEP_TAG]), "optimizer.batch_size": k}
        three.append((replace(info, tags={**info.tags, SWEEP_TAG: json.dumps(point)}), result))
    assert sweep_figure(comparison_rows(three), tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


def test_the_parent_run_and_compare_store_the_sweep_figure(
    tmp_path: Path,
    sweep: list[tuple[RunInfo, RunResult]],
    monkeypatch: pytest.MonkeyPatch,
    new_store: Any,
) -> None:
    from tracking_data import drive

    from optlab._tracking.readback import compare
    from optlab._tracking.store import connect
    from optlab._tracking.tracker import Tracker

    monkeypatch.chdir(tmp_path)
    uri = new_store(tmp_path / "mlflow.db")
    pairs = sweep[:2]  # learning rates 0.001 and 0.01: a sweep of one value
    tracker = Tracker(uri, "sweep-figure", plots=True)
    runs = []
    for info, result in pairs:
        from tracking_data import TrainedRun

        runs.append(TrainedRun(info, [], replace(result, W=None, confusion=None)))
    with tracker.parent("sweep-figure") as parent_id:
        drive(tracker, runs)
        tracker.log_comparison([(r.info, r.result) for r in runs if r.result is not None])
    client = connect(uri)
    stored = {a.path for a in client.list_artifacts(parent_id)}
    assert {"comparison.png", SWEEP_FIGURE} <= stored
    rows = compare("sweep-figure", uri, tmp_path / "out").rows
    assert (tmp_path / "out" / SWEEP_FIGURE).exists()
    # read back: the full training loss of every evaluation, and elapsed seconds
    from optlab._tracking.readback import load_latest_invocation

    for (_, result), (_, back) in zip(
        pairs, load_latest_invocation("sweep-figure", uri), strict=True
    ):
        assert [e.train_loss for e in back.evaluations] == [
            e.train_loss for e in result.evaluations
        ]
        assert back.final_loss == result.final_loss
        np.testing.assert_array_equal(back.steps.elapsed, result.steps.elapsed)
    assert [r["final_loss"] for r in rows] == [r.final_loss for _, r in pairs]


# ------------------------------------------------------------------ weight templates
def test_single_channel_templates_diverge_from_zero_with_a_colour_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = drawn_figures(monkeypatch)
    run = train("templates", lr=0.5)
    assert run.result is not None and run.result.W is not None
    W = run.result.W
    weight_templates_figure(W, run.info.data, tmp_path / "t.png", "t")
    fig = figures[-1]
    ax, bar = fig.axes
    (image,) = ax.get_images()
    lo, hi = image.get_clim()
    assert lo == -hi and hi == pytest.approx(np.abs(W[:-1]).max())  # centred on zero
    assert image.get_cmap().name.startswith("RdBu_r")
    shown = np.asarray(image.get_array())
    assert np.isnan(shown).any()  # the gaps between templates: no colour, not "zero"
    np.testing.assert_allclose(shown[:4, :4], W[:-1, 0].reshape(4, 4))
    assert bar.get_ylabel() == "weight"
    # colour images keep the course's min-max RGB pictures (a colormap cannot colour them)
    rgb = replace(run.info.data, image_shape=(4, 4, 1))
    W3 = np.random.default_rng(0).standard_normal((49, 3))
    weight_templates_figure(W3, replace(rgb, image_shape=(4, 4, 3)), tmp_path / "c.png")
    assert len(figures[-1].axes) == 1


def test_learning_curves_smooth_minibatches_and_show_the_full_loss(
    tmp_path: Path, fair: dict[str, tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = drawn_figures(monkeypatch)
    for name in ("sgd", "gd"):
        info, result = fair[name]
        learning_curves_figure(result, tmp_path / f"{name}.png", name, info.data.n_train)
    sgd_fig, gd_fig = figures
    legend = [t.get_text() for t in sgd_fig.axes[0].get_legend().get_texts()]
    assert legend == [
        "loss (minibatch, smoothed)",
        "data loss (minibatch, smoothed)",
        "reg loss (minibatch)",
        "training loss (full)",
    ]
    legend = [t.get_text() for t in gd_fig.axes[0].get_legend().get_texts()]
    assert legend[0] == "loss (full batch)" and legend[-1] == "training loss (full)"


def test_gds_curves_start_at_the_initial_loss_at_zero_examples(
    tmp_path: Path, fair: dict[str, tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GD's full training loss started at its first evaluation, a whole pass over the
    training set in, though the run logs its initial_loss: the curve began at 0.5 at 400
    examples, as if training had started there."""
    figures = drawn_figures(monkeypatch)
    info, gd = fair["gd"]
    initial = gd.metrics["initial_loss"]
    assert gd.evaluations[0].examples == info.data.n_train  # evaluated after a pass
    learning_curves_figure(gd, tmp_path / "gd.png", "gd", info.data.n_train)
    comparison_figure([fair["gd"]], tmp_path / "c.png")
    curves, comparison = figures
    (line,) = [
        line for line in curves.axes[0].get_lines() if line.get_label() == "training loss (full)"
    ]
    assert (line.get_xdata()[0], line.get_ydata()[0]) == (0, initial)
    for ax in comparison.axes[:2]:  # loss vs examples, loss vs time: from 0
        (line,) = [line for line in ax.get_lines() if line.get_marker() == "o"]
        assert (line.get_xdata()[0], line.get_ydata()[0]) == (0, initial)
    # on a logarithmic axis 0 has no place: left out, not clipped to the far left (a flat
    # line at the first evaluation's loss across the panel)
    short, long = train("short", epochs=2), train("long", epochs=60, batch=45)
    assert short.result is not None and long.result is not None
    comparison_figure([(short.info, short.result), (long.info, long.result)], tmp_path / "w.png")
    by_examples = figures[-1].axes[0]
    assert by_examples.get_xscale() == "log"
    assert not np.isfinite(by_examples.xaxis.get_transform().transform([0.0])).any()
    # where the check did not measure it (checks.initial_loss: off), the evaluations alone
    unknown = replace(gd, metrics={k: v for k, v in gd.metrics.items() if k != "initial_loss"})
    learning_curves_figure(unknown, tmp_path / "off.png", "gd", info.data.n_train)
    (line,) = [
        line
        for line in figures[-1].axes[0].get_lines()
        if line.get_label() == "training loss (full)"
    ]
    assert list(line.get_xdata()) == [e.examples for e in gd.evaluations]


def _covered(ax: Any) -> int:
    """How many points of the lines of ``ax`` (and of their segments, 50 along each) its
    legend's box covers, once drawn."""
    box = ax.get_legend().get_window_extent()
    covered = 0
    for line in ax.get_lines():
        xy = line.get_xydata()
        t = np.linspace(0, len(xy) - 1, 50 * len(xy))
        along = np.column_stack([np.interp(t, np.arange(len(xy)), xy[:, k]) for k in (0, 1)])
        screen = ax.transData.transform(along)
        inside = (box.x0 <= screen[:, 0]) & (screen[:, 0] <= box.x1)
        covered += int(np.sum(inside & (box.y0 <= screen[:, 1]) & (screen[:, 1] <= box.y1)))
    return covered


def test_a_learning_curves_legend_covers_no_curve_that_stays_high_or_rises(
    tmp_path: Path, fair: dict[str, tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The legends sat in fixed corners: random search's loss, flat near its initial value,
    ran under the loss legend (upper right), and a diverged run's rising curves too; a
    falling accuracy ran under the accuracy legend (lower right)."""
    figures = drawn_figures(monkeypatch)
    info, sgd = fair["sgd"]
    n = len(sgd.steps)
    flat = np.full(n, 1.1) - 0.01 * np.linspace(0, 1, n)  # random search: hardly moves
    rising = np.geomspace(1.1, 5e3, n)  # diverging
    falling = np.linspace(0.9, 0.3, len(sgd.evaluations))
    for name, loss in (("flat", flat), ("rising", rising)):
        steps = replace(sgd.steps, loss=loss, data_loss=0.9 * loss, reg_loss=0.1 * loss)
        evaluations = [
            replace(
                e, train_loss=float(np.interp(e.examples, steps.examples, loss)), val_accuracy=a
            )
            for e, a in zip(sgd.evaluations, falling, strict=True)
        ]
        result = replace(sgd, steps=steps, evaluations=evaluations)
        learning_curves_figure(result, tmp_path / f"{name}.png", name, info.data.n_train)
    learning_curves_figure(sgd, tmp_path / "sgd.png", "sgd", info.data.n_train)
    flat_fig, rising_fig, sgd_fig = figures
    for fig in (flat_fig, rising_fig, sgd_fig):
        fig.canvas.draw()
        assert [_covered(ax) for ax in fig.axes[:2]] == [0, 0]
    # a loss that falls keeps the upper right corner (the accuracy's lower right corner is
    # where this run's validation accuracy runs)
    assert sgd_fig.axes[0].get_legend()._loc == 1


# ------------------------------------------------------------------ two-dimensional data
PLANE = """\
name: plane
seed: 0
data: {name: blobs, n_samples: 240}
loss: {name: softmax}
regularizer: {name: l2, strength: 0.001}
optimizer: {name: sgd, lr: 0.5, batch_size: 32, epochs: 6}
"""


def test_two_dimensional_data_get_decision_regions_at_a_few_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fair: dict[str, tuple[RunInfo, RunResult]]
) -> None:
    from optlab._report.planes import REGION_PANELS
    from optlab._tracking.artifacts import write_run_artifacts

    ((info, result),) = _run(tmp_path, PLANE).values()
    # W before training and at every evaluation; the training points without the bias
    epochs = [epoch for epoch, _ in result.snapshots]
    assert epochs == [0.0, *(e.epoch for e in result.evaluations)]
    np.testing.assert_array_equal(result.snapshots[-1][1], result.W)
    assert result.plane is not None
    X, y = result.plane
    assert X.shape == (info.data.n_train, 2) and y.shape == (info.data.n_train,)

    figures = drawn_figures(monkeypatch)
    out = tmp_path / "artifacts"
    out.mkdir()
    write_run_artifacts(info, result, out)
    assert (out / "decision_regions.png").exists()
    (fig,) = [f for f in figures if len(f.axes) == REGION_PANELS]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "epoch 0 (initial W)" and titles[-1].startswith("epoch 6 (train acc ")
    # the last panel's regions are the trained classifier's predictions on the plane
    last = fig.axes[-1]
    (image,) = last.get_images()
    regions = np.asarray(image.get_array())
    x0, x1, y0, y1 = image.get_extent()
    gx, gy = np.linspace(x0, x1, regions.shape[1]), np.linspace(y0, y1, regions.shape[0])
    W = result.W
    assert W is not None
    for i, j in ((0, 0), (5, 200), (120, 37), (239, 239)):
        point = np.array([gx[j], gy[i], 1.0])
        assert regions[i, j] == np.argmax(point @ W)
    (points,) = last.collections
    np.testing.assert_allclose(points.get_offsets(), X)
    # on the training points the regions agree with the run's accuracy
    predicted = np.argmax(np.column_stack([X, np.ones(len(X))]) @ W, axis=1)
    assert np.mean(predicted == y) == pytest.approx(result.evaluations[-1].train_accuracy)

    # image data: no weights kept, no plane, no such figure
    _, digits = fair["sgd"]
    assert digits.snapshots == [] and digits.plane is None


def test_the_decision_regions_title_fits_a_figure_of_one_panel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that diverged at its first steps has only its initial W: one panel 3.1 inches
    wide, under which 'diverge: decision regions on the training points' was cut at both
    ends ('ge: decision regions on the training p')."""
    from optlab._report.planes import decision_regions_figure

    ((info, result),) = _run(tmp_path, PLANE).values()
    figures = drawn_figures(monkeypatch)
    for name in ("diverge", "softmax-lr0.001-strength0.0001-seed0"):
        one = replace(result, name=name, snapshots=result.snapshots[:1])
        decision_regions_figure(one, info.data, tmp_path / f"{name}.png")
    for fig in figures:
        fig.canvas.draw()
        title = fig._suptitle
        assert title.get_text().endswith(": decision regions on the training points")
        box = title.get_window_extent()
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width
        assert title.get_fontsize() >= 9
        (ax,) = fig.axes  # the panel keeps its width
        assert ax.get_position().width * fig.get_figwidth() == pytest.approx(3.1 * 0.96)


# ------------------------------------------------------------------ loss landscape
def test_the_loss_landscape_slices_the_objective_through_w() -> None:
    from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
    from optlab._training.landscape import loss_landscape
    from optlab_plugins.losses import SVMLoss
    from optlab_plugins.regularizers import L2

    rng = np.random.default_rng(1)
    X = np.hstack([rng.standard_normal((80, 6)), np.ones((80, 1))])
    y = rng.integers(0, 4, 80)
    objective = Objective(X, y, 4, BoundLoss(SVMLoss(), "svm"), [BoundRegularizer(L2(0.05), "l2")])
    W = rng.standard_normal((7, 4))
    land = loss_landscape(objective, W, np.random.default_rng(0), points=41, grid=11)
    d1, d2 = land.directions
    for d in (d1, d2):  # scaled to ||W||
        assert np.linalg.norm(d) == pytest.approx(np.linalg.norm(W))
    # the slices are the objective at W + a d1 (+ b d2): W itself at the centre
    for i in (0, 7, 20, 40):
        a = land.steps[i]
        assert land.line[i] == pytest.approx(objective.value(W + a * d1).total, rel=1e-10)
    a, b = land.grid[2], land.grid[9]
    assert land.plane[9, 2] == pytest.approx(objective.value(W + a * d1 + b * d2).total)
    assert (
        land.plane[5, 5] == pytest.approx(land.line[20]) == pytest.approx(objective.value(W).total)
    )
    # one example's SVM loss is piecewise linear (few kinks); the full objective is convex
    k = land.example_index
    one = [SVMLoss().loss(X[k : k + 1] @ (W + a * d1), y[k : k + 1]) for a in land.steps]
    np.testing.assert_allclose(land.example, one, rtol=1e-10, atol=1e-12)
    kinks = np.abs(np.diff(land.example, 2)) > 1e-9
    assert 0 < kinks.sum() <= 2 * 3 and np.ptp(land.example) > 0
    assert np.all(np.diff(land.line, 2) >= -1e-9)


def _run_then_landscape(cli: Any, spec: str, uri: str) -> Any:
    """``optlab run`` of ``spec`` (written to ./spec.yaml), then ``optlab landscape plane
    --out land``: the landscape's result."""
    from optlab._cli import app

    Path("spec.yaml").write_text(spec)
    ran = cli.invoke(app, ["run", "spec.yaml", "--tracking-uri", uri])
    assert ran.exit_code == 0, ran.output
    drawn = cli.invoke(app, ["landscape", "plane", "--tracking-uri", uri, "--out", "land"])
    assert drawn.exit_code == 0, drawn.output
    return drawn


def test_optlab_landscape_stores_the_figure_on_a_finished_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Any
) -> None:
    from typer.testing import CliRunner

    from optlab._cli import app
    from optlab._tracking.store import connect

    monkeypatch.chdir(tmp_path)
    uri = new_store(tmp_path / "mlflow.db")
    cli = CliRunner()
    drawn = _run_then_landscape(cli, PLANE.replace("epochs: 6", "epochs: 2"), uri)
    assert "softmax: loss_landscape.png stored on the run" in drawn.stdout
    assert (tmp_path / "land" / "softmax" / "loss_landscape.png").read_bytes()[:4] == b"\x89PNG"
    client = connect(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("plane").experiment_id], "tags.`optlab.role` = 'run'"
    )
    assert "loss_landscape.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # --out=~/land made a folder "~" here
    home = cli.invoke(app, ["landscape", "plane", "--tracking-uri", uri, "--out=~/land"])
    assert home.exit_code == 0, home.output
    assert (tmp_path / "home" / "land" / "softmax" / "loss_landscape.png").is_file()
    assert not (tmp_path / "~").exists()
    unknown = cli.invoke(app, ["landscape", "plane", "--run", "plain", "--tracking-uri", uri])
    assert unknown.exit_code == 2 and "no run 'plain'" in unknown.stderr


def test_optlab_landscape_over_data_changed_since_the_run_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Any
) -> None:
    """The data file rewritten after the run (same shape, other values): the landscape was
    drawn over the new data and stored on the run as its own, without a word."""
    from typer.testing import CliRunner

    from optlab._cli import app

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    np.savez("d.npz", X=rng.normal(size=(90, 4)) + y[:, None], y=y)
    spec = "name: plane\ndata: {name: npz, path: d.npz}\nloss: {name: softmax}\n"
    spec += "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n"
    spec += "tracking: {figures: false}\n"
    uri = new_store(tmp_path / "mlflow.db")
    cli = CliRunner()
    _run_then_landscape(cli, spec, uri)
    np.savez("d.npz", X=rng.normal(size=(90, 4)), y=y)
    drawn = cli.invoke(app, ["landscape", "plane", "--tracking-uri", uri])
    assert drawn.exit_code == 2, drawn.output
    assert drawn.stderr == (
        "optlab: error: run 'softmax': dataset 'npz' is not the data it trained on (changed "
        "since: another sha256); restore those data to draw its landscape\n"
    )


def test_optlab_landscape_of_runs_that_all_failed_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Any
) -> None:
    """Every run diverged: optlab landscape drew nothing, printed a note and exited 0."""
    from typer.testing import CliRunner

    from optlab._cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(
        "name: diverged\ndata: {name: iris}\nloss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 1.0e+6, batch_size: 16, epochs: 2}\n"
        "tracking: {figures: false}\n"
    )
    uri = new_store(tmp_path / "mlflow.db")
    cli = CliRunner()
    assert cli.invoke(app, ["run", "spec.yaml", "--tracking-uri", uri]).exit_code == 1
    drawn = cli.invoke(app, ["landscape", "diverged", "--tracking-uri", uri])
    assert drawn.exit_code == 2, drawn.output
    assert drawn.stderr == (
        "optlab: error: experiment 'diverged': its latest invocation has no finished run with "
        "learned weights (svm FAILED); nothing to draw\n"
    )


def test_optlab_landscape_out_keeps_every_run_inside_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Any
) -> None:
    """Runs are named after variants, and a name is not a path: variants '..' and
    '../../escape' had their figures written to land/../loss_landscape.png and
    land/../../escape/loss_landscape.png, outside the folder given (and 'a/b' in a folder
    a/ of its own)."""
    from typer.testing import CliRunner

    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    variants = '\nvariants:\n  "..": {}\n  "../../escape": {}\n  "a/b": {}\n'
    spec = PLANE.replace("epochs: 6", "epochs: 1") + variants
    drawn = _run_then_landscape(CliRunner(), spec, new_store(tmp_path / "mlflow.db"))
    deep = tmp_path / "deep"
    written = sorted(p.relative_to(tmp_path) for p in deep.rglob("loss_landscape.png"))
    folders = sorted(Path("deep/work/land") / f for f in ("_..", "_.._.._escape", "a_b"))
    assert written == [f / "loss_landscape.png" for f in folders]
    for name, folder in zip(
        ("..", "../../escape", "a/b"), ("_..", "_.._.._escape", "a_b"), strict=True
    ):
        copy = Path("land") / folder / "loss_landscape.png"
        assert f"{name}: loss_landscape.png stored on the run and {copy}" in drawn.stdout


def test_optlab_landscape_elsewhere_says_where_it_looked_for_relative_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Any
) -> None:
    """A run on a relative data.path, its landscape drawn from another folder: the message
    said to pass --set data.path=..., which optlab landscape does not take."""
    from typer.testing import CliRunner

    from optlab._cli import app
    from optlab._training.data import clear_cache

    (tmp_path / "lab").mkdir()
    (tmp_path / "elsewhere").mkdir()
    y = np.arange(60) % 2
    X = np.random.default_rng(0).normal(size=(60, 3)) + y[:, None]
    np.savez(tmp_path / "lab" / "mine.npz", X=X, y=y)
    (tmp_path / "lab" / "spec.yaml").write_text(
        "name: rel\ndata: {name: npz, path: mine.npz}\nloss: {name: softmax}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n"
        "tracking: {figures: false}\n"
    )
    uri = new_store(tmp_path / "mlflow.db")
    cli = CliRunner()
    monkeypatch.chdir(tmp_path / "lab")
    assert cli.invoke(app, ["run", "spec.yaml", "--tracking-uri", uri]).exit_code == 0
    clear_cache()  # optlab landscape is another process: nothing loaded yet
    monkeypatch.chdir(tmp_path / "elsewhere")
    drawn = cli.invoke(app, ["landscape", "rel", "--tracking-uri", uri])
    assert drawn.exit_code == 2
    assert drawn.stderr == (
        f"optlab: error: dataset 'npz': mine.npz: no such file or directory in "
        f"{tmp_path / 'elsewhere'} (a relative data.path is taken from the folder optlab runs "
        "in)\n"
    )


def test_a_spec_that_asks_gets_each_runs_loss_landscape_when_it_has_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Any
) -> None:
    """``tracking: {landscape: ...}``: every run logs the slices (numbers and figure) through
    its learned W, even with the other figures off; without it, nothing is computed."""
    import optlab
    from optlab._spec.experiment import LandscapeOptions
    from optlab._tracking.store import connect

    off = tmp_path / "off.yaml"
    off.write_text(PLANE)
    assert load_experiment(off, []).runs[0].landscape is None  # off by default
    on = load_experiment(off, ["tracking.landscape=true"]).runs[0].landscape
    assert on == LandscapeOptions() and (on.points, on.grid) == (41, 21)  # the cheap default

    figures = drawn_figures(monkeypatch)
    uri = new_store(tmp_path / "mlflow.db")
    spec = PLANE.replace("epochs: 6", "epochs: 2") + (
        "tracking: {figures: false, landscape: {points: 21, grid: 7}}\n"
        "variants: {softmax: {}, svm: {loss: {name: svm}}}\n"
    )
    (tmp_path / "on.yaml").write_text(spec)
    results = optlab.run(str(tmp_path / "on.yaml"), tracking_uri=uri)
    assert list(results.to_pandas()["status"]) == ["FINISHED", "FINISHED"]
    client = connect(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("plane").experiment_id], "tags.`optlab.role` = 'run'"
    )
    assert sorted(r.info.run_name for r in runs) == ["softmax", "svm"]
    for run in runs:
        stored = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"loss_landscape.png", "loss_landscape.npz"} <= stored
        assert "learning_curves.png" not in stored  # figures: false
        folder = tmp_path / str(run.info.run_name)
        folder.mkdir()
        with np.load(client.download_artifacts(run.info.run_id, "loss_landscape.npz", folder)) as s:
            steps, line, grid, plane = s["steps"], s["line"], s["grid"], s["plane"]
            example = s["example"]
        assert steps.shape == line.shape == example.shape == (21,) and plane.shape == (7, 7)
        assert steps[10] == grid[3] == 0.0
        # the centre is the learned W: the full objective the run logged at its end
        final = run.data.metrics["summary/train_loss"]
        assert line[10] == pytest.approx(final, rel=1e-9)
        assert plane[3, 3] == pytest.approx(final, rel=1e-9)
        assert np.all(np.diff(line, 2) >= -1e-9)  # a bowl: the objective is convex
    # the figures drawn are the landscapes (the other figures are off): the command's figure
    assert len(figures) == 2
    for fig in figures:
        one, line_ax, plane_ax = fig.axes[:3]
        assert [ax.get_title() for ax in (line_ax, plane_ax)] == [
            "full objective, 1-D",
            "full objective, 2-D",
        ]
        assert one.get_title().startswith("one example (#")
        assert len(line_ax.get_lines()[0].get_xdata()) == 21
        assert plane_ax.get_images()[0].get_array().shape == (7, 7)
