"""A real ``mlflow server`` for tests: free port on 127.0.0.1, its own SQLite store and artifact
folder under tmp, one worker, its own process group (killed as a group afterwards).
:class:`RestartableMlflowServer` can be crashed and started again on the same port and store.
Given an empty, migrated store (conftest's ``_empty_store``), a server starts on a copy of it
instead of migrating a new one (seconds of MLflow's migrations).

Use it by importing the fixture into a test module (or a conftest)::

    from tests.mlflow_server import mlflow_server  # noqa: F401
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "MlflowServer",
    "RestartableMlflowServer",
    "free_port",
    "healthy",
    "mlflow_server",
    "start_mlflow_server",
    "stop",
    "wait_healthy",
]

STARTUP_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class MlflowServer:
    """A running server: its URL, backend store, artifact folder and log file."""

    url: str
    backend_uri: str
    artifacts: Path
    log: Path
    process: subprocess.Popen[bytes]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _mlflow_executable() -> Path:
    mlflow = Path(sys.executable).parent / "mlflow"
    if not mlflow.is_file():
        pytest.skip(f"no mlflow executable next to {sys.executable}")
    return mlflow


def _seed(folder: Path, template: Path | None) -> None:
    """Put a copy of the empty store ``template`` where the server keeps its store (if given,
    and if there is no store there yet)."""
    store = folder / "server.db"
    if template is not None and not store.exists():
        shutil.copyfile(template, store)


def _spawn(folder: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``mlflow server`` on 127.0.0.1:``port`` with its store in ``folder`` (log appended)."""
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [
        str(_mlflow_executable()),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder, start_new_session=True
        )


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not healthy(url):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"mlflow server did not start on {url}:\n{tail}")
        time.sleep(0.25)


@contextlib.contextmanager
def start_mlflow_server(folder: Path, template: Path | None = None) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` with its store in ``folder`` (a copy of the empty store
    ``template``, if given); stop its process group at exit."""
    _mlflow_executable()
    folder.mkdir(parents=True, exist_ok=True)
    _seed(folder, template)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    process = _spawn(folder, port, log)
    try:
        wait_healthy(url, process, log)
        yield MlflowServer(
            url, f"sqlite:///{folder / 'server.db'}", folder / "artifacts", log, process
        )
    finally:
        stop(process)


class RestartableMlflowServer:
    """An ``mlflow server`` that a test can crash and start again on the same port, with the
    same backend store and artifact folder (what a client sees when its server restarts).

    Use it as a context manager; the process group is stopped at exit. Its store starts as a
    copy of the empty store ``template``, if given.
    """

    def __init__(self, folder: Path, template: Path | None = None) -> None:
        _mlflow_executable()
        folder.mkdir(parents=True, exist_ok=True)
        _seed(folder, template)
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend_uri = f"sqlite:///{folder / 'server.db'}"
        self.artifacts = folder / "artifacts"
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __enter__(self) -> RestartableMlflowServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(crash=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server (if it is not running) and wait until ``/health`` answers."""
        if self.running:
            return
        self.process = _spawn(self.folder, self.port, self.log)
        self.starts += 1
        wait_healthy(self.url, self.process, self.log)

    def stop(self, *, crash: bool = True) -> None:
        """Stop the server: SIGKILL to its process group (``crash``) or SIGTERM."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if crash:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        else:
            stop(process)
        while healthy(self.url):  # the port no longer answers
            time.sleep(0.05)


#: the process's one server while a fixture holds it: every module that imports the fixture has
#: a fixture definition of its own, and each would otherwise start a server
_shared: dict[str, Any] = {}


@pytest.fixture(scope="session")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, _empty_store: Path
) -> Iterator[MlflowServer]:
    """A real MLflow tracking server shared by the session's tests (by every module that
    imports this fixture; stopped after the last of them), on a copy of the empty store."""
    if not _shared:
        stack = contextlib.ExitStack()
        folder = tmp_path_factory.mktemp("mlflow-server")
        server = stack.enter_context(start_mlflow_server(folder, _empty_store))
        _shared.update(server=server, stack=stack, users=0)
    _shared["users"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["users"] -= 1
        if not _shared["users"]:
            stack = _shared.pop("stack")
            _shared.clear()
            stack.close()
