"""Small datasets bundled with scikit-learn (no network): digits, iris, wine, breast cancer."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from optlab import DataError, DatasetSource, DataShape, Params, RawDataset

__all__ = ["SKLEARN_DATASETS", "SklearnDataset", "SklearnParams"]

#: the file of each set in scikit-learn's package data (what its loaders read)
_FILES = {
    "digits": "digits.csv.gz",
    "iris": "iris.csv",
    "wine": "wine_data.csv",
    "breast_cancer": "breast_cancer.csv",
}
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

    def shape(self, rng: np.random.Generator) -> DataShape:
        """The sizes, from the file's header line (``150,4,setosa,...``: examples, features,
        class names); digits' file has none, so its rows and labels are counted."""
        path = _data_file(self.name)
        try:
            if self.name != "digits":
                with path.open("rb") as f:
                    n, features, *classes = f.readline().decode().strip().split(",")
                return DataShape(int(n), int(features), len(classes), source=f"sklearn:{self.name}")
            rows = gzip.decompress(path.read_bytes()).splitlines()
        except (OSError, ValueError, EOFError) as exc:
            return self._measured_by_loading(rng, exc)
        labels = {row.rsplit(b",", 1)[-1] for row in rows}
        return DataShape(len(rows), rows[0].count(b","), len(labels), source="sklearn:digits")

    def _measured_by_loading(self, rng: np.random.Generator, exc: Exception) -> DataShape:
        """The sizes of what :meth:`load` gives, when the file is not where it was expected
        (a scikit-learn that stores it elsewhere): loaded, and measured."""
        raw = self.load(rng)
        return DataShape(
            len(raw.y), int(np.prod(raw.X.shape[1:])), len(raw.classes), source=raw.source
        )

    def load(self, rng: np.random.Generator) -> RawDataset:
        loader_name, _, image_shape = SKLEARN_DATASETS[self.name]
        if self.name == "digits" and (digits := _digits_file()) is not None:
            return RawDataset(
                X=digits[:, :-1],
                y=digits[:, -1].astype(np.int64),
                classes=[str(k) for k in range(10)],
                image_shape=image_shape,
                source="sklearn:digits",
            )
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


def _data_file(name: str) -> Path:
    """Where scikit-learn keeps the set's file (located without importing scikit-learn)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - a dependency
        raise DataError(f"dataset '{name}' needs scikit-learn, which is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / _FILES[name]


def _digits_file() -> np.ndarray[Any, Any] | None:
    """scikit-learn's ``digits.csv.gz`` read straight from its installed package data, or
    ``None`` if it is not where scikit-learn keeps it.

    ``load_digits`` reads the same file (1,797 rows: 64 pixels, then the label) but importing
    scikit-learn takes over a second, most of a small run's start-up; locating the package
    does not import it.
    """
    path = _data_file("digits")
    try:
        data = np.loadtxt(path, delimiter=",", dtype=np.float64)
    except (OSError, ValueError):
        return None
    return data if data.shape == (1797, 65) else None


def factory(name: str) -> Callable[[SklearnParams], SklearnDataset]:
    """A record factory building :class:`SklearnDataset` ``name``."""

    def build(params: SklearnParams) -> SklearnDataset:
        return SklearnDataset(name)

    return build
