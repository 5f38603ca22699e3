"""Experiment specs: YAML file -> validated :class:`~optlab._spec.experiment.Experiment`.

A spec names a base run (``data``, ``loss``, ``regularizer``, ``optimizer``, ``checks``) and
how it varies: named ``variants`` (partial overrides), a ``sweep`` (grid or random over dotted
keys) and ``seeds`` (replicates); the runs are their product. See the README for the format.

Every issue of a file is reported at once, in one :class:`~optlab._errors.SpecError`, each as
``FILE:LINE:COL: key.path: message``. The top level is validated by the registry's spec model
(:func:`optlab._spec.models.spec_model`), then each run - base, merged with its variant, with
its sweep point set - by the registry's run model, whose components are unions discriminated
by ``name``. Each :class:`~optlab._spec.experiment.RunSpec` keeps where its keys were written, so
that problems found once data is loaded are located too
(:meth:`~optlab._spec.experiment.RunSpec.issue`).

Public entry points: :func:`load_experiment`, :func:`describe_plan`; the JSON Schema of the
format is :func:`optlab._spec.schema.json_schema`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from optlab._contract.components import ComponentKind
from optlab._contract.registry import Registry, did_you_mean
from optlab._errors import PluginError, SpecError, SpecIssue
from optlab._spec.expand import (
    draw_random_points,
    merge,
    point_label,
    run_name,
    set_path,
    split_dotted,
    unique_names,
)
from optlab._spec.experiment import ComponentSpec, DataOptions, Experiment, RunSpec
from optlab._spec.issues import Locator, pydantic_issues
from optlab._spec.models import KIND_OF_KEY, RUN_KEYS, run_model, spec_model
from optlab._spec.reader import KeyPath, Positions, Src, describe_value, load_yaml

__all__ = ["MAX_FILE_BYTES", "describe_plan", "load_experiment", "sorted_issues"]

#: Spec files larger than this are refused (a spec is a page of YAML).
MAX_FILE_BYTES = 1_000_000
_SET = "--set"


# --------------------------------------------------------------------------------------------
# Reading the file, --set overrides
# --------------------------------------------------------------------------------------------


def _read(path: Path, file: str) -> tuple[bytes, str]:
    """The file's bytes and text; :class:`SpecError` for every way reading can fail."""

    def fail(message: str, line: int = 0, col: int = 0) -> SpecError:
        return SpecError([SpecIssue(file, line, col, "", message)])

    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            inside = sorted(p.name for p in path.glob("*.y*ml"))[:5]
            hint = f" (it holds {', '.join(inside)})" if inside else ""
            raise fail(f"is a directory, not a spec file; name a .yaml file{hint}")
        if not stat.S_ISREG(st.st_mode):
            raise fail("is not a regular file; name a .yaml spec file")
        if st.st_size > MAX_FILE_BYTES:
            raise fail(f"is {st.st_size} bytes, more than the {MAX_FILE_BYTES} a spec may have")
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail("no such file; check the path") from None
    except PermissionError:
        raise fail("cannot be read: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror or exc}") from None
    try:
        return data, data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        message = f"is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        raise fail(message, line, col) from None


def _paths(value: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
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
        yield from _paths(item, (*path, key))


def _apply_overrides(
    raw: dict[str, Any], positions: Positions, overrides: Sequence[str]
) -> list[SpecIssue]:
    """Set each ``KEY.PATH=VALUE`` in the document (values are YAML); what an override sets
    is located at it. A sweep key stays one segment (``sweep.grid.optimizer.lr``)."""
    issues: list[SpecIssue] = []
    for text in overrides:
        note = f" (in --set {text})"
        key, sep, value_text = (part.strip() for part in text.partition("="))
        segments = split_dotted(key) if sep else None
        if segments is None:
            issues.append(
                SpecIssue(_SET, 0, 0, "", f"expected KEY.PATH=VALUE, e.g. optimizer.lr=0.1{note}")
            )
            continue
        head = (
            3
            if segments[:3] == ["sweep", "random", "params"]
            else 2
            if segments[0] == "sweep"
            else 0
        )
        if head and len(segments) > head:
            segments = [*segments[:head], ".".join(segments[head:])]
        try:
            value, _, bad = load_yaml(value_text, _SET, allow_empty=True)
            if not bad:
                path = set_path(raw, segments, value, 2 if segments[0] == "variants" else head or 0)
                for sub in [*(path[:n] for n in range(1, len(path))), *_paths(value, path)]:
                    dotted = ".".join(map(str, sub))
                    positions[sub] = Src(_SET, 0, 0, 0, 0, dotted, note)
        except SpecError as exc:
            bad = exc.issues
        except ValueError as exc:
            bad = [SpecIssue(_SET, 0, 0, key, str(exc))]
        issues += [replace(i, path=key, message=i.message + note) for i in bad]
    return issues


# --------------------------------------------------------------------------------------------
# Validation and expansion
# --------------------------------------------------------------------------------------------


def _validate(
    model: type[BaseModel],
    data: dict[str, Any],
    loc: Locator,
    registry: Registry,
    issues: list[SpecIssue],
    *,
    partial: bool = False,
) -> tuple[Any, set[KeyPath]]:
    """``model.model_validate(data)``, or ``None``, its issues, and the paths that failed (a
    top-level key, or ``("variants", name)``). ``partial`` ignores missing run keys."""
    try:
        return model.model_validate(data), set()
    except ValidationError as exc:
        errors = [
            e
            for e in exc.errors()
            if not (partial and e["type"] == "missing" and len(e["loc"]) == 1)
        ]
        issues += pydantic_issues(errors, data, model, loc, registry)
        return None, {tuple(e["loc"][: 2 if e["loc"][0] == "variants" else 1]) for e in errors}


def _structure(
    raw: dict[str, Any], top: Locator, registry: Registry, issues: list[SpecIssue]
) -> Any:
    """The top level, run keys aside (each run is validated whole), or ``None``. A broken
    key or variant is left out, so that the runs are still checked."""
    data = {k: v for k, v in raw.items() if k not in RUN_KEYS}
    spec, broken = _validate(spec_model(registry), data, top, registry, issues)
    if broken:
        data = {"name": "unnamed"} | {k: v for k, v in data.items() if (k,) not in broken}
        if isinstance(data.get("variants"), dict):
            variants = {k: v for k, v in data["variants"].items() if ("variants", k) not in broken}
            data["variants"] = variants or (data.pop("variants") and None)
        spec, _ = _validate(spec_model(registry), data, top, registry, [])
    names = registry.names("backend")
    if spec is not None and spec.backend not in ("auto", *names):
        hint = did_you_mean(spec.backend, names)
        message = f"unknown backend '{spec.backend}'{hint}; use auto or one of: {', '.join(names)}"
        issues.append(top.issue(("backend",), message, key=False))
    return spec


Setting = tuple[KeyPath, Any, Src]  # a run key path set by a sweep point, its value, its source


def _sweep(
    spec: Any, positions: Positions, top: Locator, issues: list[SpecIssue]
) -> tuple[list[tuple[list[Setting], list[str]]], dict[str, list[Any]]]:
    """The sweep's points, each its settings and name labels, and the sweep's axes.

    A key that addresses nothing a run has is an issue, and left out of the points."""
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
            keys[k] = tuple(segments)
            continue
        hint = did_you_mean(segments[0], RUN_KEYS) + (
            "; use seeds: [...] to replicate runs" if segments[0] in ("seed", "seeds") else ""
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
    return points, values


def _expand(
    spec: Any,
    raw: dict[str, Any],
    positions: Positions,
    file: str,
    registry: Registry,
    issues: list[SpecIssue],
) -> tuple[list[RunSpec], dict[str, list[Any]]]:
    """Variants x sweep points x seeds -> validated runs (issues collected, not raised)."""
    top, run = Locator(file, positions), run_model(registry)
    base = {k: raw[k] for k in RUN_KEYS if k in raw}
    seeds = spec.seeds if spec.seeds is not None else [spec.seed]
    variants = list(spec.variants or {})
    if variants:  # the base alone too, so a mistake every variant overrides still shows
        named = {k: v for k, v in base.items() if not (isinstance(v, dict) and "name" not in v)}
        _validate(run, named, top, registry, issues, partial=True)
    loss = base.get("loss")
    label = (
        loss.get("name") if isinstance(loss, dict) and isinstance(loss.get("name"), str) else "run"
    )
    drafts = [(v, v, merge(base, raw["variants"][v] or {})) for v in variants] or [
        (label, None, base)
    ]
    points, axes = _sweep(spec, positions, top, issues)
    n_runs = len(drafts) * len(points) * len(seeds)
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
        parts = [_plural(len(variants), "variant")] if len(variants) > 1 else []
        counts = " x ".join(
            [*parts, _plural(len(points), "sweep point"), _plural(len(seeds), "seed")]
        )
        message = f"the spec expands to {n_runs} runs ({counts}), more than max_runs "
        issues.append(
            top.issue((at,), f"{message}({spec.max_runs}); narrow the sweep or raise max_runs")
        )
        points, seeds = [([], [])], []  # still validate each variant, once
    runs: list[RunSpec] = []
    for label, variant, merged in drafts:
        for settings, labels in points:
            body = copy.deepcopy(merged)
            loc = Locator(file, positions, variant, {p: src for p, _, src in settings})
            try:
                for path, value, _ in settings:
                    set_path(body, [str(p) for p in path], value)
            except ValueError as exc:
                issues.append(loc.issue(path, str(exc)))
                continue
            valid, _ = _validate(run, body, loc, registry, issues)
            if valid is None or not _unambiguous(valid, registry, loc, issues):
                continue
            where = {".".join(map(str, p)): loc.issue(p, "", key=False) for p in _paths(body)}
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


_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def sorted_issues(issues: Sequence[SpecIssue], file: str) -> list[SpecIssue]:
    """Issues in file order, control characters escaped; the same place and key reported
    once (sweep points and runs repeat them)."""
    first: dict[tuple[str, int, int, str, str], SpecIssue] = {}
    more: dict[tuple[str, int, int, str, str], set[str]] = {}
    for issue in issues:
        where = (issue.file, issue.line, issue.column, issue.path, issue.message.split(", got ")[0])
        if first.setdefault(where, issue).message != issue.message:
            more.setdefault(where, set()).add(issue.message)
    out = [
        replace(
            i,
            path=i.path.translate(_CONTROL),
            message=(
                i.message + (f" (and {len(more[w])} more like it)" if w in more else "")
            ).translate(_CONTROL),
        )
        for w, i in first.items()
    ]
    return sorted(out, key=lambda i: (i.file != file, i.line, i.column, i.path, i.message))


def load_experiment(
    path: str | Path | Mapping[str, Any],
    overrides: Sequence[str] = (),
    registry: Registry | None = None,
) -> Experiment:
    """Read, validate and expand a spec file.

    Parameters
    ----------
    path : str, Path or mapping
        The YAML spec file, or the spec itself as a mapping of plain values (as the file
        would hold); a mapping's issues are named ``<spec>: key.path: message``.
    overrides : sequence of str
        ``--set`` overrides, ``"optimizer.lr=0.1"``; values are YAML (``"loss={name: svm}"``).
        Keys starting with ``variants.`` or ``sweep.`` address those sections.
    registry : Registry, optional
        Components to validate against; defaults to
        :func:`optlab._contract.plugin_manager.get_registry`.

    Returns
    -------
    Experiment
        One :class:`~optlab._spec.experiment.RunSpec` per run, in order variants x points x seeds.

    Raises
    ------
    SpecError
        With every issue found in the file and the overrides, each located.
    """
    if isinstance(path, Mapping):
        file, refused = "<spec>", list[SpecIssue]()
        raw = copy.deepcopy(dict(path))
        positions = {p: Src(file, 0, 0, 0, 0, ".".join(map(str, p))) for p in _paths(raw)}
        content = json.dumps(raw, sort_keys=True, default=repr).encode()
    else:
        file = str(path)
        content, text = _read(Path(path), file)
        raw, positions, refused = load_yaml(text, file)
    top = Locator(file, positions)
    if not isinstance(raw, dict):
        what = f"a spec is a mapping of keys (name, data, ...), got {describe_value(raw)}"
        raise SpecError([top.issue((), what)])
    issues = _apply_overrides(raw, positions, overrides)
    if registry is None:
        from optlab._contract.plugin_manager import get_registry

        registry = get_registry()
    spec = _structure(raw, top, registry, issues)
    runs, axes = (
        _expand(spec, raw, positions, file, registry, issues) if spec is not None else ([], {})
    )
    # a value the YAML layer refused (a tag) reads as null: not reported twice
    lines = {(i.file, i.line) for i in refused}
    issues = refused + [i for i in issues if (i.file, i.line) not in lines]
    if issues or spec is None:
        raise SpecError(sorted_issues(issues, file))
    digest = hashlib.sha256(content)
    for override in overrides:
        digest.update(b"\0--set " + override.encode("utf-8", errors="replace"))
    return Experiment(
        name=spec.name,
        description=spec.description,
        source=file,
        runs=tuple(runs),
        tracking=spec.tracking,
        axes=axes,
        spec_hash=digest.hexdigest(),
        raw=raw,
    )


def _text(spec: ComponentSpec) -> str:
    params = ", ".join(f"{k}={v}" for k, v in spec.params.model_dump(mode="json").items())
    return f"{spec.name}({params})" if params else spec.name


def describe_plan(experiment: Experiment) -> list[str]:
    """Lines for ``optlab validate``: run count, axes, the plugin behind each component, and
    each run with its components (data options that differ from the defaults in brackets).

    Example line::

        svm: seed=0 data=digits loss=svm(margin=1.0) regularizer=l2(strength=0.0001, ...)
    """
    runs = experiment.runs
    lines = [f"experiment '{experiment.name}': {_plural(len(runs), 'run')}"]
    lines += [f"  {experiment.description}"] if experiment.description else []
    axes = [f"{k} = [{', '.join(map(str, v))}]" for k, v in experiment.axes.items()]
    lines += ["axes: " + "; ".join(axes)] if axes else []
    parts = (p for r in runs for p in (r.dataset, r.loss, *r.regularizers, r.optimizer))
    providers = {f"{p.kind} {p.name} from {p.record.provider or '?'}": None for p in parts}
    lines.append("components: " + "; ".join(providers))
    defaults = DataOptions().model_dump(mode="json")
    for run in runs:
        options = run.data.model_dump(mode="json").items()
        changed = ", ".join(f"{k}={v}" for k, v in options if defaults[k] != v)
        data = _text(run.dataset) + (f" [{changed}]" if changed else "")
        regs = "+".join(map(_text, run.regularizers)) or "none"
        lines.append(
            f"{run.name}: seed={run.seed} data={data} loss={_text(run.loss)} "
            f"regularizer={regs} optimizer={_text(run.optimizer)}"
        )
    return lines
