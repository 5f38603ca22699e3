"""The sweep figure of a parent run: validation accuracy against one swept value, or the
course's heatmap over two (log axes, the best cell marked)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optlab._contract.components import Array
from optlab._report import drawing

__all__ = [
    "SWEEP_FIGURE",
    "sweep_figure",
]


#: the parent run's figure of a sweep: validation accuracy against the swept values
SWEEP_FIGURE = "val_accuracy_sweep.png"


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _log_spaced(values: Sequence[float]) -> bool:
    """Positive values spanning a factor of 10 or more: drawn on a logarithmic axis."""
    return bool(values) and min(values) > 0 and max(values) >= 10 * min(values)


def _log_cells(values: Sequence[float]) -> bool:
    """Whether a heatmap's equal cells at sorted ``values`` read as a log axis: log-spaced
    (:func:`_log_spaced`) with one ratio between neighbours (within 5%); 1e-4, 1e-2, 0.1, 1
    are not (the first cell spans two decades, the others one)."""
    if not _log_spaced(values):  # two values at least, a decade apart
        return False
    steps = np.diff(np.log(np.asarray(values, dtype=float)))
    return bool(np.all(np.abs(steps - steps.mean()) <= 0.05 * steps.mean()))


def sweep_figure(rows: Sequence[dict[str, Any]], path: Path | str) -> Path | None:
    """Validation accuracy against the swept values, as in the course's hyperparameter search.

    Two swept numeric values (learning rate and regularization strength): a heatmap of the
    best validation accuracy of each grid cell, on logarithmic axes where the values span a
    factor of 10 or more (a grid's cells at its values; a random sweep's points scattered on
    the axes); one swept value: validation accuracy against it. The best run (by validation
    accuracy, as in the table) is marked. With replicates (``seeds:``) a point is the mean of
    its seeds, as the title says, and the curve of one value has their std as error bars.
    Nothing is drawn (``None``) for other comparisons: no sweep, more than two swept values,
    a value that is not a number, two rows at the same point (a sweep crossed with
    variants), or finished runs without a validation accuracy (``data.val: 0``).

    Parameters
    ----------
    rows : sequence of dict
        :func:`~optlab._report.rows.comparison_rows` (``sweep``, ``best_val_accuracy``,
        ``best``, ``status``; replicates already merged, with ``replicates`` and
        ``best_val_accuracy_std`` where there are).
    path : path
        PNG file to write.
    """
    drawing.load_matplotlib()
    keys = list(dict.fromkeys(k for row in rows for k in row.get("sweep", {})))
    if not keys or len(keys) > 2 or len(rows) < 2:
        return None
    points = [tuple(row.get("sweep", {}).get(k) for k in keys) for row in rows]
    if len(set(points)) != len(points) or not all(_numeric(v) for p in points for v in p):
        return None
    accuracy = np.array(
        [np.nan if r["best_val_accuracy"] is None else r["best_val_accuracy"] for r in rows]
    )
    # replicates: each point is the mean of a group of seeds, the spread their std
    spread = np.array([r.get("best_val_accuracy_std") or np.nan for r in rows], dtype=float)
    seeds = {int(r.get("replicates", 1)) for r in rows}
    of = "" if max(seeds) == 1 else f"{seeds.pop()} seeds" if len(seeds) == 1 else "seeds"
    # a run that did not finish is marked with its status, also where it measured nothing
    # (a learning rate that diverged in its first epoch), which had no point to draw
    ended = {i: str(r["status"]) for i, r in enumerate(rows) if r["status"] != "FINISHED"}
    if not ended and not np.isfinite(accuracy).any():  # no validation split (data.val: 0)
        return None
    best = next((i for i, r in enumerate(rows) if r["best"]), None)
    if len(keys) == 1:
        values = [p[0] for p in points]
        return _sweep_line(keys[0], values, (accuracy, spread, of), ended, best, path)
    x_key = drawing.x_key(keys)
    y_key = keys[1] if x_key == keys[0] else keys[0]
    xi, yi = keys.index(x_key), keys.index(y_key)
    return _sweep_map(
        (x_key, [p[xi] for p in points]),
        (y_key, [p[yi] for p in points]),
        (accuracy, of),
        ended,
        best,
        path,
    )


def _sweep_line(
    key: str,
    values: list[float],
    measured: tuple[Array, Array, str],
    ended: dict[int, str],
    best: int | None,
    path: Path | str,
) -> Path:
    """``measured``: the accuracy at each value, the std of its replicates (NaN: one run) and
    what the accuracy is the mean of (``3 seeds``; empty: one run a point)."""
    accuracy, spread, of = measured
    order = np.argsort(values)
    x = np.asarray(values, dtype=np.float64)[order]
    fig = drawing.figure(6, 4)
    fig.subplots_adjust(left=0.13, right=0.96, bottom=0.14, top=0.9)
    ax = fig.subplots()
    ax.plot(x, accuracy[order], "o-", color="C0", ms=5)
    if of:
        ax.errorbar(x, accuracy[order], yerr=spread[order], fmt="none", ecolor="C0", capsize=3)
    for i, status in ended.items():
        if np.isfinite(accuracy[i]):
            ax.plot([values[i]], [accuracy[i]], "x", color="C3", ms=8)
        else:  # nothing measured: marked at the foot of the axes, at its value
            foot = ax.get_xaxis_transform()
            ax.plot([values[i]], [0.05], "x", color="C3", ms=8, transform=foot)
            ax.text(values[i], 0.09, status, transform=foot, ha="center", fontsize=8, color="C3")
    if best is not None:
        ax.plot([values[best]], [accuracy[best]], "*", color="C3", ms=16, mec="black")
    if _log_spaced(values):
        ax.set_xscale("log")
    else:
        drawing.few_ticks(ax)
    ax.grid(alpha=0.3)
    title = f"validation accuracy vs {key}" + (f" (mean ± std of {of})" if of else "")
    ax.set(xlabel=key, ylabel="best validation accuracy", title=title)
    return drawing.save(fig, path)


def _sweep_map(
    x: tuple[str, list[float]],
    y: tuple[str, list[float]],
    measured: tuple[Array, str],
    ended: dict[int, str],
    best: int | None,
    path: Path | str,
) -> Path:
    """``measured``: the accuracy at each point and what it is the mean of (``3 seeds``;
    empty: one run a point)."""
    (x_key, xs), (y_key, ys), (accuracy, of) = x, y, measured
    columns, lines = sorted(set(xs)), sorted(set(ys))
    grid = len(columns) * len(lines) == len(xs)  # every cell of the grid, once
    fig = drawing.figure(6.6, 5)
    fig.subplots_adjust(left=0.15, right=0.9, bottom=0.12, top=0.91)
    ax = fig.subplots()
    finite = accuracy[np.isfinite(accuracy)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if grid:
        cells = np.full((len(lines), len(columns)), np.nan)
        status = np.full(cells.shape, "-", dtype=object)
        for k, (value, a, b) in enumerate(zip(accuracy, xs, ys, strict=True)):
            cells[lines.index(b), columns.index(a)] = value
            status[lines.index(b), columns.index(a)] = ended.get(k, "-")
        image = ax.imshow(cells, cmap="viridis", vmin=lo, vmax=hi, origin="lower", aspect="auto")
        # the values at their cells, in order: evenly spaced decades read as a log axis
        ax.set_xticks(range(len(columns)), [drawing.value_label(float(v)) for v in columns])
        ax.set_yticks(range(len(lines)), [drawing.value_label(float(v)) for v in lines])
        middle = (lo + hi) / 2
        for (i, j), value in np.ndenumerate(cells):
            text = status[i, j] if not np.isfinite(value) else f"{value:.3f}"
            # an empty cell is white (its status was drawn in white, so not at all)
            color = "white" if np.isfinite(value) and value <= middle else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
        if best is not None:
            from matplotlib.patches import Rectangle

            j, i = columns.index(xs[best]), lines.index(ys[best])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
        scale = " (log scale)"  # only where the equal cells are equal steps of the log
        x_label = x_key + (scale if _log_cells(columns) else "")
        y_label = y_key + (scale if _log_cells(lines) else "")
    else:  # a random sweep: its points where they are, as in the course's scatter
        image = ax.scatter(xs, ys, c=accuracy, cmap="viridis", vmin=lo, vmax=hi, s=60)
        unmeasured = [i for i in ended if not np.isfinite(accuracy[i])]  # no colour to show
        if unmeasured:
            ax.plot([xs[i] for i in unmeasured], [ys[i] for i in unmeasured], "x", color="C3")
        if best is not None:
            ax.plot([xs[best]], [ys[best]], "*", color="red", ms=18, mec="black")
        if _log_spaced(xs):
            ax.set_xscale("log")
        if _log_spaced(ys):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        x_label, y_label = x_key, y_key
    bar = fig.colorbar(image, ax=ax, fraction=0.06, pad=0.02)
    bar.set_label("best validation accuracy")
    title = "best validation accuracy" + (f", mean of {of}" if of else "") + " (best run marked)"
    ax.set(xlabel=x_label, ylabel=y_label, title=title)
    return drawing.save(fig, path)
