"""Figures in the plane of the data or of W: decision regions of two-dimensional data at a
few epochs, and the loss landscape through a learned W."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from optlab._contract.records import DataSummary, RunResult
from optlab._report import drawing

if TYPE_CHECKING:
    from optlab._contract.records import Landscape

__all__ = [
    "REGION_PANELS",
    "decision_regions_figure",
    "loss_landscape_figure",
]


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
    drawing.load_matplotlib()
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
    heading = f"{title or result.name}: decision regions on the training points"
    width = 3.1 * panels
    # a title longer than the panels are wide (one panel: a run that diverged at once)
    # widens the figure, not the panels
    fig_w, fontsize = drawing.fit_title(heading, width, 0.95)
    side = (fig_w - width) / 2
    fig = drawing.figure(fig_w, 3.5)
    fig.subplots_adjust(
        left=(side + 0.03 * width) / fig_w,
        right=1 - (side + 0.01 * width) / fig_w,
        bottom=0.04,
        top=0.8,
        wspace=0.06,
    )
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
    fig.suptitle(heading, y=0.99, fontsize=fontsize)
    return drawing.save(fig, path)


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
    drawing.load_matplotlib()
    fig = drawing.figure(14, 4.2)
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
        drawing.few_ticks(ax)
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
    return drawing.save(fig, path)
