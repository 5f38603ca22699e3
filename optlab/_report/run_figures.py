"""The figures of one run: learning curves, weight templates, the confusion matrix."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optlab._contract.components import Array
from optlab._contract.records import DataSummary, RunResult
from optlab._report import drawing

__all__ = [
    "confusion_figure",
    "learning_curves_figure",
    "weight_images",
    "weight_templates",
    "weight_templates_figure",
]


def learning_curves_figure(
    result: RunResult, path: Path | str, title: str = "", n_train: int = 0
) -> Path:
    """Losses against examples processed; accuracies per epoch.

    The left panel shows the full training objective at each evaluation point (dots), from
    the initial loss at 0 examples (:func:`~optlab._report.drawing.full_loss`), and the
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
    drawing.load_matplotlib()
    fig = drawing.figure(11, 4)
    left, right = fig.subplots(1, 2)
    steps = result.steps
    minibatch = drawing.minibatch(steps, n_train)
    weight = drawing.smoothing_weight(len(steps)) if minibatch else 0.0
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
                drawing.smoothed(values, weight),
                style,
                color=line.get_color(),
                label=f"{label} ({kind}, smoothed)",
            )
        else:
            left.plot(steps.examples, values, style, label=f"{label} ({kind})")
    examples, _, full = drawing.full_loss(result)
    if len(full):
        left.plot(examples, full, "o-", color="black", ms=3.5, lw=1.0, label="training loss (full)")
    left.set_xlabel("examples processed")
    left.set_ylabel("loss")
    drawing.place_legend(left, "upper right", fontsize=8)
    left.grid(alpha=0.3)
    evals = result.evaluations
    drawing.few_ticks(left)
    if evals:
        epochs = [e.epoch for e in evals]
        right.plot(epochs, [e.train_accuracy for e in evals], "o-", label="train_accuracy")
        val = [np.nan if e.val_accuracy is None else e.val_accuracy for e in evals]
        if not np.all(np.isnan(val)):
            right.plot(epochs, val, "s-", label="val_accuracy")
        right.set_xlabel("epoch")
        right.set_ylabel("accuracy")
        drawing.place_legend(right, "lower right")
        right.grid(alpha=0.3)
        drawing.few_ticks(right, integer_x=True)
    else:  # stopped before its first evaluation: no accuracy, and empty axes around 0 said 0
        right.set_axis_off()
        why = textwrap.fill(result.error, 60) if result.error else ""
        right.text(
            0.5,
            0.5,
            "no accuracy measured: the run stopped before its first evaluation"
            + (f"\n\n{why}" if why else ""),
            ha="center",
            va="center",
            wrap=False,
            fontsize=9,
            transform=right.transAxes,
        )
    fig.suptitle(f"{title or result.name}: {result.status}")
    return drawing.save(fig, path)


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
    drawing.load_matplotlib()
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
    heading = f"{title}: learned weight templates" if title else "learned weight templates"
    fig_w, fontsize = drawing.fit_title(heading, fig_w, 0.95)
    fig = drawing.figure(fig_w, fig_h)
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
    fig.suptitle(heading, fontsize=fontsize)
    return drawing.save(fig, path)


def confusion_figure(
    confusion: Array, classes: Sequence[str], path: Path | str, title: str = ""
) -> Path:
    """The (C, C) confusion counts (row: true class, column: predicted), annotated when small."""
    drawing.load_matplotlib()
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
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else float("nan")
    heading = f"{title + ': ' if title else ''}test confusion (accuracy {accuracy:.3f})"

    def centred(left: float) -> float:  # twice the axes' centre to the nearer side, of 0.95
        return 2 * 0.95 * (1 - (left + 0.97) / 2)

    # the title is centred over the axes; the margins follow a widened figure
    width, _ = drawing.fit_title(heading, width, centred(left))
    left = min(0.4, (0.6 + 0.07 * longest) / width)
    _, fontsize = drawing.fit_title(heading, width, centred(left))
    rotate = n > 10 or longest > 3  # long names stand upright under their column
    bottom = min(0.4, (0.6 + (0.07 * longest if rotate else 0.15)) / size)
    fig = drawing.figure(width, size)
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
    # an explicit y skips matplotlib's automatic title placement (which measures the tick
    # labels once more); class names as ticks have no offset text that the title must clear
    ax.set_title(heading, y=1.0, fontsize=fontsize)
    return drawing.save(fig, path)
