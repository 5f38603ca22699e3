"""The MLflow UI on the store in use: the server's command, a link to the latest comparison,
and running the server without its start-up noise.

MLflow 3.17's UI opens every experiment in its GenAI view unless told otherwise: it ignores the
experiment tag ``mlflow.experimentKind`` (optlab still sets it, for the releases that read it)
and decides by the URL parameter ``workflowType`` or the choice last made in its sidebar.
So :func:`chart_link` points at the model-training view's chart mode
(``workflowType=machine_learning&compareRunsMode=CHART``), filtered to the child runs of the
latest invocation and sorted by name: in its default order (start time) the UI folds child runs
under their parent run, and the chart view only draws the runs the table shows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import quote, urlencode, urlsplit

from optlab._errors import InputError
from optlab._tracking.store import connect, experiments, sqlite_path

__all__ = ["chart_link", "check_port", "serve", "ui_command"]

#: what ``mlflow server`` prints at every start that tells the user nothing (kept out of the
#: output; anything else it prints is passed on)
_NOISE = ("[MLflow] Security middleware enabled with default settings",)
#: the server's settings that silence the rest: its own INFO logs, a deprecation warning of
#: its web framework, and the job runner the UI does not need (without it the server starts
#: in seconds instead of about 25 s)
_QUIET_ENV = {
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "PYTHONWARNINGS": "ignore:starlette.middleware.wsgi is deprecated",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


def _mlflow_executable() -> list[str]:
    exe = Path(sys.executable).parent / "mlflow"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "mlflow"]


def ui_command(uri: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The argv of ``mlflow server`` serving the UI on the store at ``uri``, quietly (one
    worker, no access log, warnings only). Experiments created in the UI keep their artifacts
    beside a SQLite store's file, in ``mlruns/<experiment id>``, as optlab's own do
    (:func:`~optlab._tracking.store.ensure_experiment`); MLflow's default is the folder the
    server was started in.

    Raises
    ------
    InputError
        ``uri`` is a tracking server (its UI is already there), or the SQLite file is missing.
    """
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        raise InputError(f"{uri} is a tracking server: open {uri} in a browser instead")
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise InputError(
            f"tracking store {uri!r}: {path} does not exist; run an experiment first "
            "(optlab run SPEC) or pass --tracking-uri"
        )
    artifacts = (
        [] if path is None else ["--default-artifact-root", str(path.resolve().parent / "mlruns")]
    )
    return [
        *_mlflow_executable(),
        "server",
        "--backend-store-uri",
        uri,
        "--registry-store-uri",
        uri,
        *artifacts,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--uvicorn-opts",
        "--log-level warning --no-access-log",
    ]


def check_port(host: str, port: int) -> None:
    """Refuse a port the UI cannot listen on (another server has it): ``mlflow server`` would
    start, print its error after the link to the UI and exit 0, with the link leading to
    whatever listens there.

    Raises
    ------
    InputError
        ``host:port`` cannot be bound.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise InputError(f"--host {host}: unknown address ({exc.strerror or exc})") from exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(
                f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "another server may be using it: pass another --port"
            ) from exc


def chart_link(uri: str, base_url: str) -> str | None:
    """A link to the MLflow UI's chart view of the latest invocation's runs (the model-training
    view), or ``None`` when the store holds no optlab invocation yet.

    Parameters
    ----------
    uri : str
        The tracking store.
    base_url : str
        Where the UI is served (``http://127.0.0.1:5000``).
    """
    from optlab._tracking.tracker import PARENT_TAG, ROLE_TAG

    client = connect(uri, must_exist=True, write=False)
    latest = client.search_runs(
        [e.experiment_id for e in experiments(client)],
        filter_string=f"tags.`{ROLE_TAG}` = 'invocation'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not latest:
        return None
    parent = latest[0].info
    query = urlencode(
        {
            "workflowType": "machine_learning",
            "compareRunsMode": "CHART",
            "searchFilter": f"tags.`{PARENT_TAG}` = '{parent.run_id}'",
            "orderByKey": "tags.`mlflow.runName`",
            "orderByAsc": "true",
        },
        quote_via=quote,
    )
    return f"{base_url.rstrip('/')}/#/experiments/{parent.experiment_id}/runs?{query}"


def _pass_on(stream: IO[str], out: IO[str]) -> None:
    for line in stream:
        if not line.startswith(_NOISE):
            out.write(line)
            out.flush()


def _when_up(server: subprocess.Popen[str], url: str, ready: Callable[[], None]) -> None:
    """Call ``ready()`` once the server at ``url`` answers its health check; never if it
    ends first (its own error is passed on)."""
    while server.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if answer.status == 200:
                    ready()
                    return
        except OSError:  # not listening yet
            pass
        time.sleep(0.2)


def serve(argv: list[str], url: str | None = None, ready: Callable[[], None] | None = None) -> int:
    """Run the server ``argv`` (from :func:`ui_command`) until it ends, Ctrl-C or SIGTERM; its
    output is passed on without the start-up lines in :data:`_NOISE`. With ``url`` and
    ``ready``, ``ready()`` is called once the server answers there (the link it prints then
    works: the server takes seconds to start, more on a busy machine). Returns its exit status
    (0 when stopped by a signal)."""
    env = {**os.environ, **_QUIET_ENV}
    if os.environ.get("PYTHONWARNINGS"):  # the user's own filters too
        env["PYTHONWARNINGS"] += "," + os.environ["PYTHONWARNINGS"]
    server = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if url is not None and ready is not None:
        threading.Thread(target=_when_up, args=(server, url, ready), daemon=True).start()
    stopped = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        stopped = True
        server.terminate()

    previous = signal.signal(signal.SIGTERM, stop)  # the server never outlives this process
    try:
        assert server.stdout is not None
        _pass_on(server.stdout, sys.stderr)
        code = server.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to the server too
        stopped = True
        server.terminate()
        code = server.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if stopped else code
