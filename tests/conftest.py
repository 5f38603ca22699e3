"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernel_sets import compiled_module

from optlab.data import clear_cache
from optlab.plugin_manager import build_registry
from optlab.registry import Registry
from optlab_plugins.compiled._kernelset import INSTRUCTION_SETS, KernelSet


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


@pytest.fixture(params=INSTRUCTION_SETS)
def kernel(request: pytest.FixtureRequest) -> KernelSet:
    """Each instruction set's kernels of the compiled backend (``optlab_plugins.compiled``),
    where the module was built and the CPU runs them; skipped otherwise."""
    isa = request.param
    module = compiled_module()
    if module is None or isa not in module.isas:
        pytest.skip(f"no {isa} kernel here (not built, or the CPU does not run it)")
    return KernelSet.from_module(module, isa)
