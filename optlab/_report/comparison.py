"""The comparison figure of several runs: losses against examples and time, validation
accuracy; styles by variant and swept value, small multiples for large sweeps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optlab._contract.records import RunInfo, RunResult
from optlab._report import drawing
from optlab._report.rows import comparison_rows, group_name, replicate_key, sweep_point

__all__ = [
    "comparison_figure",
]


@dataclass(frozen=True)
class _Style:
    color: Any
    linestyle: str
    #: a legend key's marker ("": none) and line width
    marker: str = "o"
    width: float = 1.5


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


def _chromatic(colors: Sequence[Any]) -> list[Any]:
    """``colors`` without the greys: grey is the legend's colour for what the kinds of line
    are (and for the line styles' entries), so a run drawn in grey reads as one of those."""
    from matplotlib.colors import to_rgb

    return [c for c in colors if np.ptp(to_rgb(c)) >= 0.05]


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
) -> tuple[list[_Style], list[tuple[_Style, str]], _Columns | None, bool]:
    """A colour and line style per run, the legend's entries (style, label), the columns of
    small multiples (or None: the runs overlaid on one row of panels), and whether each
    group of runs got a colour and an entry of its own (not one per swept value).

    Replicates (runs differing only in ``seed``) share a style. Groups of runs get
    matplotlib's colour cycle, or for more groups than it has colours tab20's (never their
    greys: :func:`_chromatic`), one entry each; more than 18 groups get a colormap's. A sweep
    gets colours from a colormap ordered by the swept value that varies most, and the legend
    one entry per value (a square of its colour) instead of one per run. A second swept
    value (or the variant) splits the runs into columns of small multiples when there are
    more than :data:`_OVERLAID` groups (16 runs of a 4 x 4 grid: four columns of four
    lines, four legend entries), else, with at most four values, gets line styles (and an
    entry per value: a dark line in its style, without the dots of the full loss's key).
    """
    from matplotlib import rcParams

    keys = [replicate_key(info) for info, _ in results]  # the groups of the table's rows
    groups = list(dict.fromkeys(keys))
    group_of = [groups.index(k) for k in keys]
    names: dict[int, list[str]] = {}
    for (info, _), g in zip(results, group_of, strict=True):
        names.setdefault(g, []).append(info.name)
    status: dict[int, list[str]] = {}
    for (_, result), g in zip(results, group_of, strict=True):
        status.setdefault(g, []).append(result.status)
    points = [sweep_point(info) for info, _ in results]
    dims: dict[str, list[Any]] = {}
    for key in dict.fromkeys(k for point in points for k in point):
        dims[key] = [point.get(key) for point in points]
    variants = [info.tags.get("optlab.variant", "") for info, _ in results]
    if dims and 1 < len(set(variants)) < len(groups):  # named variants, crossed with a sweep
        dims["variant"] = variants
    dims = {k: v for k, v in dims.items() if len(set(map(str, v))) > 1}

    def per_group() -> tuple[list[_Style], list[tuple[_Style, str]], _Columns | None, bool]:
        from matplotlib import colormaps

        n = len(groups)
        cycle = _chromatic(rcParams["axes.prop_cycle"].by_key().get("color", []))
        # tab20's strong colours first, then its light ones
        tab20 = _chromatic([colormaps["tab20"](k) for k in [*range(0, 20, 2), *range(1, 20, 2)]])
        if n <= len(cycle):
            colors = cycle[:n]
        elif n <= len(tab20):
            colors = tab20[:n]
        else:
            colors = _ramp(n)
        styles = [_Style(colors[g], "-") for g in range(n)]
        entries = []
        for g in range(n):
            members = names[g]
            label = (
                members[0] if len(members) == 1 else f"{group_name(members)} ({len(members)} seeds)"
            )
            # a group whose every run rose off the loss panels, and none failed, says so
            rose = all(_rose(r) for (_, r), k in zip(results, group_of, strict=True) if k == g)
            note = " (diverged)" if rose and "FAILED" not in status[g] else ""
            entries.append((styles[g], label + _ended(status[g]) + note))
        return [styles[g] for g in group_of], entries, None, True

    if not dims or len(dims) > 2:
        return per_group()
    # colour: the value with the most distinct values (the learning rate on a tie, as in the
    # sweep figure's x-axis); columns of small multiples or line style: the other
    prefer = drawing.x_key(list(dims))
    by_spread = sorted(dims, key=lambda k: (len(set(map(str, dims[k]))), k == prefer), reverse=True)
    color_key = by_spread[0]
    style_key = by_spread[1] if len(by_spread) > 1 else None
    color_values = _ordered(dims[color_key])
    style_values = _ordered(dims[style_key]) if style_key is not None else [None]
    short = {k: k.rsplit(".", 1)[-1] for k in dims}
    colors = _ramp(len(color_values))
    entries = []
    for i, v in enumerate(color_values):
        at = [r for (_, r), c in zip(results, dims[color_key], strict=True) if c == v]
        # a value whose every run diverged says so: its curve leaves the loss panels
        note = " (diverged)" if all(map(_diverged, at)) else _ended([r.status for r in at])
        entries.append(
            # a swept value is a colour alone: a square of it, not a line that would look
            # like a variant's or the key of the full loss's line with dots
            (_Style(colors[i], "", "s"), f"{short[color_key]}={drawing.value_label(v)}{note}")
        )
    if style_key is not None and len(groups) > _OVERLAID and len(style_values) <= _COLUMNS:
        columns = _Columns(
            [f"{short[style_key]}={drawing.value_label(v)}" for v in style_values],
            [style_values.index(v) for v in dims[style_key]],
        )
        color_of = [colors[color_values.index(c)] for c in dims[color_key]]
        return [_Style(c, "-") for c in color_of], entries, columns, False
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
            (_Style("0.2", _LINESTYLES[i], "", 2.0), f"{short[style_key]}={drawing.value_label(v)}")
            for i, v in enumerate(style_values)
        ]
    return styles, entries, None, False


def _best_few(
    results: Sequence[tuple[RunInfo, RunResult]],
) -> tuple[list[tuple[RunInfo, RunResult]], str]:
    """The runs of the :data:`_OVERLAID` best rows of the table (finished first, then by
    validation accuracy, then by final loss) and a title that says so.

    A sweep too large for colours by value and columns of small multiples (a 7 x 7 grid)
    was drawn a colour per run: 49 colours and a legend of 49 names, none of it readable;
    the sweep figure shows every point of the grid.
    """
    rows = comparison_rows(results)

    def rank(row: dict[str, Any]) -> tuple[bool, bool, float, bool, float]:
        val, loss = row["best_val_accuracy"], row["final_loss"]
        finished = str(row["status"]).startswith("FINISHED")
        return (not finished, val is None, -(val or 0.0), loss is None, loss or 0.0)

    best = sorted(rows, key=rank)[:_OVERLAID]
    kept = {name for row in best for name in row["members"]}
    measured = any(row["best_val_accuracy"] is not None for row in best)
    by = "validation accuracy" if measured else "final training loss"
    what = "runs" if len(rows) == len(results) else f"settings ({len(results)} runs)"  # seeds
    title = f"the {len(best)} best of {len(rows)} {what} by {by}; every run is in the table"
    return [(info, result) for info, result in results if info.name in kept], title


def _ended(status: Sequence[str]) -> str:
    """What a legend entry of runs with ``status`` adds, as the table's status says: nothing
    when all finished, ``(FINISHED 1/2)`` when some did, else their statuses."""
    finished = list(status).count("FINISHED")
    if finished == len(status):
        return ""
    if finished:
        return f" (FINISHED {finished}/{len(status)})"
    return f" ({', '.join(sorted(set(status)))})"


#: a run whose training loss rose past this many times its initial loss (at least 1) left
#: the loss panels to the others, whatever its status
_ROSE = 20.0


def _rose(result: RunResult) -> bool:
    """Whether the run's training loss (the full objective at its evaluations, else its
    steps' losses) rose past :data:`_ROSE` times its initial loss (at least 1, as the
    divergence guard counts), or was not finite: a run the guard did not stop (a
    ``checks.divergence_factor`` raised, a run stopped first) that diverged all the same."""
    full = drawing.full_loss(result)[2]
    losses = full if len(full) else result.steps.loss
    if not len(losses):
        return False
    initial = result.metrics.get("initial_loss", losses[0])
    if initial is None or not math.isfinite(initial):
        return False
    return bool(np.any(~np.isfinite(losses)) or losses.max() > _ROSE * max(abs(initial), 1.0))


def _diverged(result: RunResult) -> bool:
    """Whether the run diverged: failed by the divergence guard (its loss grew past the
    initial loss's ``checks.divergence_factor`` times, or was not finite), or its loss rose
    all the same (:func:`_rose`)."""
    failed = result.status == "FAILED" and (result.error or "").startswith("diverged")
    return failed or _rose(result)


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

    #: where the runs' curves end (examples, seconds), and whether the run finished: one
    #: that stopped early (diverged at its second step) ends short of the budget the axis
    #: scale compares
    ends: list[tuple[float, float, bool]] = field(default_factory=list)
    #: the full objective and each run's first loss: the y-range; of the runs that failed or
    #: whose loss rose all the same (:func:`_rose`) apart, which set it only when no other run
    #: drew a loss (a diverging learning rate's 1e30 squashed every other curve into a flat
    #: line at the bottom)
    tops: list[float] = field(default_factory=list)
    failed_tops: list[float] = field(default_factory=list)
    #: where runs that did not finish stopped: (panel, examples, loss, colour)
    stops: list[tuple[Any, float, float, Any]] = field(default_factory=list)
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
        full_x, full_t, full = drawing.full_loss(result)
        minibatch = drawing.minibatch(steps, info.data.n_train)
        off = result.status == "FAILED" or _rose(result)  # the others set the loss range
        tops = drawn.failed_tops if off else drawn.tops
        tops += [float(v) for v in full[np.isfinite(full)]]
        drawn.any_full = drawn.any_full or bool(len(full))
        if len(steps):
            finished = result.status == "FINISHED"
            # a step's loss is at the examples before it: the run's last evaluation ends it
            end_x = max(float(steps.examples[-1]), float(full_x[-1]) if len(full_x) else 0.0)
            end_t = float(np.nanmax(np.append(full_t, steps.elapsed[-1])))
            drawn.ends.append((end_x, end_t, finished))
            if math.isfinite(steps.loss[0]):
                tops.append(float(steps.loss[0]))
            drawn.any_minibatch = drawn.any_minibatch or minibatch
            if minibatch:
                weight = drawing.smoothing_weight(len(steps))
                trend = drawing.smoothed(steps.loss, weight)
                for ax, x in ((by_examples, steps.examples), (by_time, steps.elapsed)):
                    ax.plot(x, steps.loss, color=color, lw=0.6, alpha=faint)
                    ax.plot(x, trend, color=color, ls=ls, lw=0.9, alpha=0.8)
            elif not len(full):  # full-batch steps and no evaluation measured the objective
                by_examples.plot(steps.examples, steps.loss, color=color, ls=ls, lw=1.4)
                by_time.plot(steps.elapsed, steps.loss, color=color, ls=ls, lw=1.4)
                tops += [float(v) for v in steps.loss[np.isfinite(steps.loss)]]
        if len(full):
            by_examples.plot(full_x, full, "o", color=color, ls=ls, lw=1.5, ms=3)
            known = np.isfinite(full_t)
            by_time.plot(full_t[known], full[known], "o", color=color, ls=ls, lw=1.5, ms=3)
        if result.status != "FINISHED" and len(steps):  # where it stopped: drawn last
            drawn.stops.append(
                (by_examples, float(steps.examples[-1]), float(steps.loss[-1]), color)
            )
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
    compares GD with SGD fairly), from the initial loss at 0 examples
    (:func:`~optlab._report.drawing.full_loss`); a minibatch run's per-step loss is drawn
    faint with its smoothed line (:func:`smoothed`) over it. An x-axis is logarithmic when
    the finished runs' extents along it differ by 20x or more (a run that stopped early ends
    short of its budget; all runs' extents when none finished). The loss panels' range is
    the runs' that did not fail nor see their loss rise past 20 times its initial value
    (:func:`_rose`; all runs' when every run did): a diverging run is drawn until it leaves
    the panel, its cross where it stopped at the top (when it did not finish), and its legend
    entry says it diverged. Colours: see :func:`_styles`; the legend is under the panels, in as
    many columns as fit. The runs are overlaid on one row of three panels, or, for a sweep
    of two values with many runs (:func:`_styles`), drawn as small multiples: a column per
    value of one (titled with it), the three panels as rows sharing their axes.
    A sweep too large for either (more than six values of each of two keys) is drawn as
    the :data:`_OVERLAID` best rows of the table (:func:`_best_few`), as the title says.
    """
    drawing.load_matplotlib()
    from matplotlib.lines import Line2D

    styles, entries, columns, per_group = _styles(results)
    title = ""
    if per_group and len(entries) > _OVERLAID and any(sweep_point(i) for i, _ in results):
        results, title = _best_few(results)
        styles, entries, columns, _ = _styles(results)
    labels = [label for _, label in entries]
    stopped = "where a run stopped, not finished (at the top: off the scale)"
    explained = [
        "full training loss (at evaluations)",
        "minibatch loss, smoothed (faint: per step)",
        *([stopped] if any(r.status != "FINISHED" and len(r.steps) for _, r in results) else []),
    ]
    ncols, legend_h = _legend_layout([*labels, *explained], 16)
    small = columns is not None  # small multiples: three rows of panels
    above = 0.3 if title else 0.0  # inches for the title over the panels
    height = (3 * 2.7 + 0.5 if small else 4.4) + legend_h + above
    fig = drawing.figure(16, height)  # fixed margins: a layout engine doubles the drawing time
    if title:
        fig.suptitle(title, y=1 - 0.08 / height, va="top", fontsize=11)
    fig.subplots_adjust(
        left=0.05,
        right=0.985,
        bottom=(legend_h + 0.55) / height,
        top=1 - ((0.35 if small else 0.4) + above) / height,
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
    tops = drawn.tops or drawn.failed_tops
    if tops and max(tops) > 0:
        # a minibatch's spikes (faint) may leave the panel: the objective and where each run
        # started set the range; a failed run's curve is drawn until it leaves the panel
        low = min(0.0, min(tops))
        for ax in grid[:2].ravel():
            ax.set_ylim(low, 1.08 * max(tops))
    for ax, x, loss, color in drawn.stops:  # a diverged loss was drawn off the panel: its top
        top = ax.get_ylim()[1]
        y = loss if math.isfinite(loss) and loss <= top else top
        ax.plot([x], [y], "x", color=color, ms=7, mew=1.5, clip_on=False)
    ends = [e for e in drawn.ends if e[2]] or drawn.ends  # the finished runs', if any
    log_examples = drawing.wide([e[0] for e in ends])
    bins = 6 if columns is None else 5  # every tick is several artists: fewer in small panels
    for row, ax in ((i, ax) for i in range(3) for ax in grid[i]):
        ax.grid(alpha=0.3)
        log_x = drawing.wide([e[1] for e in ends]) if row == 1 else log_examples
        if log_x:
            # the initial loss at 0 has no place on it: left out, not clipped to the far
            # left (which drew a flat line at the first evaluation's loss across the panel)
            ax.set_xscale("log", nonpositive="mask")
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 5, 10]))
        else:
            drawing.few_ticks(ax, bins=bins)
    no_val = all(info.data.n_val == 0 for info, _ in results)
    for ax in grid[2]:
        if not ax.get_lines():  # empty axes from 0 to 1 read as an accuracy of 0
            ax.set_axis_off()
            why = "the runs have no validation split (data.val: 0)" if no_val else ""
            ax.text(
                0.5,
                0.5,
                "no validation accuracy measured" + (f":\n{why}" if why else ""),
                ha="center",
                va="center",
                fontsize=9,
                transform=ax.transAxes,
            )
    drawing.fit_left(fig, list(grid[:, 0]))
    if entries:
        handles = [
            Line2D(
                [],
                [],
                color=st.color,
                ls=st.linestyle or "",
                lw=st.width,
                marker=st.marker or None,
                ms=7 if st.marker == "s" else 3,
            )
            for st, _ in entries
        ]
        grey = "0.45"
        if drawn.any_full:  # what the two kinds of line are
            handles.append(Line2D([], [], color=grey, lw=1.5, marker="o", ms=3))
            labels.append("full training loss (at evaluations)")
        if drawn.any_minibatch:
            handles.append(Line2D([], [], color=grey, lw=0.9))
            labels.append("minibatch loss, smoothed (faint: per step)")
        if drawn.stops:
            handles.append(Line2D([], [], color=grey, ls="", marker="x", ms=7, mew=1.5))
            labels.append(stopped)
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
    return drawing.save(fig, path)
