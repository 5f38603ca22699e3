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
#: the C source of optlab's one compiled module (``optlab_plugins.compiled._kernels``)
KERNELS = Path("plugins") / "compiled" / "_kernels.c"


def build_wheel(source: Path, out: Path) -> Path:
    """Build the wheel of a copy of ``source`` into ``out`` (nothing is written into the
    tree); returns the copy. optlab's kernels are compiled only if the development install's
    are missing or older than their source (:func:`reuse_compiled_kernels`)."""
    tree = out / f"src-{source.name}"
    shutil.copytree(source, tree, ignore=IGNORE)
    if (tree / KERNELS).is_file():
        reuse_compiled_kernels(tree)
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


def reuse_compiled_kernels(tree: Path) -> None:
    """Put the kernels the development install compiled from :data:`KERNELS` (which takes
    most of a minute) where setuptools' ``build_ext`` writes them in ``tree``, with their
    times kept: it skips the compilation when they are newer than the C source, and compiles
    as usual when there are none or the source changed since."""
    built = (ROOT / KERNELS).with_suffix(sysconfig.get_config_var("EXT_SUFFIX"))
    if not built.is_file():
        return
    build_lib = tree / "build" / f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
    target = build_lib / "optlab_plugins" / "compiled" / built.name
    target.parent.mkdir(parents=True)
    shutil.copy2(built, target)


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
