"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from optlab.data import clear_cache
from optlab.plugin_manager import build_registry
from optlab.registry import Registry

# new tracking stores are copies of an empty store kept in the user's cache
# (optlab.tracking.store.template_path): the tests keep theirs in a folder of their own, shared
# by the xdist workers and the processes they start, instead of the user's ~/.cache
os.environ.setdefault(
    "XDG_CACHE_HOME", os.path.join(tempfile.gettempdir(), f"optlab-tests-cache-{os.getuid()}")
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    """A registry built from the installed plugins (the bundled datasets among them)."""
    return build_registry()[1]


@pytest.fixture
def fresh_data_cache() -> Iterator[None]:
    """Each test loads its data anew: the per-process dataset cache is cleared around it."""
    clear_cache()
    yield
    clear_cache()
