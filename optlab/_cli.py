"""The ``optlab`` command: parse, call, print.

Exit status: 0 success, 1 a run failed, 2 bad input (spec, data, plugin, tracking store, usage).
Errors a user can cause print one line per problem and no traceback.

Its size (about 500 lines) is one Typer function per command (run, validate, schema, plugins,
components, check, compare, landscape, ui) with its help text; each calls a layer below.
"""

from __future__ import annotations

import atexit
import gc
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from optlab._errors import OptlabError

__all__ = ["app", "main"]

#: click's exceptions as Typer raises them (Typer 0.29 has its own copy of click, whose
#: exceptions are not those of the ``click`` package)
_clicks: Any = sys.modules[typer.BadParameter.__module__]


class _UsageLine(_clicks.UsageError):  # type: ignore[misc]
    """A usage error said as optlab says every error a user can cause: one line on stderr
    (where, what is wrong, what to do), exit status 2."""

    def show(self, file: Any = None) -> None:
        typer.echo(self.message, file=file, err=True)


def _either(names: list[str]) -> str:
    """``--jobs``, ``--jobs or --json``, ``a, b or c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


#: click 8.4's error for an unknown command (Typer 0.29 raises a plain UsageError instead)
_NO_SUCH_COMMAND: Any = getattr(_clicks, "NoSuchCommand", ())
_SUGGESTED = re.compile(r"(.*?)\.? Did you mean (.+)\?")


def _one_line(error: Any, where: str) -> Any:
    """``error`` (click's: a missing argument, an unknown option or command, a bad value) as
    one line, with the prefix of every other error a user can cause: ``optlab: error: run: no
    such option --jobz (did you mean --jobs or --json?); see optlab run --help`` (the group's
    own: ``optlab: error: no such command 'rnu' ...; see optlab --help``). Click's own form is
    three lines or more (the usage, a hint, a blank line, the error). ``where`` is the
    command, when the error does not know it."""
    if isinstance(error, _UsageLine) or type(error).__name__ == "NoArgsIsHelpError":
        return error  # said already, or the help that `optlab` alone shows
    if error.ctx is not None:
        where = error.ctx.command_path
    if isinstance(error, _clicks.NoSuchOption):
        what = f"no such option {error.option_name}"
    elif isinstance(error, _NO_SUCH_COMMAND):
        what = f"no such command '{error.command_name}'"
    else:
        text = "; ".join(line.strip() for line in error.format_message().splitlines() if line)
        what = text[:1].lower() + text[1:].rstrip(".")
    # the close matches click or Typer found (Typer words them "... Did you mean 'run'?")
    alternatives = list(getattr(error, "possibilities", None) or [])
    suggested = _SUGGESTED.fullmatch(what)
    if suggested is not None:
        what, alternatives = suggested[1], [s.strip() for s in suggested[2].split(",")]
    if alternatives:
        what += f" (did you mean {_either(alternatives)}?)"
    command = " ".join(where.split()[1:])  # "run"; "" for the group itself
    at = f"{command}: " if command else ""
    line = _UsageLine(f"optlab: error: {at}{what}; see {where} --help", ctx=error.ctx)
    line.exit_code = error.exit_code
    return line


class _OneLineUsage:
    """Usage errors met while parsing a command's arguments are one line (:func:`_one_line`),
    named by the command's path (``optlab run``; ``optlab`` for the group itself)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)  # type: ignore[misc]
        except _clicks.UsageError as error:
            where = " ".join(p for p in (parent and parent.command_path, info_name) if p)
            raise _one_line(error, where or "optlab") from None


class _Command(_OneLineUsage, TyperCommand):
    """A command whose usage line names its arguments plainly (``optlab run [OPTIONS] SPEC``,
    ``optlab validate [OPTIONS] SPEC...``): Typer 0.29 writes a required argument in braces
    (``{SPEC}``, ``{SPEC}...``), which reads as a choice.
    Its usage errors are one line (:func:`_one_line`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [re.sub(r"^\{(.*)\}(\.\.\.)?$", r"\1\2", p) for p in pieces]

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _clicks.UsageError as error:
            raise _one_line(error, ctx.command_path) from None


class _Group(_OneLineUsage, TyperGroup):
    """The ``optlab`` command itself: its usage errors (an unknown command or option) are one
    line too."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except _clicks.UsageError as error:
            raise _one_line(error, ctx.command_path) from None


app = typer.Typer(
    cls=_Group,
    name="optlab",
    help="Run, compare and extend CS231n Lecture 3: losses, regularizers and optimizers "
    "for linear classifiers, every run tracked in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])

#: exit statuses of an invocation that a signal ended (its runs recorded KILLED): 128 + the
#: signal's number, as a shell reports a process that the signal ended
INTERRUPTED = 130
TERMINATED = 143

SpecArg = Annotated[
    Path, typer.Argument(help="Experiment spec file (YAML).", show_default=False, metavar="SPEC")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY=VALUE", help="Override a spec value: key.path=value (repeatable)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
UriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
    ),
]
SpecUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: the spec's tracking.uri, else "
        "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
    ),
]
JobsOpt = Annotated[
    int,
    typer.Option(
        "--jobs", "-j", min=1, metavar="N", help="Runs at once, in local worker processes."
    ),
]
ExecutorOpt = Annotated[
    str,
    typer.Option(metavar="NAME", help="Where runs execute: local, or dask (needs --scheduler)."),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786."),
]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"optlab {version('optlab')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print optlab's version and exit.",
        ),
    ] = None,
) -> None:
    """Run, compare and extend CS231n Lecture 3: losses, regularizers and optimizers for
    linear classifiers, every run tracked in MLflow."""


def _err(message: str) -> None:
    for line in message.splitlines() or [message]:
        typer.echo(f"optlab: error: {line}" if not line.startswith(" ") else line, err=True)


def handles_errors(fn: F) -> F:
    """Turn :class:`OptlabError` into its message and exit status, with no traceback; show
    each :class:`~optlab._errors.OptlabWarning` as one line on stderr."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from optlab._errors import OptlabWarning

        try:
            with warnings.catch_warnings():  # restored afterwards (a notebook keeps its own)
                warnings.simplefilter("always", OptlabWarning)
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except OptlabError as exc:
            _err(str(exc))
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _load(spec: Path, overrides: list[str] | None) -> Any:
    """The experiment of ``spec``, read after a warning line per plugin that failed to load
    (a spec naming one of its components would otherwise hear only of an unknown name)."""
    from optlab._contract.plugin_manager import get_registry
    from optlab._errors import OptlabWarning

    for info in get_registry().plugins.values():
        if info.status == "failed":
            warnings.warn(
                OptlabWarning(
                    f"plugin {info.label} failed: {info.reason} (optlab plugins for details)"
                ),
                stacklevel=1,
            )
    return _read(spec, overrides)


def _read(spec: Path, overrides: list[str] | None) -> Any:
    """The experiment of ``spec`` (``overrides``: ``--set`` values)."""
    from optlab._spec.load import load_experiment

    return load_experiment(spec, overrides or [])


def _console(stderr: bool = False) -> Any:
    from optlab._report.table import plain_console

    return plain_console(stderr)


# ------------------------------------------------------------------------------------ validate
@app.command(cls=_Command)
@handles_errors
def validate(
    specs: Annotated[
        list[Path],
        typer.Argument(
            help="Experiment spec files (YAML): one or more.", show_default=False, metavar="SPEC"
        ),
    ],
    set_: SetOpt = None,
) -> None:
    """Validate specs and their data, and print each plan (runs, axes, resolved components).

    Everything ``optlab run`` would refuse before training is refused here too: the data are
    checked to be there and readable and the sizes to fit, reading only headers and shapes
    where the dataset can. With several files (``optlab validate experiments/*.yaml``), each
    plan follows a line naming its file, every file is checked whatever the others hold, and
    the exit status is that of the worst (2 when any is refused); ``--set`` applies to each.
    """
    from optlab._contract.plugin_manager import get_registry
    from optlab._errors import OptlabWarning
    from optlab._spec.load import describe_plan
    from optlab._training.preflight import preflight

    def fault(line: str) -> None:  # a plugin's, not the spec's: its run will fail
        warnings.warn(OptlabWarning(f"{line}; this run will fail"), stacklevel=1)

    status = 0
    for number, spec in enumerate(specs):
        if len(specs) > 1:
            if number:
                typer.echo()
            typer.echo(f"{spec}:")
        try:
            # the plugins' load failures are said once, before the first file
            experiment = _load(spec, set_) if number == 0 else _read(spec, set_)
            preflight(experiment.runs, load=False, warn=fault)
        except OptlabError as exc:
            if len(specs) == 1:
                raise
            _err(str(exc))
            status = max(status, exc.exit_code)
            continue
        for line in describe_plan(experiment, get_registry().plugins):
            typer.echo(line)
    if status:
        raise typer.Exit(status)


# ------------------------------------------------------------------------------------ schema
@app.command(cls=_Command)
@handles_errors
def schema() -> None:
    """Print the JSON Schema of spec files, including every registered component's params."""
    from optlab._contract.plugin_manager import get_registry
    from optlab._spec.schema import json_schema

    typer.echo(json.dumps(json_schema(get_registry()), indent=2))


# ------------------------------------------------------------------------------------ plugins
@app.command(cls=_Command)
@handles_errors
def plugins(as_json: JsonOpt = False) -> None:
    """List every plugin: distribution, version, status, the seconds it took to load (import
    and register, which every command pays) and the components it provides."""
    from optlab._contract.plugin_manager import get_registry
    from optlab._errors import OptlabWarning

    registry = get_registry()
    infos = list(registry.plugins.values())
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in infos], indent=2))
    else:
        from rich.table import Column, Table

        # names are never broken (at 80 columns 'optlab-crashes' read 'optlab-crash' / 'es');
        # a long status or component folds rather than ending in '...'
        whole = ("plugin", "distribution", "version", "load")
        headers = ("plugin", "distribution", "version", "status", "load", "components")
        table = Table(*(Column(h, overflow="fold", no_wrap=h in whole) for h in headers))
        for i in infos:
            failed = i.reason and i.status != "disabled"
            status = f"{i.status}: {i.reason}" if failed else i.status
            load = "-" if i.load_time_s is None else f"{i.load_time_s:.2f} s"
            comps = ", ".join(f"{k}:{n}" for k, n in i.components)
            table.add_row(i.name, i.distribution, i.version, status, load, comps)
        _console().print(table)
    for line in registry.collision_lines():  # one line each, as every warning of optlab's
        warnings.warn(OptlabWarning(line), stacklevel=1)


# ------------------------------------------------------------------------------------ components
def _type_name(annotation: Any) -> str:
    """A params field's type as it is written: ``float``, ``Literal['shuffle', 'replacement']``,
    ``list[float]``, ``float | None`` (not ``Literal`` or ``list``, without their choices or
    items)."""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pathlib.", "")


def _params_info(model: Any) -> list[dict[str, Any]]:
    from pydantic_core import PydanticUndefined

    out = []
    for fname, f in model.model_fields.items():
        bounds = {
            type(m).__name__.lower(): getattr(m, next(iter(type(m).__dataclass_fields__)), None)
            for m in f.metadata
            if type(m).__name__ in {"Gt", "Ge", "Lt", "Le", "MultipleOf", "MinLen", "MaxLen"}
        }
        default = f.default if f.default is not PydanticUndefined else None
        if f.default_factory is not None:  # a list or a mapping: what a spec leaving it out gets
            try:
                default = f.get_default(call_default_factory=True, validated_data={})
            except Exception:  # a factory computing it from the other fields' values
                default = None
        out.append(
            {
                "name": fname,
                "type": _type_name(f.annotation),
                "default": default,
                "required": f.is_required(),
                "bounds": bounds,
                "description": f.description or "",
            }
        )
    return out


@app.command(cls=_Command)
@handles_errors
def components(
    kind: Annotated[
        str | None,
        typer.Option(
            metavar="KIND",
            help="Only this kind: loss, regularizer, optimizer, dataset or backend.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List every component with its provider, summary and params."""
    from optlab._contract.plugin_manager import get_registry
    from optlab._contract.registry import KINDS, did_you_mean
    from optlab._errors import InputError

    if kind is not None and kind not in KINDS:  # narrowed below
        raise InputError(
            f"--kind: unknown kind '{kind}'{did_you_mean(kind, KINDS)}; "
            f"use one of {', '.join(KINDS)}"
        )
    registry = get_registry()
    rows: list[dict[str, Any]] = []
    for rec in registry.records(kind):
        info = registry.plugins.get(rec.provider)
        rows.append(
            {
                "kind": rec.kind,
                "name": rec.name,
                "provider": rec.provider,
                "distribution": info.distribution if info else "",
                "version": info.version if info else "",
                "summary": rec.summary,
                "params": _params_info(rec.params),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from optlab._report.listing import ComponentTable

    # names and params are never broken, nor cut ('batch_size=20...' read as 20)
    _console().print(ComponentTable(rows))


# ------------------------------------------------------------------------------------ check
@app.command(cls=_Command)
@handles_errors
def check(
    spec: SpecArg,
    set_: SetOpt = None,
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = "local",
    scheduler: SchedulerOpt = None,
) -> None:
    """Run only the sanity checks (initial loss, gradient check) of every run and print them."""
    ctrl_c = _CtrlC.install()  # first, as for run: a Ctrl-C or SIGTERM says one line
    progress = _CheckProgress(_command(spec, set_, None, "check"))
    ctrl_c.line = progress.interrupted_line
    ok = True
    with ctrl_c.guarding():
        from optlab._execution.by_name import make_executor
        from optlab._execution.check import check_runs

        with make_executor(executor, jobs=jobs, scheduler=scheduler) as where:
            experiment = _load(spec, set_)
            progress.total = len(experiment.runs)
            for report in check_runs(experiment, where):
                typer.echo(f"{report.name}:")
                for line in report.lines:
                    typer.echo(f"  {line}")
                progress.checked += 1
                ok = ok and report.passed
        ctrl_c.settled = True  # in the body: a signal from here on is noted, not raised
    if ctrl_c.pending:  # a signal once every check had been printed
        ctrl_c.say()
        raise typer.Exit(ctrl_c.status)
    raise typer.Exit(0 if ok else 1)


class _CheckProgress:
    """How far ``optlab check`` got, for the line a Ctrl-C or SIGTERM says (:class:`_CtrlC`):
    ``total`` runs once the spec is read, ``checked`` of them printed; ``command`` checks them
    all again."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.total: int | None = None
        self.checked = 0

    def interrupted_line(self) -> str:
        if not self.checked:
            return f"interrupted before any check ended; run `{self.command}` to check the runs"
        if self.checked == self.total:
            return f"interrupted after the checks of all {self.total} runs, printed above"
        return (
            f"interrupted after the checks of {self.checked} of {self.total} runs, printed "
            f"above; run `{self.command}` to check them all"
        )


# ------------------------------------------------------------------------------------ run
@app.command(cls=_Command)
@handles_errors
def run(
    spec: SpecArg,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    tracking_uri: SpecUriOpt = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip runs already FINISHED in the experiment.")
    ] = False,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first failed run.")
    ] = False,
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = "local",
    scheduler: SchedulerOpt = None,
) -> None:
    """Run every run of a spec, then print the comparison table."""
    ctrl_c = _CtrlC.install()  # first: the imports below take a while
    with ctrl_c.guarding():
        from optlab._execution.by_name import make_executor
        from optlab._execution.invocation import Invocation

        # made first: local workers' fork server imports while this process reads the spec
        with make_executor(executor, jobs=jobs, scheduler=scheduler) as where:
            invocation = Invocation(
                _load(spec, set_),
                spec_path=str(spec),
                tracking_uri=tracking_uri,
                track=not no_track,
                resume=resume,
                fail_fast=fail_fast,
                quiet=as_json,
                executor=where,
                command=_command(spec, set_, tracking_uri),
            )
            ctrl_c.line = invocation.interrupted_line
            outcome = invocation.run()
        if as_json:  # the records of optlab compare --json
            from optlab._report.rows import records_to_json, run_records

            records = run_records(outcome.results, invocation.run_ids(), outcome.skipped)
            typer.echo(records_to_json(records))
        invocation.print_summary(outcome, table=not as_json)
        ctrl_c.settled = True  # in the body: a signal from here on is noted, not raised
    # a signal once every run had ended (the summary did not say it), or a Ctrl-C or SIGTERM
    # since the summary: the line is said here (or by main() if the signal comes later)
    by_signal = INTERRUPTED if invocation.stopped_by == "SIGINT" else TERMINATED
    if ctrl_c.pending or (invocation.stopped_by is not None and not outcome.interrupted):
        status = ctrl_c.status if ctrl_c.pending else by_signal  # before say() clears pending
        ctrl_c.say()
        raise typer.Exit(status)
    if invocation.stopped_by is not None:  # the runs are recorded: say how the command ended
        raise typer.Exit(by_signal)
    raise typer.Exit(1 if outcome.failed or outcome.interrupted else 0)


#: set by :func:`main`: the process ends when the command returns, so ``optlab run`` leaves
#: its SIGINT handler (:class:`_CtrlC`) in place until then
_ENDS_PROCESS = False


class _Terminated(KeyboardInterrupt):
    """What :class:`_CtrlC` raises for SIGTERM: unwound as a Ctrl-C is (every ``except
    KeyboardInterrupt`` on the way cleans up as for one), the command ends with status 143."""


class _CtrlC:
    """The SIGINT and SIGTERM handler of ``optlab run`` outside its runs, which have their own
    (:func:`~optlab._training.monitor.stop_on_signals`, which puts this one back), and of
    ``optlab check`` (its line says how many runs' checks were printed).

    Every Ctrl-C or SIGTERM must end in one line on what is saved (before any run started:
    that nothing is) and the end by SIGINT, or status 143 after SIGTERM (:func:`main`).
    Python's default SIGTERM ended the process at once, with nothing said, while the spec was
    read, the data prepared, the store opened, or once the runs had ended. For a SIGTERM this
    handler raises :class:`_Terminated` (a ``KeyboardInterrupt``) where it would raise
    ``KeyboardInterrupt`` for a Ctrl-C; the first signal decides the status. Python's own
    SIGINT handler left windows in which it did not: a
    ``KeyboardInterrupt`` raised while the line was said, or after the command had decided its
    exit status (in Typer's return path, in :func:`main`, at the interpreter's exit), ended
    the process by the signal with a traceback or nothing said. This one raises
    ``KeyboardInterrupt`` once, and not while one is on its way (it is being handled or
    unwinds through ``finally`` blocks): the command's ``except`` says the line. Any other
    Ctrl-C, and every one once the command has ``settled`` (said its summary or its line), is
    only noted (``pending``): ``optlab run`` says the line before it returns, :func:`main`
    before it ends the process, and :func:`_late_ctrl_c` at the interpreter's exit.

    Attributes
    ----------
    line : callable returning str
        The line to say (:meth:`Invocation.interrupted_line` once there is an invocation).
    settled : bool
        The command has said what it had to: a Ctrl-C no longer interrupts it.
    pending : bool
        A Ctrl-C or SIGTERM was noted whose line is not said yet.
    said : bool
        The line was said.
    signal : str or None
        The first signal this handler received (``"SIGINT"``, ``"SIGTERM"``).
    """

    #: the handler of the ``optlab run`` (or ``optlab check``) under way in this process, if any
    current: _CtrlC | None = None

    def __init__(self) -> None:
        from optlab._execution.invocation import NOTHING_STARTED

        self.line: Callable[[], str] = lambda: NOTHING_STARTED
        self.settled = False
        self.pending = False
        self.said = False
        self.signal: str | None = None
        self._raised = False
        self._previous: Any = None
        self._installed = False

    @classmethod
    def install(cls) -> _CtrlC:
        """A new handler, made SIGINT's and SIGTERM's (in the main thread only: elsewhere it
        is inert)."""
        import signal
        import threading

        ctrl_c = cls()
        if threading.current_thread() is threading.main_thread():
            ctrl_c._previous = {
                s: signal.signal(s, ctrl_c) for s in (signal.SIGTERM, signal.SIGINT)
            }
            ctrl_c._installed = True
            cls.current = ctrl_c
        return ctrl_c

    def uninstall(self) -> None:
        """Put the previous SIGINT and SIGTERM handlers back."""
        import signal

        if self._installed:
            signal.signal(signal.SIGTERM, self._previous[signal.SIGTERM])
            signal.signal(signal.SIGINT, self._previous[signal.SIGINT])
            self._installed = False
            _CtrlC.current = None

    @property
    def status(self) -> int:
        """The exit status of a command this handler's signal ended: 143 after SIGTERM, else
        130 (a KeyboardInterrupt that did not come through it is a Ctrl-C's)."""
        return TERMINATED if self.signal == "SIGTERM" else INTERRUPTED

    def __call__(self, signum: int, frame: Any) -> None:
        import signal

        self.signal = self.signal or signal.Signals(signum).name
        on_its_way = isinstance(sys.exc_info()[1], KeyboardInterrupt)
        if self.settled or self._raised or on_its_way:
            self.pending = not self.said
            return
        self._raised = True
        raise _Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    @contextmanager
    def guarding(self) -> Iterator[None]:
        """Around a command's work: a Ctrl-C or SIGTERM that interrupts it (also a second one,
        or one before or after the runs) says the line and exits with :attr:`status`. However
        the work ends, the command is then ``settled`` (a later signal is noted and said by
        the command or :func:`main`) and, in-process (a test's CliRunner), the caller's
        handlers are put back. The work's last statement settles it too: a signal between
        the work's end and this exit would otherwise raise where nothing catches it."""
        try:
            yield
        except (KeyboardInterrupt, Exception) as error:
            # a KeyboardInterrupt this handler raised can come out of a library as another
            # exception (C code that calls Python turns it into its own error: matplotlib's
            # ft2font made it "ImportError: initialization failed"): still the Ctrl-C's end
            if not (isinstance(error, KeyboardInterrupt) or self._raised):
                raise
            self.settled = True
            self.say()
            raise typer.Exit(self.status) from None
        finally:
            self.settled = True
            if not _ENDS_PROCESS:
                self.uninstall()

    def say(self) -> None:
        """Say the line on stderr (once)."""
        if not self.said:
            self.said = True
            self.pending = False
            typer.echo(f"optlab: {self.line()}", err=True)


def _command(
    spec: Path, overrides: list[str] | None, tracking_uri: str | None, command: str = "run"
) -> str:
    """``optlab run SPEC`` (or another ``command``) with the options that decide which runs it
    has, quoted for a shell (for messages that say what to run next)."""
    import shlex

    words = ["optlab", command, str(spec)]
    for override in overrides or []:
        words += ["--set", override]
    if tracking_uri is not None:
        words += ["--tracking-uri", tracking_uri]
    return shlex.join(words)


# ------------------------------------------------------------------------------------ compare
@app.command(cls=_Command)
@handles_errors
def compare(
    experiment: Annotated[
        str, typer.Argument(metavar="EXPERIMENT", help="Experiment name (the spec's `name`).")
    ],
    tracking_uri: UriOpt = None,
    as_json: JsonOpt = False,
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Write the comparison files here.")
    ] = None,
) -> None:
    """Compare the runs of an experiment's latest invocation, from the tracking store."""
    from optlab._report.rows import records_to_json
    from optlab._report.table import render_table
    from optlab._tracking import resolve_tracking_uri
    from optlab._tracking.readback import compare as compare_runs

    uri = resolve_tracking_uri(tracking_uri, None)
    compared = compare_runs(experiment, uri, out)
    if as_json:  # a record per run, as optlab run --json prints them
        typer.echo(records_to_json(compared.records))
        return
    _console().print(render_table(compared.rows))
    if compared.figure is not None:
        typer.echo(f"figure: {compared.figure}")


# ------------------------------------------------------------------------------------ landscape
@app.command(cls=_Command)
@handles_errors
def landscape(
    experiment: Annotated[
        str, typer.Argument(metavar="EXPERIMENT", help="Experiment name (the spec's `name`).")
    ],
    run: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Only this run (default: every finished run)."),
    ] = None,
    tracking_uri: UriOpt = None,
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Also write the figures here.")
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, metavar="N", help="Seed of the random directions.")
    ] = 0,
) -> None:
    """Draw the loss landscape of finished runs of an experiment's latest invocation: the
    training loss along random directions through the learned W (1-D and 2-D slices, and
    one example's loss), stored as each run's loss_landscape.png."""
    from optlab._tracking import resolve_tracking_uri
    from optlab._tracking.artifacts import LANDSCAPE_FIGURE
    from optlab._tracking.readback import landscape as draw_landscapes

    uri = resolve_tracking_uri(tracking_uri, None)
    drawn = draw_landscapes(experiment, uri, out, run, seed)
    for name, path in drawn:
        where = f" and {path}" if path is not None else ""
        typer.echo(f"{name}: {LANDSCAPE_FIGURE} stored on the run{where}")


# ------------------------------------------------------------------------------------ ui
@app.command(cls=_Command)
@handles_errors
def ui(
    tracking_uri: UriOpt = None,
    port: Annotated[
        int, typer.Option(min=1, max=65535, metavar="PORT", help="Port of the MLflow UI.")
    ] = 5000,
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Address to bind (loopback by default).")
    ] = "127.0.0.1",
) -> None:
    """Start the MLflow UI on the store in use, bound to 127.0.0.1, and print a link to the
    latest comparison in its chart view."""
    from optlab._tracking import resolve_tracking_uri
    from optlab._tracking.ui import chart_link, check_port, serve, ui_command

    uri = resolve_tracking_uri(tracking_uri, None)
    argv = ui_command(uri, port, host)
    check_port(host, port)
    base = f"http://{host}:{port}"
    link = chart_link(uri, base)
    typer.echo(f"Starting the MLflow UI on {base} ...")
    sys.stdout.flush()

    def ready() -> None:  # the links work from now on
        typer.echo(f"MLflow UI on {base} (Ctrl-C to stop)")
        if link is not None:
            typer.echo(f"The latest comparison, in the UI's chart view:\n  {link}")
        sys.stdout.flush()

    code = serve(argv, base, ready)
    if code:
        raise typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the ``optlab`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit
    status (0, 1 for failed runs, 2 for bad input, 143 after SIGTERM). The console script
    and ``python -m optlab`` pass it to :func:`sys.exit`.

    After Ctrl-C (status 130), once everything is recorded and said, it raises
    :class:`KeyboardInterrupt` with a quiet :data:`sys.excepthook` instead: Python then shuts
    down as usual and ends the process by SIGINT, as on any uncaught Ctrl-C. A shell running
    ``optlab`` in a loop stops only for a child that SIGINT ended: one that exited 130 (or 1,
    as the first Ctrl-C used to) let the loop go on with its next command.

    Without ``argv`` (the console script, ``python -m optlab``), the process ends when this
    returns, and ``optlab run`` keeps its SIGINT and SIGTERM handler until then: a Ctrl-C
    (a SIGTERM) at any moment after the runs, also as this returns or at the interpreter's
    exit, says the line on what is saved and ends the process by SIGINT (with status 143)
    (:class:`_CtrlC`). With ``argv`` (a program calling it), the caller's handlers are put
    back when the command returns.

    Before returning, :func:`gc.freeze` moves every object into the permanent generation, so
    that the interpreter's teardown skips the final garbage collection of all that MLflow,
    SQLAlchemy and matplotlib allocated, most of the teardown's time (see benchmarks/README.md,
    "Measurements behind the code"). Thread shutdown, the exit handlers of every library and
    flushing the streams still happen as in any Python program.
    """
    global _ENDS_PROCESS
    if argv is None:  # the process's own command: it ends when this returns
        _ENDS_PROCESS = True
        atexit.register(_late_ctrl_c)  # the first registered: it runs after every other one
    status = 0
    try:
        app(args=argv, prog_name="optlab")
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else int(done.code is not None)
    finally:
        gc.freeze()
    ctrl_c = _CtrlC.current
    if ctrl_c is not None and ctrl_c.pending:  # a signal after `optlab run` had returned
        ctrl_c.say()
        status = ctrl_c.status
    if status == INTERRUPTED:
        sys.excepthook = _quiet_interrupt
        raise KeyboardInterrupt
    return status


def _late_ctrl_c() -> None:
    """At the interpreter's exit (:mod:`atexit`): a Ctrl-C or SIGTERM that ``optlab run``'s
    handler noted after :func:`main` had returned (while Python waited for threads or ran the
    other exit handlers) is said, and ends the process by SIGINT (after SIGTERM: with status
    143; this handler runs last, after every other one)."""
    import os
    import signal

    ctrl_c = _CtrlC.current
    if ctrl_c is None or not ctrl_c.pending:
        return
    ctrl_c.say()
    sys.stdout.flush()
    sys.stderr.flush()
    if ctrl_c.status == TERMINATED:
        os._exit(TERMINATED)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def _quiet_interrupt(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """:data:`sys.excepthook` that prints nothing for the Ctrl-C :func:`main` re-raises (its
    line was said)."""
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)


_default_showwarning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """optlab's own warnings as one line on stderr (``optlab: warning: ...``); others as
    Python shows them."""
    from optlab._errors import OptlabWarning

    if issubclass(category, OptlabWarning):
        print(f"optlab: warning: {message}", file=sys.stderr if file is None else file)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)
