"""Shared pieces of the benchmark suite: figures, timing, synthetic data, components.

Every figure is a ratio (or a time) measured in one process run, timed best-of-k with the two
sides interleaved, so it holds on a busy machine better than an absolute time would.
"""

from __future__ import annotations

import atexit
import functools
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import optlab
from optlab import Array

__all__ = [
    "CIFAR_SHAPE",
    "QUICK_SHAPE",
    "Figure",
    "MachineRates",
    "NullMonitor",
    "Timing",
    "backend_kwargs",
    "best_of",
    "environment",
    "loss",
    "machine_rates",
    "new_store",
    "optimizer",
    "quick_machine_rates",
    "roofline",
    "roofline_s",
    "synthetic",
    "threads_used",
    "timed_pair",
]

#: (N, D, C): CIFAR-10 as the course uses it (49,000 training images, 3,072 pixels + bias).
CIFAR_SHAPE = (49_000, 3_073, 10)
#: the --quick stand-in: same C, a few MB
QUICK_SHAPE = (4_000, 257, 10)


@dataclass
class Figure:
    """One row of the results table.

    Attributes
    ----------
    id : str
        Stable key, ``group.name`` (``fullbatch.svm.float32``).
    title : str
        What was measured, one line.
    value : float or None
        The measured figure (``None`` only if the measurement failed: see ``note``).
    unit : str
        ``x read`` (multiple of one streaming read of X), ``x`` (a plain ratio), ``s``, ...
    target : float or None
        ``None``: reported, no target.
    op : str
        How ``value`` compares with ``target`` to pass: ``<=``, ``>=``, ``<`` or ``>``.
    note : str
        How it was measured, or why it failed.
    detail : dict
        The raw measurements behind the figure (seconds, sizes).
    """

    id: str
    title: str
    value: float | None
    unit: str
    target: float | None = None
    op: str = "<="
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        """``None`` without a target; ``False`` when the measurement failed."""
        if self.target is None:
            return None
        if self.value is None or not np.isfinite(self.value):
            return False
        compare: dict[str, Callable[[float, float], bool]] = {
            "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b,
            "<": lambda a, b: a < b,
            ">": lambda a, b: a > b,
        }
        return compare[self.op](self.value, self.target)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``passed``."""
        out = asdict(self)
        out["passed"] = self.passed
        return out


@dataclass
class Timing:
    """Best-of-k seconds of a measured function and of its reference, timed interleaved."""

    seconds: float
    reference: float
    rounds: int

    @property
    def ratio(self) -> float:
        return self.seconds / self.reference

    def detail(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "reference_seconds": self.reference, "rounds": self.rounds}


def best_of(f: Callable[[], object], k: int) -> float:
    """The fastest of ``k`` wall-clock timings of ``f()`` in seconds."""
    best = float("inf")
    for _ in range(k):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def timed_pair(f: Callable[[], object], reference: Callable[[], object], k: int) -> Timing:
    """Best-of-``k`` of ``f`` and of ``reference``, alternating, after one warm-up call each.

    Alternating the two makes both see the same machine load, so their ratio is stable even
    when the absolute times are not.
    """
    f()
    reference()
    t_f = t_ref = float("inf")
    for _ in range(k):
        t_ref = min(t_ref, best_of(reference, 1))
        t_f = min(t_f, best_of(f, 1))
    return Timing(t_f, t_ref, k)


#: the empty store :func:`new_store` copies (made at its first call)
_empty_store: list[Path] = []


def new_store(path: Path, *, empty: bool) -> str:
    """The ``sqlite:///`` URI of a tracking store at ``path``: with ``empty``, a copy of an empty
    store migrated once per process is put there first; without, the first tracked run
    creates it, as a user's first run does.

    ``--quick`` times each side once, without warm-up runs: creating a new SQLite store
    (MLflow's schema migrations) takes seconds, more than a quick figure's work, and would be
    timed every time; the full suite's warm-up runs create theirs outside the timing.
    """
    if empty:
        if not _empty_store:
            from optlab._tracking.store import connect

            folder = Path(tempfile.mkdtemp(prefix="optlab-bench-store-"))
            atexit.register(shutil.rmtree, folder, True)
            connect(f"sqlite:///{folder / 'mlflow.db'}")
            _empty_store.append(folder / "mlflow.db")
        shutil.copyfile(_empty_store[0], path)
    return f"sqlite:///{path}"


def synthetic(
    n: int, d: int, c: int, dtype: Any, seed: int = 0, *, bias: bool = True
) -> tuple[Array, Array]:
    """Seeded CIFAR-like data: centered pixel-scale features and learnable labels.

    Parameters
    ----------
    n, d, c : int
        Examples, features (including the bias column when ``bias``), classes.
    dtype : numpy dtype
        float32 or float64; generated directly in it (no float64 temporary for float32).
    bias : bool
        Make the last column the constant-1 bias column.

    Returns
    -------
    X : (n, d) array of ``dtype``
    y : (n,) int64 array, ``argmax`` of a random linear teacher's noisy scores
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=dtype)
    X *= X.dtype.type(60.0)  # about the spread of centered CIFAR-10 pixels
    if bias:
        X[:, -1] = 1
    teacher = rng.standard_normal((d, c)).astype(dtype)
    scores = X @ teacher
    scores += rng.standard_normal(scores.shape).astype(dtype) * scores.std()
    return X, np.argmax(scores, axis=1).astype(np.int64)


def _component(kind: optlab._contract.components.ComponentKind, name: str, **params: Any) -> Any:
    from optlab._contract.plugin_manager import get_registry

    record = get_registry().get(kind, name)
    return record.factory(record.params(**params))


def loss(name: str, **params: Any) -> optlab.Loss:
    """A bundled (or installed) loss, built from its registry record like a run builds it."""
    out: optlab.Loss = _component("loss", name, **params)
    return out


def optimizer(name: str, **params: Any) -> optlab.Optimizer:
    """A registered optimizer with ``params``."""
    out: optlab.Optimizer = _component("optimizer", name, **params)
    return out


def regularizer(name: str, **params: Any) -> optlab.Regularizer:
    """A registered regularizer with ``params``."""
    out: optlab.Regularizer = _component("regularizer", name, **params)
    return out


class NullMonitor(optlab.Monitor):
    """Takes the optimizer's reports and does nothing: times the optimizer alone."""

    def step(self, examples: int, loss: float, data_loss: float, reg_loss: float) -> None:
        pass

    def evaluate(self, epoch: float, W: Array) -> None:
        pass


def environment() -> dict[str, Any]:
    """Machine, numpy, BLAS library and thread counts, optlab's compiled kernels (in use or
    not), the tuning variables of both, and the machine's measured rates (:func:`machine_rates`:
    read bandwidth and large-GEMM rate, measured once per process)."""
    from threadpoolctl import threadpool_info

    blas = [
        {
            k: info.get(k)
            for k in ("internal_api", "prefix", "version", "num_threads", "architecture")
        }
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "optlab": optlab.__version__,
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu": _cpu_details(),
        "cpus": os.cpu_count(),
        "blas": blas,
        "kernels": _kernels_label(),
        "machine_rates": machine_rates().as_dict(),
        "env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO", "OPTLAB_"))
        },
    }


def backend_kwargs(X: Array, y: Array, n_classes: int, loss_impl: optlab.Loss) -> dict[str, Any]:
    """``Objective``'s keyword arguments that make it train with the backend a run would use
    (``OPTLAB_BACKEND``, else ``auto``: see :func:`optlab._contract.backend.select_backend`).

    Empty in an optlab without backends, where the compiled kernels were chosen at import
    (``OPTLAB_KERNELS``) and every ``Objective`` used them.
    """
    import inspect

    try:
        from optlab._contract.backend import requested_backend, select_backend
    except ImportError:
        return {}
    from optlab._contract.plugin_manager import get_registry

    given: dict[str, Any] = {
        "setting": requested_backend(),
        "registry": get_registry(),
        "X": X,
        "y": y,
        "n_classes": n_classes,
        "loss": loss_impl,
    }
    names = inspect.signature(select_backend).parameters
    backend = select_backend(**{k: v for k, v in given.items() if k in names})
    return {"backend": backend}


def _kernels_label() -> str:
    """Whether optlab's compiled kernels are in use (optlab with or without backends)."""
    try:
        from optlab import kernels  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        pass
    else:  # before backends: chosen once at import
        return _kernels_in_use(kernels.instruction_set())
    try:
        from optlab._contract.backend import requested_backend
        from optlab._contract.plugin_manager import get_registry

        setting = requested_backend()
        if setting == "numpy":
            return "numpy (OPTLAB_BACKEND=numpy)"
        record = get_registry().get("backend", "compiled")
        backend = record.factory(record.params())
    except Exception as exc:  # not registered, not built, turned off, a CPU without AVX2
        return f"numpy (no compiled backend: {exc})"
    isa = getattr(getattr(backend, "kernels", None), "name", None)
    label = _kernels_in_use(str(isa) if isa else "compiled")
    return label if setting == "auto" else f"{label}, OPTLAB_BACKEND={setting}"


def _kernels_in_use(isa: str | None) -> str:
    """``"AVX-512 (compiled)"``, ``"AVX2 (compiled)"`` or ``"numpy (no compiled kernel)"``."""
    if isa is None:
        return "numpy (no compiled kernel)"
    return f"{ {'avx512': 'AVX-512', 'avx2': 'AVX2'}.get(isa, isa) } (compiled)"


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of Linux's ``/proc/cpuinfo`` (empty elsewhere)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else :func:`platform.processor`."""
    return _cpuinfo().get("model name") or platform.processor()


def _cpu_details() -> dict[str, Any]:
    """Vendor, family, model and stepping numbers, and the vector instruction sets the CPU
    reports (a virtual machine's model name can be as short as ``AMD EPYC``)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "model_name": _cpu_model(),
        "vendor": info.get("vendor_id"),
        "family": info.get("cpu family"),
        "model": info.get("model"),
        "stepping": info.get("stepping"),
        "simd": [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags],
    }


# ------------------------------------------------------------------------------------------
# The machine's roofline: streaming read bandwidth and large-GEMM rate
# ------------------------------------------------------------------------------------------

#: Size of the array read to measure bandwidth: far beyond the L3 cache a core reaches.
READ_BYTES = 512 * 2**20
#: Row width of that array (float32): the sums along its columns are plain vector adds.
_READ_WIDTH = 16_384
#: Order of the square matrices whose product measures the large-GEMM rate, per dtype: large
#: enough for OpenBLAS's steady rate (checked on the EPYC: 3,072 reaches 4,096's rate in float32).
GEMM_ORDER = {"float32": 3_072, "float64": 2_048}
#: ``--quick`` (a smoke run: the figures need a value, not a true one) measures the machine on
#: a 32 MiB read and GEMMs of order 512, once each: well under a second instead of 10-15 s.
_quick_rates = False


def quick_machine_rates() -> None:
    """Make :func:`machine_rates` measure small and fast (call before its first use)."""
    global _quick_rates
    _quick_rates = True


@dataclass(frozen=True)
class MachineRates:
    """What the machine does at its best, measured once per process (:func:`machine_rates`).

    Attributes
    ----------
    cpu : str
        The CPU's model name.
    threads : int
        The threads optlab uses for a pass over the data: BLAS's thread count
        (:func:`optlab._contract.blas_threads.blas_threads`).
    read_gbs : dict
        Streaming read bandwidth in GB/s (1e9 bytes a second), by thread count (1 and
        ``threads``): the best of three reductions (float max, column sums, 64-bit OR) over a
        ``READ_BYTES`` float32 array split in as many parts as threads.
    gemm_gflops : dict
        Large square GEMM rate (``np.matmul``, order ``GEMM_ORDER``) in GFLOP/s, by dtype
        (``float32``, ``float64``), then by BLAS thread count (1 and ``threads``).
    seconds : float
        How long measuring took.
    """

    cpu: str
    threads: int
    read_gbs: dict[int, float]
    gemm_gflops: dict[str, dict[int, float]]
    seconds: float

    def read_rate(self, threads: int) -> float:
        """Read bandwidth in bytes a second on ``threads`` threads (the nearest measured count
        at or below it)."""
        return _at_threads(self.read_gbs, threads) * 1e9

    def gemm_rate(self, dtype: Any, threads: int) -> float:
        """Large-GEMM rate in FLOP/s for ``dtype`` (float32 or float64) on ``threads``."""
        return _at_threads(self.gemm_gflops[np.dtype(dtype).name], threads) * 1e9

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (thread counts as string keys)."""
        return {
            "cpu": self.cpu,
            "threads": self.threads,
            "read_gb_per_s": {str(t): v for t, v in self.read_gbs.items()},
            "gemm_gflop_per_s": {
                dt: {str(t): v for t, v in by.items()} for dt, by in self.gemm_gflops.items()
            },
            "read_bytes": 32 * 2**20 if _quick_rates else READ_BYTES,
            "gemm_order": dict.fromkeys(GEMM_ORDER, 512) if _quick_rates else dict(GEMM_ORDER),
            "seconds": self.seconds,
        }


def _at_threads(table: dict[int, float], threads: int) -> float:
    below = [t for t in table if t <= threads]
    return table[max(below)] if below else table[min(table)]


def threads_used() -> int:
    """The threads optlab's passes over the data use: BLAS's thread count."""
    from optlab._contract.blas_threads import blas_threads

    return max(1, blas_threads())


def _read_bandwidth(data: Array, threads: int, k: int = 5) -> float:
    """Bytes a second: the fastest of ``k`` reads of ``data`` (2-D, C-contiguous) split by
    rows into ``threads`` parts, each reduced on a thread of its own (numpy's reductions
    release the GIL), best over three reductions."""
    parts = np.array_split(data, threads)
    reductions: list[Callable[[Array], object]] = [
        np.max,
        functools.partial(np.sum, axis=0),
        lambda p: np.bitwise_or.reduce(p.view(np.int64).ravel()),
    ]
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:

        def spread(reduce: Callable[[Array], object]) -> list[object]:
            return list(pool.map(reduce, parts))

        for reduce in reductions:
            call = (
                functools.partial(reduce, data)
                if threads == 1
                else functools.partial(spread, reduce)
            )
            best = min(best, best_of(call, k))
    return data.nbytes / best


def _gemm_rate(dtype: str, threads: int, k: int = 5) -> float:
    """FLOP/s of the fastest of ``k`` square products of order ``GEMM_ORDER[dtype]`` with BLAS
    on ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    n = 512 if _quick_rates else GEMM_ORDER[dtype]
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n), dtype=np.dtype(dtype).type)
    B = rng.standard_normal((n, n), dtype=np.dtype(dtype).type)
    out = np.empty_like(A)
    with threadpool_limits(limits=threads, user_api="blas"):
        seconds = best_of(functools.partial(np.matmul, A, B, out=out), k)
    return 2.0 * n**3 / seconds


@functools.cache
def machine_rates() -> MachineRates:
    """Measure the machine's read bandwidth and large-GEMM rate (10-15 s; once per process,
    the suite's groups and :func:`environment` share the result).

    The reads come before the products: OpenBLAS's idle threads spin for a while after a
    product and would take a core from a two-thread read.
    """
    start = time.perf_counter()
    threads = threads_used()
    counts = sorted({1, threads})
    size, k = (32 * 2**20, 1) if _quick_rates else (READ_BYTES, 5)
    data = np.full((size // 4 // _READ_WIDTH, _READ_WIDTH), 1.0, np.float32)
    read = {t: _read_bandwidth(data, t, k) / 1e9 for t in counts}
    del data
    gemm = {dt: {t: _gemm_rate(dt, t, k) / 1e9 for t in counts} for dt in GEMM_ORDER}
    return MachineRates(_cpu_model(), threads, read, gemm, time.perf_counter() - start)


def roofline(
    bytes_read: float, flops: float, threads: int | None = None, dtype: Any = np.float32
) -> dict[str, Any]:
    """The least time a pass can take on this machine, and what bounds it.

    Parameters
    ----------
    bytes_read : float
        Bytes the pass must read from memory (one read of ``X``: ``X.nbytes``).
    flops : float
        Floating-point operations of its products (``2 * N * D * C`` each).
    threads : int, optional
        Threads the pass runs on (default: :func:`threads_used`).
    dtype : numpy dtype
        Of the products: which GEMM rate applies.

    Returns
    -------
    dict
        ``seconds`` (the larger of ``read_seconds`` = bytes / read bandwidth on ``threads``
        and ``compute_seconds`` = flops / large-GEMM rate on ``threads``), ``bound``
        (``memory`` or ``compute``), ``threads``, ``bytes``, ``flops``.
    """
    rates = machine_rates()
    t = rates.threads if threads is None else threads
    read_s = bytes_read / rates.read_rate(t)
    compute_s = flops / rates.gemm_rate(dtype, t)
    return {
        "seconds": max(read_s, compute_s),
        "bound": "memory" if read_s >= compute_s else "compute",
        "read_seconds": read_s,
        "compute_seconds": compute_s,
        "threads": t,
        "bytes": float(bytes_read),
        "flops": float(flops),
        "dtype": np.dtype(dtype).name,
    }


def roofline_s(
    bytes_read: float, flops: float, threads: int | None = None, dtype: Any = np.float32
) -> float:
    """``max(bytes_read / bandwidth(threads), flops / gemm_rate(dtype, threads))`` in seconds:
    see :func:`roofline`."""
    seconds: float = roofline(bytes_read, flops, threads, dtype)["seconds"]
    return seconds
