"""CIFAR-10 from the user's copy: the python or binary version, a directory or its archive.

- Python version (``cifar-10-batches-py``): ``data_batch_1`` .. ``data_batch_5`` and
  ``test_batch``, pickles of ``{b"data": uint8 (n, 3072), b"labels": [int] * n, ...}``, read
  with a restricted unpickler (see :mod:`._safe_pickle`); class names from ``batches.meta``.
- Binary version (``cifar-10-batches-bin``): ``data_batch_<k>.bin`` and ``test_batch.bin``,
  records of 1 label byte and 3072 pixel bytes; class names from ``batches.meta.txt``.
- Either as a directory (or a folder holding one of those two), or a ``.tar.gz`` archive
  read member by member in one pass, without extracting anything to disk.

``shape(rng)`` (see :class:`optlab._training.data.SupportsShape`) measures a copy without reading
its pixels: binary batches by their sizes, python batches by unpickling them with the pixel bytes
skipped (seeked over), so their labels and shapes are read and checked.

Rows of the files are channel-major (1024 red, 1024 green, 1024 blue values); they are
converted once, while the batches are assembled, to height x width x channel order so that
``image_shape`` is ``(32, 32, 3)``.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, TypeVar, cast

import numpy as np
from pydantic import Field

from optlab import Array, DataError, DatasetSource, DataShape, Params, RawDataset

from ._common import existing_path
from ._safe_pickle import load_pickle

__all__ = ["CIFAR10_CLASSES", "Cifar10", "Cifar10Params"]

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
_SIDE, _CHANNELS = 32, 3
_PIXELS = _SIDE * _SIDE * _CHANNELS
_N_CLASSES = 10
_BATCH_RE = re.compile(r"^data_batch_(\d+)(\.bin)?$")
_WANTED_RE = re.compile(r"^(data_batch_\d+|test_batch)(\.bin)?$|^batches\.meta(\.txt)?$")
_SUBDIRS = ("cifar-10-batches-py", "cifar-10-batches-bin")

#: basename -> (where, read the bytes)
_Files = dict[str, tuple[str, Callable[[], bytes]]]
#: a byte string read from a python batch at least this long is its pixels (a frame of the
#: pickle, the longest other read, is under 128 KiB); measuring skips it
_SKIP_BYTES = 2**20
_T = TypeVar("_T")


class Cifar10Params(Params):
    """Where the CIFAR-10 files are."""

    path: Path = Field(
        description="CIFAR-10 python or binary version: its directory (cifar-10-batches-py or "
        "-bin, or a folder holding one) or the downloaded .tar.gz archive."
    )


def _dir_files(root: Path) -> dict[str, Path]:
    for d in (root, *(root / s for s in _SUBDIRS)):
        if d.is_dir():
            found = {f.name: f for f in d.iterdir() if f.is_file() and _WANTED_RE.match(f.name)}
            if any(_BATCH_RE.match(n) or n.startswith("test_batch") for n in found):
                return found
    raise DataError(
        f"dataset 'cifar10': {root}: no data_batch_1..5/test_batch (python version) or "
        "data_batch_*.bin/test_batch.bin (binary version) found; point data.path at the "
        "extracted cifar-10-batches-py or -bin folder or at the .tar.gz",
        key="path",
    )


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _reader(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DataError(f"dataset 'cifar10': {path}: unreadable ({exc})", key="path") from exc

    return read


def _check_archive(path: Path) -> None:
    """A :class:`DataError` saying what the file ``path`` is when it is no tar archive: one
    of CIFAR-10's files (``data_batch_1``, given instead of its folder), or another file;
    tarfile only says it "could not be opened successfully"."""
    try:
        if tarfile.is_tarfile(path):
            return
    except OSError as exc:
        raise DataError(f"dataset 'cifar10': {path}: unreadable ({exc})", key="path") from exc
    if _WANTED_RE.match(path.name):
        found = (
            f"one file of CIFAR-10, not the data set; point data.path at its folder, {path.parent}"
        )
    else:
        found = (
            "not a .tar.gz archive nor a folder; point data.path at the extracted "
            "cifar-10-batches-py or -bin folder or at the downloaded .tar.gz"
        )
    raise DataError(f"dataset 'cifar10': {path}: {found}", key="path")


def _archive_files(
    archive: Path, take: Callable[[str, str, IO[bytes], int], _T]
) -> dict[str, tuple[str, _T]]:
    """``take(name, where, stream, size)`` of each wanted member of a tar archive, in one
    sequential pass."""
    found: dict[str, tuple[str, _T]] = {}
    _check_archive(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or not _WANTED_RE.match(name):
                    continue
                fileobj = tar.extractfile(member)
                if fileobj is None:  # pragma: no cover - isfile() members always extract
                    continue
                where = f"{archive}:{member.name}"
                found[name] = (where, take(name, where, fileobj, member.size))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        detail = str(exc).splitlines()[0].rstrip(":")  # tarfile's can list every method tried
        raise DataError(
            f"dataset 'cifar10': {archive}: unreadable archive ({detail})", key="path"
        ) from exc
    if not found:
        raise DataError(
            f"dataset 'cifar10': {archive}: archive holds no CIFAR-10 batches", key="path"
        )
    return found


def _check_labels(labels: Array, n: int, where: str) -> Array:
    if labels.ndim != 1 or labels.shape[0] != n or labels.dtype.kind not in "iu":
        raise DataError(
            f"{where}: labels must be {n} integers, found {labels.dtype} of shape {labels.shape}",
            key="path",
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= _N_CLASSES):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataError(f"{where}: label {bad} out of range 0..{_N_CLASSES - 1}", key="path")
    return labels.astype(np.int64)


def _python_batch(data: bytes | IO[bytes], where: str) -> tuple[Array, Array]:
    obj = load_pickle(data, where)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, found {type(obj).__name__}", key="path")
    pixels = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if pixels is None or labels is None:
        raise DataError(
            f"{where}: missing b'data' or b'labels' (keys: {sorted(map(str, obj))})", key="path"
        )
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 2
        or pixels.shape[1] != _PIXELS
    ):
        found = (
            f"{pixels.dtype} {pixels.shape}"
            if isinstance(pixels, np.ndarray)
            else type(pixels).__name__
        )
        raise DataError(
            f"{where}: b'data' must be uint8 of shape (n, {_PIXELS}), found {found}", key="path"
        )
    try:
        label_array = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: b'labels' is not a list of integers", key="path") from exc
    return pixels, _check_labels(label_array, pixels.shape[0], where)


def _records(size: int, where: str) -> int:
    """The images in a binary batch of ``size`` bytes (records of a label byte and pixels)."""
    record = _PIXELS + 1
    if not size or size % record:
        raise DataError(
            f"{where}: {size} bytes is not a whole number of {record}-byte records "
            "(truncated or not a CIFAR-10 binary batch)",
            key="path",
        )
    return size // record


def _binary_batch(data: bytes, where: str) -> tuple[Array, Array]:
    rows = np.frombuffer(data, np.uint8).reshape(_records(len(data), where), _PIXELS + 1)
    return rows[:, 1:], _check_labels(rows[:, 0], rows.shape[0], where)


class _SkipPixels:
    """A binary stream for the unpickler over ``f`` (``size`` bytes) that seeks over any read
    of :data:`_SKIP_BYTES` or more and returns zeros for it: a python batch unpickles with
    its labels, shapes and dtypes, and with every check :func:`_python_batch` makes, but its
    pixels are never read (a truncated file still fails as it would)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f, self._size = f, size
        if hasattr(f, "peek"):  # lets the unpickler read ahead instead of byte by byte
            self.peek = f.peek

    def read(self, n: int = -1) -> bytes:
        if n < _SKIP_BYTES:
            return self._f.read(n)
        n = max(0, min(n, self._size - self._f.tell()))
        self._f.seek(n, io.SEEK_CUR)
        return bytes(n)

    def readline(self) -> bytes:
        return self._f.readline()


def _measure(name: str, where: str, f: IO[bytes], size: int) -> int | bytes:
    """The images in the batch file ``name`` (a binary batch's from its ``size``, a python
    batch's from its pickle without the pixels), or a ``batches.meta`` file's bytes.

    A python batch whose pixels do not unpickle from zeros is read whole, so its error (or its
    size) is the one :meth:`Cifar10.load` finds: that is a corrupt file, or one pickled by
    Python 3 with protocol 2, where bytes are stored as text (the download, pickled by
    Python 2, stores them as bytes, and protocols 3 and up do too).
    """
    if name.startswith("batches.meta"):
        return f.read()
    if name.endswith(".bin"):
        return _records(size, where)
    try:
        pixels = _python_batch(cast(IO[bytes], _SkipPixels(f, size)), where)[0]
    except DataError:
        f.seek(0)
        pixels = _python_batch(f.read(), where)[0]
    return int(pixels.shape[0])


def _measure_file(name: str, path: Path) -> int | bytes:
    try:
        with path.open("rb") as f:
            return _measure(name, str(path), f, os.fstat(f.fileno()).st_size)
    except OSError as exc:
        raise DataError(f"dataset 'cifar10': {path}: unreadable ({exc})", key="path") from exc


def _layout(root: Path, names: Collection[str]) -> tuple[str, list[int]]:
    """The file suffix of the version found (``""`` python, ``".bin"`` binary) and the
    numbers of its training batches; a :class:`DataError` naming any batch missing."""
    binary = "data_batch_1" not in names and "test_batch" not in names
    suffix = ".bin" if binary else ""
    numbers = sorted(
        int(m.group(1))
        for name in names
        if (m := _BATCH_RE.match(name)) and name.endswith(".bin") == binary
    )
    missing = [f"data_batch_{k}{suffix}" for k in range(1, max(numbers, default=1) + 1)] + [
        f"test_batch{suffix}"
    ]
    missing = [m for m in missing if m not in names]
    if missing:
        raise DataError(f"dataset 'cifar10': {root}: missing {', '.join(missing)}", key="path")
    return suffix, numbers


def _class_names(files: _Files) -> list[str]:
    if "batches.meta" in files:
        where, read = files["batches.meta"]
        meta = load_pickle(read(), where)
        names = (
            meta.get(b"label_names", meta.get("label_names")) if isinstance(meta, dict) else None
        )
        if not isinstance(names, list):
            raise DataError(f"{where}: expected a dict with b'label_names'", key="path")
        decoded = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    elif "batches.meta.txt" in files:
        where, read = files["batches.meta.txt"]
        decoded = [line.strip() for line in read().decode(errors="replace").splitlines()]
        decoded = [n for n in decoded if n]
    else:
        return list(CIFAR10_CLASSES)
    if len(decoded) != _N_CLASSES:
        raise DataError(
            f"{where}: expected {_N_CLASSES} class names, found {len(decoded)}", key="path"
        )
    return decoded


def _assemble(batches: list[tuple[Array, Array]]) -> tuple[Array, Array]:
    """Concatenate channel-major batches into one (n, 3072) HWC uint8 array, one copy."""
    n = sum(p.shape[0] for p, _ in batches)
    X = np.empty((n, _PIXELS), np.uint8)
    start = 0
    for pixels, _ in batches:
        stop = start + pixels.shape[0]
        X[start:stop].reshape(-1, _SIDE, _SIDE, _CHANNELS)[...] = pixels.reshape(
            -1, _CHANNELS, _SIDE, _SIDE
        ).transpose(0, 2, 3, 1)
        start = stop
    y = np.concatenate([labels for _, labels in batches]) if batches else np.empty(0, np.int64)
    return X, y


def _read_all(name: str, where: str, f: IO[bytes], size: int) -> bytes:
    return f.read()


class Cifar10(DatasetSource):
    """CIFAR-10's 50,000 training and 10,000 test images, 32x32x3 uint8, ten classes."""

    def __init__(self, params: Cifar10Params) -> None:
        self.path = params.path

    def load(self, rng: np.random.Generator) -> RawDataset:
        root = existing_path(self.path, "cifar10")
        if root.is_file():
            archive = _archive_files(root, _read_all)
            files = {name: (where, _constant(data)) for name, (where, data) in archive.items()}
        else:
            files = {name: (str(f), _reader(f)) for name, f in _dir_files(root).items()}
        suffix, numbers = _layout(root, files)
        parse = _binary_batch if suffix else _python_batch

        def read(name: str) -> tuple[Array, Array]:
            where, reader = files.pop(name)
            return parse(reader(), where)

        train = [read(f"data_batch_{k}{suffix}") for k in numbers]
        X, y = _assemble(train)
        del train
        X_test, y_test = _assemble([read(f"test_batch{suffix}")])
        return RawDataset(
            X=X,
            y=y,
            classes=_class_names(files),
            X_test=X_test,
            y_test=y_test,
            image_shape=(_SIDE, _SIDE, _CHANNELS),
            source=str(root),
        )

    def shape(self, rng: np.random.Generator) -> DataShape:
        """The sizes :meth:`load` gives, without reading the pixels: a binary batch is
        measured by its size, a python batch is unpickled with its pixels skipped (its labels
        are checked as :meth:`load` checks them); raises the :class:`DataError` :meth:`load`
        would for a missing path, batch or archive member, an unreadable file or archive, a
        batch of the wrong size or a corrupt pickle, bad class names. Not seen: a label out
        of range in a binary batch (its labels are spread among the pixels). A ``.tar.gz`` is
        decompressed (its members are in sequence), not kept."""
        root = existing_path(self.path, "cifar10")
        if root.is_file():
            measured = _archive_files(root, _measure)
            suffix, numbers = _layout(root, measured)
        else:
            paths = _dir_files(root)
            suffix, numbers = _layout(root, paths)
            order = [f"data_batch_{k}{suffix}" for k in numbers] + [f"test_batch{suffix}"]
            order += [n for n in paths if n.startswith("batches.meta")]
            measured = {n: (str(paths[n]), _measure_file(n, paths[n])) for n in order}
        counts = {n: v for n, (_, v) in measured.items() if isinstance(v, int)}
        metas = {n: (w, _constant(v)) for n, (w, v) in measured.items() if isinstance(v, bytes)}
        return DataShape(
            n_examples=sum(counts[f"data_batch_{k}{suffix}"] for k in numbers),
            n_features=_PIXELS,
            n_classes=len(_class_names(metas)),
            n_test=counts[f"test_batch{suffix}"],
            source=str(root),
        )
