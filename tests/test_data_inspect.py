"""inspect_data: the summary load_data would give and the errors it would raise, found by
measuring the data (headers, file sizes, labels) rather than loading them; split_sizes; the
bundled sources' shape methods."""

from __future__ import annotations

import gzip
import itertools
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dataset_files import PER_CLASS, idx, tar_gz, write_cifar_bin, write_cifar_py, write_mnist

import optlab
from optlab._contract.plugin_manager import build_registry
from optlab._contract.records import DataSummary
from optlab._contract.registry import Registry
from optlab._errors import DataError
from optlab._spec.experiment import ComponentSpec, DataOptions, SplitLimit
from optlab._training.data import SupportsShape, clear_cache, inspect_data, load_data
from optlab._training.prepare import dataset_hash, prepare
from optlab._training.splits import split_sizes

RAW = DataOptions(center=False, bias=False, val=0.0, test=0.0)
OPTIONS = [
    RAW,
    DataOptions(),
    DataOptions(val=0.5, limit=3, dtype="float32", bias=False),
    DataOptions(test=0.5, val=0.1, limit=SplitLimit(train=7, test=2)),
]
SIZES = ("n_train", "n_val", "n_test", "n_features", "n_classes", "dtype", "has_bias")

pytestmark = pytest.mark.usefixtures("fresh_data_cache")


def _spec(registry: Registry, name: str, **params: Any) -> ComponentSpec:
    record = registry.get("dataset", name)
    return ComponentSpec("dataset", name, record.params(**params), record)


def _sizes(summary: DataSummary) -> tuple[Any, ...]:
    return tuple(getattr(summary, field) for field in SIZES)


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


# --------------------------------------------------------------------------------------------
# split_sizes: the sizes prepare makes, from the totals alone
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("own", [None, 0, 1, 7, 40])
def test_split_sizes_are_the_sizes_prepare_makes(own: int | None) -> None:
    rng = np.random.default_rng(own or 0)
    grid = itertools.product(
        (1, 2, 3, 10, 33, 101),
        (0.0, 0.1, 0.25, 0.5, 0.9, 0.99),
        (0.0, 0.2, 0.5, 0.99),
        (None, 1, 4, SplitLimit(train=3), SplitLimit(val=1, test=2), SplitLimit(train=50)),
    )
    for n, val, test, limit in grid:
        options = DataOptions(val=val, test=test, limit=limit, center=False, bias=False)
        counts = rng.integers(1, 6)  # imbalanced classes, some of them absent
        y = rng.choice(counts, size=n, p=rng.dirichlet(np.ones(counts)))
        raw = optlab.RawDataset(
            X=rng.normal(size=(n, 2)), y=y, classes=[str(c) for c in range(counts)]
        )
        if own is not None:
            raw.X_test, raw.y_test = rng.normal(size=(own, 2)), rng.integers(0, counts, own)
        sizes = split_sizes(n, own, options)
        try:
            d = prepare(raw, options, np.random.default_rng(n), "t")
        except DataError as exc:
            assert "no training examples left" in str(exc), (n, val, test, limit)
            assert sizes.n_train == 0, (n, val, test, limit)
            continue
        made = (len(d.y_train), len(d.y_val), len(d.y_test))
        assert made == (sizes.n_train, sizes.n_val, sizes.n_test), (n, val, test, limit)


# --------------------------------------------------------------------------------------------
# every bundled file dataset, written small
# --------------------------------------------------------------------------------------------


def _npz(tmp: Path) -> tuple[str, dict[str, Any]]:
    X = np.arange(120, dtype=np.float32).reshape(30, 4)
    y = np.arange(30) % 3
    np.savez_compressed(tmp / "d.npz", X=X, y=y, X_test=X[:6] + 1, y_test=y[:6])
    return "npz", {"path": tmp / "d.npz"}


def _npz_images_string_labels(tmp: Path) -> tuple[str, dict[str, Any]]:
    X = np.zeros((25, 2, 3), np.uint8)  # features of more than 2 dimensions are flattened
    np.savez(tmp / "s.npz", images=X, names=np.array(["cat", "dog", "emu", "dog", "cat"] * 5))
    return "npz", {"path": tmp / "s.npz", "x_key": "images", "y_key": "names"}


def _npy_folder(tmp: Path) -> tuple[str, dict[str, Any]]:
    (tmp / "f").mkdir()
    np.save(tmp / "f" / "X.npy", np.ones((40, 5)))
    np.save(tmp / "f" / "y.npy", np.arange(40) % 4)
    np.save(tmp / "f" / "X_test.npy", np.ones((8, 5)))
    np.save(tmp / "f" / "y_test.npy", np.arange(8) % 4)
    return "npz", {"path": tmp / "f"}


def _csv(tmp: Path) -> tuple[str, dict[str, Any]]:
    rows = "\n".join(f"{i},{i * 2},{'ab'[i % 2]}" for i in range(21))
    (tmp / "t.csv").write_text("u,v,kind\n" + rows + "\n")
    (tmp / "test.csv").write_text("u,v,kind\n1,2,a\n3,4,c\n")
    return "csv", {"path": tmp / "t.csv", "label": "kind", "test_path": tmp / "test.csv"}


def _cifar(
    protocol: int, python2: bool = False, per_class: int = PER_CLASS
) -> Callable[[Path], tuple[str, dict[str, Any]]]:
    def write(tmp: Path) -> tuple[str, dict[str, Any]]:
        folder = write_cifar_py(tmp, protocol, per_class=per_class, python2=python2)
        return "cifar10", {"path": folder}

    return write


def _cifar_bin(tmp: Path) -> tuple[str, dict[str, Any]]:
    return "cifar10", {"path": write_cifar_bin(tmp)}


def _cifar_archive(tmp: Path) -> tuple[str, dict[str, Any]]:
    return "cifar10", {"path": tar_gz(write_cifar_py(tmp / "a", 5), tmp / "c.tar.gz")}


def _cifar_bin_archive(tmp: Path) -> tuple[str, dict[str, Any]]:
    return "cifar10", {"path": tar_gz(write_cifar_bin(tmp / "a"), tmp / "c.tar.gz")}


def _mnist(tmp: Path) -> tuple[str, dict[str, Any]]:
    return "mnist", {"path": write_mnist(tmp / "m", gz=False)}


def _fashion_gz(tmp: Path) -> tuple[str, dict[str, Any]]:
    return "fashion_mnist", {"path": write_mnist(tmp / "m", gz=True, n_train=25, n_test=7)}


FILES: dict[str, Callable[[Path], tuple[str, dict[str, Any]]]] = {
    "npz": _npz,
    "npz-images-strings": _npz_images_string_labels,
    "npy-folder": _npy_folder,
    "csv": _csv,
    "cifar-py2": _cifar(2, python2=True),
    "cifar-protocol2": _cifar(2),
    "cifar-protocol5": _cifar(pickle.HIGHEST_PROTOCOL),
    "cifar-bin": _cifar_bin,
    "cifar-tar": _cifar_archive,
    "cifar-bin-tar": _cifar_bin_archive,
    "mnist": _mnist,
    "fashion-gz": _fashion_gz,
}


def _without_load(monkeypatch: pytest.MonkeyPatch, spec: ComponentSpec) -> None:
    """Make the source's load (and load_mmap) fail: what follows must measure."""

    def refuse(self: Any, rng: np.random.Generator) -> Any:
        raise AssertionError("the data were loaded")

    for method in ("load", "load_mmap"):
        if hasattr(type(spec.build()), method):
            monkeypatch.setattr(type(spec.build()), method, refuse)


@pytest.mark.parametrize("files", FILES)
def test_every_bundled_file_dataset_measures_what_it_loads(
    registry: Registry, tmp_path: Path, files: str
) -> None:
    name, params = FILES[files](tmp_path)
    spec = _spec(registry, name, **params)
    source = spec.build()
    assert isinstance(source, SupportsShape)
    raw = source.load(_rng())
    X_test = raw.X_test
    loaded = optlab.DataShape(
        n_examples=raw.X.shape[0],
        n_features=int(np.prod(raw.X.shape[1:])),
        n_classes=len(raw.classes),
        n_test=None if X_test is None else X_test.shape[0],
        source=raw.source,
    )
    assert source.shape(_rng()) == loaded


@pytest.mark.parametrize("files", FILES)
def test_inspect_data_gives_the_sizes_load_data_gives_without_loading(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: str
) -> None:
    name, params = FILES[files](tmp_path)
    spec = _spec(registry, name, **params)
    for options in OPTIONS:
        with monkeypatch.context() as patch:
            _without_load(patch, spec)
            inspected = inspect_data(spec, options, _rng())
        loaded = load_data(spec, options, _rng()).summary
        clear_cache()
        assert _sizes(inspected) == _sizes(loaded), options
        assert inspected.name == name and inspected.sha256 == "" and inspected.classes == ()


@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer"])
def test_scikit_learn_sets_are_measured_from_their_files(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    spec = _spec(registry, name)
    loaded = load_data(spec, DataOptions(), _rng()).summary
    clear_cache()
    with monkeypatch.context() as patch:
        _without_load(patch, spec)
        inspected = inspect_data(spec, DataOptions(), _rng())
    assert _sizes(inspected) == _sizes(loaded)


@pytest.mark.parametrize("name", ["blobs", "spiral"])
def test_a_source_without_shape_is_loaded_once_for_inspect_and_run(
    registry: Registry, name: str
) -> None:
    spec = _spec(registry, name)
    assert not isinstance(spec.build(), SupportsShape)
    inspected = inspect_data(spec, DataOptions(), _rng())
    with pytest.MonkeyPatch.context() as patch:
        _without_load(patch, spec)  # the cache holds what inspect_data loaded
        loaded = load_data(spec, DataOptions(), _rng()).summary
    assert _sizes(inspected) == _sizes(loaded)
    assert inspected.classes == loaded.classes and inspected.image_shape == loaded.image_shape
    assert inspected.sha256 == ""  # not hashed by inspect_data; load_data hashed it


def test_data_in_the_cache_are_not_measured_again(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, params = _npz(tmp_path)
    spec = _spec(registry, name, **params)
    loaded = load_data(spec, DataOptions(), _rng()).summary

    def refuse(self: Any, rng: np.random.Generator) -> Any:
        raise AssertionError("measured again")

    monkeypatch.setattr(type(spec.build()), "shape", refuse)
    assert inspect_data(spec, DataOptions(), _rng()) == loaded  # hash, classes and all


def test_inspect_data_draws_one_integer_as_load_data_does_first(registry: Registry) -> None:
    for name in ("iris", "blobs"):
        rng, twin = np.random.default_rng(5), np.random.default_rng(5)
        inspect_data(_spec(registry, name), DataOptions(), rng)
        twin.integers(2**63)
        assert rng.bit_generator.state == twin.bit_generator.state


# --------------------------------------------------------------------------------------------
# the same errors, with the key at fault
# --------------------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


Damage = Callable[[Path, dict[str, Any]], None]

ERRORS: dict[str, tuple[Callable[[Path], tuple[str, dict[str, Any]]], Damage, str]] = {
    "npz missing": (_npz, lambda t, p: p.update(path=t / "nope.npz"), "path"),
    "npz truncated": (_npz, lambda t, p: _truncate(p["path"], 200), "path"),
    "npz no such key": (_npz, lambda t, p: p.update(y_key="labels"), "y_key"),
    "npz 2-d labels": (
        _npz,
        lambda t, p: np.savez(p["path"], X=np.ones((4, 2)), y=np.zeros((4, 2), int)),
        "path",
    ),
    "npz 1-d features": (
        _npz,
        lambda t, p: np.savez(p["path"], X=np.ones(4), y=np.zeros(4, int)),
        "path",
    ),
    "npz test features": (
        _npz,
        lambda t, p: np.savez(
            p["path"], X=np.ones((4, 2)), y=np.arange(4), X_test=np.ones((2, 3)), y_test=[0, 1]
        ),
        "path",
    ),
    "npz fewer labels": (
        _npz,
        lambda t, p: np.savez(p["path"], X=np.ones((4, 2)), y=np.arange(3)),
        "path",
    ),
    "npz object features": (
        _npz,
        lambda t, p: np.savez(p["path"], X=np.array([[object()]]), y=np.zeros(1, int)),
        "path",
    ),
    "npz class names": (_npz, lambda t, p: p.update(class_names=["a", "b"]), "class_names"),
    "npy folder empty": (_npy_folder, lambda t, p: p.update(path=t), "path"),
    "csv missing": (_csv, lambda t, p: p.update(path=t / "nope.csv"), "path"),
    "csv directory": (_csv, lambda t, p: p.update(path=t), "path"),
    "csv empty": (_csv, lambda t, p: _write(p["path"], b"\n"), "path"),
    "csv ragged": (_csv, lambda t, p: _write(p["path"], b"u,v,kind\n1,2,a\n3,b\n"), "path"),
    "csv label column": (_csv, lambda t, p: p.update(label="species"), "label"),
    "csv test missing": (_csv, lambda t, p: p.update(test_path=t / "nope.csv"), "test_path"),
    "csv test columns": (
        _csv,
        lambda t, p: _write(p["test_path"], b"u,v,w,kind\n1,2,3,a\n"),
        "test_path",
    ),
    "csv one column": (_csv, lambda t, p: _write(p["path"], b"kind\n1\n2\n"), "path"),
    "csv negative labels": (
        _csv,
        lambda t, p: _write(p["path"], b"u,v,kind\n1,2,-1\n3,4,1\n"),
        "path",
    ),
    "cifar missing": (_cifar_bin, lambda t, p: p.update(path=t / "nope"), "path"),
    "cifar no batches": (
        _cifar_bin,
        lambda t, p: (t / "empty").mkdir() or p.update(path=t / "empty"),
        "path",
    ),
    "cifar missing batch": (
        _cifar(5),
        lambda t, p: (p["path"] / "data_batch_2").unlink(),
        "path",
    ),
    "cifar corrupt pickle": (
        _cifar(5),
        lambda t, p: _truncate(p["path"] / "data_batch_3", 5000),
        "path",
    ),
    "cifar truncated py2 pickle": (
        _cifar(2, python2=True),
        lambda t, p: _truncate(p["path"] / "test_batch", 50000),
        "path",
    ),
    "cifar truncated pixels": (  # in the bytes the measure skips
        _cifar(2, python2=True, per_class=40),
        lambda t, p: _truncate(p["path"] / "data_batch_5", 600_000),
        "path",
    ),
    "cifar label": (
        _cifar(5),
        lambda t, p: _write(
            p["path"] / "data_batch_2",
            pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),
        ),
        "path",
    ),
    "cifar pixels": (
        _cifar(5),
        lambda t, p: _write(
            p["path"] / "test_batch",
            pickle.dumps({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}),
        ),
        "path",
    ),
    "cifar refused pickle": (
        _cifar(5),
        lambda t, p: _write(p["path"] / "test_batch", b"cbuiltins\neval\n(Vprint('x')\ntR."),
        "path",
    ),
    "cifar class names": (
        _cifar(5),
        lambda t, p: _write(
            p["path"] / "batches.meta", pickle.dumps({b"label_names": [b"a", b"b"]})
        ),
        "path",
    ),
    "cifar truncated binary": (
        _cifar_bin,
        lambda t, p: _truncate(p["path"] / "data_batch_4.bin", 3000),
        "path",
    ),
    "cifar truncated archive": (
        _cifar_archive,
        lambda t, p: _truncate(p["path"], p["path"].stat().st_size // 2),
        "path",
    ),
    "cifar not an archive": (
        _cifar_archive,
        lambda t, p: _write(p["path"], b"not a tar file at all"),
        "path",
    ),
    "mnist missing": (_mnist, lambda t, p: p.update(path=t / "nope"), "path"),
    "mnist a file": (
        _mnist,
        lambda t, p: p.update(path=p["path"] / "t10k-labels-idx1-ubyte"),
        "path",
    ),
    "mnist missing file": (
        _mnist,
        lambda t, p: (p["path"] / "t10k-images-idx3-ubyte").unlink(),
        "path",
    ),
    "mnist truncated": (
        _mnist,
        lambda t, p: _truncate(p["path"] / "train-images-idx3-ubyte", 1000),
        "path",
    ),
    "mnist magic": (
        _mnist,
        lambda t, p: _write(p["path"] / "t10k-images-idx3-ubyte", b"\x12\x34\x08\x03" + bytes(12)),
        "path",
    ),
    "mnist labels": (
        _mnist,
        lambda t, p: _write(p["path"] / "t10k-labels-idx1-ubyte", idx(np.arange(9) % 10)),
        "path",
    ),
    "mnist label range": (
        _mnist,
        lambda t, p: _write(p["path"] / "train-labels-idx1-ubyte", idx(np.full(30, 12))),
        "path",
    ),
    "mnist image size": (
        _mnist,
        lambda t, p: _write(p["path"] / "t10k-images-idx3-ubyte", idx(np.zeros((10, 27, 28)))),
        "path",
    ),
    "mnist corrupt gzip": (
        _fashion_gz,
        lambda t, p: _truncate(p["path"] / "train-images-idx3-ubyte.gz", 40),
        "path",
    ),
    "mnist bad gzip crc": (
        _fashion_gz,
        lambda t, p: _write(
            p["path"] / "t10k-images-idx3-ubyte.gz",
            gzip.compress(idx(np.zeros((7, 28, 28))))[:-8] + bytes(8),
        ),
        "path",
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_inspect_data_raises_what_load_data_raises_with_the_key(
    registry: Registry, tmp_path: Path, case: str
) -> None:
    files, damage, key = ERRORS[case]
    name, params = files(tmp_path)
    damage(tmp_path, params)
    spec = _spec(registry, name, **params)
    with pytest.raises(DataError) as loaded:
        load_data(spec, RAW, _rng())
    clear_cache()
    with pytest.raises(DataError) as inspected:
        inspect_data(spec, RAW, _rng())
    assert str(inspected.value) == str(loaded.value)
    assert inspected.value.key == loaded.value.key == key, str(loaded.value)
    assert "\n" not in str(inspected.value)


@pytest.mark.parametrize(
    ("files", "options", "key"),
    [
        (_csv, DataOptions(val=0.99), "val"),
        (_npz, DataOptions(val=0.99), "val"),
        (_mnist, DataOptions(val=0.99), "val"),
    ],
)
def test_splits_that_leave_no_training_example_name_the_option(
    registry: Registry, tmp_path: Path, files: Any, options: DataOptions, key: str
) -> None:
    name, params = files(tmp_path)
    spec = _spec(registry, name, **params)
    with pytest.raises(DataError, match="no training examples left") as loaded:
        load_data(spec, options, _rng())
    clear_cache()
    with pytest.raises(DataError) as inspected:
        inspect_data(spec, options, _rng())
    assert str(inspected.value) == str(loaded.value)
    assert inspected.value.key == loaded.value.key == key
    assert str(loaded.value).endswith(f"lower data.{key}")


def test_a_test_fraction_that_takes_everything_names_test(
    registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "one.csv").write_text("1,2,0\n")
    spec = _spec(registry, "csv", path=tmp_path / "one.csv")
    for call in (load_data, inspect_data):
        with pytest.raises(DataError, match="no training examples left") as info:
            call(spec, DataOptions(test=0.9), _rng())
        assert info.value.key == "test"


def test_mmap_is_measured_as_it_loads(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapped = DataOptions(mmap=True, val=0.25)
    name, params = _npz(tmp_path)  # compressed: cannot be memory-mapped
    spec = _spec(registry, name, **params)
    with pytest.raises(DataError, match="cannot be memory-mapped") as loaded:
        load_data(spec, mapped, _rng())
    with pytest.raises(DataError) as inspected:
        inspect_data(spec, mapped, _rng())
    assert str(inspected.value) == str(loaded.value) and inspected.value.key == "path"
    X = np.ones((30, 3))
    np.savez(params["path"], X=X, y=np.arange(30) % 3, X_test=X[:5], y_test=np.arange(5) % 3)
    with monkeypatch.context() as patch:
        _without_load(patch, spec)
        inspected_summary = inspect_data(spec, mapped, _rng())
    assert _sizes(inspected_summary) == _sizes(load_data(spec, mapped, _rng()).summary)


# --------------------------------------------------------------------------------------------
# CIFAR-10 is measured without reading its pixels
# --------------------------------------------------------------------------------------------


def _bytes_read() -> int:
    """Bytes this process has passed through read() so far (Linux: /proc/self/io rchar)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io")
@pytest.mark.parametrize(
    "write",
    [
        lambda t: write_cifar_py(t, 5, per_class=40),
        lambda t: write_cifar_py(t, 2, per_class=40, python2=True),  # as downloaded
        lambda t: write_cifar_bin(t, per_class=40),
    ],
)
def test_cifar10_shape_does_not_read_the_pixels(tmp_path: Path, write: Any) -> None:
    from optlab_plugins.datasets._cifar import Cifar10, Cifar10Params

    folder = write(tmp_path)
    pixels = 6 * 400 * 3072  # 7.4 MB in six batches
    source = Cifar10(Cifar10Params(path=folder))
    before = _bytes_read()
    shape = source.shape(_rng())
    read = _bytes_read() - before
    assert shape == optlab.DataShape(2000, 3072, 10, 400, str(folder))
    assert read < pixels / 20, f"read {read} bytes of {pixels} pixel bytes"
    before = _bytes_read()
    source.load(_rng())
    assert _bytes_read() - before > pixels  # the measure sees reading


# --------------------------------------------------------------------------------------------
# a plugin's shape method that misbehaves
# --------------------------------------------------------------------------------------------


class _Measured(optlab.DatasetSource):
    def __init__(self, params: _MeasuredParams) -> None:
        self.mode = params.mode

    def load(self, rng: np.random.Generator) -> optlab.RawDataset:
        return optlab.RawDataset(X=np.ones((40, 3)), y=np.arange(40) % 2, classes=["a", "b"])

    def shape(self, rng: np.random.Generator) -> Any:
        if self.mode == "explode":
            raise ZeroDivisionError("division by zero in shape")
        if self.mode == "wrong":
            return {"n_examples": 40}
        if self.mode == "empty":
            return optlab.DataShape(0, 3, 2, source="mem")
        if self.mode == "keyed":
            raise optlab.DataError("mem: unreadable", key="path")
        return optlab.DataShape(40, 3, 2)


class _MeasuredParams(optlab.Params):
    mode: str = "fine"


class _Plugin:
    @optlab.hookimpl
    def optlab_register_datasets(self) -> list[optlab.DatasetRecord]:
        return [optlab.DatasetRecord("measured", _Measured, _MeasuredParams, "test")]


@pytest.mark.parametrize(
    ("mode", "message", "key"),
    [
        (
            "explode",
            r"dataset 'measured' \(from measured_plugin\) failed .*ZeroDivisionError",
            None,
        ),
        ("wrong", r"dataset 'measured' \(from measured_plugin\): shape\(\) returned dict", None),
        ("empty", r"dataset 'measured' \(mem\): no data \(features of shape \(0, 3\)\)", None),
        ("keyed", r"^dataset 'measured': mem: unreadable$", "path"),
    ],
)
def test_a_misbehaving_shape_method_is_a_data_error(mode: str, message: str, key: str) -> None:
    _, registry = build_registry(extra=[("measured_plugin", _Plugin())])
    spec = _spec(registry, "measured", mode=mode)
    with pytest.raises(DataError, match=message) as info:
        inspect_data(spec, DataOptions(), _rng())
    assert info.value.key == key
    fine = inspect_data(_spec(registry, "measured"), DataOptions(), _rng())
    assert (fine.n_train, fine.n_val, fine.n_test, fine.n_features) == (26, 6, 8, 4)


def test_the_hash_of_data_inspect_data_loaded_is_computed_by_load_data(registry: Registry) -> None:
    spec = _spec(registry, "wine")
    inspect_data(spec, DataOptions(), _rng())
    d = load_data(spec, DataOptions(), _rng())
    assert d.summary.sha256 == dataset_hash(spec.build().load(_rng()))
    assert inspect_data(spec, DataOptions(), _rng()).sha256 == d.summary.sha256
