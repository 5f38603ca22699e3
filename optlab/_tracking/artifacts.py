"""A run's artifact files: console transcript, weights and figures.

Drawing the figures is the costly part of tracking a small run (matplotlib). In parallel
execution each worker draws its own run's files (:func:`render_to_bytes`), so the invoking
process, which writes everything to the store, only uploads them.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optlab._contract.records import RunInfo, RunResult

if TYPE_CHECKING:
    from optlab._contract.records import Landscape

__all__ = [
    "LANDSCAPE_DATA",
    "LANDSCAPE_FIGURE",
    "render_to_bytes",
    "write_landscape",
    "write_run_artifacts",
]

#: the loss landscape's files (:func:`write_landscape`)
LANDSCAPE_FIGURE = "loss_landscape.png"
LANDSCAPE_DATA = "loss_landscape.npz"


def write_landscape(landscape: Landscape, folder: Path, title: str = "") -> list[Path]:
    """Write the slices of :func:`optlab._training.landscape.loss_landscape` into ``folder``: their
    numbers in ``loss_landscape.npz`` (arrays ``steps``, ``line``, ``example``,
    ``example_index``, ``grid``, ``plane``, as in :class:`~optlab._contract.records.Landscape`,
    without the directions) and their figure in ``loss_landscape.png``
    (:func:`~optlab._report.planes.loss_landscape_figure`). Returns both paths."""
    from optlab._report.planes import loss_landscape_figure

    data = folder / LANDSCAPE_DATA
    slices = {f.name: getattr(landscape, f.name) for f in fields(landscape)}
    del slices["directions"]
    np.savez(data, **slices)
    return [data, loss_landscape_figure(landscape, folder / LANDSCAPE_FIGURE, title)]


def write_run_artifacts(
    run: RunInfo, result: RunResult, folder: Path, *, plots: bool = True
) -> None:
    """Write the run's artifact files into ``folder``.

    Files: ``console.log`` (the transcript), ``weights.npz`` (``W`` (D, C), ``classes`` (C,)
    and the preprocessing to apply to raw examples before ``X @ W``: ``mean`` (F,) with
    ``data.center``, ``std`` (F,) with ``data.standardize``, float64),
    ``steps.npz`` (the per-step history at full resolution: the arrays ``examples``, ``time``,
    ``loss``, ``data_loss``, ``reg_loss``, ``elapsed``, each (S,), as in
    :class:`~optlab._contract.records.StepHistory`), ``loss_landscape.npz`` and
    ``loss_landscape.png`` when the spec asked for the landscape (:func:`write_landscape`; even
    without ``plots``), and with ``plots`` ``learning_curves.png``, ``weight_templates.png`` (image
    data only: one template per class), ``decision_regions.png`` (two-dimensional data only: the
    regions and the training points at a few evaluation points) and ``confusion_matrix.png``. Files
    already rendered elsewhere (``result.artifacts``) are written as they are instead.
    """
    if result.artifacts is not None:
        for name, data in result.artifacts.items():
            (folder / name).write_bytes(data)
        return
    if result.console:
        (folder / "console.log").write_text("\n".join(result.console) + "\n")
    if result.W is not None:
        classes = np.asarray(run.data.classes, dtype=str)
        arrays: dict[str, Any] = {"W": result.W, "classes": classes}
        arrays.update(
            (k, v) for k, v in (("mean", result.mean), ("std", result.std)) if v is not None
        )
        np.savez(folder / "weights.npz", **arrays)
    if len(result.steps):
        history = {f.name: getattr(result.steps, f.name) for f in fields(result.steps)}
        np.savez(folder / "steps.npz", **history)
    landscape = result.landscape
    if landscape is not None:  # the spec asked for it: drawn even with the figures off
        _draw(run, "loss landscape", lambda: write_landscape(landscape, folder, run.name))
    if not plots:
        return
    from optlab._report.planes import decision_regions_figure
    from optlab._report.run_figures import (
        confusion_figure,
        learning_curves_figure,
        weight_templates_figure,
    )

    figures: list[tuple[str, Callable[[], Any]]] = []
    if len(result.steps) or result.evaluations:
        figures.append(
            (
                "learning curves",
                lambda: learning_curves_figure(
                    result, folder / "learning_curves.png", run.name, run.data.n_train
                ),
            )
        )
    W = result.W
    if W is not None and run.data.image_shape is not None:
        figures.append(
            (
                "weight templates",
                lambda: weight_templates_figure(
                    W, run.data, folder / "weight_templates.png", run.name
                ),
            )
        )
    if result.plane is not None and result.snapshots:  # two-dimensional data only
        figures.append(
            (
                "decision regions",
                lambda: decision_regions_figure(
                    result, run.data, folder / "decision_regions.png", run.name
                ),
            )
        )
    confusion = result.confusion
    if confusion is not None:
        figures.append(
            (
                "confusion matrix",
                lambda: confusion_figure(
                    confusion, run.data.classes, folder / "confusion_matrix.png", run.name
                ),
            )
        )
    for label, draw in figures:
        _draw(run, label, draw)


def _draw(run: RunInfo, label: str, draw: Callable[[], Any]) -> None:
    """Call ``draw``; a figure the run's data cannot make is a warning, not a failure."""
    try:
        draw()
    except (ValueError, TypeError) as exc:
        warnings.warn(f"run '{run.name}': no {label} figure: {exc}", stacklevel=3)


def render_to_bytes(run: RunInfo, result: RunResult, *, plots: bool = True) -> dict[str, bytes]:
    """:func:`write_run_artifacts` into memory: file name -> content (for a worker to send)."""
    with tempfile.TemporaryDirectory(prefix="optlab-render-") as tmp:
        folder = Path(tmp)
        write_run_artifacts(run, result, folder, plots=plots)
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
