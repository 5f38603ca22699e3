"""check_dataset: what a dataset plugin gives is what optlab accepts, reproducibly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from optlab.testing._common import (
    build,
    fail,
)


def check_dataset(component: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """Check a dataset (a :class:`~optlab.DatasetRecord` or a :class:`~optlab.DatasetSource`).

    - ``load(rng)`` returns an :class:`~optlab.RawDataset` that optlab accepts: class names,
      integer labels in ``0..C-1``, numeric finite features, matching shapes, both parts of a
      test split or neither, an ``image_shape`` that holds a row's features;
    - at least two classes, distinct class names;
    - loading twice with generators of the same seed gives the same arrays and names (the
      splits and every run's numbers depend on it), and loading leaves numpy's and Python's
      global random state alone (all randomness from ``rng``);
    - a source that measures itself (:class:`~optlab._training.data.SupportsShape`) gives the
      :class:`~optlab.DataShape` of what it loads.

    Raises
    ------
    AssertionError
        Naming the dataset and what is wrong.
    """
    import random

    from optlab._contract.components import DatasetSource, DataShape, RawDataset
    from optlab._errors import DataError
    from optlab._training.data import SupportsShape
    from optlab._training.prepare import dataset_label, validate_raw

    source, name = build(component, DatasetSource, "dataset", params)
    try:  # first, the imports a first load may make (some touch the global state)
        source.load(np.random.default_rng(1234))
    except Exception as exc:
        raise fail("dataset", name, f"load raised {exc!r}") from exc
    loads = []
    for _ in range(2):
        numpy_state = np.random.get_state()  # noqa: NPY002 - watching the legacy global state
        python_state = random.getstate()
        try:
            raw = source.load(np.random.default_rng(1234))
        except Exception as exc:
            raise fail("dataset", name, f"load raised {exc!r}") from exc
        after = np.random.get_state()  # noqa: NPY002
        if not _same_state(numpy_state, after) or random.getstate() != (python_state):
            raise fail(
                "dataset",
                name,
                "load used the global random state (np.random.* or random.*); draw from the "
                "rng argument, so that a seed gives the same data",
            )
        if not isinstance(raw, RawDataset):
            raise fail("dataset", name, f"load returned {type(raw).__name__}, not a RawDataset")
        loads.append(raw)
    raw = loads[0]
    try:
        X, _ = validate_raw(raw, name)
    except DataError as exc:  # its message starts with the dataset's name: said once
        fault = str(exc).removeprefix(f"{dataset_label(name, raw.source)}: ")
        raise fail("dataset", name, fault) from exc
    if len(raw.classes) < 2:
        raise fail("dataset", name, f"{len(raw.classes)} class(es); a classifier needs two")
    if len(set(raw.classes)) != len(raw.classes):
        raise fail("dataset", name, f"class names repeat: {list(raw.classes)}")
    if raw.image_shape is not None and int(np.prod(raw.image_shape)) != X.shape[1]:
        raise fail(
            "dataset",
            name,
            f"image_shape {tuple(raw.image_shape)} holds {int(np.prod(raw.image_shape))} "
            f"values, a row has {X.shape[1]} features",
        )
    if isinstance(source, SupportsShape):
        try:
            shape = source.shape(np.random.default_rng(1234))
        except Exception as exc:
            raise fail("dataset", name, f"shape raised {exc!r}") from exc
        n_test = None if raw.X_test is None else int(raw.X_test.shape[0])
        loaded = DataShape(X.shape[0], X.shape[1], len(raw.classes), n_test, raw.source)
        if shape != loaded:
            raise fail("dataset", name, f"shape() gave {shape}, load gives {loaded}")
    again = loads[1]
    pairs = [(raw.X, again.X), (raw.y, again.y), (raw.X_test, again.X_test)]
    pairs.append((raw.y_test, again.y_test))
    same = all(
        (a is None and b is None)
        or (a is not None and b is not None and np.array_equal(np.asarray(a), np.asarray(b)))
        for a, b in pairs
    )
    if not same or list(raw.classes) != list(again.classes):
        raise fail(
            "dataset",
            name,
            "two loads with generators of the same seed gave different data; draw every "
            "random number from the rng argument",
        )


def _same_state(a: Any, b: Any) -> bool:
    """Two ``np.random.get_state()`` tuples are equal."""
    return all(
        np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
        for x, y in zip(a, b, strict=True)
    )
