"""The bundled experiment specs (``experiments/*.yaml``) run, and come out as the lecture says.

Every spec in the folder is run through the CLI (a new file is covered automatically), with
overrides that shrink its budget only where the full run would be slow; then each comparison
is checked: SGD reaches an accuracy with less work than GD, gradient methods beat random
search, SVM and softmax both learn, numeric and analytic gradients agree (and the numeric one is
slow), each regularizer has its effect, the sweep names its best run by validation accuracy,
and the CIFAR-10 spec trains at the course's step size on batches in the real file layout.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from optlab._cli import app
from optlab._contract.records import RunInfo, RunResult
from optlab._execution.recording import RecordingObserver
from optlab._spec.load import load_experiment
from optlab._training.runner import execute

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
SPECS = sorted(EXPERIMENTS.glob("*.yaml"))

#: ``--set`` overrides that shrink a spec's budget for the tests (the rest run in full)
SHRINK: dict[str, tuple[str, ...]] = {
    # 2 * D * C = 1,300 loss evaluations per numeric step: 10 steps are enough to compare
    "numeric_vs_analytic": ("optimizer.iterations=10",),
}

#: CIFAR-10 class names, as in the real batches.meta
CIFAR_CLASSES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]

runner = CliRunner()


def invoke(args: Sequence[str]) -> Result:
    """Run the CLI in-process; a wide terminal so table lines are not wrapped."""
    return runner.invoke(app, list(args), env={"COLUMNS": "250"})


# --------------------------------------------------------------------------------------------
# A synthetic CIFAR-10 copy in the real python-pickle layout
# --------------------------------------------------------------------------------------------


def _cifar_images(
    n: int, templates: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[int]]:
    """``n`` uint8 images (n, 3072), channel-major rows like the real files, and labels.

    Pixels have CIFAR-10's scale (mean about 120, std about 60): a per-image brightness, a
    smooth random field, the class's smooth template and pixel noise, clipped to 0..255.
    """
    y = rng.integers(0, 10, n)
    low = rng.standard_normal((n, 8, 8, 3))
    field = np.repeat(np.repeat(low, 4, axis=1), 4, axis=2)
    base = rng.uniform(70.0, 170.0, (n, 1, 1, 1))
    img = base + 45.0 * field + 35.0 * templates[y] + 10.0 * rng.standard_normal(field.shape)
    pixels = np.clip(img, 0, 255).astype(np.uint8)  # (n, 32, 32, 3)
    return pixels.transpose(0, 3, 1, 2).reshape(n, 3072), y.tolist()


def write_cifar10_python(root: Path, per_batch: int, n_test: int, seed: int = 0) -> Path:
    """Write ``cifar-10-batches-py`` under ``root``: data_batch_1..5, test_batch, batches.meta.

    Each batch is a protocol-2 pickle of ``{b"data": uint8 (n, 3072), b"labels": [int] * n}``,
    as in the downloaded archive. Returns the folder.
    """
    rng = np.random.default_rng(seed)
    low = rng.standard_normal((10, 4, 4, 3))
    templates = np.repeat(np.repeat(low, 8, axis=1), 8, axis=2)  # (10, 32, 32, 3), smooth
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for k in range(1, 6):
        data, labels = _cifar_images(per_batch, templates, rng)
        batch = {
            b"batch_label": f"training batch {k} of 5".encode(),
            b"labels": labels,
            b"data": data,
        }
        (folder / f"data_batch_{k}").write_bytes(pickle.dumps(batch, protocol=2))
    data, labels = _cifar_images(n_test, templates, rng)
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"label_names": CIFAR_CLASSES, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 training and 200 test images: enough for the course's SGD settings to learn."""
    return write_cifar10_python(tmp_path_factory.mktemp("cifar"), per_batch=400, n_test=200)


def overrides(stem: str, cifar: Path | None = None) -> tuple[str, ...]:
    """The test's ``--set`` values for a spec."""
    extra = (f"data.path={cifar}",) if stem == "cifar10" and cifar is not None else ()
    return SHRINK.get(stem, ()) + extra


# --------------------------------------------------------------------------------------------
# Running specs (cached: the per-spec checks reuse the run of the coverage test)
# --------------------------------------------------------------------------------------------


@cache
def run_json(stem: str, sets: tuple[str, ...]) -> list[dict[str, Any]]:
    """``optlab run experiments/<stem>.yaml --json --no-track --set ...``, parsed."""
    args = ["run", str(EXPERIMENTS / f"{stem}.yaml"), "--json", "--no-track"]
    for item in sets:
        args += ["--set", item]
    result = invoke(args)
    assert result.exit_code == 0, result.stderr or result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


@cache
def run_api(stem: str, sets: tuple[str, ...] = ()) -> dict[str, tuple[RunInfo, RunResult]]:
    """Every run of a spec through the Python API: per-evaluation numbers and the weights."""
    experiment = load_experiment(EXPERIMENTS / f"{stem}.yaml", sets)
    out = {}
    for run in experiment.runs:
        info, result = execute(run, experiment=experiment.name, observer=RecordingObserver())
        assert result.status == "FINISHED", result.error
        out[run.name] = (info, result)
    return out


def weights(info: RunInfo, result: RunResult) -> np.ndarray:
    """The learned W (D, C) without its bias row."""
    assert result.W is not None
    return result.W[:-1] if info.data.has_bias else result.W


# --------------------------------------------------------------------------------------------
# Every spec
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_starts_with_a_comment_block_saying_what_to_look_at(spec: Path) -> None:
    lines = spec.read_text(encoding="utf-8").splitlines()
    block = []
    for line in lines:
        if not line.startswith("#"):
            break
        block.append(line)
    text = " ".join(block).lower()
    assert len(block) >= 5, f"{spec.name}: start with a comment block of what it shows"
    assert "what it shows" in text, f"{spec.name}: the comment block says what it shows"
    assert "look at" in text and "mlflow" in text, f"{spec.name}: say what to look at in MLflow"


def test_the_bundled_comparisons_are_all_there() -> None:
    assert {p.stem for p in SPECS} >= {
        "svm_vs_softmax",
        "gd_vs_sgd",
        "random_search_vs_gradient",
        "numeric_vs_analytic",
        "regularizers",
        "reg_lr_sweep",
        "cifar10",
    }


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_runs_on_bundled_or_given_data(spec: Path, cifar_dir: Path) -> None:
    sets = overrides(spec.stem, cifar_dir)
    planned = load_experiment(spec, sets).runs
    rows = run_json(spec.stem, sets)
    assert [r["name"] for r in rows] == [r.name for r in planned]
    for row in rows:
        assert row["status"] == "FINISHED" and row["error"] is None, row
        metrics = row["metrics"]
        for key in ("test_accuracy", "val_accuracy", "train_accuracy", "train_time_s"):
            assert key in metrics, f"{row['name']}: no {key}"
        assert metrics["test_accuracy"] > 0.1, f"{row['name']}: no better than chance"
        assert np.isfinite(row["final_loss"])


# --------------------------------------------------------------------------------------------
# The comparisons
# --------------------------------------------------------------------------------------------


def test_svm_and_softmax_both_learn_digits_and_start_at_the_lecture_loss() -> None:
    rows = by_name(run_json("svm_vs_softmax", overrides("svm_vs_softmax")))
    assert set(rows) == {"svm", "softmax"}
    for name, expected in (("svm", 9.0), ("softmax", float(np.log(10)))):
        metrics = rows[name]["metrics"]
        assert metrics["test_accuracy"] >= 0.9, name
        assert metrics["expected_initial_loss"] == pytest.approx(expected)
        assert metrics["initial_loss"] == pytest.approx(expected, rel=0.1)
        assert metrics["grad_check_max_rel_error"] < 1e-5


def _examples_to_reach(result: RunResult, accuracy: float) -> int | None:
    for report in result.evaluations:
        if report.val_accuracy is not None and report.val_accuracy >= accuracy:
            return report.examples
    return None


def test_sgd_reaches_an_accuracy_with_less_work_than_gd() -> None:
    runs = run_api("gd_vs_sgd", overrides("gd_vs_sgd"))
    (_, gd), (_, sgd) = runs["gd"], runs["sgd"]
    # the same budget of examples processed, spent in 10 full-batch steps or many minibatches
    # (a step's loss is kept at the examples before it: the last evaluation ends the budget)
    assert gd.evaluations[-1].examples == sgd.evaluations[-1].examples
    assert gd.steps.examples[0] == sgd.steps.examples[0] == 0
    assert len(sgd.steps) >= 10 * len(gd.steps)
    target = 0.93
    gd_work, sgd_work = _examples_to_reach(gd, target), _examples_to_reach(sgd, target)
    assert sgd_work is not None, "SGD never reached the target validation accuracy"
    assert gd_work is None or sgd_work * 2 <= gd_work, (sgd_work, gd_work)
    assert sgd.final_loss is not None and gd.final_loss is not None
    assert sgd.final_loss < gd.final_loss
    # at the first evaluation after one pass over the data, SGD is ahead
    one_pass = sgd.evaluations[0].examples
    gd_after_one_pass = [e for e in gd.evaluations if e.examples == one_pass]
    assert gd_after_one_pass and sgd.evaluations[0].train_accuracy > (
        gd_after_one_pass[0].train_accuracy + 0.03
    )


def test_gradient_methods_beat_random_search() -> None:
    rows = by_name(run_json("random_search_vs_gradient", overrides("random_search_vs_gradient")))
    acc = {name: row["metrics"]["test_accuracy"] for name, row in rows.items()}
    loss = {name: row["final_loss"] for name, row in rows.items()}
    assert acc["random_search"] > 0.15, "random search should still beat chance (10%)"
    assert acc["random_search"] + 0.3 < acc["random_local_search"]
    assert acc["random_local_search"] < min(acc["gd"], acc["sgd"])
    assert min(acc["gd"], acc["sgd"]) >= 0.9
    assert max(loss["gd"], loss["sgd"]) < loss["random_local_search"] < loss["random_search"]
    # ... with far fewer examples processed
    budget = {
        "random_search": rows["random_search"]["optimizer"]["trials"],
        "random_local_search": rows["random_local_search"]["optimizer"]["trials"],
        "gd": rows["gd"]["optimizer"]["iterations"],
        "sgd": rows["sgd"]["optimizer"]["epochs"],
    }
    assert budget["sgd"] < budget["gd"] < budget["random_local_search"]


def test_numeric_and_analytic_gradients_agree_and_numeric_is_slow() -> None:
    rows = by_name(run_json("numeric_vs_analytic", overrides("numeric_vs_analytic")))
    analytic, numeric = rows["analytic"], rows["numeric"]
    assert analytic["optimizer"]["gradient"] == "analytic"
    assert numeric["optimizer"]["gradient"] == "numeric"
    assert numeric["final_loss"] == pytest.approx(analytic["final_loss"], rel=1e-6)
    assert numeric["metrics"]["test_accuracy"] == analytic["metrics"]["test_accuracy"]
    assert numeric["metrics"]["train_time_s"] > 10 * analytic["metrics"]["train_time_s"]


def test_each_regularizer_has_its_effect() -> None:
    runs = run_api("regularizers", overrides("regularizers"))
    assert set(runs) == {"none", "l2", "l1", "elastic_net", "max_norm", "dropout"}
    W = {name: weights(*pair) for name, pair in runs.items()}
    results = {name: pair[1] for name, pair in runs.items()}
    for name, result in results.items():
        assert result.metrics["test_accuracy"] >= 0.9, name

    def near_zero(name: str) -> float:
        return float(np.mean(np.abs(W[name]) < 1e-3))

    # L2 shrinks the weights
    assert np.linalg.norm(W["l2"]) < 0.9 * np.linalg.norm(W["none"])
    # L1 makes them sparse, far more than L2; elastic net sits in between
    assert near_zero("l1") > near_zero("l2") + 0.2
    assert near_zero("l1") > near_zero("none") + 0.2
    assert near_zero("l2") < near_zero("elastic_net") < near_zero("l1")
    # max norm: every class column projected to norm <= c, a constraint with no penalty
    c = runs["max_norm"][0].spec["regularizer"][0]["c"]
    assert np.linalg.norm(W["max_norm"], axis=0).max() <= c * (1 + 1e-9)
    assert np.linalg.norm(W["none"], axis=0).max() > 2 * c, "the constraint should bind"
    assert not np.any(results["max_norm"].steps.reg_loss)
    assert np.all(results["l2"].steps.reg_loss > 0)
    # dropout: the training set is fitted less well
    assert (
        results["dropout"].metrics["train_accuracy"]
        < results["none"].metrics["train_accuracy"] - 0.01
    )
    assert results["dropout"].final_loss is not None and results["none"].final_loss is not None
    assert results["dropout"].final_loss > results["none"].final_loss
    # its minibatch loss, over the dropped-out inputs, is the highest of the six (its full
    # training loss is not: max norm's is higher)
    late = {
        name: float(np.mean(r.steps.loss[-len(r.steps) // 10 :])) for name, r in results.items()
    }
    assert max(late, key=late.__getitem__) == "dropout", late


_BEST = re.compile(r"best by validation accuracy: (\S+) \(val ([0-9.]+), test ([0-9.]+);")


def test_sweep_names_its_best_run_by_validation_and_reports_its_test_accuracy() -> None:
    sets = overrides("reg_lr_sweep")
    rows = by_name(run_json("reg_lr_sweep", sets))
    grid = load_experiment(EXPERIMENTS / "reg_lr_sweep.yaml", sets).axes
    assert len(rows) == int(np.prod([len(v) for v in grid.values()])) >= 9
    args = ["run", str(EXPERIMENTS / "reg_lr_sweep.yaml"), "--no-track"]
    for item in sets:
        args += ["--set", item]
    result = invoke(args)
    assert result.exit_code == 0, result.stderr
    found = _BEST.search(result.stdout)
    assert found, result.stdout
    name, val, test = found.groups()
    best_val = max(r["metrics"]["best_val_accuracy"] for r in rows.values())
    assert rows[name]["metrics"]["best_val_accuracy"] == best_val
    assert val == f"{best_val:.3f}"
    assert test == f"{rows[name]['metrics']['test_accuracy']:.3f}"
    # the validation choice is not the test choice in general: the sweep must spread out
    vals = [r["metrics"]["best_val_accuracy"] for r in rows.values()]
    assert max(vals) - min(vals) > 0.05


def test_a_tracked_sweep_is_compared_in_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Callable[[Path], str]
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = new_store(tmp_path / "mlflow.db")
    spec = str(EXPERIMENTS / "reg_lr_sweep.yaml")
    small = [
        "--set",
        "sweep.grid.optimizer.lr=[0.001, 0.01]",
        "--set",
        "sweep.grid.regularizer.strength=[0.0001]",
    ]
    result = invoke(["run", spec, "--tracking-uri", uri, *small])
    assert result.exit_code == 0, result.stderr or result.output
    found = _BEST.search(result.stdout)
    assert found, result.stdout
    compared = invoke(["compare", "reg_lr_sweep", "--tracking-uri", uri, "--json"])
    assert compared.exit_code == 0, compared.stderr
    rows = json.loads(compared.stdout)
    assert len(rows) == 2 and all(r["status"] == "FINISHED" for r in rows)
    best = [r for r in rows if r["best"]]
    assert [r["name"] for r in best] == [found.group(1)]
    assert best[0]["best_val_accuracy"] == max(r["best_val_accuracy"] for r in rows)

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("reg_lr_sweep")
    assert experiment is not None
    every = client.search_runs([experiment.experiment_id])
    tagged = [r.data.tags["optlab.best_run"] for r in every if "optlab.best_run" in r.data.tags]
    assert tagged == [found.group(1)], "the parent run names the best run"
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.runName = '{found.group(1)}'"
    )
    assert len(children) == 1
    child = children[0]
    assert child.data.params["regularizer.l2.strength"] == "0.0001"
    history = client.get_metric_history(child.info.run_id, "curves/loss")
    steps = [m.step for m in history]
    assert steps == sorted(steps) and steps[-1] > steps[0]  # step = examples processed
    assert "curves/val_accuracy" in child.data.metrics
    for key in ("val_accuracy", "test_accuracy", "train_time_s", "initial_loss"):
        assert f"summary/{key}" in child.data.metrics


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------


def test_cifar10_course_setting_learns_from_batches_in_the_real_layout(cifar_dir: Path) -> None:
    rows = by_name(run_json("cifar10", overrides("cifar10", cifar_dir)))
    assert set(rows) == {"svm", "softmax"}
    for name, row in rows.items():
        assert row["data"]["name"] == "cifar10" and row["data"]["center"] is True
        assert row["optimizer"]["lr"] == pytest.approx(1e-7)
        assert row["regularizer"][0]["strength"] == pytest.approx(2.5e4)
        # the step size suits raw 0..255 pixels: well above chance, no divergence, and the
        # loss falls well below its starting L2 term (2.5e4 * 3073 * 10 * 0.001^2 = 768)
        assert row["metrics"]["test_accuracy"] > 0.25, name
        assert row["final_loss"] < 0.75 * 768, name


def test_cifar10_without_a_path_says_how_to_pass_one() -> None:
    result = invoke(["run", str(EXPERIMENTS / "cifar10.yaml"), "--no-track"])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message, message
    assert "cifar10.yaml" in message and "data" in message and "path" in message
    assert "Traceback" not in result.output


def test_cifar10_with_a_missing_path_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    args = ["run", str(EXPERIMENTS / "cifar10.yaml"), "--no-track"]
    result = invoke([*args, "--set", f"data.path={missing}"])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message, message
    assert str(missing) in message and "data.path" in message


def test_cifar10_without_a_path_names_the_set_option() -> None:
    result = invoke(["run", str(EXPERIMENTS / "cifar10.yaml"), "--no-track"])
    assert result.exit_code == 2
    assert "--set data.path=" in result.stderr
