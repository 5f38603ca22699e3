"""Where a run's keys were written, and pydantic's errors as located one-line issues.

A :class:`Locator` answers "where was this key of this run written?" for a run built from
the base, a variant and a sweep point: a swept key is at its sweep entry, else the closest
key the variant wrote, else the closest key of the base. :func:`pydantic_issues` formats
pydantic's own messages (``Input should be greater than 0`` -> ``must be greater than 0, got
-1``), names unknown keys with a "did you mean", and unknown or ambiguous component names
with the registry's message.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from optlab._contract.registry import Registry, did_you_mean
from optlab._errors import PluginError, SpecIssue
from optlab._spec.expand import override_path
from optlab._spec.models import KIND_OF_KEY, param_hint
from optlab._spec.reader import KeyPath, Positions, Src, describe_value

__all__ = [
    "Locator",
    "pydantic_issues",
    "validate",
]


@dataclass
class Locator:
    """Where the keys of one run (or of the document, with no variant) were written.

    Attributes
    ----------
    file : str
        The spec file as the user named it.
    positions : Positions
        The document's positions (``--set`` values included).
    variant : str or None
        The variant the run comes from: its keys win over the base's.
    swept : dict
        Run key path set by the sweep point -> its sweep entry.
    overrides_label : str
        What the user passes overrides by, for hints (``--set``; the Python API's
        ``overrides``).
    """

    file: str
    positions: Positions
    variant: str | None = None
    swept: dict[KeyPath, Src] = field(default_factory=dict)
    overrides_label: str = "--set"

    def find(self, path: KeyPath) -> tuple[Src, str, bool]:
        """The closest source of ``path``: ``(src, dotted path to show, exact)``."""
        for key, src in self.swept.items():
            if path[: len(key)] == key:
                rest = ".".join(map(str, path[len(key) :]))
                return src, ".".join(p for p in (src.path, rest) if p), path == key
        prefixes = [("variants", self.variant), ()] if self.variant is not None else [()]
        for depth in range(len(path), -1, -1):
            for prefix in prefixes:
                at = self.positions.get((*prefix, *path[:depth]))
                if at is not None:
                    rest = ".".join(map(str, path[depth:]))
                    return at, ".".join(p for p in (at.path, rest) if p), depth == len(path)
        raise AssertionError("the document's root always has a position")  # pragma: no cover

    def written(self, path: KeyPath) -> KeyPath | None:
        """Where the run's key ``path`` is written in the document: under ``variants.<name>``
        where the variant writes it (or the deepest part of it written), else in the base;
        ``None`` where a sweep point sets it."""
        if any(path[: len(key)] == key for key in self.swept):
            return None
        prefixes = [("variants", self.variant), ()] if self.variant is not None else [()]
        for depth in range(len(path), 0, -1):
            for prefix in prefixes:
                if (*prefix, *path[:depth]) in self.positions:
                    return (*prefix, *path)
        return path

    def issue(
        self, path: KeyPath, message: str, *, key: bool = True, in_parent: bool = False
    ) -> SpecIssue:
        """An issue at ``path``: at its key (or its value, ``key=False``), else at the closest
        key written. ``in_parent`` names the parent (an unknown key's name is in the message)."""
        src, shown, exact = self.find(path)
        if in_parent and path and src not in self.swept.values():
            shown = shown.removesuffix(str(path[-1])).removesuffix(".")
        line, col = (
            (src.line, src.column) if key or not exact else (src.value_line, src.value_column)
        )
        return SpecIssue(src.file, line, col, shown, message + src.note)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models inside a type (through Annotated, unions, lists and dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _allowed(model: type[BaseModel], loc: tuple[int | str, ...]) -> dict[str, str]:
    """The keys accepted where pydantic's ``loc`` points (its tags choose union members),
    sorted, each with its description."""
    candidates = [model]
    for elem in loc:
        inner = [
            m
            for c in candidates
            for name, info in c.model_fields.items()
            if elem in (name, info.alias)
            for m in _models(info.annotation)
        ]
        named = [c for c in candidates if c.__name__.partition("_")[2] == elem]
        candidates = inner or named or candidates
    described = {
        info.alias or n: info.description or ""
        for c in candidates
        for n, info in c.model_fields.items()
    }
    return dict(sorted(described.items()))


def _named_by(key: str, allowed: dict[str, str]) -> str:
    """``" (did you mean 'lr'?)"`` when the words of ``key`` name one allowed key in its
    description, as the lecture writes it (``step_size`` and ``learning_rate``: ``lr``, "Step
    size (learning rate)."; ``lambda``: ``strength``; ``delta``: ``margin``; ``mu``:
    ``momentum``; ``bias_trick``: ``bias``); else ``""``. Where several descriptions use the
    words, those that put an article before them refer to something else ("Multiply the
    learning rate ..."); a component's summary, the description of its ``name``, always does.
    """
    words = " ".join(re.findall(r"[a-z0-9]+", key.casefold()))
    if len(words) < 2:
        return ""
    used = re.compile(rf"(?<![a-z0-9]){re.escape(words)}(?![a-z0-9])")
    named = re.compile(
        rf"(?<![a-z0-9])(?<!\bthe )(?<!\ba )(?<!\ban ){re.escape(words)}(?![a-z0-9])"
    )
    keys = [k for k, text in allowed.items() if k != "name" and used.search(text.casefold())]
    if len(keys) > 1:
        keys = [k for k in keys if named.search(allowed[k].casefold())]
    return f" (did you mean '{keys[0]}'?)" if len(keys) == 1 else ""


def _component_param(registry: Registry, loc: tuple[int | str, ...], key: str) -> str:
    """``" (did you mean 'optimizer.lr'?)"`` for a component's param written among the run's
    keys, at the top of the spec or of a variant (``lr: 0.1``, ``--set lr=0.1``); else
    ``""``."""
    at_run_level = not loc or (len(loc) == 2 and loc[0] == "variants")
    return param_hint(registry, key) if at_run_level else ""


def _walk(data: Any, loc: tuple[int | str, ...]) -> tuple[KeyPath, bool]:
    """The key path of pydantic's ``loc`` in ``data`` (union tags and the index pydantic
    gives a lone regularizer dropped), and whether its last element was a key of the data."""
    path: list[str | int] = []
    found = False
    for elem in loc:
        found = (isinstance(data, dict) and elem in data) or (
            isinstance(data, list) and isinstance(elem, int) and elem < len(data)
        )
        if found:
            path.append(elem)
            data = data[elem]
    return tuple(path), found


def _kind(path: KeyPath) -> str:
    """The component kind a key path is in (``variants.<name>.`` skipped), or ``""``."""
    path = path[2:] if path[:1] == ("variants",) else path
    return KIND_OF_KEY.get(str(path[0]), "") if path else ""


def _names(registry: Registry, path: KeyPath) -> str:
    kind = _kind(path)
    return ", ".join(registry.names(kind)) or "none installed" if kind else ""  # type: ignore[arg-type]


def _set_hint(path: KeyPath | None, label: str = "--set") -> str:
    """`` or pass --set KEY=...`` for the document's key at ``path`` (``name``,
    ``variants.b.optimizer.lr``), or nothing where no ``--set`` key reaches it (a sweep
    point's value, a key with a dot of its own such as a variant named ``lr0.1``). ``label``
    names the overrides as the user passes them: the Python API's ``overrides`` gets
    `` or pass overrides={'KEY': ...}``."""
    if path is None:
        return ""
    key = ".".join(map(str, path))
    if override_path(key) != list(map(str, path)):
        return ""
    return f" or pass --set {key}=..." if label == "--set" else f" or pass {label}={{{key!r}: ...}}"


def _missing(missing: str, whole: KeyPath, locator: Locator, registry: Registry) -> str:
    """The message for the key ``missing`` absent from the mapping at the run's ``whole``:
    where to add it, and the ``--set`` that would."""
    if not whole and missing in KIND_OF_KEY:
        return f"missing required key '{missing}' (available: {_names(registry, (missing,))})"
    _, shown, _ = locator.find(whole)
    where = f"add it under {shown}:" if shown else "add it"
    written = locator.written(whole)
    hint = _set_hint(None if written is None else (*written, missing), locator.overrides_label)
    return f"missing required key '{missing}'; {where}{hint}"


def _message(
    err: Any, whole: KeyPath, model: type[BaseModel], locator: Locator, registry: Registry
) -> tuple[str, bool]:
    """The message for one pydantic error at the run's key path ``whole``, and whether it is
    reported at the key (rather than at the value)."""
    kind, got, loc = err["type"], err.get("input"), err["loc"]
    if kind == "missing":
        return _missing(str(loc[-1]), whole, locator, registry), True
    if kind == "extra_forbidden":
        allowed = _allowed(model, loc[:-1])
        unknown = str(loc[-1])
        hint = (
            did_you_mean(unknown, allowed, cutoff=0.8)  # a typo: 'lrr', 'epoch'
            or _named_by(unknown, allowed)
            or _component_param(registry, loc[:-1], unknown)
            or did_you_mean(unknown, allowed)
            or f"; allowed keys: {', '.join(allowed)}"
        )
        return f"unknown key '{loc[-1]}'{hint}", True
    if kind == "union_tag_not_found":
        return f"missing required key 'name' (available: {_names(registry, whole)})", True
    if kind == "union_tag_invalid" or (kind == "literal_error" and loc[-1] == "name"):
        name = got.get("name") if isinstance(got, dict) else got
        component = _kind(whole)
        if component and isinstance(name, str):
            try:
                registry.get(component, name)  # type: ignore[arg-type]
            except PluginError as exc:
                return str(exc), False
        names = f" (available: {_names(registry, whole)})" if component else ""
        return f"must be a {component} name{names}, got {describe_value(name)}", False
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        like = f"like {{name: {got}, ...}}" if isinstance(got, str) and _kind(whole) else ""
        return f"must be a mapping {like or 'of keys'}, got {describe_value(got)}".replace(
            "  ", " "
        ), False
    if kind in ("value_error", "assertion_error"):
        text = str(err["ctx"]["error"]) if "error" in err.get("ctx", {}) else err["msg"]
        return text[:1].lower() + text[1:], False
    if kind in ("too_short", "string_too_short") and err["ctx"].get("min_length") == 1:
        return "must not be empty", False
    text = err["msg"].replace("Input should be", "must be", 1)
    text = text[:1].lower() + text[1:]
    plain = isinstance(got, dict | list) or ", got " in text
    return (text if plain else f"{text}, got {describe_value(got)}"), False


def pydantic_issues(
    errors: Sequence[ErrorDetails],
    data: Any,
    model: type[BaseModel],
    locator: Locator,
    registry: Registry,
) -> list[SpecIssue]:
    """The errors of ``model.model_validate(data)`` (``exc.errors()``) as located issues.

    Errors of the losing members of a union (``limit: -1`` is neither an integer > 0 nor a
    mapping) collapse to the first, or to the errors that went deeper into the data.
    """
    found = []
    for err in errors:
        path, whole = _walk(data, err["loc"])
        found.append((path, whole or err["type"] == "missing", err))
    kept = [
        (path, err)
        for i, (path, whole, err) in enumerate(found)
        if whole
        or not any(
            (p[: len(path)] == path and (len(p) > len(path) or w or j < i))
            for j, (p, w, _) in enumerate(found)
            if j != i
        )
    ]
    issues = []
    for path, err in kept:
        if err["type"] == "union_tag_invalid":
            path = (*path, "name")
        message, at_key = _message(err, path, model, locator, registry)
        in_parent = err["type"] == "extra_forbidden"
        issues.append(locator.issue(path, message, key=at_key, in_parent=in_parent))
    return issues


def validate(
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
