"""Where runs are tracked: resolve the URI, check the store before any training, open a client.

Nothing here imports MLflow at module level (``import mlflow`` takes seconds): the client is
created inside :func:`connect`.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from optlab._errors import InputError, TrackingError, as_written

__all__ = [
    "DEFAULT_TRACKING_URI",
    "absolute_uri",
    "connect",
    "ensure_experiment",
    "experiment_names",
    "experiments",
    "first_line",
    "resolve_tracking_uri",
    "sqlite_path",
]

#: MLflow's embedded default: a SQLite store in the working folder
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

#: schemes MLflow's tracking client accepts (SQLAlchemy databases, servers, the file store)
_SCHEMES = frozenset(
    {"sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks"}
)
#: says the experiment is model training, not GenAI (MLflow 3.17's UI ignores it: see
#: optlab._tracking.ui)
_KIND_TAG, _KIND = "mlflow.experimentKind", "custom_model_development"
#: how the user names another store, in hints: the command's flag (the Python API passes
#: its keyword, ``tracking_uri``)
URI_LABEL = "--tracking-uri"


def _help(label: str, uri: str | None = None) -> str:
    """How to name another store: ``label`` with an example, which is never the store ``uri``
    that failed (the default store's own messages offered it, sqlite:///mlflow.db, as the
    other store to pass)."""
    example = "sqlite:///mlflow.db"
    path = sqlite_path(uri) if uri is not None else None
    if path is not None and path.absolute() == Path("mlflow.db").absolute():
        example = "sqlite:///FOLDER/mlflow.db"
    return f"pass another {label} (for example {example})"


def resolve_tracking_uri(flag: str | None, spec_uri: str | None) -> str:
    """The tracking URI in force: ``--tracking-uri`` > spec ``tracking.uri`` >
    ``MLFLOW_TRACKING_URI`` > ``sqlite:///mlflow.db``."""
    for candidate in (flag, spec_uri, os.environ.get("MLFLOW_TRACKING_URI")):
        if candidate and candidate.strip():
            return candidate.strip()
    return DEFAULT_TRACKING_URI


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (MLflow's are multi-line)."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI (``None`` for other schemes or in-memory)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:") :]
    if not rest.startswith("///"):
        return None
    path = rest[3:].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute (MLflow caches one store per URI
    string, so a relative one would keep the folder of its first use)."""
    path = sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else ""
    return f"sqlite:///{path.resolve()}" + (f"?{query}" if query else "")


def _check_scheme(uri: str, label: str = URI_LABEL) -> str:
    scheme = urlsplit(uri).scheme.lower()
    if not scheme or scheme == "file":  # a path: MLflow's file store, in maintenance mode
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1"):
            return "file"
        typo = re.match(r"(?i)(https?|sqlite|postgresql|mysql)(/+)(.*)", uri)
        if typo and not scheme:  # http//HOST:PORT: a colon left out
            head, _, rest = typo.groups()
            meant = f"{head}:{'///' if head.lower() == 'sqlite' else '//'}{rest}"
            raise TrackingError(
                f"tracking URI {uri!r} is missing the ':' after {head}: did you mean {meant!r}?"
            )
        path = Path(urlsplit(uri).path if scheme else uri).expanduser().absolute()
        if path.is_dir():  # a folder: the store would be a file in it
            path = path / "mlflow.db"
        elif path.is_file() and not _is_sqlite(path):  # a spec, say: not a store to offer
            raise TrackingError(
                f"tracking URI {uri!r} is a path, to a file that is not a SQLite store; "
                f"{_help(label)}"
            )
        raise TrackingError(
            f"tracking URI {uri!r} is a path: for a SQLite store there use sqlite:///{path} "
            "(MLflow's file store, which a path means, needs MLFLOW_ALLOW_FILE_STORE=true)"
        )
    base = scheme.split("+", 1)[0]  # postgresql+psycopg2
    if base not in _SCHEMES:
        raise TrackingError(
            f"tracking URI {uri!r}: unknown scheme '{scheme}'; pass another {label}: "
            "sqlite:///PATH.db, http(s)://HOST:PORT, postgresql://... or mysql://..."
        )
    return base


def _is_sqlite(path: Path) -> bool:
    """Whether the file at ``path`` is empty or starts as a SQLite database does."""
    try:
        with path.open("rb") as file:
            head = file.read(16)
    except OSError:
        return True  # unreadable: said where the store is opened
    return head in (b"", b"SQLite format 3\x00")


def _check_sqlite(
    uri: str, path: Path, *, must_exist: bool, write: bool, label: str = URI_LABEL
) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if path.parts[0].startswith("~") and path.expanduser() != path:  # not "create folder ~"
        raise TrackingError(
            f"tracking store {uri!r}: a SQLite URI's path is not expanded ('~' would be a "
            f"folder of that name); write it in full: sqlite:///{path.expanduser()}"
        )
    if path.is_dir():  # not "cannot write in" its folder, nor "does not exist"
        raise TrackingError(
            f"tracking store {uri!r}: {path} is a folder; name the database file in it "
            f"(sqlite:///{path / 'mlflow.db'})"
        )
    if must_exist and not path.is_file():
        raise InputError(
            f"tracking store {uri!r}: {path} does not exist; run an experiment first "
            f"(optlab run SPEC) or {_help(label, uri)}"
        )
    if not folder.is_dir():
        raise TrackingError(
            f"tracking store {uri!r}: folder {folder} does not exist; create it or "
            f"{_help(label, uri)}"
        )
    if not write:  # SQLite reads a database it cannot write (a read-only mount, a copy)
        return
    try:  # a real write: os.access() says yes to root on read-only mounts
        if path.exists():
            with path.open("ab"):
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".optlab-probe-"):
                pass
    except OSError as exc:
        # an existing store holds the runs (and their files' absolute paths): another URI
        # would not be the same runs
        fix = (
            f"this command writes to the store: make {folder.absolute()} writable"
            if path.exists()
            else f"pass {as_written(label, 'sqlite:///FOLDER/mlflow.db')} with a folder you can "
            "write in"
        )
        raise TrackingError(
            f"tracking store {uri!r}: cannot write in {folder.absolute()} ({exc.strerror or exc}); "
            f"{fix}"
        ) from exc


def _check_server(uri: str, timeout: float, attempts: int, label: str = URI_LABEL) -> None:
    url = uri.rstrip("/") + "/health"
    reason = ""
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status == 200:
                    return
                reason = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} on /health: not an MLflow server?"
            break
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
    raise TrackingError(
        f"tracking server {uri} is unreachable ({reason}); start it (optlab ui or "
        f"mlflow server) or {_help(label)}"
    )


@contextmanager
def _creation_lock(path: Path | None) -> Iterator[None]:
    """Serialize the creation of a new SQLite store across processes.

    Two processes that open a new database at once both run MLflow's migrations and one
    fails ("table ... already exists"); a lock file next to the database (``.NAME.lock``)
    makes the second wait until the first has finished. It exists only while a store is
    being created (:func:`_create_sqlite`): it is removed once the store exists, and a store
    with no lock file next to it is ready.

    The files of a creation that was killed (``kill -9`` among the migrations leaves
    ``.NAME.<hex>.new`` and its journal) are removed under the lock: every creation holds it,
    and the system releases a process's lock when it dies, so whoever holds it knows that no
    live process is creating this store.
    """
    if path is None:
        yield
        return
    from filelock import FileLock, Timeout

    lock_file = path.with_name(f".{path.name}.lock")
    if path.exists() and not lock_file.exists():  # ready, by now
        if _leftovers(path):  # a nicety: never waits, nor fails the command (read-only)
            with suppress(OSError, Timeout), FileLock(lock_file, timeout=0):
                for leftover in _leftovers(path):
                    leftover.unlink(missing_ok=True)
                lock_file.unlink(missing_ok=True)
        yield
        return
    with FileLock(lock_file, timeout=120):
        for leftover in _leftovers(path):
            leftover.unlink(missing_ok=True)
        try:
            yield
        finally:
            if path.exists():  # created: no later process needs to wait
                lock_file.unlink(missing_ok=True)


def _leftovers(path: Path) -> list[Path]:
    """The files :func:`_create_sqlite` makes beside ``path`` (``.NAME.<hex>.new`` and its
    ``-journal``), left there by a creation that was killed, or being made by a live one."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{32}}\.new(-journal)?")
    try:
        names = list(path.parent.glob(f".{glob.escape(path.name)}.*.new*"))
    except OSError:  # an unreadable folder: the checks before said what to do
        return []
    return [p for p in names if pattern.fullmatch(p.name)]


def _create_sqlite(path: Path) -> None:
    """Create and migrate a new SQLite store at ``path`` all at once.

    MLflow's migrations take seconds; run on ``path`` itself, a Ctrl-C (or ``kill``) among
    them left a half-migrated database that MLflow refused from then on ("table ... already
    exists"). They run in a file beside it, which then takes its name: ``path`` is either
    missing or a whole store.
    """
    from mlflow import MlflowClient

    # a new name each time: MLflow keeps an engine per URI, on the file it first opened
    new = path.with_name(f".{path.name}.{uuid.uuid4().hex}.new").resolve()
    try:
        MlflowClient(tracking_uri=f"sqlite:///{new}").search_experiments(max_results=1)
        os.replace(new, path)
    finally:
        for leftover in (new, new.with_name(f"{new.name}-journal")):
            leftover.unlink(missing_ok=True)


def connect(
    uri: str,
    *,
    must_exist: bool = False,
    write: bool = True,
    timeout: float = 2.0,
    attempts: int = 2,
    uri_label: str = URI_LABEL,
) -> Any:
    """Check that the store at ``uri`` is usable and return an ``MlflowClient`` on it.

    Parameters
    ----------
    uri : str
        Tracking URI.
    must_exist : bool
        For readers: a missing SQLite file is an :class:`~optlab._errors.InputError` instead
        of being created.
    write : bool
        Whether the caller writes to the store: only then is a SQLite store's file (or its
        folder) checked to be writable.
    timeout, attempts : float, int
        Per-attempt timeout (seconds) and number of attempts of a server's ``/health`` probe.
    uri_label : str
        What the user passes a store by, in hints (``--tracking-uri``; the Python API's
        ``tracking_uri``).

    Raises
    ------
    TrackingError
        Unknown scheme, a SQLite database in memory, unwritable SQLite folder (``write``),
        unreachable server, or a store MLflow cannot open; one line, exit status 2. Of the
        store ``$MLFLOW_TRACKING_URI`` names, the message says so first: whoever passed no
        URI may not know that the environment has one.
    """
    try:
        return _connect(uri, must_exist, write, timeout, attempts, uri_label)
    except InputError as exc:
        if len(exc.args) == 1 and uri == os.environ.get("MLFLOW_TRACKING_URI", "").strip():
            exc.args = (f"MLFLOW_TRACKING_URI (environment): {exc.args[0]}",)
        raise


def _connect(
    uri: str, must_exist: bool, write: bool, timeout: float, attempts: int, label: str
) -> Any:
    """:func:`connect`, but for the environment's word in its errors."""
    scheme = _check_scheme(uri, label)
    path = sqlite_path(uri)
    if scheme == "sqlite" and uri[len("sqlite:") :].split("?", 1)[0].lstrip("/") in (
        "",
        ":memory:",
    ):
        raise TrackingError(
            f"tracking store {uri!r} is a SQLite database in memory: what is tracked there is "
            "lost when optlab ends; name a file (for example sqlite:///mlflow.db)"
        )
    if path is not None:
        _check_sqlite(uri, path, must_exist=must_exist, write=write, label=label)
    elif scheme in ("http", "https"):
        _check_server(uri, timeout, attempts, label)
    from mlflow import MlflowClient

    quiet = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.WARNING)
    try:
        with _creation_lock(path):
            if path is not None and not path.exists():
                _create_sqlite(path)
            client = MlflowClient(tracking_uri=absolute_uri(uri))
            client.search_experiments(max_results=1)  # refuses another schema's store
    except Exception as exc:
        raise TrackingError(f"tracking store {uri!r} cannot be used: {first_line(exc)}") from exc
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
    return client


def experiments(client: Any) -> list[Any]:
    """The store's active experiments (MLflow ``Experiment`` objects), every page."""
    found: list[Any] = []
    token: str | None = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def experiment_names(client: Any) -> list[str]:
    """Names of the store's active experiments."""
    return [e.name for e in experiments(client)]


def _new_artifact_location(client: Any, uri: str) -> str | None:
    """Where a new experiment of the store at ``uri`` is to keep its runs' artifacts.

    For a local SQLite store: ``mlruns/<experiment id>`` beside the database file, as
    ``mlflow server --backend-store-uri sqlite:///... --default-artifact-root`` would place
    them. MLflow's own default there is ``./mlruns/<experiment id>`` of the working folder the
    process was in when it first opened the store: beside the database only when that is the
    database's folder (the default ``sqlite:///mlflow.db``, whose layout stays as it was).
    ``None`` for other stores: a tracking server decides where its artifacts go.

    MLflow appends the experiment's id to its default root but takes an explicit
    ``artifact_location`` as it is, and the id is given only when the experiment is created:
    it is the next one the store gives, SQLite's next row id (the largest id so far, deleted
    experiments among them, plus one). Should another process create an experiment in between,
    this one's artifacts are still beside the database, in the folder of the other's id (run
    folders are named after their run ids: the two do not collide).
    """
    path = sqlite_path(uri)
    if path is None:
        return None
    from mlflow.entities import ViewType

    last = client.search_experiments(
        view_type=ViewType.ALL, max_results=1, order_by=["experiment_id DESC"]
    )
    next_id = int(last[0].experiment_id) + 1 if last else 1
    return os.path.join(os.path.dirname(os.path.abspath(path)), "mlruns", str(next_id))


def ensure_experiment(client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created if missing (safe against a concurrent create).

    A new experiment of a local SQLite store keeps its artifacts beside the database, wherever
    the working folder is (:func:`_new_artifact_location`); existing experiments keep theirs.
    """
    from mlflow.exceptions import MlflowException

    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = _new_artifact_location(client, uri)
            try:
                return str(client.create_experiment(name, location, tags={_KIND_TAG: _KIND}))
            except MlflowException:  # created meanwhile by another process
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
    except MlflowException as exc:
        raise TrackingError(
            f"tracking store {uri!r}: cannot create experiment '{name}': {first_line(exc)}"
        ) from exc
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"tracking store {uri!r}: experiment '{name}' was deleted; restore it "
            f"(MLFLOW_TRACKING_URI={uri} mlflow experiments restore --experiment-id "
            f"{experiment.experiment_id}) or rename the spec's `name`"
        )
    return str(experiment.experiment_id)
