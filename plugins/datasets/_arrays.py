"""Arrays from the user's files: ``.npz`` archives or ``.npy`` files, and CSV tables.

Both sources have a ``shape(rng)`` (see :class:`optlab._training.data.SupportsShape`) that measures
the data without reading the features: an ``.npz`` member's or ``.npy`` file's header, a
CSV's label column; the labels are read (they are small, and the classes are counted from
them).

Memory-mapping (``data.mmap: true``): a ``.npy`` file is opened with
``np.load(mmap_mode="r")``; a member of an *uncompressed* ``.npz`` (written by ``np.savez``)
is memory-mapped at its offset inside the archive, since the zip stores it as is. A
*compressed* ``.npz`` (``np.savez_compressed``) cannot be mapped: that is a :class:`DataError`
asking for ``np.savez`` or ``.npy`` files (or ``data.mmap: false``).
"""

from __future__ import annotations

import csv
import itertools
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from pydantic import Field

from optlab import Array, DataError, DatasetSource, DataShape, Params, RawDataset

from ._common import encode_labels, existing_path, shape_of, stand_in

__all__ = ["Csv", "CsvParams", "Npz", "NpzParams"]


class NpzParams(Params):
    """Where the arrays are and what they are called."""

    path: Path = Field(
        description="An .npz archive, or a directory of .npy files named after the keys below."
    )
    x_key: str = Field(
        "X",
        min_length=1,
        description="Name of the (N, F) feature array; (N, H, W) or (N, H, W, 3) images are "
        "flattened, and their weights drawn as templates.",
    )
    y_key: str = Field("y", min_length=1, description="Name of the (N,) label array.")
    x_test_key: str = Field(
        "X_test",
        min_length=1,
        description="Name of the dataset's own test features, if any; unless given, also "
        "spelled x_test, Xtest, X_te, test_X, X_tst, test_features, <x_key>_test, ...",
    )
    y_test_key: str = Field(
        "y_test",
        min_length=1,
        description="Name of the dataset's own test labels, if any; unless given, also "
        "spelled Y_test, ytest, y_te, test_y, y_tst, test_labels, <y_key>_test, ...",
    )
    class_names: list[str] | None = Field(
        None, min_length=1, description="Names of integer labels 0..C-1 (default '0'..'C-1')."
    )


def _npz_member_mmap(path: Path, info: zipfile.ZipInfo, key: str) -> Array:
    """Memory-map one stored (uncompressed) ``.npy`` member ``key`` of a zip archive."""
    where = f"{path}:{key}"
    if info.compress_type != zipfile.ZIP_STORED:
        raise DataError(
            f"{where}: compressed .npz members cannot be memory-mapped; save with np.savez "
            "(not savez_compressed) or as .npy files, or set data.mmap: false",
            key="path",
        )
    with path.open("rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise DataError(f"{where}: corrupt zip local header", key="path")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        shape, fortran, dtype = _read_header(f, path, key)
        offset = f.tell()
    return np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


def _objects(file: Path, key: str) -> DataError:
    """The error for an array of Python objects (``np.array`` of images of different sizes
    makes one), which only pickle could load."""
    return DataError(
        f"{file}: unreadable '{key}': an array of Python objects (images of different sizes, or "
        "mixed types?); store one numeric array, every example of the same shape",
        key="path",
    )


def _header(zf: zipfile.ZipFile, name: str, file: Path, key: str) -> Array:
    """A stand-in for the member ``name`` (see :func:`._common.stand_in`), from its ``.npy``
    header: a few bytes are read (decompressed), never the values. An array of objects is a
    :class:`DataError` naming ``file`` and ``key``."""
    with zf.open(name) as f:
        shape, _, dtype = _read_header(f, file, key)
    return stand_in(shape, dtype)


def _read_header(f: IO[bytes], file: Path, key: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """The shape, Fortran order and dtype in the ``.npy`` header at ``f``'s position (of the
    array ``key`` of ``file``); an array of objects is :func:`_objects`' error."""
    version = np.lib.format.read_magic(f)
    fmt = np.lib.format
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if dtype.hasobject:
        raise _objects(file, key)
    return shape, fortran, dtype


def _load_npz(
    path: Path, keys: list[str], mmap: bool, headers: tuple[str, ...] = ()
) -> tuple[dict[str, Array], list[str]]:
    """The arrays named ``keys`` that exist in the archive, and every name it holds; those
    named in ``headers`` (unless ``mmap``) are stand-ins read from their headers."""
    out: dict[str, Array] = {}
    try:
        if mmap:
            with zipfile.ZipFile(path) as zf:
                members = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
            for key in keys:
                if key in members:
                    out[key] = _npz_member_mmap(path, members[key], key)
            return out, sorted(members)
        with np.load(path, allow_pickle=False) as archive:
            stored = set(archive.zip.namelist())
            for key in keys:
                if key in archive.files:
                    name = key if key in stored else f"{key}.npy"  # as np.load looks it up
                    head = _header(archive.zip, name, path, key)  # objects: an error
                    out[key] = head if key in headers else archive[key]
            return out, sorted(archive.files)
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable .npz ({exc})", key="path") from exc


def _load_npy_dir(
    path: Path, keys: list[str], mmap: bool, headers: tuple[str, ...] = ()
) -> tuple[dict[str, Array], list[str]]:
    """The ``<key>.npy`` files of a directory that exist, and every .npy name there; those
    named in ``headers`` are memory-mapped (only their header is read)."""
    out: dict[str, Array] = {}
    for key in keys:
        f = path / f"{key}.npy"
        if f.is_file():
            mapped = mmap or key in headers
            try:
                with f.open("rb") as opened:
                    _read_header(opened, f, key)  # an array of objects: an error
                out[key] = np.load(f, mmap_mode="r" if mapped else None, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise DataError(f"{f}: unreadable .npy ({exc})", key="path") from exc
    return out, sorted(f.stem for f in path.glob("*.npy"))


_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"})
_IMAGES_HINT = (
    "; image files are not read: stack the images into one array X of shape (N, H, W) or "
    "(N, H, W, 3), their labels into y, and np.savez both"
)


def _holds_images(folder: Path) -> bool:
    """Whether ``folder``, or a folder in it (one per class), holds image files (the first
    thousand entries looked at)."""
    entries = itertools.chain(folder.glob("*"), folder.glob("*/*"))
    return any(e.suffix.lower() in _IMAGE_SUFFIXES for e in itertools.islice(entries, 1000))


def _spelled(name: str) -> str:
    """``name`` in lower case without separators: ``X_test``, ``x-test`` and ``Xtest`` alike."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


#: how the test features and labels are commonly named (:func:`_spelled`), besides
#: ``<x_key>_test`` and ``test_<x_key>`` (``<y_key>`` alike)
_X_TEST_NAMES = frozenset(
    {"xtest", "testx", "xte", "xtst", "testdata", "datatest", "testfeatures", "featurestest"}
    | {"testimages", "imagestest", "testinputs", "inputstest", "testsamples", "xtestdata"}
)
_Y_TEST_NAMES = frozenset(
    {"ytest", "testy", "yte", "ytst", "testlabels", "labelstest", "testlabel", "labeltest"}
    | {"testtargets", "targetstest", "testtarget", "targettest", "testclasses", "ytestlabels"}
)


def _test_like(name: str) -> bool:
    """Whether ``name`` reads as a test split's array: a word ``test``, ``tst`` or ``te`` in it
    (``X_test``, ``testLabels``, ``x-te``), or a spelling of :data:`_X_TEST_NAMES` or
    :data:`_Y_TEST_NAMES` (``Xtest``); not ``latest`` or ``contest``."""
    words = re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", name)
    spelled = _spelled(name)
    return bool({w.lower() for w in words} & {"test", "tst", "te"}) or spelled in (
        _X_TEST_NAMES | _Y_TEST_NAMES
    )


def _archive_names(path: Path) -> list[str]:
    """The arrays' names in an archive (``.npy`` left off) or the stems of a folder's ``.npy``
    files: what :func:`_load_npz` and :func:`_load_npy_dir` report as available."""
    if not path.is_file():
        return sorted(f.stem for f in path.glob("*.npy"))
    try:
        with zipfile.ZipFile(path) as zf:
            return sorted(n.removesuffix(".npy") for n in zf.namelist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable .npz ({exc})", key="path") from exc


def _test_keys(path: Path, p: NpzParams, names: list[str]) -> tuple[str, str]:
    """The names of the test features and labels to read among ``names``: ``x_test_key`` and
    ``y_test_key`` when given other than their defaults (an error when absent), else the one
    array of each spelled as test features (labels) are (:data:`_X_TEST_NAMES`,
    ``<x_key>_test``), the defaults when there is none (nothing to read). Arrays named like
    a test split that are not read when no test split is found are an error: the run would
    draw its test split from the training data without a word.

    Raises
    ------
    DataError
        A given key is absent, two arrays are spelled as one key's, or test-like arrays are
        left unread (keys ``x_test_key``/``y_test_key``).
    """
    found = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    picked = []
    for param, default, own, forms in (
        ("x_test_key", p.x_test_key, p.x_key, _X_TEST_NAMES),
        ("y_test_key", p.y_test_key, p.y_key, _Y_TEST_NAMES),
    ):
        # given: a name other than the field's default (a run's stored settings, which
        # landscape and the run's spec.yaml load again, spell the default out)
        if default != type(p).model_fields[param].default:
            if default not in names:
                raise DataError(
                    f"{path}: no array '{default}' (found: {found}); set {param}, or leave it "
                    "out for data without a test split",
                    key=param,
                )
            picked.append(default)
            continue
        spellings = forms | {_spelled(own) + "test", "test" + _spelled(own)}
        candidates = [default] if default in names else []  # the name itself first
        candidates = candidates or [n for n in names if _spelled(n) in spellings]
        if len(candidates) > 1:
            raise DataError(
                f"{path}: arrays {', '.join(map(repr, candidates))} are all named like the test "
                f"{'features' if param == 'x_test_key' else 'labels'}; set {param} to the one "
                "to read",
                key=param,
            )
        picked.append(candidates[0] if candidates else default)
    x_test, y_test = picked
    if x_test not in names and y_test not in names:
        used = {p.x_key, p.y_key}
        unread = [n for n in names if n not in used and _test_like(n)]
        if unread:
            one = len(unread) == 1
            raise DataError(
                f"{path}: {'array' if one else 'arrays'} {', '.join(map(repr, unread[:4]))} "
                f"{'looks' if one else 'look'} like a test split but not read (test features "
                f"and labels are read from '{x_test}' and '{y_test}'); set x_test_key and "
                "y_test_key to read them",
                key="x_test_key",
            )
    return x_test, y_test


def _check_archive(path: Path, p: NpzParams) -> None:
    """A :class:`DataError` saying what ``path`` is when it is not a zip archive (``np.load``
    would return a ``.npy`` file's one array, or try to unpickle any other file)."""
    try:
        with path.open("rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise DataError(f"{path}: unreadable .npz ({exc})", key="path") from exc
    if magic.startswith(b"PK"):
        return
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        raise DataError(f"{path}: an image, not an .npz archive{_IMAGES_HINT}", key="path")
    if magic == b"\x93NUMPY":
        found = "a single .npy file"
        fix = f"give the folder holding {p.x_key}.npy and {p.y_key}.npy, or an .npz archive"
    else:
        found = "not an .npz archive (np.savez writes one)"
        fix = (
            "a CSV file is read by data.name: csv"
            if path.suffix.lower() in (".csv", ".tsv", ".txt")
            else "give an .npz archive or a folder of .npy files"
        )
    raise DataError(f"{path}: {found}; {fix}", key="path")


class Npz(DatasetSource):
    """Features and labels from an ``.npz`` archive or a directory of ``.npy`` files."""

    def __init__(self, params: NpzParams) -> None:
        self.params = params

    def load(self, rng: np.random.Generator) -> RawDataset:
        return self._checked(self._load(mmap=False))

    def load_mmap(self, rng: np.random.Generator) -> RawDataset:
        """:meth:`load`, memory-mapping the feature arrays (``data.mmap: true``)."""
        return self._checked(self._load(mmap=True))

    @staticmethod
    def _checked(raw: RawDataset) -> RawDataset:
        shape_of(raw, "npz")  # the shape checks, as :meth:`shape` makes them (key: path)
        return raw

    def shape(self, rng: np.random.Generator) -> DataShape:
        """The sizes :meth:`load` gives, from the feature arrays' ``.npy`` headers and the
        labels; raises the :class:`DataError` :meth:`load` would for a missing or unreadable
        path, missing keys or labels, mismatched shapes."""
        return shape_of(self._load(mmap=False, headers=True), "npz")

    def shape_mmap(self, rng: np.random.Generator) -> DataShape:
        """:meth:`shape` as :meth:`load_mmap` sees the data (a compressed archive is an
        error); mapping reads only the headers."""
        return shape_of(self._load(mmap=True), "npz")

    def _load(self, mmap: bool, headers: bool = False) -> RawDataset:
        """The arrays as :class:`RawDataset`; with ``headers``, the features (training and
        test) are stand-ins read from their ``.npy`` headers (see :meth:`shape`)."""
        p = self.params
        path = existing_path(p.path, "npz")
        if path.is_file():
            _check_archive(path, p)
        names = _archive_names(path)
        x_test_key, y_test_key = (
            _test_keys(path, p, names) if p.x_key in names else (p.x_test_key, p.y_test_key)
        )
        keys = [p.x_key, p.y_key, x_test_key, y_test_key]
        load = _load_npz if path.is_file() else _load_npy_dir
        arrays, available = load(path, keys, mmap, (p.x_key, x_test_key) if headers else ())
        if not available:
            held = (
                f"the archive holds no arrays; expected '{p.x_key}' and '{p.y_key}'"
                if path.is_file()
                else f"the folder holds no .npy files; expected {p.x_key}.npy and {p.y_key}.npy"
                + (_IMAGES_HINT if _holds_images(path) else "")
            )
            raise DataError(f"{path}: {held}", key="path")
        if p.x_key not in arrays and any(
            Path(a).suffix.lower() in _IMAGE_SUFFIXES for a in available
        ):
            raise DataError(
                f"{path}: a zip of image files, not of arrays{_IMAGES_HINT}", key="path"
            )
        for param, key in (("x_key", p.x_key), ("y_key", p.y_key)):
            if key not in arrays:
                found = ", ".join(available[:10]) + (", ..." if len(available) > 10 else "")
                raise DataError(
                    f"{path}: no array '{key}' (found: {found}); set x_key/y_key", key=param
                )
        has_test = [k in arrays for k in (x_test_key, y_test_key)]
        if any(has_test) and not all(has_test):
            raise DataError(
                f"{path}: '{x_test_key}' and '{y_test_key}' must come together", key="path"
            )
        X, y = arrays[p.x_key], np.asarray(arrays[p.y_key])
        X_test = arrays[x_test_key] if all(has_test) else None
        y_test = np.asarray(arrays[y_test_key]) if all(has_test) else None
        for name, lab in ((p.y_key, y), (y_test_key, y_test)):
            if lab is not None and lab.ndim != 1:
                raise DataError(
                    f"{path}: '{name}' must be 1-d labels, found shape {lab.shape}"
                    + _labels_hint(lab),
                    key="path",
                )
        y_enc, y_test_enc, classes = encode_labels(y, y_test, str(path), p.class_names)
        return RawDataset(
            X=X,
            y=y_enc,
            classes=classes,
            X_test=X_test,
            y_test=y_test_enc,
            image_shape=_image_shape(X.shape),
            source=str(path),
        )


def _labels_hint(labels: Array) -> str:
    """What to store instead of labels of 2 dimensions: the column's values, or one-hot
    rows' classes."""
    if labels.ndim == 2 and 1 in labels.shape:
        return f"; store them as one row: y.reshape({labels.size})"
    if labels.ndim == 2 and labels.dtype.kind in "biuf" and labels.shape[1] <= labels.shape[0]:
        return "; one-hot rows? store each row's class: y.argmax(axis=1)"
    return ""


def _image_shape(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """One example's shape when the features are images, ``(N, H, W)`` or ``(N, H, W, C)``
    and ``(N, C, H, W)`` with one or three channels ``C``; else ``None``."""
    if len(shape) == 3 or (len(shape) == 4 and (shape[-1] in (1, 3) or shape[1] in (1, 3))):
        return tuple(int(n) for n in shape[1:])
    return None


class CsvParams(Params):
    """A CSV table: one example per row, one column of labels."""

    path: Path = Field(description="The CSV file.")
    label: str | int = Field(
        -1,
        description="Label column: its header name, or its index (negative from the end). "
        "Without it, a header naming another column label, class or target is an error.",
    )
    header: bool | None = Field(
        None, description="Whether the first row names the columns (default: autodetect)."
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="Field separator.")
    test_path: Path | None = Field(
        None, description="A second CSV file of the same layout: the dataset's own test split."
    )


#: workbooks of spreadsheet programs, which are no CSV text
_SPREADSHEETS = frozenset({".xlsx", ".xlsm", ".xls", ".ods", ".numbers"})
#: how CSV files are read: UTF-8, without the byte-order mark spreadsheets write at the start
#: (read as part of the first cell, it made a first row of numbers look like a header)
_ENCODING = "utf-8-sig"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_rows(path: Path, delimiter: str, key: str) -> tuple[int, list[list[str]]]:
    """The line (from 1) of the first row, and the fields of the first row and of the second
    when there is one (blank lines and ``#`` comments left out)."""
    rows: list[list[str]] = []
    first_line = 0
    try:
        with path.open(encoding=_ENCODING, newline="") as f:
            for number, line in enumerate(f, start=1):
                if line.strip() and not line.lstrip().startswith("#"):
                    first_line = first_line or number
                    # as the rows are read (csv, np.loadtxt): a quoted name may hold the
                    # delimiter, "length, cm"
                    cells = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter))
                    rows.append([c.strip().strip('"') for c in cells])
                    if len(rows) == 2:
                        break
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, key, exc) from exc
    except OSError as exc:
        raise DataError(f"{path}: unreadable CSV ({exc})", key=key) from exc
    if not rows:
        raise DataError(f"{path}: empty CSV file", key=key)
    return first_line, rows


def _not_utf8(path: Path, key: str, exc: UnicodeDecodeError) -> DataError:
    """The error for a file that is not UTF-8 text (a spreadsheet's plain 'CSV' may be
    Windows-1252): the line of its first byte that is not (the decoder's position counts
    from a block of the file, not from its start). A spreadsheet's workbook or an image is
    named for what it is (a zip's bytes said "an .npz is read by data.name: npz", a PNG's
    first line "save the file as UTF-8")."""
    suffix = path.suffix.lower()
    if suffix in _SPREADSHEETS:
        return DataError(
            f"{path}: a spreadsheet workbook, not CSV text; save the sheet as CSV (a "
            "spreadsheet's 'CSV UTF-8')",
            key=key,
        )
    if suffix in _IMAGE_SUFFIXES:
        return DataError(f"{path}: an image, not CSV text{_IMAGES_HINT}", key=key)
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if b"\0" in line:  # text has no NUL
                hint = "; an .npz is read by data.name: npz" if line.startswith(b"PK") else ""
                return DataError(f"{path}: a binary file, not CSV text{hint}", key=key)
            try:
                line.decode(_ENCODING)
            except UnicodeDecodeError as bad:
                return DataError(
                    f"{path}: line {number} is not UTF-8 text (byte 0x{line[bad.start]:02x}); "
                    "save the file as UTF-8 (a spreadsheet's 'CSV UTF-8')",
                    key=key,
                )
    return DataError(f"{path}: unreadable CSV ({exc})", key=key)  # pragma: no cover


def _check_widths(
    path: Path, delimiter: str, n_cols: int, key: str, columns: int, skip: int
) -> None:
    """Every row after the first ``skip`` lines (a header) has ``n_cols`` fields (``np.loadtxt``
    would silently read a longer row's first ``n_cols`` fields, and its label from the wrong
    column); where the rows end with delimiters (``n_cols`` is more than the ``columns`` of
    the table), every field after the table's columns is empty.

    Raises
    ------
    DataError
        Naming the first row (its line number) that has another number of fields.
    """
    with path.open(encoding=_ENCODING, newline="") as f:
        rows = csv.reader(f, delimiter=delimiter, quotechar='"')
        for row in rows:
            if rows.line_num <= skip or not row or not "".join(row).strip():
                continue
            if row[0].lstrip().startswith("#"):
                continue
            if len(row) != n_cols:
                raise DataError(
                    f"{path}: line {rows.line_num} has {len(row)} fields, not {n_cols}; "
                    "every row needs the same columns",
                    key=key,
                )
            if any(cell.strip() for cell in row[columns:]):
                raise DataError(
                    f"{path}: line {rows.line_num} has a value after the last column (the first "
                    f"row ends with '{delimiter}'); every row needs the same columns",
                    key=key,
                )


def _delimiter_hint(first: list[str], delimiter: str) -> str:
    """`` (fields separated by ';'? ...)`` when the first row is one field holding another
    usual delimiter, else ``""``."""
    seen = [d for d in (";", "\t", ",", "|") if d != delimiter and d in first[0]]
    return (
        f" (fields separated by {seen[0]!r}? set data.delimiter)"
        if len(first) == 1 and seen
        else ""
    )


def _columns(path: Path, p: CsvParams, key: str) -> tuple[int, list[int], int, int]:
    """Lines to skip (a header, with the comments and blank lines above it), the feature
    columns and the label column of ``path``, and the fields of a row: more than the columns
    when the rows end with delimiters (trailing commas make no empty columns, one of which
    would be the label); a header's trailing commas over rows without them are left out."""
    first_line, (first, *second) = _first_rows(path, p.delimiter, key)
    fields = len(first)
    while len(first) > 1 and first[-1] == "":  # 'a,b,label,,' (a spreadsheet's empty columns)
        first = first[:-1]
    n_cols = len(first)
    if isinstance(p.label, str):
        if p.header is False:
            raise DataError(
                f"{path}: label column '{p.label}' given by name but header: false", key="label"
            )
        if p.label not in first and _a_data_row(path, p.delimiter, key, first_line, first, second):
            # a first row of numbers (and a label) listed as "the header", 3072 pixels perhaps
            raise DataError(
                f"{path}: no column '{p.label}': the file has no header (its first row is "
                "numbers); set data.label to the label column's index (-1: the last)",
                key="label",
            )
        if p.label not in first:
            raise DataError(
                f"{path}: no column '{p.label}' in the header ({', '.join(first)})"
                f"{_delimiter_hint(first, p.delimiter)}; set label",
                key="label",
            )
        label = first.index(p.label)
        header = True
    else:
        if not -n_cols <= p.label < n_cols:
            raise DataError(
                f"{path}: label column {p.label} out of range for {n_cols} columns", key="label"
            )
        label = p.label % n_cols
        # a header of numbered columns (pandas writes 0,1,...,label): a word over numbers
        # in the label column tells it, as a word among the features does; over labels that
        # are words, feature columns named 0, 1, ..., D - 1 in order do
        numbers = second and label < len(second[0]) and _is_number(second[0][label])
        named = [c.strip() for i, c in enumerate(first) if i != label]
        counted = n_cols > 2 and named == [str(i) for i in range(n_cols - 1)]
        header = (
            p.header
            if p.header is not None
            else any(not _is_number(c) for c in named)
            or bool((numbers or counted) and not _is_number(first[label]))
            or _names_the_labels(path, p.delimiter, key, first_line, first, second, label)
        )
    if header and isinstance(p.label, int) and "label" not in p.model_fields_set:
        # the default, the last column, where another column is named as labels are (Kaggle's
        # MNIST CSV has 'label' first): its pixel values trained as hundreds of classes
        named_label = [c for c in first if c.strip().lower() in _LABEL_NAMES]
        if named_label and first[label].strip().lower() not in _LABEL_NAMES:
            raise DataError(
                f"{path}: the label is taken from the last column, '{first[label]}', but column "
                f"'{named_label[0]}' looks like the labels; set data.label: {named_label[0]} "
                f"(or data.label: {p.label} to keep the last column)",
                key="label",
            )
    if header and second and n_cols <= len(second[0]) < fields:
        fields = len(second[0])  # the header ends with more delimiters than the rows
    features = [i for i in range(n_cols) if i != label]
    if header and first[0] == "" and 0 in features and second and second[0][:1] == ["0"]:
        # pandas' DataFrame.to_csv writes its index first, with no name: 0, 1, 2, ... would
        # train as a feature (it did, without a word)
        raise DataError(
            f"{path}: the first column has no name in the header and counts from 0: pandas' "
            "index, which to_csv writes unless index=False; save the file with "
            "to_csv(..., index=False), or remove that column",
            key=key,
        )
    if not features:
        raise DataError(
            f"{path}: only one column{_delimiter_hint(first, p.delimiter)}; a CSV needs "
            "feature columns and a label",
            key=key,
        )
    # the lines to skip: a header's and the comments and blank lines above it
    return first_line if header else 0, features, label, fields


def _names_the_labels(
    path: Path,
    delimiter: str,
    key: str,
    first_line: int,
    first: list[str],
    second: list[list[str]],
    label: int,
) -> bool:
    """Whether ``first``, a row of numbers and a label cell (line ``first_line``), is a header
    all the same, over labels that are words (class names). It is when its label cell is a
    label column's name (label, class, ...), or a word no other row has in that column (a
    class of one example, the first) over feature cells that number the columns in order
    (wavelengths, pixels: ``400,410,420,species``; such a header was read as a data row, of a
    class 'species'). A class of one example over other numbers is asked about.

    Raises
    ------
    DataError
        (key ``header``) when the first row may be either.
    """
    cell = first[label]
    if not second or label >= len(second[0]) or _is_number(second[0][label]):
        return False  # no other row, or labels that are numbers: the caller's own rules
    if cell.strip().lower() in _LABEL_NAMES:
        return True
    if _repeated_below(path, delimiter, key, first_line, label, cell):
        return False  # a class of several examples: a data row
    if _numbered([c for i, c in enumerate(first) if i != label]):
        return True
    raise DataError(
        f"{path}: line {first_line} ({', '.join(first)}) may be a header or the only example of "
        f"class '{cell}'; set data.header: true (a header) or false (an example)",
        key="header",
    )


def _numbered(cells: list[str]) -> bool:
    """Whether ``cells`` are integers in increasing order: columns' names (wavelengths,
    pixels), not an example's values."""
    names = [c.strip() for c in cells]
    return all(re.fullmatch(r"-?\d+", c) for c in names) and all(
        int(a) < int(b) for a, b in itertools.pairwise(names)
    )


def _repeated_below(
    path: Path, delimiter: str, key: str, first_line: int, column: int, cell: str
) -> bool:
    """Whether a row after line ``first_line`` has ``cell`` in ``column`` (a class name that
    a later example has too: the first row is an example, not a header)."""
    try:
        with path.open(encoding=_ENCODING, newline="") as f:
            rows = csv.reader(f, delimiter=delimiter, quotechar='"')
            for row in rows:  # cells as _first_rows reads them
                later = rows.line_num > first_line and len(row) > column
                comment = bool(row) and row[0].lstrip().startswith("#")
                if later and not comment and row[column].strip().strip('"') == cell:
                    return True
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, key, exc) from exc
    return False


def _a_data_row(
    path: Path,
    delimiter: str,
    key: str,
    first_line: int,
    first: list[str],
    second: list[list[str]],
) -> bool:
    """Whether ``first``, the first row (line ``first_line``), is an example rather than a
    header, as :func:`_names_the_labels` tells them apart: all numbers, or numbers and one
    class name, unless that word is over a column of numbers, or is no later row's class
    and the numbers number the columns (``400,410,420,species`` over ``0.1,0.2,0.3,setosa``:
    wavelengths); ``5.1,3.5,1.4,setosa`` is an example."""
    words = [i for i, c in enumerate(first) if not _is_number(c)]
    if len(first) < 2 or len(words) > 1:
        return False
    if not words:
        return True
    (column,) = words
    if not second or column >= len(second[0]) or _is_number(second[0][column]):
        return False  # a word over numbers (or no other row): a column's name
    if _repeated_below(path, delimiter, key, first_line, column, first[column]):
        return True  # a class of several examples
    return not _numbered([c for i, c in enumerate(first) if i != column])


#: header names of a label column (lower case): one of them elsewhere than the default label
#: column (the last) is an error unless data.label is given
_LABEL_NAMES = frozenset({"label", "labels", "class", "classes", "target"})
#: where numpy's loadtxt says a value could not be read
_CELL = re.compile(r"at row (?P<row>\d+), column (?P<column>\d+)")
#: a CSV file up to this size is read whole by :meth:`Csv.shape` (``optlab validate``), so that
#: a feature that is not a number is found there too; a larger one has its labels read only
WHOLE_CSV_BYTES = 16 * 1024 * 1024


def _file_line(path: Path, skip: int, row: int) -> int:
    """The line (from 1) of ``path`` holding data row ``row`` (from 0) as numpy's loadtxt
    counts them: after ``skip`` lines, blank lines and ``#`` comments left out."""
    with path.open(encoding=_ENCODING, errors="replace") as lines:
        seen = -1
        for number, text in enumerate(lines, start=1):
            if number > skip and text.split("#", 1)[0].strip():
                seen += 1
                if seen == row:
                    return number
    return skip + row + 1


#: how spreadsheets, R and pandas write a missing value (compared in lower case)
_MISSING = frozenset({"na", "n/a", "nan", "null", "none", "?", "-"})


def _check_missing_labels(y: Array, path: Path, skip: int, label: int, key: str) -> None:
    """A :class:`DataError` naming the first missing label (R's ``NA``, ...) among labels
    that are otherwise numbers: it would be a class of its own, named ``NA``."""
    missing = np.isin(np.char.lower(y), list(_MISSING))
    if not missing.any() or missing.all():
        return
    try:
        y[~missing].astype(np.float64)
    except ValueError:
        return  # words: class names, one of which may be 'none'
    row = int(np.flatnonzero(missing)[0])
    raise DataError(
        f"{path}: missing label '{y[row]}' on line {_file_line(path, skip, row)}, column "
        f"{label + 1}; every row needs one: remove the rows of unknown class",
        key=key,
    )


def _read_csv(path: Path, p: CsvParams, key: str, features: bool = True) -> tuple[Array, Array]:
    """Features (N, F) float64 and labels (N,) (int64, or strings) of the file ``path``, the
    param ``key``; without ``features`` the features are a stand-in (:func:`stand_in`): only
    the label column is parsed."""
    skip, columns, label, fields = _columns(path, p, key)

    def column(usecols: list[int], dtype: type[Any], ndmin: Literal[1, 2]) -> Array:
        return np.loadtxt(
            path,
            dtype=dtype,
            delimiter=p.delimiter,
            skiprows=skip,
            usecols=usecols,
            ndmin=ndmin,
            encoding=_ENCODING,
            quotechar='"',
        )

    try:
        _check_widths(path, p.delimiter, fields, key, len(columns) + 1, skip)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            X = column(columns, np.float64, 2) if features else None
            y = column([label], str, 1)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, key, exc) from exc
    except (ValueError, OSError) as exc:
        message = str(exc).splitlines()[0]
        if cell := _CELL.search(message):  # numpy counts the data rows, not the file's lines
            line = _file_line(path, skip, int(cell["row"]))
            where = f"on line {line}, column {cell['column']}"
            message = message[: cell.start()] + where + message[cell.end() :]
        raise DataError(f"{path}: {message}", key=key) from exc
    if y.shape[0] == 0:
        raise DataError(f"{path}: no data rows", key=key)
    if X is not None and not np.isfinite(X).all():  # where in the file, as for a word
        row, col = (int(i[0]) for i in np.nonzero(~np.isfinite(X)))
        raise DataError(
            f"{path}: NaN or inf ({X[row, col]}) on line {_file_line(path, skip, row)}, "
            f"column {columns[col] + 1}; features must be finite numbers",
            key=key,
        )
    if X is None:
        X = stand_in((y.shape[0], len(columns)), np.dtype(np.float64))
    y = np.char.strip(y)
    empty = np.flatnonzero(y == "")
    if empty.size:  # a missing label was a class of its own, named ''
        raise DataError(
            f"{path}: no label on line {_file_line(path, skip, int(empty[0]))}, column "
            f"{label + 1}; every row needs one",
            key=key,
        )
    try:
        return X, y.astype(np.int64)
    except ValueError:
        pass
    try:  # 1.0 or 1.000000000000000000e+00 (np.savetxt) is the integer label 1, as in an .npz
        numbers = y.astype(np.float64)
    except ValueError:
        _check_missing_labels(y, path, skip, label, key)
        return X, y  # class names
    _check_missing_labels(y, path, skip, label, key)  # 'nan' among numbers
    fractional = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if fractional.any():  # a feature's column, most likely: the label is another
        row = int(np.flatnonzero(fractional)[0])
        raise DataError(
            f"{path}: label '{y[row]}' on line {_file_line(path, skip, row)}, column "
            f"{label + 1}, is not an integer: labels are integers 0..C-1 or class names; "
            "set data.label to the column of labels",
            key=key,
        )
    return X, numbers.astype(np.int64)


def _feature_names(path: Path, p: CsvParams, key: str) -> list[str] | None:
    """The names of the feature columns of ``path`` in order, from its header; ``None``
    without one."""
    skip, features, _, _ = _columns(path, p, key)
    if not skip:
        return None
    first = _first_rows(path, p.delimiter, key)[1][0]
    return [first[i] for i in features]


def _check_same_columns(path: Path, test: Path, p: CsvParams) -> None:
    """A :class:`DataError` (key ``test_path``) when both files name their feature columns
    and the names differ, in order: the columns are read by position, so a test file saved
    with its columns in another order would be tested on features in the wrong places."""
    names = _feature_names(path, p, "path")
    test_names = _feature_names(test, p, "test_path")
    if names is None or test_names is None or names == test_names:
        return
    raise DataError(
        f"{test}: feature columns ({', '.join(test_names)}) are not those of {path} "
        f"({', '.join(names)}), in order; save the test file with the same columns in the "
        "same order",
        key="test_path",
    )


class Csv(DatasetSource):
    """Numeric feature columns and one label column (integers or class names)."""

    def __init__(self, params: CsvParams) -> None:
        self.params = params

    def load(self, rng: np.random.Generator) -> RawDataset:
        raw = self._read(whole_up_to=float("inf"))
        shape_of(raw, "csv", test_key="test_path")  # the checks :meth:`shape` makes
        return raw

    def shape(self, rng: np.random.Generator) -> DataShape:
        """The sizes :meth:`load` gives; raises the :class:`DataError` :meth:`load` would for
        a missing, unreadable or empty file, ragged rows, a bad label column or labels, a test
        file of other columns, and, in files of up to :data:`WHOLE_CSV_BYTES` (read whole), a
        feature that is not a number. Larger files have their label column parsed only."""
        return shape_of(self._read(whole_up_to=WHOLE_CSV_BYTES), "csv", test_key="test_path")

    def _read(self, whole_up_to: float) -> RawDataset:
        """Both files; each of at most ``whole_up_to`` bytes with its features parsed, a
        larger one with its labels only (the features a stand-in)."""
        p = self.params
        path = existing_path(p.path, "csv", want_dir=False)
        X, y = _read_csv(path, p, "path", path.stat().st_size <= whole_up_to)
        X_test = y_test = None
        if p.test_path is not None:
            test = existing_path(p.test_path, "csv", want_dir=False, key="test_path")
            X_test, y_test = _read_csv(test, p, "test_path", test.stat().st_size <= whole_up_to)
            _check_same_columns(path, test, p)
        y_enc, y_test_enc, classes = encode_labels(y, y_test, str(path), test_key="test_path")
        return RawDataset(
            X=X, y=y_enc, classes=classes, X_test=X_test, y_test=y_test_enc, source=str(path)
        )
