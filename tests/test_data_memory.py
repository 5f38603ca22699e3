"""Loading and preparing data never holds two float copies of it at once (issue 18).

The public path, :func:`optlab._training.data.load_data` with the bundled ``npz`` plugin on ``.npy``
files, is measured with :mod:`tracemalloc`, which counts numpy's array bytes: the peak traced
while loading and preparing must stay within ``1.3 x`` the float training array plus the raw
arrays as loaded. The data holds 4,000 uint8 images of 3,072 pixels (CIFAR-10's row size), so
the fixed float64 scratch of the column statistics (a few MiB) is small next to the data, and a
second float copy of the training data (1x more) cannot hide under the bound. Bytes, not time:
the figures are the same on every run.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optlab._training.prepare
from optlab import Array
from optlab._contract.registry import Registry
from optlab._spec.experiment import ComponentSpec, DataOptions
from optlab._training.data import PreparedData, load_data

pytestmark = pytest.mark.usefixtures("fresh_data_cache")

#: rows, own test rows, pixels, classes
N, N_TEST, F, C = 4_000, 200, 3_072, 10
#: the bound: peak traced bytes <= BOUND x the float training array + the raw arrays
BOUND = 1.3


def _write(folder: Path) -> int:
    """CIFAR-like uint8 ``X.npy`` (N, F), ``y.npy`` (N,), ``X_test.npy`` (N_TEST, F) and
    ``y_test.npy`` in ``folder``; returns the bytes they hold in memory once loaded."""
    rng = np.random.default_rng(0)
    arrays: dict[str, Array] = {
        "X": rng.integers(0, 256, size=(N, F), dtype=np.uint8),
        "y": np.arange(N, dtype=np.int64) % C,
        "X_test": rng.integers(0, 256, size=(N_TEST, F), dtype=np.uint8),
        "y_test": np.arange(N_TEST, dtype=np.int64) % C,
    }
    for key, a in arrays.items():
        np.save(folder / f"{key}.npy", a)
    return sum(a.nbytes for a in arrays.values())


def _peak_of_loading(
    registry: Registry, folder: Path, options: DataOptions
) -> tuple[int, PreparedData]:
    """Peak bytes traced while :func:`load_data` reads ``folder`` and prepares it."""
    record = registry.get("dataset", "npz")
    params: dict[str, Any] = {"path": folder}
    dataset = ComponentSpec("dataset", "npz", record.params(**params), record)
    tracemalloc.start()
    try:
        data = load_data(dataset, options, np.random.default_rng(0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, data


@pytest.mark.parametrize(
    "options",
    [
        DataOptions(dtype="float32", val=0.05, center=True, bias=True),
        DataOptions(dtype="float32", val=0.05, standardize=True, bias=True),
        DataOptions(dtype="float64", val=0.05, test=0.0, center=True, standardize=True),
    ],
    ids=["float32-center", "float32-standardize", "float64-standardize"],
)
def test_loading_and_preparing_hold_one_float_copy(
    registry: Registry, tmp_path: Path, options: DataOptions
) -> None:
    raw = _write(tmp_path)
    peak, data = _peak_of_loading(registry, tmp_path, options)
    train = data.X_train.nbytes
    assert data.X_train.shape == (N - round(0.05 * N), F + 1)
    assert data.X_test.shape == (N_TEST, F + 1)
    # the floats held at the end: training, validation and test arrays (no copy of any)
    final = train + data.X_val.nbytes + data.X_test.nbytes
    assert final <= 1.11 * train
    assert peak <= BOUND * train + raw, (
        f"peak {peak / 2**20:.1f} MiB = raw {raw / 2**20:.1f} MiB + "
        f"{(peak - raw) / train:.2f} x the float training array ({train / 2**20:.1f} MiB); "
        f"at most {BOUND} x"
    )


def _two_copies(
    X: Array,
    idx: Array,
    dtype: np.dtype[Any],
    bias: bool,
    shift: Array | None = None,
    divisor: Array | None = None,
) -> Array:
    """The straightforward preparation: a float copy of the rows, then one with the bias
    column (``np.hstack``): two float copies at once."""
    rows = X[idx].astype(dtype)
    if shift is not None:
        rows -= shift.astype(dtype)
    if divisor is not None:
        rows /= divisor.astype(dtype)
    return np.hstack([rows, np.ones((rows.shape[0], int(bias)), dtype)])


def test_the_measure_catches_two_float_copies(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _write(tmp_path)
    materialize: Callable[..., Array] = _two_copies
    monkeypatch.setattr(optlab._training.prepare, "_materialize", materialize)
    options = DataOptions(dtype="float32", val=0.05, center=True, bias=True)
    peak, data = _peak_of_loading(registry, tmp_path, options)
    assert data.X_train.shape == (N - round(0.05 * N), F + 1)
    assert peak > BOUND * data.X_train.nbytes + raw
