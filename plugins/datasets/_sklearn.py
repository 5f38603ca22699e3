"""Small datasets bundled with scikit-learn (no network): digits, iris, wine, breast cancer."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from optlab import DataError, DatasetSource, Params, RawDataset

__all__ = ["SKLEARN_DATASETS", "SklearnDataset", "SklearnParams"]

#: name -> (sklearn loader, one-line summary, image shape)
SKLEARN_DATASETS: dict[str, tuple[str, str, tuple[int, ...] | None]] = {
    "digits": ("load_digits", "1,797 8x8 handwritten digits, 10 classes (scikit-learn)", (8, 8)),
    "iris": ("load_iris", "150 iris flowers, 4 measurements, 3 species (scikit-learn)", None),
    "wine": ("load_wine", "178 wines, 13 chemical measurements, 3 cultivars (scikit-learn)", None),
    "breast_cancer": (
        "load_breast_cancer",
        "569 tumours, 30 features, malignant/benign (scikit-learn)",
        None,
    ),
}


class SklearnParams(Params):
    """The bundled scikit-learn datasets take no parameters."""


class SklearnDataset(DatasetSource):
    """One of scikit-learn's bundled toy datasets, read from its installed files."""

    def __init__(self, name: str) -> None:
        self.name = name

    def load(self, rng: np.random.Generator) -> RawDataset:
        loader_name, _, image_shape = SKLEARN_DATASETS[self.name]
        try:  # imported here: scikit-learn is slow to import and only these sources need it
            datasets = importlib.import_module("sklearn.datasets")
        except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
            raise DataError(f"dataset '{self.name}' needs scikit-learn: {exc}") from exc
        loader: Callable[[], Any] = getattr(datasets, loader_name)
        bunch = loader()
        names = [str(n) for n in bunch.target_names]
        return RawDataset(
            X=np.asarray(bunch.data),
            y=np.asarray(bunch.target, dtype=np.int64),
            classes=names,
            image_shape=image_shape,
            source=f"sklearn:{self.name}",
        )


def factory(name: str) -> Callable[[SklearnParams], SklearnDataset]:
    """A record factory building :class:`SklearnDataset` ``name``."""

    def build(params: SklearnParams) -> SklearnDataset:
        return SklearnDataset(name)

    return build
