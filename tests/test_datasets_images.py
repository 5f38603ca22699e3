"""CIFAR-10 and MNIST read from small files written in the exact layout of the originals."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dataset_files import idx, tar_gz, write_cifar_bin, write_cifar_py, write_mnist

from optlab._contract.registry import Registry
from optlab._errors import DataError
from optlab._spec.experiment import ComponentSpec, DataOptions
from optlab._training.data import PreparedData, load_data

RAW = DataOptions(center=False, bias=False, val=0.0, dtype="float32")


pytestmark = pytest.mark.usefixtures("fresh_data_cache")


def _load(registry: Registry, name: str, options: DataOptions = RAW, **params: Any) -> PreparedData:
    record = registry.get("dataset", name)
    spec = ComponentSpec("dataset", name, record.params(**params), record)
    return load_data(spec, options, np.random.default_rng(0))


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------


def _check_cifar(d: PreparedData, prefix: str) -> None:
    assert (d.summary.n_train, d.summary.n_val, d.summary.n_test) == (100, 0, 20)
    assert d.summary.image_shape == (32, 32, 3)
    assert d.summary.classes == tuple(f"{prefix}{c}" for c in range(10))
    assert d.X_train.shape == (100, 3072) and d.X_train.dtype == np.float32
    images = d.X_train.reshape(-1, 32, 32, 3)  # HWC: channel is the last axis
    expected_red = 10 * d.y_train + np.repeat(np.arange(1, 6), 20)
    np.testing.assert_array_equal(images[:, 5, 7, 0], expected_red)
    np.testing.assert_array_equal(images[:, 31, 0, 1], 100 + np.tile(np.arange(20), 5))
    assert np.all(images[..., 2] == 200)
    test_images = d.X_test.reshape(-1, 32, 32, 3)
    np.testing.assert_array_equal(test_images[:, 0, 0, 0], 10 * d.y_test)  # own test split kept


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_python_directory(registry: Registry, tmp_path: Path, protocol: int) -> None:
    folder = write_cifar_py(tmp_path, protocol)
    _check_cifar(_load(registry, "cifar10", path=folder), "class")
    # the parent folder works too, and without batches.meta the standard names are used
    other = write_cifar_py(tmp_path / "other", protocol, meta=False)
    d = _load(registry, "cifar10", path=other.parent)
    assert d.summary.classes[:2] == ("airplane", "automobile")


def test_cifar10_binary_directory(registry: Registry, tmp_path: Path) -> None:
    _check_cifar(_load(registry, "cifar10", path=write_cifar_bin(tmp_path)), "bin")


@pytest.mark.parametrize("writer", [write_cifar_py, write_cifar_bin])
def test_cifar10_tar_gz_is_read_without_extracting(
    registry: Registry, tmp_path: Path, writer: Any
) -> None:
    archive = tar_gz(writer(tmp_path / "src"), tmp_path / "cifar-10.tar.gz")
    before = sorted(p.name for p in tmp_path.iterdir())
    d = _load(registry, "cifar10", path=archive)
    _check_cifar(d, "class" if writer is write_cifar_py else "bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cifar10_trains_through_prepare_defaults(registry: Registry, tmp_path: Path) -> None:
    d = _load(registry, "cifar10", DataOptions(), path=write_cifar_py(tmp_path))
    assert d.X_train.dtype == np.float64 and d.X_train.shape[1] == 3073
    assert (d.summary.n_train, d.summary.n_val) == (80, 20)
    assert np.array_equal(np.bincount(d.y_val), [2] * 10)


def test_cifar10_batches_written_by_numpy_1_load(registry: Registry, tmp_path: Path) -> None:
    """The downloaded batches were pickled by Python 2 / numpy 1.x: numpy.core globals."""
    folder = write_cifar_py(tmp_path, protocol=2)
    for f in folder.iterdir():
        f.write_bytes(f.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray" in (folder / "data_batch_1").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning from importing numpy.core
        _check_cifar(_load(registry, "cifar10", path=folder), "class")


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.target}",))


def test_cifar10_malicious_pickle_is_refused(registry: Registry, tmp_path: Path) -> None:
    folder = write_cifar_py(tmp_path)
    pwned = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(
        pickle.dumps({b"data": _Evil(pwned), b"labels": [0]}, protocol=2)
    )
    with pytest.raises(DataError) as info:
        _load(registry, "cifar10", path=folder)
    text = str(info.value)
    assert text.startswith("dataset 'cifar10': ") and "data_batch_3" in text
    assert "system" in text and "refused" in text
    assert not pwned.exists()


def test_cifar10_pickle_asking_for_eval_is_refused(registry: Registry, tmp_path: Path) -> None:
    folder = write_cifar_py(tmp_path)
    payload = b"cbuiltins\neval\n(Vprint('pwned')\ntR."
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match=r"test_batch.*builtins\.eval"):
        _load(registry, "cifar10", path=folder)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "data_batch_2").write_bytes(b"\x80\x02}q\x00(X"), "truncated or corrupt"),
        (lambda d: (d / "data_batch_2").unlink(), r"missing data_batch_2"),
        (lambda d: (d / "test_batch").unlink(), r"missing test_batch"),
        (
            lambda d: (d / "data_batch_2").write_bytes(
                pickle.dumps({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]})
            ),
            r"data_batch_2.*shape \(n, 3072\)",
        ),
        (
            lambda d: (d / "data_batch_2").write_bytes(
                pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
            ),
            r"data_batch_2: label 10 out of range 0..9",
        ),
        (
            lambda d: (d / "data_batch_2").write_bytes(
                pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
            ),
            r"data_batch_2: labels must be 2 integers",
        ),
    ],
)
def test_cifar10_bad_python_batches(
    registry: Registry, tmp_path: Path, damage: Any, message: str
) -> None:
    folder = write_cifar_py(tmp_path)
    damage(folder)
    with pytest.raises(DataError, match=message) as info:
        _load(registry, "cifar10", path=folder)
    assert "\n" not in str(info.value)


def test_cifar10_truncated_binary_and_archive(registry: Registry, tmp_path: Path) -> None:
    folder = write_cifar_bin(tmp_path / "a")
    data = (folder / "data_batch_4.bin").read_bytes()
    (folder / "data_batch_4.bin").write_bytes(data[:-100])
    with pytest.raises(DataError, match=r"data_batch_4\.bin: .*truncated"):
        _load(registry, "cifar10", path=folder)
    archive = tar_gz(write_cifar_py(tmp_path / "b"), tmp_path / "c.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"c\.tar\.gz"):
        _load(registry, "cifar10", path=archive)


def test_cifar10_a_file_that_is_no_archive_says_what_it_is(
    registry: Registry, tmp_path: Path
) -> None:
    # one batch given instead of its folder said "unreadable archive (file could not be
    # opened successfully)"
    folder = write_cifar_py(tmp_path)
    batch = folder / "data_batch_1"
    with pytest.raises(
        DataError,
        match=rf"data_batch_1: one file of CIFAR-10, not the data set; point data\.path "
        rf"at its folder, {re.escape(str(folder))}$",
    ):
        _load(registry, "cifar10", path=batch)
    other = tmp_path / "cifar.npz"
    other.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match=r"cifar\.npz: not a \.tar\.gz archive nor a folder; "):
        _load(registry, "cifar10", path=other)


def test_cifar10_missing_path(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: no such file or directory"):
        _load(registry, "cifar10", path=tmp_path / "nope")
    with pytest.raises(DataError, match="no data_batch_1"):
        _load(registry, "cifar10", path=tmp_path)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_plain_and_gz(registry: Registry, tmp_path: Path, gz: bool) -> None:
    d = _load(registry, "mnist", path=write_mnist(tmp_path, gz))
    assert (d.summary.n_train, d.summary.n_test) == (30, 10)
    assert d.summary.image_shape == (28, 28) and d.X_train.shape == (30, 784)
    assert d.summary.classes == tuple(str(i) for i in range(10))
    images = d.X_train.reshape(-1, 28, 28)
    np.testing.assert_array_equal(images[:, 3, 4], d.y_train * 20)
    np.testing.assert_array_equal(images[:, 27, 27], np.arange(30))
    np.testing.assert_array_equal(d.y_test, np.arange(10))


def test_fashion_mnist_shares_the_format(registry: Registry, tmp_path: Path) -> None:
    d = _load(registry, "fashion_mnist", path=write_mnist(tmp_path, gz=True))
    assert d.summary.classes[0] == "T-shirt/top" and d.summary.classes[-1] == "Ankle boot"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b"\x00\x00\x08\x03" + p.read_bytes()[4:-5]), "truncated"),
        (lambda p: p.write_bytes(p.read_bytes() + b"xx"), "trailing bytes"),
        (lambda p: p.write_bytes(b"\x12\x34" + p.read_bytes()[2:]), "bad magic number"),
        (lambda p: p.write_bytes(b"\x00\x00\x08\x02" + p.read_bytes()[4:]), "expected 3 dim"),
        (lambda p: p.unlink(), "missing train-images-idx3-ubyte"),
    ],
)
def test_mnist_bad_images(registry: Registry, tmp_path: Path, damage: Any, message: str) -> None:
    folder = write_mnist(tmp_path, gz=False)
    damage(folder / "train-images-idx3-ubyte")
    with pytest.raises(DataError, match=message) as info:
        _load(registry, "mnist", path=folder)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_mnist_label_problems(registry: Registry, tmp_path: Path) -> None:
    folder = write_mnist(tmp_path, gz=False)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx(np.arange(9) % 10))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: 9 labels for 10 images"):
        _load(registry, "mnist", path=folder)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx(np.full(10, 12)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label 12 out of range"):
        _load(registry, "mnist", path=folder)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(gzip.compress(idx(np.arange(10)))[:-8])
    with pytest.raises(DataError, match="corrupt gzip"):
        _load(registry, "mnist", path=folder)


def test_mnist_path_above_the_files_names_the_folder_they_are_in(
    registry: Registry, tmp_path: Path
) -> None:
    """torchvision keeps the files in MNIST/raw: pointed at MNIST, only 'missing' was said."""
    write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    for path in (tmp_path / "MNIST", tmp_path):
        with pytest.raises(DataError) as info:
            _load(registry, "mnist", path=path)
        assert str(info.value).endswith(
            f"{path}: missing train-images-idx3-ubyte (or train-images-idx3-ubyte.gz); found in "
            f"{tmp_path / 'MNIST' / 'raw'}: point data.path there"
        )


def test_idx_reader_handles_wider_types() -> None:
    from optlab_plugins.datasets._mnist import read_idx

    values = np.arange(6, dtype=">i4").reshape(2, 3)
    data = struct.pack(">HBB", 0, 0x0C, 2) + struct.pack(">2I", 2, 3) + values.tobytes()
    out = read_idx(data, "mem", 2)
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    np.testing.assert_array_equal(out, values)
