"""CIFAR-10 from the user's copy: the python or binary version, a directory or its archive.

- Python version (``cifar-10-batches-py``): ``data_batch_1`` .. ``data_batch_5`` and
  ``test_batch``, pickles of ``{b"data": uint8 (n, 3072), b"labels": [int] * n, ...}``, read
  with a restricted unpickler (see :mod:`._safe_pickle`); class names from ``batches.meta``.
- Binary version (``cifar-10-batches-bin``): ``data_batch_<k>.bin`` and ``test_batch.bin``,
  records of 1 label byte and 3072 pixel bytes; class names from ``batches.meta.txt``.
- Either as a directory (or a folder holding one of those two), or a ``.tar.gz`` archive
  read member by member in one pass, without extracting anything to disk.

Rows of the files are channel-major (1024 red, 1024 green, 1024 blue values); they are
converted once, while the batches are assembled, to height x width x channel order so that
``image_shape`` is ``(32, 32, 3)``.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import Field

from optlab import Array, DataError, DatasetSource, Params, RawDataset

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


class Cifar10Params(Params):
    """Where the CIFAR-10 files are."""

    path: Path = Field(
        description="CIFAR-10 python or binary version: its directory (cifar-10-batches-py or "
        "-bin, or a folder holding one) or the downloaded .tar.gz archive."
    )


def _dir_files(root: Path) -> _Files:
    for d in (root, *(root / s for s in _SUBDIRS)):
        if d.is_dir():
            found = {
                f.name: (str(f), f.read_bytes)
                for f in d.iterdir()
                if f.is_file() and _WANTED_RE.match(f.name)
            }
            if any(_BATCH_RE.match(n) or n.startswith("test_batch") for n in found):
                return found
    raise DataError(
        f"dataset 'cifar10': {root}: no data_batch_1..5/test_batch (python version) or "
        "data_batch_*.bin/test_batch.bin (binary version) found; point data.path at the "
        "extracted cifar-10-batches-py or -bin folder or at the .tar.gz"
    )


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _archive_files(archive: Path) -> _Files:
    """Read the wanted members of a tar archive in one sequential pass."""
    found: _Files = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or not _WANTED_RE.match(name):
                    continue
                fileobj = tar.extractfile(member)
                if fileobj is None:  # pragma: no cover - isfile() members always extract
                    continue
                data = fileobj.read()
                found[name] = (f"{archive}:{member.name}", _constant(data))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"dataset 'cifar10': {archive}: unreadable archive ({exc})") from exc
    if not found:
        raise DataError(f"dataset 'cifar10': {archive}: archive holds no CIFAR-10 batches")
    return found


def _check_labels(labels: Array, n: int, where: str) -> Array:
    if labels.ndim != 1 or labels.shape[0] != n or labels.dtype.kind not in "iu":
        raise DataError(
            f"{where}: labels must be {n} integers, found {labels.dtype} of shape {labels.shape}"
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= _N_CLASSES):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataError(f"{where}: label {bad} out of range 0..{_N_CLASSES - 1}")
    return labels.astype(np.int64)


def _python_batch(data: bytes, where: str) -> tuple[Array, Array]:
    obj = load_pickle(data, where)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, found {type(obj).__name__}")
    pixels = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if pixels is None or labels is None:
        raise DataError(f"{where}: missing b'data' or b'labels' (keys: {sorted(map(str, obj))})")
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
        raise DataError(f"{where}: b'data' must be uint8 of shape (n, {_PIXELS}), found {found}")
    try:
        label_array = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: b'labels' is not a list of integers") from exc
    return pixels, _check_labels(label_array, pixels.shape[0], where)


def _binary_batch(data: bytes, where: str) -> tuple[Array, Array]:
    record = _PIXELS + 1
    if not data or len(data) % record:
        raise DataError(
            f"{where}: {len(data)} bytes is not a whole number of {record}-byte records "
            "(truncated or not a CIFAR-10 binary batch)"
        )
    rows = np.frombuffer(data, np.uint8).reshape(-1, record)
    return rows[:, 1:], _check_labels(rows[:, 0], rows.shape[0], where)


def _class_names(files: _Files) -> list[str]:
    if "batches.meta" in files:
        where, read = files["batches.meta"]
        meta = load_pickle(read(), where)
        names = (
            meta.get(b"label_names", meta.get("label_names")) if isinstance(meta, dict) else None
        )
        if not isinstance(names, list):
            raise DataError(f"{where}: expected a dict with b'label_names'")
        decoded = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    elif "batches.meta.txt" in files:
        where, read = files["batches.meta.txt"]
        decoded = [line.strip() for line in read().decode(errors="replace").splitlines()]
        decoded = [n for n in decoded if n]
    else:
        return list(CIFAR10_CLASSES)
    if len(decoded) != _N_CLASSES:
        raise DataError(f"{where}: expected {_N_CLASSES} class names, found {len(decoded)}")
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


class Cifar10(DatasetSource):
    """CIFAR-10's 50,000 training and 10,000 test images, 32x32x3 uint8, ten classes."""

    def __init__(self, params: Cifar10Params) -> None:
        self.path = params.path

    def load(self, rng: np.random.Generator) -> RawDataset:
        root = existing_path(self.path, "cifar10")
        files = _archive_files(root) if root.is_file() else _dir_files(root)
        binary = "data_batch_1" not in files and "test_batch" not in files
        suffix = ".bin" if binary else ""
        parse = _binary_batch if binary else _python_batch
        numbers = sorted(
            int(m.group(1))
            for name in files
            if (m := _BATCH_RE.match(name)) and name.endswith(".bin") == binary
        )
        missing = [f"data_batch_{k}{suffix}" for k in range(1, max(numbers, default=1) + 1)] + [
            f"test_batch{suffix}"
        ]
        missing = [m for m in missing if m not in files]
        if missing:
            raise DataError(f"dataset 'cifar10': {root}: missing {', '.join(missing)}")

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
