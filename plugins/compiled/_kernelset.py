"""Loading the compiled module and choosing its instruction set.

``_kernels`` (``_kernels.c``) is built by ``pip install`` where there is a C compiler on
x86-64, with kernels for two instruction sets (:data:`INSTRUCTION_SETS`); its ``isas`` names
those the CPU runs, best first.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optlab import Array

__all__ = ["ENV_VAR", "INSTRUCTION_SETS", "KernelSet", "choose_instruction_set", "load"]

#: Environment variable: ``0`` turns the compiled kernels off; an instruction set's name caps
#: the kernels at that one (``avx2``); unset, empty or ``1``: the best the CPU runs.
ENV_VAR = "OPTLAB_KERNELS"
#: The instruction sets the kernels are built for, best first.
INSTRUCTION_SETS: tuple[str, ...] = ("avx512", "avx2")


@dataclass(frozen=True)
class KernelSet:
    """One instruction set's kernels (see ``_kernels.c`` for their contracts)."""

    name: str
    add_weight_grad: Callable[[Array, Array, Array], None]
    scores: Callable[[Array, Array, Array], None]
    step: Callable[..., float]
    add_transposed: Callable[[Array, Array, Array], None]

    @classmethod
    def from_module(cls, module: Any, isa: str) -> KernelSet:
        """The kernels of instruction set ``isa`` in the compiled module."""
        return cls(
            isa,
            getattr(module, f"add_weight_grad_{isa}"),
            getattr(module, f"scores_{isa}"),
            getattr(module, f"step_{isa}"),
            module.add_transposed,
        )


def choose_instruction_set(setting: str, runnable: Sequence[str]) -> str | None:
    """The instruction set the kernels use.

    Parameters
    ----------
    setting : str
        The value of :data:`ENV_VAR`: ``""`` or ``"1"`` for the best in ``runnable``, ``"0"``
        for none, or a name from :data:`INSTRUCTION_SETS` for the best no better than it.
    runnable : sequence of str
        The instruction sets the CPU runs (and the module was built with).

    Returns
    -------
    str or None
        ``None`` when the kernels are off or none runs. An unknown ``setting`` warns and is
        taken as ``""``.
    """
    value = setting.strip().lower()
    if value == "0":
        return None
    if value in ("", "1"):
        allowed = INSTRUCTION_SETS
    elif value in INSTRUCTION_SETS:
        allowed = INSTRUCTION_SETS[INSTRUCTION_SETS.index(value) :]
    else:
        warnings.warn(
            f"{ENV_VAR}={setting!r} is not one of 0, 1, {', '.join(INSTRUCTION_SETS)}; "
            "using the best instruction set the CPU runs",
            RuntimeWarning,
            stacklevel=2,
        )
        allowed = INSTRUCTION_SETS
    return next((isa for isa in allowed if isa in runnable), None)


def load() -> KernelSet | str:
    """The kernels to use, or why there are none (one line)."""
    try:
        module = importlib.import_module("optlab_plugins.compiled._kernels")
    except ImportError:
        return "the compiled module was not built (no C compiler at install, or not x86-64)"
    setting = os.environ.get(ENV_VAR, "")
    isa = choose_instruction_set(setting, module.isas)
    if isa is not None:
        return KernelSet.from_module(module, isa)
    if setting.strip() == "0":
        return f"{ENV_VAR}=0 turns the compiled kernels off"
    built = ", ".join(INSTRUCTION_SETS)
    return f"this CPU runs none of the kernels' instruction sets ({built})"
