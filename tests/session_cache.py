"""Work done once per test session, also when pytest-xdist runs the session in several worker
processes: the first worker that needs it does it under a file lock, the others wait for it
and reuse the result (a session-scoped fixture alone is once per worker)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test session's temporary root: shared by its xdist workers (each worker's own base
    folder is a child of it), the base folder itself without xdist."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def once_per_session(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]
) -> Path:
    """The folder ``name``, filled by ``build(folder)`` once per test session.

    Under xdist the folder lies in the session's temporary root, which the workers share
    (each worker's own base folder is a child of it). A ``build`` that raises leaves no
    result: the next caller tries again.
    """
    root = session_root(tmp_path_factory)
    folder = root / name
    done = folder / ".done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder
