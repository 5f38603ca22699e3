"""Small dataset files in the exact layout of the originals (CIFAR-10's python and binary
batches, MNIST's IDX files), for the tests of the dataset sources."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

PER_CLASS = 2  # images per class in each batch


def cifar_batch(batch: int, per_class: int = PER_CLASS) -> tuple[np.ndarray, list[int]]:
    """Channel-major rows: red = 10 * label + batch, green = 100 + row, blue = 200."""
    labels = [c for c in range(10) for _ in range(per_class)]
    n = len(labels)
    data = np.empty((n, 3, 1024), np.uint8)
    data[:, 0] = (10 * np.array(labels) + batch)[:, None]
    data[:, 1] = (100 + np.arange(n))[:, None]
    data[:, 2] = 200
    return data.reshape(n, 3072), labels


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Writes bytes as Python 2 wrote its ``str`` (SHORT_BINSTRING/BINSTRING), as in the
    downloaded batches; Python 3 pickles bytes as text under protocol 2."""

    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def _dumps(obj: Any, protocol: int, python2: bool) -> bytes:
    if not python2:
        return pickle.dumps(obj, protocol=protocol)
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_cifar_py(
    root: Path,
    protocol: int = 2,
    meta: bool = True,
    per_class: int = PER_CLASS,
    python2: bool = False,
) -> Path:
    """The python version's folder (``cifar-10-batches-py``) under ``root``: five training
    batches and a test batch of ``10 * per_class`` images each; ``python2``: pickled as the
    download is (protocol 2, bytes as BINSTRING)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for k in range(1, 6):
        data, labels = cifar_batch(k, per_class)
        batch = {
            b"batch_label": f"training batch {k} of 5".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
        }
        (d / f"data_batch_{k}").write_bytes(_dumps(batch, protocol, python2))
    data, labels = cifar_batch(0, per_class)
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data}
    (d / "test_batch").write_bytes(_dumps(test, protocol, python2))
    if meta:
        names = [f"class{c}".encode() for c in range(10)]
        meta_obj = {b"label_names": names, b"num_cases_per_batch": 20, b"num_vis": 3072}
        (d / "batches.meta").write_bytes(_dumps(meta_obj, protocol, python2))
    return d


def write_cifar_bin(root: Path, per_class: int = PER_CLASS) -> Path:
    """The binary version's folder (``cifar-10-batches-bin``) under ``root``."""
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    for k, name in [(k, f"data_batch_{k}.bin") for k in range(1, 6)] + [(0, "test_batch.bin")]:
        data, labels = cifar_batch(k, per_class)
        records = np.column_stack([np.array(labels, np.uint8), data])
        (d / name).write_bytes(records.tobytes())
    (d / "batches.meta.txt").write_text("\n".join(f"bin{c}" for c in range(10)) + "\n\n")
    return d


def tar_gz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def idx(array: np.ndarray) -> bytes:
    """``array`` as an IDX file of unsigned bytes."""
    return (
        struct.pack(">HBB", 0, 0x08, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def write_mnist(root: Path, gz: bool, n_train: int = 30, n_test: int = 10) -> Path:
    """MNIST's four IDX files in ``root`` (gzipped with ``gz``)."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 3, 4] = labels * 20
        images[:, 27, 27] = np.arange(n)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx(arr)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
    return root
