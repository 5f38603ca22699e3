"""Bundled datasets: registration, params models, scikit-learn copies and synthetic data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
import pytest

import optlab
from optlab._contract.registry import Registry
from optlab._spec.experiment import ComponentSpec, DataOptions
from optlab._training.data import PreparedData, load_data

ALL = [
    "blobs",
    "breast_cancer",
    "cifar10",
    "csv",
    "digits",
    "fashion_mnist",
    "iris",
    "mnist",
    "npz",
    "spiral",
    "wine",
]
DATA_OPTION_KEYS = set(DataOptions.model_fields)


pytestmark = pytest.mark.usefixtures("fresh_data_cache")


def _load(
    registry: Registry, name: str, seed: int = 0, options: DataOptions | None = None, **params: Any
) -> PreparedData:
    record = registry.get("dataset", name)
    spec = ComponentSpec("dataset", name, record.params(**params), record)
    return load_data(spec, options or DataOptions(), np.random.default_rng(seed))


def test_every_bundled_dataset_is_registered_by_the_datasets_plugin(registry: Registry) -> None:
    assert registry.names("dataset") == ALL
    for name in ALL:
        record = registry.get("dataset", name)
        assert record.provider == "datasets" and record.summary
        assert issubclass(record.params, optlab.Params)
        fields = record.params.model_fields
        assert not set(fields) & DATA_OPTION_KEYS, f"{name} params shadow data options"
        assert all(f.description for f in fields.values()), f"{name}: undocumented params"


def test_params_are_validated_with_bounds(registry: Registry) -> None:
    blobs = registry.get("dataset", "blobs").params
    with pytest.raises(pydantic.ValidationError):
        blobs(n_classes=1)
    with pytest.raises(pydantic.ValidationError):
        blobs(spread=0)
    with pytest.raises(pydantic.ValidationError):
        registry.get("dataset", "spiral").params(noise=-1)
    with pytest.raises(pydantic.ValidationError):
        registry.get("dataset", "digits").params(path="x")  # extra keys are errors
    with pytest.raises(pydantic.ValidationError):
        registry.get("dataset", "cifar10").params()  # path is required


@pytest.mark.parametrize(
    ("name", "n", "features", "classes", "image_shape"),
    [
        ("digits", 1797, 64, 10, (8, 8)),
        ("iris", 150, 4, 3, None),
        ("wine", 178, 13, 3, None),
        ("breast_cancer", 569, 30, 2, None),
    ],
)
def test_sklearn_bundled_datasets(
    registry: Registry,
    name: str,
    n: int,
    features: int,
    classes: int,
    image_shape: tuple[int, ...] | None,
) -> None:
    d = _load(registry, name, options=DataOptions(dtype="float32"))
    s = d.summary
    assert s.n_train + s.n_val + s.n_test == n
    assert (s.n_features, s.n_classes, s.image_shape) == (features + 1, classes, image_shape)
    assert d.X_train.dtype == np.float32 and set(np.unique(d.y_train)) == set(range(classes))


def test_digits_class_names_and_values(registry: Registry) -> None:
    d = _load(registry, "digits", options=DataOptions(center=False, bias=False))
    assert d.summary.classes == tuple(str(i) for i in range(10))
    assert d.X_train.min() == 0 and d.X_train.max() == 16


def test_digits_are_read_without_importing_sklearn_and_equal_load_digits() -> None:
    """The digits file is read directly (importing scikit-learn takes over a second); the
    arrays must be exactly what ``load_digits`` gives."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from optlab_plugins.datasets._sklearn import SklearnDataset

    raw = SklearnDataset("digits").load(np.random.default_rng(0))
    bunch = load_digits()
    assert np.array_equal(raw.X, bunch.data) and raw.X.dtype == bunch.data.dtype
    assert np.array_equal(raw.y, bunch.target)
    assert raw.classes == [str(n) for n in bunch.target_names]
    code = (
        "import sys, numpy as np; from optlab_plugins.datasets._sklearn import SklearnDataset; "
        "SklearnDataset('digits').load(np.random.default_rng(0)); "
        "assert 'sklearn' not in sys.modules, 'sklearn imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_blobs_follow_params_and_seed(registry: Registry) -> None:
    opts = DataOptions(center=False, bias=False, val=0.0, test=0.0)
    a = _load(registry, "blobs", 0, opts, n_samples=90, n_features=3, n_classes=3, spread=0.1)
    b = _load(registry, "blobs", 0, opts, n_samples=90, n_features=3, n_classes=3, spread=0.1)
    c = _load(registry, "blobs", 1, opts, n_samples=90, n_features=3, n_classes=3, spread=0.1)
    assert a.X_train.shape == (90, 3) and np.array_equal(np.bincount(a.y_train), [30] * 3)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert a.summary.sha256 != c.summary.sha256
    # tight clusters: each class's spread around its mean is about `spread`
    for k in range(3):
        assert a.X_train[a.y_train == k].std(axis=0).max() < 0.2


def test_spiral_is_the_cs231n_spiral(registry: Registry) -> None:
    opts = DataOptions(center=False, bias=False, val=0.0, test=0.0)
    d = _load(registry, "spiral", 0, opts, n_classes=3, n_points=50, noise=0.0)
    X, y = d.X_train, d.y_train
    assert X.shape == (150, 2) and np.array_equal(np.bincount(y), [50, 50, 50])
    radius = np.hypot(X[:, 0], X[:, 1])
    assert radius.min() == pytest.approx(0) and radius.max() == pytest.approx(1)
    # without noise, point i of arm j is at angle 4j + 4r: check it from the coordinates
    r = np.tile(np.linspace(0, 1, 50), 3)
    t = 4.0 * np.repeat(np.arange(3), 50) + 4.0 * r
    order = np.lexsort((np.hypot(*X.T), y))
    np.testing.assert_allclose(
        X[order], np.column_stack([r * np.sin(t), r * np.cos(t)]), atol=1e-12
    )


def test_spiral_is_not_linearly_separable(registry: Registry) -> None:
    from sklearn.linear_model import LogisticRegression

    opts = DataOptions(bias=False, val=0.0, test=0.0)
    d = _load(registry, "spiral", 0, opts, n_classes=3, n_points=100)
    accuracy = (
        LogisticRegression(max_iter=500).fit(d.X_train, d.y_train).score(d.X_train, d.y_train)
    )
    assert accuracy < 0.7
