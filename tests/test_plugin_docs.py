"""Every hook is documented in docs/plugins.md and tested somewhere (datasette / llm style).

Adding a hook to optlab/_contract/hookspecs.py without a section in the author's kit whose heading
is the hook's exact signature, or without a test that mentions it, fails here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from optlab._contract import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent


def _hooks() -> dict[str, Callable[..., Any]]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if name.startswith("optlab_") and inspect.isfunction(fn)
    }


def _annotation(value: Any) -> str:
    # hookspecs uses `from __future__ import annotations`: annotations are already strings
    return value if isinstance(value, str) else inspect.formatannotation(value)


def render_signature(fn: Callable[..., Any]) -> str:
    """``name(arg: Type, ...) -> Return``, with the annotations as written in the source."""
    sig = inspect.signature(fn)
    params = ", ".join(
        p.name
        if p.annotation is inspect.Parameter.empty
        else f"{p.name}: {_annotation(p.annotation)}"
        for p in sig.parameters.values()
    )
    ret = (
        ""
        if sig.return_annotation is inspect.Signature.empty
        else f" -> {_annotation(sig.return_annotation)}"
    )
    return f"{fn.__name__}({params}){ret}"


def _headings() -> list[str]:
    return re.findall(r"^#{2,4} `([^`]+)`\s*$", DOCS.read_text(), flags=re.MULTILINE)


HOOKS = _hooks()


def test_the_hooks_are_found() -> None:
    # guards the two tests below against passing vacuously
    assert {"optlab_register_losses", "optlab_run_finished"} <= set(HOOKS)
    assert render_signature(HOOKS["optlab_register_losses"]) == (
        "optlab_register_losses() -> list[LossRecord]"
    )


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_has_a_section_headed_by_its_exact_signature(hook: str) -> None:
    signature = render_signature(HOOKS[hook])
    headings = _headings()
    assert signature in headings, (
        f"docs/plugins.md has no section headed ### `{signature}`; "
        f"headings naming the hook: {[h for h in headings if hook in h]}"
    )


def test_every_documented_hook_section_is_a_real_hook() -> None:
    signatures = {render_signature(fn) for fn in HOOKS.values()}
    stale = [h for h in _headings() if h.startswith("optlab_") and h not in signatures]
    assert not stale, f"docs/plugins.md documents hooks that do not exist (any more): {stale}"


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_is_exercised_by_a_test(hook: str) -> None:
    this = Path(__file__).resolve()
    mentioned_in = [
        p.name
        for p in sorted(TESTS.rglob("test_*.py"))
        if p.resolve() != this and re.search(rf"\b{hook}\b", p.read_text())
    ]
    assert mentioned_in, f"no test under tests/ mentions the hook {hook}"


# --------------------------------------------------------------------------------------------
# The samples: names of their own, and what the dataset sample says about a bad path
# --------------------------------------------------------------------------------------------

_RECORD = re.compile(
    r"optlab\.(Loss|Regularizer|Optimizer|Dataset|Backend)Record\(\s*(?:name=)?\"([^\"]+)\""
)


def test_the_samples_name_no_bundled_component() -> None:
    """A reader copies a sample: a name the bundled plugins provide would then be an error for
    everyone (two providers), the bundled component's users included."""
    from optlab._contract.plugin_manager import get_registry

    registry = get_registry()
    named = [(kind.lower(), name) for kind, name in _RECORD.findall(DOCS.read_text())]
    assert ("dataset", "numeric_csv") in named  # guards against passing vacuously
    clashes = [(k, n) for k, n in named if n in registry.names(k)]  # type: ignore[arg-type]
    assert not clashes, f"docs/plugins.md samples register bundled names: {clashes}"


def _dataset_sample() -> dict[str, Any]:
    """The namespace of the code block of docs/plugins.md's dataset hook section, run."""
    text = DOCS.read_text()
    section = text[text.index("### `optlab_register_datasets()") :]
    block = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None
    namespace: dict[str, Any] = {"__name__": "docs_dataset_sample"}
    exec(compile(block.group(1), f"{DOCS}:dataset sample", "exec"), namespace)
    return namespace


def test_the_dataset_sample_loads_and_names_a_bad_path_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from optlab._cli import app
    from optlab.testing import check_dataset, register_plugin

    sample = _dataset_sample()
    (record,) = sample["optlab_register_datasets"]()
    good = tmp_path / "good.csv"
    good.write_text("".join(f"{i % 5}.0,{i % 3}.5,{i % 2}\n" for i in range(20)))
    check_dataset(record, params={"path": str(good)})

    words = tmp_path / "words.csv"
    words.write_text("a,b,0\n")
    spec = tmp_path / "spec.yaml"
    plugin = SimpleNamespace(optlab_register_datasets=sample["optlab_register_datasets"])
    monkeypatch.chdir(tmp_path)
    lines = {}
    with register_plugin(plugin, name="sample"):
        for path in (tmp_path / "nope.csv", words):
            spec.write_text(
                f"name: s\ndata: {{name: numeric_csv, path: {path}}}\n"
                "loss: {name: softmax}\noptimizer: {name: sgd}\n"
            )
            result = CliRunner().invoke(app, ["validate", str(spec)])
            assert result.exit_code == 2, result.output
            (lines[path.name],) = result.stderr.splitlines()
    column = len("data: {name: numeric_csv, path: ") + 1
    assert lines["nope.csv"] == (
        f"optlab: error: {spec}:2:{column}: data.path: dataset 'numeric_csv': "
        f"{tmp_path / 'nope.csv'}: no such file; pass --set data.path=... with the right path"
    )
    assert lines["words.csv"].startswith(
        f"optlab: error: {spec}:2:{column}: data.path: dataset 'numeric_csv': {words}: cannot "
        "read it: could not convert string"
    ), lines["words.csv"]
    assert all("None" not in line for line in lines.values())
