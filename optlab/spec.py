"""Experiment specs: YAML file -> validated :class:`~optlab.config.Experiment`.

A spec names a base run (``data``, ``loss``, ``regularizer``, ``optimizer``, ``checks``) and
how it varies: named ``variants`` (partial overrides), a ``sweep`` (grid or random over dotted
keys) and ``seeds`` (replicates); the runs are their product. See the README for the format.

Validation has two phases, and every issue of a file is reported at once, in one
:class:`~optlab.errors.SpecError`, each as ``FILE:LINE:COL: key.path: message``:

1. structure: the top level, variants and sweep against pydantic models (unknown keys are
   errors, with "did you mean");
2. components: each run's ``data``/``loss``/``regularizer``/``optimizer`` against the params
   model of the plugin providing that name (unknown names get "did you mean" too).

Public entry points: :func:`load_experiment`, :func:`describe_plan`; the JSON Schema of the
format is :func:`optlab.schema.json_schema`.
"""

from __future__ import annotations

import copy
import hashlib
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from optlab._spec_expand import (
    draw_random_points,
    grid_points,
    grid_size,
    merge_into,
    point_label,
    rebase,
    run_name,
    set_path,
    split_dotted,
    unique_names,
)
from optlab._spec_issues import Locator, pydantic_issues
from optlab._spec_models import DATA_OPTION_KEYS, RUN_KEYS, SpecModel, SweepModel
from optlab._yaml_positions import (
    KeyPath,
    Positions,
    Src,
    describe_value,
    load_yaml_text,
)
from optlab.components import ComponentKind
from optlab.config import (
    ChecksOptions,
    ComponentSpec,
    DataOptions,
    Experiment,
    RunSpec,
    TrackingOptions,
)
from optlab.errors import PluginError, SpecError, SpecIssue
from optlab.registry import Registry, did_you_mean

__all__ = ["MAX_FILE_BYTES", "describe_plan", "load_experiment"]

#: Spec files larger than this are refused (a spec is a page of YAML).
MAX_FILE_BYTES = 1_000_000
_SET = "--set"


# --------------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------------


def _read(path: Path, file: str) -> tuple[bytes, str]:
    """The file's bytes and text; :class:`SpecError` for every way reading can fail."""

    def fail(message: str, line: int = 0, col: int = 0) -> SpecError:
        return SpecError([SpecIssue(file, line, col, "", message)])

    try:
        st = path.stat()
    except FileNotFoundError:
        raise fail("no such file; check the path") from None
    except PermissionError:
        raise fail("cannot be read: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        inside = sorted(p.name for p in path.glob("*.y*ml"))[:5]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise fail(f"is a directory, not a spec file; name a .yaml file{hint}")
    if not stat.S_ISREG(st.st_mode):
        raise fail("is not a regular file; name a .yaml spec file")
    if st.st_size > MAX_FILE_BYTES:
        raise fail(f"is {st.st_size} bytes, more than the {MAX_FILE_BYTES} a spec may have")
    try:
        data = path.read_bytes()
    except PermissionError:
        raise fail("cannot be read: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start
        line_start = data.rfind(b"\n", 0, start) + 1
        line = data.count(b"\n", 0, start) + 1
        col = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
        raise fail(
            f"is not valid UTF-8 (byte 0x{data[start]:02x}); save the file as UTF-8", line, col
        ) from None
    return data, text


# --------------------------------------------------------------------------------------------
# --set overrides
# --------------------------------------------------------------------------------------------


def _override_segments(key: str) -> list[str] | None:
    """Dotted segments of an override key; a sweep key stays one segment (it has dots)."""
    parts = split_dotted(key)
    if parts is None:
        return None
    if parts[:2] == ["sweep", "grid"] and len(parts) > 2:
        return [*parts[:2], ".".join(parts[2:])]
    if parts[:3] == ["sweep", "random", "params"] and len(parts) > 3:
        return [*parts[:3], ".".join(parts[3:])]
    return parts


def _apply_overrides(
    raw: dict[str, Any], positions: Positions, overrides: Sequence[str]
) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for text in overrides:
        note = f" (in --set {text})"
        key, sep, value_text = text.partition("=")
        segments = _override_segments(key) if sep else None
        src = Src(_SET, 0, 0, 0, 0, key.strip(), note)
        if segments is None:
            issues.append(
                SpecIssue(_SET, 0, 0, "", f"expected KEY.PATH=VALUE, e.g. optimizer.lr=0.1{note}")
            )
            continue
        loaded = load_yaml_text(value_text, _SET, allow_empty=True)
        if loaded.issues:
            issues += [
                replace(i, path=key.strip(), message=i.message + note) for i in loaded.issues
            ]
            continue
        offset = 2 if segments[0] == "variants" else (99 if segments[0] == "sweep" else 0)
        problem = set_path(raw, positions, segments, loaded.data, src, offset)
        if problem:
            issues.append(SpecIssue(_SET, 0, 0, key.strip(), problem + note))
    return issues


# --------------------------------------------------------------------------------------------
# Phase 2: components of one run
# --------------------------------------------------------------------------------------------


@dataclass
class _Draft:
    """One run before its components are validated."""

    label: str
    variant: str | None
    body: dict[str, Any]
    locator: Locator
    point: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)


@dataclass
class _Parts:
    dataset: ComponentSpec
    data: DataOptions
    loss: ComponentSpec
    optimizer: ComponentSpec
    regularizers: tuple[ComponentSpec, ...]
    checks: ChecksOptions


def _validate_params(
    model: type[BaseModel],
    params: dict[str, Any],
    path: KeyPath,
    loc: Locator,
    issues: list[SpecIssue],
    extra_keys: Sequence[str] = (),
) -> Any:
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        issues += pydantic_issues(exc, params, model, path, loc, extra_keys=extra_keys)
        return None


def _component(
    kind: ComponentKind,
    value: Any,
    path: KeyPath,
    loc: Locator,
    registry: Registry,
    issues: list[SpecIssue],
) -> ComponentSpec | None:
    """Validate one component mapping ``{name: ..., **params}``."""
    example = {"loss": "svm", "optimizer": "sgd", "regularizer": "l2", "dataset": "digits"}[kind]
    if not isinstance(value, dict):
        hint = f" like {{name: {value}, ...}}" if isinstance(value, str) else ""
        issues.append(
            loc.issue(
                path,
                f"must be a mapping{hint or f' with a name, e.g. {{name: {example}}}'}, "
                f"got {describe_value(value)}",
                key=False,
            )
        )
        return None
    name = value.get("name")
    available = ", ".join(registry.names(kind)) or "none installed"
    if "name" not in value:
        issues.append(loc.issue(path, f"missing required key 'name' (available: {available})"))
        return None
    if not isinstance(name, str):
        issues.append(
            loc.issue(
                (*path, "name"),
                f"must be a {kind} name (available: {available}), got {describe_value(name)}",
                key=False,
            )
        )
        return None
    try:
        record = registry.get(kind, name)
    except PluginError as exc:
        issues.append(loc.issue((*path, "name"), str(exc), key=False))
        return None
    params = {k: v for k, v in value.items() if k != "name" and k not in _skip_keys(kind)}
    extra = ("name", *sorted(DATA_OPTION_KEYS)) if kind == "dataset" else ("name",)
    instance = _validate_params(record.params, params, path, loc, issues, extra)
    if instance is None:
        return None
    return ComponentSpec(kind, name, instance, record)


def _skip_keys(kind: ComponentKind) -> frozenset[str]:
    return DATA_OPTION_KEYS if kind == "dataset" else frozenset()


def _regularizers(
    value: Any, loc: Locator, registry: Registry, issues: list[SpecIssue]
) -> tuple[ComponentSpec, ...] | None:
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return ()
    if isinstance(value, dict):
        entries: list[tuple[KeyPath, Any]] = [(("regularizer",), value)]
    elif isinstance(value, list):
        entries = [(("regularizer", i), v) for i, v in enumerate(value)]
    else:
        issues.append(
            loc.issue(
                ("regularizer",),
                "must be a mapping like {name: l2, strength: 0.001}, a list of them, or none; "
                f"got {describe_value(value)}",
                key=False,
            )
        )
        return None
    out: list[ComponentSpec] = []
    ok = True
    for path, entry in entries:
        spec = _component("regularizer", entry, path, loc, registry, issues)
        ok = ok and spec is not None
        if spec is not None:
            out.append(spec)
    return tuple(out) if ok else None


def _parts(
    body: dict[str, Any],
    loc: Locator,
    registry: Registry,
    issues: list[SpecIssue],
    broken: set[str],
    *,
    partial: bool = False,
) -> _Parts | None:
    """Validate every component of one run; ``None`` (with issues) when any is invalid.

    ``partial`` checks only what is present (the base of a spec whose variants complete it).
    """
    before = len(issues)
    found: dict[str, Any] = {}
    for key, kind in (("data", "dataset"), ("loss", "loss"), ("optimizer", "optimizer")):
        if key in broken or (partial and body.get(key) is None):
            continue
        if body.get(key) is None:
            names = ", ".join(registry.names(cast(ComponentKind, kind))) or "none installed"
            issues.append(loc.issue((), f"missing required key '{key}' (available: {names})"))
            continue
        found[key] = _component(cast(ComponentKind, kind), body[key], (key,), loc, registry, issues)
    data_opts = None
    if isinstance(body.get("data"), dict) and "data" not in broken:
        opts = {k: v for k, v in body["data"].items() if k in DATA_OPTION_KEYS}
        data_opts = _validate_params(DataOptions, opts, ("data",), loc, issues)
    regs = (
        None
        if "regularizer" in broken
        else _regularizers(body.get("regularizer"), loc, registry, issues)
    )
    checks = _checks(body.get("checks"), loc, issues) if "checks" not in broken else None
    if len(issues) > before or broken or partial:
        return None
    assert data_opts is not None and regs is not None and checks is not None
    return _Parts(found["data"], data_opts, found["loss"], found["optimizer"], regs, checks)


def _checks(value: Any, loc: Locator, issues: list[SpecIssue]) -> ChecksOptions | None:
    if value is None or value is True:
        return ChecksOptions()
    if value is False:
        return ChecksOptions(initial_loss="off", gradient="off")
    if not isinstance(value, dict):
        issues.append(
            loc.issue(("checks",), f"must be a mapping or false, got {describe_value(value)}")
        )
        return None
    return cast(
        ChecksOptions | None, _validate_params(ChecksOptions, value, ("checks",), loc, issues)
    )


def _resolved(seed: int, parts: _Parts) -> dict[str, Any]:
    """The whole run as a nested plain dict, every default filled in."""
    return {
        "seed": seed,
        "data": {
            "name": parts.dataset.name,
            **parts.data.model_dump(mode="json"),
            **parts.dataset.params.model_dump(mode="json"),
        },
        "loss": parts.loss.as_dict(),
        "regularizer": [r.as_dict() for r in parts.regularizers],
        "optimizer": parts.optimizer.as_dict(),
        "checks": parts.checks.model_dump(mode="json"),
    }


# --------------------------------------------------------------------------------------------
# Phase 1 and expansion
# --------------------------------------------------------------------------------------------


def _structure(
    raw: dict[str, Any], loc: Locator, issues: list[SpecIssue]
) -> tuple[SpecModel | None, set[tuple[str | int, ...]]]:
    """Validate the top level; return the model (when valid) and the broken key paths."""
    try:
        return SpecModel.model_validate(raw), set()
    except ValidationError as exc:
        found = pydantic_issues(exc, raw, SpecModel, (), loc)
        issues += found
        broken: set[tuple[str | int, ...]] = set()
        for err in exc.errors():
            loc_ = err["loc"]
            if loc_ and loc_[0] == "variants" and len(loc_) > 1:
                broken.add(("variants", loc_[1]))
            elif loc_:
                broken.add((loc_[0],))
        return None, broken


def _clean(raw: dict[str, Any], broken: set[tuple[str | int, ...]]) -> SpecModel | None:
    """The top level without its broken parts, re-validated (``None`` if still invalid)."""
    data = {k: v for k, v in raw.items() if (k,) not in broken}
    if isinstance(data.get("variants"), dict):
        data["variants"] = {
            k: v for k, v in data["variants"].items() if ("variants", k) not in broken
        } or None
    data.setdefault("name", "unnamed")
    try:
        return SpecModel.model_validate(data)
    except ValidationError:
        return None


def _check_sweep(sweep: SweepModel, loc: Locator, issues: list[SpecIssue]) -> bool:
    """Check what the models cannot: something to sweep, valid and distinct dotted keys."""
    ok = True
    keys: list[tuple[str, KeyPath]] = []
    if sweep.grid is not None:
        keys += [(k, ("sweep", "grid", k)) for k in sweep.grid]
        if not sweep.grid:
            issues.append(loc.issue(("sweep", "grid"), "is empty: the sweep expands to no runs"))
            ok = False
        for k, values in sweep.grid.items():
            if not values:
                issues.append(
                    loc.issue(
                        ("sweep", "grid", k),
                        f"'{k}' has no values: the sweep expands to no runs",
                        key=False,
                    )
                )
                ok = False
    if sweep.random is not None:
        keys += [(k, ("sweep", "random", "params", k)) for k in sweep.random.params]
        if not sweep.random.params:
            issues.append(
                loc.issue(
                    ("sweep", "random", "params"),
                    "is empty: give at least one dotted key and its distribution",
                )
            )
            ok = False
    if sweep.grid is None and sweep.random is None:
        issues.append(
            loc.issue(("sweep",), "has neither 'grid' nor 'random': the sweep expands to no runs")
        )
        ok = False
    seen: dict[str, KeyPath] = {}
    for k, path in keys:
        segments = split_dotted(k)
        if segments is None:
            issues.append(loc.issue(path, f"'{k}' is not a dotted key like optimizer.lr"))
            ok = False
        elif segments[0] not in RUN_KEYS:
            hint = did_you_mean(segments[0], RUN_KEYS)
            extra = (
                "; use seeds: [...] to replicate runs" if segments[0] in ("seed", "seeds") else ""
            )
            issues.append(
                loc.issue(
                    path,
                    f"sweep keys start with one of {', '.join(RUN_KEYS)}, "
                    f"got '{segments[0]}'{hint}{extra}",
                )
            )
            ok = False
        elif k in seen:
            issues.append(loc.issue(path, f"'{k}' is swept twice (in grid and in random)"))
            ok = False
        seen[k] = path
    return ok


def _expand(
    spec: SpecModel,
    raw: dict[str, Any],
    positions: Positions,
    file: str,
    registry: Registry,
    issues: list[SpecIssue],
    broken: set[tuple[str | int, ...]],
) -> tuple[list[RunSpec], dict[str, list[Any]]]:
    """Variants x sweep points x seeds -> validated runs (issues collected, not raised)."""
    top = Locator(file, positions)
    broken_keys = {p[0] for p in broken if len(p) == 1 and isinstance(p[0], str)}
    base = {k: copy.deepcopy(raw[k]) for k in RUN_KEYS if k in raw and k not in broken_keys}
    base_pos = {p: s for p, s in positions.items() if not p or p[0] in RUN_KEYS}
    seeds = spec.seeds if spec.seeds is not None else [spec.seed]
    multi_seed = len(seeds) > 1

    # variants
    variant_names = list(spec.variants or {})
    drafts: list[_Draft] = []
    prefix = "run"
    base_loss = base.get("loss")
    if isinstance(base_loss, dict) and isinstance(base_loss.get("name"), str):
        prefix = base_loss["name"]
    if variant_names:
        # the base is checked on its own too, so a mistake every variant overrides still shows
        _parts(base, Locator(file, base_pos), registry, issues, broken_keys, partial=True)
        for vname in variant_names:
            override = raw["variants"][vname] or {}
            body = copy.deepcopy(base)
            pos = dict(base_pos)
            vpath: KeyPath = ("variants", vname)
            pos[()] = positions.get(vpath, positions[()])
            merge_into(body, pos, override, rebase(positions, vpath, ()))
            drafts.append(_Draft(vname, vname, body, Locator(file, pos)))
    else:
        drafts.append(_Draft(prefix, None, base, Locator(file, base_pos)))
    # sweep
    points: list[tuple[dict[str, Any], list[str]]] = [({}, [])]
    axes: dict[str, list[Any]] = {}
    n_points = 1
    sweep_ok = True
    sweep_src: dict[str, Src] = {}
    if spec.sweep is not None and ("sweep",) not in broken:
        sweep_ok = _check_sweep(spec.sweep, top, issues)
        grid = spec.sweep.grid or {}
        random = spec.sweep.random
        n_points = grid_size(grid) * (random.trials if random else 1)
        if random:
            for k in random.params:
                sweep_src[k] = top.find(("sweep", "random", "params", k))[0] or positions[()]
    n_runs = max(len(variant_names), 1) * n_points * len(seeds)
    use_sweep = spec.sweep is not None and ("sweep",) not in broken and sweep_ok
    too_many = n_runs > spec.max_runs
    if too_many:
        candidates: list[tuple[bool, KeyPath]] = [
            (spec.sweep is not None, ("sweep",)),
            ("max_runs" in raw, ("max_runs",)),
            (bool(variant_names), ("variants",)),
            (True, ("seeds",)),
        ]
        at = next(p for cond, p in candidates if cond)
        counts = [
            _plural(n, what)
            for n, what in ((len(variant_names), "variant"), (n_points, "sweep point"))
            if n > 1 or what == "sweep point"
        ]
        counts.append(_plural(len(seeds), "seed"))
        issues.append(
            top.issue(
                at,
                f"the spec expands to {n_runs} runs ({' x '.join(counts)}), more than "
                f"max_runs ({spec.max_runs}); narrow the sweep or raise max_runs",
            )
        )
        use_sweep = False  # still validate the variants, once each
    if use_sweep:
        assert spec.sweep is not None
        grid = spec.sweep.grid or {}
        random = spec.sweep.random
        drawn = draw_random_points(random.trials, random.params, spec.seed) if random else [{}]
        points = []
        for g in grid_points(grid):
            for r in drawn:
                labels = [point_label(k, v) for k, v in g.items()]
                labels += [point_label(k, v, short=True) for k, v in r.items()]
                points.append(({**g, **r}, labels))
        axes.update({k: list(v) for k, v in grid.items()})
        if random:
            axes.update({k: [d[k] for d in drawn] for k in random.params})

    # every (variant, point): merge, set, validate; then replicate over seeds
    runs: list[RunSpec] = []
    names: list[str] = []
    for draft in drafts:
        for point, labels in points:
            body = copy.deepcopy(draft.body)
            pos = dict(draft.locator.positions)
            failed = False
            for key, value in point.items():
                src = sweep_src.get(key) or _grid_src(positions, key, value, spec.sweep)
                problem = set_path(body, pos, key.split("."), value, src)
                if problem:
                    issues.append(_issue_at_src(src, problem))
                    failed = True
            if failed:
                continue
            parts = _parts(body, Locator(file, pos), registry, issues, broken_keys)
            if parts is None:
                continue
            for seed in seeds if not too_many else ():
                names.append(run_name(draft.label, labels, seed if multi_seed else None))
                runs.append(
                    RunSpec(
                        name="",
                        variant=draft.variant,
                        seed=seed,
                        dataset=parts.dataset,
                        data=parts.data,
                        loss=parts.loss,
                        optimizer=parts.optimizer,
                        regularizers=parts.regularizers,
                        checks=parts.checks,
                        backend=spec.backend,
                        point=dict(point),
                        resolved=_resolved(seed, parts),
                    )
                )
    if too_many:
        return [], {}
    runs = [replace(r, name=n) for r, n in zip(runs, unique_names(names), strict=True)]
    if variant_names:
        axes = {"variant": variant_names, **axes}
    if spec.seeds is not None:
        axes["seed"] = list(seeds)
    return runs, axes


def _grid_src(positions: Positions, key: str, value: Any, sweep: SweepModel | None) -> Src:
    """Where a grid value was written: the list item, named by its grid key."""
    values = (sweep.grid or {}).get(key, []) if sweep else []
    index = next((i for i, v in enumerate(values) if v is value), None)
    if index is None:
        index = next((i for i, v in enumerate(values) if v == value), None)
    src = positions.get(("sweep", "grid", key, index)) if index is not None else None
    src = src or positions.get(("sweep", "grid", key)) or positions[()]
    return replace(src, path=f"sweep.grid.{key}")


def _issue_at_src(src: Src, message: str) -> SpecIssue:
    """An issue at a source position (its key), named by its source path."""
    return SpecIssue(src.file, src.line, src.column, src.path, message + src.note)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def _one_line(text: str) -> str:
    """Control characters escaped, so every issue stays on one line."""
    return text.translate(_CONTROL)


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _sorted(issues: list[SpecIssue], file: str) -> list[SpecIssue]:
    """Issues in file order; the same place and key reported once (sweep points repeat)."""
    first: dict[tuple[str, int, int, str, str], SpecIssue] = {}
    more: dict[tuple[str, int, int, str, str], set[str]] = {}
    for issue in issues:
        what = issue.message.split(", got ")[0]
        where = (issue.file, issue.line, issue.column, issue.path, what)
        if where not in first:
            first[where] = issue
            more[where] = set()
        elif issue.message != first[where].message:
            more[where].add(issue.message)
    out = [
        replace(
            i,
            path=_one_line(i.path),
            message=_one_line(
                i.message + (f" (and {len(more[w])} more like it)" if more[w] else "")
            ),
        )
        for w, i in first.items()
    ]
    return sorted(out, key=lambda i: (i.file != file, i.line, i.column, i.path, i.message))


def load_experiment(
    path: str | Path,
    overrides: Sequence[str] = (),
    registry: Registry | None = None,
) -> Experiment:
    """Read, validate and expand a spec file.

    Parameters
    ----------
    path : str or Path
        The YAML spec file.
    overrides : sequence of str
        ``--set`` overrides, ``"optimizer.lr=0.1"``; values are YAML (``"loss={name: svm}"``).
        Keys starting with ``variants.`` or ``sweep.`` address those sections.
    registry : Registry, optional
        Components to validate against; defaults to
        :func:`optlab.plugin_manager.get_registry`.

    Returns
    -------
    Experiment
        One :class:`~optlab.config.RunSpec` per run, in order variants x points x seeds.

    Raises
    ------
    SpecError
        With every issue found in the file and the overrides, each located.
    """
    file = str(path)
    content, text = _read(Path(path), file)
    loaded = load_yaml_text(text, file)
    issues = list(loaded.issues)
    if loaded.data is None:
        raise SpecError(issues)
    raw = loaded.data
    positions = loaded.positions
    top = Locator(file, positions)
    if not isinstance(raw, dict):
        raise SpecError(
            [
                top.issue(
                    (),
                    "a spec is a mapping of keys (name, data, loss, optimizer, ...), "
                    f"got {describe_value(raw)}",
                )
            ]
        )
    bad_lines = {(i.file, i.line) for i in issues}
    issues += _apply_overrides(raw, positions, overrides)
    if registry is None:
        from optlab.plugin_manager import get_registry

        registry = get_registry()

    spec, broken = _structure(raw, top, issues)
    if spec is None:
        spec = _clean(raw, broken)
    if spec is not None and ("backend",) not in broken:
        _check_backend(spec.backend, top, registry, issues)
    runs: list[RunSpec] = []
    axes: dict[str, list[Any]] = {}
    if spec is not None:
        runs, axes = _expand(spec, raw, positions, file, registry, issues, broken)
    if spec is not None and not runs and not issues:
        issues.append(top.issue((), "the spec expands to no runs"))  # pragma: no cover
    # a value the YAML layer already rejected (bad tag, bad scalar) is not reported twice
    issues = [i for i in issues if i in loaded.issues or (i.file, i.line) not in bad_lines]
    if issues:
        raise SpecError(_sorted(issues, file))
    assert spec is not None
    digest = hashlib.sha256(content)
    for text_ in overrides:
        digest.update(b"\0--set " + text_.encode("utf-8", errors="replace"))
    return Experiment(
        name=spec.name,
        description=spec.description,
        source=file,
        runs=tuple(runs),
        tracking=spec.tracking or TrackingOptions(),
        axes=axes,
        spec_hash=digest.hexdigest(),
        raw=raw,
    )


def _check_backend(name: str, top: Locator, registry: Registry, issues: list[SpecIssue]) -> None:
    """``backend`` names ``auto`` or a registered backend (whether it runs on this machine is
    checked when a run is built)."""
    names = registry.names("backend")
    if name != "auto" and name not in names:
        issues.append(
            top.issue(
                ("backend",),
                f"unknown backend '{name}'{did_you_mean(name, names)}; "
                f"use auto or one of: {', '.join(names)}",
            )
        )


def _component_text(spec: ComponentSpec, *, skip: frozenset[str] = frozenset()) -> str:
    params = spec.params.model_dump(mode="json")
    inner = ", ".join(f"{k}={v}" for k, v in params.items() if k not in skip)
    return f"{spec.name}({inner})" if inner else spec.name


def describe_plan(experiment: Experiment) -> list[str]:
    """Lines for ``optlab validate``: run count, axes, each run and its components.

    Example line::

        svm: seed=0 data=digits loss=svm(margin=1.0) regularizer=l2(strength=0.0001, ...)
    """
    n = len(experiment.runs)
    lines = [f"experiment '{experiment.name}': {n} run{'s' if n != 1 else ''}"]
    if experiment.description:
        lines.append(f"  {experiment.description}")
    if experiment.axes:
        lines.append(
            "axes: "
            + "; ".join(
                f"{k} = [{', '.join(str(v) for v in vals)}]" for k, vals in experiment.axes.items()
            )
        )
    defaults = DataOptions().model_dump(mode="json")
    for run in experiment.runs:
        opts = run.data.model_dump(mode="json")
        changed = ", ".join(f"{k}={v}" for k, v in opts.items() if defaults[k] != v)
        data = _component_text(run.dataset)
        if changed:
            data += f" [{changed}]"
        regs = "+".join(_component_text(r) for r in run.regularizers) or "none"
        lines.append(
            f"{run.name}: seed={run.seed} data={data} loss={_component_text(run.loss)} "
            f"regularizer={regs} optimizer={_component_text(run.optimizer)}"
        )
    return lines
