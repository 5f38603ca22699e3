"""Safe YAML loading that remembers where every key and value came from.

PyYAML's :class:`yaml.SafeLoader` composes the document into nodes that carry start marks;
this module turns those nodes into plain Python data (dicts, lists, str, int, float, bool,
None) and a :data:`Positions` table ``path -> Src`` so that an error found later, during
validation, can name the file, line and column of the offending key or value.

What it adds on top of ``yaml.safe_load``:

- YAML 1.2 core scalars: only ``true``/``false`` are booleans (``off`` stays a string),
  ``1e-3`` is a float, ``017`` is 17, dates stay strings.
- Only plain tags are accepted (str, int, float, bool, null, map, seq); ``!!python/...``
  and every other tag is a located issue, never constructed.
- Duplicate keys in one mapping are an issue (PyYAML silently keeps the last one).
- Alias expansion is bounded (``max_nodes``, ``max_depth``) so an alias bomb fails fast.
- Every problem is collected as a :class:`~optlab.errors.SpecIssue`; nothing else escapes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from optlab.errors import SpecIssue

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "KeyPath",
    "Loaded",
    "Positions",
    "Src",
    "describe_value",
    "format_path",
    "issue_at",
    "load_yaml_text",
]

#: Largest number of nodes a document may expand to (aliases counted every time they are used).
MAX_NODES = 20_000
#: Deepest nesting of mappings and lists accepted.
MAX_DEPTH = 64

KeyPath = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ, _MERGE = _TAG + "map", _TAG + "seq", _TAG + "merge"


@dataclass(frozen=True)
class Src:
    """Where a key (and its value) was written.

    Attributes
    ----------
    file : str
        The spec file as the user named it, or ``"--set"``.
    line, column : int
        1-based position of the key (of the item itself for list items); 0 when unknown.
    value_line, value_column : int
        1-based position of the value.
    path : str
        The dotted key path in the source document (``variants.softmax.loss.margin``).
    note : str
        Appended to messages about this value (``" (in --set optimizer.lr=-1)"``).
    """

    file: str
    line: int
    column: int
    value_line: int
    value_column: int
    path: str
    note: str = ""

    def with_path(self, path: str) -> Src:
        return replace(self, path=path)


Positions = dict[KeyPath, Src]


@dataclass
class Loaded:
    """The result of :func:`load_yaml_text`: data (``None`` on failure), positions, issues."""

    data: Any
    positions: Positions
    issues: list[SpecIssue]


def format_path(path: KeyPath) -> str:
    """``("regularizer", 0, "strength")`` -> ``"regularizer.0.strength"``."""
    return ".".join(str(p) for p in path)


def describe_value(value: Any) -> str:
    """A short description of a user value for messages: ``'abc' (a string)``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"{text!r} (a string)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def issue_at(src: Src | None, file: str, path: str, message: str, *, key: bool = True) -> SpecIssue:
    """A :class:`SpecIssue` located at ``src`` (its key, or its value when ``key`` is false)."""
    if src is None:
        return SpecIssue(file, 0, 0, path, message)
    line, col = (src.line, src.column) if key else (src.value_line, src.value_column)
    return SpecIssue(src.file, line, col, path, message + src.note)


# --------------------------------------------------------------------------------------------
# The loader: SafeLoader with YAML 1.2 core-schema scalars
# --------------------------------------------------------------------------------------------

_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose implicit scalar types are YAML 1.2's core schema (see module doc)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's class-level table


_Loader.add_implicit_resolver(_BOOL, _BOOL_RE, list("tTfF"))
_Loader.add_implicit_resolver(_NULL, _NULL_RE, ["~", "n", "N", ""])
_Loader.add_implicit_resolver(_INT, _INT_RE, list("-+0123456789"))
_Loader.add_implicit_resolver(_FLOAT, _FLOAT_RE, list("-+0123456789."))
_Loader.add_implicit_resolver(_MERGE, re.compile(r"^(?:<<)$"), ["<"])


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _scalar(node: ScalarNode) -> Any:
    """Construct a plain scalar; ``ValueError`` when the text does not fit its tag."""
    tag, text = node.tag, node.value
    if tag == _STR:
        return text
    if tag == _NULL:
        if not _NULL_RE.match(text):
            raise ValueError(f"cannot read {text!r} as !!null")
        return None
    if tag == _BOOL:
        if not _BOOL_RE.match(text):
            raise ValueError(f"cannot read {text!r} as !!bool (use true or false)")
        return text.lower() == "true"
    if tag == _INT:
        t = text.strip()
        if t.startswith(("0x", "0X")):
            return int(t[2:], 16)
        if t.startswith(("0o", "0O")):
            return int(t[2:], 8)
        if not re.fullmatch(r"[-+]?[0-9]+", t):
            raise ValueError(f"cannot read {text!r} as !!int")
        return int(t, 10)
    if tag == _FLOAT:
        t = text.strip().lower()
        if t in (".inf", "+.inf"):
            return math.inf
        if t == "-.inf":
            return -math.inf
        if t == ".nan":
            return math.nan
        try:
            return float(t)
        except ValueError:
            raise ValueError(f"cannot read {text!r} as !!float") from None
    raise TypeError(tag)


class _Builder:
    """Turns a composed node graph into plain data plus positions, collecting issues."""

    def __init__(self, file: str, max_nodes: int, max_depth: int) -> None:
        self.file = file
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.count = 0
        self.positions: Positions = {}
        self.issues: list[SpecIssue] = []

    def _issue(self, node: Node, path: KeyPath, message: str) -> None:
        mark = node.start_mark
        self.issues.append(
            SpecIssue(self.file, mark.line + 1, mark.column + 1, format_path(path), message)
        )

    def build(self, node: Node, path: KeyPath, depth: int) -> Any:
        self.count += 1
        if self.count > self.max_nodes:
            raise _TooBig(node, path, "nodes")
        if depth > self.max_depth:
            raise _TooBig(node, path, "depth")
        if isinstance(node, ScalarNode):
            if node.tag not in (_STR, _INT, _FLOAT, _BOOL, _NULL):
                self._issue(node, path, _bad_tag(node.tag))
                return None
            try:
                return _scalar(node)
            except ValueError as exc:
                self._issue(node, path, str(exc))
                return None
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self._issue(node, path, _bad_tag(node.tag))
                return None
            items = []
            for i, child in enumerate(node.value):
                self._record((*path, i), child, child)
                items.append(self.build(child, (*path, i), depth + 1))
            return items
        assert isinstance(node, MappingNode)
        if node.tag != _MAP:
            self._issue(node, path, _bad_tag(node.tag))
            return None
        out: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                merged.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag not in (
                _STR,
                _INT,
                _FLOAT,
                _BOOL,
                _NULL,
            ):
                self._issue(key_node, path, "mapping keys must be plain names, not lists or maps")
                continue
            key = str(key_node.value)
            if key in first_seen:
                self._issue(
                    key_node,
                    (*path, key),
                    f"duplicate key '{key}' (first written on line {first_seen[key]}); "
                    "remove one of them",
                )
                continue
            first_seen[key] = key_node.start_mark.line + 1
            self._record((*path, key), key_node, value_node)
            out[key] = self.build(value_node, (*path, key), depth + 1)
        for merge_node in merged:
            self._merge(out, merge_node, path, depth)
        return out

    def _merge(self, out: dict[str, Any], node: Node, path: KeyPath, depth: int) -> None:
        """YAML merge key ``<<: *base`` (or a list of them): explicit keys win."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for src in sources:
            if not isinstance(src, MappingNode) or src.tag != _MAP:
                self._issue(src, path, "'<<' (merge) needs a mapping or a list of mappings")
                continue
            for key_node, value_node in src.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                    continue
                key = str(key_node.value)
                if key in out:
                    continue
                self._record((*path, key), key_node, value_node)
                out[key] = self.build(value_node, (*path, key), depth + 1)

    def _record(self, path: KeyPath, key_node: Node, value_node: Node) -> None:
        k, v = key_node.start_mark, value_node.start_mark
        self.positions[path] = Src(
            self.file, k.line + 1, k.column + 1, v.line + 1, v.column + 1, format_path(path)
        )


class _TooBig(Exception):
    def __init__(self, node: Node, path: KeyPath, what: str) -> None:
        super().__init__(what)
        self.node, self.path, self.what = node, path, what


def _bad_tag(tag: str) -> str:
    return (
        f"tag '{_short_tag(tag)}' is not allowed: spec files are plain YAML "
        "(safe loading; no Python objects or custom types); remove the tag"
    )


def _yaml_error_issue(file: str, text: str, exc: yaml.YAMLError) -> SpecIssue:
    """One located issue for a PyYAML scanner/parser/composer/reader error."""
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        return SpecIssue(
            file,
            line,
            col,
            "",
            f"invalid YAML: special character #x{exc.character:04x} is not allowed; remove it",
        )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = (exc.problem or exc.context or "cannot parse").strip()
        if "\t" in problem or "'\\t'" in problem:
            problem = "found a tab character where YAML expects indentation; indent with spaces"
        elif exc.context and "single document" in exc.context:
            problem = "found a second document; a spec file holds one: remove the extra '---'"
        elif exc.context and exc.problem:
            problem = f"{problem} ({exc.context.strip()})"
        line = mark.line + 1 if mark is not None else 0
        col = mark.column + 1 if mark is not None else 0
        return SpecIssue(file, line, col, "", f"invalid YAML: {problem}")
    return SpecIssue(file, 0, 0, "", f"invalid YAML: {exc}")  # pragma: no cover - defensive


def load_yaml_text(
    text: str,
    file: str,
    *,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
    allow_empty: bool = False,
) -> Loaded:
    """Parse one YAML document safely, keeping positions.

    Parameters
    ----------
    text : str
        The document.
    file : str
        Name used in issues (the path as given, or ``"--set"``).
    max_nodes, max_depth : int
        Limits on alias expansion and nesting (an alias bomb stops here with an issue).
    allow_empty : bool
        When true an empty document loads as ``None`` without an issue (``--set key=``).

    Returns
    -------
    Loaded
        ``data`` is ``None`` when the text could not be parsed; ``issues`` says why.
    """
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        return Loaded(None, {}, [_yaml_error_issue(file, text, exc)])
    except RecursionError:
        return Loaded(
            None,
            {},
            [SpecIssue(file, 1, 1, "", f"nested too deeply (more than {max_depth} levels)")],
        )
    if node is None:
        if allow_empty:
            return Loaded(None, {}, [])
        return Loaded(
            None,
            {},
            [
                SpecIssue(
                    file,
                    1,
                    1,
                    "",
                    "the file is empty; a spec needs at least 'name', 'data', 'loss' and "
                    "'optimizer'",
                )
            ],
        )
    builder = _Builder(file, max_nodes, max_depth)
    try:
        data = builder.build(node, (), 0)
    except _TooBig as big:
        mark = big.node.start_mark
        if big.what == "nodes":
            message = (
                f"the document expands to more than {max_nodes} values once aliases are "
                "followed (an alias bomb?); use fewer anchors/aliases"
            )
        else:
            message = f"nested too deeply (more than {max_depth} levels; a recursive alias?)"
        top = builder.positions.get(big.path[:1])
        line, col = (top.line, top.column) if top else (mark.line + 1, mark.column + 1)
        issue = SpecIssue(file, line, col, format_path(big.path[:1]), message)
        return Loaded(None, {}, [*builder.issues, issue])
    except RecursionError:  # pragma: no cover - max_depth stops recursion long before this
        return Loaded(None, {}, [SpecIssue(file, 1, 1, "", "nested too deeply")])
    root_mark = node.start_mark
    builder.positions[()] = Src(
        file, root_mark.line + 1, root_mark.column + 1, root_mark.line + 1, root_mark.column + 1, ""
    )
    return Loaded(data, builder.positions, builder.issues)
