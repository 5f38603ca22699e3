"""Helpers shared by the file-based dataset sources: paths, label encoding, messages."""

from __future__ import annotations

import math
import stat
from pathlib import Path
from typing import Any

import numpy as np

from optlab import Array, DataError, DataShape, RawDataset

__all__ = [
    "FEW_CLASSES",
    "encode_labels",
    "existing_path",
    "integral_labels",
    "shape_of",
    "stand_in",
]


def _kind(p: Path) -> str:
    """What ``p`` is, as a message says it: ``a directory``, ``a character device``, ..."""
    mode = p.stat().st_mode
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def existing_path(
    path: Path, dataset: str, *, want_dir: bool | None = None, key: str = "path"
) -> Path:
    """``path`` with ``~`` expanded, or a :class:`DataError` when it does not exist or is not
    what a dataset reads (a regular file, or with ``want_dir`` a directory; never a device, a
    pipe or a socket, which would block or read forever).

    Parameters
    ----------
    path : Path
        As the user gave it.
    dataset : str
        The dataset's name, for the message.
    want_dir : bool or None
        ``True``: must be a directory; ``False``: must be a file; ``None``: either.
    key : str
        The param ``path`` was given as (the error's :attr:`~optlab.InputError.key`).
    """
    p = Path(path).expanduser()
    if not p.exists():
        # where a relative path was looked for: `optlab landscape` (which takes no --set)
        # rebuilds a run from wherever it is started
        where = (
            ""
            if p.is_absolute()
            else (
                f" in {Path.cwd()} (a relative data.{key} is taken from the folder optlab runs in)"
            )
        )
        raise DataError(f"dataset '{dataset}': {p}: no such file or directory{where}", key=key)
    kind = _kind(p)
    wanted = {True: ("a directory",), False: ("a file",), None: ("a file", "a directory")}
    if kind not in wanted[want_dir]:
        expected = " or ".join(wanted[want_dir])
        raise DataError(f"dataset '{dataset}': {p}: expected {expected}, found {kind}", key=key)
    return p


def integral_labels(y: Array, where: str, key: str = "path") -> Array | None:
    """``y`` as int64 when its values are integers (any numeric dtype), else ``None``.

    Raises :class:`DataError` (with ``key``, the param naming the file) for numeric labels that
    are negative, fractional or not finite.
    """
    if y.dtype.kind in "biu":
        yi = y.astype(np.int64, copy=False)
    elif y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise DataError(
                f"{where}: labels must be integers or strings, found {y[bad[0]]} (label "
                f"{bad[0]}, counted from 0)",
                key=key,
            )
        yi = y.astype(np.int64)
    else:
        return None
    if yi.size and int(yi.min()) < 0:
        raise DataError(f"{where}: negative label {int(yi.min())}; labels must be 0..C-1", key=key)
    return yi


#: Classes (``max label + 1``) accepted whatever the number of examples.
FEW_CLASSES = 1000


def encode_labels(
    y: Array,
    y_test: Array | None,
    where: str,
    class_names: list[str] | None = None,
    *,
    key: str = "path",
    test_key: str | None = None,
) -> tuple[Array, Array | None, list[str]]:
    """Labels as int64 in ``0..C-1`` and the class names.

    Integer labels are kept (``C = max + 1`` or ``len(class_names)``). ``C`` may exceed the
    number of examples (a few examples of a larger problem) up to :data:`FEW_CLASSES`; beyond
    both, the labels are not class indices and ``C`` would be absurd (a label of ``10**9``
    would mean a billion class names): an error. String labels are mapped to
    ``0..C-1`` in sorted order, the strings becoming the class names.

    Parameters
    ----------
    y : (N,) array
        Training labels, numeric or strings.
    y_test : (M,) array or None
        The dataset's own test labels, encoded with the same mapping.
    where : str
        File (and dataset) for messages.
    class_names : list of str, optional
        Names for integer labels.
    key, test_key : str
        The params naming the files of ``y`` and ``y_test`` (default: ``key``), for the
        errors' :attr:`~optlab.InputError.key`; a class name problem is ``class_names``'.

    Returns
    -------
    y, y_test : (N,), (M,) int64 arrays
    classes : list of str
    """
    yi = integral_labels(y, where, key)
    yti = None if y_test is None else integral_labels(y_test, where, test_key or key)
    if yi is not None and (y_test is None or yti is not None):
        top = max(int(yi.max(initial=-1)), -1 if yti is None else int(yti.max(initial=-1)))
        if class_names is not None:
            if top >= len(class_names):
                raise DataError(
                    f"{where}: label {top} out of range for {len(class_names)} class names",
                    key="class_names",
                )
            return yi, yti, list(class_names)
        examples = len(yi) + (0 if yti is None else len(yti))
        if top >= max(examples, FEW_CLASSES):  # more classes than examples, and many
            raise DataError(
                f"{where}: label {top} among {examples} examples: integer labels are class "
                f"indices 0..C-1, and {top + 1} classes cannot all be present; renumber the "
                "labels 0..C-1, or store them as strings (each distinct string is a class)",
                key=key,
            )
        return yi, yti, [str(i) for i in range(top + 1)]
    if class_names is not None:
        raise DataError(
            f"{where}: class names can only be given for integer labels", key="class_names"
        )
    ys = y.astype(str)
    yts = None if y_test is None else y_test.astype(str)
    both = ys if yts is None else np.concatenate([ys, yts])
    names, codes = np.unique(both, return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    return codes[: ys.shape[0]], (None if yts is None else codes[ys.shape[0] :]), list(names)


def stand_in(shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
    """An array of ``shape`` and ``dtype`` that holds no data: one zero, broadcast (read-only,
    no memory). A ``shape`` method builds its :class:`RawDataset` with these in place of the
    features it did not read, so the checks :meth:`load` makes apply to it unchanged."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def shape_of(raw: RawDataset, dataset: str, test_key: str = "path") -> DataShape:
    """The sizes of ``raw``, whose features may be stand-ins (:func:`stand_in`), after the shape
    checks optlab makes of loaded data, with the same messages: features of 2 dimensions or
    more, numeric, one label per example, the test split with the training data's features
    (and, when both are images, their shape: the same size in another layout is refused).
    Only shapes and dtypes are looked at.

    Parameters
    ----------
    raw : RawDataset
        ``X`` (N, ...) and ``y`` (N,), optionally ``X_test`` (M, ...) and ``y_test`` (M,).
    dataset : str
        The dataset's name, for messages.
    test_key : str
        The param naming the test split's file (errors about the training data have
        ``key="path"``).

    Returns
    -------
    DataShape
        ``n_features`` is ``X``'s dimensions after the first, multiplied.
    """
    where = f"dataset '{dataset}' ({raw.source})" if raw.source else f"dataset '{dataset}'"
    widths = []
    for part, key, X, y in (
        ("training data", "path", raw.X, raw.y),
        ("test split", test_key, raw.X_test, raw.y_test),
    ):
        if X is None or y is None:
            continue
        if X.ndim < 2:
            raise DataError(
                f"{where}: {part} features must be (N, F), found shape {X.shape}", key=key
            )
        if X.dtype.kind not in "biuf":
            raise DataError(
                f"{where}: {part} features must be numbers, found dtype {X.dtype}", key=key
            )
        if X.shape[0] != y.shape[0]:
            # one example per row: (F, N) features of N labels are the transpose
            turned = X.ndim == 2 and X.shape[1] == y.shape[0]
            fix = (
                f"the features look transposed: store them as ({X.shape[1]}, {X.shape[0]}), "
                "one example per row"
                if turned
                else ""
            )
            raise DataError(
                f"{where}: {part} has {X.shape[0]} examples but {y.shape[0]} labels; "
                + (fix or "features and labels must have the same length"),
                key=key,
            )
        widths.append(math.prod(X.shape[1:]))
    if len(widths) == 2 and widths[0] != widths[1]:
        raise DataError(
            f"{where}: test split has {widths[1]} features, training data {widths[0]}",
            key=test_key,
        )
    if raw.X_test is not None and min(raw.X.ndim, raw.X_test.ndim) > 2:
        # images of one size in another layout, (N, H, W, 3) and (N, 3, H, W): the same
        # number of features, every one in another place
        train, test = (tuple(n for n in X.shape[1:] if n != 1) for X in (raw.X, raw.X_test))
        if train != test:
            turn = ""
            if len(train) == 3 and test == (*train[-1:], *train[:-1]):
                turn = " (X_test.transpose(0, 2, 3, 1): channels last)"
            elif len(train) == 3 and test == (*train[1:], *train[:1]):
                turn = " (X_test.transpose(0, 3, 1, 2): channels first)"
            raise DataError(
                f"{where}: test split's examples are of shape {raw.X_test.shape[1:]}, the "
                f"training data's {raw.X.shape[1:]}; store both with the same layout{turn}",
                key=test_key,
            )
    return DataShape(
        n_examples=int(raw.X.shape[0]),
        n_features=int(widths[0]),
        n_classes=len(raw.classes),
        n_test=None if raw.X_test is None else int(raw.X_test.shape[0]),
        source=raw.source,
    )
