"""The comparison as a table in the terminal (rich): one row per run, the best starred.

The table is laid out for the width it is drawn at. Run names, statuses and numbers are never
cut or folded: when the columns do not fit, the least useful ones give way first
(:data:`_GIVE_WAY`), and the line under the table names what was left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from optlab._report.rows import (
    NUMERIC,
    STOPPED,
    STOPPED_NOTE,
    best_caption,
    format_cell,
    swept_cell,
    swept_columns,
)

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.measure import Measurement
    from rich.table import Table

__all__ = ["ComparisonTable", "plain_console", "render_table"]


#: the columns naming a run's components: (row key, header)
_COMPONENTS = (
    ("variant", "variant"),
    ("loss", "loss"),
    ("regularizer", "regularizer"),
    ("optimizer", "optimizer"),
)
#: short headers of the numeric columns, so that the table fits 80 columns
_SHORT = {
    "final_loss": "final loss",
    "best_val_accuracy": "best val",
    "test_accuracy": "test",
    "train_time_s": "time (s)",
}
#: what gives way, first to last, in a terminal too narrow for the whole table: the columns
#: of a kind, or (``std``) the ``± std`` of replicates; the run names (which tell the runs'
#: variants and swept values apart), ``best val`` and the status always stay
_GIVE_WAY = (
    "variant",
    "optimizer",
    "regularizer",
    "loss",
    "std",
    "train_time_s",
    "final_loss",
    "sweep",
    "test_accuracy",
)


def _widest(texts: Iterable[str]) -> int:
    """The terminal cells the widest text takes (1 for none)."""
    from rich.cells import cell_len

    return max((cell_len(text) for text in texts), default=1)


@dataclass(frozen=True)
class _Column:
    """A column: its kind (a row key, or ``sweep``), header, cells, and the cells without
    the ``± std`` of replicates."""

    kind: str
    header: str
    cells: tuple[str, ...]
    means: tuple[str, ...]
    numeric: bool = False

    @property
    def minimum(self) -> int:
        """The narrowest width that cuts no cell and no word of the header."""
        return max(_widest(self.cells), _widest(self.header.split()))

    @property
    def natural(self) -> int:
        """The width with the header on one line."""
        return max(self.minimum, _widest([self.header]))


def _span(widths: list[int]) -> int:
    """The width of a table of columns this wide: a space at either edge, and a rule and a
    space between two columns (``box.SIMPLE_HEAD``, collapsed padding, no edge padding)."""
    return sum(widths) + 2 * len(widths)


def _named_after_variant(row: dict[str, Any]) -> bool:
    """Whether the run's name already tells its variant (``svm``, ``svm-lr0.01``)."""
    variant, run = row["variant"], row["run"]
    return variant in ("", run) or run.startswith(f"{variant}-")


def _text_column(kind: str, header: str, cells: list[str], numeric: bool = False) -> _Column:
    return _Column(kind, header, tuple(cells), tuple(cells), numeric)


def _columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[_Column]]:
    """What every row shares (``loss: svm``), and the columns: the run, the components that
    differ (not ``variant`` when the run names tell it), the swept parameters (not a swept
    component name: its column tells it), the measures some run has and the status."""
    names = [("★\u00a0" if row["best"] else "") + format_cell(row, "run") for row in rows]
    shared, columns = [], [_text_column("run", "run", names)]  # no break after the star
    for key, header in _COMPONENTS:
        values = {row[key] for row in rows}
        if key == "variant" and all(_named_after_variant(row) for row in rows):
            continue
        if len(values) == 1 and key != "variant":
            shared.append(f"{header}: {values.pop() or '-'}")
        else:
            columns.append(_text_column(key, header, [format_cell(row, key) for row in rows]))
    for key, header in swept_columns(rows):
        swept = [swept_cell(row, key) for row in rows]
        columns.append(_text_column("sweep", header, swept, numeric=True))
    for key, _ in NUMERIC:
        cells = tuple(format_cell(row, key) for row in rows)
        if all(cell == "-" for cell in cells):  # measured by no run (no validation split)
            continue
        means = tuple(format_cell({**row, f"{key}_std": None}, key) for row in rows)
        columns.append(_Column(key, _SHORT[key], cells, means, numeric=True))
    columns.append(_text_column("status", "status", [format_cell(row, "status") for row in rows]))
    return shared, columns


def _fit(columns: list[_Column], width: int) -> tuple[list[_Column], list[str]]:
    """The columns shown in a table at most ``width`` wide, and the headers of those left
    out (``± std`` for the spread of replicates): what gives way goes in the order of
    :data:`_GIVE_WAY`, until every column fits at its narrowest."""
    shown, left_out = list(columns), []
    for kind in _GIVE_WAY:
        if _span([column.minimum for column in shown]) <= width:
            break
        if kind == "std":
            if any(column.cells != column.means for column in shown):
                shown = [replace(column, cells=column.means) for column in shown]
                left_out.append("± std")
            continue
        left_out += [column.header for column in shown if column.kind == kind]
        shown = [column for column in shown if column.kind != kind]
    return shown, left_out


def _widths(columns: list[_Column], width: int) -> list[int]:
    """Each column's width in a table at most ``width`` wide: its natural width when all fit,
    else its narrowest plus what room is left, first to the headers needing the least of it
    (the others wrap between words); the run names fold only when nothing else can give."""
    natural = [column.natural for column in columns]
    if _span(natural) <= width:
        return natural
    widths = [column.minimum for column in columns]
    room = width - _span(widths)
    if room < 0:  # only the run, best val and status left, and still too wide
        widths[0] = max(widths[0] + room, 4)
        return widths
    for i in sorted(range(len(columns)), key=lambda i: natural[i] - widths[i]):
        grow = min(room, natural[i] - widths[i])
        widths[i] += grow
        room -= grow
    return widths


class ComparisonTable:
    """The comparison as a rich renderable, laid out for the width it is drawn at.

    Parameters
    ----------
    rows : list of dict
        The rows of :func:`optlab._report.rows.comparison_rows`.
    """

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.shared, self.columns = _columns(rows)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        # the lines above and under the table are as wide as the terminal: as a rich title
        # and caption they wrapped to the table's width (a run or two: a column of words)
        shared = f" ({', '.join(self.shared)})" if self.shared else ""
        shown, left_out = _fit(self.columns, options.max_width)
        yield Text(f"optlab comparison{shared}", style="bold")
        yield self._table(shown, options.max_width)
        yield Text(best_caption(self.rows))
        if any(row["status"] == STOPPED for row in self.rows):
            yield Text(STOPPED_NOTE)
        if left_out:
            yield Text(f"left out to fit {options.max_width} columns: {', '.join(left_out)}")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.measure import Measurement

        narrowest = [column.minimum for column in _fit(self.columns, 0)[0]]
        widest = [column.natural for column in self.columns]
        return Measurement(_span(narrowest), _span(widest)).with_maximum(options.max_width)

    def _table(self, shown: list[_Column], width: int) -> Table:
        """The rich table of the ``shown`` columns (those that fit) for a terminal ``width``
        columns wide, drawn between the line of what every row shares, above, and those of
        the best run and of what was left out to fit, under it."""
        from rich import box
        from rich.table import Table

        table = Table(
            box=box.SIMPLE_HEAD,  # no vertical rules: their width goes to the cells
            collapse_padding=True,
            pad_edge=False,
        )
        for column, column_width in zip(shown, _widths(shown, width), strict=True):
            justify: Literal["left", "right"] = "right" if column.numeric else "left"
            table.add_column(column.header, justify=justify, width=column_width, overflow="fold")
        for i, row in enumerate(self.rows):
            failed = row["status"] != "FINISHED"
            style = "bold" if row["best"] else "red" if failed else None
            table.add_row(*(column.cells[i] for column in shown), style=style)
        return table


def plain_console(stderr: bool = False) -> Console:
    """The console optlab prints tables and messages to: what plugins, specs, data and runs
    say is shown as it is, never read as rich markup. Its width is the terminal's, or
    ``$COLUMNS`` when set; a pipe or a file otherwise gets 160 columns, a wide table rather
    than 80 columns of wrapped cells."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    wide = None if (isatty is not None and isatty()) or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, markup=False, width=wide)


def render_table(rows: list[dict[str, Any]]) -> ComparisonTable:
    """The comparison as a rich renderable; the best run by validation accuracy is starred.

    What every row shares (its loss, regularizer, optimizer) is one line above the table;
    the swept parameters have a column each; the ``variant`` column is left out when the run
    names tell it. Run names, numbers, statuses and words are never cut or folded: in a
    terminal too narrow for every column, the components' columns, then the ``± std`` of
    replicates, then the time, final loss, swept values and test accuracy give way, and a
    line under the table names them.
    """
    return ComparisonTable(rows)
