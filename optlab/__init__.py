"""optlab: run, compare and extend CS231n Lecture 3 — losses, regularizers and optimizers
for linear classifiers, every run tracked in MLflow.

This module is the public surface a plugin uses: hook markers, component records, the
interfaces the training loop calls, the objective and the errors.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from optlab.components import (
    Array,
    ComponentRecord,
    DatasetRecord,
    DatasetSource,
    Loss,
    LossRecord,
    Monitor,
    Optimizer,
    OptimizerRecord,
    Params,
    RawDataset,
    Regularizer,
    RegularizerParams,
    RegularizerRecord,
)
from optlab.errors import (
    CheckError,
    ComponentError,
    DataError,
    DivergenceError,
    InputError,
    OptlabError,
    PluginError,
    RunError,
    RunInterrupted,
    SpecError,
    SpecIssue,
    TrackingError,
)
from optlab.hookspecs import hookimpl
from optlab.objective import LossParts, Objective

try:
    __version__ = version("optlab")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"

__all__ = [
    "Array",
    "CheckError",
    "ComponentError",
    "ComponentRecord",
    "DataError",
    "DatasetRecord",
    "DatasetSource",
    "DivergenceError",
    "InputError",
    "Loss",
    "LossParts",
    "LossRecord",
    "Monitor",
    "Objective",
    "Optimizer",
    "OptimizerRecord",
    "OptlabError",
    "Params",
    "PluginError",
    "RawDataset",
    "Regularizer",
    "RegularizerParams",
    "RegularizerRecord",
    "RunError",
    "RunInterrupted",
    "SpecError",
    "SpecIssue",
    "TrackingError",
    "__version__",
    "hookimpl",
]
