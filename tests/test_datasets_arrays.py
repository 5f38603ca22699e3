"""The npz and csv dataset sources, through load_data and the registry."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optlab._contract.registry import Registry
from optlab._errors import DataError
from optlab._spec.experiment import ComponentSpec, DataOptions
from optlab._training.data import PreparedData, inspect_data, load_data

RAW = DataOptions(center=False, bias=False, val=0.0, test=0.0)


pytestmark = pytest.mark.usefixtures("fresh_data_cache")


def _spec(registry: Registry, name: str, **params: Any) -> ComponentSpec:
    record = registry.get("dataset", name)
    return ComponentSpec("dataset", name, record.params(**params), record)


def _load(registry: Registry, name: str, options: DataOptions = RAW, **params: Any) -> PreparedData:
    return load_data(_spec(registry, name, **params), options, np.random.default_rng(0))


def _arrays(n: int = 30, f: int = 4) -> tuple[np.ndarray, np.ndarray]:
    X = np.arange(n * f, dtype=np.float32).reshape(n, f)
    return X, np.arange(n) % 3


# --------------------------------------------------------------------------------------------
# npz
# --------------------------------------------------------------------------------------------


def test_npz_default_keys_and_own_test_split(registry: Registry, tmp_path: Path) -> None:
    X, y = _arrays()
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y, X_test=X[:6] + 1000, y_test=y[:6])
    d = _load(registry, "npz", path=path)
    np.testing.assert_array_equal(d.X_train, X)
    np.testing.assert_array_equal(d.X_test, X[:6] + 1000)
    assert d.summary.classes == ("0", "1", "2") and d.X_train.dtype == np.float64


@pytest.mark.parametrize(
    ("x_test", "y_test"),
    [("Xtest", "ytest"), ("x_test", "y_test"), ("X_te", "y_te"), ("test_X", "test_labels")],
)
@pytest.mark.parametrize("folder", [False, True], ids=["npz", "npy"])
def test_npz_test_arrays_under_common_names_are_the_test_split(
    registry: Registry, tmp_path: Path, x_test: str, y_test: str, folder: bool
) -> None:
    # they were skipped without a word: the test split was drawn from the training data
    X, y = _arrays()
    arrays = {"X": X, "y": y, x_test: X[:6] + 1000, y_test: y[:6]}
    if folder:
        path = tmp_path / "npy"
        path.mkdir()
        for key, a in arrays.items():
            np.save(path / f"{key}.npy", a)
    else:
        path = tmp_path / "d.npz"
        np.savez(path, **arrays)
    options = DataOptions(center=False, bias=False, val=0.0)
    d = _load(registry, "npz", options, path=path)
    np.testing.assert_array_equal(d.X_train, X)
    np.testing.assert_array_equal(d.X_test, X[:6] + 1000)
    assert d.summary.own_test
    spec = _spec(registry, "npz", path=path)
    assert inspect_data(spec, options, np.random.default_rng(0)).n_test == 6


def test_npz_test_arrays_not_read_are_named(registry: Registry, tmp_path: Path) -> None:
    X, y = _arrays()
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y, Xt=X[:6], labels_tst=y[:6], latest=np.zeros(2))
    with pytest.raises(DataError) as info:
        _load(registry, "npz", path=path)
    assert str(info.value).endswith(
        "d.npz: array 'labels_tst' looks like a test split but not read (test features and "
        "labels are read from 'X_test' and 'y_test'); set x_test_key and y_test_key to read them"
    )
    assert info.value.key == "x_test_key"
    d = _load(registry, "npz", RAW, path=path, x_test_key="Xt", y_test_key="labels_tst")
    np.testing.assert_array_equal(d.X_test, X[:6])
    np.savez(path, X=X, y=y, Xtest=X[:6], x_te=X[:6], y_test=y[:6])
    with pytest.raises(DataError, match="arrays 'Xtest', 'x_te' are all named like the test f"):
        _load(registry, "npz", path=path)
    with pytest.raises(DataError, match=r"no array 'Xt' \(found: X, Xtest, x_te, y, y_test\)"):
        _load(registry, "npz", path=path, x_test_key="Xt")


def test_npz_named_keys_string_labels_and_class_names(registry: Registry, tmp_path: Path) -> None:
    X, y = _arrays()
    names = np.array(["zebra", "ant", "moth"])[y]
    np.savez_compressed(tmp_path / "a.npz", feats=X, labels=names)
    d = _load(registry, "npz", path=tmp_path / "a.npz", x_key="feats", y_key="labels")
    assert d.summary.classes == ("ant", "moth", "zebra")
    np.testing.assert_array_equal(np.array(d.summary.classes)[d.y_train], names)
    np.savez(tmp_path / "b.npz", X=X, y=y)
    d = _load(registry, "npz", path=tmp_path / "b.npz", class_names=["a", "b", "c", "d"])
    assert d.summary.n_classes == 4


def test_npz_mmap_uncompressed_archive_and_npy_directory(
    registry: Registry, tmp_path: Path
) -> None:
    X, y = _arrays()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    (tmp_path / "npy").mkdir()
    np.save(tmp_path / "npy" / "X.npy", X)
    np.save(tmp_path / "npy" / "y.npy", y)
    for path in (tmp_path / "d.npz", tmp_path / "npy"):
        source = _spec(registry, "npz", path=path).build()
        raw = source.load_mmap(np.random.default_rng(0))
        assert isinstance(raw.X, np.memmap) and not raw.X.flags.writeable
        np.testing.assert_array_equal(raw.X, X)
        mapped = _load(registry, "npz", DataOptions(mmap=True, dtype="float32"), path=path)
        plain = _load(registry, "npz", DataOptions(mmap=False, dtype="float32"), path=path)
        np.testing.assert_array_equal(mapped.X_train, plain.X_train)
        assert mapped.summary.sha256 == plain.summary.sha256


def test_npz_mmap_of_compressed_archive_is_a_clear_error(
    registry: Registry, tmp_path: Path
) -> None:
    X, y = _arrays()
    np.savez_compressed(tmp_path / "c.npz", X=X, y=y)
    with pytest.raises(DataError, match=r"c\.npz:X: compressed .*np\.savez"):
        _load(registry, "npz", DataOptions(mmap=True), path=tmp_path / "c.npz")


@pytest.mark.parametrize(
    ("shape", "image_shape"),
    [
        ((30, 8, 8), (8, 8)),
        ((30, 6, 4, 3), (6, 4, 3)),
        ((30, 3, 6, 4), (3, 6, 4)),
        ((30, 6, 4, 1), (6, 4, 1)),
        ((30, 32), None),  # flat features: nothing tells their image shape
        ((30, 2, 2, 5), None),  # five channels are not an image optlab draws
    ],
)
def test_npz_images_keep_their_shape_for_the_weight_templates(
    registry: Registry, tmp_path: Path, shape: tuple[int, ...], image_shape: tuple[int, ...] | None
) -> None:
    X = np.random.default_rng(0).random(shape, dtype=np.float32)
    np.savez(tmp_path / "images.npz", X=X, y=np.arange(30) % 3)
    np.save((tmp_path / "X.npy"), X)
    np.save((tmp_path / "y.npy"), np.arange(30) % 3)
    for path in (tmp_path / "images.npz", tmp_path):
        d = _load(registry, "npz", path=path)
        assert d.summary.image_shape == image_shape
        assert d.X_train.shape == (30, int(np.prod(shape[1:])))


def test_a_run_on_npz_images_stores_its_weight_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Any
) -> None:
    import optlab
    from optlab._tracking.store import connect

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    X = rng.random((60, 6, 6, 3), dtype=np.float32) + y[:, None, None, None]
    np.savez(tmp_path / "my images.npz", X=X, y=y)
    spec = {
        "name": "images",
        "data": {"name": "npz", "path": "my images.npz", "dtype": "float32"},
        "loss": {"name": "softmax"},
        "optimizer": {"name": "sgd", "lr": 0.01, "batch_size": 10, "epochs": 1},
    }
    uri = new_store(tmp_path / "mlflow.db")
    results = optlab.run(spec, tracking_uri=uri, quiet=True)
    (run_id,) = results.to_pandas()["run_id"]
    assert "weight_templates.png" in {a.path for a in connect(uri).list_artifacts(run_id)}


@pytest.mark.parametrize(
    ("arrays", "params", "message"),
    [
        ({"X": np.ones((5, 2)), "y": np.zeros(4, int)}, {}, "5 examples but 4 labels; features"),
        (  # one example per column
            {"X": np.ones((2, 5)), "y": np.zeros(5, int)},
            {},
            r"2 examples but 5 labels; the features look transposed: store them as \(5, 2\), one",
        ),
        ({"X": np.ones((5, 2)), "y": np.array([0, 1, -1, 0, 1])}, {}, "negative label -1"),
        (
            {"X": np.ones((5, 2)), "y": np.array([0, 1, 5, 0, 1])},
            {"class_names": ["a", "b"]},
            "label 5 out of range",
        ),
        (
            {"X": np.ones((5, 2)), "y": np.array([0, 1, 0.5, 0, 1])},
            {},
            r"labels must be integers or strings, found 0\.5 \(label 2, counted from 0\)",
        ),
        ({"X": np.ones((3, 2)), "y": np.array([0, np.nan, 1])}, {}, r"found nan \(label 1,"),
        (  # a billion classes would be a billion names: refused before anything is sized
            {"X": np.ones((5, 2)), "y": np.array([0, 1, 10**9, 0, 1])},
            {},
            r"label 1000000000 among 5 examples: integer labels are class indices 0..C-1",
        ),
        (
            {"X": np.ones((4, 2)), "y": np.array([0, 1, 0, 1]), "y_test": np.array([1000, 0])}
            | {"X_test": np.ones((2, 2))},
            {},
            r"label 1000 among 6 examples",
        ),
        ({"X": np.array([[1.0, np.nan], [0, 0]]), "y": np.array([0, 1])}, {}, "NaN or inf"),
        ({"X": np.array([[1.0, np.inf], [0, 0]]), "y": np.array([0, 1])}, {}, "NaN or inf"),
        ({"X": np.ones((5, 2)), "labels": np.zeros(5, int)}, {}, "no array 'y' .*found: X"),
        ({"X": np.ones((5, 2)), "y": np.zeros((5, 2), int)}, {}, "must be 1-d labels"),
        (
            {"X": np.ones((5, 2)), "y": np.zeros((5, 1), int)},  # a column, as MATLAB saves
            {},
            r"'y' must be 1-d labels, found shape \(5, 1\); store them as one row: y.reshape\(5\)",
        ),
        (
            {"X": np.ones((5, 2)), "y": np.eye(3)[[0, 1, 2, 0, 1]]},
            {},
            r"found shape \(5, 3\); one-hot rows\? store each row's class: y.argmax\(axis=1\)",
        ),
        (
            {"X": np.ones((4, 2)), "y": np.zeros(4, int), "X_test": np.ones((2, 2))},
            {},
            "must come together",
        ),
        (
            {
                "X": np.ones((4, 2)),
                "y": np.zeros(4, int),
                "X_test": np.ones((2, 3)),
                "y_test": np.zeros(2, int),
            },
            {},
            "test split has 3 features",
        ),
        (  # the same pixels in another layout: every feature in another place
            {
                "X": np.ones((4, 2, 2, 3)),
                "y": np.zeros(4, int),
                "X_test": np.ones((2, 3, 2, 2)),
                "y_test": np.zeros(2, int),
            },
            {},
            r"test split's examples are of shape \(3, 2, 2\), the training data's \(2, 2, 3\); "
            r"store both with the same layout \(X_test.transpose\(0, 2, 3, 1\): channels last\)",
        ),
    ],
)
def test_npz_bad_input(
    registry: Registry,
    tmp_path: Path,
    arrays: dict[str, Any],
    params: dict[str, Any],
    message: str,
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as info:
        _load(registry, "npz", path=path, **params)
    assert "bad.npz" in str(info.value) and "\n" not in str(info.value)


def test_npz_corrupt_missing_and_pickled(registry: Registry, tmp_path: Path) -> None:
    X, y = _arrays()
    path = tmp_path / "t.npz"
    np.savez(path, X=X, y=y)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"t\.npz: unreadable \.npz"):
        _load(registry, "npz", path=path)
    with pytest.raises(DataError, match="no such file"):
        _load(registry, "npz", path=tmp_path / "missing.npz")
    np.savez(tmp_path / "o.npz", X=np.array([[object()]], dtype=object), y=np.zeros(1, int))
    with pytest.raises(DataError, match=r"o\.npz: unreadable"):
        _load(registry, "npz", path=tmp_path / "o.npz")


def test_a_path_that_is_no_archive_says_what_it_is(registry: Registry, tmp_path: Path) -> None:
    """A single .npy file or a CSV given to npz: np.load returns the one array (which failed
    as a TypeError) or tries to unpickle the text (which said "pickled (object) data")."""
    np.save(tmp_path / "X.npy", _arrays()[0])
    with pytest.raises(DataError, match=r"X\.npy: a single \.npy file; give the folder holding"):
        _load(registry, "npz", path=tmp_path / "X.npy")
    (tmp_path / "iris.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    with pytest.raises(DataError, match=r"iris\.csv: not an \.npz archive .*data\.name: csv"):
        _load(registry, "npz", path=tmp_path / "iris.csv")


def test_a_folder_of_image_files_says_how_to_make_arrays_of_them(
    registry: Registry, tmp_path: Path
) -> None:
    for name in ("cats", "dogs"):
        (tmp_path / "pictures" / name).mkdir(parents=True)
        (tmp_path / "pictures" / name / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    how = r"image files are not read: stack the images into one array X of shape \(N, H, W\)"
    with pytest.raises(DataError, match=rf"pictures: the folder holds no \.npy files; .*; {how}"):
        _load(registry, "npz", path=tmp_path / "pictures")
    with pytest.raises(DataError, match=rf"0\.png: an image, not an \.npz archive; {how}"):
        _load(registry, "npz", path=tmp_path / "pictures" / "cats" / "0.png")
    zipped = shutil.make_archive(str(tmp_path / "pictures"), "zip", tmp_path, "pictures")
    with pytest.raises(
        DataError, match=rf"pictures\.zip: a zip of image files, not of arrays; {how}"
    ):
        _load(registry, "npz", path=zipped)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: the folder holds no \.npy files; expected X\.npy"):
        _load(registry, "npz", path=tmp_path / "empty")


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("folder", [False, True])
def test_images_of_different_sizes_are_named_as_such(
    registry: Registry, tmp_path: Path, mmap: bool, folder: bool
) -> None:
    ragged = np.empty(4, dtype=object)
    ragged[:] = [np.ones((8, 8)), np.ones((9, 8)), np.ones((8, 8)), np.ones((8, 7))]
    if folder:
        np.save(tmp_path / "X.npy", ragged, allow_pickle=True)
        np.save(tmp_path / "y.npy", np.arange(4) % 2)
        path = tmp_path
    else:
        path = tmp_path / "ragged.npz"
        np.savez(path, X=ragged, y=np.arange(4) % 2)
    options = DataOptions(mmap=mmap, center=False, bias=False, val=0.0, test=0.0)
    objects = r"(ragged\.npz|X\.npy): unreadable 'X': an array of Python objects"
    with pytest.raises(DataError, match=objects):
        _load(registry, "npz", options, path=path)


# --------------------------------------------------------------------------------------------
# csv
# --------------------------------------------------------------------------------------------


def test_csv_header_autodetect_and_string_labels(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    path.write_text(
        "sepal,petal,species\n1.0,2.0,setosa\n3.0,4.0,virginica\n5,6,setosa\n7,8,versicolor\n"
    )
    d = _load(registry, "csv", path=path, label="species")
    np.testing.assert_array_equal(d.X_train, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert d.summary.classes == ("setosa", "versicolor", "virginica")
    np.testing.assert_array_equal(d.y_train, [0, 2, 0, 1])
    d = _load(registry, "csv", path=path)  # label defaults to the last column, header detected
    assert d.summary.n_train == 4


def test_csv_a_header_of_numbered_columns_is_a_header(registry: Registry, tmp_path: Path) -> None:
    """pandas writes a frame of unnamed columns with the header 0,1,...,label: every feature
    name is a number, and the header row was read as an example of a class 'label'."""
    path = tmp_path / "frame.csv"
    path.write_text("0,1,label\n1.5,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    d = _load(registry, "csv", path=path)
    np.testing.assert_array_equal(d.X_train, [[1.5, 2], [3, 4], [5, 6], [7, 8]])
    assert d.summary.classes == ("0", "1")
    np.testing.assert_array_equal(d.y_train, [0, 1, 0, 1])


@pytest.mark.parametrize(
    ("header", "end"), [("a,b,label,", ""), ("a,b,label,,", ""), ("a,b,label,,,", ",")]
)
def test_csv_a_header_that_alone_ends_with_the_delimiter(
    registry: Registry, tmp_path: Path, header: str, end: str
) -> None:
    """A header 'a,b,label,' over rows without the trailing comma was refused: 'line 2 has 3
    fields, the first row 4'; with two trailing commas or more (a spreadsheet's empty
    columns) it still was ('the label is taken from the last column, ''...'). So is one
    ending with more delimiters than its rows."""
    path = tmp_path / "sheet.csv"
    path.write_text(f"{header}\n1,2,cat{end}\n3,4,dog{end}\n5,6,cat{end}\n")
    d = _load(registry, "csv", path=path)
    np.testing.assert_array_equal(d.X_train, [[1, 2], [3, 4], [5, 6]])
    assert d.summary.classes == ("cat", "dog")
    assert _load(registry, "csv", path=path, label="label").summary.classes == ("cat", "dog")
    path.write_text(f"{header}\n1,2,cat{end}\n3,4,dog,7\n")  # a row with one more value
    with pytest.raises(DataError, match=r"line 3 has (4 fields|a value after the last column)"):
        _load(registry, "csv", path=path)
    path.write_text("a,b,label,\n1,2,cat\n3,4\n")
    with pytest.raises(DataError, match="line 3 has 2 fields, not 3"):
        _load(registry, "csv", path=path)


def test_csv_a_header_of_numbered_columns_over_word_labels_is_a_header(
    registry: Registry, tmp_path: Path
) -> None:
    """Over labels that are words, the header 0,1,2,label looked like one more example, of a
    class 'label'; a first row whose features merely are small numbers stays an example."""
    path = tmp_path / "frame.csv"
    path.write_text("0,1,2,label\n1.5,2,3,cat\n3,4,5,dog\n5,6,7,cat\n7,8,9,dog\n")
    d = _load(registry, "csv", path=path)
    np.testing.assert_array_equal(d.X_train, [[1.5, 2, 3], [3, 4, 5], [5, 6, 7], [7, 8, 9]])
    assert d.summary.classes == ("cat", "dog")
    path.write_text("0,1,3,cat\n1.5,2,3,cat\n3,4,5,dog\n5,6,7,cat\n7,8,9,dog\n")
    assert _load(registry, "csv", path=path).summary.n_train == 5


@pytest.mark.parametrize(
    "first", ["400,410,420,species", "1,2,3,label", "1,2,3,species,", "0,1,2,3", "7,1,5,class"]
)
def test_csv_a_header_of_other_numbers_over_word_labels_is_a_header(
    registry: Registry, tmp_path: Path, first: str
) -> None:
    """Over labels that are words, a header whose feature names are numbers other than
    0..D-1 (wavelengths, pixels counted from 1), or that names the label column with a number
    too, was read as one more example, of a class 'species' ('label', '3', ...); ending with
    the delimiter over rows that do not, it was refused ('line 2 has 4 fields, not 5')."""
    path = tmp_path / "spectra.csv"
    path.write_text(f"{first}\n1.5,2,3,cat\n3,4,5,dog\n5,6,7,cat\n")
    d = _load(registry, "csv", path=path)
    np.testing.assert_array_equal(d.X_train, [[1.5, 2, 3], [3, 4, 5], [5, 6, 7]])
    assert d.summary.classes == ("cat", "dog")


def test_csv_a_first_row_that_may_be_a_header_or_a_lone_example_is_asked_about(
    registry: Registry, tmp_path: Path
) -> None:
    """A first row of numbers whose label no other row has, over word labels, is a header of
    numbered columns or the only example of its class: refused with its line and the fix
    unless data.header says which (it was read as an example, whatever the file was)."""
    path = tmp_path / "genes.csv"
    path.write_text("# expression\n7157,672,1956,species\n1.5,2,3,cat\n3,4,5,dog\n5,6,7,cat\n")
    with pytest.raises(DataError) as info:
        _load(registry, "csv", path=path)
    assert str(info.value).endswith(
        f"{path}: line 2 (7157, 672, 1956, species) may be a header or the only example of "
        "class 'species'; set data.header: true (a header) or false (an example)"
    )
    assert info.value.key == "header"
    assert _load(registry, "csv", path=path, header=True).summary.classes == ("cat", "dog")
    assert _load(registry, "csv", path=path, header=False).summary.n_train == 4


@pytest.mark.parametrize("header", [None, True])
def test_csv_comments_above_the_header_are_skipped_with_it(
    registry: Registry, tmp_path: Path, header: bool | None
) -> None:
    """loadtxt's skiprows counts the file's lines: one skipped line was the comment, and the
    header was read as data ("could not convert string 'a'")."""
    path = tmp_path / "notes.csv"
    path.write_text("# exported from the gradebook\n\na,b,y\n1,2,0\n3,4,1\n5,6,0\n")
    d = _load(registry, "csv", path=path, header=header)
    np.testing.assert_array_equal(d.X_train, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(d.y_train, [0, 1, 0])
    bad = tmp_path / "bad.csv"
    bad.write_text("# exported from the gradebook\n\na,b,y\n1,2,0\n3,x,1\n")
    with pytest.raises(DataError, match="'x' to float64 on line 5, column 2"):
        _load(registry, "csv", path=bad, header=header)


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("1.5,2,cat\n3,4,dog\n5,6,cat\n", {}),  # the mark looked like a header's word
        ("y,a,b\ncat,1.5,2\ndog,3,4\ncat,5,6\n", {"label": "y"}),  # named '\ufeffy'
    ],
)
def test_csv_saved_by_a_spreadsheet_with_a_byte_order_mark(
    registry: Registry, tmp_path: Path, text: str, params: dict[str, Any]
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel's "CSV UTF-8"
    d = _load(registry, "csv", path=path, **params)
    np.testing.assert_array_equal(d.X_train, [[1.5, 2], [3, 4], [5, 6]])
    assert d.summary.classes == ("cat", "dog")


def test_csv_labels_written_as_floats_are_integers(registry: Registry, tmp_path: Path) -> None:
    """np.savetxt writes 2 as 2.000000000000000000e+00: those were class names, sorted as
    text (10 between 1 and 2), where an .npz's 2.0 is the integer label 2."""
    y = np.arange(12) % 11
    path = tmp_path / "savetxt.csv"
    np.savetxt(path, np.c_[np.arange(24.0).reshape(12, 2), y], delimiter=",")
    d = _load(registry, "csv", path=path)
    np.testing.assert_array_equal(d.y_train, y)
    assert d.summary.classes == tuple(str(k) for k in range(11))


def test_csv_fractional_labels_are_refused_at_their_line(
    registry: Registry, tmp_path: Path
) -> None:
    """The labels were in the first column and data.label left at the last: a feature's
    values (0.2, 1.3, ...) became as many classes, and the run trained on them."""
    path = tmp_path / "label_first.csv"
    path.write_text("species,a,b\n0,5.1,0.2\n1,4.9,0.2\n2,6.3,1.3\n")
    with pytest.raises(
        DataError,
        match=r"label_first\.csv: label '0\.2' on line 2, column 3, is not an integer: .*"
        r"set data\.label to the column of labels",
    ):
        _load(registry, "csv", path=path)
    d = _load(registry, "csv", path=path, label="species")
    np.testing.assert_array_equal(d.y_train, [0, 1, 2])


def test_csv_no_header_label_index_delimiter_and_test_file(
    registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "train.tsv").write_text("2\t0.5\t1.5\n0\t2.5\t3.5\n1\t4.5\t5.5\n10\t1\t1\n")
    (tmp_path / "test.tsv").write_text("1\t9\t9\n")
    d = _load(
        registry,
        "csv",
        path=tmp_path / "train.tsv",
        label=0,
        delimiter="\t",
        test_path=tmp_path / "test.tsv",
    )
    np.testing.assert_array_equal(d.y_train, [2, 0, 1, 10])  # integers kept, not sorted as text
    assert d.summary.n_classes == 11 and d.summary.n_test == 1
    np.testing.assert_array_equal(d.X_test, [[9, 9]])
    d = _load(registry, "csv", path=tmp_path / "train.tsv", label=0, delimiter="\t", header=True)
    assert d.summary.n_train == 3


def test_csv_a_column_named_label_that_is_not_last_needs_data_label(
    registry: Registry, tmp_path: Path
) -> None:
    """Kaggle's MNIST CSV has its 'label' column first: the default label, the last column,
    trained on a pixel's values as hundreds of classes (a warning at the run's start)."""
    path = tmp_path / "mnist_train.csv"
    path.write_text("label,1x1,1x2\n5,0,0\n0,0,17\n4,3,0\n1,0,0\n")
    with pytest.raises(DataError) as info:
        _load(registry, "csv", path=path)
    assert info.value.key == "label"
    assert str(info.value).endswith(
        "mnist_train.csv: the label is taken from the last column, '1x2', but column 'label' "
        "looks like the labels; set data.label: label (or data.label: -1 to keep the last column)"
    )
    np.testing.assert_array_equal(
        _load(registry, "csv", path=path, label="label").y_train, [5, 0, 4, 1]
    )
    assert _load(registry, "csv", path=path, label=-1).summary.n_classes == 18  # as asked


def test_csv_a_quoted_header_name_may_hold_the_delimiter(
    registry: Registry, tmp_path: Path
) -> None:
    """pandas quotes a column name holding a comma: the header was split at it, and every
    row refused with "line 2 has 3 fields, not 4"."""
    path = tmp_path / "quoted.csv"
    path.write_text('"length, cm",width,label\n1,2,0\n3,4,1\n')
    d = _load(registry, "csv", path=path)
    np.testing.assert_array_equal(d.X_train, [[1, 2], [3, 4]])
    d = _load(registry, "csv", path=path, label="length, cm")
    np.testing.assert_array_equal(d.y_train, [1, 3])


def test_csv_a_class_named_like_a_missing_value_among_words_is_a_class(
    registry: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "c.csv"
    path.write_text("a,b,y\n1,2,cat\n3,1,None\n4,5,cat\n")
    assert _load(registry, "csv", path=path).summary.classes == ("None", "cat")


def test_csv_test_file_of_columns_in_another_order_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    """The columns are read by position: a test file saved as b,a,y was tested with its b
    values where the model learned a's, without a word."""
    (tmp_path / "train.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    (tmp_path / "swapped.csv").write_text("b,a,y\n2,1,0\n8,7,1\n")
    with pytest.raises(DataError) as info:
        _load(registry, "csv", path=tmp_path / "train.csv", test_path=tmp_path / "swapped.csv")
    assert info.value.key == "test_path"
    assert str(info.value).endswith(
        f"swapped.csv: feature columns (b, a) are not those of {tmp_path / 'train.csv'} (a, b), "
        "in order; save the test file with the same columns in the same order"
    )
    # a label given by name may stand elsewhere, the features keeping their order
    (tmp_path / "moved.csv").write_text("y,a,b\n0,1,2\n1,7,8\n")
    train, moved = tmp_path / "train.csv", tmp_path / "moved.csv"
    d = _load(registry, "csv", path=train, label="y", test_path=moved)
    np.testing.assert_array_equal(d.X_test, [[1, 2], [7, 8]])


@pytest.mark.parametrize(
    "text",
    [
        "1.5,2,cat,\n3,4,dog,\n5,6,cat,\n",  # as some spreadsheets export
        "a,b,y,\n1.5,2,cat,\n3,4,dog,\n5,6,cat,\n",
        "a;b;y;\n1.5;2;cat;\n3;4;dog;\n5;6;cat;\n",
    ],
)
def test_csv_rows_ending_with_the_delimiter_have_no_empty_last_column(
    registry: Registry, tmp_path: Path, text: str
) -> None:
    """The default label is the last column: the empty field after a trailing comma was taken
    as every row's label, one class named ''."""
    path = tmp_path / "trailing.csv"
    path.write_text(text)
    d = _load(registry, "csv", path=path, delimiter=";" if ";" in text else ",")
    np.testing.assert_array_equal(d.X_train, [[1.5, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(d.y_train, [0, 1, 0])
    assert d.summary.classes == ("cat", "dog")
    if text.startswith("a"):
        assert _load(registry, "csv", path=path, label="y", delimiter=path.read_text()[1])
    longer = tmp_path / "longer.csv"
    longer.write_text("1,2,0,\n3,4,1,\n5,6,1,7\n")
    with pytest.raises(DataError, match=r"longer\.csv: line 3 has a value after the last column"):
        _load(registry, "csv", path=longer)


@pytest.mark.parametrize(
    ("text", "params", "message"),
    [
        (
            "a,b,y\n1,2,0\n3,x,1\n",
            {},
            "could not convert string 'x' to float64 on line 3, column 2",
        ),
        # the label first: the features are the file's columns 2 and 3
        ("y,a,b\n0,1,2\n1,3,x\n", {"label": "y"}, "'x' to float64 on line 3, column 3"),
        # blank lines and comments are not data rows: the line is the file's
        ("a,b,y\n# note\n\n1,2,0\n3,x,1\n", {}, "'x' to float64 on line 5, column 2"),
        ("a,b,y\n1,2,0\n3,1\n", {}, "line 3 has 2 fields, not 3"),
        # a longer row would be cut to the first row's width, its label read from column 2
        ("a,b,y\n1,2,0\n# note\n\n3,1,1,2\n", {}, "line 5 has 4 fields, not 3"),
        ("1,2,0\n3,4,1,0\n", {"label": -1}, "line 2 has 4 fields"),
        ("a,b,y\n1,nan,0\n3,1,1\n", {}, "NaN or inf"),
        ("a,b,y\n1,2,0\n3,1,-2\n", {}, "negative label -2"),
        # a missing label was a class named '' (the others then sorted as text)
        ("a,b,y\n1,2,0\n\n3,1,\n4,5,1\n", {}, "no label on line 4, column 3; every row"),
        ("a,b,y\n1,2,cat\n3,1, \n", {}, "no label on line 3, column 3"),
        # R writes NA for a missing value: it was a class named 'NA' (nan: "not an integer")
        ("a,b,y\n1,2,0\n3,1,NA\n4,5,1\n", {}, "missing label 'NA' on line 3, column 3; every"),
        ("a,b,y\n1,2,0\n\n3,1,nan\n4,5,1\n", {}, "missing label 'nan' on line 4, column 3;"),
        ("a,b,y\n", {}, "no data rows"),
        ("", {}, "empty CSV"),
        ("a,b,y\n1,2,0\n", {"label": "z"}, r"no column 'z' in the header \(a, b, y\); set"),
        # no header: its first row of numbers was listed as the header's names
        (
            "1,2,cat\n3,4,dog\n5,6,cat\n",
            {"label": "y"},
            r"bad\.csv: no column 'y': the file has no header \(its first row is numbers\); "
            r"set data\.label to the label column's index \(-1: the last\)$",
        ),
        ("1.5,2,cat\n3,4,dog\n", {"label": "y"}, r"no column 'y': the file has no header"),
        # a header of numbers naming the columns (wavelengths) over a label column's name: it
        # was said to be no header
        (
            "400,410,420,species\n0.1,0.2,0.3,setosa\n0.2,0.1,0.3,versicolor\n",
            {"label": "label"},
            r"bad\.csv: no column 'label' in the header \(400, 410, 420, species\); set",
        ),
        ("1,2,3,species\n0.1,0.2,0.3,0\n", {"label": "y"}, r"in the header \(1, 2, 3, species\)"),
        ("a;b;y\n1;2;0\n", {"label": "y"}, r"\(a;b;y\) \(fields separated by ';'\? set data"),
        ("1,2,0\n", {"label": "y", "header": False}, "given by name but header: false"),
        ("1,2,0\n", {"label": 5}, "label column 5 out of range"),
        ("y\n1\n", {}, "only one column; a CSV needs feature columns"),
        ("a;b;y\n1;2;0\n", {}, r"only one column \(fields separated by ';'\? set data\.delim"),
        ("1\t2\t0\n", {}, r"only one column \(fields separated by '\\t'\? set data\.delim"),
        # pandas' to_csv with its index: the index trained as a feature
        (",a,b,y\n0,1,2,0\n1,3,1,1\n", {}, r"counts from 0: pandas' index, which to_csv"),
    ],
)
def test_csv_bad_input(
    registry: Registry, tmp_path: Path, text: str, params: dict[str, Any], message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        _load(registry, "csv", path=path, **params)
    assert "bad.csv" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("late", [False, True])
def test_csv_not_in_utf8_names_its_line_and_the_fix(
    registry: Registry, tmp_path: Path, late: bool
) -> None:
    """A spreadsheet's plain 'CSV' may be Windows-1252: numpy's "'utf-8' codec can't decode
    byte 0xe9 in position 23" counted from a block of the file, and said nothing to do."""
    rows = ["a,b,pupil", *(f"{k},{k},{'prof' if k % 2 else 'eleve'}" for k in range(2000))]
    rows.insert(2000 if late else 2, "7,8,élève")
    path = tmp_path / "gradebook.csv"
    path.write_bytes("\n".join(rows).encode("cp1252"))
    line = 2001 if late else 3
    with pytest.raises(
        DataError,
        match=rf"gradebook\.csv: line {line} is not UTF-8 text \(byte 0xe9\); save the file as "
        r"UTF-8 \(a spreadsheet's 'CSV UTF-8'\)$",
    ):
        _load(registry, "csv", path=path)


def test_a_binary_file_given_as_a_csv_says_so(registry: Registry, tmp_path: Path) -> None:
    np.savez(tmp_path / "arrays.npz", X=np.ones((4, 2)), y=np.arange(4) % 2)
    with pytest.raises(DataError, match=r"arrays\.npz: a binary file, not CSV text; an \.npz"):
        _load(registry, "csv", path=tmp_path / "arrays.npz")


def test_a_workbook_or_an_image_given_as_a_csv_is_named_as_such(
    registry: Registry, tmp_path: Path
) -> None:
    # an .xlsx (a zip) was told "an .npz is read by data.name: npz", a PNG to save as UTF-8
    book = tmp_path / "grades.xlsx"
    with zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/workbook.xml", "<workbook>" * 50)
    with pytest.raises(
        DataError,
        match=r"grades\.xlsx: a spreadsheet workbook, not CSV text; save the sheet as CSV",
    ):
        _load(registry, "csv", path=book)
    (tmp_path / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    with pytest.raises(DataError, match=r"cat\.png: an image, not CSV text; image files are not"):
        _load(registry, "csv", path=tmp_path / "cat.png")


def test_csv_path_must_be_a_file(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected a file"):
        _load(registry, "csv", path=tmp_path)


@pytest.mark.parametrize("dataset", ["csv", "npz"])
def test_a_device_or_a_pipe_as_the_path_is_named_for_what_it_is(
    registry: Registry, tmp_path: Path, dataset: str
) -> None:
    """Reading /dev/zero or a FIFO would never end; the message says what the path is."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    wanted = "a file" if dataset == "csv" else "a file or a directory"
    for path, kind in ((Path("/dev/zero"), "a character device"), (fifo, "a named pipe")):
        with pytest.raises(DataError, match=rf"{path}: expected {wanted}, found {kind}"):
            _load(registry, dataset, path=path)


def test_an_empty_archive_or_folder_says_it_holds_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(DataError, match=r"empty.npz: the archive holds no arrays; expected 'X'"):
        _load(registry, "npz", path=tmp_path / "empty.npz")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"folder: the folder holds no .npy files; expected X.npy"):
        _load(registry, "npz", path=tmp_path / "folder")
