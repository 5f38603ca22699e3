"""optlab: run, compare and extend CS231n Lecture 3 — losses, regularizers and optimizers
for linear classifiers, every run tracked in MLflow.

This module is the public surface, and with :mod:`optlab.testing` (the conformance kit and
test doubles for plugin authors) the only one: every other module is private by name
(``optlab._contract``, ``optlab._spec``, ...) and may change without notice.

- For scripts and notebooks: :func:`run`, :func:`load_spec`, :func:`compare`, and what they
  return (:class:`Results`, :class:`Table`, :class:`Experiment`, :class:`RunSpec`).
- For plugins: ``hookimpl``; the component interfaces (:class:`Loss`, :class:`Regularizer`,
  :class:`Optimizer`, :class:`DatasetSource`, :class:`Backend`, :class:`Monitor`), their
  params (:class:`Params`, :class:`RegularizerParams`, :class:`MinibatchParams`) and records;
  what the training loop hands them (:class:`Objective`, :class:`RawDataset`, ...) and what
  observers are told (:class:`RunInfo`, :class:`EpochReport`, :class:`RunResult`).
- The errors: one hierarchy under :class:`OptlabError` (see :mod:`optlab._errors`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optlab._api import Results, Table, compare, load_spec, run
    from optlab._contract.backend import Backend, BackendRecord
    from optlab._contract.components import (
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
    from optlab._contract.hookspecs import hookimpl
    from optlab._contract.objective import LossParts, Objective
    from optlab._contract.optimizer import MAX_STEPS, MinibatchParams, Optimizer, OptimizerRecord
    from optlab._contract.records import (
        DataSummary,
        EpochReport,
        RunInfo,
        RunResult,
        RunStatus,
        StepHistory,
    )
    from optlab._errors import (
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
        TrackingUnavailable,
    )
    from optlab._meta import __version__
    from optlab._spec.experiment import Experiment, RunSpec

# The public names live in small private modules; they are imported on first use, so that
# `optlab --help` does not pay for numpy and pydantic (PEP 562).
_WHERE = {
    **dict.fromkeys(["Results", "Table", "compare", "load_spec", "run"], "optlab._api"),
    **dict.fromkeys(["Experiment", "RunSpec"], "optlab._spec.experiment"),
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
        "optlab._contract.components",
    ),
    **dict.fromkeys(
        ["MAX_STEPS", "MinibatchParams", "Optimizer", "OptimizerRecord"],
        "optlab._contract.optimizer",
    ),
    **dict.fromkeys(["LossParts", "Objective"], "optlab._contract.objective"),
    **dict.fromkeys(["Backend", "BackendRecord"], "optlab._contract.backend"),
    **dict.fromkeys(
        ["DataSummary", "EpochReport", "RunInfo", "RunResult", "RunStatus", "StepHistory"],
        "optlab._contract.records",
    ),
    **dict.fromkeys(["hookimpl"], "optlab._contract.hookspecs"),
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
            "TrackingUnavailable",
        ],
        "optlab._errors",
    ),
}


if not TYPE_CHECKING:  # type checkers see the imports above: a name not among them is an error

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
    "DataSummary",
    "DatasetRecord",
    "DatasetSource",
    "DivergenceError",
    "EpochReport",
    "Experiment",
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
    "RunInfo",
    "RunInterrupted",
    "RunResult",
    "RunSpec",
    "RunStatus",
    "SpecError",
    "SpecIssue",
    "StepHistory",
    "Table",
    "TrackingError",
    "TrackingUnavailable",
    "__version__",
    "compare",
    "hookimpl",
    "load_spec",
    "run",
]
