"""Preparing raw data for training: validation, then splits, conversion and preprocessing.

Order of operations in :func:`prepare`
--------------------------------------
1. validate the raw data (shapes, labels in ``0..C-1``, finite features: :func:`validate_raw`);
2. split (:mod:`optlab._training.splits`);
3. each split is converted to the requested dtype in one pass, straight into its final
   ``(n, F + bias)`` array, the training mean subtracted (``center``) and the training
   standard deviation divided out (``standardize``); statistics come from the training split
   only, so nothing leaks from validation or test. They are computed in float64 from the
   values as they are (never first rounded to float32), with sums that cannot overflow, and
   applied in float64 before the one rounding to the requested dtype (chunk by chunk, in one
   float64 scratch block); integers the dtype holds exactly (uint8 images) are converted
   first and centred in place, the float64 mean subtracted in two parts (its rounding, then
   the rest), as exactly and without the scratch;
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


def _rows(X: Array, idx: Array | None, start: int, stop: int) -> Array:
    """Rows ``start:stop`` of ``X`` (of ``X[idx]`` when ``idx`` is given, without gathering
    more than those rows; a plain slice when ``idx`` is a range)."""
    if idx is None:
        return X[start:stop]
    if int(idx[-1]) - int(idx[0]) == idx.shape[0] - 1:  # sorted, so a plain range
        return X[int(idx[0]) + start : int(idx[0]) + stop]
    return X[idx[start:stop]]


def _standardized(rows: Array, shift: Array | None, divisor: Array | None, out: Array) -> Array:
    """``(rows - shift) / divisor`` computed in float64 into ``out``, a float64 scratch block
    of ``rows``' shape (either step skipped when ``None``): a large offset is subtracted
    before any rounding to a narrower dtype, which would keep only its first digits."""
    if shift is not None:
        np.subtract(rows, shift, out=out)
    else:
        out[...] = rows
    if divisor is not None:
        np.divide(out, divisor, out=out)
    return out


def _materialize(
    X: Array,
    idx: Array,
    dtype: np.dtype[Any],
    bias: bool,
    shift: Array | None = None,
    divisor: Array | None = None,
) -> Array:
    """``X[idx]`` as a new C-ordered ``(len(idx), F + bias)`` array of ``dtype``, optionally
    centred and standardized on the way.

    Rows are gathered and converted chunk by chunk, straight into the result; with ``shift``
    (F,) or ``divisor`` (F,) (float64), each chunk is first made ``(rows - shift) / divisor``
    in one reused float64 scratch block (:func:`_standardized`), then rounded to ``dtype``.
    """
    n, F = idx.shape[0], X.shape[1]
    out = np.empty((n, F + int(bias)), dtype=dtype)
    step = _chunk_rows(F)
    scratch = (
        np.empty((min(step, n), F), np.float64)
        if shift is not None or divisor is not None
        else None
    )
    with np.errstate(over="ignore"):  # beyond float32's range: inf, see _check_range
        for start in range(0, n, step):
            stop = min(n, start + step)
            rows = _rows(X, idx, start, stop)
            if scratch is not None:
                rows = _standardized(rows, shift, divisor, scratch[: stop - start])
            out[start:stop, :F] = rows
    if bias:
        out[:, F] = 1
    return out


def _standardize_in_place(
    X: Array, n_cols: int, shift: Array | None, divisor: Array | None
) -> None:
    """``X[:, :n_cols] = (X[:, :n_cols] - shift) / divisor`` in ``X``'s own dtype, for ``X``
    converted exactly from integers (:func:`prepare`'s fast path: no float64 scratch).

    The float64 ``shift`` is subtracted in two parts, its value rounded to ``X``'s dtype and
    what that rounding left out: in float32 each result is then within a unit or two in its
    last place of ``(x - shift) / divisor`` computed in float64, where subtracting the
    rounded mean alone was off by up to half a unit in the mean's last place (1e-5 for a
    mean of 255, 0.03 for a mean of 1e6).
    """
    dtype = X.dtype
    high = low = scale = None
    if shift is not None:
        high = shift.astype(dtype)
        rest = (shift - high).astype(dtype)
        low = rest if rest.any() else None  # (float64: nothing left out)
    if divisor is not None:
        scale = divisor.astype(dtype)
    step = _chunk_rows(n_cols)
    for start in range(0, X.shape[0], step):
        block = X[start : start + step, :n_cols]
        if high is not None:
            block -= high
        if low is not None:
            block -= low
        if scale is not None:
            block /= scale


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
    X: Array, n_cols: int, need_std: bool, exact_rows: int = 0, idx: Array | None = None
) -> tuple[Array, Array | None]:
    """Float64 mean and (population) standard deviation of ``X[:, :n_cols]`` (of the rows
    ``X[idx]`` when ``idx`` is given), chunked.

    Every sum is taken in float64, also of float32 data, from the values as they are (never
    rounded to a narrower dtype first). Sums that overflow float64 (features beyond about
    1e154 squared, or 1e308 / N summed) are taken again, scaled: the result is finite for
    any finite features.

    Parameters
    ----------
    X : (N, F) array
        The training split (its first ``n_cols`` columns are the features), or the raw
        features of which ``idx`` are the training rows.
    n_cols : int
    need_std : bool
        Also compute the standard deviation (a second pass).
    exact_rows : int
        See :func:`_exact_rows`: ``X`` holds integers and blocks of that many rows sum exactly
        in ``X``'s dtype, so the column sums are taken with one BLAS product per block (several
        times faster than a float64 reduction) and are the same numbers. Not with ``idx``.
    idx : (n,) int array, optional
        Sorted indices of the rows to use.

    Returns
    -------
    mean : (n_cols,) float64 array
    std : (n_cols,) float64 array, or None unless ``need_std``

    Memory: besides the results, at most one float64 block of ``CHUNK_BYTES``, reused.
    """
    n = X.shape[0] if idx is None else idx.shape[0]
    step = _chunk_rows(n_cols)
    total = np.zeros(n_cols, np.float64)
    # one float64 scratch block, reused: each chunk is converted (and centered) into it by
    # one operation, without the temporaries per chunk that ``chunk.astype(float64)`` makes
    scratch = np.empty((min(step, n), n_cols), np.float64)

    def chunks() -> Any:
        for start in range(0, n, step):
            yield _rows(X, idx, start, min(n, start + step))[:, :n_cols]

    with np.errstate(over="ignore", invalid="ignore"):
        if exact_rows >= 64 and idx is None:
            block = min(exact_rows, 4096)
            ones = np.ones(block, dtype=X.dtype)
            for start in range(0, n, block):
                rows = X[start : start + block, :n_cols]
                total += ones[: rows.shape[0]] @ rows
        else:
            for rows in chunks():
                total += rows.sum(axis=0, dtype=np.float64)
        mean = total / max(n, 1)
        if not np.isfinite(mean).all():  # the sum overflowed: sum x / n instead
            mean[...] = 0.0
            for rows in chunks():
                d = scratch[: rows.shape[0]]
                np.divide(rows, max(n, 1), out=d)
                mean += d.sum(axis=0)
        if not need_std:
            return mean, None
        squares = np.zeros(n_cols, np.float64)
        for rows in chunks():
            d = np.subtract(rows, mean, out=scratch[: rows.shape[0]])
            squares += np.einsum("ij,ij->j", d, d)
        if np.isfinite(squares).all():
            return mean, np.sqrt(squares / max(n, 1))
        # squares beyond float64's range: each column's deviations scaled by the largest
        largest = np.zeros(n_cols, np.float64)
        for rows in chunks():
            d = np.subtract(rows, mean, out=scratch[: rows.shape[0]])
            np.maximum(largest, np.abs(d).max(axis=0, initial=0.0), out=largest)
        scale = np.where(largest > 0, largest, 1.0)
        squares[...] = 0.0
        for rows in chunks():
            d = np.subtract(rows, mean, out=scratch[: rows.shape[0]])
            d /= scale
            squares += np.einsum("ij,ij->j", d, d)
        return mean, scale * np.sqrt(squares / max(n, 1))


def _check_range(
    X: Array,
    X_test: Array | None,
    parts: tuple[Array, ...],
    dtype: np.dtype[Any],
    where: str,
    centered: bool = False,
) -> None:
    """A :class:`DataError` (key ``dtype``) when converting the raw features to ``dtype`` made
    infinities: float64 values beyond float32's range (about 3.4e38) become ``inf``, and the
    run would fail later as a wrong gradient or a diverging loss; with ``centered``, also
    float features within the range whose distance from the training mean is not.

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
    centered : bool
        The training mean was subtracted (and nothing divided out).
    """
    floats = [a for a in (X, X_test) if a is not None and a.dtype.kind == "f"]
    if not (centered and floats) and not any(a.dtype.itemsize > dtype.itemsize for a in floats):
        return  # every value converts to a finite one
    if all(p.size == 0 or (np.isfinite(p.min()) and np.isfinite(p.max())) for p in parts):
        return
    largest = max(max(-float(a.min()), float(a.max())) for a in floats if a.size)
    top = float(np.finfo(dtype).max)
    fix = "set data.dtype: float64, or rescale the features"
    if largest <= top:  # each fits, not its distance from the mean
        fix = "set data.standardize: true" + (
            "" if dtype.itemsize == 8 else ", data.dtype: float64"
        )
        fix += ", or rescale the features"
    raise DataError(
        f"{where}: features up to {largest:.3g} in magnitude"
        + (", centred on the training mean," if largest <= top else "")
        + f" do not fit data.dtype {dtype.name} (at most {top:.3g}): they would train as inf; "
        + fix,
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
    centered = divisor = None
    # Centring and standardizing: statistics in float64 of the values as they are, never
    # rounded to ``dtype`` first. Integers that ``dtype`` holds exactly (uint8 images) are
    # converted first, summed by BLAS and centred in place (:func:`_standardize_in_place`);
    # other data (floats, large integers as float32) are centred and divided in float64
    # chunk by chunk from the raw rows, and rounded to ``dtype`` once (:func:`_materialize`).
    transform = options.center or options.standardize
    in_place = transform and X.dtype.kind in "biu" and np.can_cast(X.dtype, dtype, "safe")
    if X_test_raw is not None:
        in_place = in_place and np.can_cast(X_test_raw.dtype, dtype, "safe")
    X_train = _materialize(X, train, dtype, options.bias) if in_place or not transform else None
    if transform:
        if X_train is not None:
            exact = _exact_rows(dtype, X.dtype)
            mean, std = _column_stats(X_train, F, options.standardize, exact_rows=exact)
        else:
            mean, std = _column_stats(X, F, options.standardize, idx=train)
        centered = mean if options.center else None
        if std is not None:
            divisor = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    shift, scale = (None, None) if in_place else (centered, divisor)
    if X_train is None:
        X_train = _materialize(X, train, dtype, options.bias, shift, scale)
    X_val = _materialize(X, val, dtype, options.bias, shift, scale)
    if test_x is not None:
        X_test, y_test = _materialize(X, test_x, dtype, options.bias, shift, scale), y[test_x]
    else:
        assert X_test_raw is not None and raw.y_test is not None
        X_test = _materialize(X_test_raw, test_own, dtype, options.bias, shift, scale)
        y_test = raw.y_test[test_own]
    if in_place:
        for part in (X_train, X_val, X_test):
            _standardize_in_place(part, F, centered, divisor)

    _check_range(
        X,
        X_test_raw,
        (X_train, X_val, X_test),
        dtype,
        dataset_label(name, raw.source),
        centered=options.center and not options.standardize,
    )

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
