"""What every figure shares: a figure on the Agg canvas (matplotlib's object API, no pyplot
state, so safe from any thread; matplotlib is imported inside each function), few ticks,
saving, the smoothed minibatch loss and when an axis goes logarithmic."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from optlab._contract.components import Array
from optlab._contract.records import RunResult, StepHistory

__all__ = [
    "LOG_RATIO",
    "SMOOTH_FRACTION",
    "few_ticks",
    "figure",
    "fit_title",
    "full_loss",
    "load_matplotlib",
    "minibatch",
    "place_legend",
    "save",
    "signals_held",
    "smoothed",
    "smoothing_weight",
    "value_label",
    "wide",
    "x_key",
]


#: the minibatch loss is smoothed over about this fraction of a run's steps
SMOOTH_FRACTION = 1 / 40
#: an axis is logarithmic when the runs' extents along it differ by this factor or more
LOG_RATIO = 20.0


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block has ended, then reach the handlers they would
    have reached, in the order they came (a handler that raises - the second Ctrl-C's
    ``KeyboardInterrupt`` - raises there, and the signals after it are not delivered). In the
    main thread only, the one Python runs signal handlers in; elsewhere the block runs as it
    is. A handler set outside Python is left in place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[signal.Signals] = []
    previous = {
        s: signal.signal(s, lambda signum, frame: came.append(signal.Signals(signum)))
        for s in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(s) is not None
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in came:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def load_matplotlib() -> None:
    """Import what the figures use of matplotlib, with SIGINT and SIGTERM held until it is in
    (:func:`signals_held`). A ``KeyboardInterrupt`` raised while matplotlib's ``ft2font``
    extension initialises comes out as ``ImportError: initialization failed`` and leaves the
    interpreter to abort as it ends (``Fatal Python error: PyThreadState_Get``, SIGABRT): a
    second Ctrl-C while ``optlab run`` drew its first figure ended the process that way, with
    a traceback and no line on what is saved. Every public figure function calls this first;
    once matplotlib is in, it costs a few microseconds."""
    with signals_held():
        import matplotlib.backends.backend_agg
        import matplotlib.colors
        import matplotlib.figure
        import matplotlib.lines
        import matplotlib.patches
        import matplotlib.ticker  # noqa: F401


def figure(width: float, height: float) -> Any:
    """A figure on the Agg canvas. No layout engine: one costs about half of a small figure's
    drawing time, so margins are set by hand."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def fit_left(fig: Any, axes: Sequence[Any], edge: float = 0.08) -> None:
    """Widen ``fig``'s left margin where the y tick labels and label of ``axes`` (its left
    column) reach closer than ``edge`` inches to its left edge: wide ticks ("600000") pushed a
    fixed margin's y label off the figure. Measures those axes only, not a layout engine."""
    renderer = fig.canvas.get_renderer()
    x0 = min(ax.yaxis.get_tightbbox(renderer).x0 for ax in axes)
    short = edge * fig.dpi - x0
    if short > 0:
        fig.subplots_adjust(left=fig.subplotpars.left + short / fig.bbox.width)


def fit_title(text: str, width: float, share: float) -> tuple[float, float]:
    """A one-line title that fits ``share`` of a figure ``width`` inches wide: the width,
    widened where the title would need less than 9 points, and the title's font size (at
    most 12 points). A character is about 0.6 em wide: a long run name over a few classes ran
    off both sides of a figure sized for its images."""
    em = 0.6 * len(text) / 72  # inches per point of font size
    width = max(width, 9 * em / share)
    return width, min(12.0, share * width / em)


def few_ticks(ax: Any, *, integer_x: bool = False, bins: int = 6) -> None:
    """At most ``bins`` intervals (six: seven major ticks) per axis, at 1, 2 or 5 times a
    power of ten.

    Every tick is several artists (marks, label, grid line) created and drawn anew for each
    figure, and the default locator puts eight or nine on the wider axes here.
    ``integer_x``: whole ticks (epochs) when the range holds at least two.
    """
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 5, 10], integer=integer_x))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 5, 10]))


#: the places of a legend inside its axes, in matplotlib's words: (x, y) of the box's
#: anchor in the axes and that anchor's place on the box (0: left/bottom, 1: right/top)
_PLACES = {
    "upper right": (1.0, 1.0),
    "upper left": (0.0, 1.0),
    "lower left": (0.0, 0.0),
    "lower right": (1.0, 0.0),
    "center right": (1.0, 0.5),
    "center left": (0.0, 0.5),
    "upper center": (0.5, 1.0),
    "lower center": (0.5, 0.0),
}


def place_legend(ax: Any, prefer: str, **kwargs: Any) -> Any:
    """A legend of ``ax`` (``kwargs``: of ``ax.legend``) where it covers the fewest points of
    the lines, ``prefer`` where that covers none. A fixed corner hid the curves that run
    through it (random search's flat loss, a diverged run's rising one); matplotlib's
    ``loc="best"`` reads every point of every line, thousands for a run's per-step curves,
    where each line is read here at 1,000 points along it.
    """
    legend = ax.legend(loc=prefer, **kwargs)
    box = legend.get_window_extent(ax.figure.canvas.get_renderer())
    w, h = box.width / ax.bbox.width, box.height / ax.bbox.height  # in the axes' fractions
    pad = legend.borderaxespad * legend.prop.get_size_in_points() * ax.figure.dpi / 72
    pad_x, pad_y = pad / ax.bbox.width, pad / ax.bbox.height
    ax.get_xlim()  # the limits the lines set, which matplotlib works out when asked
    ax.get_ylim()
    to_axes = ax.transData + ax.transAxes.inverted()
    points = []
    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=np.float64)
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if len(xy):
            t = np.linspace(0, len(xy) - 1, 1000)
            along = [np.interp(t, np.arange(len(xy)), xy[:, k]) for k in (0, 1)]
            points.append(to_axes.transform(np.column_stack(along)))
    if not points:
        return legend
    xy = np.concatenate(points)

    def covered(place: str) -> int:
        fx, fy = _PLACES[place]
        x0 = fx * (1 - w) + (1 - 2 * fx) * pad_x if fx != 0.5 else 0.5 - w / 2
        y0 = fy * (1 - h) + (1 - 2 * fy) * pad_y if fy != 0.5 else 0.5 - h / 2
        inside = (x0 <= xy[:, 0]) & (xy[:, 0] <= x0 + w) & (y0 <= xy[:, 1]) & (xy[:, 1] <= y0 + h)
        return int(inside.sum())

    if covered(prefer):
        legend.set_loc(min([prefer, *_PLACES], key=covered))
    return legend


def save(fig: Any, path: Path | str) -> Path:
    """Draw and write the PNG, with zlib level 1 instead of 6: less encoding time for slightly
    larger files (benchmarks/README.md, "Measurements behind the code")."""
    out = Path(path)
    fig.savefig(out, dpi=100, format="png", pil_kwargs={"compress_level": 1})
    return out


def smoothing_weight(n: int) -> float:
    """The weight of :func:`smoothed` for a curve of ``n`` points: an average over about
    ``n / 40`` points (none for fewer than 80 points' worth: 0)."""
    span = n * SMOOTH_FRACTION
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


def minibatch(steps: StepHistory, n_train: int) -> bool:
    """Whether ``steps`` were minibatch steps (their loss is noisy, a batch's), knowing the
    training set has ``n_train`` examples (0: unknown, taken as minibatches)."""
    if not len(steps):
        return False
    if n_train <= 0:
        return True
    sizes = np.diff(steps.examples)  # each step's loss is at the examples before it
    return bool(np.any(sizes < n_train))


def full_loss(result: RunResult) -> tuple[Array, Array, Array]:
    """(examples, elapsed seconds, full training objective) of the evaluations that measured
    it (the elapsed seconds are NaN where not known), from the initial loss at 0 examples
    and 0 s where the run measured it (``metrics["initial_loss"]``, the sanity check's loss at
    the initial weights, whose penalty is negligible: scores of about 1e-3): GD's first
    evaluation comes after a whole pass over the training set.

    Returns
    -------
    examples, elapsed, loss : (E,) float64 arrays
        One point per evaluation that measured the objective, and one more first for the
        initial loss.
    """
    evals = [e for e in result.evaluations if e.train_loss is not None]
    examples = np.array([e.examples for e in evals], dtype=np.float64)
    elapsed = np.array([np.nan if e.elapsed is None else e.elapsed for e in evals], np.float64)
    loss = np.array([e.train_loss for e in evals], dtype=np.float64)
    initial = result.metrics.get("initial_loss")
    if evals and initial is not None and math.isfinite(initial) and examples[0] > 0:
        examples = np.concatenate(([0.0], examples))
        elapsed = np.concatenate(([0.0], elapsed))
        loss = np.concatenate(([initial], loss))
    return examples, elapsed, loss


def wide(extents: Sequence[float]) -> bool:
    """Whether curves ending at ``extents`` (positive) need a logarithmic axis: the longest
    is :data:`LOG_RATIO` times the shortest or more (GD's 100 passes against SGD's 10 and
    random search's 1,000 squash the short ones against a linear axis)."""
    ends = [e for e in extents if e > 0 and math.isfinite(e)]
    return len(ends) > 1 and max(ends) >= LOG_RATIO * min(ends)


def value_label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def x_key(keys: Sequence[str]) -> str:
    """The swept key for the x-axis: the learning rate where one is swept (as in the
    course's figure: learning rate across, regularization strength up), else the last."""
    for key in keys:
        if key.rsplit(".", 1)[-1] in ("lr", "learning_rate"):
            return key
    return keys[-1]
