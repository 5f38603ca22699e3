"""Figures of runs, drawn with matplotlib's object API on the Agg canvas (no pyplot state, so
safe from any thread). matplotlib is imported inside each function."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optlab._contract.components import Array
from optlab._contract.records import SWEEP_TAG, DataSummary, RunInfo, RunResult, StepHistory
from optlab._report.rows import group_name

if TYPE_CHECKING:
    from optlab._contract.records import Landscape

__all__ = [
    "REGION_PANELS",
    "SWEEP_FIGURE",
    "comparison_figure",
    "confusion_figure",
    "decision_regions_figure",
    "learning_curves_figure",
    "loss_landscape_figure",
    "smoothed",
    "smoothing_weight",
    "sweep_figure",
    "weight_images",
    "weight_templates",
    "weight_templates_figure",
]

#: the parent run's figure of a sweep: validation accuracy against the swept values
SWEEP_FIGURE = "val_accuracy_sweep.png"
#: the minibatch loss is smoothed over about this fraction of a run's steps
_SMOOTH_FRACTION = 1 / 40
#: an axis is logarithmic when the runs' extents along it differ by this factor or more
_LOG_RATIO = 20.0


def _figure(width: float, height: float) -> Any:
    """A figure on the Agg canvas. No layout engine: one costs about half of a small figure's
    drawing time, so margins are set by hand."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _few_ticks(ax: Any, *, integer_x: bool = False, bins: int = 6) -> None:
    """At most ``bins`` intervals (six: seven major ticks) per axis, at 1, 2 or 5 times a
    power of ten.

    Every tick is several artists (marks, label, grid line) created and drawn anew for each
    figure, and the default locator puts eight or nine on the wider axes here.
    ``integer_x``: whole ticks (epochs) when the range holds at least two.
    """
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 5, 10], integer=integer_x))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 5, 10]))


def _save(fig: Any, path: Path | str) -> Path:
    """Draw and write the PNG. zlib level 1 instead of 6: a quarter to a third less encoding
    time for files about 12% larger."""
    out = Path(path)
    fig.savefig(out, dpi=100, format="png", pil_kwargs={"compress_level": 1})
    return out


def smoothing_weight(n: int) -> float:
    """The weight of :func:`smoothed` for a curve of ``n`` points: an average over about
    ``n / 40`` points (none for fewer than 80 points' worth: 0)."""
    span = n * _SMOOTH_FRACTION
    return 0.0 if span <= 1.0 else min(1.0 - 1.0 / span, 0.999)


def smoothed(values: Array, weight: float) -> Array:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start.

    ``out[i] = sum_j w^(i-j) (1-w) v[j] / sum_j w^(i-j) (1-w)`` over the finite ``v[j]``,
    ``j <= i``; a non-finite value is passed through and does not enter the average.

    Parameters
    ----------
    values : (S,) array
    weight : float in [0, 1)
        0 returns the values themselves.
    """
    out = np.asarray(values, dtype=np.float64).copy()
    if weight <= 0.0:
        return out
    last = norm = 0.0
    keep = 1.0 - weight
    for i, v in enumerate(out.tolist()):
        if math.isfinite(v):
            last = weight * last + keep * v
            norm = weight * norm + keep
            out[i] = last / norm
    return out


def _minibatch(steps: StepHistory, n_train: int) -> bool:
    """Whether ``steps`` were minibatch steps (their loss is noisy, a batch's), knowing the
    training set has ``n_train`` examples (0: unknown, taken as minibatches)."""
    if not len(steps):
        return False
    if n_train <= 0:
        return True
    sizes = np.diff(steps.examples, prepend=0)
    return bool(np.any(sizes < n_train))


def _full_loss(result: RunResult) -> tuple[Array, Array, Array]:
    """(examples, elapsed seconds, full training objective) of the evaluations that measured
    it (the elapsed seconds are NaN where not known)."""
    evals = [e for e in result.evaluations if e.train_loss is not None]
    examples = np.array([e.examples for e in evals], dtype=np.float64)
    elapsed = np.array([np.nan if e.elapsed is None else e.elapsed for e in evals], np.float64)
    loss = np.array([e.train_loss for e in evals], dtype=np.float64)
    return examples, elapsed, loss


def _wide(extents: Sequence[float]) -> bool:
    """Whether curves ending at ``extents`` (positive) need a logarithmic axis: the longest
    is :data:`_LOG_RATIO` times the shortest or more (GD's 100 passes against SGD's 10 and
    random search's 1,000 squash the short ones against a linear axis)."""
    ends = [e for e in extents if e > 0 and math.isfinite(e)]
    return len(ends) > 1 and max(ends) >= _LOG_RATIO * min(ends)


def learning_curves_figure(
    result: RunResult, path: Path | str, title: str = "", n_train: int = 0
) -> Path:
    """Losses against examples processed; accuracies per epoch.

    The left panel shows the full training objective at each evaluation point (dots), and the
    per-step losses: those of minibatches (``n_train``: the size of the training set, to tell
    them from full-batch steps) faint, with their smoothed line over them (:func:`smoothed`).

    Parameters
    ----------
    result : RunResult
        ``result.steps`` (S points) and ``result.evaluations`` (E points) are drawn.
    path : path
        PNG file to write.
    n_train : int
        Training examples (0: unknown; the steps are then taken as minibatches).
    """
    fig = _figure(11, 4)
    left, right = fig.subplots(1, 2)
    steps = result.steps
    minibatch = _minibatch(steps, n_train)
    weight = smoothing_weight(len(steps)) if minibatch else 0.0
    kind = "minibatch" if minibatch else "full batch"
    for name, style, label in (
        ("loss", "-", "loss"),
        ("data_loss", "--", "data loss"),
        ("reg_loss", ":", "reg loss"),
    ):
        values = getattr(steps, name)
        if weight > 0.0 and name != "reg_loss":  # the penalty depends on W only: not noisy
            (line,) = left.plot(steps.examples, values, style, lw=0.7, alpha=0.25)
            left.plot(
                steps.examples,
                smoothed(values, weight),
                style,
                color=line.get_color(),
                label=f"{label} ({kind}, smoothed)",
            )
        else:
            left.plot(steps.examples, values, style, label=f"{label} ({kind})")
    examples, _, full = _full_loss(result)
    if len(full):
        left.plot(examples, full, "o-", color="black", ms=3.5, lw=1.0, label="training loss (full)")
    left.set_xlabel("examples processed")
    left.set_ylabel("loss")
    # placed, not "best": finding the emptiest corner reads every point of every line
    left.legend(fontsize=8, loc="upper right")
    left.grid(alpha=0.3)
    evals = result.evaluations
    epochs = [e.epoch for e in evals]
    right.plot(epochs, [e.train_accuracy for e in evals], "o-", label="train_accuracy")
    val = [np.nan if e.val_accuracy is None else e.val_accuracy for e in evals]
    if not np.all(np.isnan(val)):
        right.plot(epochs, val, "s-", label="val_accuracy")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.legend(loc="lower right")
    right.grid(alpha=0.3)
    _few_ticks(left)
    _few_ticks(right, integer_x=True)
    fig.suptitle(f"{title or result.name}: {result.status}")
    return _save(fig, path)


def weight_images(W: Array, summary: DataSummary) -> Array:
    """The learned weights as one image per class, as they are (signed, not scaled).

    Parameters
    ----------
    W : (D, C) array
        Weights; the last row is the bias when ``summary.has_bias``.
    summary : DataSummary
        ``image_shape`` (``(H, W)``, ``(H, W, 3)`` or ``(3, H, W)``) must hold ``D`` pixels.

    Returns
    -------
    (C, H, W) or (C, H, W, 3) float64 array
    """
    if summary.image_shape is None:
        raise ValueError("the data are not images (image_shape is None)")
    w = np.asarray(W[:-1] if summary.has_bias else W, dtype=np.float64)
    shape = tuple(summary.image_shape)
    if int(np.prod(shape)) != w.shape[0]:
        raise ValueError(f"{w.shape[0]} weights per class do not fit image shape {shape}")
    images = w.T.reshape((w.shape[1], *shape))
    if len(shape) == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3):
        images = np.moveaxis(images, 1, -1)  # (C, 3, H, W) -> (C, H, W, 3)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    return images


def weight_templates(W: Array, summary: DataSummary) -> Array:
    """The learned weights as one image per class, min-max scaled to [0, 1] over all classes.

    As in the CS231n notes: ``(w - w.min()) / (w.max() - w.min())`` of
    :func:`weight_images`; (C, H, W) or (C, H, W, 3).
    """
    images = weight_images(W, summary)
    lo, hi = float(images.min()), float(images.max())
    return (images - lo) / (hi - lo) if hi > lo else np.zeros_like(images)


def weight_templates_figure(
    W: Array, summary: DataSummary, path: Path | str, title: str = ""
) -> Path:
    """One template image per class in a grid, titled by class.

    Single-channel images are drawn in a diverging colormap centred on zero (red: positive
    evidence for the class, blue: negative, white: none) with a colour bar; colour images as
    the course draws them (:func:`weight_templates`: a colormap cannot colour three channels).
    The templates are tiled into one image on one axes: a grid of axes, one per class, costs
    several times as much to draw.
    """
    colour = weight_images(W, summary).ndim == 4
    images = weight_templates(W, summary) if colour else weight_images(W, summary)
    n, height, width = images.shape[:3]
    cols = min(n, 10)
    rows = -(-n // cols)
    gap = max(1, round(0.15 * max(height, width)))
    shape = (rows * (height + gap) - gap, cols * (width + gap) - gap, *images.shape[3:])
    canvas = np.ones(shape) if colour else np.full(shape, np.nan)  # gaps: white
    for k in range(n):
        top, left = (k // cols) * (height + gap), (k % cols) * (width + gap)
        canvas[top : top + height, left : left + width] = images[k]
    bar = 0.0 if colour else 1.0  # inches for the colour bar
    fig_w, fig_h = 1.3 * cols + bar, 1.5 * rows + 0.4
    fig = _figure(fig_w, fig_h)
    fig.subplots_adjust(
        left=0.01 * 1.3 * cols / fig_w,
        right=1 - (0.01 * 1.3 * cols + bar) / fig_w,
        bottom=0.02,
        top=1 - 0.7 / fig_h,
    )
    ax = fig.subplots()
    if colour:
        ax.imshow(canvas, vmin=0, vmax=1)
    else:
        from matplotlib import colormaps

        bound = float(np.nanmax(np.abs(canvas))) or 1.0
        cmap = colormaps["RdBu_r"].with_extremes(bad="white")
        image = ax.imshow(canvas, cmap=cmap, vmin=-bound, vmax=bound)
        cax = fig.add_axes((1 - (bar - 0.15) / fig_w, 0.08, 0.18 / fig_w, 0.8 - 0.7 / fig_h))
        colorbar = fig.colorbar(image, cax=cax)
        colorbar.set_label("weight", fontsize=8)
        colorbar.ax.tick_params(labelsize=7)
    ax.axis("off")
    classes = list(summary.classes) or [str(k) for k in range(n)]
    for k in range(n):
        x = (k % cols) * (width + gap) + (width - 1) / 2
        y = (k // cols) * (height + gap) - 0.5
        label = classes[k] if k < len(classes) else str(k)
        ax.text(x, y, label, ha="center", va="bottom", fontsize=9)
    fig.suptitle(f"{title}: learned weight templates" if title else "learned weight templates")
    return _save(fig, path)


def confusion_figure(
    confusion: Array, classes: Sequence[str], path: Path | str, title: str = ""
) -> Path:
    """The (C, C) confusion counts (row: true class, column: predicted), annotated when small."""
    counts = np.asarray(confusion)
    n = counts.shape[0]
    size = max(4.0, min(12.0, 0.45 * n + 2))
    labels = list(classes) if len(classes) == n else [str(k) for k in range(n)]
    # margins from the longest class name instead of a layout engine (which costs most of
    # this figure's drawing time)
    longest = max((len(label) for label in labels), default=1)
    annotate = n <= 20  # the counts in the cells; a colour bar only for larger matrices
    width = size if annotate else size + 1
    left = min(0.4, (0.6 + 0.07 * longest) / width)
    rotate = n > 10 or longest > 3  # long names stand upright under their column
    bottom = min(0.4, (0.6 + (0.07 * longest if rotate else 0.15)) / size)
    fig = _figure(width, size)
    fig.subplots_adjust(left=left, bottom=bottom, right=0.97, top=0.92)
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    if not annotate:
        fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), labels, rotation=90 if rotate else 0, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if annotate:
        threshold = counts.max() / 2 if counts.size else 0
        for (i, j), value in np.ndenumerate(counts):
            color = "white" if value > threshold else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=7)
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else float("nan")
    # an explicit y skips matplotlib's automatic title placement (which measures the tick
    # labels once more); class names as ticks have no offset text that the title must clear
    ax.set_title(f"{title + ': ' if title else ''}test confusion (accuracy {accuracy:.3f})", y=1.0)
    return _save(fig, path)


@dataclass(frozen=True)
class _Style:
    color: Any
    linestyle: str


def _sweep_point(info: RunInfo) -> dict[str, Any]:
    try:
        point = json.loads(info.tags.get(SWEEP_TAG, "{}"))
    except ValueError:
        return {}
    return point if isinstance(point, dict) else {}


def _value_label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ordered(values: Sequence[Any]) -> list[Any]:
    """Distinct values, numbers by value, else in order of appearance."""
    distinct = list(dict.fromkeys(values))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct)
    return sorted(distinct) if numeric else distinct


def _ramp(n: int) -> list[Any]:
    """``n`` colours along viridis, dark to light (its last yellow left out: too pale)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.9 * k / max(n - 1, 1)) for k in range(n)]


_LINESTYLES = ("-", "--", "-.", ":")
#: more groups of runs than this over two swept values are drawn as small multiples
_OVERLAID = 8
#: most columns of small multiples
_COLUMNS = 6


@dataclass(frozen=True)
class _Columns:
    """Small multiples: a column of panels per value of a swept key (or the variant)."""

    titles: list[str]
    #: each run's column
    of_run: list[int]


def _styles(
    results: Sequence[tuple[RunInfo, RunResult]],
) -> tuple[list[_Style], list[tuple[_Style, str]], _Columns | None]:
    """A colour and line style per run, the legend's entries (style, label), and the
    columns of small multiples (or None: the runs overlaid on one row of panels).

    Replicates (runs differing only in ``seed``) share a style. Up to 10 groups of runs get
    matplotlib's colour cycle, one entry each. A sweep (or more than 10 groups) gets colours
    from a colormap ordered by the swept value that varies most, and the legend one entry per
    value instead of one per run. A second swept value (or the variant) splits the runs into
    columns of small multiples when there are more than :data:`_OVERLAID` groups (16 runs of
    a 4 x 4 grid: four columns of four lines, four legend entries), else, with at most four
    values, gets line styles (and an entry per value).
    """
    from matplotlib import rcParams

    keys = [
        tuple(sorted((k, str(v)) for k, v in info.params.items() if k not in ("seed", "name")))
        for info, _ in results
    ]
    groups = list(dict.fromkeys(keys))
    group_of = [groups.index(k) for k in keys]
    names: dict[int, list[str]] = {}
    for (info, _), g in zip(results, group_of, strict=True):
        names.setdefault(g, []).append(info.name)
    status: dict[int, set[str]] = {}
    for (_, result), g in zip(results, group_of, strict=True):
        status.setdefault(g, set()).add(result.status)
    points = [_sweep_point(info) for info, _ in results]
    dims: dict[str, list[Any]] = {}
    for key in dict.fromkeys(k for point in points for k in point):
        dims[key] = [point.get(key) for point in points]
    variants = [info.tags.get("optlab.variant", "") for info, _ in results]
    if dims and 1 < len(set(variants)) < len(groups):  # named variants, crossed with a sweep
        dims["variant"] = variants
    dims = {k: v for k, v in dims.items() if len(set(map(str, v))) > 1}

    def per_group() -> tuple[list[_Style], list[tuple[_Style, str]], _Columns | None]:
        n = len(groups)
        cycle = rcParams["axes.prop_cycle"].by_key().get("color", [])
        if n <= len(cycle):
            colors = cycle[:n]
        elif n <= 20:
            from matplotlib import colormaps

            colors = [colormaps["tab20"](k) for k in range(n)]
        else:
            colors = _ramp(n)
        styles = [_Style(colors[g], "-") for g in range(n)]
        entries = []
        for g in range(n):
            members = names[g]
            label = (
                members[0] if len(members) == 1 else f"{group_name(members)} ({len(members)} seeds)"
            )
            ended = status[g] - {"FINISHED"}
            if ended:
                label += f" ({', '.join(sorted(ended))})"
            entries.append((styles[g], label))
        return [styles[g] for g in group_of], entries, None

    if not dims or len(dims) > 2:
        return per_group()
    # colour: the value with the most distinct values (the learning rate on a tie, as in the
    # sweep figure's x-axis); columns of small multiples or line style: the other
    prefer = _x_key(list(dims))
    by_spread = sorted(dims, key=lambda k: (len(set(map(str, dims[k]))), k == prefer), reverse=True)
    color_key = by_spread[0]
    style_key = by_spread[1] if len(by_spread) > 1 else None
    color_values = _ordered(dims[color_key])
    style_values = _ordered(dims[style_key]) if style_key is not None else [None]
    short = {k: k.rsplit(".", 1)[-1] for k in dims}
    colors = _ramp(len(color_values))
    entries = [
        (_Style(colors[i], "-"), f"{short[color_key]}={_value_label(v)}")
        for i, v in enumerate(color_values)
    ]
    if style_key is not None and len(groups) > _OVERLAID and len(style_values) <= _COLUMNS:
        columns = _Columns(
            [f"{short[style_key]}={_value_label(v)}" for v in style_values],
            [style_values.index(v) for v in dims[style_key]],
        )
        color_of = [colors[color_values.index(c)] for c in dims[color_key]]
        return [_Style(c, "-") for c in color_of], entries, columns
    if len(style_values) > len(_LINESTYLES):
        return per_group()
    styles = [
        _Style(
            colors[color_values.index(c)],
            _LINESTYLES[style_values.index(st)] if style_key is not None else "-",
        )
        for c, st in zip(
            dims[color_key],
            dims[style_key] if style_key is not None else [None] * len(results),
            strict=True,
        )
    ]
    if style_key is not None:
        entries += [
            (_Style("0.35", _LINESTYLES[i]), f"{short[style_key]}={_value_label(v)}")
            for i, v in enumerate(style_values)
        ]
    return styles, entries, None


def _legend_layout(labels: Sequence[str], width: float) -> tuple[int, float]:
    """Columns of a legend under the panels of a figure ``width`` inches wide, and its height
    in inches: as many columns as entries of the longest label fit."""
    if not labels:
        return 1, 0.0
    entry = 0.55 + 0.062 * max(len(label) for label in labels)  # inches, at fontsize 8
    ncols = max(1, min(len(labels), int((width - 0.5) // entry)))
    rows = -(-len(labels) // ncols)
    return ncols, 0.2 + 0.19 * rows


@dataclass
class _Drawn:
    """What the curves drawn by :func:`_draw_runs` span, for the axes' scales and range."""

    ends_examples: list[float] = field(default_factory=list)
    ends_time: list[float] = field(default_factory=list)
    #: the full objective and each run's first loss: the y-range
    tops: list[float] = field(default_factory=list)
    any_minibatch: bool = False
    any_full: bool = False


def _draw_runs(
    panels: Sequence[Any],
    runs: Sequence[tuple[RunInfo, RunResult, _Style]],
    faint: float,
    drawn: _Drawn,
) -> None:
    """Draw ``runs`` on ``panels`` (loss vs examples, loss vs time, val accuracy), noting
    what they span in ``drawn``."""
    by_examples, by_time, by_val = panels
    for info, result, style in runs:
        steps = result.steps
        color, ls = style.color, style.linestyle
        full_x, full_t, full = _full_loss(result)
        minibatch = _minibatch(steps, info.data.n_train)
        drawn.tops += [float(v) for v in full[np.isfinite(full)]]
        drawn.any_full = drawn.any_full or bool(len(full))
        if len(steps):
            drawn.ends_examples.append(float(steps.examples[-1]))
            drawn.ends_time.append(float(steps.elapsed[-1]))
            if math.isfinite(steps.loss[0]):
                drawn.tops.append(float(steps.loss[0]))
            drawn.any_minibatch = drawn.any_minibatch or minibatch
            if minibatch:
                weight = smoothing_weight(len(steps))
                trend = smoothed(steps.loss, weight)
                for ax, x in ((by_examples, steps.examples), (by_time, steps.elapsed)):
                    ax.plot(x, steps.loss, color=color, lw=0.6, alpha=faint)
                    ax.plot(x, trend, color=color, ls=ls, lw=0.9, alpha=0.8)
            elif not len(full):  # full-batch steps and no evaluation measured the objective
                by_examples.plot(steps.examples, steps.loss, color=color, ls=ls, lw=1.4)
                by_time.plot(steps.elapsed, steps.loss, color=color, ls=ls, lw=1.4)
                drawn.tops += [float(v) for v in steps.loss[np.isfinite(steps.loss)]]
        if len(full):
            by_examples.plot(full_x, full, "o", color=color, ls=ls, lw=1.5, ms=3)
            known = np.isfinite(full_t)
            by_time.plot(full_t[known], full[known], "o", color=color, ls=ls, lw=1.5, ms=3)
        if result.status != "FINISHED" and len(steps):  # where it stopped
            by_examples.plot(steps.examples[-1:], steps.loss[-1:], "x", color=color, ms=7)
        evals = [e for e in result.evaluations if e.val_accuracy is not None]
        if evals:
            by_val.plot(
                [e.examples for e in evals],
                [e.val_accuracy for e in evals],
                "o",
                ls=ls,
                ms=3,
                lw=1.2,
                color=color,
            )


def comparison_figure(results: Sequence[tuple[RunInfo, RunResult]], path: Path | str) -> Path:
    """The runs' curves: training loss against examples processed and against time (the
    run's own clock), validation accuracy against examples processed.

    The loss is the full training objective at each evaluation point (the line with dots: it
    compares GD with SGD fairly); a minibatch run's per-step loss is drawn faint with its
    smoothed line (:func:`smoothed`) over it. An x-axis is logarithmic when the runs'
    extents along it differ by 20x or more. Colours: see :func:`_styles`; the legend is under
    the panels, in as many columns as fit. The runs are overlaid on one row of three panels,
    or, for a sweep of two values with many runs (:func:`_styles`), drawn as small multiples:
    a column per value of one (titled with it), the three panels as rows sharing their axes.
    """
    from matplotlib.lines import Line2D

    styles, entries, columns = _styles(results)
    labels = [label for _, label in entries]
    explained = [
        "full training loss (at evaluations)",
        "minibatch loss, smoothed (faint: per step)",
    ]
    ncols, legend_h = _legend_layout([*labels, *explained], 16)
    small = columns is not None  # small multiples: three rows of panels
    height = (3 * 2.7 + 0.5 if small else 4.4) + legend_h
    fig = _figure(16, height)  # fixed margins: a layout engine doubles the drawing time
    fig.subplots_adjust(
        left=0.05,
        right=0.985,
        bottom=(legend_h + 0.55) / height,
        top=1 - (0.35 if small else 0.4) / height,
        wspace=0.08 if small else 0.2,
        hspace=0.42,
    )
    if columns is None:
        grid = np.array(fig.subplots(1, 3)).reshape(3, 1)
        members = [list(range(len(results)))]
    else:
        n = len(columns.titles)
        grid = fig.subplots(3, n, sharex="row", sharey="row", squeeze=False)
        members = [[i for i, c in enumerate(columns.of_run) if c == k] for k in range(n)]
    faint = 0.25 if max(map(len, members)) <= 6 else 0.12
    drawn = _Drawn()
    for k, indices in enumerate(members):
        runs = [(*results[i], styles[i]) for i in indices]
        _draw_runs(list(grid[:, k]), runs, faint, drawn)
    for k in range(grid.shape[1]):
        by_examples, by_time, by_val = grid[:, k]
        by_examples.set(xlabel="examples processed", ylabel="training loss")
        by_time.set(xlabel="training time (s)", ylabel="training loss")
        by_val.set(xlabel="examples processed", ylabel="validation accuracy")
        if columns is None:
            by_examples.set_title("loss vs examples")
            by_time.set_title("loss vs time")
            by_val.set_title("val accuracy")
        else:
            by_examples.set_title(columns.titles[k])
            if k:  # the row's y-axis is shared: labelled once, on the left
                for ax in grid[:, k]:
                    ax.set_ylabel("")
                    ax.tick_params(labelleft=False)
    tops = drawn.tops
    if tops and max(tops) > 0:
        # a minibatch's spikes (faint) may leave the panel: the objective and where each run
        # started set the range
        low = min(0.0, min(tops))
        for ax in grid[:2].ravel():
            ax.set_ylim(low, 1.08 * max(tops))
    log_examples = _wide(drawn.ends_examples)
    bins = 6 if columns is None else 5  # every tick is several artists: fewer in small panels
    for row, ax in ((i, ax) for i in range(3) for ax in grid[i]):
        ax.grid(alpha=0.3)
        log_x = _wide(drawn.ends_time) if row == 1 else log_examples
        if log_x:
            ax.set_xscale("log")
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 5, 10]))
        else:
            _few_ticks(ax, bins=bins)
    if entries:
        handles = [
            Line2D([], [], color=st.color, ls=st.linestyle, lw=1.5, marker="o", ms=3)
            for st, _ in entries
        ]
        grey = "0.45"
        if drawn.any_full:  # what the two kinds of line are
            handles.append(Line2D([], [], color=grey, lw=1.5, marker="o", ms=3))
            labels.append("full training loss (at evaluations)")
        if drawn.any_minibatch:
            handles.append(Line2D([], [], color=grey, lw=0.9))
            labels.append("minibatch loss, smoothed (faint: per step)")
        fig.legend(
            handles=handles,
            labels=labels,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.1 / height),
            ncols=ncols,
            fontsize=8,
            frameon=False,
            handlelength=2.5,
            columnspacing=1.2,
        )
    return _save(fig, path)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _log_spaced(values: Sequence[float]) -> bool:
    """Positive values spanning a factor of 10 or more: drawn on a logarithmic axis."""
    return bool(values) and min(values) > 0 and max(values) >= 10 * min(values)


def _x_key(keys: Sequence[str]) -> str:
    """The swept key for the x-axis: the learning rate where one is swept (as in the
    course's figure: learning rate across, regularization strength up), else the last."""
    for key in keys:
        if key.rsplit(".", 1)[-1] in ("lr", "learning_rate"):
            return key
    return keys[-1]


def sweep_figure(rows: Sequence[dict[str, Any]], path: Path | str) -> Path | None:
    """Validation accuracy against the swept values, as in the course's hyperparameter search.

    Two swept numeric values (learning rate and regularization strength): a heatmap of the
    best validation accuracy of each grid cell, on logarithmic axes where the values span a
    factor of 10 or more (a grid's cells at its values; a random sweep's points scattered on
    the axes); one swept value: validation accuracy against it. The best run (by validation
    accuracy, as in the table) is marked. Nothing is drawn (``None``) for other comparisons:
    no sweep, more than two swept values, a value that is not a number, or two rows at the
    same point (a sweep crossed with variants).

    Parameters
    ----------
    rows : sequence of dict
        :func:`~optlab._report.rows.comparison_rows` (``sweep``, ``best_val_accuracy``,
        ``best``, ``status``; replicates already merged).
    path : path
        PNG file to write.
    """
    keys = list(dict.fromkeys(k for row in rows for k in row.get("sweep", {})))
    if not keys or len(keys) > 2 or len(rows) < 2:
        return None
    points = [tuple(row.get("sweep", {}).get(k) for k in keys) for row in rows]
    if len(set(points)) != len(points) or not all(_numeric(v) for p in points for v in p):
        return None
    accuracy = np.array(
        [np.nan if r["best_val_accuracy"] is None else r["best_val_accuracy"] for r in rows]
    )
    failed = [r["status"] != "FINISHED" for r in rows]
    best = next((i for i, r in enumerate(rows) if r["best"]), None)
    if len(keys) == 1:
        return _sweep_line(keys[0], [p[0] for p in points], accuracy, failed, best, path)
    x_key = _x_key(keys)
    y_key = keys[1] if x_key == keys[0] else keys[0]
    xi, yi = keys.index(x_key), keys.index(y_key)
    return _sweep_map(
        (x_key, [p[xi] for p in points]), (y_key, [p[yi] for p in points]), accuracy, best, path
    )


def _sweep_line(
    key: str,
    values: list[float],
    accuracy: Array,
    failed: list[bool],
    best: int | None,
    path: Path | str,
) -> Path:
    order = np.argsort(values)
    x = np.asarray(values, dtype=np.float64)[order]
    fig = _figure(6, 4)
    fig.subplots_adjust(left=0.13, right=0.96, bottom=0.14, top=0.9)
    ax = fig.subplots()
    ax.plot(x, accuracy[order], "o-", color="C0", ms=5)
    for i in np.flatnonzero(failed):
        ax.plot([values[i]], [accuracy[i]], "x", color="C3", ms=8)
    if best is not None:
        ax.plot([values[best]], [accuracy[best]], "*", color="C3", ms=16, mec="black")
    if _log_spaced(values):
        ax.set_xscale("log")
    else:
        _few_ticks(ax)
    ax.grid(alpha=0.3)
    ax.set(xlabel=key, ylabel="best validation accuracy", title=f"validation accuracy vs {key}")
    return _save(fig, path)


def _sweep_map(
    x: tuple[str, list[float]],
    y: tuple[str, list[float]],
    accuracy: Array,
    best: int | None,
    path: Path | str,
) -> Path:
    (x_key, xs), (y_key, ys) = x, y
    columns, lines = sorted(set(xs)), sorted(set(ys))
    grid = len(columns) * len(lines) == len(xs)  # every cell of the grid, once
    fig = _figure(6.6, 5)
    fig.subplots_adjust(left=0.15, right=0.9, bottom=0.12, top=0.91)
    ax = fig.subplots()
    finite = accuracy[np.isfinite(accuracy)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if grid:
        cells = np.full((len(lines), len(columns)), np.nan)
        for value, a, b in zip(accuracy, xs, ys, strict=True):
            cells[lines.index(b), columns.index(a)] = value
        image = ax.imshow(cells, cmap="viridis", vmin=lo, vmax=hi, origin="lower", aspect="auto")
        # the values at their cells, in order: evenly spaced decades read as a log axis
        ax.set_xticks(range(len(columns)), [_value_label(float(v)) for v in columns])
        ax.set_yticks(range(len(lines)), [_value_label(float(v)) for v in lines])
        middle = (lo + hi) / 2
        for (i, j), value in np.ndenumerate(cells):
            text = "-" if not np.isfinite(value) else f"{value:.3f}"
            color = "black" if np.isfinite(value) and value > middle else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
        if best is not None:
            from matplotlib.patches import Rectangle

            j, i = columns.index(xs[best]), lines.index(ys[best])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
        scale = " (log scale)"
        x_label = x_key + (scale if _log_spaced(columns) else "")
        y_label = y_key + (scale if _log_spaced(lines) else "")
    else:  # a random sweep: its points where they are, as in the course's scatter
        image = ax.scatter(xs, ys, c=accuracy, cmap="viridis", vmin=lo, vmax=hi, s=60)
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
    ax.set(xlabel=x_label, ylabel=y_label, title="best validation accuracy (best run marked)")
    return _save(fig, path)


#: most panels of the decision-regions figure (evaluation points, evenly spaced, last kept)
REGION_PANELS = 4
#: cells per side of the grid the regions are classified on
_REGION_GRID = 240


def decision_regions_figure(
    result: RunResult, summary: DataSummary, path: Path | str, title: str = ""
) -> Path:
    """The plane's decision regions of a linear classifier, with the training points, at up
    to :data:`REGION_PANELS` evaluation points (the first, the last and evenly between), so
    that the boundary is seen moving: as the course's interactive linear-classifier demo.

    Parameters
    ----------
    result : RunResult
        ``result.plane`` (the training points, (n, 2) and (n,)) and ``result.snapshots``
        (``(epoch, W)``, W (D, C) with D = 2, or 3 with the bias row last; epoch 0: the
        initial W).
    summary : DataSummary
        Class names and ``has_bias``.
    path : path
        PNG file to write.

    Raises
    ------
    ValueError
        The run has no plane data or no snapshot.
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    if result.plane is None or not result.snapshots:
        raise ValueError("not two-dimensional data (no training points or no weights kept)")
    X, y = result.plane
    n = len(result.snapshots)
    picks = sorted({round(k) for k in np.linspace(0, n - 1, min(n, REGION_PANELS))})
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.08 * np.maximum(hi - lo, 1e-12)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], _REGION_GRID)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], _REGION_GRID)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    n_classes = result.snapshots[0][1].shape[1]
    base = colormaps["tab10" if n_classes <= 10 else "tab20"]
    colors = [base(k % base.N) for k in range(n_classes)]
    light = ListedColormap([(*c[:3], 0.35) for c in colors])
    solid = ListedColormap(colors)
    accuracy = {e.epoch: e.train_accuracy for e in result.evaluations}
    panels = len(picks)
    fig = _figure(3.1 * panels, 3.5)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.04, top=0.8, wspace=0.06)
    axes = np.atleast_1d(fig.subplots(1, panels))
    for ax, k in zip(axes, picks, strict=True):
        epoch, W = result.snapshots[k]
        W = np.asarray(W, dtype=np.float64)
        scores = grid @ W[:2]
        if summary.has_bias and W.shape[0] > 2:
            scores += W[2]
        regions = np.argmax(scores, axis=1).reshape(xx.shape)
        ax.imshow(
            regions,
            cmap=light,
            vmin=-0.5,
            vmax=n_classes - 0.5,
            origin="lower",
            extent=(gx[0], gx[-1], gy[0], gy[-1]),
            aspect="auto",
            interpolation="nearest",
        )
        ax.scatter(
            X[:, 0],
            X[:, 1],
            c=y,
            cmap=solid,
            vmin=-0.5,
            vmax=n_classes - 0.5,
            s=9,
            edgecolors="black",
            linewidths=0.3,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        acc = accuracy.get(epoch)
        what = " (initial W)" if epoch == 0 and acc is None else ""
        what = what if acc is None else f" (train acc {acc:.2f})"
        ax.set_title(f"epoch {epoch:g}{what}", fontsize=9)
    classes = list(summary.classes) or [str(c) for c in range(n_classes)]
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="", marker="o", mfc=colors[c], mec="black", mew=0.3, ms=5)
        for c in range(n_classes)
    ]
    fig.legend(
        handles,
        classes[:n_classes],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.93),
        ncols=min(n_classes, 10),
        fontsize=8,
        frameon=False,
    )
    name = title or result.name
    fig.suptitle(f"{name}: decision regions on the training points", y=0.99)
    return _save(fig, path)


def loss_landscape_figure(landscape: Landscape, path: Path | str, title: str = "") -> Path:
    """The slices of :func:`optlab._training.landscape.loss_landscape`, as in the course notes: one
    example's data loss along a random direction (piecewise linear for the SVM), the full
    training objective along it (a bowl) and over a plane of two directions (the learned
    ``W`` at the centre, marked).

    Parameters
    ----------
    landscape : Landscape
    path : path
        PNG file to write.
    """
    fig = _figure(14, 4.2)
    fig.subplots_adjust(left=0.05, right=0.95, bottom=0.14, top=0.84, wspace=0.28)
    one, line, plane = fig.subplots(1, 3)
    steps = landscape.steps
    one.plot(steps, landscape.example, color="C3")
    one.set(
        xlabel="step a along d1",
        ylabel="data loss",
        title=f"one example (#{landscape.example_index})",
    )
    line.plot(steps, landscape.line, color="C0")
    line.set(xlabel="step a along d1", ylabel="training loss", title="full objective, 1-D")
    for ax in (one, line):
        ax.axvline(0.0, color="0.5", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
        _few_ticks(ax)
    grid = landscape.grid
    edge = (grid[0], grid[-1], grid[0], grid[-1])
    image = plane.imshow(
        landscape.plane,
        cmap="viridis",
        origin="lower",
        extent=edge,
        aspect="auto",
        interpolation="bilinear",
    )
    plane.contour(grid, grid, landscape.plane, levels=8, colors="white", linewidths=0.6)
    plane.plot([0.0], [0.0], "*", color="red", ms=12, mec="black")
    plane.set(xlabel="step a along d1", ylabel="step b along d2", title="full objective, 2-D")
    bar = fig.colorbar(image, ax=plane, fraction=0.06, pad=0.02)
    bar.set_label("training loss")
    head = "loss landscape through the learned W (random directions scaled to ||W||)"
    fig.suptitle(f"{title}: {head}" if title else head)
    return _save(fig, path)
