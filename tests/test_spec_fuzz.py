"""Fuzzing the spec loader: whatever the text, the only error is a located SpecError."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_testplugins import make_registry

from optlab._contract.registry import Registry
from optlab._errors import SpecError
from optlab._spec.experiment import Experiment
from optlab._spec.load import describe_plan, load_experiment

VALID = """\
name: fuzz
seeds: [0, 1]
data: {name: digits, limit: 50, n_samples: 100}
loss: {name: svm, margin: 1.0}
regularizer:
  - {name: l2, strength: 0.001}
optimizer:
  name: sgd
  lr: 0.1
  batch_size: 10
  epochs: 2
checks: {gradient: off}
variants:
  svm: {}
  softmax:
    loss: {name: softmax}
sweep:
  grid:
    optimizer.lr: [0.1, 0.01]
  random:
    trials: 2
    params:
      regularizer.0.strength: {loguniform: [1.0e-5, 1.0e-2]}
"""
# FUZZ_EXAMPLES=1500 for a longer search (1500 each passed when the spec layer moved to ruamel)
SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
YAML_CHARS = st.sampled_from(list(":-[]{},&*!|>'\"#%@`?\t\n ~.0123456789abcxyz<=\\\x00\x07é"))


@pytest.fixture(scope="module")
def registry() -> Registry:
    return make_registry()


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "spec.yaml"


def check(path: Path, registry: Registry, overrides: tuple[str, ...] = ()) -> None:
    try:
        exp = load_experiment(path, overrides, registry=registry)
    except SpecError as err:
        assert err.issues
        for issue in err.issues:
            assert issue.file in (str(path), "--set")
            assert issue.message and "\n" not in issue.message
        return
    assert isinstance(exp, Experiment) and exp.runs
    assert len({r.name for r in exp.runs}) == len(exp.runs)
    describe_plan(exp)


def test_the_seed_text_is_valid(spec_file: Path, registry: Registry) -> None:
    spec_file.write_text(VALID)
    assert len(load_experiment(spec_file, registry=registry).runs) == 16


@SETTINGS
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["insert", "delete", "replace", "dup_line", "swap_lines"]),
            st.integers(0, len(VALID)),
            st.text(YAML_CHARS, min_size=1, max_size=6),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_text_mutations(
    edits: list[tuple[str, int, str]], spec_file: Path, registry: Registry
) -> None:
    text = VALID
    for op, at, chars in edits:
        at = min(at, len(text))
        if op == "insert":
            text = text[:at] + chars + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + len(chars) :]
        elif op == "replace":
            text = text[:at] + chars + text[at + len(chars) :]
        else:
            lines = text.splitlines(keepends=True)
            i = at % len(lines)
            j = (i + len(chars)) % len(lines)
            if op == "dup_line":
                lines.insert(i, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    spec_file.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    check(spec_file, registry)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["svm", "softmax", "sgd", "gd", "l2", "digits", "blobs", "off", "none"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["name", "lr", "margin", "grid", "random", "trials", "params", "x"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@SETTINGS
@given(data=st.data())
def test_structure_mutations(data: st.DataObject, spec_file: Path, registry: Registry) -> None:
    doc = copy.deepcopy(yaml.safe_load(VALID))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)[1:]
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(values)
    spec_file.write_text(yaml.safe_dump(doc, allow_unicode=True))
    check(spec_file, registry)


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    overrides=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "optimizer.lr",
                    "loss",
                    "loss.name",
                    "regularizer.0.strength",
                    "regularizer.0",
                    "regularizer",
                    "variants.softmax.loss.margin",
                    "sweep.grid.optimizer.lr",
                    "seeds",
                    "data.limit",
                    "nonsense.key",
                    "",
                    "optimizer..lr",
                ]
            ),
            st.text(YAML_CHARS, max_size=8),
        ),
        max_size=3,
    )
)
def test_override_mutations(
    overrides: list[tuple[str, str]], spec_file: Path, registry: Registry
) -> None:
    spec_file.write_text(VALID)
    check(spec_file, registry, tuple(f"{k}={v}" for k, v in overrides))
