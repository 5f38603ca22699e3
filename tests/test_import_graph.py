"""No import cycle anywhere in ``optlab/``: not at run time, not for the type checker.

Every import of an optlab module counts - at module level, inside functions and under
``TYPE_CHECKING`` - and importing ``optlab.a.b`` from outside ``optlab.a`` counts as importing
the package ``optlab.a`` too (its ``__init__`` runs first; a package's own modules import each
other while it initializes, which Python allows). The root package is the exception: its
``__init__`` imports nothing at run time (PEP 562), so ``optlab.x`` does not depend on it, but a
module that imports a name from ``optlab`` itself does.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "optlab"


def _module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _known(name: str) -> str | None:
    """The optlab module ``name`` is, or is inside (a name imported from a module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "optlab":
                continue
            known = _known(target)
            if known is None:
                continue
            found.add(known)
            parent = known.rpartition(".")[0]
            while parent.count(".") >= 1 and not (module + ".").startswith(parent + "."):
                found.add(parent)  # a package above it, outside the importer's own
                parent = parent.rpartition(".")[0]
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    """optlab module -> the optlab modules it imports."""
    return {module: _imports(module, path) for module, path in MODULES.items()}


def test_the_graph_sees_the_imports() -> None:
    edges = graph()
    assert len(edges) > 30
    assert "optlab._contract.components" in edges["optlab._contract.objective"]
    assert "optlab._tracking" in edges["optlab._cli"] or any(
        m.startswith("optlab._tracking") for m in edges["optlab._cli"]
    )


def test_there_is_no_import_cycle() -> None:
    try:
        tuple(graphlib.TopologicalSorter(graph()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle in optlab/: {' -> '.join(exc.args[1])}")


def test_a_cycle_would_be_found() -> None:
    edges = graph()
    edges["optlab._errors"] = {*edges["optlab._errors"], "optlab._contract.objective"}
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(edges).static_order())


#: optlab's layers, lowest first: a module imports only from its own layer and those below
LAYERS = [
    ["optlab._errors", "optlab._meta"],
    ["optlab._contract"],
    ["optlab._spec"],
    ["optlab._training"],
    ["optlab._report"],
    ["optlab._tracking"],
    ["optlab._execution"],
    ["optlab._api", "optlab.testing"],
    ["optlab._cli", "optlab._console", "optlab.__main__", "optlab"],
]


def _layer(module: str) -> int:
    for level, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members if m != "optlab"):
            return level
    assert module == "optlab", f"{module} is in no layer: add it to LAYERS"
    return len(LAYERS) - 1


def _climbs(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in edges.items()
        for target in targets
        if _layer(target) > _layer(module)
    )


def test_every_module_imports_only_its_own_layer_and_those_below() -> None:
    """The tree shows the architecture: contract, spec, training, report, tracking, execution,
    then the Python API and the command line; nothing reaches up (the root package only
    re-exports, lazily)."""
    assert _climbs(graph()) == []


def test_a_climb_would_be_found() -> None:
    edges = graph()
    edges["optlab._contract.objective"] = {"optlab._tracking.store"}
    assert _climbs(edges) == [
        "optlab._contract.objective (layer 1) imports optlab._tracking.store (layer 5)"
    ]
