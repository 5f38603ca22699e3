"""The comparison table's rows: one per run, replicates (runs differing only in ``seed``)
merged as mean ± std, and the best run named by validation accuracy (never by test accuracy).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from optlab._contract.records import SWEEP_TAG, RunInfo, RunResult

__all__ = [
    "COLUMNS",
    "NUMERIC",
    "STOPPED",
    "STOPPED_NOTE",
    "best_caption",
    "comparison_rows",
    "decoded_param",
    "format_cell",
    "format_value",
    "group_name",
    "nested_params",
    "records_to_json",
    "replicate_key",
    "rows_to_markdown",
    "run_records",
    "sweep_point",
    "swept_cell",
    "swept_columns",
]

#: the status of a run MLflow still has RUNNING whose invocation has stopped (its process is
#: gone, or its heartbeat is stale: ``kill -9``, a machine that went down), and what it means
STOPPED = "RUNNING?"
STOPPED_NOTE = (
    f"{STOPPED}: its invocation stopped without ending it (process gone, or no heartbeat); "
    "`optlab run SPEC --resume` or optlab.run(..., resume=True) finishes it"
)

#: numeric columns: (row key, header)
NUMERIC: tuple[tuple[str, str], ...] = (
    ("final_loss", "final loss"),
    ("best_val_accuracy", "best val acc"),
    ("test_accuracy", "test acc"),
    ("train_time_s", "train time (s)"),
)
#: every column: (row key, header)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("run", "run"),
    ("variant", "variant"),
    ("loss", "loss"),
    ("regularizer", "regularizer"),
    ("optimizer", "optimizer"),
    *NUMERIC,
    ("status", "status"),
)
_REPLICATE_KEYS = frozenset({"seed", "name"})
_SEED_SUFFIX = re.compile(r"[-_.]?seed[-_=]?\d+$")


def _component(info: RunInfo, kind: str) -> str:
    value = info.params.get(f"{kind}.name")
    if value is None:
        spec = info.spec.get(kind)
        if isinstance(spec, dict):
            value = spec.get("name")
        elif isinstance(spec, list):
            value = "+".join(str(s.get("name")) for s in spec if isinstance(s, dict)) or "none"
        else:
            value = spec
    return "" if value is None else str(value)


def sweep_point(info: RunInfo) -> dict[str, Any]:
    """The run's swept values (``{"optimizer.lr": 0.01}``) from its tags; empty if none."""
    try:
        point = json.loads(info.tags.get(SWEEP_TAG, "{}"))
    except ValueError:
        return {}
    return point if isinstance(point, dict) else {}


def _measures(info: RunInfo, result: RunResult) -> dict[str, float | None]:
    metrics = result.metrics
    best = metrics.get("best_val_accuracy")
    if best is None or not math.isfinite(best):
        vals = [e.val_accuracy for e in result.evaluations if e.val_accuracy is not None]
        best = max(vals) if vals else None
    return {
        "final_loss": result.final_loss,
        "best_val_accuracy": best,
        "test_accuracy": metrics.get("test_accuracy"),
        "train_time_s": metrics.get("train_time_s"),
    }


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    arr = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return None, None
    std = float(arr.std(ddof=1)) if arr.size > 1 else None
    return float(arr.mean()), std


def replicate_key(info: RunInfo) -> tuple[Any, ...]:
    """What replicates share: runs whose names differ only by the seed suffix, with the same
    params otherwise (variants of identical settings stay apart: their names differ). Params
    compare by value, as the run had them: a run ``--resume`` read back from the store has
    ``"true"`` where the seed it added has ``True`` (the table showed them as two groups of
    one name)."""
    params = sorted(
        (k, json.dumps(_plain(decoded_param(v)), sort_keys=True))
        for k, v in info.params.items()
        if k not in _REPLICATE_KEYS
    )
    return (_SEED_SUFFIX.sub("", info.name) or info.name, *params)


def group_name(names: list[str]) -> str:
    """The name of a group of replicates: their names without the seed suffix (``svm`` of
    ``svm-seed0``, ``svm-seed1``) when that leaves one name, else the first name."""
    stems = {_SEED_SUFFIX.sub("", n) or n for n in names}
    return stems.pop() if len(stems) == 1 else names[0]


def comparison_rows(results: Sequence[tuple[RunInfo, RunResult]]) -> list[dict[str, Any]]:
    """One row per run, or per group of replicates, in the order runs first appear.

    Parameters
    ----------
    results : sequence of (RunInfo, RunResult)

    Returns
    -------
    list of dict
        Keys: ``run``, ``variant``, ``sweep`` (the run's sweep values, dotted key -> value),
        ``loss``, ``regularizer``, ``optimizer``, ``final_loss``,
        ``best_val_accuracy``, ``test_accuracy``, ``train_time_s`` (means over the group's
        FINISHED runs, or over all when none finished), the same keys with ``_std``
        (sample standard deviation, ``None`` for a single value), ``status`` (shared status,
        or ``FINISHED 2/3``), ``replicates``, ``members`` (run names) and ``best`` (``True``
        for the row with the highest validation accuracy among rows with a FINISHED run).
    """
    groups: dict[tuple[Any, ...], list[tuple[RunInfo, RunResult]]] = {}
    for info, result in results:
        groups.setdefault(replicate_key(info), []).append((info, result))
    rows: list[dict[str, Any]] = []
    for members in groups.values():
        first = members[0][0]
        name = group_name([i.name for i, _ in members])
        variant = first.tags.get("optlab.variant", "")
        statuses = [r.status for _, r in members]
        finished = [(i, r) for i, r in members if r.status == "FINISHED"]
        counted = finished or members
        measures = [_measures(i, r) for i, r in counted]
        n_finished = len(finished)
        row: dict[str, Any] = {
            "run": name,
            # a run of no named variant has its own name as its variant (seed suffix and all)
            "variant": name if variant == first.name else variant,
            "sweep": sweep_point(first),
            "loss": _component(first, "loss"),
            "regularizer": _component(first, "regularizer"),
            "optimizer": _component(first, "optimizer"),
        }
        for column, _ in NUMERIC:
            row[column], row[f"{column}_std"] = _stats([m[column] for m in measures])
        row["status"] = (
            statuses[0] if len(set(statuses)) == 1 else f"FINISHED {n_finished}/{len(members)}"
        )
        row["replicates"] = len(members)
        row["members"] = [i.name for i, _ in members]
        row["best"] = False
        row["_finished"] = n_finished > 0
        rows.append(row)
    candidates = [r for r in rows if r["_finished"] and r["best_val_accuracy"] is not None]
    if candidates:
        max(candidates, key=lambda r: r["best_val_accuracy"])["best"] = True
    for row in rows:
        del row["_finished"]
    return rows


def format_cell(row: dict[str, Any], key: str) -> str:
    """A cell as text: ``0.953``, ``0.953 ± 0.004`` for replicates, ``-`` when missing."""
    value = row.get(key)
    if key not in dict(NUMERIC):
        text = "" if value is None else str(value)
        if key == "run" and row.get("replicates", 1) > 1:
            text += f" ({row['replicates']} seeds)"
        return text
    if value is None:
        return "-"
    std = row.get(f"{key}_std")
    if key == "train_time_s":  # three significant digits: 0.00123 next to 1.58
        decimals = _decimals(value)
        text = f"{value:.{decimals}f}"
        return text if std is None else f"{text} ± {std:.{decimals}f}"
    if key == "final_loss" and std is not None:  # the std to the mean's last digit
        decimals = min(_decimals(value) + 1, 12) if value else 4
        return f"{value:.{decimals}f} ± {std:.{decimals}f}"
    digits = ".4g" if key == "final_loss" else ".3f"
    return f"{value:{digits}}" if std is None else f"{value:{digits}} ± {std:{digits}}"


def _decimals(value: float) -> int:
    """Decimals that show three significant digits of ``value`` (none past the point for
    values of 100 and more)."""
    if value == 0 or not math.isfinite(value):
        return 2
    return max(0, 2 - math.floor(math.log10(abs(value))))


def format_value(value: Any) -> str:
    """A swept parameter's value, short: ``0.001``, ``1e-05``, ``svm``."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


#: swept keys whose values a component column shows already (a swept ``loss.name``)
_NAMED_BY_COMPONENTS = frozenset(f"{key}.name" for key in ("loss", "regularizer", "optimizer"))


def swept_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(dotted key, header) of a column per swept parameter, in order of appearance, but a
    component's name (its column tells it); the header is the key's last part (``lr``), or
    the whole key where two would share it."""
    keys = list(dict.fromkeys(key for row in rows for key in row.get("sweep", {})))
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return [
        (k, s if last.count(s) == 1 else k)
        for k, s in zip(keys, last, strict=True)
        if k not in _NAMED_BY_COMPONENTS
    ]


def swept_cell(row: dict[str, Any], key: str) -> str:
    """A row's value of the swept ``key`` (:func:`format_value`), ``-`` where not swept."""
    return format_value(row["sweep"][key]) if key in row.get("sweep", {}) else "-"


def _finished(row: dict[str, Any]) -> bool:
    """Whether a row has a FINISHED run (``FINISHED``, or ``FINISHED 2/3`` of replicates)."""
    status = str(row["status"])
    return status == "FINISHED" or (status.startswith("FINISHED ") and status[9] != "0")


def best_caption(rows: Sequence[dict[str, Any]]) -> str:
    """One line naming the best row by validation accuracy, with its test accuracy, and the
    rows of the same validation accuracy (the best is the first of them: the validation set
    did not choose between them)."""
    for row in rows:
        if row["best"]:
            tied = [
                other["run"]
                for other in rows
                if other is not row
                and other["best_val_accuracy"] == row["best_val_accuracy"]
                and _finished(other)
            ]
            more = f" and {len(tied) - 3} more" if len(tied) > 4 else ""
            names = ", ".join(tied[:3] if more else tied) + more
            also = f"; tied on validation with {names}" if tied else ""
            val = f"val {format_cell(row, 'best_val_accuracy')}"
            if row.get("test_accuracy") is None:  # data.test: 0, nothing to report
                return f"best by validation accuracy: {row['run']} ({val}; no test split{also})"
            return (
                f"best by validation accuracy: {row['run']} "
                f"({val}, test {format_cell(row, 'test_accuracy')}{also}; test accuracy is "
                "reported, never used to choose)"
            )
    return "no finished run with a validation accuracy: no best run"


def rows_to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a GitHub-flavoured markdown table, the best row in bold; the swept
    values have a column each, after the components (:func:`swept_columns`)."""
    swept = swept_columns(rows)
    at = [k for k, _ in COLUMNS].index("optimizer") + 1
    columns = [*COLUMNS[:at], *swept, *COLUMNS[at:]]
    keys = dict(swept)
    numeric = {*dict(NUMERIC), *keys}
    lines = [
        "| " + " | ".join(h for _, h in columns) + " |",
        "|" + "|".join("---:" if k in numeric else "---" for k, _ in columns) + "|",
    ]
    for row in rows:
        cells = [(swept_cell if k in keys else format_cell)(row, k) for k, _ in columns]
        cells = [cell.replace("|", "\\|") for cell in cells]
        if row["best"]:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + best_caption(rows) + "\n"


#: the table row's values a run record has under ``group`` (the row's ``run`` is the group's
#: ``name``, its ``members`` the group's ``runs``)
_GROUP_KEYS = (
    "status",
    "replicates",
    *(key for column, _ in NUMERIC for key in (column, f"{column}_std")),
)


def decoded_param(value: Any) -> Any:
    """A param's value as the run had it: MLflow keeps params as text (JSON for all but
    strings), so a run read back from the store has ``"0.01"`` where the run had ``0.01``."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def nested_params(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys (``lr``, ``momentum.beta``) as nested dicts."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return nested


def _regularizers(flat: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's regularizers as the spec lists them (``[{name: l2, strength: 0.001}]``), from
    the dotted params (:func:`~optlab._training.describe.flatten_params`: keyed by name,
    a second of a name by its count too, ``regularizer.name`` joining the names)."""
    names = str(flat.get("regularizer.name", "none"))
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for name in [] if names in ("", "none") else names.split("+"):
        seen[name] = seen.get(name, 0) + 1
        prefix = f"regularizer.{name}." + (f"{seen[name]}." if seen[name] > 1 else "")
        own = {
            key[len(prefix) :]: value
            for key, value in flat.items()
            if key.startswith(prefix) and not key[len(prefix) :].split(".")[0].isdigit()
        }
        out.append({"name": name, **nested_params(own)})
    return out


def run_records(
    results: Sequence[tuple[RunInfo, RunResult]],
    run_ids: Mapping[str, str] | None = None,
    reused: Collection[str] = (),
) -> list[dict[str, Any]]:
    """One record per run, the one shape of a run outside optlab: what ``optlab run --json``
    and ``optlab compare --json`` print, what ``comparison.json`` holds (on the parent run, and
    in ``optlab compare --out``) and the rows of the Python API's ``Results`` (a run trained
    here, or read back from the store: the same record).

    Parameters
    ----------
    results : sequence of (RunInfo, RunResult)
    run_ids : mapping of str to str, optional
        The MLflow run id of each run, by run key (none: untracked).
    reused : collection of str, optional
        The names of the runs the invocation did not train: ``--resume`` found them FINISHED,
        or (read back) it left them to another invocation.

    Returns
    -------
    list of dict
        In the order of ``results``, of JSON values only (``json.loads(records_to_json(r))``
        is ``r``: a number that is not finite is ``None``, a tuple a list). Keys: ``name``,
        ``variant``, ``sweep`` (swept values, dotted key -> value), ``seed``, ``status``,
        ``error`` (why it did not finish, else ``None``), the resolved settings ``data``,
        ``loss``, ``optimizer`` (mappings, with ``name``) and ``regularizer`` (a list of
        them), the measures ``final_loss``, ``best_val_accuracy``, ``test_accuracy``,
        ``train_time_s``, every final metric (``metrics``), the run ``key`` (``--resume``), its
        MLflow ``run_id`` (``None`` untracked), ``reused`` (in ``reused``), ``best`` (its table
        row is the best) and
        ``group``, the comparison table's row it is in: ``name``, ``runs`` (its runs' names:
        several for replicates that differ only in ``seed``), ``replicates``, ``status`` and
        the measures' means over the group, each with its ``_std``.
    """
    rows = comparison_rows(results)
    row_of = {name: row for row in rows for name in row["members"]}
    ids = run_ids or {}
    records = []
    for info, result in results:
        flat = {key: decoded_param(value) for key, value in info.params.items()}
        sections = {
            section: nested_params(
                {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(f"{section}.")}
            )
            for section in ("data", "loss", "optimizer")
        }
        row = row_of[info.name]
        records.append(
            {
                "name": info.name,
                "variant": info.tags.get("optlab.variant", ""),
                "sweep": sweep_point(info),
                "seed": flat.get("seed"),
                "status": result.status,
                "error": result.error,
                "data": sections["data"],
                "loss": sections["loss"],
                "regularizer": _regularizers(flat),
                "optimizer": sections["optimizer"],
                **_measures(info, result),
                "metrics": dict(result.metrics),
                "key": info.key,
                "run_id": ids.get(info.key),
                "reused": info.name in reused,
                "best": row["best"],
                "group": {
                    "name": row["run"],
                    "runs": row["members"],
                    **{key: row[key] for key in _GROUP_KEYS},
                },
            }
        )
    return [_plain(record) for record in records]


def _plain(value: Any) -> Any:
    """``value`` as JSON has it, however deep: a float that is not finite as ``None``, numpy
    scalars as Python's, tuples as lists, anything else JSON has no value for as its text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def records_to_json(records: Sequence[dict[str, Any]]) -> str:
    """Run records (:func:`run_records`) as a JSON array."""
    return json.dumps(_plain(list(records)), indent=2)
