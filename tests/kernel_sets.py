"""The compiled backend's instruction sets, for the tests of its kernels and of the steps that
use them: what the CPU runs, the compiled module if built, and the tolerance of each dtype. The
``kernel`` fixture (tests/conftest.py) gives each instruction set's kernels in turn."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from optlab_plugins.compiled._kernelset import INSTRUCTION_SETS

__all__ = ["compiled_module", "cpu_flags", "cpu_runs", "rtol"]


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    return set(lines[0].split(":", 1)[1].split()) if lines else set()


def cpu_runs() -> list[str]:
    """The instruction sets /proc/cpuinfo says this CPU runs, best first."""
    flags = cpu_flags()
    needs = {"avx512": {"avx512f"}, "avx2": {"avx2", "fma"}}
    return [isa for isa in INSTRUCTION_SETS if needs[isa] <= flags]


def compiled_module() -> ModuleType | None:
    """``optlab_plugins.compiled._kernels``, or ``None`` where it was not built."""
    try:
        return import_module("optlab_plugins.compiled._kernels")
    except ImportError:
        return None


def rtol(dtype: Any) -> float:
    """Relative tolerance of a result against numpy's: 1e-10 in float64, 1e-5 in float32."""
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-5
