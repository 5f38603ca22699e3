"""The progress of an invocation: a bar over its runs, the current run's epoch and loss."""

from __future__ import annotations

from collections.abc import Callable

from optlab._contract.hookspecs import hookimpl
from optlab._contract.records import EpochReport, RunInfo, RunResult

__all__ = ["Progress"]


class Progress:
    """An observer plugin that drives a rich progress bar over runs and epochs: on stderr in a
    terminal, as a widget in Jupyter (rich's notebook support, with ipywidgets installed);
    nowhere when ``enabled`` is false or the output goes to a file or pipe."""

    def __init__(self, total: int, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True, highlight=False, markup=False)
        enabled = enabled and (self.console.is_terminal or self.console.is_jupyter)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
            transient=True,
        )
        self.task = self.progress.add_task("runs", total=total)
        #: the message of a lost tracking store, which the invocation ends with: a run that
        #: failed with it is not reported twice
        self.lost: Callable[[], str | None] = lambda: None

    def __enter__(self) -> Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def log(self, message: str) -> None:
        self.progress.console.print(message, soft_wrap=True)  # one line, however long

    @hookimpl
    def optlab_run_started(self, run: RunInfo) -> None:
        self.progress.update(self.task, description=f"{run.name}")

    @hookimpl
    def optlab_epoch_ended(self, run: RunInfo, report: EpochReport) -> None:
        val = "" if report.val_accuracy is None else f" val {report.val_accuracy:.3f}"
        self.progress.update(
            self.task, description=f"{run.name} epoch {report.epoch:g} loss {report.loss:.4g}{val}"
        )

    @hookimpl
    def optlab_run_finished(
        self, run: RunInfo, result: RunResult, error: BaseException | None
    ) -> None:
        self.progress.advance(self.task)
        if result.status != "FINISHED" and result.error != self.lost():
            self.log(f"{run.name}: {result.status}: {result.error}")
