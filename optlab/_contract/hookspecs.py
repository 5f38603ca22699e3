"""The whole plugin contract: one documented function per hook.

A plugin is a module (or object) with functions decorated by :data:`optlab.hookimpl`, named
after the hooks below, and listed under the ``optlab`` entry-point group of its distribution::

    [project.entry-points.optlab]
    my_plugin = "my_package.optlab_plugin"

Registration hooks are called once, when the registry is built, and return lists of records.
Observer hooks are coarse: once per run start, per evaluation point (epoch) and per run end.
Nothing in the per-step training path is a hook call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from optlab._contract.backend import BackendRecord
    from optlab._contract.components import DatasetRecord, LossRecord, RegularizerRecord
    from optlab._contract.optimizer import OptimizerRecord
    from optlab._contract.records import EpochReport, RunInfo, RunResult

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "optlab"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def optlab_register_losses() -> list[LossRecord]:  # type: ignore[empty-body]
    """Return the loss functions this plugin provides, as :class:`~optlab.LossRecord` s."""


@hookspec
def optlab_register_regularizers() -> list[RegularizerRecord]:  # type: ignore[empty-body]
    """Return the regularizers this plugin provides, as :class:`~optlab.RegularizerRecord` s."""


@hookspec
def optlab_register_optimizers() -> list[OptimizerRecord]:  # type: ignore[empty-body]
    """Return the optimizers this plugin provides, as :class:`~optlab.OptimizerRecord` s."""


@hookspec
def optlab_register_datasets() -> list[DatasetRecord]:  # type: ignore[empty-body]
    """Return the datasets this plugin provides, as :class:`~optlab.DatasetRecord` s."""


@hookspec
def optlab_register_backends() -> list[BackendRecord]:  # type: ignore[empty-body]
    """Return the numerical backends this plugin provides, as :class:`~optlab.BackendRecord` s
    (a backend computes the products of training, see :class:`~optlab.Backend`)."""


@hookspec
def optlab_run_started(run: RunInfo) -> None:
    """A run is about to train: its name, resolved spec and data summary are in ``run``."""


@hookspec
def optlab_epoch_ended(run: RunInfo, report: EpochReport) -> None:
    """An evaluation point was reached: ``report`` holds the steps since the last one
    (examples processed, loss, data loss, reg loss) and the accuracies measured now."""


@hookspec
def optlab_run_finished(run: RunInfo, result: RunResult, error: BaseException | None) -> None:
    """A run ended: ``result.status`` is FINISHED, FAILED or KILLED; ``error`` is the cause
    (or ``None``). Whatever was measured before the end is in ``result``."""
