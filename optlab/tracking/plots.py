"""Figures of runs, drawn with matplotlib's object API on the Agg canvas (no pyplot state, so
safe from any thread). matplotlib is imported inside each function."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optlab.components import Array
from optlab.events import DataSummary, RunInfo, RunResult

__all__ = [
    "comparison_figure",
    "confusion_figure",
    "learning_curves_figure",
    "weight_templates",
    "weight_templates_figure",
]


def _figure(width: float, height: float) -> Any:
    """A figure on the Agg canvas. No layout engine: one costs about half of a small figure's
    drawing time, so margins are set by hand."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _few_ticks(ax: Any, *, integer_x: bool = False) -> None:
    """At most six intervals (seven major ticks) per axis, at 1, 2 or 5 times a power of ten.

    Every tick is several artists (marks, label, grid line) created and drawn anew for each
    figure, and the default locator puts eight or nine on the wider axes here.
    ``integer_x``: whole ticks (epochs) when the range holds at least two.
    """
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10], integer=integer_x))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))


def _save(fig: Any, path: Path | str) -> Path:
    """Draw and write the PNG. zlib level 1 instead of 6: a quarter to a third less encoding
    time for files about 12% larger."""
    out = Path(path)
    fig.savefig(out, dpi=100, format="png", pil_kwargs={"compress_level": 1})
    return out


def learning_curves_figure(result: RunResult, path: Path | str, title: str = "") -> Path:
    """Loss, data loss and reg loss against examples processed; accuracies per epoch.

    Parameters
    ----------
    result : RunResult
        ``result.steps`` (S points) and ``result.evaluations`` (E points) are drawn.
    path : path
        PNG file to write.
    """
    fig = _figure(11, 4)
    left, right = fig.subplots(1, 2)
    steps = result.steps
    for name, style in (("loss", "-"), ("data_loss", "--"), ("reg_loss", ":")):
        left.plot(steps.examples, getattr(steps, name), style, label=name)
    left.set_xlabel("examples processed")
    left.set_ylabel("loss")
    left.legend()
    left.grid(alpha=0.3)
    evals = result.evaluations
    epochs = [e.epoch for e in evals]
    right.plot(epochs, [e.train_accuracy for e in evals], "o-", label="train_accuracy")
    val = [np.nan if e.val_accuracy is None else e.val_accuracy for e in evals]
    if not np.all(np.isnan(val)):
        right.plot(epochs, val, "s-", label="val_accuracy")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.legend()
    right.grid(alpha=0.3)
    _few_ticks(left)
    _few_ticks(right, integer_x=True)
    fig.suptitle(f"{title or result.name}: {result.status}")
    return _save(fig, path)


def weight_templates(W: Array, summary: DataSummary) -> Array:
    """The learned weights as one image per class, min-max scaled to [0, 1] over all classes.

    Parameters
    ----------
    W : (D, C) array
        Weights; the last row is the bias when ``summary.has_bias``.
    summary : DataSummary
        ``image_shape`` (``(H, W)``, ``(H, W, 3)`` or ``(3, H, W)``) must hold ``D`` pixels.

    Returns
    -------
    (C, H, W) or (C, H, W, 3) array
        As in the CS231n notes: ``(w - w.min()) / (w.max() - w.min())``.
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
    lo, hi = float(images.min()), float(images.max())
    return (images - lo) / (hi - lo) if hi > lo else np.zeros_like(images)


def weight_templates_figure(
    W: Array, summary: DataSummary, path: Path | str, title: str = ""
) -> Path:
    """One template image per class (see :func:`weight_templates`) in a grid, titled by class.

    The templates are tiled into one image on one axes: a grid of axes, one per class, costs
    several times as much to draw.
    """
    images = weight_templates(W, summary)
    n, height, width = images.shape[:3]
    cols = min(n, 10)
    rows = -(-n // cols)
    gap = max(1, round(0.15 * max(height, width)))
    canvas = np.ones((rows * (height + gap) - gap, cols * (width + gap) - gap, *images.shape[3:]))
    for k in range(n):
        top, left = (k // cols) * (height + gap), (k % cols) * (width + gap)
        canvas[top : top + height, left : left + width] = images[k]
    fig = _figure(1.3 * cols, 1.5 * rows + 0.4)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=1 - 0.7 / (1.5 * rows + 0.4))
    ax = fig.subplots()
    ax.imshow(canvas, cmap=None if images.ndim == 4 else "gray", vmin=0, vmax=1)
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


def comparison_figure(results: Sequence[tuple[RunInfo, RunResult]], path: Path | str) -> Path:
    """The runs' curves overlaid: loss vs examples processed, loss vs wall time (seconds
    since the run's first step), validation accuracy per epoch."""
    fig = _figure(16, 4.8)  # fixed margins: a layout engine doubles the drawing time
    fig.subplots_adjust(left=0.05, right=0.83, bottom=0.12, top=0.92, wspace=0.28)
    by_examples, by_time, by_epoch = fig.subplots(1, 3)
    for info, result in results:
        steps = result.steps
        label = info.name if result.status == "FINISHED" else f"{info.name} ({result.status})"
        if len(steps):
            (line,) = by_examples.plot(steps.examples, steps.loss, label=label, lw=1.2)
            by_time.plot(steps.time - steps.time[0], steps.loss, color=line.get_color(), lw=1.2)
            color = line.get_color()
        else:
            color = None
        evals = [e for e in result.evaluations if e.val_accuracy is not None]
        if evals:
            by_epoch.plot(
                [e.epoch for e in evals],
                [e.val_accuracy for e in evals],
                "o-",
                ms=3,
                color=color,
                label=label if color is None else None,
            )
    # titles placed by matplotlib: it lifts one above an offset text ("1e-6+1e-1") of its y axis
    by_examples.set(xlabel="examples processed", ylabel="loss", title="loss vs examples")
    by_time.set(xlabel="wall time since first step (s)", ylabel="loss", title="loss vs time")
    by_epoch.set(xlabel="epoch", ylabel="validation accuracy", title="val accuracy per epoch")
    for ax in (by_examples, by_time, by_epoch):
        ax.grid(alpha=0.3)
        _few_ticks(ax, integer_x=ax is by_epoch)
    handles = by_examples.get_legend_handles_labels()[0] + by_epoch.get_legend_handles_labels()[0]
    if handles:
        fig.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(0.84, 0.92),
            fontsize=8 if len(handles) <= 12 else 6,
            ncols=1 if len(handles) <= 24 else 2,
        )
    return _save(fig, path)
