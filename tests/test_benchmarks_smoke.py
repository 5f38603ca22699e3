"""The benchmark suite keeps working: ``python -m benchmarks --quick`` writes every figure.

Timing targets are NOT asserted here (a test machine is too noisy for that); only that the
suite runs end to end, every figure has a finite value, and the JSON has its documented shape.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from session_cache import once_per_session

ROOT = Path(__file__).resolve().parents[1]

FIGURE_KEYS = {"id", "title", "value", "unit", "target", "op", "note", "detail", "passed"}
#: figures every run must contain (group prefixes of the six figures of issue 8)
EXPECTED = [
    "fullbatch.svm.float32",
    "fullbatch.softmax.float32",
    "fullbatch.svm.float64",
    "fullbatch.softmax.float64",
    "sgd_epoch.svm.float32",
    "sgd_epoch.softmax.float64",
    "sklearn_epoch.svm",
    "sklearn_epoch.softmax",
    "sklearn_digits_time.svm",
    "sklearn_digits_accuracy.softmax",
    "overhead.cifar10_shape",
    "overhead.digits",
    "startup.help",
    "startup.validate",
    "memory.fullbatch.float32",
    # issue 18: against the machine's roofline, and the epoch at 2 to 1,000 classes
    "fullbatch.svm.float32.roofline",
    "sgd_epoch.softmax.float32.roofline",
    "sgd_epoch_vs_bare.softmax.float32",
    "classes.C2.numpy_vs_bare",
    "classes.C1000.numpy_vs_bare",
]


def _run_quick_suite(folder: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(folder / "results.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (folder / "stdout.txt").write_text(done.stdout, encoding="utf-8")


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The results and the printed table of one ``--quick`` run (once per session, also when
    xdist gives this module's tests to two workers)."""
    folder = once_per_session(tmp_path_factory, "bench-quick", _run_quick_suite)
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    return results, (folder / "stdout.txt").read_text(encoding="utf-8")


@pytest.mark.slow
def test_quick_suite_writes_every_figure_with_a_value(
    quick_results: tuple[dict[str, Any], str],
) -> None:
    results, _ = quick_results
    assert results["mode"] == "quick"
    ids = [f["id"] for f in results["figures"]]
    assert len(ids) == len(set(ids))
    missing = [name for name in EXPECTED if name not in ids]
    assert not missing, f"missing figures: {missing}"
    for figure in results["figures"]:
        assert set(figure) == FIGURE_KEYS, figure["id"]
        assert isinstance(figure["value"], float), f"{figure['id']}: {figure['note']}"
        assert math.isfinite(figure["value"]), figure["id"]
        assert figure["op"] in {"<=", ">=", "<", ">"}
        if figure["target"] is None:
            assert figure["passed"] is None
        else:
            assert isinstance(figure["passed"], bool)
    summary = results["summary"]
    assert sum(summary.values()) == len(ids)


@pytest.mark.slow
def test_quick_suite_records_the_machine_and_prints_the_table(
    quick_results: tuple[dict[str, Any], str],
) -> None:
    results, stdout = quick_results
    env = results["environment"]
    assert env["blas"], "threadpoolctl found no BLAS library"
    assert all(isinstance(b["num_threads"], int) for b in env["blas"])
    assert isinstance(env["env"], dict)
    assert env["processor"] and env["cpu"]["model_name"] == env["processor"]
    rates = env["machine_rates"]
    threads = str(rates["threads"])
    for table in (rates["read_gb_per_s"], *rates["gemm_gflop_per_s"].values()):
        assert set(table) == {"1", threads} and all(v > 0 for v in table.values())
    assert env["kernels"].startswith(("AVX-512", "AVX2", "numpy")) and "optlab kernels" in stdout
    assert results["seconds"] > 0
    for figure_id in ("fullbatch.svm.float32", "memory.fullbatch.float32"):
        assert figure_id in stdout
    assert "passed" in stdout and "failed" in stdout


def test_figure_pass_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks._common import Figure

    assert Figure("a", "t", 1.2, "x", 1.3).passed is True
    assert Figure("a", "t", 1.4, "x", 1.3).passed is False
    assert Figure("a", "t", 6.0, "x", 5.0, ">=").passed is True
    assert Figure("a", "t", 0.5, "s", 0.5, "<").passed is False
    assert Figure("a", "t", None, "x", 1.3).passed is False
    assert Figure("a", "t", float("nan"), "x", 1.3).passed is False
    assert Figure("a", "t", 2.0, "x").passed is None
