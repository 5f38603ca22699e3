"""The compiled kernels, of each instruction set the CPU runs, equal numpy's products and refuse
what they cannot do; optlab.kernels picks the best instruction set and uses it exactly where it
fits (numpy elsewhere, or when turned off)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kernel_sets import compiled_module, cpu_runs, rtol

import optlab.kernels as kernels
import optlab.objective as objective_module
from optlab import Array
from optlab.fastpath import blocked_loss_and_grad
from optlab.objective import BoundLoss, Objective
from optlab_plugins.losses import SoftmaxLoss


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
    """A broken build must not pass unnoticed as a silent fallback to numpy; the best
    instruction set the CPU runs is the one used."""
    runs = cpu_runs()
    if platform.machine().lower() not in {"x86_64", "amd64"} or not runs:
        pytest.skip("not an x86-64 CPU with AVX2 and FMA or AVX-512F")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler to build the kernel with")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        pytest.skip("no Python headers to build the kernel with (python3-dev)")
    if os.environ.get(kernels.ENV_VAR, "").strip() not in ("", "1"):
        pytest.skip(f"{kernels.ENV_VAR} is set in this environment")
    module = compiled_module()
    assert module is not None and list(module.isas) == runs
    assert kernels.compiled() and kernels.instruction_set() == runs[0]


@pytest.mark.parametrize(
    ("setting", "runnable", "chosen"),
    [
        ("", ("avx512", "avx2"), "avx512"),
        ("1", ("avx512", "avx2"), "avx512"),
        (" AVX2 ", ("avx512", "avx2"), "avx2"),
        ("avx512", ("avx512", "avx2"), "avx512"),
        ("avx512", ("avx2",), "avx2"),  # a cap, not a demand
        ("", ("avx2",), "avx2"),
        ("avx2", (), None),
        ("", (), None),
        ("0", ("avx512", "avx2"), None),
    ],
)
def test_the_setting_chooses_the_instruction_set(
    setting: str, runnable: tuple[str, ...], chosen: str | None
) -> None:
    assert kernels.choose_instruction_set(setting, runnable) == chosen


def test_an_unknown_setting_warns_and_takes_the_best() -> None:
    with pytest.warns(RuntimeWarning, match=r"OPTLAB_KERNELS='sse9' is not one of 0, 1, avx512"):
        assert kernels.choose_instruction_set("sse9", ("avx512", "avx2")) == "avx512"


def test_a_kernel_the_cpu_cannot_run_refuses_to() -> None:
    module = compiled_module()
    if module is None:
        pytest.skip("the compiled module is not built here")
    missing = [isa for isa in kernels.INSTRUCTION_SETS if isa not in module.isas]
    if not missing:
        pytest.skip("this CPU runs every instruction set")
    G, dS, X = operands(4, 3, 2, np.float64)
    with pytest.raises(RuntimeError, match=f"add_weight_grad_{missing[0]} needs a CPU with"):
        getattr(module, f"add_weight_grad_{missing[0]}")(G, dS, X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [1, 2, 3, 6, 7, 10, 12, 13, 16])
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
def test_kernel_adds_the_product(
    kernel: kernels.KernelSet, n: int, d: int, c: int, dtype: Any
) -> None:
    """Row tiles (32) and class chunks (12 with AVX-512, 6 with AVX2) with and without a
    remainder; feature tails of every length."""
    G, dS, X = operands(n, d, c, dtype)
    G0 = G.copy()
    kernel.add_weight_grad(G, dS, X)
    assert_added(G, G0, dS, X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [1, 2, 3, 6, 7, 10, 12, 13, 25])
@pytest.mark.parametrize(
    ("n", "d"),
    [
        (1, 1),
        (2, 7),
        (3, 8),
        (5, 16),
        (64, 17),
        (65, 255),
        (66, 256),
        (129, 513),
        (97, 1100),
        (3, 3073),
    ],
)
def test_scores_kernel_equals_the_product(
    kernel: kernels.KernelSet, n: int, d: int, c: int, dtype: Any
) -> None:
    """Odd and even rows, row chunks (64 float32 / 32 float64) and feature tiles (512 / 256)
    with and without a remainder, class chunks of 12 (AVX-512) or 6 (AVX2)."""
    rng = np.random.default_rng(n * 1000 + d + c)
    X = rng.standard_normal((n, d)).astype(dtype)
    W = rng.standard_normal((d, c)).astype(dtype)
    out = np.full((n, c), np.nan, dtype=dtype)
    kernel.scores(out, X, W)
    want = X.astype(np.float64) @ W.astype(np.float64)
    tol = rtol(dtype)
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * float(np.abs(want).max()))


def test_kernels_take_empty_operands(kernel: kernels.KernelSet) -> None:
    kernel.scores(np.empty((0, 3)), np.empty((0, 300)), np.ones((300, 3)))
    kernel.scores(np.empty((4, 0)), np.ones((4, 300)), np.empty((300, 0)))
    out = np.full((4, 3), np.nan)
    kernel.scores(out, np.empty((4, 0)), np.empty((0, 3)))  # no features: an empty sum
    np.testing.assert_array_equal(out, np.zeros((4, 3)))
    G = np.ones((3, 0))
    kernel.add_weight_grad(G, np.ones((4, 3)), np.empty((4, 0)))


def test_kernels_give_the_same_bits_whatever_runs_beside_them(kernel: kernels.KernelSet) -> None:
    G, dS, X = operands(300, 1000, 10, np.float32, seed=1)
    serial = G.copy()
    kernel.add_weight_grad(serial, dS, X)
    outs = [G.copy() for _ in range(4)]
    threads = [threading.Thread(target=kernel.add_weight_grad, args=(out, dS, X)) for out in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outs:
        np.testing.assert_array_equal(out, serial)
    W = G.T.copy()  # (1000, 10)
    want = np.empty((300, 10), np.float32)
    kernel.scores(want, X, W)
    outs = [np.empty_like(want) for _ in range(4)]
    threads = [threading.Thread(target=kernel.scores, args=(o, X, W)) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outs:
        np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize(
    ("function", "args", "error", "message"),
    [
        (
            "add_weight_grad",
            (np.zeros((2, 3)), np.zeros((4, 2))),
            TypeError,
            r"add_weight_grad_avx\w+ takes 3 arguments",
        ),
        (
            "add_weight_grad",
            (np.zeros((2, 3)), np.zeros((4, 2), np.float32), np.zeros((4, 3))),
            TypeError,
            "one dtype",
        ),
        (
            "add_weight_grad",
            (np.zeros((2, 3)), np.zeros((4, 2)), np.zeros((5, 3))),
            ValueError,
            "shapes",
        ),
        (
            "add_weight_grad",
            (np.zeros((2, 4)), np.zeros((4, 2)), np.zeros((4, 3))),
            ValueError,
            "shapes",
        ),
        (
            "add_weight_grad",
            (np.zeros((2, 3), int), np.zeros((4, 2)), np.zeros((4, 3))),
            TypeError,
            "grad_t must be",
        ),
        (
            "add_weight_grad",
            (np.zeros((2, 3)), np.zeros((4, 2)), np.zeros((4, 3), int)),
            TypeError,
            "X must be",
        ),
        ("add_weight_grad", (np.zeros(6), np.zeros((4, 2)), np.zeros((4, 3))), TypeError, "2-d"),
        (
            "add_weight_grad",
            (np.zeros((2, 3)), np.zeros((2, 4)).T, np.zeros((4, 3))),
            ValueError,
            "contiguous",
        ),
        (
            "scores",
            (np.zeros((4, 2)), np.zeros((4, 3))),
            TypeError,
            r"scores_avx\w+ takes 3 arguments",
        ),
        (
            "scores",
            (np.zeros((4, 2)), np.zeros((4, 3)), np.zeros((3, 2), np.float32)),
            TypeError,
            "one dtype",
        ),
        ("scores", (np.zeros((4, 2)), np.zeros((4, 3)), np.zeros((4, 2))), ValueError, "shapes"),
        ("scores", (np.zeros((5, 2)), np.zeros((4, 3)), np.zeros((3, 2))), ValueError, "shapes"),
        ("scores", (np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((3, 2))), ValueError, "shapes"),
        (
            "scores",
            (np.zeros((4, 2)), np.zeros((3, 4)).T, np.zeros((3, 2))),
            ValueError,
            "contiguous",
        ),
    ],
)
def test_kernels_refuse_what_they_cannot_do(
    kernel: kernels.KernelSet,
    function: str,
    args: tuple[Any, ...],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        getattr(kernel, function)(*args)


def test_kernel_refuses_a_read_only_output(kernel: kernels.KernelSet) -> None:
    G, dS, X = operands(4, 3, 2, np.float64)
    G.flags.writeable = False
    with pytest.raises((ValueError, BufferError, TypeError)):
        kernel.add_weight_grad(G, dS, X)
    out = np.empty((4, 2))
    out.flags.writeable = False
    with pytest.raises((ValueError, BufferError, TypeError)):
        kernel.scores(out, X, np.ones((3, 2)))


class Recorder:
    """Stands in for the compiled module: records calls, computes with numpy."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[str] = set()

    def add_weight_grad(self, grad_t: Array, dscores: Array, X: Array) -> None:
        self.calls += 1
        assert dscores.flags.c_contiguous and X.flags.c_contiguous and grad_t.flags.c_contiguous
        grad_t += dscores.T @ X

    def scores(self, out: Array, X: Array, W: Array) -> None:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        assert out.flags.c_contiguous and X.flags.c_contiguous and W.flags.c_contiguous
        np.matmul(X, W, out=out)


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
    assert grad.shape == (30, 10) and grad.dtype == dtype and grad.flags.c_contiguous
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
    monkeypatch: pytest.MonkeyPatch, kernel: kernels.KernelSet, dtype: Any
) -> None:
    rng = np.random.default_rng(3)
    d = kernels.MIN_SCORE_FEATURES + 44  # both kernels take part
    X = rng.standard_normal((500, d)).astype(dtype)
    y = rng.integers(0, 10, 500)
    W = (0.1 * rng.standard_normal((d, 10))).astype(dtype)
    loss = SoftmaxLoss()
    value, dscores = loss.loss_and_grad(X @ W, y)
    want = X.T @ dscores
    results = {}
    for name, impl in [("kernel", kernel), ("numpy", None)]:
        monkeypatch.setattr(kernels, "_kernel", impl)
        results[name] = blocked_loss_and_grad(X, y, W, loss.loss_and_grad, 64, parts=2)
    for got_value, got_grad in results.values():
        assert got_value == pytest.approx(float(value), rel=rtol(dtype))
        np.testing.assert_allclose(
            got_grad, want, rtol=rtol(dtype), atol=rtol(dtype) * float(np.abs(want).max())
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_that_fit_go_to_the_kernel(recorder: Recorder, dtype: Any) -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((7, kernels.MIN_SCORE_FEATURES)).astype(dtype)
    W = rng.standard_normal((kernels.MIN_SCORE_FEATURES, kernels.MAX_SCORE_CLASSES)).astype(dtype)
    np.testing.assert_allclose(kernels.scores(X, W), X @ W, rtol=rtol(dtype))
    out = np.empty((7, kernels.MAX_SCORE_CLASSES), dtype)
    assert kernels.scores(X, np.asfortranarray(W), out=out) is out  # W is copied, not refused
    np.testing.assert_allclose(out, X @ W, rtol=rtol(dtype))
    assert recorder.calls == 2


@pytest.mark.parametrize(
    "case", ["few features", "many classes", "mixed dtypes", "strided X", "strided out"]
)
def test_other_scores_go_to_numpy(recorder: Recorder, case: str) -> None:
    rng = np.random.default_rng(6)
    d, c = kernels.MIN_SCORE_FEATURES, kernels.MAX_SCORE_CLASSES
    if case == "few features":
        d -= 1
    elif case == "many classes":
        c += 1
    X = rng.standard_normal((7, d))
    W = rng.standard_normal((d, c))
    out = None
    if case == "mixed dtypes":
        W = W.astype(np.float32)
    elif case == "strided X":
        X = np.asfortranarray(X)
    elif case == "strided out":
        out = np.empty((c, 7)).T
    got = kernels.scores(X, W, out=out)
    np.testing.assert_allclose(got, X @ W, rtol=1e-6)
    assert out is None or got is out
    assert recorder.calls == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_are_the_same_bits_on_any_number_of_threads(
    monkeypatch: pytest.MonkeyPatch, kernel: kernels.KernelSet, dtype: Any
) -> None:
    monkeypatch.setattr(kernels, "_kernel", kernel)
    rng = np.random.default_rng(8)
    X = rng.standard_normal((1001, 300)).astype(dtype)
    W = rng.standard_normal((300, 10)).astype(dtype)
    one = kernels.scores(X, W)
    for threads in (2, 3, 8):
        np.testing.assert_array_equal(kernels.scores(X, W, threads=threads), one)


def test_scores_share_the_rows_among_threads(recorder: Recorder) -> None:
    rng = np.random.default_rng(9)
    X = rng.standard_normal((300, kernels.MIN_SCORE_FEATURES))
    W = rng.standard_normal((kernels.MIN_SCORE_FEATURES, 4))
    np.testing.assert_allclose(kernels.scores(X, W, threads=3), X @ W, rtol=1e-12)
    assert recorder.calls == 3 and "MainThread" in recorder.threads and len(recorder.threads) > 1
    recorder.calls = 0
    kernels.scores(X[:100], W, threads=3)  # too few rows to share out
    assert recorder.calls == 1


@pytest.mark.parametrize("machine", [1, 2, 4])
def test_objective_predicts_large_sets_on_a_thread_per_core(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch, machine: int
) -> None:
    monkeypatch.setattr(objective_module, "BLOCKED_MIN_BYTES", 1)
    monkeypatch.setattr(objective_module, "cores", lambda: machine)
    monkeypatch.setattr(objective_module, "blas_threads", lambda: machine)
    rng = np.random.default_rng(10)
    X = rng.standard_normal((400, kernels.MIN_SCORE_FEATURES))
    y = rng.integers(0, 3, 400)
    objective = Objective(X, y, 3, BoundLoss(SoftmaxLoss(), "softmax", "optlab"))
    W = rng.standard_normal((kernels.MIN_SCORE_FEATURES, 3))
    np.testing.assert_array_equal(objective.predict(W, X), np.argmax(X @ W, axis=1))
    assert recorder.calls == machine


def kernels_in_a_process_with(setting: str) -> str:
    code = "import optlab.kernels as k; print(k.compiled(), k.instruction_set())"
    env = {**os.environ, kernels.ENV_VAR: setting}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_environment_turns_the_kernel_off() -> None:
    assert kernels_in_a_process_with("0") == "False None"


def test_the_environment_caps_the_instruction_set() -> None:
    module = compiled_module()
    if module is None or "avx2" not in module.isas:
        pytest.skip("no AVX2 kernel here")
    assert kernels_in_a_process_with("avx2") == "True avx2"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_objective_is_the_same_to_rounding_with_and_without_the_kernels(
    monkeypatch: pytest.MonkeyPatch, kernel: kernels.KernelSet, dtype: Any
) -> None:
    """Full batch, a minibatch and predictions, through the objective, on each path."""
    rng = np.random.default_rng(12)
    d = kernels.MIN_SCORE_FEATURES + 3
    X = rng.standard_normal((300, d)).astype(dtype)
    y = rng.integers(0, 10, 300)
    W = (0.05 * rng.standard_normal((d, 10))).astype(dtype)
    batch = rng.permutation(300)[:64]
    got = {}
    for name, impl in [("kernel", kernel), ("numpy", None)]:
        monkeypatch.setattr(kernels, "_kernel", impl)
        objective = Objective(X, y, 10, BoundLoss(SoftmaxLoss(), "softmax", "optlab"))
        got[name] = (
            objective.value_and_grad(W),
            objective.value_and_grad(W, batch),
            objective.predict(W, X),
        )
    tol = rtol(dtype)
    pairs = zip(got["kernel"][:2], got["numpy"][:2], strict=True)
    for (parts_k, grad_k), (parts_n, grad_n) in pairs:
        assert parts_k.total == pytest.approx(parts_n.total, rel=tol)
        assert grad_k.dtype == grad_n.dtype == np.dtype(dtype)
        np.testing.assert_allclose(grad_k, grad_n, rtol=tol, atol=tol * np.abs(grad_n).max())
    assert (got["kernel"][2] == got["numpy"][2]).mean() > 0.99  # ties may round either way
