"""Figure 5: start-up — ``optlab --help`` and ``optlab validate`` as subprocess wall time.

Each command runs as a fresh process (interpreter start-up and imports included), best of
several; the target is under half a second each.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import Figure

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "svm_vs_softmax.yaml"


def optlab_command() -> list[str]:
    """The ``optlab`` console script next to this interpreter (else ``python -m optlab``)."""
    script = Path(sys.executable).with_name("optlab")
    if script.exists():
        return [str(script)]
    found = shutil.which("optlab")
    return [found] if found else [sys.executable, "-m", "optlab"]


def wall_time(argv: list[str], k: int) -> float:
    """Best-of-``k`` wall time of running ``argv``; raises if it fails."""
    best = float("inf")
    for _ in range(k):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]}")
        best = min(best, elapsed)
    return best


def run(quick: bool = False) -> list[Figure]:
    """Figure 5: the two commands' start-up times."""
    k = 2 if quick else 5
    optlab = optlab_command()
    figures = []
    for label, args in (("help", ["--help"]), ("validate", ["validate", str(SPEC)])):
        argv = [*optlab, *args]
        seconds = wall_time(argv, k)
        figures.append(
            Figure(
                f"startup.{label}",
                f"wall time of `optlab {' '.join(args).replace(str(ROOT) + '/', '')}`",
                seconds,
                "s",
                0.5,
                "<",
                note=f"subprocess, best of {k}",
                detail={"argv": argv, "seconds": seconds},
            )
        )
    return figures
