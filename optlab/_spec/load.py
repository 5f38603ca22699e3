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

import functools
import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import Any

from optlab._contract.registry import PluginInfo, Registry, did_you_mean
from optlab._errors import SpecError, SpecIssue
from optlab._spec.expand import (
    key_paths,
    names_first,
    override_path,
    plural,
    set_path,
    sweep_head,
)
from optlab._spec.experiment import ComponentSpec, DataOptions, Experiment
from optlab._spec.issues import Locator, validate
from optlab._spec.models import RUN_KEYS, component_keys, spec_model
from optlab._spec.reader import Positions, Src, describe_value, load_yaml
from optlab._spec.runs import expand_runs

__all__ = ["MAX_FILE_BYTES", "describe_plan", "load_experiment", "plain_data", "sorted_issues"]

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


def _apply_overrides(
    raw: dict[str, Any],
    positions: Positions,
    overrides: Sequence[str],
    registry: Registry,
    label: str = _SET,
) -> list[SpecIssue]:
    """Set each ``KEY.PATH=VALUE`` in the document (values are YAML); what an override sets
    is located at it. A sweep key stays one segment (``sweep.grid.optimizer.lr``). The
    overrides that change a component's name go first, so that their order does not matter
    (:func:`~optlab._spec.expand.names_first`). ``label`` names them in issues (``--set``, or
    the Python API's ``overrides``)."""
    issues: list[SpecIssue] = []
    parsed: list[tuple[str, str, list[str], int, Any]] = []
    for text in overrides:
        note = f" (in {label} {text})"
        key, sep, value_text = (part.strip() for part in text.partition("="))
        segments = override_path(key) if sep else None
        if segments is None:
            issues.append(
                SpecIssue(label, 0, 0, "", f"expected KEY.PATH=VALUE, e.g. optimizer.lr=0.1{note}")
            )
            continue
        head = sweep_head(segments)
        try:
            value, _, bad = load_yaml(value_text, label, allow_empty=True)
        except SpecError as exc:
            bad = exc.issues
        if bad:
            issues += [replace(i, path=key, message=i.message + note) for i in bad]
            continue
        offset = 2 if segments[0] == "variants" else head or 0
        parsed.append((text, key, segments, offset, value))
    keys = functools.partial(component_keys, registry)
    for text, key, segments, offset, value in sorted(
        parsed, key=lambda p: not names_first(p[2][p[3] :], p[4])
    ):
        note = f" (in {label} {text})"
        unknown = _new_variant(raw, segments, value, label)
        if unknown:
            issues.append(SpecIssue(label, 0, 0, "", unknown + note))
            continue
        try:
            path = set_path(raw, segments, value, offset, keys)
        except ValueError as exc:
            issues.append(SpecIssue(label, 0, 0, key, str(exc) + note))
            continue
        for sub in [*(path[:n] for n in range(1, len(path))), *key_paths(value, path)]:
            dotted = ".".join(map(str, sub))
            positions[sub] = Src(label, 0, 0, 0, 0, dotted, note)
    return issues


def plain_data(value: Any) -> Any:
    """Python values as a spec file would hold them: mappings as dicts, tuples and numpy arrays
    as lists, numpy scalars as Python numbers, paths as strings (a notebook's
    ``np.logspace(-4, -1, 4)`` as a sweep, ``np.int64(3)`` as a seed); anything else as it is,
    for validation to report. New containers: ``value`` is not changed."""
    if isinstance(value, Mapping):
        return {key: plain_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(item) for item in value]
    if isinstance(value, PathLike):
        return os.fspath(value)
    if type(value).__module__ == "numpy" and callable(getattr(value, "tolist", None)):
        return plain_data(value.tolist())
    return value


def _new_variant(raw: dict[str, Any], segments: Sequence[str], value: Any, label: str) -> str:
    """Why a ``--set`` (or what ``label`` names: the Python API's ``overrides``) may not set
    ``variants...`` (a variant the spec does not have: a typo would add a run), or ``""``."""
    if segments[0] != "variants":
        return ""
    have = list(raw["variants"]) if isinstance(raw.get("variants"), dict) else []
    named = segments[1:2] if len(segments) > 1 else list(value) if isinstance(value, dict) else []
    for name in named:
        if name not in have:
            hint = did_you_mean(name, have) or (
                f" (the spec's are {', '.join(have)})" if have else " (the spec has none)"
            )
            spec = "the file" if label == _SET else "the spec"
            return (
                f"no variant '{name}'{hint}; {label} changes existing variants (add one in {spec})"
            )
    return ""


def _swept_over(spec: Any, overrides: Sequence[str], label: str) -> list[SpecIssue]:
    """The overrides of a run's key (in the base or a variant) that the sweep sets in every
    run: their value would never be used (``--set optimizer.lr=0.01`` under a sweep of
    ``optimizer.lr``)."""
    sweep = spec.sweep
    if sweep is None:
        return []
    swept = [*(sweep.grid or {}), *(sweep.random.params if sweep.random else {})]
    issues = []
    for text in overrides:
        key = text.partition("=")[0].strip()
        segments = override_path(key) or [""]
        run_key = ".".join(segments[2:] if segments[0] == "variants" else segments)
        hit = next((k for k in swept if run_key == k or run_key.startswith(k + ".")), None)
        if segments[0] != "sweep" and hit is not None:
            message = (
                f"the sweep sets {hit} in every run, so this value would never be used; "
                f"change the sweep's values for {hit} instead"
            )
            issues.append(SpecIssue(label, 0, 0, key, f"{message} (in {label} {text})"))
    return issues


# --------------------------------------------------------------------------------------------
# Validation and expansion
# --------------------------------------------------------------------------------------------


def _structure(
    raw: dict[str, Any], top: Locator, registry: Registry, issues: list[SpecIssue]
) -> Any:
    """The top level, run keys aside (each run is validated whole), or ``None``. A broken
    key or variant is left out, so that the runs are still checked."""
    data = {k: v for k, v in raw.items() if k not in RUN_KEYS}
    spec, broken = validate(spec_model(registry), data, top, registry, issues)
    if broken:
        data = {"name": "unnamed"} | {k: v for k, v in data.items() if (k,) not in broken}
        if isinstance(data.get("variants"), dict):
            variants = {k: v for k, v in data["variants"].items() if ("variants", k) not in broken}
            data["variants"] = variants or (data.pop("variants") and None)
        spec, _ = validate(spec_model(registry), data, top, registry, [])
    names = registry.names("backend")
    if spec is not None and spec.backend not in ("auto", *names):
        hint = did_you_mean(spec.backend, names)
        message = f"unknown backend '{spec.backend}'{hint}; use auto or one of: {', '.join(names)}"
        issues.append(top.issue(("backend",), message, key=False))
    return spec


_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}


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
    *,
    overrides_label: str = _SET,
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
    overrides_label : str
        What the overrides' issues are named by (``--set``; the Python API's ``overrides``).

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
        raw = plain_data(path)
        positions = {p: Src(file, 0, 0, 0, 0, ".".join(map(str, p))) for p in key_paths(raw)}
        try:
            content = json.dumps(raw, sort_keys=True, default=repr).encode()
        except TypeError:  # a key that is no string (validation says where): not sortable
            content = repr(raw).encode()
    else:
        file = str(path)
        content, text = _read(Path(path), file)
        raw, positions, refused = load_yaml(text, file)
    top = Locator(file, positions, overrides_label=overrides_label)
    if not isinstance(raw, dict):
        what = f"a spec is a mapping of keys (name, data, ...), got {describe_value(raw)}"
        raise SpecError([top.issue((), what)])
    if registry is None:
        from optlab._contract.plugin_manager import get_registry

        registry = get_registry()
    issues = _apply_overrides(raw, positions, overrides, registry, overrides_label)
    spec = _structure(raw, top, registry, issues)
    if spec is not None:
        issues += _swept_over(spec, overrides, overrides_label)
    runs, axes = (
        expand_runs(spec, raw, positions, file, registry, issues, overrides_label)
        if spec is not None
        else ([], {})
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


def _value(value: Any) -> str:
    """A value of the plan as a spec writes it: ``null``, not Python's ``None`` (which a spec
    reads as the string 'None'), and mappings and lists in YAML's flow style."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    return str(value)


def _text(spec: ComponentSpec) -> str:
    params = ", ".join(f"{k}={_value(v)}" for k, v in spec.params.model_dump(mode="json").items())
    return f"{spec.name}({params})" if params else spec.name


def describe_plan(
    experiment: Experiment, plugins: Mapping[str, PluginInfo] | None = None
) -> list[str]:
    """Lines for ``optlab validate``: run count, axes, the plugin behind each component (with
    its distribution and version, where ``plugins`` - the registry's - knows it), and each run
    with its components (data options that differ from the defaults in brackets).

    Example line::

        svm: seed=0 data=digits loss=svm(margin=1.0) regularizer=l2(strength=0.0001, ...)
    """
    runs = experiment.runs
    lines = [f"experiment '{experiment.name}': {plural(len(runs), 'run')}"]
    lines += [f"  {experiment.description}"] if experiment.description else []
    axes = [f"{k} = [{', '.join(map(str, v))}]" for k, v in experiment.axes.items()]
    lines += ["axes: " + "; ".join(axes)] if axes else []
    parts = (p for r in runs for p in (r.dataset, r.loss, *r.regularizers, r.optimizer))
    known = plugins or {}

    def source(provider: str) -> str:
        return known[provider].label if provider in known else provider or "?"

    providers = {f"{p.kind} {p.name} from {source(p.record.provider)}": None for p in parts}
    lines.append("components: " + "; ".join(providers))
    defaults = DataOptions().model_dump(mode="json")
    for run in runs:
        options = run.data.model_dump(mode="json").items()
        changed = ", ".join(f"{k}={_value(v)}" for k, v in options if defaults[k] != v)
        data = _text(run.dataset) + (f" [{changed}]" if changed else "")
        regs = "+".join(map(_text, run.regularizers)) or "none"
        lines.append(
            f"{run.name}: seed={run.seed} data={data} loss={_text(run.loss)} "
            f"regularizer={regs} optimizer={_text(run.optimizer)}"
        )
    return lines
