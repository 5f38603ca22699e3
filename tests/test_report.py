"""The comparison report: rows (replicates, best run), the rich table, JSON/markdown, figures."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from tracking_data import TrainedRun, drawn_figures, train

from optlab._contract.records import SWEEP_TAG, DataSummary, RunInfo, RunResult, StepHistory
from optlab._report.comparison import comparison_figure
from optlab._report.rows import (
    comparison_rows,
    format_cell,
    records_to_json,
    rows_to_markdown,
    run_records,
)
from optlab._report.run_figures import (
    confusion_figure,
    learning_curves_figure,
    weight_templates,
    weight_templates_figure,
)
from optlab._report.table import render_table

PNG = b"\x89PNG\r\n\x1a\n"


def _pair(run: TrainedRun) -> tuple[RunInfo, RunResult]:
    assert run.result is not None
    return run.info, run.result


def _with(run: TrainedRun, **metrics: float) -> tuple[RunInfo, RunResult]:
    info, result = _pair(run)
    return info, replace(result, metrics={**result.metrics, **metrics})


@pytest.fixture(scope="module")
def seeds() -> list[tuple[RunInfo, RunResult]]:
    return [_pair(train(f"svm-seed{s}", lr=0.5, seed=s, variant="svm")) for s in range(3)]


def test_replicates_become_mean_and_std(seeds: list[tuple[RunInfo, RunResult]]) -> None:
    other = _pair(train("softmax", lr=0.05))
    rows = comparison_rows([*seeds, other])
    assert [r["run"] for r in rows] == ["svm", "softmax"]
    group = rows[0]
    assert group["replicates"] == 3
    assert group["members"] == ["svm-seed0", "svm-seed1", "svm-seed2"]
    finals = [r.final_loss for _, r in seeds]
    assert group["final_loss"] == pytest.approx(np.mean(finals))
    assert group["final_loss_std"] == pytest.approx(np.std(finals, ddof=1))
    tests = [r.metrics["test_accuracy"] for _, r in seeds]
    assert group["test_accuracy"] == pytest.approx(np.mean(tests))
    assert rows[1]["replicates"] == 1 and rows[1]["final_loss_std"] is None
    assert group["loss"] == "softmax" and group["regularizer"] == "l2"
    assert group["optimizer"] == "sgd" and group["variant"] == "svm"
    assert group["status"] == "FINISHED"


def test_replicates_of_a_spec_without_variants_show_no_seed_as_their_variant() -> None:
    """Without named variants a run's variant is its own name: a group of seeds read
    ``softmax-seed0`` in a variant column of its own, beside the mean of every seed."""
    runs = [_pair(train(f"softmax-seed{s}", lr=0.5, seed=s)) for s in range(2)]
    rows = comparison_rows([*runs, _pair(train("svm", lr=0.05))])
    assert [(r["run"], r["variant"]) for r in rows] == [("softmax", "softmax"), ("svm", "svm")]
    console = Console(width=200, record=True)
    console.print(render_table(rows))
    text = console.export_text()
    assert "variant" not in text and "seed0" not in text


def test_the_lines_around_a_narrow_table_are_as_wide_as_the_terminal() -> None:
    """One run's table is narrow; the lines above and under it wrapped to its width (as a
    rich title and caption do), a column of words: 'no finished run with a / validation
    accuracy: no / best run'."""
    rows = comparison_rows([_pair(train("softmax", lr=0.05))])
    console = Console(width=160, record=True)
    console.print(render_table(rows))
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert lines[0].startswith("optlab comparison (loss: softmax")
    assert any(
        line.startswith("best by validation accuracy: softmax (val ")
        and line.endswith("test accuracy is reported, never used to choose)")
        for line in lines
    ), lines


@pytest.mark.parametrize(
    ("mean", "std", "shown"),
    [
        (0.261, 6.635e-05, "0.2610 ± 0.0001"),  # was 0.261 ± 6.635e-05
        (0.9073, 0.0006001, "0.9073 ± 0.0006"),  # was 0.9073 ± 0.0006001
        (0.3816, 0.01811, "0.3816 ± 0.0181"),
        (2.784, 0.5, "2.784 ± 0.500"),  # was 2.784 ± 0.5
        (123.45, 3.2, "123.5 ± 3.2"),
    ],
)
def test_the_final_loss_of_replicates_has_its_std_to_the_means_last_digit(
    mean: float, std: float, shown: str
) -> None:
    assert format_cell({"final_loss": mean, "final_loss_std": std}, "final_loss") == shown
    assert format_cell({"final_loss": mean, "final_loss_std": None}, "final_loss") == f"{mean:.4g}"


def test_variants_of_identical_settings_are_rows_of_their_own() -> None:
    """Two variants whose settings are the same are two rows, not one group of "replicates"
    (a spec without seeds has none)."""
    first, second = _pair(train("first", lr=0.5)), _pair(train("second", lr=0.5))
    assert first[0].params == second[0].params
    rows = comparison_rows([first, second])
    assert [(r["run"], r["replicates"]) for r in rows] == [("first", 1), ("second", 1)]


def test_best_is_chosen_by_validation_never_test() -> None:
    a, b = train("a", lr=0.5), train("b", lr=0.05)
    rows = comparison_rows(
        [
            _with(a, best_val_accuracy=0.9, test_accuracy=0.5),
            _with(b, best_val_accuracy=0.8, test_accuracy=0.99),
        ]
    )
    assert [r["best"] for r in rows] == [True, False]
    rows = comparison_rows(
        [
            _with(a, best_val_accuracy=0.7, test_accuracy=0.99),
            _with(b, best_val_accuracy=0.8, test_accuracy=0.5),
        ]
    )
    assert [r["best"] for r in rows] == [False, True]


def test_the_best_line_of_runs_without_a_test_split_reports_no_test_accuracy() -> None:
    """With `data.test: 0` the line read 'best by validation accuracy: softmax (val 0.947,
    test -; test accuracy is reported, never used to choose)': a test accuracy it did not have
    said to be reported."""
    pairs = []
    for run, val in ((train("a", lr=0.5), 0.9), (train("b", lr=0.05), 0.8)):
        info, result = _with(run, best_val_accuracy=val)
        metrics = {k: v for k, v in result.metrics.items() if k != "test_accuracy"}
        pairs.append((info, replace(result, metrics=metrics)))
    line = rows_to_markdown(comparison_rows(pairs)).splitlines()[-1]
    assert line == "best by validation accuracy: a (val 0.900; no test split)"


def test_the_best_line_names_the_runs_tied_with_the_best_on_validation() -> None:
    """reg_lr_sweep: two runs at 276/288 validation accuracy; the line named the first as
    best (starred alone, its test accuracy reported) and said nothing of the other, as if
    the validation set had chosen between them."""
    a, b, c = train("a", lr=0.5), train("b", lr=0.05), train("c", lr=0.1)
    rows = comparison_rows(
        [
            _with(a, best_val_accuracy=276 / 288, test_accuracy=0.95),
            _with(b, best_val_accuracy=270 / 288, test_accuracy=0.99),
            _with(c, best_val_accuracy=276 / 288, test_accuracy=0.93),
        ]
    )
    assert [r["best"] for r in rows] == [True, False, False]
    line = rows_to_markdown(rows).splitlines()[-1]
    assert line == (
        "best by validation accuracy: a (val 0.958, test 0.950; tied on validation with c; "
        "test accuracy is reported, never used to choose)"
    )
    console = Console(width=300, record=True)
    console.print(render_table(rows))
    assert "tied on validation with c;" in console.export_text()
    untied = comparison_rows([_with(a, best_val_accuracy=0.9), _with(b, best_val_accuracy=0.8)])
    assert "tied" not in rows_to_markdown(untied)


def test_failed_runs_are_never_best_and_mixed_groups_count_finished() -> None:
    failed = train("x-seed0", lr=10.0, fail_at_epoch=2)
    assert failed.result is not None
    failed_pair = _with(failed, best_val_accuracy=1.0)
    ok = _pair(train("x-seed1", lr=10.0, seed=1))
    ok = (replace(ok[0], params={**failed.info.params, "seed": 1}), ok[1])
    alone = _pair(train("y", lr=0.05))
    rows = comparison_rows([failed_pair, ok, alone])
    mixed = rows[0]
    assert mixed["run"] == "x" and mixed["status"] == "FINISHED 1/2"
    assert mixed["final_loss"] == pytest.approx(ok[1].final_loss)  # the FINISHED one only
    only_failed = comparison_rows([failed_pair])
    assert only_failed[0]["best"] is False and only_failed[0]["status"] == "FAILED"


def test_table_json_and_markdown(seeds: list[tuple[RunInfo, RunResult]]) -> None:
    rows = comparison_rows([*seeds, _pair(train("softmax", lr=0.05))])
    console = Console(width=200, record=True)
    console.print(render_table(rows))
    text = console.export_text()
    for header in ("run", "final loss", "best val", "test", "time (s)", "status"):
        assert header in text
    assert "variant" not in text  # it would only repeat the run names
    best = next(r for r in rows if r["best"])
    assert f"★\u00a0{best['run']}" in text
    assert "svm (3 seeds)" in text and " ± " in text
    assert "best by validation accuracy" in text
    # the JSON of a record per run (comparison.json, --json, the API's rows) is the records
    diverged = _with(train("softmax", lr=0.05), test_accuracy=math.nan)
    odd = _with(train("other", lr=0.05), train_time_s=np.float64(1.5))
    records = run_records([*seeds, diverged, odd])
    assert json.loads(records_to_json(records)) == records
    assert [r["group"]["name"] for r in records] == ["svm", "svm", "svm", "softmax", "other"]
    assert records[3]["test_accuracy"] is None and records[3]["metrics"]["test_accuracy"] is None
    assert type(records[4]["train_time_s"]) is float
    markdown = rows_to_markdown(rows)
    assert markdown.splitlines()[0].startswith("| run | variant | loss |")
    assert markdown.count("\n|") == len(rows) + 1


def test_the_markdown_table_has_the_swept_values_as_the_terminals_does() -> None:
    """comparison.md (the table on the parent run in the MLflow UI) had no column for the
    swept values: a random sweep's learning rates were only in the run names, to three
    digits (svm-lr0.0153-strength0.000416 for lr 0.0153041)."""
    runs = []
    for lr, lam in ((0.0153041, 0.000415643), (1.60276e-05, 1.25651e-05)):
        info, result = _pair(train(f"svm-lr{lr:.3g}-strength{lam:.3g}", lr=lr, lam=lam))
        point = {"optimizer.lr": lr, "regularizer.strength": lam, "loss.name": "svm"}
        runs.append((replace(info, tags={**info.tags, SWEEP_TAG: json.dumps(point)}), result))
    lines = rows_to_markdown(comparison_rows(runs)).splitlines()
    assert lines[0].startswith("| run | variant | loss | regularizer | optimizer | lr | strength |")
    assert "| 0.0153041 | 0.000415643 |" in lines[2].replace("**", "")  # the best: bold
    assert "| 1.60276e-05 | 1.25651e-05 |" in lines[3].replace("**", "")
    assert "name" not in lines[0]  # a swept loss.name: the loss column tells it
    assert lines[1].count("|") == lines[0].count("|")


def test_weight_templates_follow_the_course_notes() -> None:
    rng = np.random.default_rng(0)
    summary = DataSummary("img", 1, 1, 1, 49, 3, ("a", "b", "c"), "float64", "", (4, 4, 3), True)
    W = rng.standard_normal((49, 3))
    images = weight_templates(W, summary)
    assert images.shape == (3, 4, 4, 3)
    assert images.min() == 0.0 and images.max() == 1.0  # min-max over all classes
    expected = W[:-1, 1].reshape(4, 4, 3)
    lo, hi = W[:-1].min(), W[:-1].max()
    np.testing.assert_allclose(images[1], (expected - lo) / (hi - lo))
    chw = replace(summary, image_shape=(3, 4, 4))
    assert weight_templates(W, chw).shape == (3, 4, 4, 3)
    gray = replace(summary, image_shape=(4, 4), n_features=16, has_bias=False)
    assert weight_templates(W[:16], gray).shape == (3, 4, 4)
    with pytest.raises(ValueError, match="do not fit image shape"):
        weight_templates(W, replace(summary, image_shape=(5, 5)))


def test_figures_are_real_pngs(tmp_path: Path, seeds: list[tuple[RunInfo, RunResult]]) -> None:
    info, result = seeds[0]
    assert result.W is not None and result.confusion is not None
    paths = [
        learning_curves_figure(result, tmp_path / "curves.png", info.name),
        weight_templates_figure(result.W, info.data, tmp_path / "templates.png", info.name),
        confusion_figure(result.confusion, info.data.classes, tmp_path / "confusion.png"),
        comparison_figure(
            [*seeds, _pair(train("f", lr=10.0, fail_at_epoch=1))], tmp_path / "c.png"
        ),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == PNG and len(data) > 5_000
    width = int.from_bytes(paths[3].read_bytes()[16:20], "big")
    assert width == 1600  # three panels side by side at 100 dpi


@pytest.mark.parametrize("n", [2, 3, 10])
@pytest.mark.parametrize("title", ["svm", "softmax-lr0.001-strength0.0001-momentum0.9-seed12"])
def test_the_confusion_matrix_title_stays_on_the_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, title: str
) -> None:
    """A sweep's run name over a few classes: the title ran off both sides of the figure."""
    figures = drawn_figures(monkeypatch)
    names = ["setosa", "versicolor", "virginica", *(f"class {k}" for k in range(3, n))][:n]
    confusion_figure(np.diag(np.arange(n) + 5), names, tmp_path / "c.png", title)
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_title() == f"{title}: test confusion (accuracy 1.000)"
    box = ax.title.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    assert ax.title.get_fontsize() >= 9


@pytest.mark.parametrize("image_shape", [(4, 4), (4, 4, 3)])
@pytest.mark.parametrize("classes", [("cat", "dog"), ("setosa", "versicolor", "virginica")])
def test_the_weight_templates_title_stays_on_the_figure(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    image_shape: tuple[int, ...],
    classes: tuple[str, ...],
) -> None:
    figures = drawn_figures(monkeypatch)
    pixels = math.prod(image_shape)
    summary = DataSummary(
        "npz", 9, 3, 3, pixels + 1, len(classes), classes, "float32", "0" * 64, image_shape, True
    )
    W = np.random.default_rng(0).normal(size=(pixels + 1, len(classes)))
    title = "softmax-lr0.001-strength0.0001-seed1"
    weight_templates_figure(W, summary, tmp_path / "t.png", title)
    (fig,) = figures
    heading = fig.get_suptitle()
    assert heading == f"{title}: learned weight templates"
    (text,) = [t for t in fig.texts if t.get_text() == heading]
    box = text.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    assert text.get_fontsize() >= 9


def test_a_run_that_stopped_before_its_first_evaluation_says_so_instead_of_accuracies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A learning rate that diverged at step 2: the accuracy panel was empty axes around 0
    with a legend for a line that was not there."""
    figures = drawn_figures(monkeypatch)
    t = np.array([0.0, 0.001])
    loss = np.array([9.0, 1.5e5])
    steps = StepHistory(np.array([32, 64]), t, loss, loss, np.zeros(2), t)
    error = "diverged: loss 1.5e+05 exceeded 1000x the initial loss 9 at step 2 (64 examples)"
    result = RunResult(name="svm-lr1000", status="FAILED", error=error, steps=steps)
    learning_curves_figure(result, tmp_path / "curves.png", "svm-lr1000", 300)
    (fig,) = figures
    _, accuracy = fig.axes
    assert not accuracy.get_lines() and accuracy.get_legend() is None
    (text,) = [t.get_text() for t in accuracy.texts]
    assert text.startswith("no accuracy measured: the run stopped before its first evaluation")
    assert "diverged: loss 1.5e+05" in text


def _visible_ticks(axis: Any) -> list[float]:
    lo, hi = sorted(axis.get_view_interval())
    return [float(t) for t in axis.get_majorticklocs() if lo <= t <= hi]


def _legend_texts(legend: Any) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def test_figures_keep_their_titles_labels_legends_and_readable_ticks(
    tmp_path: Path, seeds: list[tuple[RunInfo, RunResult]], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = drawn_figures(monkeypatch)
    info, result = seeds[0]
    assert result.confusion is not None
    learning_curves_figure(result, tmp_path / "curves.png", info.name)
    confusion_figure(result.confusion, info.data.classes, tmp_path / "confusion.png", "t")
    comparison_figure(seeds, tmp_path / "c.png")
    curves, confusion, comparison = figures

    assert curves.get_suptitle() == f"{info.name}: {result.status}"
    left, right = curves.axes
    assert (left.get_xlabel(), left.get_ylabel()) == ("examples processed", "loss")
    assert (right.get_xlabel(), right.get_ylabel()) == ("epoch", "accuracy")
    assert _legend_texts(left.get_legend()) == [
        "loss (minibatch)",  # 18 steps: too few to smooth
        "data loss (minibatch)",
        "reg loss (minibatch)",
        "training loss (full)",
    ]
    assert _legend_texts(right.get_legend()) == ["train_accuracy", "val_accuracy"]

    (ax,) = confusion.axes
    n = result.confusion.shape[0]
    assert ax.get_title().startswith("t: test confusion (accuracy ")
    assert ax.title.get_position()[1] == 1.0  # placed explicitly, not measured
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in ax.get_xticklabels()] == list(info.data.classes)
    cells = sorted(t.get_text() for t in ax.texts)
    assert cells == sorted(str(v) for v in result.confusion.ravel()) and len(cells) == n * n

    titles = [a.get_title() for a in comparison.axes]
    assert titles == ["loss vs examples", "loss vs time", "val accuracy"]
    labels = [a.get_ylabel() for a in comparison.axes]
    assert labels == ["training loss", "training loss", "validation accuracy"]
    assert _legend_texts(comparison.legends[0]) == [  # replicates: one colour, one entry
        "svm (3 seeds)",
        "full training loss (at evaluations)",
        "minibatch loss, smoothed (faint: per step)",
    ]

    for axes in (left, right, *comparison.axes):
        for axis in (axes.xaxis, axes.yaxis):
            assert 3 <= len(_visible_ticks(axis)) <= 7  # fewer ticks, still a scale
    assert all(t == int(t) for t in _visible_ticks(right.xaxis))  # whole epochs


def test_a_sweep_fits_80_columns_shared_components_above_swept_values_in_columns() -> None:
    from dataclasses import replace

    from optlab._contract.records import SWEEP_TAG

    pairs = []
    for lr in (0.5, 0.05, 0.005):
        pair = _pair(train(f"softmax-lr{lr}", lr=lr))
        tags = {**pair[0].tags, SWEEP_TAG: json.dumps({"optimizer.lr": lr})}
        pairs.append((replace(pair[0], tags=tags), pair[1]))
    rows = comparison_rows(pairs)
    console = Console(width=80, record=True)
    console.print(render_table(rows))
    lines = console.export_text().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    text = "\n".join(lines)
    assert "loss: softmax, regularizer: l2, optimizer: sgd" in text  # one line above
    header = next(line for line in lines if " lr " in f" {line} ")
    for word in ("run", "lr", "final loss", "best val", "test", "time (s)", "status"):
        assert word in header, header  # every header on one line, none split
    for row, lr in zip(rows, ("0.5", "0.05", "0.005"), strict=True):
        line = next(line for line in lines if row["run"] in line)
        assert lr in line and row["status"] in line and "softmax" not in line.split()[1:]


def test_train_time_has_three_significant_digits() -> None:
    from optlab._report.rows import format_cell

    for seconds, text in (
        (0.0012345, "0.00123"),
        (1.58, "1.58"),
        (12.34, "12.3"),
        (1234.5, "1234"),
    ):
        assert format_cell({"train_time_s": seconds}, "train_time_s") == text


def test_numbers_are_never_cut_in_a_narrow_terminal() -> None:
    runs = [train("svm", lr=0.5), train("softmax-with-a-long-name", lr=0.05)]
    rows = comparison_rows([_pair(r) for r in runs])
    console = Console(width=80, record=True)
    console.print(render_table(rows))
    text = console.export_text()
    assert "…" not in text
    for row in rows:
        assert f"{row['final_loss']:.4g}" in text
        assert f"{row['test_accuracy']:.3f}" in text
        assert row["status"] in text


def _row(run: str, status: str = "FINISHED", **values: Any) -> dict[str, Any]:
    """A comparison row as :func:`comparison_rows` makes it (a single run unless given)."""
    row: dict[str, Any] = {
        "run": run,
        "variant": "",
        "sweep": {},
        "loss": "svm",
        "regularizer": "l2",
        "optimizer": "sgd",
        "status": status,
        "replicates": 1,
        "members": [run],
        "best": False,
    }
    for key in ("final_loss", "best_val_accuracy", "test_accuracy", "train_time_s"):
        row[key], row[f"{key}_std"] = 0.5, None
    return row | values


def _drawn(rows: list[dict[str, Any]], width: int) -> list[str]:
    console = Console(width=width, record=True)
    console.print(render_table(rows))
    lines = console.export_text().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width
    return lines


def _assert_whole(lines: list[str], rows: list[dict[str, Any]], shown: str = "{}") -> None:
    """Each row is one line of the table holding its whole run name (as ``shown``) and ending
    in its whole status."""
    lines = [line for line in lines if line.startswith(" ")]  # the table's, not the caption's
    for row in rows:
        name = re.escape(shown.format(row["run"]))
        held = [line for line in lines if re.search(rf"\s{name}\s", line)]
        assert len(held) == 1, (name, lines)
        assert held[0].rstrip().endswith(f" {row['status']}"), held[0]
    header = next(line for line in lines if line.split()[:1] == ["run"])
    assert header.rstrip().endswith(" status"), header


def test_run_names_and_statuses_are_whole_in_80_columns() -> None:
    """The walk-through's sweep (two variants, three learning rates): the variant column only
    repeats the names' prefixes, and nothing is cut or folded."""
    rows = [
        _row(
            f"{variant}-lr{lr}",
            variant=variant,
            loss=variant,
            sweep={"optimizer.lr": lr},
            final_loss=2.129,
            train_time_s=0.00555,
            status=status,
        )
        for variant, status in (("svm", "FINISHED"), ("softmax", "FINISHED 2/3"))
        for lr in (0.0001, 0.001, 0.01)
    ]
    rows[2]["best"], rows[5]["status"] = True, "FAILED"
    lines = _drawn(rows, 80)
    _assert_whole(lines, rows)
    assert "★\u00a0svm-lr0.01" in "\n".join(lines)
    header = next(line for line in lines if line.split()[:1] == ["run"])
    assert header.split()[:3] == ["run", "loss", "lr"], header  # no variant column
    assert "left out" not in "\n".join(lines)


def test_a_narrow_terminal_leaves_out_the_least_useful_columns_first() -> None:
    """The components' columns, then the ``± std`` of replicates give way first; the run
    names, best val and statuses always stay, and the line under the table says what went."""
    rows = [
        _row(
            f"softmax-long-strength{s}-lr{lr}",
            variant="softmax-long",
            loss=loss,
            regularizer=regularizer,
            optimizer=optimizer,
            sweep={"regularizer.strength": s, "optimizer.lr": lr},
            final_loss=1.234,
            final_loss_std=0.012,
            best_val_accuracy=0.9,
            best_val_accuracy_std=0.004,
            replicates=3,
            status=status,
        )
        for s, lr, loss, regularizer, optimizer, status in (
            (0.0001, 0.0001, "svm", "l1", "sgd", "FINISHED 2/3"),
            (0.01, 0.001, "softmax", "l2", "adam", "FAILED"),
        )
    ]
    rows[0]["best"] = True
    wide = "\n".join(_drawn(rows, 250))
    for header in ("loss", "regularizer", "optimizer", "strength", "lr", "final loss", "±"):
        assert header in wide
    assert "left out" not in wide
    for width, gone in (
        (120, "optimizer, regularizer, loss, ± std"),
        (80, "optimizer, regularizer, loss, ± std, time (s), final loss, strength, lr"),
    ):
        lines = _drawn(rows, width)
        _assert_whole(lines, rows, "{} (3 seeds)")
        assert "★\u00a0softmax-long-strength0.0001-lr0.0001 (3 seeds)" in "\n".join(lines)
        header = next(line for line in lines if line.split()[:1] == ["run"])
        assert "val" in header.split()  # best val stays
        assert "±" not in "\n".join(lines[: lines.index(header) + 4])
        assert f"left out to fit {width} columns: {gone}" in " ".join(lines)


def test_a_measure_no_run_has_and_a_swept_component_name_take_no_column() -> None:
    """Without a validation split no run has a best val: its column of '-' is not drawn (it
    kept the table's place at 80 columns while the test accuracy gave way); a swept loss.name
    is the loss column already, not a second column headed 'name'."""
    rows = [
        _row(
            f"{variant}-{loss}",
            variant=variant,
            loss=loss,
            optimizer=optimizer,
            sweep={"loss.name": loss},
            best_val_accuracy=None,
            test_accuracy=0.9,
            final_loss=0.5,
            train_time_s=0.01,
        )
        for variant, optimizer in (("fast", "sgd"), ("slow", "adam"))
        for loss in ("svm", "softmax")
    ]
    lines = _drawn(rows, 80)
    header = next(line for line in lines if line.split()[:1] == ["run"])
    assert header.split() == [
        "run",
        "loss",
        "optimizer",
        "final",
        "loss",
        "test",
        "time",
        "(s)",
        "status",
    ]
