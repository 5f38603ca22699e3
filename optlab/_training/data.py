"""Loading data through dataset plugins, then validation, splits and preprocessing.

:func:`load_data` is what the runner calls: it builds the dataset source from its
:class:`~optlab._spec.experiment.ComponentSpec`, loads it (cached per process), and :func:`prepare`
s it.

Order of operations in :func:`prepare`
--------------------------------------
1. validate the raw data (shapes, labels in ``0..C-1``, finite features);
2. split, stratified by class and seeded by the generator: the dataset's own test split is
   kept when it has one, else a fraction ``test`` of the examples becomes the test split;
   then a fraction ``val`` of the remaining training examples becomes the validation split;
3. ``limit``: a stratified subsample of each split (one cap for all, or one per split);
4. each split is converted to the requested dtype in one pass, straight into its final
   ``(n, F + bias)`` array; the training mean is subtracted (``center``) and the training
   standard deviation divided out (``standardize``), in place; statistics come from the
   training split only, so nothing leaks from validation or test;
5. the bias column of ones is written last (``bias``).

Peak memory is the raw data plus the final arrays and one bounded scratch block: rows are
converted chunk by chunk straight into their final array (never a whole float copy first, then
another for the split, the centering or the bias column), and column statistics are
accumulated in float64 chunk by chunk in one reused block of at most ``_CHUNK_BYTES``. So two
float copies of the data are never held at once: at the CIFAR-10 shape (50,000 + 10,000 uint8
images of 3,072 pixels, float32) loading and preparing peak at the raw uint8 arrays plus the
final float arrays (1.0x the training array, 0.02x validation, 0.2x test); for a whole run see
``memory.run.fullbatch.uint8`` in ``benchmarks/bench_memory.py``, and
``tests/test_data_memory.py``.

Caching and seeds
-----------------
Loading (and hashing) a dataset happens once per process for a given dataset, provider,
params and ``mmap``; up to four datasets are kept. The sha256 of a newly loaded dataset is
computed on a second thread while it is first prepared. The runner's generator is used as follows:
one integer is drawn from it to seed a separate generator handed to the source's ``load``,
then the splits draw from it. If ``load`` draws nothing from its generator (real files) the
result is cached for every seed; if it does (synthetic data), the cache key includes the
drawn seed, so each run seed gets its own data and a repeated seed its cached copy.

Memory-mapping
--------------
With ``data.mmap: true``, a source that defines ``load_mmap(rng)`` (the bundled ``npz``) is
asked for memory-mapped arrays through it; other sources load normally.

Measuring without loading
-------------------------
:func:`inspect_data` gives the summary :func:`load_data` would (sizes of every split, features,
classes) and raises the errors it would for a missing or unreadable source and for splits that
leave no training example, reading as little as it can: a source that defines ``shape(rng)``
(:class:`SupportsShape`; every bundled file dataset) measures its files from headers and labels;
another is loaded, into the cache :func:`load_data` then uses. The split sizes depend on the
totals only (:func:`split_sizes`).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from optlab._contract.components import Array, DatasetSource, DataShape, RawDataset
from optlab._contract.records import DataSummary
from optlab._errors import DataError
from optlab._spec.experiment import ComponentSpec, DataOptions, SplitLimit

__all__ = [
    "PreparedData",
    "SplitSizes",
    "SupportsMmap",
    "SupportsShape",
    "clear_cache",
    "dataset_hash",
    "inspect_data",
    "load_data",
    "prepare",
    "split_sizes",
    "validate_raw",
]

#: datasets kept loaded per process
CACHE_SIZE = 4
#: bytes of float64 scratch per chunk when converting and computing column statistics
_CHUNK_BYTES = 4 * 2**20


@runtime_checkable
class SupportsMmap(Protocol):
    """A dataset source that can return memory-mapped arrays (used when ``data.mmap``)."""

    def load_mmap(self, rng: np.random.Generator) -> RawDataset: ...


@runtime_checkable
class SupportsShape(Protocol):
    """A dataset source that can measure its data without loading it (used by
    :func:`inspect_data`, so by ``optlab validate``).

    ``shape(rng)`` returns the :class:`~optlab.DataShape` that ``load(rng)`` would give, reading
    as little as it can (headers, file sizes, the labels), and raises the
    :class:`~optlab.DataError` ``load`` would when the data are missing or unreadable (with
    ``key`` the param at fault, as ``load``). It gets a generator seeded as ``load``'s would be.
    A source that also has ``load_mmap`` may define ``shape_mmap(rng)`` alike, asked instead
    under ``data.mmap: true``; without it, such a source is loaded (memory-mapped) there.
    """

    def shape(self, rng: np.random.Generator) -> DataShape: ...


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
    """

    X_train: Array
    y_train: Array
    X_val: Array
    y_val: Array
    X_test: Array
    y_test: Array
    summary: DataSummary


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _where(name: str, source: str) -> str:
    return f"dataset '{name}' ({source})" if source else f"dataset '{name}'"


def _rows_bad(X: Array) -> int:
    """Index of the first row of ``X`` holding NaN or inf (``X`` is known to have one)."""
    step = max(1, _CHUNK_BYTES // max(1, X.shape[1] * X.dtype.itemsize))
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
    where = _where(name, raw.source)
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
# splits
# --------------------------------------------------------------------------------------------


def _allocate(counts: Array, k: int) -> Array:
    """Split ``k`` picks over classes in proportion to ``counts`` (largest remainders)."""
    total = int(counts.sum())
    k = min(k, total)
    if total == 0 or k == 0:
        return np.zeros_like(counts)
    ideal = counts * (k / total)
    take = np.floor(ideal).astype(np.int64)
    short = k - int(take.sum())
    if short:
        # largest fractional parts first; ties to the larger class, then the lower label
        order = np.lexsort((-counts, -(ideal - take)))
        take[order[:short]] += 1
    return np.minimum(take, counts)


def _stratified_pick(idx: Array, y: Array, k: int, rng: np.random.Generator) -> tuple[Array, Array]:
    """Pick ``k`` of the examples ``idx`` keeping class proportions.

    Returns
    -------
    picked, rest : 1-d int arrays of indices, each sorted ascending
    """
    if k >= idx.shape[0]:
        return idx, idx[:0]
    labels = y[idx]
    shuffled = rng.permutation(idx.shape[0])
    order = shuffled[np.argsort(labels[shuffled], kind="stable")]  # by class, random within
    counts = np.bincount(labels, minlength=int(labels.max(initial=0)) + 1)
    starts = np.cumsum(counts) - counts
    rank = np.arange(idx.shape[0]) - np.repeat(starts, counts)
    chosen = rank < np.repeat(_allocate(counts, k), counts)
    return np.sort(idx[order[chosen]]), np.sort(idx[order[~chosen]])


def _limits(limit: int | SplitLimit | None) -> tuple[int | None, int | None, int | None]:
    if limit is None:
        return None, None, None
    if isinstance(limit, int):
        return limit, limit, limit
    return limit.train, limit.val, limit.test


@dataclass(frozen=True)
class SplitSizes:
    """How many examples each split gets (see :func:`split_sizes`)."""

    n_train: int
    n_val: int
    n_test: int


def split_sizes(n_examples: int, n_test_own: int | None, options: DataOptions) -> SplitSizes:
    """The sizes of the splits :func:`prepare` makes, from the totals alone.

    A stratified pick of ``k`` of ``n`` examples takes exactly ``min(k, n)`` of them whatever
    their labels, so the sizes depend neither on the labels nor on the generator.

    Parameters
    ----------
    n_examples : int
        ``N``, the examples of the training data.
    n_test_own : int or None
        ``M``, the examples of the dataset's own test split; ``None`` when it has none (then
        a fraction ``options.test`` of the ``N`` becomes the test split).
    options : DataOptions
        ``val``, ``test`` and ``limit`` are used.

    Returns
    -------
    SplitSizes
        Equal to ``(len(y_train), len(y_val), len(y_test))`` of :func:`prepare`'s result.
    """
    if n_test_own is None:
        n_test = min(round(options.test * n_examples), n_examples)
        pool = n_examples - n_test
    else:
        n_test, pool = n_test_own, n_examples
    n_val = min(round(options.val * pool), pool)
    caps = _limits(options.limit)
    sizes = (pool - n_val, n_val, n_test)
    return SplitSizes(
        *(n if cap is None else min(n, cap) for n, cap in zip(sizes, caps, strict=True))
    )


def _no_training_examples(
    where: str, n_examples: int, n_test_own: int | None, options: DataOptions
) -> DataError:
    """The error for splits that leave no training example; its key is the option that took
    them all: ``test`` (nothing left after the test split) or ``val``."""
    key = "test" if n_test_own is None and round(options.test * n_examples) >= n_examples else "val"
    return DataError(
        f"{where}: no training examples left after the splits "
        f"({n_examples} examples, val={options.val}, test={options.test}); lower data.{key}",
        key=key,
    )


def _split_indices(
    y: Array,
    has_own_test: bool,
    n_test_own: int,
    y_test: Array | None,
    options: DataOptions,
    rng: np.random.Generator,
) -> tuple[Array, Array, Array | None, Array]:
    """Indices of train, val (into ``X``) and test (into ``X`` or, when own, ``X_test``).

    Returns ``(train, val, test_from_X, test_own)``: exactly one of the last two is used.
    """
    everything = np.arange(y.shape[0])
    if has_own_test:
        test_own = np.arange(n_test_own)
        test_from_x = None
        pool = everything
    else:
        n_test = round(options.test * y.shape[0])
        test_from_x, pool = _stratified_pick(everything, y, n_test, rng)
        test_own = everything[:0]
    n_val = round(options.val * pool.shape[0])
    val, train = _stratified_pick(pool, y, n_val, rng)
    lim_train, lim_val, lim_test = _limits(options.limit)
    if lim_train is not None:
        train = _stratified_pick(train, y, lim_train, rng)[0]
    if lim_val is not None:
        val = _stratified_pick(val, y, lim_val, rng)[0]
    if lim_test is not None:
        if test_from_x is not None:
            test_from_x = _stratified_pick(test_from_x, y, lim_test, rng)[0]
        elif y_test is not None:
            test_own = _stratified_pick(test_own, y_test, lim_test, rng)[0]
    return train, val, test_from_x, test_own


# --------------------------------------------------------------------------------------------
# conversion and statistics
# --------------------------------------------------------------------------------------------


def _chunk_rows(n_cols: int) -> int:
    return max(1, _CHUNK_BYTES // (8 * max(1, n_cols)))


def _materialize(X: Array, idx: Array, dtype: np.dtype[Any], bias: bool) -> Array:
    """``X[idx]`` as a new C-ordered ``(len(idx), F + bias)`` array of ``dtype``.

    Rows are gathered and converted chunk by chunk, straight into the result.
    """
    n, F = idx.shape[0], X.shape[1]
    out = np.empty((n, F + int(bias)), dtype=dtype)
    contiguous = n > 0 and int(idx[-1]) - int(idx[0]) == n - 1  # sorted, so a plain range
    step = _chunk_rows(F)
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

    Memory: besides the results, at most one float64 block of ``_CHUNK_BYTES``, reused.
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


# --------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------


def _hash_array(h: Any, a: Array) -> None:
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if a.flags.c_contiguous:
        h.update(a.reshape(-1).view(np.uint8))
        return
    rows = max(1, _CHUNK_BYTES // max(1, a[:1].nbytes))
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


# --------------------------------------------------------------------------------------------
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
    return _prepare(
        raw, options, rng, name, lambda: dataset_hash(raw) if sha256 is None else sha256
    )


def _prepare(
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
    train, val, test_x, test_own = _split_indices(
        y, has_own_test, n_test_own, raw.y_test, options, rng
    )
    if train.shape[0] == 0:
        raise _no_training_examples(
            _where(name, raw.source), y.shape[0], n_test_own if has_own_test else None, options
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

    if options.center or options.standardize:
        mean, std = _column_stats(
            X_train, F, options.standardize, exact_rows=_exact_rows(dtype, X.dtype)
        )
        shift = mean.astype(dtype) if options.center else None
        scale = None
        if std is not None:
            safe = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
            scale = (1.0 / safe).astype(dtype)
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
    )
    return PreparedData(
        X_train=X_train,
        y_train=y[train].astype(np.int64),
        X_val=X_val,
        y_val=y[val].astype(np.int64),
        X_test=X_test,
        y_test=np.asarray(y_test, dtype=np.int64),
        summary=summary,
    )


# --------------------------------------------------------------------------------------------
# load_data and the per-process cache
# --------------------------------------------------------------------------------------------

_CacheKey = tuple[str, str, str, bool, int | None]
#: key -> the raw data and their sha256 (``None`` until computed: :func:`inspect_data` loads
#: without hashing, :func:`load_data` hashes on first use)
_cache: OrderedDict[_CacheKey, tuple[RawDataset, str | None]] = OrderedDict()
_lock = threading.Lock()
_T = TypeVar("_T")


def clear_cache() -> None:
    """Forget every loaded dataset."""
    with _lock:
        _cache.clear()


def _cache_keys(
    dataset: ComponentSpec, options: DataOptions, seed: int
) -> tuple[_CacheKey, _CacheKey]:
    """The keys of data that do not depend on the seed, and of data that do."""
    params = dataset.params.model_dump_json()
    base = (dataset.name, dataset.record.provider, params, options.mmap)
    return (*base, None), (*base, seed)


def _cached(keys: tuple[_CacheKey, _CacheKey]) -> tuple[_CacheKey, RawDataset, str | None] | None:
    """The cached data under either key (and that key), or ``None``."""
    with _lock:
        for key in keys:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return key, *hit
        return None


def _cache_put(key: _CacheKey, value: tuple[RawDataset, str | None]) -> None:
    with _lock:
        _cache[key] = value
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def _freeze(raw: RawDataset) -> None:
    """Make the cached arrays read-only, so one run cannot change another's data."""
    for a in (raw.X, raw.y, raw.X_test, raw.y_test):
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


def _from_source(dataset: ComponentSpec, call: Callable[[Any], _T]) -> _T:
    """``call(source)`` on the dataset's source; whatever goes wrong is a :class:`DataError`
    naming the dataset (and the plugin, when it raised something else). A plugin's
    DataError keeps its ``key``."""
    where = f"dataset '{dataset.name}' (from {dataset.record.provider or 'unknown plugin'})"
    try:
        source = dataset.build()
        if not isinstance(source, DatasetSource) and not hasattr(source, "load"):
            raise TypeError(f"factory returned {type(source).__name__}, not a DatasetSource")
        return call(source)
    except DataError as exc:
        if str(exc).startswith("dataset '"):
            raise
        raise DataError(f"dataset '{dataset.name}': {exc}", key=exc.key) from exc
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(
            f"{where} failed to load: {type(exc).__name__}" + (f": {detail}" if detail else "")
        ) from exc


def _load(dataset: ComponentSpec, options: DataOptions, seed: int) -> tuple[RawDataset, bool]:
    """The dataset loaded and validated (read-only), and whether it drew from its generator."""

    def load(source: Any) -> tuple[Any, bool]:
        rng = np.random.default_rng(seed)
        before = rng.bit_generator.state
        if options.mmap and isinstance(source, SupportsMmap):
            raw = source.load_mmap(rng)
        else:
            raw = source.load(rng)
        return raw, rng.bit_generator.state != before

    raw, used_rng = _from_source(dataset, load)
    if not isinstance(raw, RawDataset):
        raise DataError(
            f"dataset '{dataset.name}' (from {dataset.record.provider or 'unknown plugin'}): "
            f"load() returned {type(raw).__name__}, not a RawDataset"
        )
    validate_raw(raw, dataset.name)
    _freeze(raw)
    return raw, used_rng


def load_data(
    dataset: ComponentSpec, options: DataOptions, rng: np.random.Generator
) -> PreparedData:
    """Load a dataset through its plugin (cached per process) and :func:`prepare` it.

    Parameters
    ----------
    dataset : ComponentSpec
        The resolved ``dataset`` component (record and validated params).
    options : DataOptions
    rng : numpy.random.Generator
        One integer is drawn to seed the source's own generator; the splits use the rest.

    Raises
    ------
    DataError
        Whatever goes wrong, including an unexpected exception from the plugin (named with
        its provider).
    """
    seed = int(rng.integers(2**63))
    keys = _cache_keys(dataset, options, seed)
    hit = _cached(keys)
    if hit is not None and hit[2] is not None:
        return prepare(hit[1], options, rng, dataset.name, sha256=hit[2])
    if hit is not None:  # loaded by inspect_data, not hashed yet
        key, raw = hit[0], hit[1]
    else:
        raw, seeded = _load(dataset, options, seed)
        key = keys[seeded]
    # hashlib releases the GIL: the hash is computed on another core while the data are
    # prepared, and awaited for the summary (the data are read-only since _load)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="optlab-hash") as pool:
        digest = pool.submit(dataset_hash, raw)
        try:
            return _prepare(raw, options, rng, dataset.name, digest.result)
        finally:
            if digest.exception() is None:  # cached even when preparing fails, as before
                _cache_put(key, (raw, digest.result()))


def _measure(dataset: ComponentSpec, options: DataOptions, seed: int) -> DataShape | None:
    """The source's :class:`DataShape` when it can measure itself (:class:`SupportsShape`, or
    ``shape_mmap`` under ``data.mmap``), else ``None``."""

    def measure(source: Any) -> Any:
        if options.mmap and isinstance(source, SupportsMmap):
            method = getattr(source, "shape_mmap", None)
        else:
            method = source.shape if isinstance(source, SupportsShape) else None
        return None if method is None else method(np.random.default_rng(seed))

    shape = _from_source(dataset, measure)
    if shape is not None and not isinstance(shape, DataShape):
        raise DataError(
            f"dataset '{dataset.name}' (from {dataset.record.provider or 'unknown plugin'}): "
            f"shape() returned {type(shape).__name__}, not a DataShape"
        )
    return shape


def inspect_data(
    dataset: ComponentSpec, options: DataOptions, rng: np.random.Generator
) -> DataSummary:
    """The summary :func:`load_data` would give for the same arguments, reading only what it
    must, and the :class:`DataError` it would raise for a missing or unreadable source or for
    splits that leave no training example (``key``: the option to change, ``val`` or
    ``test``; a dataset plugin's own errors keep the key it gave, e.g. ``path``).

    A source that can measure itself (:class:`SupportsShape`) is measured (headers, file
    sizes, labels); any other is loaded and validated, and kept in the cache
    :func:`load_data` uses, so loading it again costs nothing; data already in that cache are
    not read again. Problems only seen in the values (NaN features, a label out of range in
    a file whose labels are not read) are left to :func:`load_data`.

    Parameters
    ----------
    dataset : ComponentSpec
    options : DataOptions
    rng : numpy.random.Generator
        Exactly one integer is drawn, as :func:`load_data` draws first, to seed the source's
        generator: a generator seeded alike and handed to :func:`load_data` later gives the
        source the same seed (and finds the data this call loaded in the cache).

    Returns
    -------
    DataSummary
        ``n_train``, ``n_val``, ``n_test``, ``n_features`` (bias column counted),
        ``n_classes``, ``dtype``, ``has_bias`` equal to :func:`load_data`'s; ``classes`` and
        ``image_shape`` only when the data were loaded (else ``()`` and ``None``), and
        ``sha256`` only when the data were already hashed (else ``""``).

    Raises
    ------
    DataError
    """
    seed = int(rng.integers(2**63))
    keys = _cache_keys(dataset, options, seed)
    hit = _cached(keys)
    shape = _measure(dataset, options, seed) if hit is None else None
    if hit is None and shape is None:  # the source cannot measure itself: load it, for keeps
        raw, seeded = _load(dataset, options, seed)
        hit = (keys[seeded], raw, None)
        _cache_put(hit[0], (raw, None))
    if hit is not None:  # validated when loaded
        raw, sha = hit[1], hit[2]
        shape = DataShape(
            n_examples=int(raw.X.shape[0]),
            n_features=math.prod(raw.X.shape[1:]),
            n_classes=len(raw.classes),
            n_test=None if raw.X_test is None else int(raw.X_test.shape[0]),
            source=raw.source,
        )
        classes, image_shape = tuple(str(c) for c in raw.classes), raw.image_shape
    else:  # the checks validate_raw makes of the sizes
        assert shape is not None
        sha, classes, image_shape = None, (), None
        where = _where(dataset.name, shape.source)
        if not shape.n_classes:
            raise DataError(f"{where}: no class names")
        if shape.n_examples == 0 or shape.n_features == 0:
            found = (shape.n_examples, shape.n_features)
            raise DataError(f"{where}: no data (features of shape {found})")
    sizes = split_sizes(shape.n_examples, shape.n_test, options)
    if sizes.n_train == 0:
        where = _where(dataset.name, shape.source)
        raise _no_training_examples(where, shape.n_examples, shape.n_test, options)
    return DataSummary(
        name=dataset.name,
        n_train=sizes.n_train,
        n_val=sizes.n_val,
        n_test=sizes.n_test,
        n_features=shape.n_features + int(options.bias),
        n_classes=shape.n_classes,
        classes=classes,
        dtype=np.dtype(options.dtype).name,
        sha256=sha or "",
        image_shape=tuple(image_shape) if image_shape is not None else None,
        has_bias=options.bias,
    )
