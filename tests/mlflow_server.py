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
import json
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
from filelock import FileLock
from session_cache import session_root

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
    """A running server: its URL, backend store, artifact folder and log file, and its process
    (``None`` in the workers that share one another worker started)."""

    url: str
    backend_uri: str
    artifacts: Path
    log: Path
    process: subprocess.Popen[bytes] | None


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


class _SharedServer:
    """The session's one ``mlflow server``, shared by its xdist workers (each ``mlflow
    server`` start costs about 11 s of a core: the CLI and its uvicorn worker each import
    MLflow). Its state is a JSON file in the session's temporary root, read and written under a
    file lock: the server's URL, process id and folder, and the workers that use it. The first
    worker that needs it starts it; the last one that is done with it stops it (a worker that
    needs it after that starts another).
    """

    def __init__(self, root: Path, template: Path) -> None:
        self.root = root
        self.template = template
        self.state = root / "mlflow-server.json"
        self.lock = FileLock(str(root / "mlflow-server.lock"))
        self.user = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.process: subprocess.Popen[bytes] | None = None  # if this process started it

    def acquire(self) -> MlflowServer:
        with self.lock:
            state = json.loads(self.state.read_text()) if self.state.exists() else None
            if state is None:
                folder = self.root / f"mlflow-server-{time.time_ns()}"
                folder.mkdir()
                _seed(folder, self.template)
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                self.process = _spawn(folder, port, folder / "server.log")
                try:
                    wait_healthy(url, self.process, folder / "server.log")
                except BaseException:
                    stop(self.process)
                    raise
                state = {"url": url, "pid": self.process.pid, "folder": str(folder), "users": []}
            state["users"].append(self.user)
            self.state.write_text(json.dumps(state))
        folder = Path(state["folder"])
        return MlflowServer(
            state["url"],
            f"sqlite:///{folder / 'server.db'}",
            folder / "artifacts",
            folder / "server.log",
            self.process,
        )

    def release(self) -> None:
        with self.lock:
            state = json.loads(self.state.read_text())
            state["users"].remove(self.user)
            if state["users"]:
                self.state.write_text(json.dumps(state))
                return
            self.state.unlink()
            if self.process is not None and self.process.pid == state["pid"]:
                stop(self.process)
                return
            # started by another worker (its child): end its process group, wait for the port
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state["pid"], signal.SIGTERM)
            deadline = time.monotonic() + 10
            while healthy(state["url"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state["pid"], signal.SIGKILL)


#: this process's use of the shared server while a fixture holds it: every module that imports
#: the fixture has a fixture definition of its own
_shared: dict[str, Any] = {}


@pytest.fixture(scope="session")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, _empty_store: Path
) -> Iterator[MlflowServer]:
    """A real MLflow tracking server shared by the session's tests (by every module that
    imports this fixture, in every xdist worker; stopped once the last of them is done), on a
    copy of the empty store. Tests that share it name experiments of their own."""
    if not _shared:
        shared = _SharedServer(session_root(tmp_path_factory), _empty_store)
        _shared.update(server=shared.acquire(), shared=shared, users=0)
    _shared["users"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["users"] -= 1
        if not _shared["users"]:
            shared = _shared.pop("shared")
            _shared.clear()
            shared.release()
