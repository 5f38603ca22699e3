"""The compiled weight-gradient kernel equals numpy's product, refuses what it cannot do, and
optlab.kernels uses it exactly where it fits (numpy elsewhere, or when turned off)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optlab.kernels as kernels
from optlab import Array
from optlab.fastpath import blocked_loss_and_grad
from optlab_plugins.losses import SoftmaxLoss

ROOT = Path(__file__).resolve().parents[1]
needs_kernel = pytest.mark.skipif(not kernels.compiled(), reason="no compiled AVX-512 kernel")


def cpu_has_avx512() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and " avx512f" in line for line in text.splitlines())


def rtol(dtype: Any) -> float:
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-5


def operands(n: int, d: int, c: int, dtype: Any, seed: int = 0) -> tuple[Array, Array, Array]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    dS = rng.standard_normal((n, c)).astype(dtype)
    G = rng.standard_normal((c, d)).astype(dtype)
    return G, dS, X


def assert_added(got: Array, G0: Array, dS: Array, X: Array) -> None:
    want = G0.astype(np.float64) + dS.astype(np.float64).T @ X.astype(np.float64)
    tol = max(rtol(X.dtype), rtol(dS.dtype))
    assert got.dtype == G0.dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))


def test_the_kernel_is_built_where_the_cpu_can_run_it() -> None:
    """A broken build must not pass unnoticed as a silent fallback to numpy."""
    if platform.machine().lower() not in {"x86_64", "amd64"} or not cpu_has_avx512():
        pytest.skip("not an x86-64 CPU with AVX-512F")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler to build the kernel with")
    if os.environ.get(kernels.ENV_VAR, "1").strip() == "0":
        pytest.skip(f"{kernels.ENV_VAR}=0 in this environment")
    assert kernels.compiled()


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [1, 2, 3, 10, 12, 13, 16])
@pytest.mark.parametrize(
    ("n", "d"),
    [
        (0, 5),
        (1, 1),
        (1, 17),
        (7, 15),
        (31, 16),
        (32, 31),
        (33, 32),
        (65, 33),
        (100, 65),
        (3, 3073),
    ],
)
def test_kernel_adds_the_product(n: int, d: int, c: int, dtype: Any) -> None:
    G, dS, X = operands(n, d, c, dtype)
    G0 = G.copy()
    kernels._kernel.add_weight_grad(G, dS, X)
    assert_added(G, G0, dS, X)


@needs_kernel
def test_kernel_sums_rows_in_order_whatever_runs_beside_it() -> None:
    G, dS, X = operands(300, 1000, 10, np.float32, seed=1)
    serial = G.copy()
    kernels._kernel.add_weight_grad(serial, dS, X)
    outs = [G.copy() for _ in range(4)]
    threads = [
        threading.Thread(target=kernels._kernel.add_weight_grad, args=(out, dS, X)) for out in outs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outs:
        np.testing.assert_array_equal(out, serial)


@needs_kernel
@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((np.zeros((2, 3)), np.zeros((4, 2))), TypeError, "takes 3 arguments"),
        (
            (np.zeros((2, 3)), np.zeros((4, 2), np.float32), np.zeros((4, 3))),
            TypeError,
            "one dtype",
        ),
        ((np.zeros((2, 3)), np.zeros((4, 2)), np.zeros((5, 3))), ValueError, "shapes"),
        ((np.zeros((2, 4)), np.zeros((4, 2)), np.zeros((4, 3))), ValueError, "shapes"),
        ((np.zeros((2, 3), int), np.zeros((4, 2)), np.zeros((4, 3))), TypeError, "grad_t must be"),
        ((np.zeros((2, 3)), np.zeros((4, 2)), np.zeros((4, 3), int)), TypeError, "X must be"),
        ((np.zeros(6), np.zeros((4, 2)), np.zeros((4, 3))), TypeError, "2-d"),
        ((np.zeros((2, 3)), np.zeros((2, 4)).T, np.zeros((4, 3))), ValueError, "contiguous"),
    ],
)
def test_kernel_refuses_what_it_cannot_do(
    args: tuple[Any, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        kernels._kernel.add_weight_grad(*args)


@needs_kernel
def test_kernel_refuses_a_read_only_output() -> None:
    G, dS, X = operands(4, 3, 2, np.float64)
    G.flags.writeable = False
    with pytest.raises((ValueError, BufferError, TypeError)):
        kernels._kernel.add_weight_grad(G, dS, X)


class Recorder:
    """Stands in for the compiled module: records calls, computes with numpy."""

    def __init__(self) -> None:
        self.calls = 0

    def add_weight_grad(self, grad_t: Array, dscores: Array, X: Array) -> None:
        self.calls += 1
        assert dscores.flags.c_contiguous and X.flags.c_contiguous and grad_t.flags.c_contiguous
        grad_t += dscores.T @ X


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    fake = Recorder()
    monkeypatch.setattr(kernels, "_kernel", fake)
    return fake


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fitting_operands_go_to_the_kernel(recorder: Recorder, dtype: Any) -> None:
    G, dS, X = operands(20, 30, 10, dtype)
    G0 = G.copy()
    kernels.add_weight_grad(G, dS, X)
    assert_added(G, G0, dS, X)
    # a non-contiguous score gradient is small: it is copied, not refused
    grad = kernels.weight_grad(np.asfortranarray(dS), X)
    assert grad.shape == (30, 10) and grad.dtype == dtype
    assert_added(grad.T, np.zeros_like(G), dS, X)
    assert recorder.calls == 2


@pytest.mark.parametrize(
    "case", ["many classes", "mixed dtypes", "strided X", "integer X", "read-only out"]
)
def test_other_operands_go_to_numpy(recorder: Recorder, case: str) -> None:
    G, dS, X = operands(20, 30, 10, np.float64)
    if case == "many classes":
        G, dS, X = operands(20, 30, kernels.MAX_CLASSES + 1, np.float64)
    elif case == "mixed dtypes":
        X = X.astype(np.float32)
    elif case == "strided X":
        X = np.asfortranarray(X)
    elif case == "integer X":
        X = np.arange(600).reshape(20, 30)
    if case != "read-only out":
        grad = kernels.weight_grad(dS, X)
        np.testing.assert_allclose(grad, X.T @ dS, rtol=1e-12)
    if case == "read-only out":
        G.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            kernels.add_weight_grad(G, dS, X)
    elif case != "integer X":
        G0 = G.copy()
        kernels.add_weight_grad(G, dS, X)
        assert_added(G, G0, dS, X)
    assert recorder.calls == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_pass_is_the_same_with_and_without_the_kernel(
    monkeypatch: pytest.MonkeyPatch, dtype: Any
) -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((500, 70)).astype(dtype)
    y = rng.integers(0, 10, 500)
    W = (0.1 * rng.standard_normal((70, 10))).astype(dtype)
    loss = SoftmaxLoss()
    value, dscores = loss.loss_and_grad(X @ W, y)
    want = X.T @ dscores
    results = {}
    for name, impl in [("kernel", kernels._kernel), ("numpy", None)]:
        monkeypatch.setattr(kernels, "_kernel", impl)
        results[name] = blocked_loss_and_grad(X, y, W, loss.loss_and_grad, 64, parts=2)
    for got_value, got_grad in results.values():
        assert got_value == pytest.approx(float(value), rel=rtol(dtype))
        np.testing.assert_allclose(
            got_grad, want, rtol=rtol(dtype), atol=rtol(dtype) * float(np.abs(want).max())
        )


def test_the_environment_turns_the_kernel_off() -> None:
    code = "import optlab.kernels as k; print(k.compiled())"
    env = {**os.environ, kernels.ENV_VAR: "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
