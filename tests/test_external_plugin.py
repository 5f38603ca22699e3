"""The third-party plugin examples/optlab-smooth-hinge, in-process and as a real distribution.

The fast tests load the plugin from its source folder and register it in-process. The slow
test does what a user does: builds the plugin's wheel and optlab's, installs both into a fresh
virtual environment, finds the plugin through its entry point, runs the comparison spec with
MLflow tracking, reads the runs back, and runs the plugin's own test suite there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from session_cache import once_per_session
from typer.testing import CliRunner
from venvs import IGNORE, build_wheel, fresh_venv

from optlab._cli import app
from optlab._contract.plugin_manager import get_registry
from optlab.testing import check_loss, check_optimizer, register_plugin

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "optlab-smooth-hinge"
SPEC = PLUGIN / "compare.yaml"
DIST, VERSION, EP_NAME = "optlab-smooth-hinge", "0.1.0", "smooth_hinge"
#: --set overrides that shrink the comparison to about a second of training per run
SHRINK = [
    "optimizer.epochs=1",
    "variants.smooth_hinge_lookahead.optimizer.epochs=1",
    "data.limit=300",
]


# --------------------------------------------------------------------------------------------
# In-process: the plugin from its source folder
# --------------------------------------------------------------------------------------------


@pytest.fixture
def plugin_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(PLUGIN))
    import optlab_smooth_hinge  # type: ignore[import-not-found]  # from PLUGIN, not installed

    yield optlab_smooth_hinge
    for name in [m for m in sys.modules if m.startswith("optlab_smooth_hinge")]:
        del sys.modules[name]


def test_plugin_components_pass_the_conformance_checks(plugin_module: Any) -> None:
    (loss,) = plugin_module.optlab_register_losses()
    (optimizer,) = plugin_module.optlab_register_optimizers()
    check_loss(loss)
    check_loss(loss, params={"smoothing": 0.05, "margin": 2.0})
    check_optimizer(optimizer, params={"lr": 0.1, "batch_size": 32, "epochs": 3})


def test_registered_plugin_provides_both_components(plugin_module: Any) -> None:
    with register_plugin(plugin_module, name=EP_NAME):
        registry = get_registry()
        assert registry.get("loss", "smooth_hinge").provider == EP_NAME
        assert registry.get("optimizer", "lookahead_sgd").provider == EP_NAME
        assert registry.plugins[EP_NAME].components == [
            ("loss", "smooth_hinge"),
            ("optimizer", "lookahead_sgd"),
        ]
    assert "smooth_hinge" not in get_registry().names("loss")


def test_comparison_spec_is_valid_and_uses_the_plugin(plugin_module: Any) -> None:
    with register_plugin(plugin_module, name=EP_NAME):
        result = CliRunner().invoke(app, ["validate", str(SPEC)])
    assert result.exit_code == 0, result.output
    plan = result.stdout
    assert "4 runs" in plan
    assert "variant = [svm, softmax, smooth_hinge, smooth_hinge_lookahead]" in plan
    assert "loss=smooth_hinge(smoothing=1.0, margin=1.0)" in plan
    assert "optimizer=lookahead_sgd(" in plan


def test_the_plugins_optimizer_refuses_problems_at_the_key_to_change(
    plugin_module: Any, tmp_path: Path
) -> None:
    """As the tutorial says: a batch larger than the training set, or more than MAX_STEPS
    steps, is one located line and exit status 2, before anything trains."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: lookahead_limits\n"
        "data: {name: blobs, n_samples: 100}\n"
        "loss: {name: softmax}\n"
        "optimizer: {name: lookahead_sgd}\n"
        "variants:\n"
        "  big: {optimizer: {batch_size: 500}}\n"
        "  endless: {optimizer: {batch_size: 1, epochs: 99999999999}}\n"
    )
    with register_plugin(plugin_module, name=EP_NAME):
        result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    big, endless = result.stderr.splitlines()
    assert big.startswith(f"optlab: error: {spec}:6:33: variants.big.optimizer.batch_size: ")
    assert "is larger than the training set (64 examples)" in big
    assert endless.startswith(f"optlab: error: {spec}:7:48: variants.endless.optimizer.epochs: ")
    assert "(optlab.MAX_STEPS); lower optimizer.epochs" in endless


def test_comparison_spec_without_the_plugin_says_what_is_missing() -> None:
    result = CliRunner().invoke(app, ["validate", str(SPEC)])
    assert result.exit_code == 2
    assert "unknown loss 'smooth_hinge'" in result.stderr
    assert f"{SPEC}:" in result.stderr  # located in the spec file


# --------------------------------------------------------------------------------------------
# A real distribution in a fresh virtual environment
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory, optlab_wheel: Path) -> dict[str, Path]:
    """A fresh venv with optlab's wheel and the plugin's wheel installed (and nothing else of
    either); the other dependencies come from the test interpreter through a .pth file.

    Made once per session (the tests only run commands in it); optlab's wheel is the one
    tests/test_install.py installs (conftest.py)."""

    def make(work: Path) -> None:
        wheels = work / "wheels"
        wheels.mkdir()
        build_wheel(PLUGIN, wheels)
        (plugin_wheel,) = wheels.glob("optlab_smooth_hinge-0.1.0-*.whl")
        site = fresh_venv(work / "venv", optlab_wheel, plugin_wheel)
        (work / "site").write_text(str(site))

    work = once_per_session(tmp_path_factory, "plugin-env", make)
    env_dir = work / "venv"
    site = Path((work / "site").read_text())
    plugin_tree = work / "wheels" / f"src-{PLUGIN.name}"
    return {"dir": env_dir, "site": site, "bin": env_dir / "bin", "plugin_tree": plugin_tree}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTLAB_", "MLFLOW_"))}
    env.pop("PYTHONPATH", None)
    return env


def _optlab(plugin_env: dict[str, Path], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(plugin_env["bin"] / "optlab"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(),
        timeout=300,
    )


@pytest.mark.slow
def test_installed_plugin_is_listed_with_its_distribution(
    plugin_env: dict[str, Path], tmp_path: Path
) -> None:
    where = subprocess.run(
        [
            str(plugin_env["bin"] / "python"),
            "-c",
            "import optlab, optlab_smooth_hinge; print(optlab.__file__); "
            "print(optlab_smooth_hinge.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
    ).stdout.split()
    assert all(w.startswith(str(plugin_env["site"])) for w in where), where

    listed = _optlab(plugin_env, "plugins", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    mine = plugins[EP_NAME]
    assert (mine["distribution"], mine["version"], mine["status"]) == (DIST, VERSION, "active")
    assert mine["entry_point"] == "smooth_hinge = optlab_smooth_hinge"
    assert mine["components"] == [
        {"kind": "loss", "name": "smooth_hinge"},
        {"kind": "optimizer", "name": "lookahead_sgd"},
    ]
    assert plugins["losses"]["distribution"] == "optlab"  # the bundled ones are still there

    shown = _optlab(plugin_env, "components", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(shown.stdout)}
    for key in [("loss", "smooth_hinge"), ("optimizer", "lookahead_sgd")]:
        assert (rows[key]["provider"], rows[key]["distribution"], rows[key]["version"]) == (
            EP_NAME,
            DIST,
            VERSION,
        )
    params = {p["name"]: p for p in rows[("loss", "smooth_hinge")]["params"]}
    assert params["smoothing"]["default"] == 1.0 and params["smoothing"]["bounds"] == {"gt": 0}
    assert rows[("loss", "svm")]["distribution"] == "optlab"


@pytest.mark.slow
def test_installed_plugin_runs_the_comparison_tracked_in_mlflow(
    plugin_env: dict[str, Path], tmp_path: Path, new_store: Callable[[Path], str]
) -> None:
    from mlflow.tracking import MlflowClient

    uri = new_store(tmp_path / "mlflow.db")  # the venv's MLflow is this interpreter's
    overrides = [arg for s in SHRINK for arg in ("--set", s)]
    ran = _optlab(
        plugin_env, "run", str(SPEC), *overrides, "--json", "--tracking-uri", uri, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    rows = {r["name"]: r for r in json.loads(ran.stdout)}
    assert set(rows) == {"svm", "softmax", "smooth_hinge", "smooth_hinge_lookahead"}
    assert all(r["status"] == "FINISHED" for r in rows.values()), rows
    # the smoothed hinge at W ~ 0: (C - 1) * (margin - smoothing / 2) = 9 * 0.5
    assert rows["smooth_hinge"]["metrics"]["expected_initial_loss"] == pytest.approx(4.5)
    assert rows["smooth_hinge"]["metrics"]["test_accuracy"] > 0.5

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("smooth_hinge_vs_builtins")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`optlab.role` = 'run'"
    )
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == set(rows)
    label = f"{EP_NAME} ({DIST} {VERSION})"
    plugin_run = by_name["smooth_hinge"]
    assert plugin_run.info.status == "FINISHED"
    assert plugin_run.data.tags["optlab.provider.loss"] == label
    assert plugin_run.data.params["loss.name"] == "smooth_hinge"
    lookahead = by_name["smooth_hinge_lookahead"].data.tags
    assert lookahead["optlab.provider.loss"] == label
    assert lookahead["optlab.provider.optimizer"] == label
    assert by_name["svm"].data.tags["optlab.provider.loss"].startswith("losses (optlab ")
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`optlab.provider.loss` = '{label}'",
    )
    assert {r.info.run_name for r in found} == {"smooth_hinge", "smooth_hinge_lookahead"}


@pytest.mark.slow
def test_plugin_own_test_suite_passes_in_the_fresh_environment(
    plugin_env: dict[str, Path], tmp_path: Path
) -> None:
    # the tests are run from a copy outside the plugin's tree, so the package under test can
    # only be the installed one
    tests = tmp_path / "plugin-tests"
    shutil.copytree(plugin_env["plugin_tree"] / "tests", tests, ignore=IGNORE)
    ran = subprocess.run(
        [
            str(plugin_env["bin"] / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tests),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    summary = ran.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary
