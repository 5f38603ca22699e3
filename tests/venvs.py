"""Building wheels from copies of the tree and installing them into fresh virtual envs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*_cache")


def build_wheel(source: Path, out: Path) -> Path:
    """Build the wheel of a copy of ``source`` into ``out`` (nothing is written into the
    tree); returns the copy."""
    tree = out / f"src-{source.name}"
    shutil.copytree(source, tree, ignore=IGNORE)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(tree),
        ],
        check=True,
        cwd=out,
    )
    return tree


def optlab_source(out: Path) -> Path:
    """The files optlab's wheel is built from, copied (no venv, caches or build output)."""
    src = out / "optlab"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("optlab", "plugins"):
        shutil.copytree(ROOT / name, src / name, ignore=IGNORE)
    return src


def fresh_venv(env_dir: Path, *wheels: Path) -> Path:
    """A new virtual environment with ``wheels`` installed; returns its site-packages.

    The other dependencies (numpy, mlflow, ...) come from the test interpreter through a
    ``.pth`` file instead of being downloaded again; the wheels' own packages come only from
    the wheels.
    """
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "_optlab_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            *map(str, wheels),
        ],
        check=True,
    )
    return site
