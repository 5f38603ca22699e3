"""Spec validation: every error is located (file:line:col), rephrased, and reported at once."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import model_validator
from spec_testplugins import BUNDLED, SpecTestPlugin, make_registry

import optlab
from optlab import LossRecord
from optlab._contract.plugin_manager import build_registry, registered_plugin
from optlab._contract.registry import Registry
from optlab._errors import SpecError, SpecIssue
from optlab._spec.experiment import Experiment
from optlab._spec.load import load_experiment

BASE = """\
name: demo
data: {name: digits, limit: 100}
loss: {name: svm, margin: 1.0}
regularizer: {name: l2, strength: 0.001}
optimizer:
  name: sgd
  lr: 0.1
  batch_size: 50
  epochs: 2
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return make_registry()


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(
    tmp_path: Path, text: str, registry: Registry, overrides: Sequence[str] = ()
) -> Experiment:
    return load_experiment(write(tmp_path, text), overrides, registry=registry)


def issues(
    tmp_path: Path, text: str, registry: Registry, overrides: Sequence[str] = ()
) -> list[SpecIssue]:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text, registry, overrides)
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return info.value.issues


def brief(found: list[SpecIssue]) -> list[tuple[int, int, str, str]]:
    return [(i.line, i.column, i.path, i.message) for i in found]


# ---------------------------------------------------------------------------------- valid


def test_minimal_spec_is_one_run_with_defaults(tmp_path: Path, registry: Registry) -> None:
    exp = load(
        tmp_path,
        "name: x\ndata: {name: digits}\nloss: {name: svm}\noptimizer: {name: sgd}\n",
        registry,
    )
    assert exp.name == "x" and exp.source.endswith("spec.yaml")
    (run,) = exp.runs
    assert run.name == "svm" and run.variant is None and run.seed == 0 and run.point == {}
    assert run.regularizers == ()
    assert run.optimizer.params.model_dump() == {"lr": 0.1, "batch_size": 200, "epochs": 20}
    assert run.resolved == {
        "seed": 0,
        "data": {
            "name": "digits",
            "center": True,
            "standardize": False,
            "bias": True,
            "dtype": "float64",
            "val": 0.2,
            "test": 0.2,
            "limit": None,
            "mmap": False,
            "n_samples": None,
        },
        "loss": {"name": "svm", "margin": 1.0},
        "regularizer": [],
        "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 200, "epochs": 20},
        "checks": {
            "initial_loss": "warn",
            "initial_loss_tolerance": 0.1,
            "gradient": "error",
            "gradient_tolerance": 0.01,
            "divergence_factor": 1000.0,
        },
    }
    json.dumps(run.resolved)
    assert exp.axes == {} and exp.tracking.enabled
    assert exp.raw["loss"] == {"name": "svm"}


def test_data_keys_are_split_between_options_and_plugin(tmp_path: Path, registry: Registry) -> None:
    exp = load(
        tmp_path,
        "name: x\ndata: {name: blobs, n_samples: 50, n_classes: 4, dtype: float32, "
        "limit: {train: 10}, standardize: true}\nloss: {name: softmax}\noptimizer: {name: gd}\n",
        registry,
    )
    run = exp.runs[0]
    assert run.data.dtype == "float32" and run.data.standardize
    assert run.data.limit is not None and run.data.limit.train == 10  # type: ignore[union-attr]
    assert run.dataset.name == "blobs"
    assert run.dataset.params.model_dump() == {"n_samples": 50, "n_classes": 4, "n_features": 2}
    assert run.resolved["data"]["limit"] == {"train": 10, "val": None, "test": None}


def test_components_build_real_objects(tmp_path: Path, registry: Registry) -> None:
    import numpy as np

    run = load(tmp_path, BASE, registry, ["data={name: blobs, n_samples: 40}"]).runs[0]
    loss = run.loss.build()
    scores = np.zeros((4, 3))
    value, grad = loss.loss_and_grad(scores, np.array([0, 1, 2, 0]))
    assert value == pytest.approx(2.0)  # C - 1 at zero scores, margin 1
    assert grad.shape == (4, 3)
    assert run.regularizers[0].build().strength == 0.001
    raw = run.dataset.build().load(np.random.default_rng(0))
    assert raw.X.shape == (40, 2) and run.data.limit == 100  # data options kept


def test_yaml_12_scalars(tmp_path: Path, registry: Registry) -> None:
    exp = load(
        tmp_path,
        BASE.replace("lr: 0.1", "lr: 1e-3") + "checks: {gradient: off, initial_loss: error}\n",
        registry,
    )
    run = exp.runs[0]
    assert run.optimizer.params.lr == 0.001  # type: ignore[attr-defined]
    assert run.checks.gradient == "off" and run.checks.initial_loss == "error"


def test_checks_false_turns_policies_off(tmp_path: Path, registry: Registry) -> None:
    run = load(tmp_path, BASE + "checks: false\n", registry).runs[0]
    assert (run.checks.initial_loss, run.checks.gradient) == ("off", "off")


@pytest.mark.parametrize("value", ["none", "null", "[]", "None"])
def test_no_regularizer(tmp_path: Path, registry: Registry, value: str) -> None:
    text = BASE.replace("regularizer: {name: l2, strength: 0.001}", f"regularizer: {value}")
    assert load(tmp_path, text, registry).runs[0].regularizers == ()


def test_regularizer_list(tmp_path: Path, registry: Registry) -> None:
    text = BASE.replace(
        "regularizer: {name: l2, strength: 0.001}",
        "regularizer:\n  - {name: l2, strength: 0.1}\n  - {name: l2, include_bias: true}",
    )
    regs = load(tmp_path, text, registry).runs[0].regularizers
    assert [r.params.model_dump() for r in regs] == [
        {"include_bias": False, "strength": 0.1},
        {"include_bias": True, "strength": 0.0001},
    ]


def test_yaml_merge_keys_and_anchors(tmp_path: Path, registry: Registry) -> None:
    text = """\
    name: x
    data: {name: digits}
    loss: &svm {name: svm, margin: 3}
    optimizer: &opt {name: sgd, lr: 0.5, epochs: 3}
    variants:
      same: {loss: *svm}
      slower:
        optimizer:
          <<: *opt
          lr: 0.05
    """
    exp = load(tmp_path, text, registry)
    assert [r.optimizer.params.lr for r in exp.runs] == [0.5, 0.05]  # type: ignore[attr-defined]
    assert exp.runs[1].optimizer.params.epochs == 3  # type: ignore[attr-defined]


def test_tracking_and_description(tmp_path: Path, registry: Registry) -> None:
    exp = load(
        tmp_path,
        BASE + "description: a test\ntracking: {uri: 'sqlite:///x.db', enabled: false}\n",
        registry,
    )
    assert exp.description == "a test"
    assert exp.tracking.uri == "sqlite:///x.db" and not exp.tracking.enabled


def test_spec_hash_covers_content_and_overrides(tmp_path: Path, registry: Registry) -> None:
    a = load(tmp_path, BASE, registry)
    b = load(tmp_path, BASE, registry)
    c = load(tmp_path, BASE, registry, ["optimizer.lr=0.2"])
    d = load(tmp_path, BASE + "# a comment\n", registry)
    assert a.spec_hash == b.spec_hash
    assert len({a.spec_hash, c.spec_hash, d.spec_hash}) == 3
    assert len(a.spec_hash) == 64


def test_default_registry_is_the_process_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTLAB_DISABLE_PLUGINS", BUNDLED)
    with registered_plugin(SpecTestPlugin(), name="spec_default"):
        exp = load_experiment(write(tmp_path, BASE))
        assert exp.runs[0].loss.record.provider == "spec_default"


# ---------------------------------------------------------------------------------- errors


def test_value_error_points_at_the_value(tmp_path: Path, registry: Registry) -> None:
    found = issues(tmp_path, BASE.replace("lr: 0.1", "lr: -0.1"), registry)
    assert brief(found) == [(7, 7, "optimizer.lr", "must be greater than 0, got -0.1")]
    expected = "7:7: optimizer.lr: must be greater than 0, got -0.1"
    assert str(found[0]) == f"{tmp_path / 'spec.yaml'}:{expected}"


def test_unknown_key_points_at_the_key_with_suggestion(tmp_path: Path, registry: Registry) -> None:
    found = issues(tmp_path, BASE.replace("  lr: 0.1", "  lrr: 0.1"), registry)
    assert brief(found) == [(7, 3, "optimizer", "unknown key 'lrr' (did you mean 'lr'?)")]


def test_a_key_in_the_lecture_notation_suggests_the_key_its_description_names(
    tmp_path: Path, registry: Registry
) -> None:
    # the lecture's step_size (W -= step_size * grad), lambda and Delta are optlab's lr,
    # strength and margin; 'step_size' was taken for a typo of 'batch_size'
    text = (
        BASE.replace("margin: 1.0", "delta: 1.0")
        .replace("strength: 0.001", "lambda: 0.001")
        .replace("  lr: 0.1", "  step_size: 0.1")
    )
    found = issues(tmp_path, text, registry)
    assert [i.message for i in found] == [
        "unknown key 'delta' (did you mean 'margin'?)",
        "unknown key 'lambda' (did you mean 'strength'?)",
        "unknown key 'step_size' (did you mean 'lr'?)",
    ]


def test_the_bundled_params_answer_the_lecture_notation(tmp_path: Path) -> None:
    # lr_decay's description mentions "the learning rate" too: it names lr, not itself; and
    # bias, "Append a constant-1 column (the bias trick).", is the only key to mention it
    text = BASE.replace("  lr: 0.1", "  learning_rate: 0.1\n  mu: 0.9").replace(
        "limit: 100", "limit: 100, bias_trick: true"
    )
    with pytest.raises(SpecError) as info:
        load_experiment(write(tmp_path, text))
    assert [i.message for i in info.value.issues] == [
        "unknown key 'bias_trick' (did you mean 'bias'?)",
        "unknown key 'learning_rate' (did you mean 'lr'?)",
        "unknown key 'mu' (did you mean 'momentum'?)",
    ]


def test_unknown_key_without_close_match_lists_allowed(tmp_path: Path, registry: Registry) -> None:
    found = issues(tmp_path, BASE.replace("  lr: 0.1", "  zzz: 0.1"), registry)
    assert found[0].message == "unknown key 'zzz'; allowed keys: batch_size, epochs, lr, name"


def test_unknown_component_name_suggests(tmp_path: Path, registry: Registry) -> None:
    found = issues(tmp_path, BASE.replace("name: svm", "name: smv"), registry)
    assert brief(found) == [
        (
            3,
            14,
            "loss.name",
            "unknown loss 'smv' (did you mean 'svm'?); available: softmax, svm",
        )
    ]


def test_a_component_name_in_capitals_suggests_the_name(tmp_path: Path, registry: Registry) -> None:
    # the lecture writes SVM and L2; difflib alone finds nothing close to 'SVM' or 'L2'
    text = BASE.replace("name: svm", "name: SVM").replace("name: l2", "name: L2")
    found = issues(tmp_path, text, registry)
    assert [(i.path, i.message.partition(";")[0]) for i in found] == [
        ("loss.name", "unknown loss 'SVM' (did you mean 'svm'?)"),
        ("regularizer.name", "unknown regularizer 'L2' (did you mean 'l2'?)"),
    ]


def test_ambiguous_component_is_a_located_issue(tmp_path: Path) -> None:
    class Other:
        @optlab.hookimpl
        def optlab_register_losses(self) -> list[LossRecord]:
            return [LossRecord("svm", lambda p: None)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTLAB_DISABLE_PLUGINS", BUNDLED)
        _, reg = build_registry(extra=[("first", SpecTestPlugin()), ("second", Other())])
    found = issues(tmp_path, BASE, reg)
    assert brief(found) == [
        (
            3,
            14,
            "loss.name",
            "loss 'svm' is provided by first and second; "
            "disable one with OPTLAB_DISABLE_PLUGINS=<plugin>",
        )
    ]


def test_every_error_of_a_file_at_once_in_order(tmp_path: Path, registry: Registry) -> None:
    text = """\
    name: demo
    nmae: typo
    seeds: []
    data: {name: digitz}
    loss: {name: svm, margin: -1}
    regularizer: [{name: l2}, l1]
    optimizer: {name: sgd, lr: 0, batch_size: 1.5}
    checks: {gradient: loud}
    """
    found = issues(tmp_path, text, registry)
    assert brief(found) == [
        (2, 1, "", "unknown key 'nmae' (did you mean 'name'?)"),
        (3, 8, "seeds", "must not be empty"),
        (
            4,
            14,
            "data.name",
            "unknown dataset 'digitz' (did you mean 'digits'?); available: blobs, digits",
        ),
        (5, 27, "loss.margin", "must be greater than 0, got -1"),
        (6, 27, "regularizer.1", "must be a mapping like {name: l1, ...}, got 'l1' (a string)"),
        (7, 28, "optimizer.lr", "must be greater than 0, got 0"),
        (
            7,
            43,
            "optimizer.batch_size",
            "must be a valid integer, got a number with a fractional part",
        ),
        (
            8,
            20,
            "checks.gradient",
            "must be 'warn', 'error' or 'off', got 'loud' (a string)",
        ),
    ]


def test_a_number_of_seeds_is_shown_the_list_it_means(tmp_path: Path, registry: Registry) -> None:
    """`seeds: 3` (three replicates, as a teacher wrote it) was refused with 'must be a valid
    list, got 3', which does not say what to write."""
    found = issues(tmp_path, BASE + "seeds: 3\n", registry)
    (issue,) = brief(found)
    assert issue[2] == "seeds"
    assert "seeds: [0, 1, 2]" in issue[3] and "3 replicates" in issue[3]


def test_missing_components_are_reported_with_choices(tmp_path: Path, registry: Registry) -> None:
    found = issues(tmp_path, "# just a name\nname: x\n", registry)
    assert brief(found) == [
        (2, 1, "", "missing required key 'data' (available: blobs, digits)"),
        (2, 1, "", "missing required key 'loss' (available: softmax, svm)"),
        (2, 1, "", "missing required key 'optimizer' (available: gd, sgd)"),
    ]


def test_errors_in_variants_point_into_the_variant(tmp_path: Path, registry: Registry) -> None:
    text = BASE + textwrap.dedent(
        """\
        variants:
          svm: {}
          wide:
            loss: {margin: -2}
          soft:
            loss: {name: softmx}
          typo:
            optimzer: {lr: 1}
          fast:
            optimizer: {lr: -5}
        """
    )
    found = issues(tmp_path, text, registry)
    assert brief(found) == [
        (13, 20, "variants.wide.loss.margin", "must be greater than 0, got -2"),
        (
            15,
            18,
            "variants.soft.loss.name",
            "unknown loss 'softmx' (did you mean 'softmax'?); available: softmax, svm",
        ),
        (17, 5, "variants.typo", "unknown key 'optimzer' (did you mean 'optimizer'?)"),
        (19, 21, "variants.fast.optimizer.lr", "must be greater than 0, got -5"),
    ]


def test_variant_completes_an_incomplete_base(tmp_path: Path, registry: Registry) -> None:
    text = """\
    name: x
    data: {name: digits}
    optimizer: {name: sgd}
    variants:
      svm: {loss: {name: svm}}
      nothing: {}
    """
    found = issues(tmp_path, text, registry)
    assert brief(found) == [
        (6, 3, "variants.nothing", "missing required key 'loss' (available: softmax, svm)")
    ]


def test_base_errors_show_even_when_every_variant_overrides(
    tmp_path: Path, registry: Registry
) -> None:
    text = (
        BASE.replace("margin: 1.0", "margn: 1.0") + "variants:\n  soft: {loss: {name: softmax}}\n"
    )
    found = issues(tmp_path, text, registry)
    assert brief(found) == [(3, 19, "loss", "unknown key 'margn' (did you mean 'margin'?)")]


def test_sweep_errors_point_at_the_sweep_entry(tmp_path: Path, registry: Registry) -> None:
    text = BASE + textwrap.dedent(
        """\
        seeds: [0, 1, 2]
        sweep:
          grid:
            optimizer.lr: [0.1, -1, 0.01]
            optimizer.epochs:
              - 3
              - 0
        """
    )
    found = issues(tmp_path, text, registry)
    assert brief(found) == [
        (13, 25, "sweep.grid.optimizer.lr", "must be greater than 0, got -1"),
        (16, 9, "sweep.grid.optimizer.epochs", "must be greater than 0, got 0"),
    ]


def test_random_sweep_errors_point_at_the_param(tmp_path: Path, registry: Registry) -> None:
    text = BASE + textwrap.dedent(
        """\
        sweep:
          random:
            trials: 3
            params:
              optimizer.batch_size: {choice: [10, ten]}
              optimizer.lr: {uniform: [-1, -0.5]}
        """
    )
    found = issues(tmp_path, text, registry)
    assert [(i.line, i.path) for i in found] == [
        (14, "sweep.random.params.optimizer.batch_size"),
        (15, "sweep.random.params.optimizer.lr"),
    ]
    assert found[1].message == (
        "the range [-1.0, -0.5] leaves optimizer.lr's bounds (> 0); keep it within them"
    )


def test_a_random_range_is_checked_against_the_bounds_whatever_the_seed(tmp_path: Path) -> None:
    bundled = optlab._contract.plugin_manager.get_registry()
    sweep = "sweep: {random: {trials: 2, params: {optimizer.momentum: {uniform: [0.0, 1.2]}}}}\n"
    text = BASE.replace("  epochs: 2", "  epochs: 2\n  momentum: 0.5") + sweep
    for seed in range(4):  # seed 0 draws only values below 1
        found = issues(tmp_path, text + f"seed: {seed}\n", bundled)
        assert [str(i).split(": ", 1)[1] for i in found] == [
            "sweep.random.params.optimizer.momentum: the range [0.0, 1.2] leaves "
            "optimizer.momentum's bounds (< 1); keep it within them"
        ]
    # both ends, for loguniform and int ranges and the numbers of a choice too
    params = (
        "{optimizer.lr: {loguniform: [0.001, 0.1]}, optimizer.epochs: {int: [0, 3]}, "
        "optimizer.lr_decay: {loguniform: [0.5, 2.0]}, optimizer.beta1: {choice: [0.9, 1, 1.5]}}"
    )
    text = BASE.replace("sgd", "adam") + f"sweep: {{random: {{trials: 2, params: {params}}}}}\n"
    assert [i.message for i in issues(tmp_path, text, bundled)] == [
        "the range [0, 3] leaves optimizer.epochs's bounds (>= 1); keep it within them",
        "the range [0.5, 2.0] leaves optimizer.lr_decay's bounds (<= 1); keep it within them",
        "the choice 1, 1.5 leaves optimizer.beta1's bounds (< 1); keep it within them",
    ]


def test_too_many_runs(tmp_path: Path, registry: Registry) -> None:
    text = BASE + "seeds: [1, 2]\nvariants:\n  a: {}\n  b: {}\nsweep:\n  grid:\n"
    text += "    optimizer.lr: [0.1, 0.2, 0.3]\n    loss.margin: [1, 2]\n"
    ok = load(tmp_path, text + "max_runs: 24\n", registry)
    assert len(ok.runs) == 24
    found = issues(tmp_path, text + "max_runs: 23\n", registry)
    assert brief(found) == [
        (
            14,
            1,
            "sweep",
            "the spec expands to 24 runs (2 variants x 6 sweep points x 2 seeds), more than "
            "max_runs (23); narrow the sweep or raise max_runs",
        )
    ]


def test_default_max_runs_is_1000(tmp_path: Path, registry: Registry) -> None:
    text = BASE + "sweep:\n  random:\n    trials: 1001\n    params:\n"
    text += "      optimizer.lr: {uniform: [0.1, 1]}\n"
    found = issues(tmp_path, text, registry)
    assert "more than max_runs (1000)" in found[0].message


def test_a_random_sweep_of_a_billion_trials_is_refused_without_drawing_them(
    tmp_path: Path, registry: Registry
) -> None:
    """trials: 1000000000 drew every point before counting the runs: optlab validate and
    optlab.load_spec ran for minutes until the memory ran out (killed)."""
    text = BASE + "sweep:\n  grid: {optimizer.lr: [0.1, 0.2]}\n  random:\n"
    text += "    trials: 1000000000\n    params: {loss.margin: {uniform: [0.5, 2]}}\n"
    found = issues(tmp_path, text, registry)  # at once, in a few MB
    assert [i.message for i in found] == [
        "the spec expands to 2000000000 runs (2000000000 sweep points x 1 seed), more than "
        "max_runs (1000); narrow the sweep or raise max_runs"
    ]


def test_variants_x_seeds_beyond_max_runs_points_at_max_runs(
    tmp_path: Path, registry: Registry
) -> None:
    text = BASE + "max_runs: 3\nseeds: [1, 2]\nvariants:\n  a: {}\n  b: {}\n"
    found = issues(tmp_path, text, registry)
    assert brief(found)[0][:3] == (10, 1, "max_runs")


def test_yaml_problem_does_not_hide_other_errors(tmp_path: Path, registry: Registry) -> None:
    text = BASE.replace("lr: 0.1", "lr: -1") + "description: !!python/object:os.system {}\n"
    found = issues(tmp_path, text, registry)
    assert brief(found) == [
        (7, 7, "optimizer.lr", "must be greater than 0, got -1"),
        (
            10,
            14,
            "description",
            "tag '!!python/object:os.system' is not allowed: spec files are plain YAML "
            "(safe loading; no Python objects or custom types); remove the tag",
        ),
    ]


# ---------------------------------------------------------------------------------- files


def test_missing_file(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(SpecError) as info:
        load_experiment(tmp_path / "nope.yaml", registry=registry)
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file; check the path"


def test_directory_instead_of_file(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path, BASE, "inside.yaml")
    with pytest.raises(SpecError) as info:
        load_experiment(tmp_path, registry=registry)
    assert "is a directory, not a spec file; name a .yaml file (it holds inside.yaml)" in str(
        info.value
    )


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_file(tmp_path: Path, registry: Registry) -> None:
    path = write(tmp_path, BASE)
    path.chmod(0)
    try:
        with pytest.raises(SpecError) as info:
            load_experiment(path, registry=registry)
    finally:
        path.chmod(0o644)
    assert "cannot be read: permission denied" in str(info.value)


def test_read_failure_is_reported(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, BASE)

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(SpecError) as info:
        load_experiment(path, registry=registry)
    assert str(info.value) == (
        f"{path}: cannot be read: permission denied; check the file's permissions"
    )


def test_not_a_regular_file(registry: Registry) -> None:
    with pytest.raises(SpecError, match="is not a regular file"):
        load_experiment("/dev/null", registry=registry)


def test_too_large_file(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(BASE + "# " + "x" * 1_000_001 + "\n")
    with pytest.raises(SpecError, match="more than the 1000000 a spec may have"):
        load_experiment(path, registry=registry)


def test_non_utf8_is_located(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: x\ndescription: \xc3\xa9t\xe9\n")
    with pytest.raises(SpecError) as info:
        load_experiment(path, registry=registry)
    assert brief(info.value.issues) == [
        (2, 16, "", "is not valid UTF-8 (byte 0xe9); save the file as UTF-8")
    ]


def test_utf8_bom_is_accepted(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_experiment(path, registry=registry).name == "demo"


def test_tab_is_located(tmp_path: Path, registry: Registry) -> None:
    found = issues(tmp_path, "name: x\noptimizer:\n\tlr: 1\n", registry)
    assert brief(found) == [
        (
            3,
            1,
            "",
            "invalid YAML: found a tab character where YAML expects indentation; "
            "indent with spaces",
        )
    ]


# ---------------------------------------------------------------------------------- --set


def test_set_overrides_apply_and_parse_yaml(tmp_path: Path, registry: Registry) -> None:
    exp = load(
        tmp_path,
        BASE,
        registry,
        ["optimizer.lr=0.5", "data.limit=200", "loss={name: softmax}", "regularizer=none"],
    )
    run = exp.runs[0]
    assert run.optimizer.params.lr == 0.5  # type: ignore[attr-defined]
    assert run.data.limit == 200
    assert run.loss.name == "softmax" and run.regularizers == ()
    assert exp.raw["optimizer"]["lr"] == 0.5


def test_set_component_name_replaces_params(tmp_path: Path, registry: Registry) -> None:
    text = BASE.replace("margin: 1.0", "margin: 3.0")
    assert load(tmp_path, text, registry, ["loss.name=softmax"]).runs[0].loss.name == "softmax"
    run = load(tmp_path, text, registry, ["loss={margin: 2}"]).runs[0]
    assert run.loss.params.margin == 2.0  # type: ignore[attr-defined]


def test_set_a_list_entry(tmp_path: Path, registry: Registry) -> None:
    text = BASE.replace("regularizer: {name: l2, strength: 0.001}", "regularizer: [{name: l2}]")
    run = load(tmp_path, text, registry, ["regularizer.0={strength: 0.3}"]).runs[0]
    assert run.regularizers[0].params.strength == 0.3  # type: ignore[attr-defined]
    run = load(tmp_path, text, registry, ["regularizer.0={name: l2, include_bias: true}"]).runs[0]
    assert run.regularizers[0].params.model_dump() == {"include_bias": True, "strength": 0.0001}


def test_set_reaches_variants_and_sweep(tmp_path: Path, registry: Registry) -> None:
    text = BASE + "variants:\n  svm: {}\n  soft: {loss: {name: softmax}}\n"
    exp = load(
        tmp_path,
        text,
        registry,
        ["variants.soft.optimizer.lr=0.3", "sweep.grid.optimizer.epochs=[1, 2]", "seeds=[4, 5]"],
    )
    assert len(exp.runs) == 8
    assert [r.optimizer.params.lr for r in exp.runs if r.variant == "soft"] == [0.3] * 4  # type: ignore[attr-defined]
    assert exp.axes == {
        "variant": ["svm", "soft"],
        "optimizer.epochs": [1, 2],
        "seed": [4, 5],
    }


def test_bad_set_overrides_are_reported_with_the_file_errors(
    tmp_path: Path, registry: Registry
) -> None:
    found = issues(
        tmp_path,
        BASE.replace("margin: 1.0", "margin: -1"),
        registry,
        ["optimizer.lr=-1", "optimizer.lrr=1", "nonsense", "data.limit=[1", "loss.margin.x=1"],
    )
    assert [str(i) for i in found if i.file == "--set"] == [
        "--set: expected KEY.PATH=VALUE, e.g. optimizer.lr=0.1 (in --set nonsense)",
        "--set: loss.margin.x: cannot set 'loss.margin.x': 'loss.margin' is -1, not a "
        "mapping (in --set loss.margin.x=1)",
        "--set: optimizer: unknown key 'lrr' (did you mean 'lr'?) (in --set optimizer.lrr=1)",
        "--set: optimizer.lr: must be greater than 0, got -1 (in --set optimizer.lr=-1)",
        "--set:1:3: data.limit: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(the '[' opened on line 1 is still open here: close it with ']', or separate its "
        "entries with ',') (in --set data.limit=[1)",
    ]
    assert [i.path for i in found if i.file != "--set"] == ["loss.margin"]


def test_a_missing_key_s_hint_is_a_set_that_works(tmp_path: Path) -> None:
    """The hint for a missing key names the ``--set`` that supplies it: a top-level key as
    ``name=...`` (``.name=...`` is refused), a nested one by its dotted path, inside a variant
    too; none where no ``--set`` key reaches the key (a variant named with a dot)."""

    class NeedyParams(optlab.Params):
        scale: float

    class Needy:
        @optlab.hookimpl
        def optlab_register_losses(self) -> list[LossRecord]:
            return [LossRecord("needy", lambda p: None, NeedyParams)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTLAB_DISABLE_PLUGINS", BUNDLED)
        _, reg = build_registry(extra=[("tests", SpecTestPlugin()), ("needy", Needy())])
    random = "sweep:\n  random:\n    params:\n      optimizer.lr: {uniform: [0.1, 1]}\n"
    needy = "variants:\n  a: {}\n  b:\n    loss: {name: needy}\n"
    cases = [
        (BASE.replace("name: demo\n", ""), "", "name", "demo"),
        (BASE.replace("svm, margin: 1.0", "needy"), "loss: ", "loss.scale", "2"),
        (BASE + random, "sweep.random: ", "sweep.random.trials", "3"),
        (BASE + needy, "variants.b.loss: ", "variants.b.loss.scale", "2"),
    ]
    for text, where, key, value in cases:
        (issue,) = issues(tmp_path, text, reg)
        missing = key.rpartition(".")[2]
        under = f"add it under {key.rpartition('.')[0]}:" if "." in key else "add it"
        assert issue.message == f"missing required key '{missing}'; {under} or pass --set {key}=..."
        assert str(issue).endswith(f": {where}{issue.message}")
        load(tmp_path, text, reg, [f"{key}={value}"])  # the hint's --set is accepted and works
    with pytest.raises(SpecError, match=r"expected KEY\.PATH=VALUE"):
        load(tmp_path, cases[0][0], reg, [".name=demo"])
    (issue,) = issues(tmp_path, BASE + needy.replace("  b:", "  lr0.1:"), reg)
    assert issue.message == "missing required key 'scale'; add it under variants.lr0.1.loss:"


def test_set_unknown_top_level_key(tmp_path: Path, registry: Registry) -> None:
    found = issues(tmp_path, BASE, registry, ["optimiser.lr=1"])
    assert str(found[0]) == (
        "--set: unknown key 'optimiser' (did you mean 'optimizer'?) (in --set optimiser.lr=1)"
    )


# ------------------------------------------------------------ found by trying it as a new user


def test_a_params_validator_failing_in_a_variant_points_into_the_variant(tmp_path: Path) -> None:
    class PickyParams(optlab.Params):
        low: float = 0.0
        high: float = 1.0

        @model_validator(mode="after")
        def _ordered(self) -> PickyParams:
            if self.low >= self.high:
                raise ValueError(f"low must be below high, got {self.low} >= {self.high}")
            return self

    class Picky:
        @optlab.hookimpl
        def optlab_register_losses(self) -> list[LossRecord]:
            return [LossRecord("picky", lambda p: None, PickyParams)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTLAB_DISABLE_PLUGINS", BUNDLED)
        _, reg = build_registry(extra=[("tests", SpecTestPlugin()), ("picky", Picky())])
    text = BASE + "variants:\n  a: {}\n  b:\n    loss: {name: picky, low: 2}\n"
    found = issues(tmp_path, text, reg)
    assert brief(found) == [
        (13, 11, "variants.b.loss", "low must be below high, got 2.0 >= 1.0"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("lr: 0.1", "lr: .inf", "optimizer.lr"),
        ("strength: 0.001", "strength: -.inf", "regularizer.strength"),
        ("margin: 1.0", "margin: .nan", "loss.margin"),
    ],
)
def test_non_finite_numbers_are_refused(
    tmp_path: Path, registry: Registry, old: str, new: str, path: str
) -> None:
    found = issues(tmp_path, BASE.replace(old, new), registry)
    assert [(i.path, i.message.split(",")[0]) for i in found] == [(path, "must be a finite number")]


def test_every_misspelled_sweep_key_is_reported_once(tmp_path: Path, registry: Registry) -> None:
    text = BASE + "sweep:\n  grid: {optimizer.lrr: [0.1, 0.2, 0.3], foo.bar: [1]}\n"
    found = issues(tmp_path, text, registry)
    assert brief(found) == [
        (11, 10, "sweep.grid.optimizer.lrr", "unknown key 'lrr' (did you mean 'lr'?)"),
        (
            11,
            42,
            "sweep.grid.foo.bar",
            "sweep keys start with one of data, loss, regularizer, optimizer, checks, got 'foo'",
        ),
    ]


def test_a_component_param_written_at_the_run_level_names_its_component(
    tmp_path: Path, registry: Registry
) -> None:
    # --set batch_size=10, a variant's {margin: 2}, a sweep over lr: only the allowed keys
    # were listed
    text = BASE + "variants:\n  wide: {margin: 2.0}\n"
    found = issues(tmp_path, text, registry, overrides=["batch_size=10"])
    assert [(i.path, i.message) for i in found] == [
        ("variants.wide", "unknown key 'margin' (did you mean 'loss.margin'?)"),
        (
            "",
            "unknown key 'batch_size' (did you mean 'optimizer.batch_size'?)"
            " (in --set batch_size=10)",
        ),
    ]
    found = issues(tmp_path, BASE + "sweep:\n  grid: {lr: [0.1, 0.2]}\n", registry)
    assert [(i.path, i.message) for i in found] == [
        (
            "sweep.grid.lr",
            "sweep keys start with one of data, loss, regularizer, optimizer, checks, got 'lr'"
            " (did you mean 'optimizer.lr'?)",
        )
    ]


def test_experiment_name_longer_than_mlflow_allows(tmp_path: Path, registry: Registry) -> None:
    found = issues(tmp_path, BASE.replace("name: demo", "name: " + "x" * 501), registry)
    assert [(i.line, i.path, i.message[:41]) for i in found] == [
        (1, "name", "string should have at most 500 characters")
    ]


def test_unknown_key_of_a_dataset_whose_name_has_an_underscore(tmp_path: Path) -> None:
    text = BASE.replace("{name: digits, limit: 100}", "{name: breast_cancer, sise: 3}")
    found = issues(tmp_path, text, optlab._contract.plugin_manager.get_registry())
    assert [i.message for i in found] == [  # the keys of breast_cancer, not of every dataset
        "unknown key 'sise'; allowed keys: bias, center, dtype, limit, mmap, name, "
        "standardize, test, val"
    ]


def test_a_kind_no_plugin_offers_is_a_located_issue(tmp_path: Path) -> None:
    class NoOptimizers(SpecTestPlugin):
        @optlab.hookimpl
        def optlab_register_optimizers(self) -> list[optlab.OptimizerRecord]:
            return []

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTLAB_DISABLE_PLUGINS", BUNDLED)
        _, reg = build_registry(extra=[("spec_test", NoOptimizers())])
    found = issues(tmp_path, BASE, reg)
    assert [(i.line, i.column, i.path, i.message[:40]) for i in found] == [
        (6, 9, "optimizer.name", "unknown optimizer 'sgd'; available: none")
    ]


def test_a_spec_given_as_a_mapping(registry: Registry) -> None:
    spec = {
        "name": "x",
        "data": {"name": "digits"},
        "loss": {"name": "svm", "margin": -1},
        "optimizer": {"name": "sgdd"},
    }
    with pytest.raises(SpecError) as info:
        load_experiment(spec, ["optimizer.lr=-1"], registry=registry)
    assert [str(i) for i in info.value.issues] == [
        "<spec>: loss.margin: must be greater than 0, got -1",
        "<spec>: optimizer.name: unknown optimizer 'sgdd' (did you mean 'sgd'?); "
        "available: gd, sgd",
    ]
    spec["loss"] = {"name": "svm"}
    spec["optimizer"] = {"name": "sgd"}
    exp = load_experiment(spec, registry=registry)
    assert [r.name for r in exp.runs] == ["svm"] and spec["loss"] == {"name": "svm"}
    assert exp.spec_hash == load_experiment(dict(spec), registry=registry).spec_hash


def test_a_mapping_with_a_key_that_is_no_string(registry: Registry) -> None:
    """A dict spec whose mapping mixes string keys with another type (``{"a": {}, 1: {}}``,
    a key ``None``) raised json's TypeError ("'<' not supported between instances of 'int'
    and 'str'") from optlab.load_spec and optlab.run instead of the located issue."""
    spec = {
        "name": "x",
        "data": {"name": "digits", 0.5: 1},
        "loss": {"name": "svm"},
        "optimizer": {"name": "sgd", None: 3},
        "variants": {"a": {}, 1: {}},
    }
    with pytest.raises(SpecError) as info:
        load_experiment(spec, registry=registry)
    assert [str(i) for i in info.value.issues] == [
        "<spec>: data: keys should be strings, got 0.5",
        "<spec>: optimizer: keys should be strings, got null",
        "<spec>: variants.1: must be a valid string, got 1",
    ]


def test_set_cannot_create_a_variant(tmp_path: Path, registry: Registry) -> None:
    text = BASE + "variants:\n  svm: {}\n  softmax: {loss: {name: softmax}}\n"
    for override, message in [
        (
            "variants.sofmax.optimizer.lr=0.1",
            "--set: no variant 'sofmax' (did you mean 'softmax'?); --set changes existing "
            "variants (add one in the file) (in --set variants.sofmax.optimizer.lr=0.1)",
        ),
        (
            "variants={other: {}}",
            "--set: no variant 'other' (the spec's are svm, softmax); --set changes existing "
            "variants (add one in the file) (in --set variants={other: {}})",
        ),
    ]:
        assert [str(i) for i in issues(tmp_path, text, registry, [override])] == [message]
    found = issues(tmp_path, BASE, registry, ["variants.a={}"])
    assert [i.message[:36] for i in found] == ["no variant 'a' (the spec has none); "]
    # an existing variant is changed as before
    exp = load(tmp_path, text, registry, ["variants.softmax.optimizer.lr=0.3"])
    assert [r.optimizer.params.lr for r in exp.runs] == [0.1, 0.3]  # type: ignore[attr-defined]


def test_sweeping_a_key_of_a_component_the_run_lacks(tmp_path: Path, registry: Registry) -> None:
    text = BASE.replace("regularizer: {name: l2, strength: 0.001}\n", "")
    sweep = "sweep:\n  grid:\n    regularizer.strength: [0.1, 1]\n"
    found = issues(
        tmp_path, text + "variants:\n  a: {}\n  b: {regularizer: {name: l2}}\n" + sweep, registry
    )
    assert [(i.line, i.column, i.path, i.message) for i in found] == [
        (
            14,
            5,
            "sweep.grid.regularizer.strength",
            "neither the base nor variant 'a' has a regularizer to set 'strength' on; add "
            "regularizer: {name: l2} (or sweep regularizer.name too)",
        )
    ]
    # sweeping the name too gives the run its regularizer
    exp = load(tmp_path, text + sweep + "    regularizer.name: [l2]\n", registry)
    assert [r.regularizers[0].params.strength for r in exp.runs] == [0.1, 1.0]  # type: ignore[attr-defined]


def test_sweeping_a_key_of_an_absent_component_names_every_one_that_has_it(
    tmp_path: Path,
) -> None:
    """With the bundled regularizers two have ``strength`` (l1 and l2): the fix offered the
    first in the alphabet, l1, as if the only one; it names both."""
    from optlab._contract.plugin_manager import build_registry

    text = BASE.replace("regularizer: {name: l2, strength: 0.001}\n", "")
    sweep = "sweep:\n  grid:\n    regularizer.strength: [0.1, 1]\n"
    [found] = issues(tmp_path, text + sweep, build_registry()[1])
    assert found.message == (
        "the spec has no regularizer to set 'strength' on; add regularizer: {name: NAME}, NAME "
        "one of l1, l2 (those with 'strength'), or sweep regularizer.name too"
    )


def test_a_bad_value_swept_into_a_list_entry_points_at_the_sweep(
    tmp_path: Path, registry: Registry
) -> None:
    text = BASE.replace("regularizer: {name: l2, strength: 0.001}", "regularizer: [{name: l2}]")
    found = issues(tmp_path, text + "sweep:\n  grid:\n    regularizer.0.strength: [-1]\n", registry)
    assert [(i.line, i.path) for i in found] == [(12, "sweep.grid.regularizer.0.strength")]


def test_a_set_that_the_sweep_overrides_is_refused(tmp_path: Path, registry: Registry) -> None:
    """``--set optimizer.lr=0.01`` under a sweep of ``optimizer.lr`` would change no run: it
    is reported, for the base and for a variant, not silently dropped."""
    text = BASE + "variants:\n  a: {}\nsweep: {grid: {optimizer.lr: [0.1, 0.2]}}\n"
    found = issues(tmp_path, text, registry, ["optimizer.lr=0.01", "variants.a.optimizer.lr=3"])
    assert [str(i) for i in found] == [
        "--set: optimizer.lr: the sweep sets optimizer.lr in every run, so this value would "
        "never be used; change the sweep's values for optimizer.lr instead (in --set "
        "optimizer.lr=0.01)",
        "--set: variants.a.optimizer.lr: the sweep sets optimizer.lr in every run, so this "
        "value would never be used; change the sweep's values for optimizer.lr instead (in "
        "--set variants.a.optimizer.lr=3)",
    ]
    # the sweep itself, and keys the sweep leaves alone, are set as before
    exp = load(tmp_path, text, registry, ["sweep.grid.optimizer.lr=[0.5]", "optimizer.epochs=2"])
    assert [r.optimizer.params.lr for r in exp.runs] == [0.5]  # type: ignore[attr-defined]
