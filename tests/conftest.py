"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from optlab.data import clear_cache
from optlab.plugin_manager import build_registry
from optlab.registry import Registry


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
