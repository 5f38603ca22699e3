"""Turning validation failures into located, one-line :class:`~optlab.errors.SpecIssue` s.

A :class:`Locator` knows where each key path of a (possibly merged) run came from; it finds
the closest known position for any path. :func:`pydantic_issues` rephrases pydantic's errors
("Input should be greater than 0") into the spec's vocabulary ("must be > 0, got -0.1",
"unknown key 'lrr' (did you mean 'lr'?)") and collapses the per-branch errors of unions.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from optlab._yaml_positions import KeyPath, Positions, Src, describe_value, format_path, issue_at
from optlab.errors import SpecIssue
from optlab.registry import did_you_mean

__all__ = ["Locator", "pydantic_issues"]


@dataclass
class Locator:
    """Positions of one document (or merged run) and how to report at a key path.

    Attributes
    ----------
    file : str
        The spec file as the user named it (used when nothing closer is known).
    positions : Positions
        Key path -> where it was written.
    """

    file: str
    positions: Positions

    def find(self, path: KeyPath) -> tuple[Src | None, str, bool]:
        """The closest known source of ``path``: ``(src, display path, exact)``."""
        for i in range(len(path), -1, -1):
            src = self.positions.get(path[:i])
            if src is not None:
                rest = format_path(path[i:])
                display = ".".join(p for p in (src.path, rest) if p)
                return src, display, i == len(path)
        return None, format_path(path), False

    def issue(
        self, path: KeyPath, message: str, *, key: bool = True, in_parent: bool = False
    ) -> SpecIssue:
        """An issue at ``path``: at its key (or value, ``key=False``), else at its parent.

        ``in_parent`` names the parent's path in the message (for unknown keys, whose own
        name is in the message already) while still pointing at the key itself.
        """
        src, display, exact = self.find(path)
        if in_parent and path and display.endswith(f".{path[-1]}"):
            display = display[: -len(str(path[-1])) - 1]
        elif in_parent and path and display == str(path[-1]):
            display = ""
        return issue_at(src, self.file, display, message, key=key or not exact)


# --------------------------------------------------------------------------------------------
# pydantic errors -> issues
# --------------------------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "none_required": "null",
    "literal_error": "",
    "enum": "",
    "bytes_type": "a string",
}
_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


@dataclass
class _Found:
    path: KeyPath
    message: str
    expected: str = ""  # a type expectation ("a mapping"), merged across union branches
    got: Any = None
    key: bool = False  # report at the key (unknown/missing keys) rather than the value
    in_parent: bool = False  # name the parent in the message (unknown keys)
    missing: str = ""  # the missing key's name: the message then says how to add it

    def text(self, prefix: KeyPath) -> str:
        """The message, with the full dotted key of a missing key where there is one."""
        if not self.missing:
            return self.message
        parent = ".".join(str(p) for p in (*prefix, *self.path))
        dotted = f"{parent}.{self.missing}" if parent else self.missing
        where = f"add it under {parent}: or" if parent else "add it or"
        return f"{self.message}; {where} pass --set {dotted}=..."


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a union (``X | None``, ``Optional``, ``Annotated`` unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _members(a)]
    return [annotation]


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names (aliases) of the model reached by ``loc`` inside ``model`` (best effort)."""
    candidates: list[Any] = [model]
    for elem in loc:
        nxt: list[Any] = []
        for cand in (m for c in candidates for m in _members(c)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                if elem == cand.__name__:
                    nxt.append(cand)
                for name, info in cand.model_fields.items():
                    if elem in (name, info.alias):
                        nxt.append(info.annotation)
            elif typing.get_origin(cand) in (dict, list, tuple):
                args = typing.get_args(cand)
                nxt.extend(args[-1:] if typing.get_origin(cand) is dict else args)
        candidates = nxt or candidates
    keys: list[str] = []
    for cand in (m for c in candidates for m in _members(c)):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            keys += [info.alias or name for name, info in cand.model_fields.items()]
    return keys


def _walk(data: Any, loc: tuple[int | str, ...], keep_last: bool) -> KeyPath:
    """The key path of ``loc`` in ``data``, dropping pydantic's union-branch tags."""
    path: list[str | int] = []
    cur: Any = data
    for i, elem in enumerate(loc):
        if (isinstance(cur, dict) and isinstance(elem, str) and elem in cur) or (
            isinstance(cur, list) and isinstance(elem, int) and 0 <= elem < len(cur)
        ):
            path.append(elem)
            cur = cur[elem]  # type: ignore[index]
        elif keep_last and i == len(loc) - 1:
            path.append(elem)
    return tuple(path)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _one(
    err: Any, data: Any, model: type[BaseModel], extra_keys: Iterable[str], allowed_note: bool
) -> _Found:
    kind, loc, ctx = err["type"], tuple(err["loc"]), err.get("ctx") or {}
    got = err.get("input")
    if kind == "missing":
        path = _walk(data, loc, keep_last=True)
        return _Found(
            path[:-1], f"missing required key '{loc[-1]}'", key=True, missing=str(loc[-1])
        )
    if kind == "extra_forbidden":
        path = _walk(data, loc, keep_last=True)
        allowed = sorted({*_allowed_keys(model, loc[:-1]), *extra_keys})
        name = str(loc[-1])
        hint = did_you_mean(name, allowed)
        if not hint and allowed_note and allowed:
            hint = f"; allowed keys: {', '.join(allowed)}"
        return _Found(path, f"unknown key '{name}'{hint}", key=True, in_parent=True)
    path = _walk(data, loc, keep_last=False)
    if kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        bound = ctx.get(name)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return _Found(path, f"must be {op} {bound}, got {describe_value(got)}", got=got)
    if kind in ("literal_error", "enum"):
        return _Found(path, f"must be one of {ctx.get('expected')}, got {describe_value(got)}")
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
        return _Found(path, f"must be {expected}, got {describe_value(got)}", expected, got)
    if kind == "finite_number":
        return _Found(path, f"must be a finite number, got {describe_value(got)}")
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length", 1)
        if least == 1:
            return _Found(path, "must not be empty")
        return _Found(path, f"must have at least {least} items, got {ctx.get('actual_length')}")
    if kind in ("too_long", "string_too_long"):
        return _Found(path, f"must have at most {ctx.get('max_length')} items")
    if kind in ("value_error", "assertion_error"):
        text = str(ctx.get("error") or err["msg"])
        return _Found(path, _lower_first(text.removeprefix("Value error, ")))
    return _Found(path, f"{_lower_first(err['msg'])}, got {describe_value(got)}")


def pydantic_issues(
    exc: ValidationError,
    data: Any,
    model: type[BaseModel],
    prefix: KeyPath,
    locator: Locator,
    *,
    extra_keys: Iterable[str] = (),
    allowed_note: bool = True,
) -> list[SpecIssue]:
    """Located, rephrased issues for every error of ``exc``.

    Parameters
    ----------
    exc : ValidationError
        Raised by ``model.model_validate(data)``.
    data : Any
        What was validated (walked to map error locations onto key paths).
    model : type of BaseModel
        The model validated against (for "did you mean" on unknown keys).
    prefix : KeyPath
        Where ``data`` sits in the document (``("optimizer",)``).
    locator : Locator
        Positions of the document.
    extra_keys : iterable of str
        More keys accepted beside the model's fields (suggested for typos too).
    allowed_note : bool
        List the allowed keys when no close match exists.
    """
    found = [_one(e, data, model, tuple(extra_keys), allowed_note) for e in exc.errors()]
    # a type mismatch from one union branch is noise when another branch got further
    kept: list[_Found] = []
    for f in found:
        if f.expected and any(
            o is not f
            and (o.path[: len(f.path)] == f.path)
            and (len(o.path) > len(f.path) or not o.expected)
            for o in found
        ):
            continue
        kept.append(f)
    merged: dict[tuple[KeyPath, bool, str], _Found] = {}
    for f in kept:
        if f.expected:
            prev = merged.get((f.path, False, "<type>"))
            if prev is not None:
                if f.expected not in prev.expected.split(" or "):
                    prev.expected = f"{prev.expected} or {f.expected}"
                    prev.message = f"must be {prev.expected}, got {describe_value(prev.got)}"
                continue
            merged[(f.path, False, "<type>")] = f
        else:
            merged.setdefault((f.path, f.key, f.message), f)
    return [
        locator.issue(prefix + f.path, f.text(prefix), key=f.key, in_parent=f.in_parent)
        for f in merged.values()
    ]
