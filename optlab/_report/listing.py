"""``optlab components`` as a table in the terminal (rich), laid out for the width it is
drawn at.

A component's name and each of its params (``batch_size=200``) are never broken: a cell wraps
between words, and the params between params. rich's own layout shrinks the widest columns
evenly, whatever their words, and folds what no longer fits: at 80 columns it printed
``include_correc`` / ``t=False`` and ``random_local_`` / ``search``. Here each column is at
least as wide as its widest word (or param) and the cells are wrapped before rich draws them.
The five columns (kind, name, provider, summary, params) need about 105 columns so; narrower,
the kind, name and provider share the first column (``loss svm`` over ``from losses (optlab
0.1.0)``), which fits 80 columns. Only a terminal too narrow for even that folds words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.measure import Measurement
    from rich.table import Table

__all__ = ["ComponentTable", "param_texts"]


def param_texts(params: Sequence[dict[str, Any]]) -> list[str]:
    """A component's params as shown: ``name=default`` (``name`` alone when required).

    Parameters
    ----------
    params : sequence of dict
        The params of ``optlab components --json`` (keys ``name``, ``default``,
        ``required``).
    """
    return [p["name"] + ("" if p["required"] else f"={p['default']!r}") for p in params]


def _cells(text: str) -> int:
    from rich.cells import cell_len

    return cell_len(text)


@dataclass(frozen=True)
class _Cell:
    """A cell's text as paragraphs (lines it always has) of pieces that are never broken
    (words, or params), written ``sep`` apart on a line; a line that breaks after a piece
    keeps the separator's mark (the comma after a param)."""

    paragraphs: tuple[tuple[str, ...], ...]
    sep: str = " "

    @classmethod
    def words(cls, *lines: str) -> _Cell:
        return cls(tuple(tuple(line.split()) for line in lines))

    @property
    def minimum(self) -> int:
        """The width of its widest piece (with the separator's mark)."""
        mark = _cells(self.sep.rstrip())
        return max((_cells(p) + mark for ps in self.paragraphs for p in ps), default=1)

    @property
    def natural(self) -> int:
        """The width of its widest paragraph on one line."""
        return max((_cells(self.sep.join(ps)) for ps in self.paragraphs), default=1)

    def wrapped(self, width: int) -> str:
        """The text in lines of at most ``width`` cells, broken between pieces only (a piece
        wider than ``width`` gets a line of its own, which the table then folds)."""
        mark = self.sep.rstrip()
        lines: list[str] = []
        for pieces in self.paragraphs:
            line = ""
            for i, piece in enumerate(pieces):
                end = "" if i == len(pieces) - 1 else mark
                if line and _cells(line + self.sep + piece + end) > width:
                    lines.append(line + mark)
                    line = piece
                else:
                    line = f"{line}{self.sep}{piece}" if line else piece
            lines.append(line)
        return "\n".join(lines)


@dataclass(frozen=True)
class _Column:
    header: str
    cells: tuple[_Cell, ...]

    @property
    def minimum(self) -> int:
        return max([_cells(w) for w in self.header.split()] + [c.minimum for c in self.cells])

    @property
    def natural(self) -> int:
        return max([_cells(self.header)] + [c.natural for c in self.cells])


def _span(widths: list[int]) -> int:
    """The width of a table of columns this wide (rich's default box: a rule at either edge
    and between two columns, a space either side of each cell)."""
    return sum(widths) + 3 * len(widths) + 1


def _widths(columns: list[_Column], width: int) -> list[int]:
    """Each column's width in a table at most ``width`` wide: its natural width when all fit,
    else its narrowest plus the room left, first to the columns needing the least of it; in a
    terminal too narrow for the narrowest, the widest columns give up cells (and fold)."""
    natural = [c.natural for c in columns]
    if _span(natural) <= width:
        return natural
    widths = [c.minimum for c in columns]
    room = width - _span(widths)
    for i in sorted(range(len(columns)), key=lambda i: natural[i] - widths[i]):
        grow = max(0, min(room, natural[i] - widths[i]))
        widths[i] += grow
        room -= grow
    while _span(widths) > width and max(widths) > 1:
        widths[widths.index(max(widths))] -= 1
    return widths


class ComponentTable:
    """The components of ``optlab components`` as a rich renderable.

    Parameters
    ----------
    rows : list of dict
        One per component, as ``optlab components --json`` lists them (keys ``kind``,
        ``name``, ``provider``, ``distribution``, ``version``, ``summary``, ``params``).
    """

    def __init__(self, rows: Sequence[dict[str, Any]]) -> None:
        self.rows = list(rows)
        provided = [f"{r['provider']} ({r['distribution']} {r['version']})" for r in self.rows]
        summaries = tuple(_Cell.words(r["summary"]) for r in self.rows)
        params = tuple(_Cell((tuple(param_texts(r["params"])),), ", ") for r in self.rows)
        #: the layouts, the widest first: every column apart, then kind, name and provider
        #: in one
        self.layouts = [
            [
                _Column("kind", tuple(_Cell.words(r["kind"]) for r in self.rows)),
                _Column("name", tuple(_Cell.words(r["name"]) for r in self.rows)),
                _Column("provider", tuple(_Cell.words(p) for p in provided)),
                _Column("summary", summaries),
                _Column("params", params),
            ],
            [
                _Column(
                    "component",
                    tuple(
                        _Cell.words(f"{r['kind']} {r['name']}", f"from {p}")
                        for r, p in zip(self.rows, provided, strict=True)
                    ),
                ),
                _Column("summary", summaries),
                _Column("params", params),
            ],
        ]

    def _layout(self, width: int) -> list[_Column]:
        """The widest layout whose columns fit ``width`` at their narrowest (else the
        narrowest layout)."""
        for columns in self.layouts:
            if _span([c.minimum for c in columns]) <= width:
                return columns
        return self.layouts[-1]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.measure import Measurement

        narrowest = _span([c.minimum for c in self.layouts[-1]])
        widest = _span([c.natural for c in self.layouts[0]])
        return Measurement(narrowest, widest).with_maximum(options.max_width)

    def table(self, width: int) -> Table:
        """The rich table for a terminal ``width`` columns wide."""
        from rich.table import Table

        columns = self._layout(width)
        widths = _widths(columns, width)
        table = Table()
        for column, column_width in zip(columns, widths, strict=True):
            table.add_column(column.header, width=column_width, overflow="fold")
        for i in range(len(self.rows)):
            table.add_row(*(c.cells[i].wrapped(w) for c, w in zip(columns, widths, strict=True)))
        return table
