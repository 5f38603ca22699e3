"""optlab's exceptions: one hierarchy, one exit status per branch.

::

    OptlabError                  base of everything optlab raises on purpose
    ├── InputError               the user's input is wrong; exit status 2, no run is started
    │   ├── SpecError            a spec file or a --set override (all issues of a file at once)
    │   ├── PluginError          a plugin failed to load, or a component name is ambiguous/unknown
    │   ├── DataError            a dataset file is missing, corrupt or inconsistent (what a
    │   │                        dataset plugin raises; optlab.run reports it as a SpecError)
    │   ├── TrackingError        the tracking store is unreachable or unusable
    │   └── BackendUnavailable   a backend cannot run on this machine (raised by its factory)
    └── RunError                 a run failed after it started; exit status 1, recorded as FAILED
        ├── ComponentError       a plugin's component misbehaved (wrong shape, dtype, NaN, raised)
        ├── DivergenceError      the loss became non-finite or exploded
        ├── CheckError           a sanity check failed under the ``error`` policy
        ├── RunInterrupted       SIGINT/SIGTERM ended the run; recorded as KILLED
        └── TrackingUnavailable  the tracking server stayed unreachable for the retry budget
                                 (also a TrackingError); the remaining runs are not started

    OptlabWarning                (a UserWarning) something was ignored or looks wrong, but
                                 nothing stops: e.g. OPTLAB_DISABLE_PLUGINS names no plugin

Every message is one line that says where, what is wrong and, where it helps, what to do.
The CLI prints ``str(error)`` and exits with ``error.exit_code``; it never prints a traceback
for an :class:`OptlabError`, and prints an :class:`OptlabWarning` as one line on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass

from optlab._meta import exported

__all__ = [
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
]


class OptlabError(Exception):
    """Base class of every error optlab raises on purpose."""

    exit_code: int = 1


class InputError(OptlabError):
    """The user's input is wrong: nothing was run; exit status 2.

    Parameters
    ----------
    *args
        The message (one line), as for any exception.
    key : str or None, keyword-only
        The spec key at fault, dotted and relative to the component's mapping in the spec, so
        that the error can be shown at that key's line: for a dataset ``path``, ``val``,
        ``test``, ``limit`` or ``limit.train``; for an optimizer ``batch_size``, ``epochs``,
        ``iterations`` or ``trials``. ``None`` (the default) when no single key is at fault.
        Kept as :attr:`key`; the message is unchanged by it.
    fix : str or None, keyword-only
        What the user can do about it (``remove data.mmap``), kept apart from what is wrong so
        that optlab can say something else where the key came from elsewhere (a variant that
        keeps a key of the base's). The message is then ``"<message>; <fix>"``; the two parts
        are kept as :attr:`what` and :attr:`fix` (``None`` without a fix).

    ``key``, ``what`` and ``fix`` survive pickling (a worker process sends errors back pickled).
    """

    exit_code = 2

    def __init__(self, *args: object, key: str | None = None, fix: str | None = None) -> None:
        self.what = str(args[0]) if args else ""
        if fix is not None:
            args = (f"{self.what}; {fix}", *args[1:])
        super().__init__(*args)
        self.key, self.fix = key, fix


@dataclass(frozen=True)
class SpecIssue:
    """One problem found in a spec file.

    Attributes
    ----------
    file : str
        The spec file's path as the user gave it (or ``"--set"`` for an override).
    line, column : int
        1-based position of the offending key or value; 0 for a problem with the whole file
        or a ``--set`` override (then printed without coordinates).
    path : str
        Dotted key path, for example ``optimizer.lr`` or ``variants.softmax.loss.name``.
    message : str
        What is wrong and, where possible, what to do (``did you mean 'lr'?``).
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        """``FILE:LINE:COL: key.path: message``; ``FILE: ...`` when no line is known."""
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return ": ".join(p for p in (where, self.path, self.message) if p)


class SpecError(InputError):
    """A spec file (or override) is invalid; carries every issue found in it."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[SpecIssue]], dict[str, object]]:
        # rebuilt from its issues (its message is made from them), not from the message
        return (type(self), (self.issues,), dict(self.__dict__))


class PluginError(InputError):
    """A plugin could not be loaded, or a component name is unknown or ambiguous."""


class DataError(InputError):
    """A dataset could not be loaded: missing path, corrupt file, bad shapes or labels.

    Dataset plugins raise it (with ``key``, the ``data:`` key at fault). :func:`optlab.run` and
    ``optlab validate`` report it as a :class:`SpecError` whose issue is located at that key of
    the spec, with the other problems of the spec: catch :class:`SpecError` (or
    :class:`InputError`) there, not this.
    """


class TrackingError(InputError):
    """The tracking store or server cannot be used."""


class RunError(OptlabError):
    """A run failed after it started; it is recorded as FAILED with this message."""

    exit_code = 1
    status: str = "FAILED"


class ComponentError(RunError):
    """A plugin's component returned something wrong or raised.

    The message names the plugin (provider), the component and the fault.
    """

    def __init__(self, kind: str, name: str, provider: str, fault: str) -> None:
        self.kind, self.name, self.provider, self.fault = kind, name, provider, fault
        super().__init__(f"{kind} '{name}' (from {provider}): {fault}")

    def __reduce__(self) -> tuple[type[ComponentError], tuple[str, ...], dict[str, object]]:
        # rebuilt from its parts (a worker process sends it back pickled), not from the message
        return (type(self), (self.kind, self.name, self.provider, self.fault), dict(self.__dict__))


class DivergenceError(RunError):
    """The loss became non-finite, or grew past the configured factor of the initial loss."""

    def __init__(self, message: str, step: int) -> None:
        self.step = step
        super().__init__(message)

    def __reduce__(self) -> tuple[type[DivergenceError], tuple[str, int], dict[str, object]]:
        return (type(self), (str(self), self.step), dict(self.__dict__))


class CheckError(RunError):
    """A sanity check (initial loss, gradient check) failed under the ``error`` policy."""


class RunInterrupted(RunError):
    """The run was stopped by SIGINT or SIGTERM; it is recorded as KILLED."""

    status = "KILLED"


class TrackingUnavailable(TrackingError, RunError):
    """The tracking store stayed unreachable for the whole retry budget during a run.

    A :class:`TrackingError` (the store cannot be used) that is also a :class:`RunError`: it
    happens after runs started, so the run is recorded FAILED and the exit status is 1.
    """

    exit_code = 1
    status = "FAILED"


class BackendUnavailable(InputError):
    """A backend's factory raises this when the backend cannot run on this machine (not built,
    an instruction set the CPU lacks, turned off); the message says why, in one line."""


class OptlabWarning(UserWarning):
    """Something optlab ignored or doubts, which does not stop anything (the CLI prints it as
    one line: ``optlab: warning: ...``)."""


def as_written(label: str, value: object) -> str:
    """An option with its value as the user writes it, for messages: ``--scheduler ADDRESS``
    where ``label`` is the command's flag, ``scheduler='ADDRESS'`` where it is a keyword
    argument of the Python API."""
    return f"{label} {value}" if label.startswith("-") else f"{label}={value!r}"


exported(
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
