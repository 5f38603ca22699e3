"""One ``optlab run`` invocation: tracking store, parent run, progress, runs, summary."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from optlab._contract.plugin_manager import GuardedHooks, get_plugin_manager
from optlab._contract.records import RunInfo, RunResult
from optlab._errors import InputError, RunInterrupted, TrackingError
from optlab._execution.executor import Elsewhere, Executor, Job, Outcome
from optlab._execution.in_process import InProcess
from optlab._execution.progress import Progress
from optlab._spec.experiment import Experiment, RunSpec
from optlab._tracking.no_room import check_free_space
from optlab._training.data import PreparedData
from optlab._training.describe import run_key
from optlab._training.monitor import stop_flag, stop_on_signals
from optlab._training.preflight import data_key, preflight

__all__ = ["NOTHING_STARTED", "Invocation", "git_tags"]

#: What an interrupt before the first run says (the CLI's, too, when no invocation was made).
NOTHING_STARTED = "interrupted before any run started: nothing is recorded"


def git_tags(spec_path: str) -> dict[str, str]:
    """``optlab.git_commit`` and ``optlab.git_dirty`` when the spec lives in a git checkout."""
    folder = Path(spec_path).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"optlab.git_commit": commit, "optlab.git_dirty": str(bool(dirty)).lower()}


class _Claims:
    """The invocation's run claims (:mod:`optlab._tracking.claims`), by run name: which runs
    it trains, which it leaves to another live invocation."""

    def __init__(self, claims: Any, prepared: dict[str, PreparedData]) -> None:
        self.claims = claims
        self.prepared = prepared
        self.keys: dict[str, str] = {}  # run name -> run key

    def acquire(self, runs: Sequence[RunSpec]) -> tuple[list[RunSpec], list[Elsewhere]]:
        for run in runs:
            data = self.prepared[data_key(run)]
            self.keys[run.name] = run_key(run.name, run.resolved, data.summary.sha256)
        taken = self.claims.acquire({self.keys[run.name]: run.name for run in runs})
        mine = [run for run in runs if self.keys[run.name] not in taken]
        others = [
            Elsewhere(run.name, str(t.holder), finished=t.finished_run is not None)
            for run in runs
            if (t := taken.get(self.keys[run.name])) is not None
        ]
        return mine, others

    def release(self, name: str, *, later: bool = False) -> None:
        if name in self.keys:
            self.claims.release(self.keys[name], later=later)


@contextlib.contextmanager
def _second_ctrl_c_first() -> Iterator[None]:
    """An exception raised after a second Ctrl-C is that Ctrl-C's ``KeyboardInterrupt``,
    which a library turned into its own error (C code that calls Python does: matplotlib's
    ft2font made it ``ImportError: initialization failed``): it ends the invocation as a
    second Ctrl-C, its parent run KILLED, not FAILED with the library's error."""
    try:
        yield
    except Exception as error:
        if not stop_flag.forced or isinstance(error, RunInterrupted):
            raise
        raise KeyboardInterrupt from error


class Invocation:
    """Everything ``optlab run`` does between validating the spec and printing the table.

    ``command`` (how to start it again) and ``resume_command`` (how to finish its runs, by
    default ``command`` with ``--resume``) are quoted in messages, and the labels name the
    options as the user passed them (``--resume``, ``--no-track``, ``--tracking-uri``; the
    Python API passes its own: ``resume=True``, ``track=False``, ``tracking_uri``).
    """

    def __init__(
        self,
        experiment: Experiment,
        *,
        spec_path: str,
        tracking_uri: str | None = None,
        track: bool = True,
        resume: bool = False,
        fail_fast: bool = False,
        quiet: bool = False,
        executor: Executor | None = None,
        command: str = "optlab run SPEC",
        resume_command: str | None = None,
        resume_label: str = "--resume",
        no_track_label: str = "--no-track",
        uri_label: str = "--tracking-uri",
    ) -> None:
        self.experiment = experiment
        self.spec_path = spec_path
        self.tracking_uri = tracking_uri
        self.track = track and experiment.tracking.enabled
        if resume and not self.track:  # it would train every run again, without a word
            off = no_track_label if not track else "the spec's tracking: {enabled: false}"
            raise InputError(
                f"{resume_label} skips the runs the tracking store has FINISHED, and this "
                f"invocation tracks nothing ({off}): drop {resume_label}, or track the runs"
            )
        self.resume = resume
        self.fail_fast = fail_fast
        self.quiet = quiet
        #: where the runs execute (the caller closes it): this process by default
        self.executor = executor if executor is not None else InProcess()
        #: how to start this invocation again (without --resume), and how to finish its
        #: runs, for messages
        self.command = command
        self.resume_command = resume_command or f"{command} {resume_label}"
        self.uri_label = uri_label
        #: what :meth:`run` returned, once it has
        self.outcome: Outcome | None = None
        self.tracker: Any = None
        self.claims: _Claims | None = None
        self.started_at: float | None = None
        #: the signal that stopped the invocation (``"SIGINT"``, ``"SIGTERM"``), if one did
        self.stopped_by: str | None = None
        #: the MLflow run ids of the FINISHED runs of earlier invocations that ``--resume``
        #: reuses instead of training them
        self.reused: list[str] = []
        #: the same runs' ids by run key
        self._reused_ids: dict[str, str] = {}
        #: the run keys of the plan, in its order
        self.plan: list[str] = []
        self._drawing: tuple[list[str], Future[bytes]] | None = None

    def _base_tags(self) -> dict[str, str]:
        path = self.spec_path  # a file's as an absolute path, whatever the working folder
        spec_file = path if path.startswith("<") else str(Path(path).resolve())
        tags = {"optlab.spec_hash": self.experiment.spec_hash, "optlab.spec_file": spec_file}
        tags.update(git_tags(self.spec_path))
        return tags

    def _uri(self) -> str:
        from optlab._tracking import resolve_tracking_uri

        return resolve_tracking_uri(self.tracking_uri, self.experiment.tracking.uri)

    def run(self) -> Outcome:
        """Preflight, open the store, run everything under one parent run."""
        self.started_at = time.time()
        try:
            self.outcome = self._run(self.executor)
        finally:
            forced, self.stopped_by = stop_flag.forced, stop_flag.reason
            stop_flag.clear()  # the interrupt is this invocation's: the next one starts afresh
        if forced:
            # a second Ctrl-C whose KeyboardInterrupt was lost on the way (raised where the
            # code it interrupted swallowed it, say inside a C callback while drawing) still
            # ends the invocation as a second Ctrl-C does
            raise KeyboardInterrupt
        return self.outcome

    def _run(self, executor: Executor) -> Outcome:
        prepared = preflight(self.experiment.runs)  # bad data or problem: exit 2, nothing logged
        finished = self._open_store()
        outcome = Outcome()
        todo: list[RunSpec] = []
        self.plan, self.reused, self._reused_ids = [], [], {}
        for run in self.experiment.runs:
            key = run_key(run.name, run.resolved, prepared[data_key(run)].summary.sha256)
            self.plan.append(key)
            if key in finished:
                outcome.skipped.append(run.name)
                self.reused.append(finished[key])
                self._reused_ids[key] = finished[key]
            else:
                todo.append(run)
        base_tags = self._base_tags()
        done: list[tuple[RunInfo, RunResult]] = []  # the reused runs, as the store has them
        if self.reused:
            from optlab._tracking.readback import read_runs

            done = read_runs(self.tracker.client, self.reused, self.experiment.name)
            if not todo:  # nothing left to run: no parent run is logged
                outcome.results = self._in_plan_order(done)
                return outcome
        with contextlib.suppress(RunInterrupted):
            self._run_under_parent(executor, todo, prepared, base_tags, outcome, done)
        return outcome

    def run_ids(self) -> dict[str, str]:
        """The MLflow run id of each run of the outcome, by run key: those it started and
        those ``--resume`` reused (none untracked)."""
        started = self.tracker.run_ids if self.tracker is not None else {}
        return {**self._reused_ids, **started}

    def _open_store(self) -> dict[str, str]:
        """Open the tracking store (when tracking); with ``--resume``, its FINISHED runs (run
        key -> MLflow run id)."""
        if not self.track:
            return {}
        from optlab._tracking import Tracker

        uri = self._uri()
        check_free_space(uri, uri_label=self.uri_label)
        self.tracker = Tracker(
            uri,
            self.experiment.name,
            plots=self.experiment.tracking.figures,
            description=self.experiment.description,
            step_points=self.experiment.tracking.step_points,
            interrupted=lambda: stop_flag.reason,
            resume=self.resume_command,
            uri_label=self.uri_label,
        )
        if not self.resume:
            return {}
        from optlab._tracking.resume import finished_runs, mark_stale_running

        mark_stale_running(self.tracker)
        return finished_runs(self.tracker)

    def _run_under_parent(
        self,
        executor: Executor,
        todo: list[RunSpec],
        prepared: dict[str, PreparedData],
        base_tags: dict[str, str],
        outcome: Outcome,
        done: list[tuple[RunInfo, RunResult]],
    ) -> None:
        """Run ``todo`` on ``executor`` with signal handling, progress and (when tracking) a
        parent run and run claims, filling ``outcome`` with their results and those of the
        runs ``done`` already (``--resume``: they are in the table and the comparison too);
        raises :class:`RunInterrupted` (which ends the parent run as KILLED) when
        interrupted."""
        pm, registry = get_plugin_manager()
        progress = Progress(len(self.experiment.runs), enabled=not self.quiet)
        stop_flag.clear()  # before the handlers: a Ctrl-C as they are installed is kept
        with ExitStack() as stack:
            stack.enter_context(stop_on_signals())
            stack.enter_context(progress)
            pm.register(progress, name="optlab.progress")
            stack.callback(pm.unregister, name="optlab.progress")
            if self.tracker is not None:
                self._open_parent(stack, pm, progress, prepared, base_tags)
            stack.enter_context(_second_ctrl_c_first())  # seen before the parent run ends
            job = Job(
                experiment=self.experiment.name,
                observer=GuardedHooks(pm, registry),
                registry=registry,
                base_tags=base_tags,
                prepared=prepared,
                claims=self.claims,
                fail_fast=self.fail_fast,
                should_stop=self._store_gone,
                log=progress.log,
                render=bool(self.tracker is not None and self.tracker.plots),
                on_all_done=lambda results: self._draw_comparison(executor, [*results, *done]),
            )
            for ended in executor.run(todo, job):
                if isinstance(ended, Elsewhere):
                    outcome.elsewhere.append(ended)
                else:
                    outcome.results.append(ended)
            # interrupted: a run was KILLED, or a stop left runs that never started
            ran = len(outcome.results) + len(outcome.elsewhere)
            outcome.interrupted = any(r.status == "KILLED" for _, r in outcome.results) or (
                stop_flag.reason is not None and ran < len(todo)
            )
            outcome.results = self._in_plan_order([*outcome.results, *done])
            if self.tracker is not None and outcome.results:
                self.tracker.log_comparison(
                    outcome.results, self._drawn_comparison(outcome), self._reused_ids
                )
            if outcome.elsewhere:
                with contextlib.suppress(TrackingError):  # a nicety: the runs are recorded
                    self._note_finished_elsewhere(outcome)
            if outcome.interrupted:
                raise RunInterrupted(f"interrupted by {stop_flag.reason or 'a signal'}")

    def _open_parent(
        self,
        stack: ExitStack,
        pm: Any,
        progress: Progress,
        prepared: dict[str, PreparedData],
        base_tags: dict[str, str],
    ) -> None:
        """Register the tracker, start the parent run and take the run claims, each ended by
        ``stack``."""
        from optlab._tracking import NOTE_TAG
        from optlab._tracking.claims import RunClaims
        from optlab._tracking.tracker import PLAN_TAG, REUSED_TAG, list_tags

        tracker = self.tracker
        progress.lost = lambda: tracker.unreachable
        pm.register(tracker, name="optlab.tracking")
        stack.callback(pm.unregister, name="optlab.tracking")
        parent_tags = dict(base_tags)
        if self.experiment.description:  # the parent run's description in MLflow
            parent_tags[NOTE_TAG] = self.experiment.description
        # the plan's order, which `optlab compare` shows the runs in (start order is another
        # after --resume, or with --jobs), and the finished runs --resume reuses, so that it
        # shows the whole plan (on the parent only: the runs do not reuse them)
        parent_tags.update(list_tags(PLAN_TAG, self.plan))
        parent_tags.update(list_tags(REUSED_TAG, self.reused))
        parent_id = stack.enter_context(
            tracker.parent(self.experiment.name, parent_tags, self.started_at)
        )
        # a run is claimed before it trains: another live invocation on this store does not
        # train it too (two --resume at once)
        since = None if self.resume else self.started_at
        claims = RunClaims(tracker, parent_id, since=since, log=progress.log)
        self.claims = _Claims(stack.enter_context(claims), prepared)
        stack.callback(setattr, self, "claims", None)

    def _note_finished_elsewhere(self, outcome: Outcome) -> None:
        """Name on the parent run the runs left to other invocations, so that `optlab compare`
        shows the plan: those FINISHED by now by their ids (as ``--resume`` names the runs it
        reuses), those still training by their run keys (it shows each one's latest run)."""
        from mlflow.entities import RunTag

        from optlab._tracking.tracker import LEFT_TAG, REUSED_TAG, list_tags

        claims, tracker = self.claims, self.tracker
        if claims is None or tracker is None or tracker.parent_run_id is None:
            return
        keys = [claims.keys[e.name] for e in outcome.elsewhere if e.name in claims.keys]
        done = claims.claims.finished_elsewhere(keys)
        left = [key for key in keys if key not in done]
        tags = list_tags(LEFT_TAG, left)
        if done:
            outcome.elsewhere = [
                dataclasses.replace(e, finished=e.finished or claims.keys.get(e.name) in done)
                for e in outcome.elsewhere
            ]
            reused = [*self.reused]
            reused += [r for key in keys if (r := done.get(key)) and r not in reused]
            tags.update(list_tags(REUSED_TAG, reused))
        if tags:
            tracker.call(
                "name the runs left to others",
                tracker.client.log_batch,
                tracker.parent_run_id,
                tags=[RunTag(k, v) for k, v in tags.items()],
            )

    def _in_plan_order(
        self, results: list[tuple[RunInfo, RunResult]]
    ) -> list[tuple[RunInfo, RunResult]]:
        """``results`` in the order of the plan's runs (workers end in any order)."""
        order = {run.name: i for i, run in enumerate(self.experiment.runs)}
        return sorted(results, key=lambda pair: order[pair[0].name])

    def _draw_comparison(
        self, executor: Executor, results: list[tuple[RunInfo, RunResult]]
    ) -> None:
        """Every run has ended: the executor draws the comparison (where it can) while the
        results are written."""
        if self.tracker is not None and self.tracker.plots:
            ordered = self._in_plan_order(results)
            figure = executor.render_comparison(ordered)
            if figure is not None:
                self._drawing = ([info.name for info, _ in ordered], figure)

    def _drawn_comparison(self, outcome: Outcome) -> bytes | None:
        """``comparison.png`` as a worker drew it, if it did and for exactly these runs."""
        drawing, self._drawing = self._drawing, None
        if drawing is None:
            return None
        names, figure = drawing
        if names != [info.name for info, _ in outcome.results]:
            figure.cancel()
            return None
        try:
            png: bytes = figure.result(timeout=60)
        except Exception:  # drawn here instead
            return None
        return png

    def _store_gone(self) -> bool:
        return bool(self.tracker is not None and self.tracker.unreachable)

    def print_summary(self, outcome: Outcome, *, table: bool = True) -> None:
        """The comparison table, failures, and where to look next.

        With ``table=False`` (``--json``, whose rows are the output) only the notes, on
        stderr: what was skipped or not run, what to run next; the failures and the runs
        left to another invocation were said on stderr as they happened.
        """

        from optlab._report.rows import comparison_rows
        from optlab._report.table import plain_console, render_table

        console = plain_console(stderr=not table)
        if table and outcome.results:
            console.print(render_table(comparison_rows(outcome.results)))
        if outcome.skipped:
            console.print(f"skipped {len(outcome.skipped)} run(s) already finished (--resume)")
        groups: dict[tuple[str, bool], list[str]] = {}
        for other in outcome.elsewhere if table else ():
            groups.setdefault((other.by, other.finished), []).append(other.name)
        for (by, finished), names in groups.items():
            what = "finished them meanwhile" if finished else "is training them"
            console.print(
                f"{len(names)} run(s) not run here: another invocation {what} ({by}): "
                f"{', '.join(names)}",
                soft_wrap=True,
            )
        for info, result in outcome.failed if table else ():
            console.print(f"{info.name}: {result.status}: {result.error}")
        ran = {info.name for info, _ in outcome.results} | {e.name for e in outcome.elsewhere}
        not_run = [run.name for run in self.experiment.runs if run.name not in ran]
        if self.fail_fast and not_run and not outcome.interrupted:
            then = f"; run them with `{self.resume_command}`" if self.tracker else ""
            console.print(
                f"{len(not_run)} run(s) not run (--fail-fast stopped at the first failed run): "
                f"{', '.join(not_run)}{then}",
                soft_wrap=True,
            )
        if outcome.interrupted:
            what = f"interrupted: finish the remaining runs with `{self.resume_command}`"
            console.print(what, soft_wrap=True)
        if self.tracker is not None:
            compare = self._commands("compare", self.experiment.name)
            console.print(
                f"tracked in {self.tracker.uri} (experiment '{self.experiment.name}'); "
                f"view: {self._ui()}, or {compare}",
                soft_wrap=True,
            )

    def _ui(self) -> str:
        """Where to see the runs in the MLflow UI: a tracking server serves it itself
        (``optlab ui`` refuses one), any other store through ``optlab ui``."""
        uri = self.tracker.uri if self.tracker is not None else ""
        if urlsplit(uri).scheme.lower() in ("http", "https"):
            return f"{uri} in a browser"
        return self._commands("ui")

    def _commands(self, *words: str) -> str:
        """``optlab WORDS``, with ``--tracking-uri`` unless the store is the default one."""
        import shlex

        from optlab._tracking import resolve_tracking_uri

        command = ["optlab", *words]
        if self.tracker is not None and self.tracker.uri != resolve_tracking_uri(None, None):
            command += ["--tracking-uri", self.tracker.uri]
        return shlex.join(command)

    def interrupted_line(self) -> str:
        """One line for a Ctrl-C that ended the invocation other than by stopping a run (a
        second Ctrl-C, or one before the runs started or after they had ended): what is saved,
        and what to run next."""
        if not self.track:
            return "interrupted; nothing is recorded (tracking is off)"
        if self.tracker is None:
            return f"{NOTHING_STARTED}; start again with `{self.command}`"
        outcome = self.outcome
        if outcome is None:  # the runs recorded so far, and those --resume reuses
            finished = self.tracker.ended.get("FINISHED", 0) + len(self.reused)
            others = finished < len(self.experiment.runs)
        else:  # the invocation had ended: every run it ran is recorded
            finished = len(outcome.results) - len(outcome.failed)  # the reused ones among them
            others = bool(outcome.failed or outcome.interrupted)
        saved = (
            f"{finished or 'no'} run{'' if finished == 1 else 's'} FINISHED and saved in "
            f"{self.tracker.uri} (experiment '{self.experiment.name}')"
        )
        if others:  # (with every run FINISHED, --resume would have nothing to do)
            return f"interrupted: {saved}; finish the others with `{self.resume_command}`"
        see = self._commands("compare", self.experiment.name)
        return f"interrupted after every run had ended: {saved}; see them with `{see}`"
