"""optlab._training.data: validation, stratified splits, limits, preprocessing, memory, caching."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

import optlab
from optlab._contract.plugin_manager import build_registry
from optlab._errors import DataError
from optlab._spec.experiment import ComponentSpec, DataOptions, SplitLimit
from optlab._training.data import PreparedData, load_data
from optlab._training.prepare import dataset_hash, prepare

pytestmark = pytest.mark.usefixtures("fresh_data_cache")


def _raw(n: int = 200, f: int = 5, c: int = 4, seed: int = 0, **kw: Any) -> optlab.RawDataset:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    X = rng.normal(3.0, 2.0, size=(n, f)) + y[:, None]
    return optlab.RawDataset(X=X, y=y.astype(np.int64), classes=[f"c{i}" for i in range(c)], **kw)


def _prep(raw: optlab.RawDataset, seed: int = 0, **options: Any) -> PreparedData:
    return prepare(raw, DataOptions(**options), np.random.default_rng(seed), "toy")


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


def test_split_sizes_and_partition() -> None:
    raw = _raw(n=200)
    d = _prep(raw, center=False, bias=False, val=0.25, test=0.2)
    assert (d.summary.n_train, d.summary.n_val, d.summary.n_test) == (120, 40, 40)
    # every example lands in exactly one split: compare rows by their exact values
    rows = np.concatenate([d.X_train, d.X_val, d.X_test])
    assert rows.shape == raw.X.shape
    assert np.array_equal(np.unique(rows, axis=0), np.unique(raw.X, axis=0))


def test_split_is_stratified_on_imbalanced_classes() -> None:
    y = np.r_[np.zeros(900), np.ones(100)].astype(np.int64)
    X = np.arange(1000, dtype=np.float64)[:, None]
    raw = optlab.RawDataset(X=X, y=y, classes=["a", "b"])
    d = _prep(raw, val=0.2, test=0.2)
    for labels, n in ((d.y_train, 640), (d.y_val, 160), (d.y_test, 200)):
        assert labels.shape[0] == n
        assert abs(np.mean(labels == 1) - 0.1) <= 1 / n


def test_own_test_split_is_kept_and_val_comes_from_train() -> None:
    base = _raw(n=100)
    test = _raw(n=30, seed=1)
    raw = optlab.RawDataset(X=base.X, y=base.y, classes=base.classes, X_test=test.X, y_test=test.y)
    d = _prep(raw, center=False, bias=False, val=0.2, test=0.5)
    assert (d.summary.n_train, d.summary.n_val, d.summary.n_test) == (80, 20, 30)
    np.testing.assert_array_equal(d.X_test, test.X)
    np.testing.assert_array_equal(d.y_test, test.y)


def test_limit_int_caps_every_split_stratified() -> None:
    d = _prep(_raw(n=400, c=4), limit=20, val=0.2, test=0.2)
    assert (d.summary.n_train, d.summary.n_val, d.summary.n_test) == (20, 20, 20)
    for labels in (d.y_train, d.y_val, d.y_test):
        assert np.array_equal(np.bincount(labels, minlength=4), [5, 5, 5, 5])


def test_limit_per_split_and_own_test() -> None:
    base, test = _raw(n=100), _raw(n=40, seed=1)
    raw = optlab.RawDataset(X=base.X, y=base.y, classes=base.classes, X_test=test.X, y_test=test.y)
    d = _prep(raw, limit=SplitLimit(train=12, test=8))
    assert (d.summary.n_train, d.summary.n_val, d.summary.n_test) == (12, 20, 8)
    assert np.array_equal(np.bincount(d.y_test, minlength=4), [2, 2, 2, 2])


def test_val_and_test_may_be_empty() -> None:
    d = _prep(_raw(n=50), val=0.0, test=0.0)
    assert d.summary.n_train == 50
    assert d.X_val.shape == (0, 6) and d.X_test.shape == (0, 6)
    assert d.y_val.dtype == np.int64


def test_determinism_for_a_seed() -> None:
    raw = _raw()
    a, b, c = _prep(raw, seed=3), _prep(raw, seed=3), _prep(raw, seed=4)
    for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.y_train, c.y_train) or not np.array_equal(a.X_train, c.X_train)


# --------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_bias_and_summary(dtype: str) -> None:
    raw = _raw(n=100, f=5, image_shape=(5, 1), source="memory")
    d = _prep(raw, dtype=dtype)
    for X in (d.X_train, d.X_val, d.X_test):
        assert X.dtype == np.dtype(dtype) and X.shape[1] == 6 and X.flags.c_contiguous
        assert np.all(X[:, -1] == 1)
    for y in (d.y_train, d.y_val, d.y_test):
        assert y.dtype == np.int64
    s = d.summary
    assert (s.n_features, s.n_classes, s.dtype, s.has_bias) == (6, 4, dtype, True)
    assert s.classes == ("c0", "c1", "c2", "c3") and s.image_shape == (5, 1)
    assert s.sha256 == dataset_hash(raw) and len(s.sha256) == 64
    assert _prep(raw, bias=False).X_train.shape[1] == 5


def test_center_uses_train_statistics_only() -> None:
    raw = _raw(n=300, f=4)
    plain = _prep(raw, seed=1, center=False, bias=False)
    d = _prep(raw, seed=1, center=True, bias=False)
    mean = plain.X_train.mean(axis=0)
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(d.X_val, plain.X_val - mean, atol=1e-12)
    np.testing.assert_allclose(d.X_test, plain.X_test - mean, atol=1e-12)
    assert np.all(np.abs(d.X_val.mean(axis=0)) > 1e-6)  # val's own mean was not used


def test_standardize_guards_constant_columns() -> None:
    raw = _raw(n=200, f=3)
    X = np.column_stack([raw.X, np.full(200, 7.0)])
    raw = optlab.RawDataset(X=X, y=raw.y, classes=raw.classes)
    d = _prep(raw, standardize=True, bias=False)
    np.testing.assert_allclose(d.X_train[:, :3].std(axis=0), 1, rtol=1e-10)
    np.testing.assert_allclose(d.X_train[:, 3], 0)
    assert np.isfinite(d.X_val).all()
    plain = _prep(raw, center=False, bias=False)
    only = _prep(raw, center=False, standardize=True, bias=False)
    np.testing.assert_allclose(only.X_val[:, :3], plain.X_val[:, :3] / plain.X_train[:, :3].std(0))


def test_uint8_images_convert_to_float32_without_upcast() -> None:
    X = np.random.default_rng(0).integers(0, 256, (60, 12), dtype=np.uint8)
    raw = optlab.RawDataset(X=X, y=np.arange(60) % 3, classes=["a", "b", "c"])
    d = _prep(raw, dtype="float32", center=False, bias=False, val=0.0, test=0.0)
    assert d.X_train.dtype == np.float32
    np.testing.assert_array_equal(d.X_train, X.astype(np.float32))


@pytest.mark.parametrize(
    ("raw_dtype", "dtype"),
    [("uint8", "float32"), ("int16", "float32"), ("bool", "float32"), ("int32", "float64")],
)
def test_integer_data_is_centered_with_the_exact_training_mean(raw_dtype: str, dtype: str) -> None:
    # integer columns are summed with BLAS in blocks small enough to add without rounding:
    # the mean is the float64 reduction's, to the bit; subtracted in the data's dtype in two
    # parts (the mean rounded, then what the rounding left out), as exactly as in float64
    rng = np.random.default_rng(0)
    info = np.iinfo(np.int16 if raw_dtype == "bool" else raw_dtype)
    lo, hi = (0, 1) if raw_dtype == "bool" else (int(info.min), int(info.max))
    X = rng.integers(lo, hi, size=(3_000, 7), endpoint=True).astype(raw_dtype)
    X[:, 0] = hi  # the worst case for the partial sums (odd, so they would round)
    raw = optlab.RawDataset(X=X, y=np.arange(3_000) % 3, classes=["a", "b", "c"])
    plain = _prep(raw, dtype=dtype, center=False, val=0.1)
    d = _prep(raw, dtype=dtype, center=True, val=0.1)
    mean = plain.X_train[:, :-1].sum(axis=0, dtype=np.float64) / plain.X_train.shape[0]
    assert d.mean is not None
    np.testing.assert_array_equal(d.mean, mean)
    for part, centered in ((plain.X_train, d.X_train), (plain.X_test, d.X_test)):
        expected = part[:, :-1].astype(np.float64) - mean
        ulp = np.finfo(dtype).eps * np.abs(expected).max()
        np.testing.assert_allclose(centered[:, :-1], expected, rtol=0, atol=2 * ulp)


@pytest.mark.parametrize("raw_dtype", ["float32", "float64", "uint16"])
@pytest.mark.parametrize("standardize", [False, True], ids=["center", "standardize"])
def test_large_offsets_are_centered_in_float64_before_rounding_to_float32(
    raw_dtype: str, standardize: bool
) -> None:
    # 1e6 plus variations of 0.1: centred in float32 the offset kept float32's digits of the
    # mean (the result's mean was 0.01, a tenth of a std), and float64 data were rounded to
    # float32 before the mean was subtracted (errors of 0.4 std); integers near 65000 were
    # off by 1e-3 (the float32 mean's last digit)
    rng = np.random.default_rng(0)
    if raw_dtype == "uint16":
        X = (65_000 + rng.integers(-3, 4, size=(1_000, 3))).astype(raw_dtype)
    else:
        X = (1e6 + rng.normal(0.0, 0.1, size=(1_000, 3))).astype(raw_dtype)
    raw = optlab.RawDataset(X=X, y=np.arange(1_000) % 2, classes=["a", "b"])
    d = _prep(raw, dtype="float32", standardize=standardize, bias=False, val=0.0, test=0.0)
    assert d.X_train.dtype == np.float32
    X64 = X.astype(np.float64)  # every example is a training one, in order
    expected = (X64 - X64.mean(axis=0)) / (X64.std(axis=0) if standardize else 1.0)
    np.testing.assert_allclose(d.X_train, expected.astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d.X_train.mean(axis=0, dtype=np.float64), 0, atol=1e-6)
    assert d.mean is not None and d.mean.dtype == np.float64


def test_extreme_values_are_standardized_to_finite_numbers() -> None:
    # squares of 1e200 overflowed float64: the std was inf and the data came out all zeros
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)) * np.array([1e200, 1.0])
    raw = optlab.RawDataset(X=X, y=np.arange(200) % 2, classes=["a", "b"])
    d = _prep(raw, standardize=True, bias=False, val=0.0, test=0.0)
    assert d.std is not None and np.isfinite(d.std).all()
    np.testing.assert_allclose(d.std[0], 1e200 * (X[:, 0] / 1e200).std(), rtol=1e-12)
    np.testing.assert_allclose(d.X_train.std(axis=0), 1.0, rtol=1e-12)
    # float32 features near its largest: standardized they fit, centred they are refused
    X32 = np.tile(
        np.array([[3e38, 1.0], [3e38, 2.0], [3e38, 3.0], [-3e38, 4.0]], np.float32), (10, 1)
    )
    raw32 = optlab.RawDataset(X=X32, y=np.arange(40) % 2, classes=["a", "b"])
    d = _prep(raw32, dtype="float32", standardize=True, bias=False, val=0.0, test=0.0)
    assert np.isfinite(d.X_train).all()
    np.testing.assert_allclose(
        np.sort(d.X_train[:, 0])[[0, -1]], [-np.sqrt(3), 1 / np.sqrt(3)], rtol=1e-6
    )
    with pytest.raises(DataError, match="centred on the training mean, do not fit") as info:
        _prep(raw32, dtype="float32", bias=False, val=0.0, test=0.0)
    assert info.value.key == "dtype"


def test_exact_column_sums_match_the_float64_reduction() -> None:
    from optlab._training.prepare import _column_stats, _exact_rows

    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    assert _exact_rows(f32, np.dtype(np.uint8)) == 2**24 // 255
    assert _exact_rows(f32, np.dtype(np.int16)) == 512  # 512 * 32768 = 2**24
    assert _exact_rows(f32, np.dtype(np.int32)) == 0  # too large: the float64 reduction
    assert _exact_rows(f32, f64) == _exact_rows(f64, f32) == 0  # floats: the float64 reduction
    rng = np.random.default_rng(1)
    X = rng.integers(-(2**15), 2**15, size=(2_500, 9)).astype(np.float32)  # int16 values
    X[:, 1] = 2**15 - 1  # odd: past 2**24 its partial sums would round (blocks of 4096 do)
    exact, _ = _column_stats(X, 8, False, exact_rows=512)  # several blocks
    reduced, _ = _column_stats(X, 8, False)
    np.testing.assert_array_equal(exact, reduced)
    exact_std = _column_stats(X, 8, True, exact_rows=512)[1]
    np.testing.assert_array_equal(exact_std, _column_stats(X, 8, True)[1])


def test_prepare_leaves_raw_untouched_and_flattens_images() -> None:
    X = np.random.default_rng(0).normal(size=(40, 2, 3))
    raw = optlab.RawDataset(X=X, y=np.arange(40) % 2, classes=["a", "b"])
    before = X.copy()
    d = _prep(raw, standardize=True)
    np.testing.assert_array_equal(X, before)
    assert d.X_train.shape[1] == 7


def test_prepare_memory_peak_is_about_the_final_arrays() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(5_000, 3_072), dtype=np.uint8)
    raw = optlab.RawDataset(X=X, y=np.arange(5_000) % 10, classes=[str(i) for i in range(10)])
    options = DataOptions(dtype="float32", standardize=True, val=0.2, test=0.2)
    tracemalloc.start()
    try:
        d = prepare(raw, options, np.random.default_rng(0), "big", sha256="x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    final = d.X_train.nbytes + d.X_val.nbytes + d.X_test.nbytes
    assert final == 5_000 * 3_073 * 4
    assert peak <= 2.2 * final, f"peak {peak / 2**20:.0f} MiB for {final / 2**20:.0f} MiB"
    np.testing.assert_allclose(d.X_train[:, :-1].mean(axis=0), 0, atol=1e-3)


# --------------------------------------------------------------------------------------------
# bad input: one-line DataError before training
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda X, y: (X[:-1], y), "examples but"),
        (lambda X, y: (X, np.where(y == 3, 4, y)), "label 4 out of range 0..3"),
        (lambda X, y: (X, np.where(y == 3, -1, y)), "label -1 out of range"),
        (lambda X, y: (X, y.astype(np.float64)), "labels must be integers"),
        (lambda X, y: (np.where(np.arange(X.shape[0])[:, None] == 7, np.nan, X), y), "NaN"),
        (lambda X, y: (np.where(X > 5, np.inf, X), y), "NaN or inf"),
        (lambda X, y: (X[:, 0], y), "must be (N, F)"),
        (lambda X, y: (X, y[:, None]), "labels must be 1-d"),
        (lambda X, y: (X.astype(str), y), "must be numbers"),
    ],
)
def test_bad_raw_data_raises_one_line_data_error(mutate: Any, message: str) -> None:
    raw = _raw(n=20, source="/data/toy.npz")
    X, y = mutate(raw.X, raw.y)
    with pytest.raises(DataError) as info:
        _prep(optlab.RawDataset(X=X, y=y, classes=raw.classes, source=raw.source))
    text = str(info.value)
    assert message in text and "/data/toy.npz" in text and "\n" not in text


def test_data_without_examples_say_so_not_that_they_have_no_class_names() -> None:
    # a file of no examples has no labels, so its dataset finds no classes either
    empty = optlab.RawDataset(X=np.zeros((0, 5)), y=np.zeros(0, np.int64), classes=[])
    with pytest.raises(DataError, match=r"no data \(features of shape \(0, 5\)\)"):
        _prep(empty)


def test_nan_message_names_the_first_bad_row() -> None:
    raw = _raw(n=20)
    raw.X[13, 2] = np.nan
    with pytest.raises(DataError, match="row 13"):
        _prep(raw)


@pytest.mark.parametrize("own_test", [False, True])
def test_features_beyond_float32_range_are_a_data_error_at_dtype(own_test: bool) -> None:
    # float64 values above ~3.4e38 became inf in float32, and the run failed later as a
    # "wrong gradient: analytic nan, numeric nan"
    raw = _raw(n=40)
    X_test = raw.X[:10].copy() if own_test else None
    (X_test if X_test is not None else raw.X)[3, 1] = -4e39
    bad = optlab.RawDataset(
        X=raw.X,
        y=raw.y,
        classes=raw.classes,
        X_test=X_test,
        y_test=None if X_test is None else raw.y[:10],
        source="/data/big.csv",
    )
    with pytest.raises(DataError) as info:
        _prep(bad, dtype="float32")
    text = str(info.value)
    assert info.value.key == "dtype" and "\n" not in text
    assert "/data/big.csv" in text and "4e+39" in text and "data.dtype: float64" in text
    assert np.isfinite(_prep(bad, dtype="float64").X_train).all()


def test_bad_test_split_is_reported() -> None:
    raw = _raw(n=20)
    bad = optlab.RawDataset(
        X=raw.X, y=raw.y, classes=raw.classes, X_test=raw.X[:, :3], y_test=raw.y
    )
    with pytest.raises(DataError, match="test split has 3 features"):
        _prep(bad)
    with pytest.raises(DataError, match="both X_test and y_test"):
        _prep(optlab.RawDataset(X=raw.X, y=raw.y, classes=raw.classes, X_test=raw.X))


# --------------------------------------------------------------------------------------------
# load_data: plugin errors, caching, seeds
# --------------------------------------------------------------------------------------------


class _Counting(optlab.DatasetSource):
    loads = 0

    def __init__(self, params: _CountingParams) -> None:
        self.params = params

    def load(self, rng: np.random.Generator) -> optlab.RawDataset:
        type(self).loads += 1
        p = self.params
        if p.mode == "explode":
            raise ZeroDivisionError("division by zero in the loader")
        noise = rng.normal(size=(40, 3)) if p.mode == "random" else np.ones((40, 3))
        return optlab.RawDataset(X=noise, y=np.arange(40) % 2, classes=["a", "b"])


class _CountingParams(optlab.Params):
    mode: str = "fixed"


class _Plugin:
    @optlab.hookimpl
    def optlab_register_datasets(self) -> list[optlab.DatasetRecord]:
        return [optlab.DatasetRecord("counting", _Counting, _CountingParams, "test")]


def _spec(mode: str) -> ComponentSpec:
    _, registry = build_registry(extra=[("counting_plugin", _Plugin())])
    record = registry.get("dataset", "counting")
    return ComponentSpec("dataset", "counting", record.params(mode=mode), record)


def test_plugin_exception_becomes_data_error_naming_dataset_and_provider() -> None:
    with pytest.raises(DataError) as info:
        load_data(_spec("explode"), DataOptions(), np.random.default_rng(0))
    text = str(info.value)
    assert "dataset 'counting'" in text and "counting_plugin" in text
    assert "ZeroDivisionError" in text


def test_real_data_is_loaded_once_per_process_whatever_the_seed() -> None:
    _Counting.loads = 0
    spec = _spec("fixed")
    a = load_data(spec, DataOptions(), np.random.default_rng(0))
    b = load_data(spec, DataOptions(val=0.5), np.random.default_rng(1))
    assert _Counting.loads == 1
    assert a.summary.sha256 == b.summary.sha256


def test_hash_computed_beside_the_preparation_is_the_data_hash_and_cached_on_failure() -> None:
    _Counting.loads = 0
    spec = _spec("fixed")
    with pytest.raises(DataError, match="no training examples left"):
        load_data(spec, DataOptions(test=0.99), np.random.default_rng(0))
    d = load_data(spec, DataOptions(), np.random.default_rng(0))
    assert _Counting.loads == 1  # the failed preparation kept the loaded data
    assert d.summary.sha256 == dataset_hash(spec.build().load(np.random.default_rng(0)))


def test_synthetic_data_depends_on_the_seed_and_is_cached_per_seed() -> None:
    _Counting.loads = 0
    spec = _spec("random")
    a = load_data(spec, DataOptions(), np.random.default_rng(0))
    b = load_data(spec, DataOptions(), np.random.default_rng(0))
    c = load_data(spec, DataOptions(), np.random.default_rng(1))
    assert _Counting.loads == 2
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert a.summary.sha256 == b.summary.sha256 != c.summary.sha256


def test_a_data_file_changed_on_disk_is_read_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In one process (a notebook), a CSV rewritten between two runs trained the second on
    the first's rows; so did the same relative path from another working folder."""
    _, registry = build_registry()
    record = registry.get("dataset", "csv")

    def spec(path: str) -> ComponentSpec:
        return ComponentSpec("dataset", "csv", record.params(path=path), record)

    whole = DataOptions(val=0.0, test=0.0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    first = load_data(spec("d.csv"), whole, np.random.default_rng(0))
    assert first.summary.n_train == 4
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,9,2\n8,8,2\n")
    again = load_data(spec("d.csv"), whole, np.random.default_rng(0))
    assert (again.summary.n_train, len(again.summary.classes)) == (6, 3)
    assert again.summary.sha256 != first.summary.sha256
    other = tmp_path / "other"
    other.mkdir()
    (other / "d.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    monkeypatch.chdir(other)
    assert load_data(spec("d.csv"), whole, np.random.default_rng(0)).summary.n_train == 2


def test_cached_arrays_are_read_only() -> None:
    spec = _spec("fixed")
    load_data(spec, DataOptions(), np.random.default_rng(0))
    raw = spec.build().load(np.random.default_rng(0))
    assert raw.X.flags.writeable  # a fresh load is writable; the cached copy is frozen
    from optlab._training import data as data_module

    (cached, _), *_ = data_module._cache.values()
    assert not cached.X.flags.writeable
