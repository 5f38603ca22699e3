"""Bad input through the real ``optlab run`` command (in process): every malformed spec of
tests/bad_specs/, unreadable spec paths and unusable tracking stores are refused with exit
status 2 and one located line per problem on stderr, before any run starts, and nothing is
logged or created anywhere."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_server import free_port
from typer.testing import CliRunner, Result

from optlab import hookimpl
from optlab._cli import app
from optlab._contract.plugin_manager import registered_plugin
from optlab._contract.records import RunInfo
from optlab._spec.load import MAX_FILE_BYTES

CORPUS = Path(__file__).parent / "bad_specs"
FILES = sorted(CORPUS.glob("*.yaml"))

GOOD = """\
name: fine
seed: 0
data: {name: blobs, n_samples: 200}
loss: {name: softmax}
optimizer: {name: sgd, lr: 0.1, batch_size: 20, epochs: 2}
"""


class StartRecorder:
    """An observer that records every run started in this process."""

    def __init__(self) -> None:
        self.started: list[str] = []

    @hookimpl
    def optlab_run_started(self, run: RunInfo) -> None:
        self.started.append(run.name)


@pytest.fixture(scope="module")
def recorder() -> Iterator[StartRecorder]:
    with registered_plugin(StartRecorder(), name="test_start_recorder") as plugin:
        assert isinstance(plugin, StartRecorder)
        yield plugin


@pytest.fixture
def workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorder: StartRecorder
) -> Iterator[Path]:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recorder.started.clear()
    yield work
    assert recorder.started == []  # no run was started


def _run(*args: str) -> Result:
    return CliRunner().invoke(app, ["run", *args])


def _refused(result: Result, workdir: Path) -> list[str]:
    """Exit 2, nothing on stdout, no traceback, nothing created; the stderr lines."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert list(workdir.iterdir()) == []  # no mlflow.db, no mlruns, nothing
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("optlab: error: ") for line in lines), lines
    return lines


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_spec_through_the_cli(path: Path, workdir: Path) -> None:
    lines = _refused(_run(str(path)), workdir)
    located = re.compile(rf"^optlab: error: {re.escape(str(path))}:(\d+):(\d+): \S")
    for line in lines:
        found = located.match(line)
        assert found, line
        assert int(found.group(1)) >= 1 and int(found.group(2)) >= 1, line


def test_relative_spec_path_is_reported_as_given(workdir: Path) -> None:
    (workdir.parent / "typo.yaml").write_text(GOOD.replace("lr:", "lrr:"))
    (line,) = _refused(_run("../typo.yaml"), workdir)
    assert line.startswith("optlab: error: ../typo.yaml:5:24: optimizer: unknown key 'lrr'")
    assert "did you mean 'lr'" in line


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir(), "is a directory, not a spec file"),
        (lambda p: os.mkfifo(p), "is not a regular file"),
        (lambda p: p.write_bytes(bytes(range(256))), "is not valid UTF-8 (byte 0x80)"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), "is not valid UTF-8"),
        (lambda p: p.write_bytes(b"name: x\n\x00\n"), "special character #x0000"),
        (lambda p: p.write_text("# " + "x" * MAX_FILE_BYTES), "more than the"),
        (lambda p: None, "no such file"),
    ],
    ids=["directory", "fifo", "binary", "png", "nul-byte", "huge", "missing"],
)
def test_unusable_spec_paths(make: object, expected: str, workdir: Path) -> None:
    path = workdir.parent / "spec.yaml"
    make(path)  # type: ignore[operator]
    (line,) = _refused(_run(str(path)), workdir)
    assert line.startswith(f"optlab: error: {path}:"), line
    assert expected in line, line


def test_bad_override_is_located_at_set(workdir: Path) -> None:
    spec = workdir.parent / "good.yaml"
    spec.write_text(GOOD)
    (line,) = _refused(_run(str(spec), "--set", "optimizer.lr=-1"), workdir)
    assert line.startswith("optlab: error: --set:") and "optimizer.lr" in line


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:////proc/optlab/mlflow.db", "/proc"),
        ("sqlite:////proc/mlflow.db", "/proc"),
        ("ftp://example.org/store", "unknown scheme 'ftp'"),
        ("http://127.0.0.1:{port}", "is unreachable"),
        ("sqlite:///", "in memory"),  # a file name left out: the runs were lost, exit 0
        ("sqlite:///:memory:", "in memory"),
        # a colon left out: it read as a path, 'use sqlite:////cwd/http/127.0.0.1:...'
        ("http//127.0.0.1:{port}", "did you mean 'http://127.0.0.1:"),
    ],
    ids=[
        "missing-folder",
        "read-only-folder",
        "bad-scheme",
        "no-server",
        "no-file",
        "memory",
        "no-colon",
    ],
)
def test_unusable_tracking_store_is_refused_before_any_run(
    uri: str, expected: str, workdir: Path
) -> None:
    spec = workdir.parent / "good.yaml"
    spec.write_text(GOOD)
    uri = uri.format(port=free_port())
    (line,) = _refused(_run(str(spec), "--json", "--tracking-uri", uri), workdir)
    assert expected in line and uri in line, line


def test_read_only_working_folder_with_the_default_store(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = workdir.parent / "good.yaml"
    spec.write_text(GOOD)
    monkeypatch.chdir("/proc")  # the default store, sqlite:///mlflow.db, cannot be created here
    (line,) = _refused(_run(str(spec), "--json"), workdir)
    assert "tracking store sqlite:///mlflow.db" in line or "'sqlite:///mlflow.db'" in line, line
    assert not Path("/proc/mlflow.db").exists()


def test_the_good_spec_does_run(workdir: Path, recorder: StartRecorder) -> None:
    """The control: the same spec and store settings that work do start a run and log it."""
    spec = workdir.parent / "good.yaml"
    spec.write_text(GOOD)
    result = _run(str(spec), "--json")
    assert result.exit_code == 0, result.stderr
    assert (workdir / "mlflow.db").is_file()
    assert recorder.started == ["softmax"]
    recorder.started.clear()


def test_a_full_disk_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 2**20, 2**20))
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "ok.yaml"
    spec.write_text(GOOD)
    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 2
    assert "MiB free" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_a_store_under_proc_says_it_is_no_storage(tmp_path: Path) -> None:
    spec = tmp_path / "ok.yaml"
    spec.write_text(GOOD)
    result = CliRunner().invoke(
        app, ["run", str(spec), "--tracking-uri", "sqlite:////proc/optlab-test/mlflow.db"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "optlab: error: /proc: a virtual file system with no storage (such as /proc) cannot "
        "hold the tracking store sqlite:////proc/optlab-test/mlflow.db; pass --tracking-uri "
        "with a folder on a disk"
    )
