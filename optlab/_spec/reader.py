"""Safe YAML reading that remembers where every key and value was written.

ruamel.yaml's round-trip loader parses YAML 1.2 (``off`` is a string, ``017`` is 17), refuses
duplicate keys, follows merge keys (``<<: *base``) and records the line and column of every
key and item. This module turns its document into plain data (dicts, lists, str, int, float,
bool, None) and a :data:`Positions` table ``key path -> Src``, and adds the limits a spec
reader needs: only plain tags (``!!python/...`` and custom tags are refused, never
constructed), dates stay strings, and alias expansion and nesting are bounded so an alias
bomb fails fast. Every problem is a located :class:`~optlab._errors.SpecIssue`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase, CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from optlab._errors import SpecError, SpecIssue

__all__ = ["MAX_DEPTH", "MAX_NODES", "KeyPath", "Positions", "Src", "describe_value", "load_yaml"]

#: Largest number of values a document may expand to (an alias counts each time it is used).
MAX_NODES = 20_000
#: Deepest nesting of mappings and lists accepted.
MAX_DEPTH = 64

KeyPath = tuple[str | int, ...]
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}


@dataclass(frozen=True)
class Src:
    """Where a key and its value were written (1-based; 0 when unknown).

    ``path`` is the dotted key in the source (``variants.b.loss.margin``); ``note`` is appended
    to messages about it (``" (in --set optimizer.lr=-1)"``).
    """

    file: str
    line: int
    column: int
    value_line: int
    value_column: int
    path: str
    note: str = ""


Positions = dict[KeyPath, Src]


def describe_value(value: Any) -> str:
    """A short description of a user value for messages: ``'abc' (a string)``, ``a list``."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return f"{value if len(value) <= 40 else value[:37] + '...'!r} (a string)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


class _Constructor(RoundTripConstructor):
    """Round-trip constructor whose dates stay strings (a spec has no date fields)."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)


class _TooBig(Exception):
    """The node graph expands past :data:`MAX_NODES` or nests past :data:`MAX_DEPTH`."""


def _check_size(node: Node, depth: int = 0, count: list[int] | None = None) -> None:
    """Walk the composed graph as aliases expand, stopping at the limits (a cycle nests
    forever, so it stops at :data:`MAX_DEPTH`)."""
    count = count if count is not None else [0]
    count[0] += 1
    if count[0] > MAX_NODES or depth > MAX_DEPTH:
        raise _TooBig("nodes" if count[0] > MAX_NODES else "depth")
    if isinstance(node, MappingNode):
        for key, value in node.value:
            _check_size(key, depth + 1, count)
            _check_size(value, depth + 1, count)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check_size(item, depth + 1, count)


class _Builder:
    """ruamel's document -> plain data and positions, collecting issues."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: Positions = {}
        self.issues: list[SpecIssue] = []

    def record(self, path: KeyPath, key: tuple[int, int], value: tuple[int, int]) -> None:
        dotted = ".".join(map(str, path))
        self.positions[path] = Src(
            self.file, key[0] + 1, key[1] + 1, value[0] + 1, value[1] + 1, dotted
        )

    def build(self, node: Any, path: KeyPath) -> Any:
        tag = node.tag.value if isinstance(node, CommentedBase | TaggedScalar) else None
        if isinstance(node, TaggedScalar) and tag == "tag:yaml.org,2002:str":
            return str(node.value)
        if isinstance(node, TaggedScalar) or (tag is not None and tag not in _PLAIN_TAGS):
            short = str(tag).replace("tag:yaml.org,2002:", "!!")
            self.issue(
                path,
                f"tag '{short}' is not allowed: spec files are plain YAML (safe loading; no "
                "Python objects or custom types); remove the tag",
            )
            return None
        if isinstance(node, CommentedSeq):
            out = []
            for i, item in enumerate(node):
                self.record((*path, i), node.lc.item(i), node.lc.item(i))
                out.append(self.build(item, (*path, i)))
            return out
        if isinstance(node, CommentedMap):
            mapping: dict[str, Any] = {}
            for key, value in node.items():
                if isinstance(key, tuple | list | dict | CommentedBase):
                    self.issue(path, "mapping keys must be plain names, not lists or maps")
                    continue
                # a key merged in by '<<' has no position of its own: the mapping's
                where = node.lc.data.get(key) or (node.lc.line, node.lc.col) * 2
                self.record((*path, str(key)), where[:2], where[2:])
                mapping[str(key)] = self.build(value, (*path, str(key)))
            return mapping
        return _plain(node)

    def issue(self, path: KeyPath, message: str) -> None:
        src = self.positions.get(path) or Src(self.file, 1, 1, 1, 1, "")
        self.issues.append(
            SpecIssue(self.file, src.value_line, src.value_column, src.path, message)
        )


def _plain(value: Any) -> Any:
    """ruamel's scalar subclasses as plain Python values (they format and pickle differently)."""
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    return value


def _nodes(root: Node) -> Iterator[Node]:
    """Every node of a composed document, depth first (the graph is checked to be finite)."""
    yield root
    for item in root.value if isinstance(root, MappingNode | SequenceNode) else ():
        for node in item if isinstance(item, tuple) else (item,):
            yield from _nodes(node)


def _at(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _yaml_issue(file: str, text: str, exc: YAMLError, root: Node | None = None) -> SpecIssue:
    """One located issue for ruamel's reader, scanner, parser and composer errors."""
    if isinstance(exc, ReaderError):
        line, col = (
            text.count("\n", 0, exc.position) + 1,
            exc.position - text.rfind("\n", 0, exc.position),
        )
        message = f"special character #x{exc.character:04x} is not allowed; remove it"
        return SpecIssue(file, line, col, "", f"invalid YAML: {message}")
    assert isinstance(exc, MarkedYAMLError)
    mark = exc.problem_mark or exc.context_mark
    problem = f"invalid YAML: {(exc.problem or exc.context or 'cannot parse').strip()}"
    if "duplicate key" in problem and root is not None and exc.context_mark is not None:
        key = problem.split('"')[1]
        here = exc.context_mark.index
        mapping = next(
            n for n in _nodes(root) if isinstance(n, MappingNode) and n.start_mark.index == here
        )
        first = next(k.start_mark.line + 1 for k, _ in mapping.value if k.value == key)
        problem = f"duplicate key '{key}' (first written on line {first}); remove one of them"
    elif "\\t" in problem or "'\t'" in problem:
        problem = (
            "invalid YAML: found a tab character where YAML expects indentation; indent with spaces"
        )
    elif exc.context and "single document" in exc.context:
        problem = (
            "invalid YAML: found a second document; a spec file holds one: remove the extra '---'"
        )
    elif exc.context and "flow" in exc.context and exc.context_mark is not None:
        opened = "{" if "mapping" in exc.context else "["
        closer = "}" if opened == "{" else "]"
        problem = (
            f"{problem} (the '{opened}' opened on line {exc.context_mark.line + 1} is still "
            f"open here: close it with '{closer}', or separate its entries with ',')"
        )
    elif exc.context:
        problem = f"{problem} ({exc.context.strip()})"
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return SpecIssue(file, line, col, "", problem)


def load_yaml(
    text: str, file: str, *, allow_empty: bool = False
) -> tuple[Any, Positions, list[SpecIssue]]:
    """Parse one YAML document safely, keeping positions.

    Parameters
    ----------
    text : str
        The document.
    file : str
        Name used in issues (the path as given, or ``"--set"``).
    allow_empty : bool
        An empty document is ``None`` rather than an issue (``--set key=``).

    Returns
    -------
    data, positions, issues
        Plain data, where each key path was written (``()`` is the document itself), and
        the values refused without stopping (a tag: the value reads as null), located.

    Raises
    ------
    SpecError
        The document cannot be read at all (syntax, duplicate key, empty, too big).
    """
    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _Constructor
    try:
        node = yaml.compose(text)
    except YAMLError as exc:
        raise SpecError([_yaml_issue(file, text, exc)]) from None
    if node is None:
        if allow_empty:
            return None, {}, []
        message = "the file is empty; a spec needs at least 'name', 'data', 'loss' and 'optimizer'"
        raise SpecError([SpecIssue(file, 1, 1, "", message)])
    count = [0]
    for key, value in node.value if isinstance(node, MappingNode) else [(node, node)]:
        try:
            _check_size(value, 1, count)
        except _TooBig as big:
            message = (
                f"the document expands to more than {MAX_NODES} values once aliases are "
                "followed (an alias bomb?); use fewer anchors/aliases"
                if big.args[0] == "nodes"
                else f"nested too deeply (more than {MAX_DEPTH} levels; a recursive alias?)"
            )
            path = str(key.value) if key is not node else ""
            raise SpecError([SpecIssue(file, *_at(key), path, message)]) from None
    try:
        doc = yaml.constructor.construct_document(node)
    except YAMLError as exc:
        raise SpecError([_yaml_issue(file, text, exc, node)]) from None
    except (ValueError, TypeError):  # a scalar whose explicit tag does not fit its text
        bad = next(n for n in _nodes(node) if isinstance(n, ScalarNode) and not _constructs(n))
        tag = str(getattr(bad.tag, "value", bad.tag)).replace("tag:yaml.org,2002:", "!!")
        raise SpecError(
            [SpecIssue(file, *_at(bad), "", f"cannot read {bad.value!r} as {tag}")]
        ) from None
    builder = _Builder(file)
    builder.positions[()] = Src(file, *_at(node), *_at(node), "")
    return builder.build(doc, ()), builder.positions, builder.issues


def _constructs(node: ScalarNode) -> bool:
    try:
        YAML(typ="rt", pure=True).constructor.construct_object(node)
    except Exception:
        return False
    return True
