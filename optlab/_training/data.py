"""Loading data through dataset plugins: :func:`load_data` is what the runner calls. It builds
the dataset source from its :class:`~optlab._spec.experiment.ComponentSpec`, loads it (cached
per process), and prepares it (:func:`optlab._training.prepare.prepare`: validation, splits,
preprocessing).

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
asked for memory-mapped arrays through it; any other source is refused with a
:class:`DataError` of key ``mmap`` (it reads its data whole: the option would have no effect).

Measuring without loading
-------------------------
:func:`inspect_data` gives the summary :func:`load_data` would (sizes of every split, features,
classes) and raises the errors it would for a missing or unreadable source, for splits that
leave no training example and for data of one class, reading as little as it can: a source
that defines ``shape(rng)`` (:class:`SupportsShape`; every bundled file dataset) measures its
files from headers and labels; another is loaded, into the cache :func:`load_data` then uses.
The split sizes depend on the totals only (:func:`split_sizes`).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from optlab._contract.components import DatasetSource, DataShape, RawDataset
from optlab._contract.records import DataSummary
from optlab._errors import DataError
from optlab._spec.experiment import ComponentSpec, DataOptions
from optlab._training.prepare import (
    PreparedData,
    dataset_hash,
    dataset_label,
    prepare,
    prepare_hashed,
    validate_raw,
)
from optlab._training.splits import no_training_examples, one_class, split_sizes

__all__ = [
    "CACHE_SIZE",
    "PreparedData",
    "SupportsMmap",
    "SupportsShape",
    "clear_cache",
    "inspect_data",
    "load_data",
]


CACHE_SIZE = 4
#: bytes of float64 scratch per chunk when converting and computing column statistics


@runtime_checkable
class SupportsMmap(Protocol):
    """A dataset source that can return memory-mapped arrays (used when ``data.mmap``)."""

    def load_mmap(self, rng: np.random.Generator) -> RawDataset: ...


@runtime_checkable
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


# --------------------------------------------------------------------------------------------
# load_data and the per-process cache
# --------------------------------------------------------------------------------------------

_CacheKey = tuple[str, str, str, str, bool, int | None]
#: a folder named by a dataset's params has its files' stamps in the cache key up to this many
#: files (beyond, only the folder's own: adding or removing a file still shows)
STAMPED_FILES = 1000
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
    stamps = _file_stamps(dataset.params.model_dump().values())
    base = (dataset.name, dataset.record.provider, params, stamps, options.mmap)
    return (*base, None), (*base, seed)


def _file_stamps(values: Any) -> str:
    """The absolute path, size and modification time of each file that a string or path among
    ``values`` names (relative to the working folder, as the dataset reads it; a folder: of the
    files in it, up to :data:`STAMPED_FILES`): a data file rewritten or a working folder changed
    between two runs of one process (a notebook) is read again, not taken from the cache."""
    stamps = []
    for value in values:
        if not isinstance(value, str | os.PathLike) or not str(value):
            continue
        path = Path(value).expanduser().absolute()
        try:
            entries = [path]
            if path.is_dir():
                # a folder of more files is not listed whole at every load (cache hits too)
                inside = list(itertools.islice(path.iterdir(), STAMPED_FILES + 1))
                entries += sorted(inside) if len(inside) <= STAMPED_FILES else []
            for entry in entries:
                stat = entry.stat()
                stamps.append(f"{entry}:{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:  # not a path, or not there: the dataset says so when it loads
            continue
    return "\n".join(stamps)


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


def _named(dataset: ComponentSpec) -> str:
    """``dataset 'NAME' (from PLUGIN (DISTRIBUTION VERSION))``, as a run names a component."""
    from optlab._contract.plugin_manager import get_registry

    provider = dataset.record.provider
    label = get_registry().label(provider) if provider else "unknown plugin"
    return f"dataset '{dataset.name}' (from {label})"


def _from_source(dataset: ComponentSpec, call: Callable[[Any], _T]) -> _T:
    """``call(source)`` on the dataset's source; whatever goes wrong is a :class:`DataError`
    naming the dataset (and the plugin, when it raised something else). A plugin's
    DataError keeps its ``key``."""
    try:
        source = dataset.build()
        if not isinstance(source, DatasetSource) and not hasattr(source, "load"):
            raise TypeError(f"factory returned {type(source).__name__}, not a DatasetSource")
        return call(source)
    except DataError as exc:
        if str(exc).startswith("dataset '"):
            raise
        raise DataError(f"dataset '{dataset.name}': {exc.what}", key=exc.key, fix=exc.fix) from exc
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(
            f"{_named(dataset)} failed to load: {type(exc).__name__}"
            + (f": {detail}" if detail else "")
        ) from exc


def _check_mmap(source: Any, options: DataOptions) -> None:
    """A :class:`DataError` (key ``mmap``) for ``data.mmap: true`` with a source that reads
    its data whole (no ``load_mmap``): the option would have no effect."""
    if options.mmap and not isinstance(source, SupportsMmap):
        raise DataError(
            "cannot be memory-mapped, it reads its data whole (data.mmap applies to .npy files "
            "and np.savez archives, dataset 'npz')",
            key="mmap",
            fix="remove data.mmap",
        )


def _load(dataset: ComponentSpec, options: DataOptions, seed: int) -> tuple[RawDataset, bool]:
    """The dataset loaded and validated (read-only), and whether it drew from its generator."""

    def load(source: Any) -> tuple[Any, bool]:
        _check_mmap(source, options)
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
            f"{_named(dataset)}: load() returned {type(raw).__name__}, not a RawDataset"
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
        its provider), and a training split of one class (a classifier needs two).
    """
    seed = int(rng.integers(2**63))
    keys = _cache_keys(dataset, options, seed)
    hit = _cached(keys)
    if hit is not None and hit[2] is not None:
        raw = hit[1]
        data = prepare(raw, options, rng, dataset.name, sha256=hit[2])
    else:
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
                data = prepare_hashed(raw, options, rng, dataset.name, digest.result)
            finally:
                if digest.exception() is None:  # cached even when preparing fails, as before
                    _cache_put(key, (raw, digest.result()))
    if int(data.y_train.min()) == int(data.y_train.max()):  # the splits left one class
        where = dataset_label(dataset.name, raw.source)
        whole = int(raw.y.min()) == int(raw.y.max())
        raise one_class(where, str(raw.classes[int(data.y_train[0])]), whole=whole)
    return data


def _measure(dataset: ComponentSpec, options: DataOptions, seed: int) -> DataShape | None:
    """The source's :class:`DataShape` when it can measure itself (:class:`SupportsShape`, or
    ``shape_mmap`` under ``data.mmap``), else ``None``."""

    def measure(source: Any) -> Any:
        _check_mmap(source, options)
        if options.mmap and isinstance(source, SupportsMmap):
            method = getattr(source, "shape_mmap", None)
        else:
            method = source.shape if isinstance(source, SupportsShape) else None
        return None if method is None else method(np.random.default_rng(seed))

    shape = _from_source(dataset, measure)
    if shape is not None and not isinstance(shape, DataShape):
        raise DataError(
            f"{_named(dataset)}: shape() returned {type(shape).__name__}, not a DataShape"
        )
    return shape


def inspect_data(
    dataset: ComponentSpec, options: DataOptions, rng: np.random.Generator
) -> DataSummary:
    """The summary :func:`load_data` would give for the same arguments, reading only what it
    must, and the :class:`DataError` it would raise for a missing or unreadable source, for
    splits that leave no training example (``key``: the option to change, ``val`` or
    ``test``; a dataset plugin's own errors keep the key it gave, e.g. ``path``) and for data
    of one class (one class name, or one label in data it loads; a split that leaves the
    other classes out of the training examples is only seen by :func:`load_data`).

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
        ``n_classes``, ``dtype``, ``has_bias``, ``own_test`` equal to :func:`load_data`'s;
        ``classes`` and ``image_shape`` only when the data were loaded (else ``()`` and
        ``None``), and ``sha256`` only when the data were already hashed (else ``""``).

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
        where = dataset_label(dataset.name, shape.source)
        if shape.n_examples == 0 or shape.n_features == 0:
            found = (shape.n_examples, shape.n_features)
            raise DataError(f"{where}: no data (features of shape {found})")
        if not shape.n_classes:
            raise DataError(f"{where}: no class names")
    sizes = split_sizes(shape.n_examples, shape.n_test, options)
    if sizes.n_train == 0:
        where = dataset_label(dataset.name, shape.source)
        raise no_training_examples(where, shape.n_examples, shape.n_test, options)
    # one class name, or (loaded) one label: no split has two
    labels = hit[1].y if hit is not None else None
    if shape.n_classes < 2 or (labels is not None and int(labels.min()) == int(labels.max())):
        where = dataset_label(dataset.name, shape.source)
        label = int(labels[0]) if labels is not None else 0
        raise one_class(where, classes[label] if classes else str(label), whole=True)
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
        own_test=shape.n_test is not None,
    )
