"""Riding out a tracking store that goes away for a while.

A write that fails because the store cannot be reached (connection refused or reset, a
timeout, HTTP 429/5xx, a locked or lost database connection) is tried again with exponential
backoff (0.25 s, 0.5 s, ... at most 5 s apart) until a budget runs out: the ``retry_s``
argument of :class:`~optlab.tracking.Tracker`, else ``OPTLAB_TRACKING_RETRY_S``, else 60 s.
Then :class:`TrackingUnavailable` is raised, and every later write fails at once with the same
message (the invocation stops instead of waiting again for each run).

Why sending a write again is safe, even when its first attempt was committed and only the
answer was lost:

- metric points: MLflow's SQL stores (SQLite, PostgreSQL, MySQL, and a tracking server backed
  by one) key a point by (run, key, timestamp, step, value) and skip a point that is already
  stored; the tracker fixes every point's timestamp when it buffers it, so a re-sent batch
  adds nothing;
- params (same value), tags, artifacts (same path) and run status are overwritten with the
  same content;
- creating a run is the one write that is not idempotent: the tracker looks for a run with
  the same name, start time and process before it creates one again.

Remaining edges: MLflow's deprecated file store has no such key, so there a batch committed
whose answer was lost is written twice; and a request the client gave up on (timeout) that
the server still commits *after* the retry's own commit is idempotent only for the stores
above.

MLflow's own HTTP client would retry each request for minutes (7 retries with backoff, 120 s
timeout); :func:`bound_http_retries` turns that off unless the user set those variables.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from optlab.errors import TrackingError, TrackingUnavailable

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
_FIRST_DELAY_S = 0.25
_MAX_DELAY_S = 5.0
_TICK_S = 0.1
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: MLflow's HTTP client settings while optlab retries itself (a user's own values win)
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def retry_budget(value: float | None = None) -> float:
    """The retry budget in seconds: ``value``, else ``$OPTLAB_TRACKING_RETRY_S``, else 60.

    Raises
    ------
    TrackingError
        The value is not a finite number >= 0.
    """
    if value is not None:
        source, text = "retry_s", str(value)
    else:
        source, text = RETRY_ENV, os.environ.get(RETRY_ENV, "").strip()
        if not text:
            return DEFAULT_RETRY_S
    try:
        budget = float(text)
    except ValueError:
        budget = float("nan")
    if not 0.0 <= budget < float("inf"):
        raise TrackingError(
            f"{source}: {text!r} is not a number of seconds >= 0; set it to how long to keep "
            f"retrying tracking writes while the store is unreachable (default {DEFAULT_RETRY_S:g})"
        )
    return budget


def bound_http_retries() -> None:
    """Turn off MLflow's own HTTP retries (and cap its timeout at 30 s), unless the user set
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``MLFLOW_HTTP_REQUEST_TIMEOUT``; MLflow reads them
    at each request."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _optional_types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    try:
        imported = __import__(module, fromlist=list(names))
    except ImportError:
        return ()
    return tuple(getattr(imported, n) for n in names if hasattr(imported, n))


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) means the store is unreachable for now.

    True for refused/reset/aborted connections and timeouts, HTTP 408/429/5xx answers, and a
    locked or lost database connection; False for everything else (a bad request, a deleted
    run, a TLS certificate problem), which retrying cannot fix.
    """
    from mlflow.exceptions import MlflowException

    ssl_error = _optional_types("requests.exceptions", "SSLError")
    requests_transient = _optional_types(
        "requests.exceptions", "ConnectionError", "Timeout", "RetryError", "ChunkedEncodingError"
    )
    http_error = _optional_types("requests.exceptions", "HTTPError")
    db_errors = _optional_types("sqlalchemy.exc", "OperationalError", "DisconnectionError")
    for cause in _chain(error):
        if isinstance(cause, ssl_error):  # an empty tuple matches nothing
            return False
        if isinstance(cause, (ConnectionError, TimeoutError, *requests_transient)):
            return True
        if isinstance(cause, http_error):
            response = getattr(cause, "response", None)
            return getattr(response, "status_code", None) in _TRANSIENT_STATUS
        if isinstance(cause, db_errors):
            text = str(cause).lower()
            invalidated = bool(getattr(cause, "connection_invalidated", False))
            return invalidated or "locked" in text or "connect" in text
        if isinstance(cause, MlflowException):
            status = cause.get_http_status_code()  # type: ignore[no-untyped-call]
            if status not in _TRANSIENT_STATUS:
                return False
            if cause.__cause__ is None and cause.__context__ is None:
                return True  # the server itself answered 5xx/429
            # otherwise MLflow wrapped a client-side error: decide on that
    return False


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")
_TOO_MANY = re.compile(r"too many (\d{3}) error responses")


def short_reason(error: BaseException) -> str:
    """A few words on why the store could not be reached (``Connection refused``,
    ``timed out``, ``HTTP 503``), from ``error`` or what caused it."""
    from mlflow.exceptions import MlflowException

    texts = [str(cause) for cause in _chain(error)]
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
    if isinstance(error, MlflowException):
        status = error.get_http_status_code()  # type: ignore[no-untyped-call]
        return f"HTTP {status}: {_first_line(error)[:160]}"
    return _first_line(error)[:160]


def _first_line(error: BaseException) -> str:
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def _stop_requested() -> str | None:
    """The signal name if SIGINT/SIGTERM asked optlab to stop (then waiting is pointless)."""
    from optlab.monitor import stop_flag

    return stop_flag.reason


class Retrier:
    """Calls a write until it succeeds, retrying transient failures within a time budget.

    Parameters
    ----------
    uri : str
        The tracking URI (for messages).
    budget_s : float
        How long to keep retrying after the first failure of a call, in seconds.
    clock, sleep : callable
        ``time.monotonic`` and ``time.sleep`` (replaceable in tests).
    """

    def __init__(
        self,
        uri: str,
        budget_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.uri = uri
        self.budget_s = budget_s
        self.clock = clock
        self.sleep = sleep
        #: the message every write fails with once the budget ran out (``None`` while fine)
        self.lost: str | None = None
        #: number of failed attempts that were retried (for tests and diagnostics)
        self.retries = 0

    def reset(self) -> None:
        """Forget an earlier outage (a new invocation tries the store again)."""
        self.lost = None

    def _where(self) -> str:
        if self.uri.startswith(("http://", "https://")):
            return f"tracking server {self.uri}"
        return f"tracking store {self.uri!r}"

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
        from optlab.errors import RunInterrupted

        if self.lost is not None:
            raise TrackingUnavailable(self.lost)
        first_failure: float | None = None
        delay = _FIRST_DELAY_S
        while True:
            started = self.clock()
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                first_failure = started if first_failure is None else first_failure
                waited = self.clock() - first_failure
                reason = short_reason(exc)
                stop = _stop_requested()
                if waited >= self.budget_s or stop is not None:
                    self.lost = (
                        f"{self._where()} was unreachable for {waited:.1f} s ({reason}) "
                        f"while trying to {what}; the run was stopped: check the store, then "
                        "finish the remaining runs with `optlab run SPEC --resume`"
                    )
                    if stop is not None:
                        raise RunInterrupted(
                            f"interrupted by {stop} while waiting for the {self._where()} "
                            f"({reason})"
                        ) from exc
                    raise TrackingUnavailable(self.lost) from exc
                self.retries += 1
                self._wait(min(delay, self.budget_s - waited))
                delay = min(2.0 * delay, _MAX_DELAY_S)

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` in short ticks, returning early when a stop is requested."""
        end = self.clock() + seconds
        while (left := end - self.clock()) > 0 and _stop_requested() is None:
            self.sleep(min(left, _TICK_S))
