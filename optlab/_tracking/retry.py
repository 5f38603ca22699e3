"""Riding out a tracking store that goes away for a while, with tenacity.

A write that fails because the store cannot be reached (connection refused or reset, a
timeout, HTTP 429/5xx, a locked or lost database connection: :func:`is_transient`) is tried
again with exponential backoff (0.25 s, 0.5 s, ... at most 5 s apart) until a budget runs out:
the ``retry_s`` argument of :class:`~optlab._tracking.Tracker`, else
``OPTLAB_TRACKING_RETRY_S``, else 60 s. Then :class:`TrackingUnavailable` is raised, and every
later write fails at once with the same message (the invocation stops instead of waiting
again for each run). The waiting itself is tenacity's; this module only says what counts as
"unreachable", how long to wait, and what to tell the user.

Why sending a write again is safe, even when its first attempt was committed and only the
answer was lost:

- metric points: MLflow's SQL stores (SQLite, PostgreSQL, MySQL, and a tracking server backed
  by one) key a point by (run, key, timestamp, step, value) and skip a point that is already
  stored; the tracker fixes every point's timestamp when it buffers it, so a re-sent batch
  adds nothing;
- params (same value), tags, artifacts (same path) and run status are overwritten with the
  same content;
- a tag deleted again is found gone, which the one caller that deletes tags (the run claims)
  takes as done;
- creating a run is the one write that is not idempotent: the tracker looks for a run with
  the same name, start time and process before it creates one again.

A write that fails because the storage has no room (a full disk or quota, a read-only file
system: :func:`no_room`, whether the OS, SQLite or a tracking server says so) is not retried:
the store is lost at once, with one line naming the file and its file system
(:meth:`Retrier.out_of_room`).

MLflow's own HTTP client would retry each request for minutes (7 retries with backoff, 120 s
timeout) with no way to bound the total time; :func:`bound_http_retries` turns that off unless
the user set those variables, so that the budget above is the one that holds.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

import tenacity

from optlab._errors import RunInterrupted, TrackingError, TrackingUnavailable
from optlab._tracking.no_room import (
    RESUME,
    error_chain,
    http_status,
    no_room,
    no_room_message,
)

__all__ = [
    "DEFAULT_RETRY_S",
    "RETRY_ENV",
    "Retrier",
    "TrackingUnavailable",
    "bound_http_retries",
    "is_transient",
    "retry_budget",
    "short_reason",
]

RETRY_ENV = "OPTLAB_TRACKING_RETRY_S"
DEFAULT_RETRY_S = 60.0
_TICK_S = 0.1
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: MLflow's HTTP client settings while the tracker retries (a user's own values win)
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def seconds_setting(
    value: float | None, name: str, env: str, default: float, *, positive: bool, what: str
) -> float:
    """A duration in seconds: ``value``, else ``$env``, else ``default``.

    Raises
    ------
    TrackingError
        Not a finite number of seconds (> 0 when ``positive``, else >= 0); the message names
        ``name`` (or ``env``) and says ``what`` the setting is for.
    """
    if value is not None:
        source, text = name, str(value)
    else:
        source, text = env, os.environ.get(env, "").strip()
        if not text:
            return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0.0 if positive else seconds >= 0.0) or seconds == float("inf"):
        bound = "> 0" if positive else ">= 0"
        raise TrackingError(
            f"{source}: {text!r} is not a number of seconds {bound}; set it to {what} "
            f"(default {default:g})"
        )
    return seconds


def retry_budget(value: float | None = None) -> float:
    """The retry budget in seconds: ``value``, else ``$OPTLAB_TRACKING_RETRY_S``, else 60.

    Raises
    ------
    TrackingError
        The value is not a finite number >= 0.
    """
    what = "how long to keep retrying tracking writes while the store is unreachable"
    return seconds_setting(value, "retry_s", RETRY_ENV, DEFAULT_RETRY_S, positive=False, what=what)


def bound_http_retries() -> None:
    """Turn off MLflow's own HTTP retries (and cap its timeout at 30 s), unless the user set
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``MLFLOW_HTTP_REQUEST_TIMEOUT``; MLflow reads them
    at each request."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) means the store is unreachable for now.

    True for refused/reset/aborted connections and timeouts, HTTP 408/429/5xx answers, and a
    locked or lost database connection; False for everything else (a bad request, a deleted
    run, a TLS certificate problem, a full disk or quota, a read-only file system: see
    :func:`no_room`; also when a server answers 5xx for one of these), which retrying cannot
    fix.
    """
    import requests.exceptions as http
    from mlflow.exceptions import MlflowException

    if no_room(error) is not None:
        return False
    for cause in error_chain(error):
        if isinstance(cause, http.SSLError):
            return False
        if isinstance(cause, ConnectionError | TimeoutError | http.ConnectionError | http.Timeout):
            return True
        if isinstance(cause, http.RetryError | http.ChunkedEncodingError):
            return True
        if isinstance(cause, http.HTTPError):
            return http_status(cause) in _TRANSIENT_STATUS
        if isinstance(cause, MlflowException):
            if http_status(cause) not in _TRANSIENT_STATUS:
                return False
            text = str(cause).lower()
            if "operationalerror" in text:  # a SQL store's database error, passed on by MLflow
                return "locked" in text or "connect" in text
            if cause.__cause__ is None and cause.__context__ is None:
                return True  # the server itself answered 5xx/429
            # otherwise MLflow wrapped a client-side error: decide on that
    return False


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")
_TOO_MANY = re.compile(r"too many (\d{3}) error responses")


def short_reason(error: BaseException) -> str:
    """A few words on why the store could not be reached (``Connection refused``,
    ``timed out``, ``HTTP 503``), from ``error`` or what caused it."""
    from optlab._tracking.store import first_line

    texts = [str(cause) for cause in error_chain(error)]
    for text in reversed(texts):  # innermost first
        found = _ERRNO.search(text)
        if found:
            return found.group(1).strip()
        status = _TOO_MANY.search(text)
        if status:
            return f"HTTP {status.group(1)}"
    joined = " ".join(texts)
    if "timed out" in joined.lower() or "timeout" in joined.lower():
        return "timed out"
    if "RemoteDisconnected" in joined or "Connection aborted" in joined:
        return "connection closed without an answer"
    status_code = http_status(error)
    if status_code is not None and f"failed with error code {status_code}" in joined:
        # MLflow's words for a server's own answer: the status says it all (the same answer
        # reads "too many 503 error responses" where urllib3 counted it, above)
        return f"HTTP {status_code}"
    prefix = f"HTTP {status_code}: " if status_code is not None else ""
    return f"{prefix}{first_line(error)[:160]}"


def _never_interrupted() -> str | None:
    return None


class Retrier:
    """Calls a write until it succeeds, retrying transient failures within a time budget.

    Parameters
    ----------
    uri : str
        The tracking URI (for messages).
    budget_s : float
        How long to keep retrying after the first failure of a call, in seconds.
    interrupted : callable, optional
        Returns the name of the signal that asked the invocation to stop, or ``None``; waiting
        ends as soon as it returns a name (then :class:`~optlab._errors.RunInterrupted`).
    resume : str
        The command that finishes the remaining runs, for messages.
    """

    def __init__(
        self,
        uri: str,
        budget_s: float,
        *,
        interrupted: Callable[[], str | None] | None = None,
        resume: str = RESUME,
    ) -> None:
        self.uri = uri
        self.resume = resume
        self.budget_s = budget_s
        self.interrupted = interrupted or _never_interrupted
        #: the message every write fails with once the budget ran out (``None`` while fine)
        self.lost: str | None = None
        #: the same message when the store was lost because it has no room (:func:`no_room`):
        #: a write as small as a run's status may still fit where points or files did not
        self.full: str | None = None
        #: number of failed attempts that were retried (for tests and diagnostics)
        self.retries = 0

    def reset(self) -> None:
        """Forget an earlier outage (a new invocation tries the store again)."""
        self.lost = self.full = None

    def out_of_room(self, error: BaseException, what: str) -> str | None:
        """If ``error`` says the store has no room for writes (:func:`no_room`), the store is
        lost from now on (every later write fails at once with one message, as after an
        outage); returns that message, else ``None``."""
        room = no_room(error)
        if room is None:
            return None
        if self.full is None:  # the first write that failed says where
            self.full = self.lost = no_room_message(room, self.uri, what, self.resume)
        return self.full

    def _where(self) -> str:
        if self.uri.startswith(("http://", "https://")):
            return f"tracking server {self.uri}"
        return f"tracking store {self.uri!r}"

    def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` in short ticks, returning early when a stop is requested."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and self.interrupted() is None:
            time.sleep(min(left, _TICK_S))

    def _counted(self, state: tenacity.RetryCallState) -> None:
        self.retries += 1

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Exponential backoff, never past the end of the budget."""
        backoff = tenacity.wait_exponential(multiplier=0.25, max=5.0)(state)
        return max(0.0, min(backoff, self.budget_s - (state.seconds_since_start or 0.0)))

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, retried while it fails with a transient error.

        Parameters
        ----------
        what : str
            What the call does, for the message (``log metrics of 'svm'``).

        Raises
        ------
        TrackingUnavailable
            The store stayed unreachable for ``budget_s`` seconds (or was already lost).
        RunInterrupted
            SIGINT/SIGTERM asked optlab to stop while waiting for the store.
        Exception
            A non-transient error of ``fn``, unchanged.
        """
        if self.lost is not None:
            raise TrackingUnavailable(self.lost)
        out_of_time = tenacity.stop_after_delay(self.budget_s)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=lambda state: out_of_time(state) or self.interrupted() is not None,
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._counted,
        )
        started = time.monotonic()
        try:
            return retrying(fn, *args, **kwargs)
        except tenacity.RetryError as gave_up:
            error = gave_up.last_attempt.exception()
            assert error is not None  # only failed attempts are retried
            waited = time.monotonic() - started
            reason = short_reason(error)
            stop = self.interrupted()
            if stop is not None:  # the user stopped the wait: an interrupt, not an outage
                raise RunInterrupted(
                    f"interrupted by {stop} while waiting for the {self._where()} ({reason})"
                ) from error
            self.lost = (
                f"{self._where()} was unreachable for {waited:.1f} s ({reason}) "
                f"while trying to {what}; the run was stopped: check the store, then "
                f"finish the remaining runs with `{self.resume}`"
            )
            raise TrackingUnavailable(self.lost) from error
