"""Figure 4: framework overhead — an ``optlab run`` against a bare numpy loop.

Both sides start from the same seeded synthetic ``.npy`` files in a temporary folder (uint8
pixels like CIFAR-10's, with their own test split) and do the same arithmetic:

- optlab: the spec is run with :func:`optlab.run`, MLflow tracking on (a SQLite store in the
  temporary folder), in this process: interpreter start-up and imports are excluded, everything else
  (loading through the ``npz`` dataset plugin, preprocessing, sanity checks, per-epoch
  evaluation, tracking, figures) is included.
- bare: ``np.load``, the same split sizes, centering and bias column, minibatch SGD epochs on
  the softmax loss with L2 written inline, train and validation accuracy after every epoch and
  test accuracy at the end.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import CIFAR_SHAPE, Figure, best_of, new_store
from optlab import Array

__all__ = ["run"]

SPEC = """\
name: bench_overhead
seed: 0
data: {{name: npz, path: "{path}", dtype: {dtype}, val: {val}, center: true, bias: true}}
loss: {{name: softmax}}
regularizer: {{name: l2, strength: {reg}}}
optimizer: {{name: sgd, lr: {lr}, batch_size: {batch}, epochs: {epochs}}}
"""
REG = 1e-4


@dataclass(frozen=True)
class Setup:
    """One overhead measurement: data written to ``folder`` and the run's settings."""

    label: str
    title: str
    lr: float
    batch: int
    epochs: int
    val: float
    dtype: str = "float32"


def write_spec(spec: Path, folder: Path, setup: Setup) -> Path:
    """Write ``setup`` as a spec file at ``spec`` whose data are the ``.npy`` files in
    ``folder`` (:data:`SPEC`); returns ``spec``."""
    text = SPEC.format(
        path=folder,
        dtype=setup.dtype,
        val=setup.val,
        reg=REG,
        lr=setup.lr,
        batch=setup.batch,
        epochs=setup.epochs,
    )
    spec.write_text(text, encoding="utf-8")
    return spec


def write_synthetic(folder: Path, n: int, n_test: int, features: int, classes: int) -> None:
    """Seeded CIFAR-like uint8 images and learnable labels as ``X.npy``, ``y.npy``, ..."""
    rng = np.random.default_rng(7)
    teacher = rng.standard_normal((features, classes)).astype(np.float32)
    for key, rows in (("", n), ("_test", n_test)):
        X = rng.integers(0, 256, size=(rows, features), dtype=np.uint8)
        scores = (X.astype(np.float32) - 127.5) @ teacher
        scores += rng.standard_normal(scores.shape).astype(np.float32) * scores.std()
        np.save(folder / f"X{key}.npy", X)
        np.save(folder / f"y{key}.npy", np.argmax(scores, axis=1).astype(np.int64))


def write_digits(folder: Path) -> None:
    """scikit-learn's digits as uint8 ``.npy`` files, a fifth of them as the test split."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    test = np.random.default_rng(0).permutation(len(y))[: len(y) // 5]
    keep = np.setdiff1d(np.arange(len(y)), test)
    for key, idx in (("", keep), ("_test", test)):
        np.save(folder / f"X{key}.npy", X[idx].astype(np.uint8))
        np.save(folder / f"y{key}.npy", y[idx].astype(np.int64))


@dataclass
class BareData:
    """What the bare script holds after loading and preparing: the splits, the classes, the
    initial ``W`` and its random generator (which then shuffles every epoch)."""

    X: Array
    y: Array
    X_val: Array
    y_val: Array
    X_test: Array
    y_test: Array
    n_classes: int
    W: Array
    rng: np.random.Generator


def bare_prepare(folder: Path, setup: Setup) -> BareData:
    """The bare script up to training: ``np.load``, the split, centering and bias, ``W``."""
    dt = np.dtype(setup.dtype)
    X_all, y_all = np.load(folder / "X.npy"), np.load(folder / "y.npy")
    X_test_raw, y_test = np.load(folder / "X_test.npy"), np.load(folder / "y_test.npy")
    rng = np.random.default_rng(0)
    order = rng.permutation(X_all.shape[0])
    n_val = round(setup.val * X_all.shape[0])
    val_idx, train_idx = order[:n_val], order[n_val:]

    def prepare(raw: Array, mean: Array | None) -> tuple[Array, Array]:
        X = np.empty((raw.shape[0], raw.shape[1] + 1), dtype=dt)
        X[:, :-1] = raw
        X[:, -1] = 1
        if mean is None:
            mean = X[:, :-1].mean(axis=0)
        X[:, :-1] -= mean
        return X, mean

    X, mean = prepare(X_all[train_idx], None)
    X_val, _ = prepare(X_all[val_idx], mean)
    X_test, _ = prepare(X_test_raw, mean)
    c = int(y_all.max()) + 1
    W = (1e-3 * rng.standard_normal((X.shape[1], c))).astype(dt)
    return BareData(X, y_all[train_idx], X_val, y_all[val_idx], X_test, y_test, c, W, rng)


def bare_epoch(data: BareData, setup: Setup) -> None:
    """One epoch of the bare script, updating ``data.W``: minibatch SGD on softmax + L2 over
    the shuffled training set (the loss of every step kept), then train and validation
    accuracy."""
    X, y, W, rng = data.X, data.y, data.W, data.rng
    dt = X.dtype
    n = X.shape[0]
    lr, reg, B = dt.type(setup.lr), dt.type(REG), setup.batch
    curve = []
    perm = rng.permutation(n)
    for start in range(0, n, B):
        batch = perm[start : start + B]
        Xb, yb = X[batch], y[batch]
        scores = Xb @ W
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=1, keepdims=True)
        rows = np.arange(len(batch))
        loss = -np.log(probs[rows, yb]).mean() + reg * np.sum(W[:-1] * W[:-1])
        probs[rows, yb] -= 1
        probs /= dt.type(len(batch))
        grad = Xb.T @ probs
        grad[:-1] += 2 * reg * W[:-1]
        W -= lr * grad
        curve.append(float(loss))
    train_acc = np.mean(np.argmax(X @ W, 1) == y)
    val_acc = np.mean(np.argmax(data.X_val @ W, 1) == data.y_val)
    del train_acc, val_acc


def bare_loop(folder: Path, setup: Setup) -> float:
    """The same run written as a plain numpy script; returns its test accuracy."""
    data = bare_prepare(folder, setup)
    for _ in range(setup.epochs):
        bare_epoch(data, setup)
    return float(np.mean(np.argmax(data.X_test @ data.W, 1) == data.y_test))


def optlab_run(spec_file: Path, tracking_uri: str, track: bool = True) -> Any:
    """Run the spec through optlab's Python API, :func:`optlab.run` (tracking on unless
    ``track`` is false)."""
    import optlab
    from optlab._training.data import clear_cache

    clear_cache()  # load from the files every time, as the bare loop does (optlab keeps a
    # process-wide cache of loaded datasets, which a second run of one spec would reuse)
    # a store with track=False is refused with a warning: the untracked side names none
    uri = tracking_uri if track else None
    results = optlab.run(spec_file, tracking_uri=uri, track=track, quiet=True)
    if results.failed or not len(results):
        raise RuntimeError(f"benchmark run failed: {results.failed}")
    return results


def measure(
    setup: Setup,
    write: Callable[[Path], None],
    k: int,
    target: float | None,
    *,
    warm_up: bool = True,
    figures: bool = True,
) -> Figure:
    """One overhead figure: best-of-``k`` optlab run time / bare loop time (``figures``:
    whether the tracked runs draw their figures)."""
    with tempfile.TemporaryDirectory(prefix="optlab-bench-") as tmp:
        folder = Path(tmp)
        write(folder)
        spec = write_spec(folder / "spec.yaml", folder, setup)
        if not figures:
            spec.write_text(spec.read_text() + "tracking: {figures: false}\n", encoding="utf-8")
        uri = new_store(folder / "mlflow.db", empty=not warm_up)
        if warm_up:
            optlab_run(spec, uri)  # imports, store creation, page cache
        t_bare = t_opt = float("inf")
        for _ in range(k):  # alternate, so both sides see the same machine load
            t_bare = min(t_bare, best_of(lambda: bare_loop(folder, setup), 1))
            t_opt = min(t_opt, best_of(lambda: optlab_run(spec, uri), 1))
    return Figure(
        f"overhead.{setup.label}",
        f"optlab run (tracking on) / bare numpy loop, {setup.title}",
        t_opt / t_bare,
        "x",
        target,
        note="through the Python API (optlab.run, tracking to SQLite), "
        "interpreter start-up excluded; both load the same .npy files",
        detail={"optlab_seconds": t_opt, "bare_seconds": t_bare, "epochs": setup.epochs},
    )


def run(quick: bool = False) -> list[Figure]:
    """Figure 4 at the CIFAR-10 shape (quick: a small stand-in) and on digits."""
    n, d, c = (4_000, 257, 10) if quick else CIFAR_SHAPE
    epochs = 2 if quick else 5
    n_val = n // 49  # CIFAR-10 as in the course: 49,000 train, 1,000 validation
    cifar = Setup(
        "cifar10_shape",
        f"{n}x{d} float32 (synthetic, npz plugin), softmax+l2, sgd batch 200, {epochs} epochs",
        lr=1e-7,
        batch=200,
        epochs=epochs,
        val=n_val / (n + n_val),
    )
    digits = Setup(
        "digits",
        "digits 1438 examples x 65 float32, softmax+l2, sgd batch 64, 15 epochs",
        lr=1e-3,
        batch=64,
        epochs=2 if quick else 15,
        val=0.2,
    )
    k = 1 if quick else 3
    # quick: no warm-up run and one run each way (a value, not a true one)
    return [
        measure(
            cifar,
            lambda f: write_synthetic(f, n + n_val, n_val, d - 1, c),
            k,
            1.1,
            warm_up=not quick,
            figures=not quick,  # a smoke run: not the figures' second or so a run
        ),
        measure(
            digits,
            write_digits,
            k if quick else k + 1,
            None,
            warm_up=not quick,
            figures=not quick,
        ),
    ]
