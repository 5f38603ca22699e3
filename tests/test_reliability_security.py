"""Security: secrets in the environment never reach the tracking store; YAML cannot run code;
the UI listens on the loopback interface unless told otherwise."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import optlab._tracking.ui
from optlab._cli import app
from optlab._tracking.ui import ui_command

SPEC = """\
name: secrets
seed: 1
data: {name: blobs, n_samples: 240, n_features: 4, n_classes: 3}
loss: {name: softmax}
optimizer: {name: sgd, lr: 0.1, batch_size: 24, epochs: 2}
variants:
  ok: {}
  diverges: {optimizer: {name: sgd, lr: 1.0e+12, batch_size: 24, epochs: 2}}
"""


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _artifact_paths(client: Any, run_id: str, folder: str | None = None) -> Iterator[str]:
    for item in client.list_artifacts(run_id, folder):
        if item.is_dir:
            yield from _artifact_paths(client, run_id, item.path)
        else:
            yield item.path


def test_secrets_in_the_environment_are_not_logged(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, _empty_store: Path
) -> None:
    from mlflow import MlflowClient

    secrets = {
        "OPTLAB_TEST_SECRET": f"optlab-secret-{uuid.uuid4().hex}",
        "AWS_SECRET_ACCESS_KEY": f"aws{uuid.uuid4().hex}",
        "MLFLOW_TRACKING_PASSWORD": f"pw{uuid.uuid4().hex}",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    spec = workdir / "secrets.yaml"
    spec.write_text(SPEC)
    shutil.copyfile(_empty_store, workdir / "mlflow.db")  # the default store, empty
    result = _invoke("run", str(spec))
    assert result.exit_code == 1, result.stderr  # the diverging variant fails, and is logged
    for value in secrets.values():
        assert value not in result.stdout and value not in result.stderr

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("secrets")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3  # the parent and its two runs
    assert {r.info.status for r in runs} == {"FINISHED", "FAILED"}
    texts: list[str] = []
    n_artifacts = 0
    for run in runs:
        texts += [f"{k}={v}" for k, v in run.data.params.items()]
        texts += [f"{k}={v}" for k, v in run.data.tags.items()]
        texts += list(run.data.metrics)
        for path in _artifact_paths(client, run.info.run_id):
            local = Path(client.download_artifacts(run.info.run_id, path, str(workdir / "dl")))
            texts.append(local.read_bytes().decode("latin-1"))
            n_artifacts += 1
    assert n_artifacts >= 5 and any("spec.yaml" in t or "lr: 0.1" in t for t in texts)
    for value in secrets.values():
        assert not [t for t in texts if value in t]
    # and nowhere in the store's files (the database, the artifact folders)
    for stored in workdir.rglob("*"):
        if stored.is_file() and "dl" not in stored.relative_to(workdir).parts:
            data = stored.read_bytes()
            for value in secrets.values():
                assert value.encode() not in data, stored


PAYLOADS = [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/apply:subprocess.call [["touch", "{marker}"]]',
    '!!python/object/new:subprocess.Popen [["touch", "{marker}"]]',
    "!!python/name:os.system",
    '!!python/object/apply:builtins.exec ["open(\\"{marker}\\", \\"w\\").close()"]',
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=["system", "call", "popen", "name", "exec"])
@pytest.mark.parametrize("where", ["seed", "description", "sweep", "set"])
def test_python_tags_are_refused_and_nothing_runs(payload: str, where: str, workdir: Path) -> None:
    marker = workdir / "pwned"
    value = payload.format(marker=marker)
    base = SPEC.split("variants:")[0]
    spec = workdir / "evil.yaml"
    args = ["run", str(spec), "--json"]
    if where == "seed":
        spec.write_text(base.replace("seed: 1", f"seed: {value}"))
    elif where == "description":
        spec.write_text(base + f"description: {value}\n")
    elif where == "sweep":
        spec.write_text(base + f"sweep:\n  grid:\n    optimizer.lr: [0.1, {value}]\n")
    else:
        spec.write_text(base)
        args += ["--set", f"optimizer.lr={value}"]
    result = _invoke(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert "tag" in result.stderr
    assert not marker.exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["evil.yaml"]  # nothing logged


def test_ui_binds_the_loopback_interface_by_default(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, _empty_store: Path
) -> None:
    shutil.copyfile(_empty_store, workdir / "mlflow.db")
    argv = ui_command("sqlite:///mlflow.db", 5005)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"

    executed: list[list[str]] = []

    def fake_serve(args: list[str], url: str, ready: Callable[[], None]) -> int:
        executed.append(list(args))
        assert url == "http://127.0.0.1:5006"
        ready()  # the server answers: the link is printed
        return 0

    monkeypatch.setattr(optlab._tracking.ui, "serve", fake_serve)
    result = _invoke("ui", "--port", "5006")
    assert result.exit_code == 0, result.stderr
    (args,) = executed
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--port") + 1] == "5006"
    assert "0.0.0.0" not in " ".join(args)
    assert result.stdout.splitlines()[:2] == [
        "Starting the MLflow UI on http://127.0.0.1:5006 ...",
        "MLflow UI on http://127.0.0.1:5006 (Ctrl-C to stop)",
    ]


def test_ui_on_a_port_in_use_is_refused_in_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, _empty_store: Path
) -> None:
    """Another server listens on the port: one line and exit 2 before anything starts (the UI
    printed its link, which led to the other server, then the server's bind error, exit 0)."""
    import socket

    shutil.copyfile(_empty_store, workdir / "mlflow.db")
    started: list[list[str]] = []
    monkeypatch.setattr(optlab._tracking.ui, "serve", lambda args, *_: started.append(args) or 0)
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        result = _invoke("ui", "--port", str(port))
    assert result.exit_code == 2
    assert result.stdout == "" and started == []
    assert result.stderr == (
        f"optlab: error: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in "
        "use); another server may be using it: pass another --port\n"
    )


#: what makes MLflow take a process for a test or CI run (and send no telemetry anyway)
_CI_MARKERS = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "TRAVIS")


def test_a_tracked_run_sends_no_mlflow_telemetry_and_writes_nothing_outside(
    tmp_path: Path, _empty_store: Path
) -> None:
    """Outside CI MLflow 3 sends usage events over the network and writes an installation id
    under ~/.config unless MLFLOW_DISABLE_TELEMETRY is set: a user's run must do neither."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in _CI_MARKERS}
    env.pop("MLFLOW_DISABLE_TELEMETRY", None)
    env.pop("DO_NOT_TRACK", None)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env.pop("MLFLOW_TRACKING_URI", None)
    shutil.copyfile(_empty_store, tmp_path / "mlflow.db")  # migrating one is not the point
    (tmp_path / "spec.yaml").write_text(
        SPEC.split("variants:")[0] + "tracking: {figures: false}\n", encoding="utf-8"
    )
    script = (
        "import os, sys, optlab\n"
        "optlab.run('spec.yaml', quiet=True)\n"
        "import mlflow.telemetry.utils as t\n"
        "sys.exit(0 if t.is_telemetry_disabled() else 3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "config" / "mlflow").exists()
    assert (tmp_path / "mlruns").is_dir()  # the run was tracked


def test_a_users_own_telemetry_setting_is_kept() -> None:
    import os
    import subprocess
    import sys

    script = "import os, optlab._tracking; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "false"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "false"


@pytest.mark.parametrize("port", ["70000", "-5", "0"])
def test_ui_on_a_port_out_of_range_is_refused_before_anything_starts(
    port: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, _empty_store: Path
) -> None:
    """--port 70000 printed the link, then the server's traceback (bind(): port must be
    0-65535), exit 0; --port -5 blamed --host; --port 0 printed a link to port 0."""
    shutil.copyfile(_empty_store, workdir / "mlflow.db")
    started: list[list[str]] = []
    monkeypatch.setattr(optlab._tracking.ui, "serve", lambda args, *_: started.append(args) or 0)
    result = _invoke("ui", "--port", port)
    assert result.exit_code == 2
    assert result.stdout == "" and started == []
    (line,) = result.stderr.splitlines()
    assert line.startswith("optlab: error: ui: invalid value for '--port': Input should be "), line
    assert line.endswith("; see optlab ui --help") and "--host" not in line
