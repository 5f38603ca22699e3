"""The comparison as a table in the terminal (rich): one row per run, the best starred."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from optlab._report.rows import NUMERIC, best_caption, format_cell, format_value

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["render_table"]


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


def _sweep_headers(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(dotted key, header) of every swept parameter, in order of appearance; the header is
    the key's last part (``lr``), or the whole key where two would share it."""
    keys = list(dict.fromkeys(key for row in rows for key in row.get("sweep", {})))
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return [(k, s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)]


def render_table(rows: list[dict[str, Any]]) -> Table:
    """The comparison as a rich table; the best run by validation accuracy is starred.

    What every row shares (its loss, regularizer, optimizer) is one line above the table;
    the swept parameters have a column each; the ``variant`` column is left out when it
    only repeats the run names. Numbers, statuses and words are never cut: the table fits
    80 columns, and only a long run name folds.
    """
    from rich import box
    from rich.table import Table

    shared, columns = [], [("run", "run")]
    for key, header in _COMPONENTS:
        values = {row[key] for row in rows}
        if key == "variant" and all(row["variant"] in ("", row["run"]) for row in rows):
            continue
        if len(values) == 1 and key != "variant":
            shared.append(f"{header}: {values.pop() or '-'}")
        else:
            columns.append((key, header))
    sweep = _sweep_headers(rows)
    title = "optlab comparison" + (f" ({', '.join(shared)})" if shared else "")
    table = Table(
        title=title,
        caption=best_caption(rows),
        caption_justify="left",
        box=box.SIMPLE_HEAD,  # no vertical rules: their width goes to the cells
        collapse_padding=True,
        pad_edge=False,
    )
    cells_by_row = [
        [format_cell(row, key) for key, _ in columns]
        + [format_value(row["sweep"][key]) if key in row["sweep"] else "-" for key, _ in sweep]
        + [format_cell(row, key) for key, _ in (*NUMERIC, ("status", "status"))]
        for row in rows
    ]
    for row, cells in zip(rows, cells_by_row, strict=True):
        if row["best"]:
            cells[0] = f"★\u00a0{cells[0]}"  # no break between the star and the name
    headers = [h for _, h in columns] + [h for _, h in sweep]
    headers += [_SHORT[k] for k, _ in NUMERIC] + ["status"]
    for i, header in enumerate(headers):
        widest = max([len(cells[i]) for cells in cells_by_row] or [1])
        if i == 0:  # the run name folds in a narrow terminal; nothing else does
            table.add_column(header, overflow="fold", min_width=min(widest, 12))
            continue
        numeric = len(columns) <= i < len(headers) - 1  # sweep values and measures
        justify: Literal["left", "right"] = "right" if numeric else "left"
        longest_word = max(len(word) for word in header.split())
        table.add_column(header, justify=justify, min_width=max(widest, longest_word))
    for row, cells in zip(rows, cells_by_row, strict=True):
        failed = row["status"] != "FINISHED"
        table.add_row(*cells, style="bold" if row["best"] else "red" if failed else None)
    return table
