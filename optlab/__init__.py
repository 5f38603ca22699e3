"""optlab: run, compare and extend CS231n Lecture 3 — losses, regularizers and optimizers
for linear classifiers, every run tracked in MLflow.

This module is the public surface: for scripts and notebooks, :func:`run`, :func:`load_spec`
and :func:`compare` (see :mod:`optlab.api`); for plugins, hook markers, component records,
the interfaces the training loop calls, the objective and the errors.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optlab.api import Results, Table, compare, load_spec, run
    from optlab.backend import Backend, BackendRecord
    from optlab.components import (
        Array,
        ComponentRecord,
        DatasetRecord,
        DatasetSource,
        DataShape,
        Loss,
        LossRecord,
        Monitor,
        Params,
        RawDataset,
        Regularizer,
        RegularizerParams,
        RegularizerRecord,
    )
    from optlab.errors import (
        BackendUnavailable,
        CheckError,
        ComponentError,
        DataError,
        DivergenceError,
        InputError,
        OptlabError,
        OptlabWarning,
        PluginError,
        RunError,
        RunInterrupted,
        SpecError,
        SpecIssue,
        TrackingError,
    )
    from optlab.hookspecs import hookimpl
    from optlab.objective import LossParts, Objective
    from optlab.optimizer import MAX_STEPS, MinibatchParams, Optimizer, OptimizerRecord

# The public names live in small modules; they are imported on first use, so that
# `optlab --help` does not pay for numpy and pydantic (PEP 562).
_WHERE = {
    **dict.fromkeys(
        [
            "Array",
            "ComponentRecord",
            "DataShape",
            "DatasetRecord",
            "DatasetSource",
            "Loss",
            "LossRecord",
            "Monitor",
            "Params",
            "RawDataset",
            "Regularizer",
            "RegularizerParams",
            "RegularizerRecord",
        ],
        "optlab.components",
    ),
    **dict.fromkeys(
        [
            "BackendUnavailable",
            "CheckError",
            "ComponentError",
            "DataError",
            "DivergenceError",
            "InputError",
            "OptlabError",
            "OptlabWarning",
            "PluginError",
            "RunError",
            "RunInterrupted",
            "SpecError",
            "SpecIssue",
            "TrackingError",
        ],
        "optlab.errors",
    ),
    **dict.fromkeys(["Backend", "BackendRecord"], "optlab.backend"),
    **dict.fromkeys(
        ["MAX_STEPS", "MinibatchParams", "Optimizer", "OptimizerRecord"], "optlab.optimizer"
    ),
    **dict.fromkeys(["Results", "Table", "compare", "load_spec", "run"], "optlab.api"),
    "hookimpl": "optlab.hookspecs",
    "LossParts": "optlab.objective",
    "Objective": "optlab.objective",
}


def __getattr__(name: str) -> Any:
    module = "optlab._meta" if name == "__version__" else _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'optlab' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "MAX_STEPS",
    "Array",
    "Backend",
    "BackendRecord",
    "BackendUnavailable",
    "CheckError",
    "ComponentError",
    "ComponentRecord",
    "DataError",
    "DataShape",
    "DatasetRecord",
    "DatasetSource",
    "DivergenceError",
    "InputError",
    "Loss",
    "LossParts",
    "LossRecord",
    "MinibatchParams",
    "Monitor",
    "Objective",
    "Optimizer",
    "OptimizerRecord",
    "OptlabError",
    "OptlabWarning",
    "Params",
    "PluginError",
    "RawDataset",
    "Regularizer",
    "RegularizerParams",
    "RegularizerRecord",
    "Results",
    "RunError",
    "RunInterrupted",
    "SpecError",
    "SpecIssue",
    "Table",
    "TrackingError",
    "__version__",
    "compare",
    "hookimpl",
    "load_spec",
    "run",
]
