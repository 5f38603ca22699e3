"""The wheel: built from the tree, installed into a fresh virtual environment, runs a spec."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from venvs import fresh_venv

pytestmark = pytest.mark.slow


@pytest.fixture
def wheel(optlab_wheel: Path) -> Path:
    """optlab's wheel, built from a copy of the tree (once per session: conftest.py)."""
    return optlab_wheel


def test_wheel_installs_packages_under_their_own_names(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert "optlab" in top and "optlab_plugins" in top
    assert "plugins" not in top, "a generic top-level 'plugins' package must not be installed"
    assert "optlab_plugins/losses.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[optlab]" in text and "optlab_plugins.losses" in text


def test_wheel_in_a_fresh_venv_runs_a_spec(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    site = fresh_venv(env_dir, wheel)
    py = env_dir / "bin" / "python"
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import optlab, optlab_plugins; print(optlab.__file__); print(optlab_plugins.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.split()
    assert all(str(site) in w for w in where), where

    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: tiny\n"
        "data: {name: blobs, n_samples: 120, n_features: 4, n_classes: 3}\n"
        "loss: {name: softmax}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 20, epochs: 2}\n"
    )
    optlab = env_dir / "bin" / "optlab"
    validated = subprocess.run(
        [str(optlab), "validate", str(spec)], capture_output=True, text=True, cwd=tmp_path
    )
    assert validated.returncode == 0, validated.stderr
    ran = subprocess.run(
        [str(optlab), "run", str(spec), "--json"], capture_output=True, text=True, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    (row,) = json.loads(ran.stdout)
    assert row["status"] == "FINISHED"
    assert row["metrics"]["test_accuracy"] > 0.5
    assert (tmp_path / "mlflow.db").exists()
