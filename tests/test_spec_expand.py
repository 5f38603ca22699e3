"""Variants x sweep x seeds: merge semantics, grid and random sweeps, names, axes, plans."""

from __future__ import annotations

import copy
import json
import math
import textwrap
from pathlib import Path

import pytest
from spec_testplugins import make_registry

from optlab._contract.registry import Registry
from optlab._errors import SpecError
from optlab._spec.expand import (
    draw_random_points,
    grid_points,
    merge,
    point_label,
    run_name,
    set_path,
    unique_names,
)
from optlab._spec.experiment import Experiment
from optlab._spec.issues import Locator
from optlab._spec.load import describe_plan, load_experiment
from optlab._spec.models import Distribution
from optlab._spec.reader import Src

BASE = """\
name: demo
data: {name: digits, limit: 100, n_samples: 500}
loss: {name: svm, margin: 2.0}
regularizer: {name: l2, strength: 0.001}
optimizer: {name: sgd, lr: 0.1, batch_size: 50, epochs: 2}
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return make_registry()


def load(tmp_path: Path, text: str, registry: Registry) -> Experiment:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_experiment(path, registry=registry)


def names(exp: Experiment) -> list[str]:
    return [r.name for r in exp.runs]


# ---------------------------------------------------------------------------------- variants


def test_variants_merge_and_replace_on_name_change(tmp_path: Path, registry: Registry) -> None:
    text = BASE + textwrap.dedent(
        """\
        variants:
          svm: {}
          wide: {loss: {margin: 5}}
          softmax: {loss: {name: softmax}}
          gd: {optimizer: {name: gd}}
          fast: {optimizer: {lr: 0.5}}
        """
    )
    exp = load(tmp_path, text, registry)
    assert names(exp) == ["svm", "wide", "softmax", "gd", "fast"]
    by = {r.name: r for r in exp.runs}
    assert by["svm"].loss.params.model_dump() == {"margin": 2.0}
    assert by["wide"].loss.params.model_dump() == {"margin": 5.0}
    assert by["softmax"].loss.name == "softmax"
    assert by["softmax"].loss.params.model_dump() == {}
    # a new optimizer name keeps the params gd has too (lr) and drops the others (gd has no
    # batch_size or epochs: not an error), gd's defaults for the rest
    assert by["gd"].optimizer.params.model_dump() == {"lr": 0.1, "iterations": 100}
    assert by["fast"].optimizer.params.model_dump() == {"lr": 0.5, "batch_size": 50, "epochs": 2}
    assert [r.variant for r in exp.runs] == names(exp)
    assert exp.axes == {"variant": names(exp)}


def test_variant_new_dataset_keeps_data_options(tmp_path: Path, registry: Registry) -> None:
    text = BASE + "variants:\n  blobs: {data: {name: blobs}}\n  less: {data: {n_samples: 10}}\n"
    exp = load(tmp_path, text, registry)
    blobs, less = exp.runs
    assert blobs.dataset.name == "blobs" and blobs.data.limit == 100
    # blobs has an n_samples too: the base's is kept across the change of dataset
    assert blobs.dataset.params.model_dump()["n_samples"] == 500
    assert less.dataset.params.model_dump() == {"n_samples": 10}


def test_variant_regularizer_list_none_and_checks(tmp_path: Path, registry: Registry) -> None:
    text = BASE + textwrap.dedent(
        """\
        checks: {gradient: error}
        variants:
          plain: {regularizer: none}
          two: {regularizer: [{name: l2}, {name: l2, strength: 0.5}]}
          stronger: {regularizer: {strength: 0.01}}
          quiet: {checks: false}
          lenient: {checks: {gradient_tolerance: 0.5}}
        """
    )
    by = {r.name: r for r in load(tmp_path, text, registry).runs}
    assert by["plain"].regularizers == ()
    assert [r.params.strength for r in by["two"].regularizers] == [0.0001, 0.5]  # type: ignore[attr-defined]
    assert by["stronger"].regularizers[0].params.strength == 0.01  # type: ignore[attr-defined]
    assert by["quiet"].checks.gradient == "off"
    assert by["lenient"].checks.gradient == "error"
    assert by["lenient"].checks.gradient_tolerance == 0.5


def test_variant_without_overrides_is_the_base(tmp_path: Path, registry: Registry) -> None:
    exp = load(tmp_path, BASE + "variants:\n  base:\n  other: {loss: {margin: 1}}\n", registry)
    assert names(exp) == ["base", "other"]
    assert exp.runs[0].resolved["loss"] == {"name": "svm", "margin": 2.0}


# ---------------------------------------------------------------------------------- grid


def test_grid_product_order_names_and_point(tmp_path: Path, registry: Registry) -> None:
    text = BASE + textwrap.dedent(
        """\
        sweep:
          grid:
            optimizer.lr: [0.1, 0.01]
            regularizer.strength: [0.001, 0.0001]
        """
    )
    exp = load(tmp_path, text, registry)
    assert names(exp) == [
        "svm-lr0.1-strength0.001",
        "svm-lr0.1-strength0.0001",
        "svm-lr0.01-strength0.001",
        "svm-lr0.01-strength0.0001",
    ]
    assert exp.runs[1].point == {"optimizer.lr": 0.1, "regularizer.strength": 0.0001}
    assert exp.runs[1].resolved["regularizer"][0]["strength"] == 0.0001
    assert exp.runs[2].optimizer.params.lr == 0.01  # type: ignore[attr-defined]
    assert exp.axes == {"optimizer.lr": [0.1, 0.01], "regularizer.strength": [0.001, 0.0001]}


def test_variants_x_grid_x_seeds(tmp_path: Path, registry: Registry) -> None:
    text = BASE + textwrap.dedent(
        """\
        seeds: [0, 1]
        variants:
          svm: {}
          softmax: {loss: {name: softmax}}
        sweep:
          grid:
            optimizer.lr: [0.1, 0.01]
        """
    )
    exp = load(tmp_path, text, registry)
    assert names(exp) == [
        "svm-lr0.1-seed0",
        "svm-lr0.1-seed1",
        "svm-lr0.01-seed0",
        "svm-lr0.01-seed1",
        "softmax-lr0.1-seed0",
        "softmax-lr0.1-seed1",
        "softmax-lr0.01-seed0",
        "softmax-lr0.01-seed1",
    ]
    assert [r.seed for r in exp.runs] == [0, 1] * 4
    assert [r.resolved["seed"] for r in exp.runs] == [0, 1] * 4
    assert exp.axes == {"variant": ["svm", "softmax"], "optimizer.lr": [0.1, 0.01], "seed": [0, 1]}


def test_single_seed_list_does_not_rename(tmp_path: Path, registry: Registry) -> None:
    exp = load(tmp_path, BASE + "seeds: [7]\n", registry)
    assert names(exp) == ["svm"] and exp.runs[0].seed == 7 and exp.axes == {"seed": [7]}
    exp = load(tmp_path, BASE + "seed: 3\nseeds: [1, 2]\n", registry)
    assert names(exp) == ["svm-seed1", "svm-seed2"]


def test_grid_over_list_entries_components_and_data(tmp_path: Path, registry: Registry) -> None:
    text = BASE.replace(
        "regularizer: {name: l2, strength: 0.001}",
        "regularizer: [{name: l2, strength: 0.001}, {name: l2, include_bias: true}]",
    ) + textwrap.dedent(
        """\
        sweep:
          grid:
            regularizer.1.strength: [0.5]
            loss: [{name: softmax}, {margin: 4}]
            data.limit: [10]
            optimizer.name: [gd]
        """
    )
    exp = load(tmp_path, text, registry)
    assert names(exp) == [
        "svm-strength0.5-softmax-limit10-gd",
        "svm-strength0.5-margin4-limit10-gd",
    ]
    soft, wide = exp.runs
    assert soft.regularizers[1].params.model_dump() == {"include_bias": True, "strength": 0.5}
    assert soft.loss.name == "softmax"
    assert wide.loss.name == "svm" and wide.loss.params.margin == 4.0  # type: ignore[attr-defined]
    assert soft.data.limit == 10
    assert soft.optimizer.params.model_dump() == {"lr": 0.1, "iterations": 100}  # lr kept


def test_names_stay_unique(tmp_path: Path, registry: Registry) -> None:
    text = BASE + "sweep:\n  grid:\n    optimizer.lr: [0.1, '0.1', 0.2]\n"
    assert names(load(tmp_path, text, registry)) == ["svm-lr0.1", "svm-lr0.1-2", "svm-lr0.2"]


# ---------------------------------------------------------------------------------- random


RANDOM = BASE + textwrap.dedent(
    """\
    seed: SEED
    sweep:
      random:
        trials: 12
        params:
          optimizer.lr: {loguniform: [1.0e-4, 1.0]}
          regularizer.strength: {uniform: [0.0, 0.5]}
          optimizer.batch_size: {int: [8, 10]}
          loss: {choice: [{name: softmax}, {name: svm, margin: 3}]}
    """
)


def test_random_sweep_is_deterministic_and_in_range(tmp_path: Path, registry: Registry) -> None:
    a = load(tmp_path, RANDOM.replace("SEED", "0"), registry)
    b = load(tmp_path, RANDOM.replace("SEED", "0"), registry)
    c = load(tmp_path, RANDOM.replace("SEED", "1"), registry)
    assert [r.point for r in a.runs] == [r.point for r in b.runs]
    assert names(a) == names(b)
    assert [r.point for r in a.runs] != [r.point for r in c.runs]
    assert len(a.runs) == 12 and len(set(names(a))) == 12
    lrs = [r.point["optimizer.lr"] for r in a.runs]
    assert all(1e-4 <= lr <= 1.0 for lr in lrs)
    # log-uniform: spread over orders of magnitude, not bunched near 1
    assert min(lrs) < 1e-2 < max(lrs)
    assert all(0.0 <= r.point["regularizer.strength"] <= 0.5 for r in a.runs)
    assert {r.point["optimizer.batch_size"] for r in a.runs} <= {8, 9, 10}
    assert {r.loss.name for r in a.runs} == {"softmax", "svm"}
    assert all(
        r.loss.params.model_dump() == {"margin": 3.0} for r in a.runs if r.loss.name == "svm"
    )
    assert a.axes["optimizer.lr"] == lrs
    first = a.runs[0]
    assert first.name.startswith("svm-lr")
    assert f"lr{first.point['optimizer.lr']:.3g}" in first.name


def test_draws_follow_a_seeded_generator() -> None:
    dists = {
        "a": Distribution.model_validate({"uniform": [0, 1]}),
        "b": Distribution.model_validate({"int": [1, 6]}),
        "c": Distribution.model_validate({"loguniform": [1e-3, 1e-1]}),
        "d": Distribution.model_validate({"choice": ["x", "y"]}),
    }
    points = draw_random_points(500, dists, seed=42)
    assert points == draw_random_points(500, dists, seed=42)
    assert {p["b"] for p in points} == {1, 2, 3, 4, 5, 6}  # both ends included
    logs = [math.log10(p["c"]) for p in points]
    assert min(logs) >= -3 and max(logs) <= -1
    assert abs(sum(logs) / len(logs) + 2) < 0.1  # uniform in log space: mean exponent -2
    assert {p["d"] for p in points} == {"x", "y"}
    assert all(isinstance(p["a"], float) and isinstance(p["b"], int) for p in points)


def test_grid_and_random_combine(tmp_path: Path, registry: Registry) -> None:
    text = BASE + textwrap.dedent(
        """\
        sweep:
          grid: {optimizer.epochs: [1, 2]}
          random:
            trials: 3
            params: {optimizer.lr: {uniform: [0.1, 0.2]}}
        """
    )
    exp = load(tmp_path, text, registry)
    assert len(exp.runs) == 6
    assert [r.point["optimizer.epochs"] for r in exp.runs] == [1, 1, 1, 2, 2, 2]
    # the same random draws are crossed with every grid point
    assert [r.point["optimizer.lr"] for r in exp.runs[:3]] == [
        r.point["optimizer.lr"] for r in exp.runs[3:]
    ]


# ---------------------------------------------------------------------------------- plan


def test_describe_plan(tmp_path: Path, registry: Registry) -> None:
    text = BASE + textwrap.dedent(
        """\
        description: compare losses
        seeds: [0, 1]
        variants:
          svm: {}
          softmax: {loss: {name: softmax}, regularizer: none}
        """
    )
    lines = describe_plan(load(tmp_path, text, registry))
    assert lines == [
        "experiment 'demo': 4 runs",
        "  compare losses",
        "axes: variant = [svm, softmax]; seed = [0, 1]",
        "components: dataset digits from spec_test; loss svm from spec_test; regularizer l2 "
        "from spec_test; optimizer sgd from spec_test; loss softmax from spec_test",
        "svm-seed0: seed=0 data=digits(n_samples=500) [limit=100] loss=svm(margin=2.0) "
        "regularizer=l2(include_bias=False, strength=0.001) "
        "optimizer=sgd(lr=0.1, batch_size=50, epochs=2)",
        "svm-seed1: seed=1 data=digits(n_samples=500) [limit=100] loss=svm(margin=2.0) "
        "regularizer=l2(include_bias=False, strength=0.001) "
        "optimizer=sgd(lr=0.1, batch_size=50, epochs=2)",
        "softmax-seed0: seed=0 data=digits(n_samples=500) [limit=100] loss=softmax "
        "regularizer=none optimizer=sgd(lr=0.1, batch_size=50, epochs=2)",
        "softmax-seed1: seed=1 data=digits(n_samples=500) [limit=100] loss=softmax "
        "regularizer=none optimizer=sgd(lr=0.1, batch_size=50, epochs=2)",
    ]


def test_the_plan_writes_unset_values_as_a_spec_would(tmp_path: Path, registry: Registry) -> None:
    """`optlab validate` of experiments/numeric_vs_analytic.yaml printed
    `[limit={'train': 300, 'val': None, 'test': None}]`: Python's None, which a spec that
    copies it reads as the string 'None'; YAML's word is null."""
    text = BASE.replace("limit: 100", "limit: {train: 100}")
    assert text != BASE
    (line,) = [x for x in describe_plan(load(tmp_path, text, registry)) if x.startswith("svm:")]
    assert "[limit={train: 100, val: null, test: null}]" in line
    assert "None" not in line


def test_resolved_is_json_and_complete(tmp_path: Path, registry: Registry) -> None:
    text = RANDOM.replace("SEED", "5")
    for run in load(tmp_path, text, registry).runs:
        again = json.loads(json.dumps(run.resolved))
        assert again == run.resolved
        assert set(again) == {"seed", "data", "loss", "regularizer", "optimizer", "checks"}
        assert again["optimizer"]["lr"] == run.point["optimizer.lr"]


# ---------------------------------------------------------------------------------- helpers


def _src(path: str, line: int = 1) -> Src:
    return Src("f", line, 1, line, 5, path)


def test_merge_rules() -> None:
    base = {"loss": {"name": "svm", "margin": 2}, "data": {"name": "a", "limit": 3, "path": "x"}}
    override = {"loss": {"name": "softmax"}, "data": {"name": "b"}, "checks": False}
    merged = merge(base, override)
    assert merged == {
        "loss": {"name": "softmax"},
        "data": {"limit": 3, "name": "b"},
        "checks": False,
    }
    assert base["loss"] == {"name": "svm", "margin": 2}  # neither input changes
    assert merge(base, {"loss": {"margin": 5}})["loss"] == {"name": "svm", "margin": 5}
    # below a component, mappings merge key by key even when they hold a "name"
    assert merge(
        {"data": {"name": "a", "limit": {"train": 1}}}, {"data": {"limit": {"val": 2}}}
    ) == {"data": {"name": "a", "limit": {"train": 1, "val": 2}}}


def test_set_path_rules() -> None:
    body: dict[str, object] = {
        "regularizer": [{"name": "l2"}],
        "loss": {"name": "svm", "margin": 1},
    }
    assert set_path(body, ["regularizer", "0", "strength"], 0.1) == ("regularizer", 0, "strength")
    assert body["regularizer"] == [{"name": "l2", "strength": 0.1}]
    set_path(body, ["regularizer", "0"], {"name": "l1"})
    assert body["regularizer"] == [{"name": "l1"}]  # a new name drops the old params
    set_path(body, ["loss", "name"], "softmax")
    assert body["loss"] == {"name": "softmax"}
    set_path(body, ["optimizer", "lr"], 0.1)
    assert body["optimizer"] == {"lr": 0.1}
    with pytest.raises(ValueError, match=r"e\.g\. regularizer\.0\.strength"):
        set_path(body, ["regularizer", "strength"], 1)
    with pytest.raises(ValueError, match="index 2 is out of range"):
        set_path(body, ["regularizer", "2", "strength"], 1)
    with pytest.raises(ValueError, match=r"'loss.name' is 'softmax' \(a string\), not a mapping"):
        set_path(body, ["loss", "name", "x"], 1)
    # under variants.<name> the run's keys start at the third segment
    doc = {"variants": {"v": {"loss": {"name": "svm", "margin": 2}}}}
    set_path(doc, ["variants", "v", "loss", "name"], "softmax", offset=2)
    assert doc == {"variants": {"v": {"loss": {"name": "softmax"}}}}


def test_grid_points_and_run_names() -> None:
    points = list(grid_points({"a": [1, 2], "b": ["x", "y"]}))
    assert points == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert run_name("svm", ["lr0.1", "softmax"], 3) == "svm-lr0.1-softmax-seed3"
    assert run_name("svm", [], None) == "svm"


def test_locator_prefers_sweep_then_variant_then_base() -> None:
    positions = {
        (): _src("", 1),
        ("loss",): _src("loss", 2),
        ("loss", "margin"): _src("loss.margin", 2),
        ("variants", "v"): _src("variants.v", 5),
        ("variants", "v", "loss"): _src("variants.v.loss", 6),
    }
    swept = {("optimizer", "lr"): _src("sweep.grid.optimizer.lr", 9)}
    loc = Locator("f", positions, "v", swept)
    assert loc.find(("loss", "margin"))[:2] == (positions[("loss", "margin")], "loss.margin")
    assert loc.find(("loss",))[1] == "variants.v.loss"  # the variant wrote it
    assert loc.find(("loss", "scale"))[1:] == ("variants.v.loss.scale", False)
    assert loc.find(("optimizer", "lr"))[1:] == ("sweep.grid.optimizer.lr", True)
    assert loc.find(("data",))[1:] == ("variants.v.data", False)
    issue = loc.issue(("loss", "margin"), "bad", key=False)
    assert (issue.line, issue.column, issue.path) == (2, 5, "loss.margin")
    assert Locator("f", positions).find(("data",))[1:] == ("data", False)


def test_point_labels_and_unique_names() -> None:
    assert point_label("optimizer.lr", 0.1) == "lr0.1"
    assert point_label("optimizer.lr", 0.000123456, short=True) == "lr0.000123"
    assert point_label("loss.name", "softmax") == "softmax"
    assert point_label("loss", {"name": "svm", "margin": 2}) == "svm"
    assert point_label("regularizer.0", {"strength": 1}) == "strength1"
    assert point_label("data.center", False) == "centerfalse"
    assert point_label("data.limit", None) == "limitnone"
    assert unique_names(["a", "a", "a-2", "b", "a"]) == ["a", "a-3", "a-2", "b", "a-4"]


# ------------------------------------------------------------- a change of component name

WALK = """\
name: walk
data: {name: iris, val: 0.1, limit: 80}
loss: {name: svm, margin: 2.0}
regularizer: {name: l2, strength: 0.01, include_bias: true}
optimizer: {name: sgd, lr: 0.01, batch_size: 32, epochs: 2, momentum: 0.9}
"""


@pytest.fixture(scope="module")
def bundled() -> Registry:
    from optlab._contract.plugin_manager import get_registry

    return get_registry()


def test_a_new_name_keeps_the_settings_the_new_component_has() -> None:
    def keys(key: str, name: str) -> frozenset[str] | None:
        return {"hinge": frozenset({"margin"}), "other": frozenset()}.get(name)

    base = {"loss": {"name": "svm", "margin": 2, "squared": True}}
    assert merge(base, {"loss": {"name": "hinge"}}, keys=keys) == {
        "loss": {"name": "hinge", "margin": 2}
    }
    assert merge(base, {"loss": {"name": "other"}}, keys=keys) == {"loss": {"name": "other"}}
    # what the override writes is kept, whatever the new component has
    assert merge(base, {"loss": {"name": "other", "squared": False}}, keys=keys) == {
        "loss": {"name": "other", "squared": False}
    }
    # a base without a name is completed, not renamed: nothing is dropped
    assert merge({"loss": {"margin": 2}}, {"loss": {"name": "other"}}, keys=keys) == {
        "loss": {"margin": 2, "name": "other"}
    }
    body = copy.deepcopy(base)
    set_path(body, ["loss", "name"], "hinge", keys=keys)
    assert body == {"loss": {"name": "hinge", "margin": 2}}


def test_set_name_keeps_shared_settings_whatever_the_order(
    tmp_path: Path, bundled: Registry
) -> None:
    for overrides in (
        ["optimizer.lr=0.005", "optimizer.name=adam"],
        ["optimizer.name=adam", "optimizer.lr=0.005"],
    ):
        run = load_experiment(_write(tmp_path, WALK), overrides, registry=bundled).runs[0]
        params = run.optimizer.params.model_dump()
        assert run.optimizer.name == "adam"
        assert (params["lr"], params["batch_size"], params["epochs"]) == (0.005, 32, 2)
    # a setting the new component lacks is an error when --set gives it, in either order
    for overrides in (
        ["optimizer.momentum=0.5", "optimizer.name=adam"],
        ["optimizer.name=adam", "optimizer.momentum=0.5"],
    ):
        with pytest.raises(SpecError) as info:
            load_experiment(_write(tmp_path, WALK), overrides, registry=bundled)
        assert [i.message[:28] for i in info.value.issues] == ["unknown key 'momentum'; allo"]


def test_variant_changing_names_keeps_shared_settings(tmp_path: Path, bundled: Registry) -> None:
    text = WALK + textwrap.dedent(
        """\
        variants:
          adagrad: {optimizer: {name: adagrad, lr: 0.1}}
          other: {loss: {name: softmax}, regularizer: {name: l1}, data: {name: wine}}
        """
    )
    adagrad, other = load_experiment(_write(tmp_path, text), registry=bundled).runs
    # momentum, which adagrad lacks, is dropped without an error
    assert adagrad.optimizer.params.model_dump() | {"eps": 0} == {
        "lr": 0.1,
        "batch_size": 32,
        "epochs": 2,
        "sampling": "shuffle",
        "lr_decay": 1.0,
        "eps": 0,
    }
    assert other.loss.name == "softmax"  # svm's margin dropped, no error
    assert (other.regularizers[0].name, other.regularizers[0].params.model_dump()) == (
        "l1",
        {"include_bias": True, "strength": 0.01},
    )
    assert (other.dataset.name, other.data.val, other.data.limit) == ("wine", 0.1, 80)


def test_sweeping_names_keeps_shared_settings(tmp_path: Path, bundled: Registry) -> None:
    text = WALK + "sweep: {grid: {optimizer.name: [sgd, adam], regularizer.name: [l1]}}\n"
    runs = load_experiment(_write(tmp_path, text), registry=bundled).runs
    assert [r.optimizer.params.batch_size for r in runs] == [32, 32]  # type: ignore[attr-defined]
    assert [r.regularizers[0].params.strength for r in runs] == [0.01, 0.01]  # type: ignore[attr-defined]
    # a key swept with a name goes after it, whatever the order written: adam lacks momentum
    text = WALK + "sweep: {grid: {optimizer.momentum: [0.5], optimizer.name: [sgd, adam]}}\n"
    with pytest.raises(SpecError) as info:
        load_experiment(_write(tmp_path, text), registry=bundled)
    assert [(i.path, i.message[:22]) for i in info.value.issues] == [
        ("sweep.grid.optimizer.momentum", "unknown key 'momentum'")
    ]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "walk.yaml"
    path.write_text(text, encoding="utf-8")
    return path
