"""Preparing raw data for training: validation, then splits, conversion and preprocessing.

Order of operations in :func:`prepare`
--------------------------------------
1. validate the raw data (shapes, labels in ``0..C-1``, finite features: :func:`validate_raw`);
2. split (:mod:`optlab._training.splits`);
3. each split is converted to the requested dtype in one pass, straight into its final
   ``(n, F + bias)`` array; the training mean is subtracted (``center``) and the training
   standard deviation divided out (``standardize``), in place; statistics come from the
   training split only, so nothing leaks from validation or test;
4. the bias column of ones is written last (``bias``).

Peak memory is the raw data plus the final arrays and one bounded scratch block: rows are
converted chunk by chunk straight into their final array (never a whole float copy first, then
another for the split, the centering or the bias column), and column statistics are
accumulated in float64 chunk by chunk in one reused block of at most ``CHUNK_BYTES``, so two
float copies of the data are never held at once (measured by ``memory.run.fullbatch.uint8`` in
``benchmarks/bench_memory.py``, and tested by ``tests/test_data_memory.py``).
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optlab._contract.components import Array, RawDataset
from optlab._contract.records import DataSummary
from optlab._errors import DataError
from optlab._spec.experiment import DataOptions
from optlab._training.splits import no_training_examples, split_indices

__all__ = [
    "CHUNK_BYTES",
    "PreparedData",
    "dataset_hash",
    "dataset_label",
    "prepare",
    "prepare_hashed",
    "validate_raw",
]


#: bytes of float64 scratch per chunk when converting and computing column statistics
CHUNK_BYTES = 4 * 2**20


@dataclass(frozen=True)
class PreparedData:
    """A run's data, split and preprocessed.

    Attributes
    ----------
    X_train, X_val, X_test : (N_split, D) float arrays of the requested dtype
        ``D`` counts the bias column (the last one) when ``summary.has_bias``. Validation
        and test may have 0 rows.
    y_train, y_val, y_test : (N_split,) int64 arrays of labels in ``0..C-1``
    summary : DataSummary
        Name, sizes, ``n_features`` (= ``D``), classes, dtype, the raw data's sha256.
    mean : (F,) float64 array or None
        The training split's mean of each raw feature, subtracted from every split
        (``center``); ``None`` without centering.
    std : (F,) float64 array or None
        What every split's features were divided by (``standardize``): the training split's
        population standard deviation, 1 for a constant feature; ``None`` without.
    """

    X_train: Array
    y_train: Array
    X_val: Array
    y_val: Array
    X_test: Array
    y_test: Array
    summary: DataSummary
    mean: Array | None = None
    std: Array | None = None


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def dataset_label(name: str, source: str) -> str:
    return f"dataset '{name}' ({source})" if source else f"dataset '{name}'"


def _rows_bad(X: Array) -> int:
    """Index of the first row of ``X`` holding NaN or inf (``X`` is known to have one)."""
    step = max(1, CHUNK_BYTES // max(1, X.shape[1] * X.dtype.itemsize))
    for start in range(0, X.shape[0], step):
        bad = np.flatnonzero(~np.isfinite(X[start : start + step]).all(axis=1))
        if bad.size:
            return start + int(bad[0])
    return -1  # pragma: no cover - only called when a non-finite value exists


def _check_split(X: Array, y: Array, n_classes: int, where: str, part: str) -> Array:
    """Validate one split; return ``X`` as (N, F) (a view when it had more dimensions)."""
    if not isinstance(X, np.ndarray) or not isinstance(y, np.ndarray):
        raise DataError(f"{where}: {part} features and labels must be numpy arrays")
    if X.ndim < 2:
        raise DataError(f"{where}: {part} features must be (N, F), found shape {X.shape}")
    if X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{where}: {part} features must be numbers, found dtype {X.dtype}")
    if y.ndim != 1:
        raise DataError(f"{where}: {part} labels must be 1-d, found shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(
            f"{where}: {part} has {X.shape[0]} examples but {y.shape[0]} labels; "
            "features and labels must have the same length"
        )
    if y.dtype.kind not in "iu":
        raise DataError(f"{where}: {part} labels must be integers, found dtype {y.dtype}")
    if y.size:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise DataError(
                f"{where}: {part} label {bad} out of range 0..{n_classes - 1} ({n_classes} classes)"
            )
    if X.dtype.kind == "f" and X.size and not (np.isfinite(X.min()) and np.isfinite(X.max())):
        row = _rows_bad(X)
        raise DataError(f"{where}: {part} features contain NaN or inf (first in row {row})")
    return X


def validate_raw(raw: RawDataset, name: str) -> tuple[Array, Array | None]:
    """What a dataset plugin returned, checked: class names, labels in ``0..C-1``, numeric
    finite features, matching shapes, both parts of a test split or neither.

    Returns
    -------
    X : (N, F) array
        The training features, flattened to 2-d.
    X_test : (M, F) array or None

    Raises
    ------
    DataError
        Naming the dataset, its source and the fault.
    """
    where = dataset_label(name, raw.source)
    shape = getattr(raw.X, "shape", ())
    if len(shape) >= 2 and 0 in shape:  # no examples have no labels, so no class names either
        raise DataError(f"{where}: no data (features of shape {shape})")
    if not raw.classes:
        raise DataError(f"{where}: no class names")
    X = _check_split(raw.X, raw.y, len(raw.classes), where, "training data")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{where}: no data (features of shape {X.shape})")
    if (raw.X_test is None) != (raw.y_test is None):
        raise DataError(f"{where}: a test split needs both X_test and y_test")
    X_test = None
    if raw.X_test is not None and raw.y_test is not None:
        X_test = _check_split(raw.X_test, raw.y_test, len(raw.classes), where, "test split")
        if X_test.shape[1] != X.shape[1]:
            raise DataError(
                f"{where}: test split has {X_test.shape[1]} features, training data {X.shape[1]}"
            )
    return X, X_test


# --------------------------------------------------------------------------------------------
# conversion and statistics
# --------------------------------------------------------------------------------------------


def _chunk_rows(n_cols: int) -> int:
    return max(1, CHUNK_BYTES // (8 * max(1, n_cols)))


def _materialize(X: Array, idx: Array, dtype: np.dtype[Any], bias: bool) -> Array:
    """``X[idx]`` as a new C-ordered ``(len(idx), F + bias)`` array of ``dtype``.

    Rows are gathered and converted chunk by chunk, straight into the result.
    """
    n, F = idx.shape[0], X.shape[1]
    out = np.empty((n, F + int(bias)), dtype=dtype)
    contiguous = n > 0 and int(idx[-1]) - int(idx[0]) == n - 1  # sorted, so a plain range
    step = _chunk_rows(F)
    with np.errstate(over="ignore"):  # beyond float32's range: inf, see _check_range
        for start in range(0, n, step):
            stop = min(n, start + step)
            rows = X[int(idx[0]) + start : int(idx[0]) + stop] if contiguous else X[idx[start:stop]]
            out[start:stop, :F] = rows
    if bias:
        out[:, F] = 1
    return out


def _exact_rows(dtype: np.dtype[Any], raw: np.dtype[Any]) -> int:
    """How many rows of integers of dtype ``raw``, converted to the float ``dtype``, can be
    summed in ``dtype`` arithmetic without rounding (every partial sum stays within the
    consecutive integers the float holds: ``2**24`` for float32); 0 when ``raw`` is not an
    integer dtype."""
    if raw.kind not in "biu":
        return 0
    bound = 1 if raw.kind == "b" else max(-int(np.iinfo(raw).min), int(np.iinfo(raw).max))
    return int(2 ** (np.finfo(dtype).nmant + 1)) // bound


def _column_stats(
    X: Array, n_cols: int, need_std: bool, exact_rows: int = 0
) -> tuple[Array, Array | None]:
    """Float64 mean and (population) standard deviation of ``X[:, :n_cols]``, chunked.

    Parameters
    ----------
    X : (N, F) float array
        The training split (its first ``n_cols`` columns are the features).
    n_cols : int
    need_std : bool
        Also compute the standard deviation (a second pass).
    exact_rows : int
        See :func:`_exact_rows`: ``X`` holds integers and blocks of that many rows sum exactly
        in ``X``'s dtype, so the column sums are taken with one BLAS product per block (several
        times faster than a float64 reduction) and are the same numbers.

    Returns
    -------
    mean : (n_cols,) float64 array
    std : (n_cols,) float64 array, or None unless ``need_std``

    Memory: besides the results, at most one float64 block of ``CHUNK_BYTES``, reused.
    """
    n = X.shape[0]
    step = _chunk_rows(n_cols)
    total = np.zeros(n_cols, np.float64)
    if exact_rows >= 64:
        block = min(exact_rows, 4096)
        ones = np.ones(block, dtype=X.dtype)
        for start in range(0, n, block):
            rows = X[start : start + block, :n_cols]
            total += ones[: rows.shape[0]] @ rows
    else:
        for start in range(0, n, step):
            total += X[start : start + step, :n_cols].sum(axis=0, dtype=np.float64)
    mean = total / max(n, 1)
    if not need_std:
        return mean, None
    squares = np.zeros(n_cols, np.float64)
    # one float64 scratch block, reused: each chunk is converted and centered into it by one
    # subtraction (the same numbers as ``chunk.astype(float64) - mean``, without the two
    # temporaries per chunk that form allocates)
    scratch = np.empty((min(step, n), n_cols), np.float64)
    for start in range(0, n, step):
        rows = X[start : start + step, :n_cols]
        d = scratch[: rows.shape[0]]
        np.subtract(rows, mean, out=d)
        squares += np.einsum("ij,ij->j", d, d)
    return mean, np.sqrt(squares / max(n, 1))


def _check_range(
    X: Array, X_test: Array | None, parts: tuple[Array, ...], dtype: np.dtype[Any], where: str
) -> None:
    """A :class:`DataError` (key ``dtype``) when converting the raw features to ``dtype`` made
    infinities: float64 values beyond float32's range (about 3.4e38) become ``inf``, and the
    run would fail later as a wrong gradient or a diverging loss.

    Parameters
    ----------
    X : (N, F) array
        The raw training features (finite: :func:`validate_raw` checked them).
    X_test : (M, F) array or None
        The raw own test split.
    parts : tuple of (n, F + bias) arrays of ``dtype``
        The converted splits.
    dtype : numpy.dtype
        The requested dtype (``data.dtype``).
    where : str
        The dataset, for the message.
    """
    wider = [a for a in (X, X_test) if a is not None and a.dtype.kind == "f"]
    if not any(a.dtype.itemsize > dtype.itemsize for a in wider):
        return  # every value converts to a finite one
    if all(p.size == 0 or (np.isfinite(p.min()) and np.isfinite(p.max())) for p in parts):
        return
    largest = max(max(-float(a.min()), float(a.max())) for a in wider if a.size)
    raise DataError(
        f"{where}: features up to {largest:.3g} in magnitude do not fit data.dtype "
        f"{dtype.name} (at most {float(np.finfo(dtype).max):.3g}): they would train as inf; "
        f"set data.dtype: float64, or rescale the features",
        key="dtype",
    )


# prepare
# --------------------------------------------------------------------------------------------


def prepare(
    raw: RawDataset,
    options: DataOptions,
    rng: np.random.Generator,
    name: str,
    sha256: str | None = None,
) -> PreparedData:
    """Validate, split and preprocess a loaded dataset.

    Parameters
    ----------
    raw : RawDataset
        ``X`` (N, F) of any real dtype (more dimensions are flattened), ``y`` (N,) ints;
        optionally its own test split. Not modified.
    options : DataOptions
        ``val``, ``test``, ``limit``, ``center``, ``standardize``, ``dtype``, ``bias``.
    rng : numpy.random.Generator
        Draws the splits and subsamples.
    name : str
        The dataset's name, for the summary and messages.
    sha256 : str, optional
        The raw data's hash when already known (else computed here).

    Returns
    -------
    PreparedData

    Raises
    ------
    DataError
        One line naming the dataset, its source and the problem.
    """
    return prepare_hashed(
        raw, options, rng, name, lambda: dataset_hash(raw) if sha256 is None else sha256
    )


def prepare_hashed(
    raw: RawDataset,
    options: DataOptions,
    rng: np.random.Generator,
    name: str,
    sha256: Callable[[], str],
) -> PreparedData:
    """:func:`prepare`; ``sha256()`` gives the raw data's hash and is called last, when the
    summary is built (so a hash computed on another thread overlaps the preparation)."""
    X, X_test_raw = validate_raw(raw, name)
    y = raw.y
    has_own_test = X_test_raw is not None and raw.y_test is not None
    n_test_own = 0 if X_test_raw is None else X_test_raw.shape[0]
    train, val, test_x, test_own = split_indices(
        y, has_own_test, n_test_own, raw.y_test, options, rng
    )
    if train.shape[0] == 0:
        raise no_training_examples(
            dataset_label(name, raw.source),
            y.shape[0],
            n_test_own if has_own_test else None,
            options,
        )
    dtype = np.dtype(options.dtype)
    F = X.shape[1]
    X_train = _materialize(X, train, dtype, options.bias)
    X_val = _materialize(X, val, dtype, options.bias)
    if test_x is not None:
        X_test, y_test = _materialize(X, test_x, dtype, options.bias), y[test_x]
    else:
        assert X_test_raw is not None and raw.y_test is not None
        X_test = _materialize(X_test_raw, test_own, dtype, options.bias)
        y_test = raw.y_test[test_own]

    _check_range(X, X_test_raw, (X_train, X_val, X_test), dtype, dataset_label(name, raw.source))

    centered = divisor = None
    if options.center or options.standardize:
        mean, std = _column_stats(
            X_train, F, options.standardize, exact_rows=_exact_rows(dtype, X.dtype)
        )
        shift = mean.astype(dtype) if options.center else None
        centered = mean if options.center else None
        scale = None
        if std is not None:
            divisor = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
            scale = (1.0 / divisor).astype(dtype)
        step = _chunk_rows(F)
        for part in (X_train, X_val, X_test):
            for start in range(0, part.shape[0], step):
                block = part[start : start + step, :F]
                if shift is not None:
                    block -= shift
                if scale is not None:
                    block *= scale

    summary = DataSummary(
        name=name,
        n_train=int(X_train.shape[0]),
        n_val=int(X_val.shape[0]),
        n_test=int(X_test.shape[0]),
        n_features=int(X_train.shape[1]),
        n_classes=len(raw.classes),
        classes=tuple(str(c) for c in raw.classes),
        dtype=dtype.name,
        sha256=sha256(),
        image_shape=tuple(raw.image_shape) if raw.image_shape is not None else None,
        has_bias=options.bias,
        own_test=has_own_test,
    )
    return PreparedData(
        X_train=X_train,
        y_train=y[train].astype(np.int64),
        X_val=X_val,
        y_val=y[val].astype(np.int64),
        X_test=X_test,
        y_test=np.asarray(y_test, dtype=np.int64),
        summary=summary,
        mean=centered,
        std=divisor,
    )


def _hash_array(h: Any, a: Array) -> None:
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if a.flags.c_contiguous:
        h.update(a.reshape(-1).view(np.uint8))
        return
    rows = max(1, CHUNK_BYTES // max(1, a[:1].nbytes))
    for start in range(0, a.shape[0], rows):
        h.update(np.ascontiguousarray(a[start : start + rows]).reshape(-1).view(np.uint8))


def dataset_hash(raw: RawDataset) -> str:
    """sha256 of the raw features and labels (bytes, shapes, dtypes), own test split included."""
    h = hashlib.sha256()
    for a in (raw.X, raw.y, raw.X_test, raw.y_test):
        if a is None:
            h.update(b"none")
        else:
            _hash_array(h, np.asarray(a))
    return h.hexdigest()
