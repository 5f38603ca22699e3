"""Variants x sweep points x seeds: the plain-data side of expanding a spec into runs.

Everything here works on the parsed YAML (dicts and lists) together with its
:data:`~optlab._yaml_positions.Positions`, so that a value merged in from a variant or set by a
sweep still knows the line it was written on.

Merge rule (variants, sweep values, ``--set``): mappings merge key by key, anything else is
replaced; but when an override changes a component's ``name``, the component's params are
replaced, not merged (``loss: {name: svm, margin: 2}`` + ``loss: {name: softmax}`` is softmax
with its defaults). ``data`` keeps its :class:`~optlab.config.DataOptions` keys across a
change of dataset.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from optlab._spec_models import COMPONENT_KEYS, DATA_OPTION_KEYS, Distribution
from optlab._yaml_positions import KeyPath, Positions, Src, describe_value, format_path

__all__ = [
    "draw_random_points",
    "grid_points",
    "grid_size",
    "merge_into",
    "point_label",
    "rebase",
    "run_name",
    "set_path",
    "split_dotted",
    "unique_names",
]


# --------------------------------------------------------------------------------------------
# Positions helpers
# --------------------------------------------------------------------------------------------


def rebase(positions: Positions, old: KeyPath, new: KeyPath) -> Positions:
    """The positions at or under ``old``, re-keyed under ``new`` (their sources unchanged)."""
    n = len(old)
    return {new + p[n:]: src for p, src in positions.items() if p[:n] == old}


def _drop(positions: Positions, path: KeyPath, keep: frozenset[str] = frozenset()) -> None:
    """Forget the positions under ``path`` (but not ``path`` itself, nor ``path + (keep..)``)."""
    n = len(path)
    for p in [p for p in positions if len(p) > n and p[:n] == path]:
        if p[n] not in keep:
            del positions[p]


def _is_component(path: KeyPath, offset: int) -> bool:
    if len(path) <= offset:
        return False
    rel = path[offset:]
    return (len(rel) == 1 and rel[0] in COMPONENT_KEYS) or (
        len(rel) == 2 and rel[0] == "regularizer" and isinstance(rel[1], int)
    )


def _keep_on_rename(path: KeyPath, offset: int) -> frozenset[str]:
    """Keys that survive a change of component name (data options survive a new dataset)."""
    return DATA_OPTION_KEYS if path[offset:] == ("data",) else frozenset()


# --------------------------------------------------------------------------------------------
# Merging and setting
# --------------------------------------------------------------------------------------------


def merge_into(
    target: dict[str, Any],
    positions: Positions,
    override: dict[str, Any],
    override_positions: Positions,
    path: KeyPath = (),
    offset: int = 0,
) -> None:
    """Deep-merge ``override`` into ``target`` in place, and its positions into ``positions``.

    Parameters
    ----------
    target, override : dict
        Nested plain data; ``target`` sits at ``path`` of the document.
    positions : Positions
        Positions of the document ``target`` belongs to (updated).
    override_positions : Positions
        Positions of ``override``'s values, keyed by their path in the *target* document.
    path : KeyPath
        Where ``target`` is.
    offset : int
        Length of the prefix of ``path`` before a run's keys (2 under ``variants.<name>``),
        so components are recognised.
    """
    for key, new in override.items():
        p = (*path, key)
        old = target.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            if _is_component(p, offset) and "name" in new and new["name"] != old.get("name"):
                keep = _keep_on_rename(p, offset)
                _drop(positions, p, keep)
                kept = {k: v for k, v in old.items() if k in keep}
                target[key] = kept
                merge_into(kept, positions, new, override_positions, p, offset)
            else:
                merge_into(old, positions, new, override_positions, p, offset)
            continue
        target[key] = copy.deepcopy(new)
        _drop(positions, p)
        positions.update(rebase(override_positions, p, p))


def split_dotted(key: str) -> list[str] | None:
    """``"optimizer.lr"`` -> ``["optimizer", "lr"]``; ``None`` when a segment is empty."""
    parts = key.strip().split(".")
    return parts if all(p.strip() == p and p for p in parts) else None


def _get(container: Any, key: Any) -> Any:
    return container[key] if isinstance(container, list) else container.get(key)


def _put(container: Any, key: str | int, value: Any) -> None:
    container[key] = value


def set_path(
    root: dict[str, Any],
    positions: Positions,
    segments: Sequence[str],
    value: Any,
    src: Src,
    offset: int = 0,
) -> str | None:
    """Set the value at a dotted path, creating mappings on the way.

    Applies the merge rule: a mapping set on a component merges into it (and replaces it
    when the ``name`` changes); setting a component's ``name`` to a new one drops its params.
    List entries are addressed by index (``regularizer.0.strength``).

    Returns
    -------
    str or None
        Why the path cannot be set, or ``None`` on success. ``positions`` gets ``src`` for the
        set path (and every mapping created on the way).
    """
    dotted = ".".join(segments)
    container: Any = root
    path: KeyPath = ()
    keys: list[str | int] = []
    for depth, seg in enumerate(segments):
        key: str | int = seg
        if isinstance(container, list):
            if not seg.isdigit():
                where = format_path(path)
                return (
                    f"cannot set '{dotted}': '{where}' is a list; address an entry by index, "
                    f"e.g. {where}.0.{'.'.join(segments[depth:])}"
                )
            key = int(seg)
            if key >= len(container):
                return (
                    f"cannot set '{dotted}': '{format_path(path)}' has {len(container)} "
                    f"entries, so index {key} is out of range"
                )
        keys.append(key)
        if depth == len(segments) - 1:
            break
        nxt = _get(container, key)
        if nxt is None:
            nxt = {}
            _put(container, key, nxt)
            rest = "." + ".".join(segments[depth + 1 :])
            positions[(*path, key)] = src.with_path(src.path.removesuffix(rest))
        elif not isinstance(nxt, (dict, list)):
            return (
                f"cannot set '{dotted}': '{format_path((*path, key))}' is "
                f"{describe_value(nxt)}, not a mapping"
            )
        container = nxt
        path = (*path, key)

    last = keys[-1]
    full = (*path, last)
    if (
        last == "name"
        and isinstance(container, dict)
        and _is_component(path, offset)
        and container.get("name") != value
    ):
        keep = _keep_on_rename(path, offset)
        for k in [k for k in container if k not in keep]:
            del container[k]
        _drop(positions, path, keep)
        container["name"] = copy.deepcopy(value)
        positions[full] = src
        return None
    old = _get(container, last)
    if isinstance(old, dict) and isinstance(value, dict) and _is_component(full, offset):
        if "name" in value and value["name"] != old.get("name"):
            keep = _keep_on_rename(full, offset)
            for k in [k for k in old if k not in keep]:
                del old[k]
            _drop(positions, full, keep)
        merge_into(old, positions, value, {(*full, k): src for k in value}, full, offset)
        positions[full] = src
        return None
    _put(container, last, copy.deepcopy(value))
    _drop(positions, full)
    positions[full] = src
    return None


# --------------------------------------------------------------------------------------------
# Sweep points
# --------------------------------------------------------------------------------------------


def grid_size(grid: dict[str, list[Any]]) -> int:
    """Number of grid points (product of the value counts)."""
    return math.prod(len(v) for v in grid.values())


def grid_points(grid: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination, the last key varying fastest."""
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, combo, strict=True))


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
    """``trials`` points drawn from a Generator seeded with ``seed`` (deterministic).

    Keys are drawn in the order they are written, trial after trial.
    """
    rng = np.random.default_rng(seed)
    return [{key: _draw(rng, dist) for key, dist in params.items()} for _ in range(trials)]


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def _format_value(value: Any, *, short: bool) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3g}" if short else repr(value)
    if value is None:
        return "none"
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
    label = next((s for s in reversed(segments) if not s.isdigit()), segments[-1])
    return f"{label}{text}"


def run_name(prefix: str, labels: Sequence[str], seed: int | None) -> str:
    """``prefix-label1-label2[-seedN]``."""
    parts = [prefix, *labels]
    if seed is not None:
        parts.append(f"seed{seed}")
    return "-".join(parts)


def unique_names(names: Sequence[str]) -> list[str]:
    """Suffix repeated names with ``-2``, ``-3``, ... so all are distinct (first keeps its name)."""
    taken = set(names)
    seen: set[str] = set()
    out = []
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
