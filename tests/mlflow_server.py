"""A real ``mlflow server`` for tests: free port on 127.0.0.1, its own SQLite store and artifact
folder under tmp, one worker, its own process group (killed as a group afterwards).

Use it by importing the fixture into a test module (or a conftest)::

    from tests.mlflow_server import mlflow_server  # noqa: F401
"""

from __future__ import annotations

import contextlib
import os
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

import pytest

__all__ = ["MlflowServer", "free_port", "mlflow_server", "start_mlflow_server"]

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


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
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


@contextlib.contextmanager
def start_mlflow_server(folder: Path) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` with its store in ``folder``; stop its process group at exit."""
    mlflow = Path(sys.executable).parent / "mlflow"
    if not mlflow.is_file():
        pytest.skip(f"no mlflow executable next to {sys.executable}")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    backend = f"sqlite:///{folder / 'server.db'}"
    artifacts = folder / "artifacts"
    log = folder / "server.log"
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [
        str(mlflow),
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder, start_new_session=True
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mlflow server did not start on {url}:\n{tail}")
            time.sleep(0.25)
        yield MlflowServer(url, backend, artifacts, log, process)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server shared by the session's tests."""
    with start_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server
