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


def once_per_session(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]
) -> Path:
    """The folder ``name``, filled by ``build(folder)`` once per test session.

    Under xdist the folder lies in the session's temporary root, which the workers share
    (each worker's own base folder is a child of it). A ``build`` that raises leaves no
    result: the next caller tries again.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / name
    done = folder / ".done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder
