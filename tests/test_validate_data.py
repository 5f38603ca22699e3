"""``optlab validate`` refuses, before training and located at the key at fault, everything
``optlab run`` refuses once the data are known: an unreadable data path, a batch larger than
the training set, splits that leave no training example, absurd work. Both commands print the
same lines and exit 2; a good spec validates (reading only a header where it can)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optlab._cli import app

SPECS = {
    "missing path": (
        "name: v\n"
        "data: {name: npz, path: /nonexistent/data.npz}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n",
        ["SPEC:2:25: data.path: dataset 'npz': /nonexistent/data.npz: no such file"],
    ),
    "batch in a sweep": (
        "name: v\n"
        "data: {name: npz, path: DATA}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n"
        "sweep:\n"
        "  grid:\n"
        "    optimizer.batch_size: [10, 5000]\n",
        ["SPEC:7:32: sweep.grid.optimizer.batch_size: optimizer.batch_size=5000 is larger"],
    ),
    "batch in a variant": (
        "name: v\n"
        "data: {name: npz, path: DATA}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n"
        "variants:\n"
        "  small: {}\n"
        "  big: {optimizer: {batch_size: 500}}\n",
        ["SPEC:7:33: variants.big.optimizer.batch_size: optimizer.batch_size=500 is larger"],
    ),
    "no training example": (
        "name: v\n"
        "data: {name: npz, test: 0.9, val: 0.99, path: DATA}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: gd, lr: 0.1, iterations: 2}\n",
        ["SPEC:2:35: data.val: dataset 'npz' (DATA): no training examples left"],
    ),
    "absurd work": (
        "name: v\n"
        "data: {name: npz, path: DATA}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 99999999999999999999999}\n",
        ["SPEC:4:57: optimizer.epochs: epochs*ceil(N/batch_size) = 99999999999999999999999"],
    ),
    "one class": (
        "name: v\n"
        "data: {name: npz, path: ONE}\n"
        "loss: {name: softmax}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n",
        [
            "SPEC:2:7: data: dataset 'npz' (ONE): every example is of one class (0); "
            "a classifier needs 2"
        ],
    ),
    "no examples": (  # said "no class names": no labels, so no classes either
        "name: v\n"
        "data: {name: npz, path: EMPTY}\n"
        "loss: {name: softmax}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n",
        ["SPEC:2:7: data: dataset 'npz' (EMPTY): no data (features of shape (0, 4))"],
    ),
    # the dataset's own test split was the test set and data.test went without a word
    "test of a dataset with its own": (
        "name: v\n"
        "data: {name: npz, test: 0.3, path: OWN}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n",
        [
            "SPEC:2:25: data.test: dataset 'npz' has its own test split, the test set whatever "
            "data.test says; remove data.test"
        ],
    ),
    # digits (and csv, cifar10, ...) are read whole: mmap had no effect and went without a word
    "mmap of a dataset read whole": (
        "name: v\n"
        "data: {name: digits, mmap: true}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n",
        [
            "SPEC:2:28: data.mmap: dataset 'digits': cannot be memory-mapped, it reads its "
            "data whole"
        ],
    ),
    # a variant's dataset under the base's data.test (or mmap), which the base wrote for its
    # own dataset: reported at the base's line, naming no variant
    "test of a variant's dataset with its own": (
        "name: v\n"
        "data: {name: npz, test: 0.3, path: DATA}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n"
        "variants:\n"
        "  drawn: {}\n"
        "  own: {data: {name: npz, path: OWN}}\n"
        "  own_path: {data: {path: OWN}}\n",
        [
            "SPEC:7:22: variants.own.data.name: dataset 'npz' has its own test split, the test "
            "set whatever data.test says; it keeps data.test from the base (SPEC:2:25): remove "
            "it from the base's data, or write it only for the datasets that draw their test "
            "split",
            "SPEC:8:20: variants.own_path.data: dataset 'npz' has its own test split",
        ],
    ),
    "mmap of a variant's dataset read whole": (
        "name: v\n"
        "data: {name: npz, mmap: true, path: DATA}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n"
        "variants:\n"
        "  mapped: {}\n"
        "  digits: {data: {name: digits}}\n"
        "  again: {data: {name: digits}, loss: {name: softmax}}\n",  # the same data: each said
        [
            "SPEC:7:25: variants.digits.data.name: dataset 'digits': cannot be memory-mapped, "
            "it reads its data whole (data.mmap applies to .npy files and np.savez archives, "
            "dataset 'npz'); it keeps data.mmap from the base (SPEC:2:25): set mmap: false in "
            "its data, or remove data.mmap from the base's",
            "SPEC:8:24: variants.again.data.name: dataset 'digits': cannot be memory-mapped",
        ],
    ),
    "name too long": (
        "name: " + "x" * 501 + "\n"
        "data: {name: npz, path: DATA}\n"
        "loss: {name: svm}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n",
        ["SPEC:1:7: name: string should have at most 500 characters"],
    ),
}


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, X=rng.normal(size=(200, 4)), y=np.arange(200) % 3)
    return path


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_refused_before_training_and_located(
    name: str, command: str, data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, expected = SPECS[name]
    one = tmp_path / "one.npz"  # every label 0
    np.savez(one, X=np.random.default_rng(0).normal(size=(60, 4)), y=np.zeros(60, int))
    empty = tmp_path / "empty.npz"
    np.savez(empty, X=np.zeros((0, 4)), y=np.zeros(0, int))
    own = tmp_path / "own.npz"  # its own test split
    np.savez(
        own,
        X=np.ones((30, 4)),
        y=np.arange(30) % 3,
        X_test=np.ones((9, 4)),
        y_test=np.arange(9) % 3,
    )
    spec = tmp_path / "spec.yaml"
    text = text.replace("DATA", str(data_file)).replace("ONE", str(one)).replace("OWN", str(own))
    spec.write_text(text.replace("EMPTY", str(empty)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, [command, str(spec)])
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        start = start.replace("SPEC", str(spec)).replace("DATA", str(data_file))
        start = start.replace("ONE", str(one)).replace("EMPTY", str(empty)).replace("OWN", str(own))
        assert line.startswith("optlab: error: " + start), line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_a_good_spec_validates_from_its_header(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "spec.yaml"
    text = SPECS["batch in a sweep"][0].replace("DATA", str(data_file))
    spec.write_text(text.replace("[10, 5000]", "[10, 20]"))
    import optlab._training.data

    loads = []
    monkeypatch.setattr(optlab._training.data, "_load", lambda *a: loads.append(a) or None)
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.stderr
    assert "experiment 'v': 2 runs" in result.stdout
    assert loads == []  # measured from the .npy headers and labels, not loaded


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(
    ("cell", "fault"),
    [
        ("x", "could not convert string 'x' to float64 on line 3, column 2."),
        # a number, but not finite: validate passed it and run named the data row (from 0)
        ("nan", "NaN or inf (nan) on line 3, column 2; features must be finite numbers"),
        ("-inf", "NaN or inf (-inf) on line 3, column 2; features must be finite numbers"),
    ],
)
def test_a_word_among_a_small_csv_s_numbers_is_found_by_validate_too(
    command: str, cell: str, fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV small enough to read whole is read whole by validate: a feature that is not a
    finite number is refused there as by run, at data.path, naming the file's line and
    column."""
    (tmp_path / "bad.csv").write_text(f"a,b,label\n1,2,0\n3,{cell},1\n4,5,0\n6,7,1\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: v\n"
        "data: {name: csv, path: bad.csv, val: 0.25, test: 0.25}\n"
        "loss: {name: softmax}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 2, epochs: 1}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, [command, str(spec)])
    assert result.exit_code == 2, result.stdout
    assert result.stderr == (
        f"optlab: error: {spec}:2:25: data.path: dataset 'csv': bad.csv: {fault}\n"
    )


def test_a_training_split_of_one_class_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two class names, so only the labels show it: the header does not, the run refuses
    one = tmp_path / "one.npz"
    np.savez(one, X=np.random.default_rng(0).normal(size=(60, 4)), y=np.zeros(60, int))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: v\n"
        f"data: {{name: npz, path: {one}, class_names: [a, b]}}\n"
        "loss: {name: softmax}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 10, epochs: 1}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"optlab: error: {spec}:2:7: data: dataset 'npz' ({one}): every example is of one "
        "class (a); a classifier needs 2"
    )
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_splits_that_leave_one_class_are_told_apart_from_data_of_one_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two classes in the file, one training example (data.limit): the splits left the other
    class out, which the message says (it read as if the file had one class)."""
    two = tmp_path / "two.npz"
    np.savez(two, X=np.random.default_rng(0).normal(size=(60, 4)), y=np.arange(60) % 2)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: v\n"
        f"data: {{name: npz, path: {two}, limit: {{train: 1}}}}\n"
        "loss: {name: softmax}\n"
        "optimizer: {name: sgd, lr: 0.1, batch_size: 1, epochs: 1}\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", str(spec), "--no-track"])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "the training split has only one class (" in result.stderr
    assert "the splits (data.val, data.test, data.limit) left the others out" in result.stderr
