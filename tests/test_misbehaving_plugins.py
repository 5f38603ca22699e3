"""Misbehaving plugins are contained: the fault is named, the rest keeps working.

- A component that returns a gradient of the wrong shape or dtype, a non-finite value, weights
  of the wrong dtype, or raises: its run is FAILED (in the JSON output and in MLflow, with the
  reason in ``optlab.status_reason``) with a message naming the plugin, the component and the
  fault; the other runs of the invocation finish; ``optlab run`` exits with status 1.
- A plugin that fails to import, implements an unknown hook or a hook with wrong argument
  names: ``optlab plugins`` reports it with its distribution and version, and the rest keeps
  working; with ``OPTLAB_STRICT_PLUGINS=1``, ``optlab run`` refuses to start (exit 2).
- A plugin whose params model rejects a spec value: the error points to the spec's file, line
  and column (exit 2), and nothing runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import pytest
from pydantic import Field, model_validator
from typer.testing import CliRunner, Result

import optlab
from optlab import Array
from optlab._cli import app
from optlab._contract.records import EpochReport, RunInfo, RunResult
from optlab._errors import ComponentError
from optlab._tracking import STATUS_REASON_TAG
from optlab.testing import register_plugin

PLUGIN = "bad_plugin"
#: how optlab labels a plugin registered in-process: name (distribution version)
LABEL = f"{PLUGIN} (test 0)"
OPTLAB = Path(sys.executable).with_name("optlab")
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# A test-only plugin whose components misbehave on purpose
# --------------------------------------------------------------------------------------------


class _Softmax(optlab.Loss):
    """A correct softmax cross-entropy, which the bad losses then break."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(scores.shape[0])
        grad = np.exp(log_p)
        grad[rows, y] -= 1
        return -float(log_p[rows, y].mean()), grad / scores.dtype.type(scores.shape[0])

    def expected_initial_loss(self, n_classes: int) -> float | None:
        return float(np.log(n_classes))


class _BadLoss(_Softmax):
    def __init__(self, fault: str) -> None:
        self.fault = fault

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        value, grad = super().loss_and_grad(scores, y)
        if self.fault == "bad_shape_loss":
            return value, grad[:, :-1]
        if self.fault == "bad_dtype_loss":
            return value, grad.astype(np.float32)
        if self.fault == "nan_grad_loss":
            grad[0, 0] = np.nan
            return value, grad
        if self.fault == "nan_loss":
            return float("nan"), grad
        raise RuntimeError(f"boom in {self.fault}")


class _BadRegularizer(optlab.Regularizer):
    has_penalty: ClassVar[bool] = True

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def penalty_and_grad(self, W: Array) -> tuple[float, Array | None]:
        if self.fault == "bad_shape_reg":
            return 0.0, W[:-1].copy()
        raise RuntimeError(f"boom in {self.fault}")


class _BadPerturbation(optlab.Regularizer):
    has_perturbation: ClassVar[bool] = True

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def perturb_inputs(self, X: Array, rng: np.random.Generator) -> Array:
        if self.fault == "bad_shape_perturb_reg":
            return X[:, :-1].copy()
        raise RuntimeError(f"boom in {self.fault}")


class _BadOptimizer(optlab.Optimizer):
    def __init__(self, fault: str) -> None:
        self.fault = fault

    def check_problem(self, n_examples: int, n_features: int, n_classes: int) -> None:
        if self.fault == "raising_check_opt":
            raise RuntimeError(f"boom in {self.fault}")
        if self.fault == "attribute_check_opt":  # a typo in the plugin
            self.params.batch_size  # type: ignore[attr-defined]  # noqa: B018

    def minimize(
        self,
        objective: optlab.Objective,
        W0: Array,
        rng: np.random.Generator,
        monitor: optlab.Monitor,
    ) -> Array:
        if self.fault == "no_eval_opt":  # neither a step nor an evaluation reported
            return W0.copy()
        parts, _ = objective.value_and_grad(W0)
        monitor.step(objective.n_examples, parts.total, parts.data, parts.reg)
        if self.fault == "raising_opt":
            raise RuntimeError(f"boom in {self.fault}")
        monitor.evaluate(1.0, W0)
        return W0.astype(np.float32)  # bad_dtype_opt: float64 problem, float32 weights


class PickyParams(optlab.Params):
    """A params model with bounds, a choice and a cross-field rule."""

    lr: float = Field(0.1, gt=0, le=1, description="Step size.")
    schedule: Literal["step", "cosine"] = "step"
    warmup: int = Field(0, ge=0)
    epochs: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _warmup_shorter_than_training(self) -> PickyParams:
        if self.warmup >= self.epochs:
            raise ValueError(f"warmup ({self.warmup}) must be shorter than epochs ({self.epochs})")
        return self


#: variant name -> (kind of the bad component, regex of the fault)
FAULTS: dict[str, tuple[str, str]] = {
    "bad_shape_loss": ("loss", r"score gradient has shape \(\d+, 2\), expected \(\d+, 3\)"),
    "bad_dtype_loss": ("loss", r"score gradient has dtype float32, expected float64"),
    "nan_grad_loss": ("loss", r"returned a non-finite gradient"),
    "raising_loss": ("loss", r"raised RuntimeError\('boom in raising_loss'\)"),
    "raising_factory_loss": (
        "loss",
        r"factory raised RuntimeError\('boom in raising_factory_loss'\)",
    ),
    "bad_shape_reg": ("regularizer", r"gradient has shape \(2, 3\), expected \(3, 3\)"),
    "raising_reg": ("regularizer", r"raised RuntimeError\('boom in raising_reg'\)"),
    # the batch it breaks fails the optimizer or loss next, which were named instead
    "raising_perturb_reg": (
        "regularizer",
        r"raised RuntimeError\('boom in raising_perturb_reg'\)",
    ),
    "bad_shape_perturb_reg": (
        "regularizer",
        r"perturbed batch has shape \(\d+, 3\), expected \(\d+, 4\)",
    ),
    "raising_opt": ("optimizer", r"raised RuntimeError\('boom in raising_opt'\)"),
    # it stopped the whole invocation before anything was recorded, naming no distribution
    "raising_check_opt": (
        "optimizer",
        r"check_problem raised RuntimeError\('boom in raising_check_opt'\)",
    ),
    "attribute_check_opt": (
        "optimizer",
        r"check_problem raised AttributeError\(\"'_BadOptimizer' object has no attribute "
        r"'params'\"\)",
    ),
    "bad_dtype_opt": ("optimizer", r"returned weights of dtype float32, expected float64"),
    "no_eval_opt": (
        "optimizer",
        r"returned without calling monitor\.evaluate; call it at least once, at the end",
    ),
}


def _factory(cls: Callable[[str], T], fault: str) -> Callable[[Any], T]:
    """A record's factory: ignores the params, builds ``cls(fault)``."""

    def build(params: Any) -> T:
        if fault == "raising_factory_loss":  # the run fails; the runs after it still run
            raise RuntimeError(f"boom in {fault}")
        return cls(fault)

    return build


class BadPlugin:
    """Registers one component per fault, plus the picky optimizer."""

    @optlab.hookimpl
    def optlab_register_losses(self) -> list[optlab.LossRecord]:
        names = [n for n, (kind, _) in FAULTS.items() if kind == "loss"] + ["nan_loss"]
        return [optlab.LossRecord(n, _factory(_BadLoss, n), optlab.Params) for n in names]

    @optlab.hookimpl
    def optlab_register_regularizers(self) -> list[optlab.RegularizerRecord]:
        return [
            optlab.RegularizerRecord(
                n,
                _factory(_BadPerturbation if "perturb" in n else _BadRegularizer, n),
                optlab.RegularizerParams,
            )
            for n, (kind, _) in FAULTS.items()
            if kind == "regularizer"
        ]

    @optlab.hookimpl
    def optlab_register_optimizers(self) -> list[optlab.OptimizerRecord]:
        records = [
            optlab.OptimizerRecord(n, _factory(_BadOptimizer, n), optlab.Params)
            for n, (kind, _) in FAULTS.items()
            if kind == "optimizer"
        ]
        return [
            *records,
            optlab.OptimizerRecord("picky", _factory(_BadOptimizer, "picky"), PickyParams),
            optlab.OptimizerRecord("not_an_optimizer", lambda params: object(), optlab.Params),
        ]


class EndRecorder:
    """An observer plugin keeping what ``optlab_run_finished`` receives."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.epochs: dict[str, int] = {}
        self.finished: dict[str, tuple[RunResult, BaseException | None]] = {}

    @optlab.hookimpl
    def optlab_run_started(self, run: RunInfo) -> None:
        self.started.append(run.name)

    @optlab.hookimpl
    def optlab_epoch_ended(self, run: RunInfo, report: EpochReport) -> None:
        self.epochs[run.name] = self.epochs.get(run.name, 0) + 1

    @optlab.hookimpl
    def optlab_run_finished(
        self, run: RunInfo, result: RunResult, error: BaseException | None
    ) -> None:
        self.finished[run.name] = (result, error)


def _variant(name: str) -> str:
    kind = FAULTS[name][0] if name in FAULTS else "loss"
    return f"  {name}: {{{kind}: {{name: {name}}}}}\n"


BASE = """\
name: misbehaving
seed: 0
data: {name: blobs, n_samples: 150, n_features: 3, n_classes: 3}
loss: {name: softmax}
optimizer: {name: sgd, lr: 0.1, batch_size: 30, epochs: 2}
"""


@pytest.fixture(scope="module")
def invocation(
    tmp_path_factory: pytest.TempPathFactory, _empty_store: Path
) -> Iterator[dict[str, Any]]:
    """One ``optlab run --json`` of a spec with a good variant and one variant per fault (into
    a copy of the empty store)."""
    work = tmp_path_factory.mktemp("misbehaving")
    spec = work / "spec.yaml"
    spec.write_text(
        BASE + "variants:\n  good: {}\n" + "".join(_variant(n) for n in [*FAULTS, "nan_loss"])
    )
    shutil.copyfile(_empty_store, work / "mlflow.db")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    recorder = EndRecorder()
    with register_plugin(BadPlugin(), name=PLUGIN), register_plugin(recorder, name="recorder"):
        result = CliRunner().invoke(
            app, ["run", str(spec), "--json", "--tracking-uri", uri], catch_exceptions=False
        )
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    yield {"result": result, "rows": rows, "uri": uri, "recorder": recorder}


def test_the_invocation_exits_1_and_the_good_run_finishes(invocation: dict[str, Any]) -> None:
    result: Result = invocation["result"]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = invocation["rows"]
    assert set(rows) == {"good", *FAULTS, "nan_loss"}  # every run ran: none stopped the rest
    assert rows["good"]["status"] == "FINISHED"
    assert rows["good"]["error"] is None
    assert rows["good"]["metrics"]["test_accuracy"] > 0.8


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_bad_component_fails_its_run_naming_plugin_component_and_fault(
    invocation: dict[str, Any], name: str
) -> None:
    kind, fault = FAULTS[name]
    row = invocation["rows"][name]
    assert row["status"] == "FAILED"
    assert re.fullmatch(rf"{kind} '{name}' \(from {re.escape(LABEL)}\): {fault}", row["error"]), (
        row["error"]
    )


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_observers_receive_the_component_error(invocation: dict[str, Any], name: str) -> None:
    recorder: EndRecorder = invocation["recorder"]
    assert name in recorder.started
    result, error = recorder.finished[name]
    assert result.status == "FAILED"
    assert isinstance(error, ComponentError)
    assert (error.kind, error.name, error.provider) == (FAULTS[name][0], name, LABEL)
    assert result.error == str(error)


def test_observers_see_the_good_run_through(invocation: dict[str, Any]) -> None:
    recorder: EndRecorder = invocation["recorder"]
    assert recorder.epochs["good"] == 2
    result, error = recorder.finished["good"]
    assert (result.status, error) == ("FINISHED", None)


def test_non_finite_loss_value_fails_the_run(invocation: dict[str, Any]) -> None:
    row = invocation["rows"]["nan_loss"]
    assert row["status"] == "FAILED"
    assert re.search(r"not finite|non-finite", row["error"]), row["error"]


def test_failed_runs_are_failed_in_mlflow_with_the_reason(invocation: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=invocation["uri"])
    experiment = client.get_experiment_by_name("misbehaving")
    assert experiment is not None
    runs = {
        r.info.run_name: r
        for r in client.search_runs(
            [experiment.experiment_id], filter_string="tags.`optlab.role` = 'run'"
        )
    }
    assert set(runs) == set(invocation["rows"])
    assert runs["good"].info.status == "FINISHED"
    assert STATUS_REASON_TAG not in runs["good"].data.tags
    for name in [*FAULTS, "nan_loss"]:
        run = runs[name]
        assert run.info.status == "FAILED", name
        assert run.data.tags[STATUS_REASON_TAG] == invocation["rows"][name]["error"]
    assert runs["raising_loss"].data.tags["optlab.provider.loss"] == LABEL


def test_check_reports_a_faulty_plugin_at_its_run_and_checks_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``optlab run`` does: the plugin named with its distribution and version (it was
    '(from bad_plugin)'), and the runs after it checked (``optlab check`` ended at it)."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(BASE + "variants:\n" + _variant("raising_loss") + "  after: {}\n")
    with register_plugin(BadPlugin(), name=PLUGIN):
        result = CliRunner().invoke(app, ["check", str(spec)])
    assert result.exit_code == 1, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "raising_loss:",
        f"  loss 'raising_loss' (from {LABEL}): raised RuntimeError('boom in raising_loss')",
    ]
    assert lines[2] == "after:" and lines[3].endswith(": ok") and lines[4].endswith(": ok")


def test_check_and_validate_name_a_raising_check_problem_and_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An optimizer's check_problem raising anything but an InputError is the plugin's fault:
    ``optlab check`` reports it at its run and checks the others (it stopped the command
    naming the plugin without its distribution), ``optlab validate`` warns of it (exit 0)."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    # a factory that returns no optimizer is named by the run, not as its check_problem
    variants = _variant("raising_check_opt") + "  odd: {optimizer: {name: not_an_optimizer}}\n"
    spec.write_text(BASE + "variants:\n" + variants + "  after: {}\n")
    fault = (
        f"optimizer 'raising_check_opt' (from {LABEL}): "
        "check_problem raised RuntimeError('boom in raising_check_opt')"
    )
    with register_plugin(BadPlugin(), name=PLUGIN):
        checked = CliRunner().invoke(app, ["check", str(spec)])
        validated = CliRunner().invoke(app, ["validate", str(spec)])
    assert checked.exit_code == 1, checked.output
    assert checked.stderr == ""
    lines = checked.stdout.splitlines()
    assert lines[:2] == ["raising_check_opt:", f"  {fault}"]
    assert lines[2:4] == [
        "odd:",
        f"  optimizer 'not_an_optimizer' (from {LABEL}): factory returned object, expected a "
        "subclass of Optimizer",
    ]
    assert lines[4] == "after:" and lines[5].endswith(": ok") and lines[6].endswith(": ok")
    assert validated.exit_code == 0, validated.output
    assert validated.stderr.splitlines() == [
        f"optlab: warning: raising_check_opt: {fault}; this run will fail"
    ]


def test_a_raising_check_problem_fails_its_run_in_the_api() -> None:
    """``optlab.run`` raised a ComponentError for the whole call; now the run is a FAILED row
    naming the plugin and the method, and the other runs train."""
    spec = {
        "name": "check_problem_api",
        "data": {"name": "blobs", "n_samples": 90, "n_features": 3, "n_classes": 3},
        "loss": {"name": "softmax"},
        "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 30, "epochs": 1},
        "variants": {
            "attribute_check_opt": {"optimizer": {"name": "attribute_check_opt"}},
            "after": {},
        },
    }
    with register_plugin(BadPlugin(), name=PLUGIN):
        results = optlab.run(spec, track=False, quiet=True)
    rows = {r["name"]: r for r in results}
    assert rows["after"]["status"] == "FINISHED"
    bad = rows["attribute_check_opt"]
    assert bad["status"] == "FAILED"
    assert bad["error"].startswith(
        f"optimizer 'attribute_check_opt' (from {LABEL}): check_problem raised AttributeError("
    ), bad["error"]


# --------------------------------------------------------------------------------------------
# Params rejected by a plugin's model: located in the spec file
# --------------------------------------------------------------------------------------------


def _issue_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("optlab: error: ")]


@pytest.mark.parametrize(
    ("optimizer", "at", "message"),
    [
        ("{name: picky, lr: 5}", "5", r"optimizer\.lr: must be less than or equal to 1, got 5"),
        (
            "{name: picky, schedule: linear}",
            "linear",
            r"optimizer\.schedule: must be 'step' or 'cosine', got 'linear'.*",
        ),
        (
            "{name: picky, warmup: 9, epochs: 3}",
            "{",
            r"optimizer: warmup \(9\) must be shorter than epochs \(3\)",
        ),
    ],
)
def test_params_the_plugin_rejects_are_located_in_the_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, optimizer: str, at: str, message: str
) -> None:
    line = f"optimizer: {optimizer}"
    column = line.index(at) + 1  # where the rejected value (or the mapping) starts
    spec = tmp_path / "picky.yaml"
    spec.write_text(
        f"name: picky\ndata: {{name: blobs, n_samples: 60}}\nloss: {{name: softmax}}\n{line}\n"
    )
    monkeypatch.chdir(tmp_path)
    where = re.escape(f"{spec}:4:{column}")
    with register_plugin(BadPlugin(), name=PLUGIN):
        for command in (["validate", str(spec)], ["run", str(spec)]):
            result = CliRunner().invoke(app, command)
            assert result.exit_code == 2, result.output
            (issue,) = _issue_lines(result)
            assert re.fullmatch(rf"optlab: error: {where}: {message}", issue), issue
            assert "Traceback" not in result.output
    assert not (tmp_path / "mlflow.db").exists()  # nothing was run or logged


# --------------------------------------------------------------------------------------------
# A malformed record: refused when the registry is built, not by every command after
# --------------------------------------------------------------------------------------------


class DictParamsPlugin:
    """A loss whose params is a dict, not a params model."""

    @optlab.hookimpl
    def optlab_register_losses(self) -> list[optlab.LossRecord]:
        return [
            optlab.LossRecord("pnc", lambda p: _Softmax(), {"a": 1}, "params is a dict")  # type: ignore[arg-type]
        ]


DICT_PARAMS_REASON = (
    "optlab_register_losses returned loss 'pnc' whose params is not an optlab.Params subclass "
    "(got dict)"
)


def test_a_malformed_record_fails_its_plugin_and_every_command_keeps_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "survives.yaml"
    spec.write_text(RUNNABLE)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    with register_plugin(DictParamsPlugin(), name="dict_params"):
        listed = runner.invoke(app, ["plugins", "--json"])
        assert listed.exit_code == 0, listed.output
        (info,) = [p for p in json.loads(listed.stdout) if p["name"] == "dict_params"]
        assert (info["status"], info["reason"]) == ("failed", DICT_PARAMS_REASON)
        for command in (
            ["components", "--kind", "loss"],
            ["schema"],
            ["validate", str(spec)],
            ["run", str(spec), "--json", "--no-track"],
        ):
            result = runner.invoke(app, command)
            assert result.exit_code == 0, (command, result.output)
            assert "Traceback" not in result.output

    monkeypatch.setenv("OPTLAB_STRICT_PLUGINS", "1")
    with register_plugin(DictParamsPlugin(), name="dict_params"):  # the registry built again
        strict = runner.invoke(app, ["run", str(spec), "--no-track"])
    assert strict.exit_code == 2, strict.output
    assert strict.stderr.splitlines() == [
        f"optlab: error: plugin dict_params (test 0) failed: {DICT_PARAMS_REASON} "
        "(OPTLAB_STRICT_PLUGINS is set)"
    ]


def test_validate_run_and_check_name_each_failed_plugin_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spec naming a component of a plugin that failed hears why, not only "unknown loss"."""
    warning = (
        f"optlab: warning: plugin dict_params (test 0) failed: {DICT_PARAMS_REASON} (optlab "
        "plugins for details)"
    )
    good, uses_it = tmp_path / "good.yaml", tmp_path / "uses_it.yaml"
    good.write_text(RUNNABLE)
    uses_it.write_text(RUNNABLE.replace("{name: softmax}", "{name: pnc}"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    with register_plugin(DictParamsPlugin(), name="dict_params"):
        for command in (
            ["validate"],
            ["check"],
            ["run", "--json", "--no-track"],
        ):
            fine = runner.invoke(app, [*command, str(good)])
            assert fine.exit_code == 0, (command, fine.output)
            assert fine.stderr.splitlines() == [warning], command
            refused = runner.invoke(app, [*command, str(uses_it)])
            assert refused.exit_code == 2, (command, refused.output)
            first, error = refused.stderr.splitlines()
            assert first == warning, command
            assert (
                error.startswith(f"optlab: error: {uses_it}:3:") and "unknown loss 'pnc'" in error
            )


# --------------------------------------------------------------------------------------------
# Plugins that fail to load: installed fake distributions, the real command in a subprocess
# --------------------------------------------------------------------------------------------

BROKEN = {
    # entry-point name: (distribution, version, module source, what the reason says)
    "crashes": (
        "optlab-crashes",
        "1.2.3",
        "raise ImportError('no such thing')\n",
        "importing fakeplug_crashes raised ImportError: no such thing",
    ),
    "typo": (
        "optlab-typo",
        "0.4.0",
        """
        import optlab

        @optlab.hookimpl
        def optlab_register_lossez():
            return []
        """,
        "it implements unknown hook 'optlab_register_lossez' (did you mean "
        "'optlab_register_losses'?); the hooks are ",
    ),
    "wrongargs": (
        "optlab-wrongargs",
        "2.0",
        """
        import optlab

        @optlab.hookimpl
        def optlab_run_finished(run, outcome):
            pass
        """,
        "its optlab_run_finished takes outcome, which the hook does not pass (hooks pass their "
        "arguments by name; optlab_run_finished passes run, result, error)",
    ),
}

RUNNABLE = """\
name: survives
data: {name: blobs, n_samples: 90, n_features: 3, n_classes: 3}
loss: {name: softmax}
optimizer: {name: sgd, lr: 0.1, batch_size: 30, epochs: 1}
"""


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with three installed distributions (dist-info + entry points) that all fail."""
    site = tmp_path_factory.mktemp("broken-site")
    for ep_name, (dist, version, source, _) in BROKEN.items():
        module = f"fakeplug_{ep_name}"
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[optlab]\n{ep_name} = {module}\n")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


def _cli(
    site: Path, cwd: Path, *args: str, strict: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTLAB_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(site)
    if strict:
        env["OPTLAB_STRICT_PLUGINS"] = "1"
    return subprocess.run(
        [str(OPTLAB), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_broken_plugins_are_listed_with_distribution_and_version(
    broken_site: Path, tmp_path: Path
) -> None:
    listed = _cli(broken_site, tmp_path, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    for ep_name, (dist, version, _, reason) in BROKEN.items():
        info = plugins[ep_name]
        assert (info["distribution"], info["version"], info["status"]) == (dist, version, "failed")
        assert reason in info["reason"], info["reason"]
        assert info["components"] == []
    bundled = [p for p in plugins.values() if p["distribution"] == "optlab"]
    assert {p["name"] for p in bundled} >= {"losses", "regularizers", "optimizers", "datasets"}
    assert all(p["status"] == "active" for p in bundled)

    table = _cli(broken_site, tmp_path, "plugins")
    assert table.returncode == 0
    assert "optlab-crashes" in table.stdout and "failed" in table.stdout


def test_the_rest_keeps_working_next_to_broken_plugins(broken_site: Path, tmp_path: Path) -> None:
    spec = tmp_path / "survives.yaml"
    spec.write_text(RUNNABLE)
    ran = _cli(broken_site, tmp_path, "run", str(spec), "--json", "--no-track")
    assert ran.returncode == 0, ran.stderr
    (row,) = json.loads(ran.stdout)
    assert row["status"] == "FINISHED"


def test_strict_mode_refuses_to_start(broken_site: Path, tmp_path: Path) -> None:
    spec = tmp_path / "survives.yaml"
    spec.write_text(RUNNABLE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ran = _cli(broken_site, tmp_path, "run", str(spec), "--tracking-uri", uri, strict=True)
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr
    lines = ran.stderr.strip().splitlines()
    names = "|".join(BROKEN)
    for line in lines:  # one line per failed plugin, each of them named
        assert re.fullmatch(
            rf"optlab: error: plugin ({names}) \(optlab-[a-z]+ [\d.]+\) failed: .* "
            r"\(OPTLAB_STRICT_PLUGINS is set\)",
            line,
        ), line
    assert sorted(line.split()[3] for line in lines) == sorted(BROKEN)
    assert ran.stdout == ""
    assert not (tmp_path / "mlflow.db").exists()


# --------------------------------------------------------------------------------------------
# Observer plugins that raise
# --------------------------------------------------------------------------------------------


class NoisyObserver:
    """An observer plugin whose hook ``where`` raises."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.calls = 0  # of the hook that raises

    def _maybe_raise(self, hook: str) -> None:
        if self.where == hook:
            self.calls += 1
            raise RuntimeError("observer boom")

    @optlab.hookimpl
    def optlab_run_started(self, run: RunInfo) -> None:
        self._maybe_raise("optlab_run_started")

    @optlab.hookimpl
    def optlab_epoch_ended(self, run: RunInfo, report: EpochReport) -> None:
        self._maybe_raise("optlab_epoch_ended")

    @optlab.hookimpl
    def optlab_run_finished(
        self, run: RunInfo, result: RunResult, error: BaseException | None
    ) -> None:
        self._maybe_raise("optlab_run_finished")


@pytest.mark.parametrize(
    "where", ["optlab_run_started", "optlab_epoch_ended", "optlab_run_finished"]
)
def test_a_raising_observer_is_reported_once_switched_off_and_the_runs_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A third-party observer cannot sink runs that are fine: one line names it, the hook and
    the exception; it hears nothing more; every run finishes (exit 0)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(RUNNABLE + "seeds: [0, 1]\n")  # two runs: the second hears nothing
    monkeypatch.chdir(tmp_path)
    noisy = NoisyObserver(where)
    with register_plugin(noisy, name="noisy_observer"):
        result = CliRunner().invoke(app, ["run", str(spec), "--json", "--no-track"])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "noisy_observer" in line]
    assert warned == [
        f"optlab: warning: observer plugin noisy_observer (test 0): {where} raised "
        "RuntimeError: observer boom; it is switched off for the rest of this invocation, "
        "and the runs go on"
    ]
    assert noisy.calls == 1  # not called again after it raised
    runs = json.loads(result.stdout)
    assert len(runs) == 2 and all(r["status"] == "FINISHED" for r in runs), runs
    assert "Traceback" not in result.output


class _Exploding(optlab.DatasetSource):
    def __init__(self, params: optlab.Params) -> None:
        pass

    def load(self, rng: np.random.Generator) -> optlab.RawDataset:
        raise RuntimeError("boom in load")


class ExplodingDataPlugin:
    @optlab.hookimpl
    def optlab_register_datasets(self) -> list[optlab.DatasetRecord]:
        return [optlab.DatasetRecord("exploding", _Exploding, optlab.Params, "raises in load")]


def test_a_dataset_that_raises_is_named_with_its_distribution_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was named 'dataset 'exploding' (from bad_plugin)', without the distribution and
    version every other component's fault names."""
    spec = tmp_path / "boom.yaml"
    spec.write_text(
        "name: boom\ndata: {name: exploding}\nloss: {name: softmax}\n"
        "optimizer: {name: gd, lr: 0.1, iterations: 1}\n"
    )
    monkeypatch.chdir(tmp_path)
    with register_plugin(ExplodingDataPlugin(), name=PLUGIN):
        result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    expected = f"dataset 'exploding' (from {LABEL}) failed to load: RuntimeError: boom in load"
    assert expected in result.output, result.output
