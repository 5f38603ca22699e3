"""MNIST and Fashion-MNIST from the user's IDX files (plain or gzipped).

An IDX file starts with a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), then one big-endian uint32 per dimension, then the values, big-endian.
Both datasets use ubyte images ``(n, rows, cols)`` and ubyte labels ``(n,)``.

``shape(rng)`` (see :class:`optlab._training.data.SupportsShape`) reads the image files' headers and
the (small) label files, not the images.
"""

from __future__ import annotations

import gzip
import itertools
import os
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydantic import Field

from optlab import Array, DataError, DatasetSource, DataShape, Params, RawDataset

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
#: bytes decompressed at a time when a gzipped file is only measured
_BLOCK = 2**20

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


def _dims(head: bytes, size: int, where: str, ndim: int) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The dimensions and dtype an IDX file's header (its first bytes, ``head``) declares,
    checked against the file's ``size`` in bytes.

    Raises
    ------
    DataError
        On a bad magic number, an unexpected number of dimensions, or a size that does not
        match the header (truncated or trailing bytes).
    """
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
        raise DataError(
            f"{where}: not an IDX file (bad magic number {head[:4].hex() or 'none'})", key="path"
        )
    if head[3] != ndim:
        raise DataError(
            f"{where}: expected {ndim} dimensions in the IDX header, found {head[3]}", key="path"
        )
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DataError(f"{where}: truncated IDX header", key="path")
    dims = tuple(int(d) for d in np.frombuffer(head, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[head[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        what = "truncated" if size < expected else "has trailing bytes"
        raise DataError(
            f"{where}: file {what}: header says {dims} ({expected} bytes), file has {size}",
            key="path",
        )
    return dims, dtype


def read_idx(data: bytes, where: str, ndim: int) -> Array:
    """Parse one IDX file's bytes into an array of ``ndim`` dimensions (native byte order).

    Raises
    ------
    DataError
        On a bad magic number, an unexpected number of dimensions, or a size that does not
        match the header (truncated or trailing bytes).
    """
    dims, dtype = _dims(data[: 4 + 4 * ndim], len(data), where, ndim)
    values = np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(dims)
    return values if dtype.itemsize == 1 else values.astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    """The file ``stem`` (or its ``.gz``, or the ``stem`` with '.idx' spelling) in ``root``."""
    dotted = stem.replace("-idx", ".idx")
    names = (stem, f"{stem}.gz", dotted, f"{dotted}.gz")
    for name in names:
        f = root / name
        if f.is_file():
            return f
    # a folder above the files: torchvision keeps them in MNIST/raw
    below = itertools.chain.from_iterable(root.glob(f"*/{n}") for n in names)
    deeper = itertools.chain.from_iterable(root.glob(f"*/*/{n}") for n in names)
    found = next((f for f in itertools.chain(below, deeper) if f.is_file()), None)
    hint = f"; found in {found.parent}: point data.path there" if found is not None else ""
    raise DataError(f"{root}: missing {stem} (or {stem}.gz){hint}", key="path")


def _read(root: Path, stem: str) -> tuple[bytes, str]:
    """The bytes of ``stem`` (see :func:`_find`), decompressed when gzipped."""
    f = _find(root, stem)
    try:
        raw = f.read_bytes()
    except OSError as exc:
        raise DataError(f"{f}: unreadable ({exc})", key="path") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{f}: corrupt gzip file ({exc})", key="path") from exc
    return raw, str(f)


def _gunzipped_size(f: IO[bytes], head_size: int) -> tuple[bytes, int]:
    """The first ``head_size`` bytes of the gzipped file ``f`` and its decompressed size; it is
    decompressed in blocks that are dropped (which checks its CRC)."""
    with gzip.GzipFile(fileobj=f) as unzipped:
        head = unzipped.read(head_size)
        size = len(head)
        while block := unzipped.read(_BLOCK):
            size += len(block)
    return head, size


def _header(root: Path, stem: str, ndim: int) -> tuple[tuple[int, ...], str]:
    """The dimensions of the IDX file ``stem`` (see :func:`_find`), checked as
    :func:`read_idx` checks them, from its header and size: a plain file's values are not
    read; a gzipped one is decompressed in blocks and dropped (to check its size and CRC)."""
    f = _find(root, stem)
    try:
        with f.open("rb") as stream:
            gzipped = stream.read(2) == b"\x1f\x8b"
            stream.seek(0)
            if gzipped:
                head, size = _gunzipped_size(stream, 4 + 4 * ndim)
            else:
                head, size = stream.read(4 + 4 * ndim), os.fstat(stream.fileno()).st_size
    except (OSError, EOFError, zlib.error) as exc:
        _read(root, stem)  # raises the error loading the file gives, in its words
        raise DataError(f"{f}: unreadable ({exc})", key="path") from exc
    return _dims(head, size, str(f), ndim)[0], str(f)


def _labels(root: Path, prefix: str, n_images: int, images: str) -> tuple[Array, str]:
    """The labels of the ``prefix`` split, which has ``n_images`` images (in file ``images``)."""
    labels, where = _read(root, f"{prefix}-labels-idx1-ubyte")
    y = read_idx(labels, where, 1)
    if y.shape[0] != n_images:
        raise DataError(
            f"{where}: {y.shape[0]} labels for {n_images} images in {images}", key="path"
        )
    if y.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers, found {y.dtype}", key="path")
    return y.astype(np.int64), where


def _split(root: Path, prefix: str) -> tuple[Array, Array, tuple[int, ...], str]:
    images, img_where = _read(root, f"{prefix}-images-idx3-ubyte")
    X = read_idx(images, img_where, 3)
    y, lbl_where = _labels(root, prefix, X.shape[0], img_where)
    shape = (int(X.shape[1]), int(X.shape[2]))
    return X.reshape(X.shape[0], -1), y, shape, lbl_where


class Mnist(DatasetSource):
    """The 60,000/10,000 IDX images of MNIST (or Fashion-MNIST), 28x28 uint8, ten classes."""

    def __init__(self, params: MnistParams, classes: list[str], name: str) -> None:
        self.path, self.classes, self.name = params.path, classes, name

    def load(self, rng: np.random.Generator) -> RawDataset:
        root = existing_path(self.path, self.name, want_dir=True)
        X, y, shape, y_where = _split(root, "train")
        X_test, y_test, test_shape, y_test_where = _split(root, "t10k")
        self._check(root, shape, test_shape, ((y, y_where), (y_test, y_test_where)))
        return RawDataset(
            X=X,
            y=y,
            classes=list(self.classes),
            X_test=X_test,
            y_test=y_test,
            image_shape=shape,
            source=str(root),
        )

    def shape(self, rng: np.random.Generator) -> DataShape:
        """The sizes :meth:`load` gives, from the image files' headers and the labels; raises
        the :class:`DataError` :meth:`load` would for a missing or unreadable folder or file
        (a gzipped file is decompressed, in blocks, to check it), sizes that do not match their
        headers, or labels out of range."""
        root = existing_path(self.path, self.name, want_dir=True)
        found = []
        for prefix in ("train", "t10k"):
            dims, img_where = _header(root, f"{prefix}-images-idx3-ubyte", 3)
            found.append((dims, *_labels(root, prefix, dims[0], img_where)))
        (train, y, y_where), (test, y_test, y_test_where) = found
        self._check(root, train[1:], test[1:], ((y, y_where), (y_test, y_test_where)))
        return DataShape(
            n_examples=train[0],
            n_features=train[1] * train[2],
            n_classes=len(self.classes),
            n_test=test[0],
            source=str(root),
        )

    def _check(
        self,
        root: Path,
        shape: tuple[int, ...],
        test_shape: tuple[int, ...],
        labels: tuple[tuple[Array, str], ...],
    ) -> None:
        if test_shape != shape:
            raise DataError(
                f"{root}: test images are {test_shape}, training images {shape}", key="path"
            )
        for y, where in labels:
            if y.size and int(y.max()) >= len(self.classes):
                raise DataError(
                    f"{where}: label {int(y.max())} out of range 0..{len(self.classes) - 1}",
                    key="path",
                )
