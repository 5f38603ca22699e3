"""The suite's own fixtures (tests/conftest.py): where tests and module fixtures run."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def module_folder() -> Path:
    """The working folder module-scoped fixtures run in."""
    return Path.cwd()


def test_a_test_and_the_module_s_fixtures_run_outside_the_checkout(
    tmp_path: Path, module_folder: Path
) -> None:
    """What optlab writes to the working folder (``./mlflow.db``, ``./mlruns``) from a test
    or a module-scoped fixture lands in a tmp folder of its own, not in the checkout."""
    assert Path.cwd() == tmp_path.resolve()
    assert module_folder != tmp_path.resolve() and not module_folder.is_relative_to(ROOT)
    assert module_folder.parent == tmp_path.resolve().parent  # both in the session's basetemp
