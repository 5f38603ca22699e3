"""A validated spec expanded into its runs: variants x sweep points x seeds, each run validated
by the registry's run model where it comes from (base, variant or sweep entry), its components
resolved once (:class:`~optlab._spec.experiment.ComponentSpec`)."""

from __future__ import annotations

import copy
import functools
import itertools
import math
import operator
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from optlab._contract.components import ComponentKind
from optlab._contract.registry import Registry, did_you_mean
from optlab._errors import PluginError, SpecIssue
from optlab._spec.expand import (
    draw_random_points,
    key_paths,
    merge,
    names_first,
    plural,
    point_label,
    run_name,
    set_path,
    split_dotted,
    unique_names,
)
from optlab._spec.experiment import ComponentSpec, DataOptions, RunSpec
from optlab._spec.issues import Locator, validate
from optlab._spec.models import (
    KIND_OF_KEY,
    RUN_KEYS,
    Distribution,
    component_fields,
    component_keys,
    param_hint,
    run_model,
)
from optlab._spec.reader import KeyPath, Positions, Src

__all__ = ["Setting", "expand_runs", "sweep_points"]


Setting = tuple[KeyPath, Any, Src]  # a run key path set by a sweep point, its value, its source


def _key_path(segments: list[str]) -> KeyPath:
    """A swept key's path in a run, a list index as an int (as validation errors have it)."""
    return tuple(int(s) if s.isdigit() else s for s in segments)


def sweep_points(
    spec: Any, positions: Positions, top: Locator, issues: list[SpecIssue], registry: Registry
) -> tuple[list[tuple[list[Setting], list[str]]], dict[str, list[Any]], int]:
    """The sweep's points, each its settings and name labels, the sweep's axes, and the
    number of points.

    A key that addresses nothing a run has is an issue (``lr``: did you mean
    ``optimizer.lr``, a param of the registry's optimizers), and left out of the points. More
    points than ``max_runs`` are counted, not drawn nor listed (no points, no axes): the spec
    is refused (:func:`expand_runs`), and ``trials: 1000000000`` drew until memory ran out."""
    grid, random = (spec.sweep.grid or {}, spec.sweep.random) if spec.sweep else ({}, None)
    written: dict[str, KeyPath] = {k: ("sweep", "grid", k) for k in grid}
    for k in random.params if random else ():
        if k in written:
            issues.append(
                top.issue(
                    ("sweep", "random", "params", k),
                    f"'{k}' is swept twice (in grid and in random)",
                )
            )
        written[k] = ("sweep", "random", "params", k)
    keys: dict[str, KeyPath] = {}
    for k, doc_path in written.items():
        segments = split_dotted(k) or ["", ""]
        if segments[0] in RUN_KEYS:
            keys[k] = _key_path(segments)
            continue
        hint = (
            did_you_mean(segments[0], RUN_KEYS)
            + (param_hint(registry, segments[0]) if len(segments) == 1 else "")
            + ("; use seeds: [...] to replicate runs" if segments[0] in ("seed", "seeds") else "")
        )
        problem = f"sweep keys start with one of {', '.join(RUN_KEYS)}, got '{segments[0]}'{hint}"
        issues.append(
            top.issue(
                doc_path,
                problem if split_dotted(k) else f"'{k}' is not a dotted key like optimizer.lr",
            )
        )
    axes = [
        [
            (
                keys[k],
                v,
                replace(
                    positions[written[k]],
                    value_line=positions[(*written[k], i)].value_line,
                    value_column=positions[(*written[k], i)].value_column,
                ),
                point_label(k, v),
            )
            for i, v in enumerate(values)
        ]
        for k, values in grid.items()
        if k in keys
    ]
    params = {
        k: d for k, d in (random.params.items() if random else ()) if k in keys and k not in grid
    }
    n_points = math.prod(len(axis) for axis in axes) * (random.trials if random else 1)
    if n_points > spec.max_runs:
        return [], {}, n_points
    drawn = draw_random_points(random.trials, params, spec.seed) if random else [{}]
    draws = [
        [(keys[k], v, positions[written[k]], point_label(k, v, short=True)) for k, v in d.items()]
        for d in drawn
    ]
    points = [
        ([(p, v, s) for p, v, s, _ in (*g, *r)], [label for *_, label in (*g, *r)])
        for g in itertools.product(*axes)
        for r in draws
    ]
    values = {k: list(v) for k, v in grid.items() if k in keys} | {
        k: [d[k] for d in drawn] for k in params
    }
    return points, values, len(points)


def expand_runs(
    spec: Any,
    raw: dict[str, Any],
    positions: Positions,
    file: str,
    registry: Registry,
    issues: list[SpecIssue],
    overrides_label: str = "--set",
) -> tuple[list[RunSpec], dict[str, list[Any]]]:
    """Variants x sweep points x seeds -> validated runs (issues collected, not raised);
    ``overrides_label`` names the overrides in hints (``--set``; the Python API's
    ``overrides``)."""
    top, run = Locator(file, positions, overrides_label=overrides_label), run_model(registry)
    base = {k: raw[k] for k in RUN_KEYS if k in raw}
    seeds = spec.seeds if spec.seeds is not None else [spec.seed]
    variants = list(spec.variants or {})
    if variants:  # the base alone too, so a mistake every variant overrides still shows
        named = {k: v for k, v in base.items() if not (isinstance(v, dict) and "name" not in v)}
        validate(run, named, top, registry, issues, partial=True)
    loss = base.get("loss")
    label = (
        loss.get("name") if isinstance(loss, dict) and isinstance(loss.get("name"), str) else "run"
    )
    keys = functools.partial(component_keys, registry)
    drafts = [(v, v, merge(base, raw["variants"][v] or {}, keys=keys)) for v in variants] or [
        (label, None, base)
    ]
    points, axes, n_points = sweep_points(spec, positions, top, issues, registry)
    grid, random = (spec.sweep.grid or {}, spec.sweep.random) if spec.sweep else ({}, None)
    ranges = [
        (_key_path(k.split(".")), d)
        for k, d in (random.params.items() if random else ())
        if k in axes and k not in grid
    ]
    n_runs = len(drafts) * n_points * len(seeds)
    if n_runs > spec.max_runs:
        at = next(
            k
            for k, c in (
                ("sweep", spec.sweep),
                ("max_runs", "max_runs" in raw),
                ("variants", variants),
                ("seeds", True),
            )
            if c
        )
        parts = [plural(len(variants), "variant")] if len(variants) > 1 else []
        counts = " x ".join([*parts, plural(n_points, "sweep point"), plural(len(seeds), "seed")])
        message = f"the spec expands to {n_runs} runs ({counts}), more than max_runs "
        issues.append(
            top.issue((at,), f"{message}({spec.max_runs}); narrow the sweep or raise max_runs")
        )
        points, seeds = [([], [])], []  # still validate each variant, once
    runs: list[RunSpec] = []
    for label, variant, merged in drafts:
        for settings, labels in points:
            body = copy.deepcopy(merged)
            swept = {p: src for p, _, src in settings}
            loc = Locator(file, positions, variant, swept, overrides_label)
            absent = _absent_components(body, settings, variant, registry)
            if absent:
                issues += [loc.issue(path, message) for path, message in absent]
                continue
            try:
                for path, value, _ in sorted(settings, key=lambda s: not names_first(*s[:2])):
                    set_path(body, [str(p) for p in path], value, keys=keys)
            except ValueError as exc:
                issues.append(loc.issue(path, str(exc)))
                continue
            bad = _out_of_bounds(body, ranges, registry)
            issues += [loc.issue(p, message) for p, message in bad]
            found: list[SpecIssue] = []
            valid, _ = validate(run, body, loc, registry, found)
            # a draw outside the bounds is the range's fault, reported once whatever the seed
            shown = {loc.issue(p, "").path for p, _ in bad}
            issues += [i for i in found if i.path not in shown]
            if valid is None or not _unambiguous(valid, registry, loc, issues):
                continue
            where = {".".join(map(str, p)): loc.issue(p, "", key=False) for p in key_paths(body)}
            point = {".".join(map(str, p)): v for p, v, _ in settings}
            for seed in seeds:
                name = run_name(label, labels, seed if len(seeds) > 1 else None)
                runs.append(
                    _run_spec(valid, registry, name, variant, seed, point, spec.backend, where)
                )
    names = unique_names([r.name for r in runs])
    landscape = spec.tracking.landscape_options()  # drawn by each run when it has trained
    runs = [replace(r, name=n, landscape=landscape) for r, n in zip(runs, names, strict=True)]
    axes = ({"variant": variants} if variants else {}) | axes
    return runs, axes | ({"seed": list(seeds)} if spec.seeds is not None else {})


#: The bounds of a params field a random-sweep range is checked against: annotated_types'
#: class, its attribute, how messages write it, the test a value must pass.
_BOUNDS: tuple[tuple[type, str, str, Callable[[Any, Any], bool]], ...] = (
    (Gt, "gt", ">", operator.gt),
    (Ge, "ge", ">=", operator.ge),
    (Lt, "lt", "<", operator.lt),
    (Le, "le", "<=", operator.le),
)


def _out_of_bounds(
    body: dict[str, Any], ranges: list[tuple[KeyPath, Distribution]], registry: Registry
) -> list[tuple[KeyPath, str]]:
    """The random-sweep ranges (both ends; each number of a ``choice``) outside the bounds of
    the parameter they draw (its field's ``gt``/``ge``/``lt``/``le``), each with its message:
    some draws would fail, which ones depending on the seed."""
    out = []
    for path, dist in ranges:
        info = _field(body, path, registry)
        if info is None:
            continue
        ends = dist.uniform or dist.loguniform or dist.int_
        values = list(ends) if ends else [v for v in dist.choice or () if _number(v)]
        checks = [
            (symbol, bound, ok)
            for m in info.metadata
            for kind, attr, symbol, ok in _BOUNDS
            if isinstance(m, kind) and _number(bound := getattr(m, attr))
        ]
        outside = [v for v in values if not all(ok(v, b) for _, b, ok in checks)]
        bounds = [(s, b) for s, b, ok in checks if not all(ok(v, b) for v in values)]
        if bounds:
            what = f"range {list(ends)}" if ends else f"choice {', '.join(map(str, outside))}"
            limits = ", ".join(f"{symbol} {bound}" for symbol, bound in bounds)
            dotted = ".".join(map(str, path))
            out.append(
                (path, f"the {what} leaves {dotted}'s bounds ({limits}); keep it within them")
            )
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field(body: dict[str, Any], path: KeyPath, registry: Registry) -> FieldInfo | None:
    """The field of the run's component that ``path`` sets (``optimizer.momentum``,
    ``regularizer.0.strength``, ``checks.gradient_tolerance``), or ``None``."""
    head, rest = str(path[0]), [str(p) for p in path[1:]]
    component = body.get(head)
    if head == "regularizer" and rest[:1] and rest[0].isdigit():
        index, rest = int(rest[0]), rest[1:]
        entries = component if isinstance(component, list) else []
        component = entries[index] if index < len(entries) else None
    elif head == "regularizer" and isinstance(component, list):
        return None
    if len(rest) != 1 or not isinstance(component, dict | None):
        return None
    fields = component_fields(registry, head, (component or {}).get("name"))
    return next(
        (i for n, i in (fields or {}).items() if rest[0] in (n, i.alias)),
        None,
    )


def _absent_components(
    body: dict[str, Any], settings: list[Setting], variant: str | None, registry: Registry
) -> list[tuple[KeyPath, str]]:
    """The swept keys below a component the run does not have (``regularizer.strength``
    with no ``regularizer:``), unless the point also sets that component or its name; each
    with its message."""
    given = {p for p, _, _ in settings if len(p) == 1 or p[1:] == ("name",)}
    out = []
    for path, _, _ in settings:
        head = str(path[0])
        value = body.get(head)
        if (
            head not in KIND_OF_KEY
            or len(path) < 2
            or {(head,), (head, "name")} & given
            or not (value is None or value == [] or str(value).lower() == "none")
        ):
            continue
        field = str(path[-1])
        names = registry.names(KIND_OF_KEY[head])
        having = [n for n in names if field in (component_keys(registry, head, n) or ())]
        a = "an" if head[0] in "aeiou" else "a"
        who = (
            f"the spec has no {head}"
            if variant is None
            else f"neither the base nor variant '{variant}' has {a} {head}"
        )
        if len(having) > 1:  # every one that has the key, not the first in the alphabet
            fix = (
                f"add {head}: {{name: NAME}}, NAME one of {', '.join(having)} (those with "
                f"'{field}'), or sweep {head}.name too"
            )
        else:
            example = (having or names or ["..."])[0]
            fix = f"add {head}: {{name: {example}}} (or sweep {head}.name too)"
        out.append((path, f"{who} to set '{field}' on; {fix}"))
    return out


def _unambiguous(valid: Any, registry: Registry, loc: Locator, issues: list[SpecIssue]) -> bool:
    """Whether each component's name is offered by exactly one plugin (else an issue each:
    a name two plugins offer, or any name of a kind no plugin offers)."""
    parts: list[tuple[KeyPath, Any]] = [
        (("regularizer", i), r) for i, r in enumerate(valid.regularizer)
    ]
    parts += [(("data",), valid.data), (("loss",), valid.loss), (("optimizer",), valid.optimizer)]
    before = len(issues)
    for path, value in parts:
        name = value.get("name") if isinstance(value, dict) else value.name
        try:
            registry.get(KIND_OF_KEY[str(path[0])], str(name))
        except PluginError as exc:
            issues.append(loc.issue((*path, "name"), str(exc), key=False))
    return len(issues) == before


def _params(model: type[BaseModel], valid: BaseModel) -> Any:
    """The part of a validated component that ``model`` describes, as a ``model``."""
    fields = model.model_fields
    return model.model_construct(
        _fields_set=valid.model_fields_set & set(fields), **{f: getattr(valid, f) for f in fields}
    )


def _run_spec(
    valid: Any,
    registry: Registry,
    name: str,
    variant: str | None,
    seed: int,
    point: dict[str, Any],
    backend: str,
    where: dict[str, SpecIssue],
) -> RunSpec:
    def component(kind: ComponentKind, value: Any) -> ComponentSpec:
        record = registry.get(kind, value.name)
        return ComponentSpec(kind, value.name, _params(record.params, value), record)

    dataset, data = component("dataset", valid.data), _params(DataOptions, valid.data)
    loss, optimizer = component("loss", valid.loss), component("optimizer", valid.optimizer)
    regularizers = tuple(component("regularizer", r) for r in valid.regularizer)
    resolved = {
        "seed": seed,
        "data": {
            "name": dataset.name,
            **data.model_dump(mode="json"),
            **dataset.params.model_dump(mode="json"),
        },
        "loss": loss.as_dict(),
        "regularizer": [r.as_dict() for r in regularizers],
        "optimizer": optimizer.as_dict(),
        "checks": valid.checks.model_dump(mode="json"),
    }
    return RunSpec(
        name=name,
        variant=variant,
        seed=seed,
        dataset=dataset,
        data=data,
        loss=loss,
        optimizer=optimizer,
        regularizers=regularizers,
        checks=valid.checks,
        backend=backend,
        point=point,
        resolved=resolved,
        where=where,
    )


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------
