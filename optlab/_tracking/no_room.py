"""A store with no room to write: a full disk, an exhausted quota, a read-only file system -
recognised however it is reported (the OS, SQLite, a tracking server's answer), never retried,
and told in one line that names the file, its file system and what to do."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from optlab._errors import TrackingError

__all__ = [
    "MIN_FREE_BYTES",
    "RESUME",
    "NoRoom",
    "check_free_space",
    "error_chain",
    "http_status",
    "no_room",
    "no_room_message",
    "quiet_no_room_logs",
]

#: the command that finishes the remaining runs, in messages of a lost store, where the
#: invocation does not give its own (the Python API's)
RESUME = "optlab run SPEC --resume"


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions it was raised from or during, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def http_status(error: BaseException) -> int | None:
    """The HTTP status of a ``requests`` error or an ``MlflowException`` (else ``None``)."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is None and hasattr(error, "get_http_status_code"):
        status = error.get_http_status_code()
    return status if isinstance(status, int) else None


#: what an errno that leaves no room to write means
_NO_ROOM = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
#: the same, as a tracking server or a SQL store words it (the errno itself is lost there)
_NO_ROOM_TEXT = {
    "database or disk is full": errno.ENOSPC,  # SQLite's SQLITE_FULL
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "read-only file system": errno.EROFS,
}
_SQLITE_FULL = 13


@dataclass(frozen=True)
class NoRoom:
    """The storage under a write cannot take it: full, over quota or read-only.

    ``path`` is the file that could not be written, when the error names it."""

    errno: int
    path: str | None = None

    @property
    def what(self) -> str:
        """``no space left on device``, ``disk quota exceeded`` or ``read-only file system``."""
        return _NO_ROOM[self.errno]


def no_room(error: BaseException) -> NoRoom | None:
    """Whether ``error`` (or what caused it) says the storage has no room for a write: an
    ``OSError`` with ``ENOSPC``, ``EDQUOT`` or ``EROFS``, SQLite's "database or disk is full",
    or a tracking server's message saying one of these. Retrying cannot fix it."""
    for cause in error_chain(error):
        if isinstance(cause, OSError) and cause.errno in _NO_ROOM:
            path = cause.filename2 or cause.filename  # a copy names its destination second
            return NoRoom(cause.errno, os.fsdecode(path) if isinstance(path, str | bytes) else None)
        if getattr(cause, "sqlite_errorcode", None) == _SQLITE_FULL:
            return NoRoom(errno.ENOSPC)
        text = str(cause).lower()
        for phrase, number in _NO_ROOM_TEXT.items():
            if phrase in text:
                return NoRoom(number)
    return None


def _file_system(path: str) -> str:
    """``file system /mnt: 0.0 of 64.0 MiB free``: the mounted file system that holds ``path``
    (``""`` if it cannot be told)."""
    from pathlib import Path

    try:
        mount = Path(path).absolute()
        while not mount.exists() and mount != mount.parent:
            mount = mount.parent
        while not os.path.ismount(mount):
            mount = mount.parent
        usage = shutil.disk_usage(mount)
    except OSError:
        return ""
    return f"file system {mount}: {usage.free / 2**20:.1f} of {usage.total / 2**20:.1f} MiB free"


def no_room_message(room: NoRoom, uri: str, what: str, resume: str = RESUME) -> str:
    """One line: which file (and file system) or which server has no room, for which write,
    and what to do (then ``resume``: the command that finishes the remaining runs)."""
    from optlab._tracking.store import sqlite_path

    database = sqlite_path(uri)
    path = room.path or (str(database.absolute()) if database is not None else None)
    todo = {
        errno.ENOSPC: "free space there",
        errno.EDQUOT: "free space there or raise the quota",
        errno.EROFS: "make it writable",
    }[room.errno]
    resume = f"finish the remaining runs with `{resume}`"
    if path is None:
        return (
            f"tracking server {uri}: its storage says {room.what} while trying to {what}; the "
            f"run was stopped: {todo.replace('there', 'on the server')}, then {resume}"
        )
    where = _file_system(path)
    return (
        f"{path}: {room.what}{f' ({where})' if where else ''} while trying to {what} in tracking "
        f"store {uri!r}; the run was stopped: {todo}, then {resume}"
    )


class _NoRoomFilter(logging.Filter):
    """Drops MLflow's log record (with its traceback) of a database error that says there is
    no room: the tracker reports it itself, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or no_room(error) is None


#: MLflow's logger that logs every database error of a SQL store with its traceback
_SQL_LOGGER = "mlflow.store.db.utils"


def quiet_no_room_logs() -> None:
    """Install :class:`_NoRoomFilter` on MLflow's SQL store logger (once)."""
    logger = logging.getLogger(_SQL_LOGGER)
    if not any(isinstance(f, _NoRoomFilter) for f in logger.filters):
        logger.addFilter(_NoRoomFilter())


#: below this much free space next to a local store, a run could not be recorded safely
MIN_FREE_BYTES = 50 * 2**20


def check_free_space(
    uri: str, minimum: int = MIN_FREE_BYTES, uri_label: str = "--tracking-uri"
) -> None:
    """Refuse to start when the folder of a local SQLite store has less than ``minimum``
    bytes free (a full disk would otherwise fail the runs one by one); ``uri_label`` names
    how the user passes another store (the Python API's ``tracking_uri``)."""
    from optlab._tracking.store import sqlite_path

    path = sqlite_path(uri)
    if path is None:
        return
    folder = path.resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    if usage.total == 0:  # /proc, /sys: a kernel's view, not storage
        raise TrackingError(
            f"{folder}: a virtual file system with no storage (such as /proc) cannot hold the "
            f"tracking store {uri}; pass {uri_label} with a folder on a disk"
        )
    free = usage.free
    if free < minimum:
        raise TrackingError(
            f"{folder}: only {free / 2**20:.1f} MiB free for the tracking store {uri}; "
            f"free at least {minimum / 2**20:.0f} MiB or pass {uri_label} elsewhere"
        )
