"""Splitting a dataset: stratified by class and seeded by the run's generator.

The dataset's own test split is kept when it has one, else a fraction ``test`` of the examples
becomes the test split; then a fraction ``val`` of the remaining training examples becomes the
validation split; ``limit`` takes a stratified subsample of each split (one cap for all, or one
per split). The sizes depend on the totals only (:func:`split_sizes`), so they can be known
without loading the data.
"""

from dataclasses import dataclass

import numpy as np

from optlab._contract.components import Array
from optlab._errors import DataError
from optlab._spec.experiment import DataOptions, SplitLimit

__all__ = [
    "SplitSizes",
    "no_training_examples",
    "split_indices",
    "split_sizes",
]


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


def one_class(where: str, name: str | None, *, whole: bool) -> DataError:
    """The error for a training split whose examples are all of one class (``name``, when
    known): a classifier needs two. ``whole``: every example of the data is of that class;
    else the splits (``val``, ``test``, ``limit``) left the others out."""
    which = f" ({name})" if name is not None else ""
    if whole:
        return DataError(f"{where}: every example is of one class{which}; a classifier needs 2")
    return DataError(
        f"{where}: the training split has only one class{which}, the splits (data.val, "
        "data.test, data.limit) left the others out; a classifier needs 2: train on more"
    )


def no_training_examples(
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


def split_indices(
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
