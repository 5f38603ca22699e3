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
