"""Every malformed spec in tests/bad_specs/ fails with one located SpecError.

Each file's first line is ``# expect: <substring of the expected message>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from spec_testplugins import make_registry

from optlab._contract.registry import Registry
from optlab._errors import SpecError
from optlab._spec.load import load_experiment

CORPUS = Path(__file__).parent / "bad_specs"
FILES = sorted(CORPUS.glob("*.yaml"))


@pytest.fixture(scope="module")
def registry() -> Registry:
    return make_registry()


def _expectation(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    match = re.fullmatch(r"# expect: (.+)", first)
    assert match, f"{path.name}: first line must be '# expect: <message substring>'"
    return match.group(1)


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 40


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_spec_is_reported_located(path: Path, registry: Registry) -> None:
    expected = _expectation(path)
    with pytest.raises(SpecError) as info:
        load_experiment(path, registry=registry)
    text = str(info.value)
    assert expected in text, f"{path.name}: {expected!r} not in:\n{text}"
    matching = [i for i in info.value.issues if expected in str(i)]
    assert matching, text
    for issue in matching:
        assert issue.file == str(path)
        assert issue.line >= 1 and issue.column >= 1, str(issue)
        assert str(issue).startswith(f"{path}:{issue.line}:{issue.column}: ")
    # one line per issue, no tracebacks or pydantic boilerplate
    for line in text.splitlines():
        assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", line), line
        assert "pydantic" not in line and "Input should" not in line, line
