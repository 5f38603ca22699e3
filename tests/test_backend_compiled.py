"""The compiled backend (``optlab_plugins.compiled``): its kernels, of each instruction set the
CPU runs, equal numpy's products and refuse what they cannot do; ``CompiledBackend`` gives the
numpy backend's results to rounding for any operands (the kernels' own where they fit), the
same bits on any number of threads, in the products, the blocked full-batch pass and the
objective; ``OPTLAB_KERNELS`` turns it off or caps its instruction set; and the kernels are
built wherever the CPU can run them. The fused minibatch step: test_backend_compiled_steps*.py.
"""

from __future__ import annotations

import platform
import shutil
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kernel_sets import compiled_module, cpu_runs, rtol

import optlab._contract.objective as objective_module
from optlab import Array, Backend, BackendUnavailable, Loss
from optlab._contract.fastpath import blocked_loss_and_grad
from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
from optlab.testing import check_backend
from optlab_plugins.compiled import (
    MAX_CLASSES,
    MAX_SCORE_CLASSES,
    MIN_SCORE_FEATURES,
    CompiledBackend,
    optlab_register_backends,
)
from optlab_plugins.compiled._kernelset import (
    ENV_VAR,
    INSTRUCTION_SETS,
    KernelSet,
    choose_instruction_set,
    load,
)
from optlab_plugins.losses import SoftmaxLoss, SVMLoss
from optlab_plugins.regularizers import L2


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


def assert_close(got: Array, want: Array) -> None:
    """``got`` has ``want``'s shape and dtype and equals it to the dtype's rounding (exactly
    for integers)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    if want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want)
        return
    tol = rtol(want.dtype)
    atol = tol * max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=tol, atol=atol)


def build_compiled() -> Backend:
    """The registered compiled backend, as its factory builds it (``select_backend`` does)."""
    record = optlab_register_backends()[0]
    return record.factory(record.params())


# ---------------------------------------------------------------------------------- the build
def test_the_kernel_is_built_where_the_cpu_can_run_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken build must not pass unnoticed as a silent fallback to numpy; the best
    instruction set the CPU runs is the one the registered backend uses."""
    runs = cpu_runs()
    if platform.machine().lower() not in {"x86_64", "amd64"} or not runs:
        pytest.skip("not an x86-64 CPU with AVX2 and FMA or AVX-512F")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler to build the kernel with")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        pytest.skip("no Python headers to build the kernel with (python3-dev)")
    monkeypatch.delenv(ENV_VAR, raising=False)
    module = compiled_module()
    assert module is not None, "optlab_plugins.compiled._kernels was not built"
    assert list(module.isas) == runs
    backend = build_compiled()
    assert isinstance(backend, CompiledBackend)
    assert backend.kernels.name == runs[0] and backend.label == f"compiled ({runs[0]})"


# ----------------------------------------------------------------------------- OPTLAB_KERNELS
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
    assert choose_instruction_set(setting, runnable) == chosen


def test_an_unknown_setting_warns_and_takes_the_best() -> None:
    with pytest.warns(RuntimeWarning, match=r"OPTLAB_KERNELS='sse9' is not one of 0, 1, avx512"):
        assert choose_instruction_set("sse9", ("avx512", "avx2")) == "avx512"


def test_the_environment_turns_the_backend_off(monkeypatch: pytest.MonkeyPatch) -> None:
    if compiled_module() is None:
        pytest.skip("the compiled module is not built here")
    monkeypatch.setenv(ENV_VAR, "0")
    assert load() == "OPTLAB_KERNELS=0 turns the compiled kernels off"
    with pytest.raises(BackendUnavailable, match="OPTLAB_KERNELS=0 turns the compiled kernels"):
        build_compiled()


def test_the_environment_caps_the_instruction_set(monkeypatch: pytest.MonkeyPatch) -> None:
    module = compiled_module()
    if module is None or "avx2" not in module.isas:
        pytest.skip("no AVX2 kernel here")
    monkeypatch.setenv(ENV_VAR, "avx2")
    assert build_compiled().label == "compiled (avx2)"
    for best in ("", "1"):
        monkeypatch.setenv(ENV_VAR, best)
        assert build_compiled().label == f"compiled ({module.isas[0]})"


def test_the_backend_says_why_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    module = compiled_module()
    if module is not None:
        monkeypatch.setattr(module, "isas", ())
        with pytest.raises(BackendUnavailable, match="this CPU runs none of the kernels'"):
            build_compiled()
    monkeypatch.setitem(sys.modules, "optlab_plugins.compiled._kernels", None)
    with pytest.raises(BackendUnavailable, match="the compiled module was not built"):
        build_compiled()


def test_the_compiled_backend_passes_the_conformance_check() -> None:
    try:
        check_backend(optlab_register_backends()[0])
    except BackendUnavailable as exc:
        pytest.skip(f"the compiled backend cannot run here: {exc}")


# ---------------------------------------------------------------------------- the raw kernels
def test_a_kernel_the_cpu_cannot_run_refuses_to() -> None:
    module = compiled_module()
    if module is None:
        pytest.skip("the compiled module is not built here")
    missing = [isa for isa in INSTRUCTION_SETS if isa not in module.isas]
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
def test_kernel_adds_the_product(kernel: KernelSet, n: int, d: int, c: int, dtype: Any) -> None:
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
    kernel: KernelSet, n: int, d: int, c: int, dtype: Any
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


def test_kernels_take_empty_operands(kernel: KernelSet) -> None:
    kernel.scores(np.empty((0, 3)), np.empty((0, 300)), np.ones((300, 3)))
    kernel.scores(np.empty((4, 0)), np.ones((4, 300)), np.empty((300, 0)))
    out = np.full((4, 3), np.nan)
    kernel.scores(out, np.empty((4, 0)), np.empty((0, 3)))  # no features: an empty sum
    np.testing.assert_array_equal(out, np.zeros((4, 3)))
    G = np.ones((3, 0))
    kernel.add_weight_grad(G, np.ones((4, 3)), np.empty((4, 0)))


def test_kernels_give_the_same_bits_whatever_runs_beside_them(kernel: KernelSet) -> None:
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
    kernel: KernelSet,
    function: str,
    args: tuple[Any, ...],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        getattr(kernel, function)(*args)


def test_kernel_refuses_a_read_only_output(kernel: KernelSet) -> None:
    G, dS, X = operands(4, 3, 2, np.float64)
    G.flags.writeable = False
    with pytest.raises((ValueError, BufferError, TypeError)):
        kernel.add_weight_grad(G, dS, X)
    out = np.empty((4, 2))
    out.flags.writeable = False
    with pytest.raises((ValueError, BufferError, TypeError)):
        kernel.scores(out, X, np.ones((3, 2)))


# ------------------------------------------------------------------- the backend's products
PRODUCT_CASES = [
    "in the limits",
    "one class",
    "no rows",
    "score classes above MAX_SCORE_CLASSES",
    "classes above MAX_CLASSES",
    "features below MIN_SCORE_FEATURES",
    "Fortran-ordered X",
    "non-contiguous X",
    "Fortran-ordered W and dscores",
    "non-contiguous out",
    "mixed dtypes",
    "integers",
]


def case_operands(case: str, dtype: Any) -> tuple[Array, Array, Array, Array, Array]:
    """X (n, D), W (D, C), dscores (n, C), grad_t (C, D) and the scores' out (n, C)."""
    n, d, c = 70, MIN_SCORE_FEATURES, MAX_SCORE_CLASSES
    if case == "one class":
        c = 1
    elif case == "no rows":
        n = 0
    elif case == "score classes above MAX_SCORE_CLASSES":
        c = MAX_SCORE_CLASSES + 1
    elif case == "classes above MAX_CLASSES":
        c = MAX_CLASSES + 1
    elif case == "features below MIN_SCORE_FEATURES":
        d = MIN_SCORE_FEATURES - 1
    rng = np.random.default_rng(len(case))
    if case == "integers":
        X, W, dS, G = (rng.integers(-9, 9, shape) for shape in [(n, d), (d, c), (n, c), (c, d)])
        return X, W, dS, G, np.empty((n, c), X.dtype)
    X, W, dS, G = (
        rng.standard_normal(shape).astype(dtype) for shape in [(n, d), (d, c), (n, c), (c, d)]
    )
    out = np.empty((n, c), dtype)
    if case == "Fortran-ordered X":
        X = np.asfortranarray(X)
    elif case == "non-contiguous X":
        X = np.repeat(X, 2, axis=0)[::2]
    elif case == "Fortran-ordered W and dscores":
        W, dS = np.asfortranarray(W), np.asfortranarray(dS)
    elif case == "non-contiguous out":
        out = np.empty((c, n), dtype).T
    elif case == "mixed dtypes":
        other = np.float32 if np.dtype(dtype) == np.float64 else np.float64
        W, dS = W.astype(other), dS.astype(other)
        out = np.empty((n, c), np.result_type(X, W))
    return X, W, dS, G, out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", PRODUCT_CASES)
def test_the_products_are_the_numpy_backends_to_rounding(
    kernel: KernelSet, case: str, dtype: Any
) -> None:
    """Inside the kernels' limits and outside them (where numpy computes them): the same
    shapes, dtypes and values, inputs left alone."""
    X, W, dS, G, out = case_operands(case, dtype)
    kept = [a.copy() for a in (X, W, dS)]
    compiled, numpy = CompiledBackend(kernel), Backend()
    want = numpy.scores(X, W)
    assert_close(compiled.scores(X, W), want)
    assert_close(compiled.scores(X, W, threads=3), want)
    assert compiled.scores(X, W, out) is out
    assert_close(out, want)
    grad_t, want_t = G.copy(), G.copy()
    numpy.add_weight_grad(want_t, dS, X)
    compiled.add_weight_grad(grad_t, dS, X)
    assert_close(grad_t, want_t)
    grad = compiled.weight_grad(dS, X)
    assert_close(grad, numpy.weight_grad(dS, X))
    assert grad.flags.writeable  # the regularizers' gradients are added into it
    assert compiled.score_width(X, W) >= W.shape[1]
    for now, before in zip((X, W, dS), kept, strict=True):
        np.testing.assert_array_equal(now, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_where_the_kernels_fit_the_backend_gives_their_results(
    kernel: KernelSet, dtype: Any
) -> None:
    """At the kernels' limits (MAX_SCORE_CLASSES classes and MIN_SCORE_FEATURES features for
    the scores, MAX_CLASSES for the gradient) the products are the kernels' own, bit for bit:
    a build that stopped using them would show here. A W or score gradient in another layout
    is copied, not refused."""
    backend = CompiledBackend(kernel)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((70, MIN_SCORE_FEATURES)).astype(dtype)
    W = rng.standard_normal((MIN_SCORE_FEATURES, MAX_SCORE_CLASSES)).astype(dtype)
    scores = np.empty((70, MAX_SCORE_CLASSES), dtype)
    kernel.scores(scores, X, W)
    np.testing.assert_array_equal(backend.scores(X, W), scores)
    np.testing.assert_array_equal(backend.scores(X, np.asfortranarray(W)), scores)
    assert backend.score_width(X, W) == MAX_SCORE_CLASSES  # the kernel needs no padding
    dS = rng.standard_normal((70, MAX_CLASSES)).astype(dtype)
    grad_t = np.zeros((MAX_CLASSES, MIN_SCORE_FEATURES), dtype)
    kernel.add_weight_grad(grad_t, dS, X)
    np.testing.assert_array_equal(backend.weight_grad(dS, X), grad_t.T)
    np.testing.assert_array_equal(backend.weight_grad(np.asfortranarray(dS), X), grad_t.T)
    added = np.zeros_like(grad_t)
    backend.add_weight_grad(added, dS, X)
    np.testing.assert_array_equal(added, grad_t)


@pytest.mark.parametrize("backend_name", ["compiled", "numpy"])
def test_read_only_outputs_are_refused_as_numpy_refuses_them(
    kernel: KernelSet, backend_name: str
) -> None:
    backend = CompiledBackend(kernel) if backend_name == "compiled" else Backend()
    G, dS, X = operands(20, MIN_SCORE_FEATURES, 10, np.float64)
    W = G.T.copy()
    out = np.zeros((20, 10))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        backend.scores(X, W, out)
    G.flags.writeable = False
    G0 = G.copy()
    with pytest.raises(ValueError, match="read-only"):
        backend.add_weight_grad(G, dS, X)
    assert not out.any()
    np.testing.assert_array_equal(G, G0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_are_the_same_bits_on_any_number_of_threads(kernel: KernelSet, dtype: Any) -> None:
    backend = CompiledBackend(kernel)
    rng = np.random.default_rng(8)
    X = rng.standard_normal((1001, 300)).astype(dtype)
    W = rng.standard_normal((300, 10)).astype(dtype)
    one = backend.scores(X, W)
    assert_close(one, Backend().scores(X, W))
    for threads in (2, 3, 8, 64):
        np.testing.assert_array_equal(backend.scores(X, W, threads=threads), one)
    out = np.empty_like(one)
    assert backend.scores(X, W, out, threads=4) is out
    np.testing.assert_array_equal(out, one)


@pytest.mark.parametrize(
    ("X", "n_classes", "loss", "accelerates"),
    [
        (np.zeros((4, MIN_SCORE_FEATURES)), 10, SoftmaxLoss(), True),  # the fused step
        (np.zeros((4, 20), np.float32), MAX_CLASSES, SVMLoss(), True),  # the products
        (np.zeros((4, 20)), MAX_CLASSES + 1, SoftmaxLoss(), False),
        (np.zeros((4, MIN_SCORE_FEATURES)), 100, SoftmaxLoss(), False),
        (np.zeros((4, MIN_SCORE_FEATURES), np.float16), 10, SoftmaxLoss(), False),
        (np.zeros((4, MIN_SCORE_FEATURES), order="F"), 10, SoftmaxLoss(), False),
    ],
    ids=["fused-step", "products", "many-classes", "100-classes", "float16", "fortran"],
)
def test_auto_chooses_the_backend_where_it_accelerates_the_run(
    kernel: KernelSet, X: Array, n_classes: int, loss: Loss, accelerates: bool
) -> None:
    assert CompiledBackend(kernel).accelerates(X, n_classes, loss) is accelerates
    assert Backend().accelerates(X, n_classes, loss) is False


# --------------------------------------------------------------- the blocked pass, the objective
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [10, MAX_CLASSES + 4])
def test_the_blocked_pass_agrees_across_backends_and_not_on_threads(
    kernel: KernelSet, c: int, dtype: Any
) -> None:
    """To rounding between the backends; for each, the same bits on one thread or two."""
    rng = np.random.default_rng(3)
    d = MIN_SCORE_FEATURES + 44
    X = rng.standard_normal((500, d)).astype(dtype)
    y = rng.integers(0, c, 500)
    W = (0.1 * rng.standard_normal((d, c))).astype(dtype)
    loss = SoftmaxLoss()
    X64 = X.astype(np.float64)
    value, dscores = loss.loss_and_grad(X64 @ W.astype(np.float64), y)
    want = X64.T @ dscores
    tol = rtol(dtype)
    for backend in (CompiledBackend(kernel), Backend()):
        one, two = (
            blocked_loss_and_grad(
                X, y, W, loss.loss_and_grad, 64, parts=2, threads=threads, backend=backend
            )
            for threads in (1, 2)
        )
        assert one[0] == two[0]
        np.testing.assert_array_equal(one[1], two[1])
        assert one[0] == pytest.approx(float(value), rel=tol)
        assert one[1].dtype == np.dtype(dtype)
        np.testing.assert_allclose(one[1], want, rtol=tol, atol=tol * float(np.abs(want).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blocked", [False, True], ids=["whole", "blocked"])
@pytest.mark.parametrize("loss", [SoftmaxLoss(), SVMLoss()], ids=["softmax", "svm"])
def test_the_objective_is_the_same_to_rounding_on_either_backend(
    monkeypatch: pytest.MonkeyPatch, kernel: KernelSet, loss: Loss, blocked: bool, dtype: Any
) -> None:
    """Full batch (in one piece, or the blocked pass with predictions on a thread per core),
    minibatches by index and from the minibatch stream, the value and predictions."""
    if blocked:
        monkeypatch.setattr(objective_module, "BLOCKED_MIN_BYTES", 1)
    rng = np.random.default_rng(12)
    d = MIN_SCORE_FEATURES + 3
    X = rng.standard_normal((300, d)).astype(dtype)
    y = rng.integers(0, 10, 300)
    W = (0.05 * rng.standard_normal((d, 10))).astype(dtype)
    batches = [rng.permutation(300)[:64], rng.permutation(300)[:100]]
    got = {}
    for name, backend in [("compiled", CompiledBackend(kernel)), ("numpy", Backend())]:
        objective = Objective(
            X,
            y,
            10,
            BoundLoss(loss, "loss", "optlab"),
            [BoundRegularizer(L2(0.01), "l2", "optlab")],
            backend=backend,
        )
        results = [objective.value_and_grad(W), objective.value_and_grad(W, batches[0])]
        with objective.minibatches(batches) as stream:
            results += [objective.value_and_grad(W, batch) for batch in stream]
        got[name] = (results, objective.value(W), objective.predict(W, X))
    tol = rtol(dtype)
    for (parts_c, grad_c), (parts_n, grad_n) in zip(
        got["compiled"][0], got["numpy"][0], strict=True
    ):
        assert parts_c.total == pytest.approx(parts_n.total, rel=tol)
        assert parts_c.data == pytest.approx(parts_n.data, rel=tol)
        assert grad_c.dtype == grad_n.dtype == np.dtype(dtype)
        np.testing.assert_allclose(grad_c, grad_n, rtol=tol, atol=tol * np.abs(grad_n).max())
    assert got["compiled"][1].total == pytest.approx(got["numpy"][1].total, rel=tol)
    assert (got["compiled"][2] == got["numpy"][2]).mean() > 0.99  # ties may round either way
