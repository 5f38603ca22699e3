"""MNIST and Fashion-MNIST from the user's IDX files (plain or gzipped).

An IDX file starts with a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), then one big-endian uint32 per dimension, then the values, big-endian.
Both datasets use ubyte images ``(n, rows, cols)`` and ubyte labels ``(n,)``.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
from pydantic import Field

from optlab import Array, DataError, DatasetSource, Params, RawDataset

from ._common import existing_path

__all__ = ["FASHION_CLASSES", "Mnist", "MnistParams", "read_idx"]

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGIT_CLASSES = [str(d) for d in range(10)]

#: IDX type code -> big-endian numpy dtype
_IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


class MnistParams(Params):
    """Where the IDX files are."""

    path: Path = Field(
        description="Directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz)."
    )


def read_idx(data: bytes, where: str, ndim: int) -> Array:
    """Parse one IDX file's bytes into an array of ``ndim`` dimensions (native byte order).

    Raises
    ------
    DataError
        On a bad magic number, an unexpected number of dimensions, or a size that does not
        match the header (truncated or trailing bytes).
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataError(f"{where}: not an IDX file (bad magic number {data[:4].hex() or 'none'})")
    if data[3] != ndim:
        raise DataError(f"{where}: expected {ndim} dimensions in the IDX header, found {data[3]}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{where}: file {what}: header says {dims} ({expected} bytes), file has {len(data)}"
        )
    values = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return values if dtype.itemsize == 1 else values.astype(dtype.newbyteorder("="))


def _read(root: Path, stem: str) -> tuple[bytes, str]:
    """The bytes of ``stem`` (or its ``.gz``, or the ``stem`` with '.idx' spelling)."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
        f = root / name
        if f.is_file():
            raw = f.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError, zlib.error) as exc:
                    raise DataError(f"{f}: corrupt gzip file ({exc})") from exc
            return raw, str(f)
    raise DataError(f"{root}: missing {stem} (or {stem}.gz)")


def _split(root: Path, prefix: str) -> tuple[Array, Array, tuple[int, ...], str]:
    images, img_where = _read(root, f"{prefix}-images-idx3-ubyte")
    labels, lbl_where = _read(root, f"{prefix}-labels-idx1-ubyte")
    X = read_idx(images, img_where, 3)
    y = read_idx(labels, lbl_where, 1)
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{lbl_where}: {y.shape[0]} labels for {X.shape[0]} images in {img_where}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{lbl_where}: labels must be integers, found {y.dtype}")
    shape = (int(X.shape[1]), int(X.shape[2]))
    return X.reshape(X.shape[0], -1), y.astype(np.int64), shape, lbl_where


class Mnist(DatasetSource):
    """The 60,000/10,000 IDX images of MNIST (or Fashion-MNIST), 28x28 uint8, ten classes."""

    def __init__(self, params: MnistParams, classes: list[str], name: str) -> None:
        self.path, self.classes, self.name = params.path, classes, name

    def load(self, rng: np.random.Generator) -> RawDataset:
        root = existing_path(self.path, self.name, want_dir=True)
        X, y, shape, y_where = _split(root, "train")
        X_test, y_test, test_shape, y_test_where = _split(root, "t10k")
        if test_shape != shape:
            raise DataError(f"{root}: test images are {test_shape}, training images {shape}")
        for labels, where in ((y, y_where), (y_test, y_test_where)):
            if labels.size and int(labels.max()) >= len(self.classes):
                raise DataError(
                    f"{where}: label {int(labels.max())} out of range 0..{len(self.classes) - 1}"
                )
        return RawDataset(
            X=X,
            y=y,
            classes=list(self.classes),
            X_test=X_test,
            y_test=y_test,
            image_shape=shape,
            source=str(root),
        )
