"""Variants x sweep points x seeds: small pure functions on the parsed YAML.

Merge rule (variants, sweep values, ``--set``): mappings merge key by key, anything else is
replaced; but when an override changes a component's ``name`` (the base names one, the
override another), the base's settings that the new component also has are kept and the
others dropped (``optimizer: {name: sgd, lr: 0.1, momentum: 0.9}`` + ``optimizer: {name:
adam}`` is adam with ``lr: 0.1`` and adam's other defaults; ``data`` keeps its
:class:`~optlab._spec.experiment.DataOptions` keys). What a component has is the ``keys``
lookup's answer (:func:`optlab._spec.models.component_keys`). Keys the override itself
writes are always kept, and the settings of one sweep point, or all the ``--set`` options,
change names first (:func:`names_first`), so that their order does not matter.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import numpy as np

from optlab._spec.models import DATA_OPTION_KEYS, KIND_OF_KEY, Distribution
from optlab._spec.reader import KeyPath, describe_value

#: The keys a component accepts besides ``name``: (run key such as ``optimizer``, the
#: component's name) -> its keys, or ``None`` for a name no plugin offers.
Keys = Callable[[str, Any], Collection[str] | None]

__all__ = [
    "Keys",
    "draw_random_points",
    "grid_points",
    "merge",
    "names_first",
    "override_path",
    "plural",
    "point_label",
    "run_name",
    "set_path",
    "split_dotted",
    "sweep_head",
    "unique_names",
]


def _is_component(path: KeyPath) -> bool:
    """``loss`` or ``regularizer.0``: a mapping with a ``name`` (path relative to the run)."""
    return (len(path) == 1 and path[0] in KIND_OF_KEY) or (
        len(path) == 2 and path[0] == "regularizer" and isinstance(path[1], int)
    )


def merge(old: Any, new: Any, path: KeyPath = (), keys: Keys | None = None) -> Any:
    """``new`` deep-merged over ``old`` (neither is changed), by the module's merge rule.

    ``path`` is where the values sit in a run (``("loss",)``), so components are recognised;
    ``keys`` says what each component accepts (without it, only ``data``'s options are
    known to be shared across a change of name).
    """
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return copy.deepcopy(new)
    if _is_component(path) and _renames(old, new):
        shared = keys(str(path[0]), new["name"]) if keys is not None else None
        keep = shared if shared is not None else DATA_OPTION_KEYS if path == ("data",) else ()
        old = {k: v for k, v in old.items() if k in keep}
    out = copy.deepcopy(old)
    for key, value in new.items():
        out[key] = merge(out.get(key), value, (*path, key), keys)
    return out


def _renames(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``new`` gives the component ``old`` names another name."""
    return old.get("name") is not None and "name" in new and new["name"] != old["name"]


def names_first(path: Sequence[str | int], value: Any) -> bool:
    """Whether setting ``path`` (relative to a run) to ``value`` may change a component's
    name, so that it goes before the other settings (``sorted(..., key=not names_first)``)."""
    run = tuple(int(p) if isinstance(p, str) and p.isdigit() else p for p in path)
    return (bool(run) and run[-1] == "name" and _is_component(run[:-1])) or (
        _is_component(run) and isinstance(value, dict) and "name" in value
    )


def split_dotted(key: str) -> list[str] | None:
    """``"optimizer.lr"`` -> ``["optimizer", "lr"]``; ``None`` when a segment is empty."""
    parts = key.strip().split(".")
    return parts if all(p.strip() == p and p for p in parts) else None


def sweep_head(segments: Sequence[str]) -> int:
    """How many leading segments of a ``--set`` key name a part of ``sweep`` keyed by dotted
    keys: 3 under ``sweep.random.params``, 2 elsewhere under ``sweep``, 0 outside it."""
    if list(segments[:3]) == ["sweep", "random", "params"]:
        return 3
    return 2 if list(segments[:1]) == ["sweep"] else 0


def override_path(key: str) -> list[str] | None:
    """The segments a ``--set KEY=VALUE`` sets: ``KEY`` split at its dots, a sweep's dotted
    key kept whole (``sweep.grid.optimizer.lr`` -> ``sweep``, ``grid``, ``optimizer.lr``);
    ``None`` when a segment is empty."""
    segments = split_dotted(key)
    if segments is None:
        return None
    head = sweep_head(segments)
    if head and len(segments) > head:
        return [*segments[:head], ".".join(segments[head:])]
    return segments


def set_path(
    root: dict[str, Any],
    segments: Sequence[str],
    value: Any,
    offset: int = 0,
    keys: Keys | None = None,
) -> KeyPath:
    """Set a dotted path in ``root`` (in place), creating mappings on the way, by the merge
    rule (setting ``loss.name`` to a new name drops the params the new loss does not have).
    A list entry is addressed by its index (``regularizer.0.strength``).

    ``offset`` is how many leading segments come before a run's keys (2 under
    ``variants.<name>``, ``len(segments)`` where there is no run); ``keys`` as for
    :func:`merge`. Returns the path set.

    Raises
    ------
    ValueError
        The path cannot be set (the message says why).
    """
    dotted, parent = ".".join(segments), None
    path: KeyPath = ()
    node: Any = root
    for depth, seg in enumerate(segments):
        key: str | int = seg
        if isinstance(node, list):
            where = ".".join(map(str, path))
            if not seg.isdigit():
                rest = ".".join(segments[depth:])
                raise ValueError(
                    f"cannot set '{dotted}': '{where}' is a list; address an entry by index, "
                    f"e.g. {where}.0.{rest}"
                )
            if int(seg) >= len(node):
                raise ValueError(
                    f"cannot set '{dotted}': '{where}' has {len(node)} entries, so index {seg} "
                    "is out of range"
                )
            key = int(seg)
        if depth == len(segments) - 1:
            break
        if isinstance(node, dict) and node.get(seg) is None:
            node[seg] = {}
        parent, path, node = node, (*path, key), node[key]
        if not isinstance(node, dict | list):
            raise ValueError(
                f"cannot set '{dotted}': '{'.'.join(map(str, path))}' is "
                f"{describe_value(node)}, not a mapping"
            )
    run = path[offset:] if len(path) >= offset else None
    if key == "name" and run is not None and _is_component(run) and parent is not None:
        parent[path[-1]] = merge(node, {"name": value}, run, keys)
    else:
        old = node.get(key) if isinstance(node, dict) else node[key]
        node[key] = merge(old, value, (*run, key) if run is not None else (), keys)
    return (*path, key)


# --------------------------------------------------------------------------------------------
# Sweep points and names
# --------------------------------------------------------------------------------------------


def grid_points(grid: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination, the last key varying fastest."""
    for combo in itertools.product(*grid.values()):
        yield dict(zip(grid, combo, strict=True))


def _draw(rng: np.random.Generator, dist: Distribution) -> Any:
    if dist.choice is not None:
        return copy.deepcopy(dist.choice[int(rng.integers(len(dist.choice)))])
    if dist.uniform is not None:
        return float(rng.uniform(*dist.uniform))
    if dist.loguniform is not None:
        low, high = dist.loguniform
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    assert dist.int_ is not None
    return int(rng.integers(dist.int_[0], dist.int_[1], endpoint=True))


def draw_random_points(
    trials: int, params: dict[str, Distribution], seed: int
) -> list[dict[str, Any]]:
    """``trials`` points from a Generator seeded with ``seed``: keys in the order written,
    trial after trial."""
    rng = np.random.default_rng(seed)
    return [{key: _draw(rng, dist) for key, dist in params.items()} for _ in range(trials)]


def _format_value(value: Any, *, short: bool) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3g}" if short else repr(value)
    if isinstance(value, dict):
        name = value.get("name")
        return str(name) if name is not None else ",".join(f"{k}{v}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(_format_value(v, short=short) for v in value)
    return str(value)


def point_label(key: str, value: Any, *, short: bool = False) -> str:
    """``optimizer.lr=0.1`` -> ``lr0.1``; ``loss.name=softmax`` or a whole component -> its name.

    ``short`` formats floats with 3 significant digits (random draws).
    """
    segments = key.split(".")
    text = _format_value(value, short=short)
    if segments[-1] == "name" or isinstance(value, dict):
        return text
    return next((s for s in reversed(segments) if not s.isdigit()), segments[-1]) + text


def run_name(prefix: str, labels: Sequence[str], seed: int | None) -> str:
    """``prefix-label1-label2[-seedN]``."""
    return "-".join([prefix, *labels, *([f"seed{seed}"] if seed is not None else [])])


def unique_names(names: Sequence[str]) -> list[str]:
    """Suffix repeated names with ``-2``, ``-3``, ... so all are distinct (first keeps its name)."""
    taken, seen, out = set(names), set(), []
    for name in names:
        if name in seen:
            n = 2
            while f"{name}-{n}" in taken:
                n += 1
            name = f"{name}-{n}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


def plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def key_paths(value: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    """``path`` and the key path of everything inside ``value``."""
    yield path
    inner = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in inner:
        yield from key_paths(item, (*path, key))
