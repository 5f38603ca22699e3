"""Helpers shared by the file-based dataset sources: paths, label encoding, messages."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from optlab import Array, DataError

__all__ = ["FEW_CLASSES", "encode_labels", "existing_path", "integral_labels"]


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


def existing_path(path: Path, dataset: str, *, want_dir: bool | None = None) -> Path:
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
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"dataset '{dataset}': {p}: no such file or directory; "
            "pass --set data.path=... with the right path"
        )
    kind = _kind(p)
    wanted = {True: ("a directory",), False: ("a file",), None: ("a file", "a directory")}
    if kind not in wanted[want_dir]:
        expected = " or ".join(wanted[want_dir])
        raise DataError(f"dataset '{dataset}': {p}: expected {expected}, found {kind}")
    return p


def integral_labels(y: Array, where: str) -> Array | None:
    """``y`` as int64 when its values are integers (any numeric dtype), else ``None``.

    Raises :class:`DataError` for numeric labels that are negative, fractional or not finite.
    """
    if y.dtype.kind in "biu":
        yi = y.astype(np.int64, copy=False)
    elif y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise DataError(f"{where}: labels must be integers or strings, found fractional/NaN")
        yi = y.astype(np.int64)
    else:
        return None
    if yi.size and int(yi.min()) < 0:
        raise DataError(f"{where}: negative label {int(yi.min())}; labels must be 0..C-1")
    return yi


#: Classes (``max label + 1``) accepted whatever the number of examples.
FEW_CLASSES = 1000


def encode_labels(
    y: Array,
    y_test: Array | None,
    where: str,
    class_names: list[str] | None = None,
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

    Returns
    -------
    y, y_test : (N,), (M,) int64 arrays
    classes : list of str
    """
    yi = integral_labels(y, where)
    yti = None if y_test is None else integral_labels(y_test, where)
    if yi is not None and (y_test is None or yti is not None):
        top = max(int(yi.max(initial=-1)), -1 if yti is None else int(yti.max(initial=-1)))
        if class_names is not None:
            if top >= len(class_names):
                raise DataError(
                    f"{where}: label {top} out of range for {len(class_names)} class names"
                )
            return yi, yti, list(class_names)
        examples = len(yi) + (0 if yti is None else len(yti))
        if top >= max(examples, FEW_CLASSES):  # more classes than examples, and many
            raise DataError(
                f"{where}: label {top} among {examples} examples: integer labels are class "
                f"indices 0..C-1, and {top + 1} classes cannot all be present; renumber the "
                "labels 0..C-1, or store them as strings (each distinct string is a class)"
            )
        return yi, yti, [str(i) for i in range(top + 1)]
    if class_names is not None:
        raise DataError(f"{where}: class names can only be given for integer labels")
    ys = y.astype(str)
    yts = None if y_test is None else y_test.astype(str)
    both = ys if yts is None else np.concatenate([ys, yts])
    names, codes = np.unique(both, return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    return codes[: ys.shape[0]], (None if yts is None else codes[ys.shape[0] :]), list(names)
