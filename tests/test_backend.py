"""Backends are plugins: registered through ``optlab_register_backends``, listed, chosen
automatically where one accelerates a run, forced by the spec's ``backend`` key or by
``OPTLAB_BACKEND`` (which wins), named in the run's ``optlab.backend`` tag, and refused with one
clear line where unknown or unable to run. A third-party backend can accelerate a third-party
loss without any change to optlab."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import optlab
from optlab import Array
from optlab._cli import app
from optlab._contract.backend import ENV_VAR, forced_backend
from optlab._contract.plugin_manager import get_registry
from optlab._contract.records import BACKEND_TAG, RunInfo, RunResult
from optlab._errors import SpecError
from optlab._spec.experiment import Experiment
from optlab._spec.load import load_experiment
from optlab._training.runner import execute
from optlab.testing import register_plugin

SPEC = """\
name: backend_test
seed: 3
data: {{name: digits, limit: 400}}
loss: {{name: {loss}}}
regularizer: {{name: l2, strength: 0.001}}
optimizer: {{name: sgd, lr: 0.05, batch_size: 50, epochs: 2}}
{extra}"""


#: how a backend's NaN or inf of finite inputs is reported
NON_FINITE = re.escape("returned NaN or inf for finite inputs (numpy's result of them is finite)")


class TwinSoftmax(optlab.Loss):
    """A third-party loss: softmax cross-entropy, written again."""

    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        shifted = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        rows = np.arange(scores.shape[0])
        value = -float(np.log(probs[rows, y]).mean())
        probs[rows, y] -= 1
        return value, probs / scores.dtype.type(scores.shape[0])


class _TwinSteps:
    """A fused step of :class:`TwinSoftmax` (here: the same numpy arithmetic), counting its
    steps so the test can see that the backend trained the run."""

    def __init__(self, owner: TwinBackend, X: Array, y: Array, n_classes: int) -> None:
        self.owner, self.X, self.y, self.n_classes = owner, X, y, n_classes

    def fits(self, W: Array) -> bool:
        return W.shape == (self.X.shape[1], self.n_classes) and W.dtype == self.X.dtype

    def session(self, batch_size: int, threads: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def loss_and_grad(self, W: Array, index: Array) -> tuple[float, Array]:
        self.owner.steps += 1
        X = self.X[index]
        value, dS = TwinSoftmax().loss_and_grad(X @ W, self.y[index])
        return value, np.ascontiguousarray(X.T @ dS)


class TwinBackend(optlab.Backend):
    """A third-party backend that accelerates only the third-party loss."""

    name = "twin"

    def __init__(self) -> None:
        self.steps = 0

    def accelerates(self, X: Array, n_classes: int, loss: optlab.Loss) -> bool:
        return type(loss) is TwinSoftmax

    def stepper(self, X: Array, y: Array, n_classes: int, loss: optlab.Loss) -> Any:
        return _TwinSteps(self, X, y, n_classes) if type(loss) is TwinSoftmax else None


class TwinPlugin:
    """Registers the ``twin_softmax`` loss, the ``twin`` backend and a ``gpu`` backend that
    cannot run here."""

    def __init__(self) -> None:
        self.backends: list[TwinBackend] = []

    def _twin(self, params: optlab.Params) -> TwinBackend:
        backend = TwinBackend()
        self.backends.append(backend)
        return backend

    @staticmethod
    def _gpu(params: optlab.Params) -> optlab.Backend:
        raise optlab.BackendUnavailable("no GPU on this machine")

    @optlab.hookimpl
    def optlab_register_losses(self) -> list[optlab.LossRecord]:
        return [optlab.LossRecord("twin_softmax", lambda params: TwinSoftmax())]

    @optlab.hookimpl
    def optlab_register_backends(self) -> list[optlab.BackendRecord]:
        return [
            optlab.BackendRecord("twin", self._twin, summary="numpy again, for TwinSoftmax"),
            optlab.BackendRecord("gpu", self._gpu, summary="needs a GPU"),
        ]


class BrokenPlugin:
    """A backend whose factory fails."""

    @staticmethod
    def _broken(params: optlab.Params) -> optlab.Backend:
        raise RuntimeError("the kernels' library is missing")

    @optlab.hookimpl
    def optlab_register_backends(self) -> list[optlab.BackendRecord]:
        return [optlab.BackendRecord("broken", self._broken, summary="fails to start")]


class _NanSteps(_TwinSteps):
    """A fused step whose loss is NaN for finite weights."""

    def loss_and_grad(self, W: Array, index: Array) -> tuple[float, Array]:
        return float("nan"), np.zeros_like(W)


class FaultyBackend(optlab.Backend):
    """A third-party backend with one fault (``accelerates`` raising, a ``scores`` that
    raises, has a column too few or a NaN, a ``weight_grad`` that raises or has an inf, an
    ``add_weight_grad`` that adds a NaN, a fused step whose loss is NaN)."""

    name = "atlas"  # before 'compiled': auto asks it first

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def accelerates(self, X: Array, n_classes: int, loss: optlab.Loss) -> bool:
        if self.fault == "accelerates":
            raise RuntimeError("no device")
        return True

    def scores(self, X: Array, W: Array, out: Array | None = None, *, threads: int = 1) -> Array:
        if self.fault == "scores":
            raise RuntimeError("kernel failed")
        if self.fault == "scores_shape":
            return X @ W[:, :-1]
        scores = super().scores(X, W, out)
        if self.fault == "scores_nan":
            scores[-1, 0] = np.nan
        return scores

    def weight_grad(self, dscores: Array, X: Array) -> Array:
        if self.fault == "weight_grad":
            raise RuntimeError("kernel failed")
        grad = super().weight_grad(dscores, X)
        if self.fault == "weight_grad_inf":
            grad[0, -1] = -np.inf
        return grad

    def add_weight_grad(self, grad_t: Array, dscores: Array, X: Array) -> None:
        super().add_weight_grad(grad_t, dscores, X)
        if self.fault == "add_weight_grad_nan":
            grad_t[0, 0] = np.nan

    def stepper(self, X: Array, y: Array, n_classes: int, loss: optlab.Loss) -> Any:
        return _NanSteps(TwinBackend(), X, y, n_classes) if self.fault == "step_nan" else None


class FaultyPlugin:
    """Registers FaultyBackend as ``record`` (its class says ``atlas``)."""

    def __init__(self, fault: str, record: str = "atlas") -> None:
        self.fault, self.record = fault, record

    @optlab.hookimpl
    def optlab_register_backends(self) -> list[optlab.BackendRecord]:
        return [optlab.BackendRecord(self.record, lambda params: FaultyBackend(self.fault))]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("accelerates", r"accelerates raised RuntimeError\('no device'\)"),
        ("scores", r"scores raised RuntimeError\('kernel failed'\)"),
        ("scores_shape", r"scores returned \(\d+, 9\) float64, expected \(\d+, 10\) float64"),
        ("weight_grad", r"weight_grad raised RuntimeError\('kernel failed'\)"),
        # NaN or inf of finite inputs failed the run as "diverged: ...; lower the learning
        # rate", or blamed the loss ("loss 'softmax' ...: returned a non-finite gradient")
        ("scores_nan", rf"scores {NON_FINITE}"),
        ("weight_grad_inf", rf"weight_grad {NON_FINITE}"),
        ("step_nan", rf"stepper's loss_and_grad {NON_FINITE}"),
    ],
)
def test_a_backend_that_raises_or_computes_a_wrong_shape_fails_the_run_naming_it(
    tmp_path: Path, fault: str, message: str
) -> None:
    """Its scores' faults were blamed on the bundled loss ("loss 'softmax' (from losses
    ...): raised RuntimeError('kernel failed')"); the others ended the invocation in a
    traceback."""
    with register_plugin(FaultyPlugin(fault), name="faulty_plugin"):
        exp = experiment(tmp_path, extra="" if fault == "accelerates" else "backend: atlas\n")
        _, result = execute(exp.runs[0], experiment=exp.name, observer=_Quiet())
    assert result.status == "FAILED"
    assert re.fullmatch(
        rf"backend 'atlas' \(from faulty_plugin \(test 0\)\): {message}", str(result.error)
    )


@pytest.mark.parametrize("checks", ["true", "false"])
def test_a_backend_nan_is_named_with_or_without_the_sanity_checks(
    tmp_path: Path, checks: str
) -> None:
    """Without the checks, NaN scores were "diverged: loss nan is not finite at step 1 ...;
    lower the learning rate"; the NaN an ``add_weight_grad`` adds (the blocked pass over
    16 MiB of data) blamed the loss."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: big\ndata: {name: blobs, n_samples: 30000, n_features: 80, val: 0.1, test: 0}\n"
        "loss: {name: softmax}\noptimizer: {name: gd, lr: 0.1, iterations: 1}\n"
        f"backend: atlas\nchecks: {checks}\n"
    )
    for fault in ("scores_nan", "add_weight_grad_nan"):
        with register_plugin(FaultyPlugin(fault), name="faulty_plugin"):
            exp = load_experiment(spec)
            _, result = execute(exp.runs[0], experiment=exp.name, observer=_Quiet())
        assert re.fullmatch(
            rf"backend 'atlas' \(from faulty_plugin \(test 0\)\): "
            rf"{fault.removesuffix('_nan')} {NON_FINITE}",
            str(result.error),
        ), result.error


def test_a_third_party_backend_still_lets_a_run_diverge(tmp_path: Path) -> None:
    """Scores that overflow because the weights did are the learning rate's, not the
    backend's: numpy's overflow alike."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(loss="softmax", extra="backend: atlas\n"))
    with register_plugin(FaultyPlugin("none"), name="faulty_plugin"):
        exp = load_experiment(spec, ["optimizer.lr=1e300"])
        _, result = execute(exp.runs[0], experiment=exp.name, observer=_Quiet())
    assert result.status == "FAILED"
    assert str(result.error).startswith("diverged: "), result.error


def test_only_third_party_backends_are_checked_for_nan() -> None:
    """optlab's own compiled kernels are not."""
    with register_plugin(FaultyPlugin("none"), name="faulty_plugin"):
        registry = get_registry()
        assert getattr(forced_backend("atlas", registry), "finite", None) is True
        try:
            compiled = forced_backend("compiled", registry)
        except optlab.InputError:
            return  # it cannot run here
        assert getattr(compiled, "finite", None) is False


def test_a_backend_is_named_by_its_record_in_its_tag_and_messages(tmp_path: Path) -> None:
    """Chosen by ``backend: infgrad``, the run's tag and its failure said the class's name,
    ``atlas``, which the spec never mentions: the record's name is the one users choose."""
    for fault in ("none", "weight_grad"):
        with register_plugin(FaultyPlugin(fault, record="infgrad"), name="renamed_plugin"):
            exp = experiment(tmp_path, extra="backend: infgrad\n")
            info, result = execute(exp.runs[0], experiment=exp.name, observer=_Quiet())
        assert info.tags[BACKEND_TAG] == "infgrad"
        if fault == "none":
            assert result.status == "FINISHED", result.error
        else:
            assert str(result.error).startswith("backend 'infgrad' (from renamed_plugin ")


@pytest.fixture
def twin() -> Iterator[TwinPlugin]:
    plugin = TwinPlugin()
    with register_plugin(plugin, name="twin_plugin"):
        yield plugin


@pytest.fixture(autouse=True)
def no_forced_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests set OPTLAB_BACKEND themselves (CI runs the suite with it set as well)."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def experiment(tmp_path: Path, loss: str = "softmax", extra: str = "") -> Experiment:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(loss=loss, extra=extra))
    return load_experiment(path)


class _Quiet:
    def optlab_run_started(self, run: RunInfo) -> None:
        pass

    def optlab_epoch_ended(self, **kwargs: Any) -> None:
        pass

    def optlab_run_finished(self, **kwargs: Any) -> None:
        pass


def run(exp: Experiment) -> tuple[RunInfo, RunResult]:
    info, result = execute(exp.runs[0], experiment=exp.name, observer=_Quiet())
    assert result.status == "FINISHED", result.error
    return info, result


def test_numpy_is_optlabs_own_and_compiled_a_bundled_plugin() -> None:
    registry = get_registry()
    assert {"numpy", "compiled"} <= set(registry.names("backend"))
    assert registry.get("backend", "numpy").provider == "optlab"
    assert registry.get("backend", "compiled").provider == "compiled"
    plugins = json.loads(CliRunner().invoke(app, ["plugins", "--json"]).stdout)
    components = {p["name"]: p["components"] for p in plugins}
    assert {"kind": "backend", "name": "numpy"} in components["optlab"]
    assert {"kind": "backend", "name": "compiled"} in components["compiled"]
    listed = CliRunner().invoke(app, ["components", "--kind", "backend", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {r["name"] for r in json.loads(listed.stdout)} >= {"numpy", "compiled"}


def test_a_third_party_backend_accelerates_a_third_party_loss(
    tmp_path: Path, twin: TwinPlugin
) -> None:
    """``auto`` picks the backend that says it accelerates the run; its fused step trains it
    (and agrees with the numpy backend to rounding); the tag says which backend it was."""
    info, result = run(experiment(tmp_path, "twin_softmax"))
    assert info.tags[BACKEND_TAG] == "twin"
    assert sum(b.steps for b in twin.backends) == len(result.steps)
    numpy_info, numpy_result = run(experiment(tmp_path, "twin_softmax", "backend: numpy\n"))
    assert numpy_info.tags[BACKEND_TAG] == "numpy"
    np.testing.assert_allclose(result.steps.loss, numpy_result.steps.loss, rtol=1e-10)
    assert result.metrics["test_accuracy"] == numpy_result.metrics["test_accuracy"]


def test_auto_passes_over_backends_that_do_not_accelerate_the_run(
    tmp_path: Path, twin: TwinPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled softmax is not the twin backend's: with the compiled backend off, auto
    falls back to numpy (and skips the gpu backend that cannot run, without a word)."""
    monkeypatch.setenv("OPTLAB_KERNELS", "0")
    info, _ = run(experiment(tmp_path))
    assert info.tags[BACKEND_TAG] == "numpy"


def test_the_environment_wins_over_the_spec(
    tmp_path: Path, twin: TwinPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = experiment(tmp_path, "twin_softmax", "backend: twin\n")
    monkeypatch.setenv("OPTLAB_BACKEND", "numpy")
    info, _ = run(exp)
    assert info.tags[BACKEND_TAG] == "numpy" and not any(b.steps for b in twin.backends)


def test_an_unknown_backend_in_the_spec_is_located(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        experiment(tmp_path, extra="backend: nump\n")
    (issue,) = caught.value.issues
    assert (issue.line, issue.path) == (7, "backend")
    assert "unknown backend 'nump' (did you mean 'numpy'?); use auto or one of:" in issue.message


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "gpu",
            "optlab: error: backend 'gpu' cannot run here: no GPU on this machine "
            "(set by OPTLAB_BACKEND; use 'numpy' or 'auto')",
        ),
        ("nump", "optlab: error: unknown backend 'nump' (did you mean 'numpy'?); available:"),
    ],
)
def test_a_forced_backend_that_cannot_run_is_one_line_and_exit_2(
    tmp_path: Path, twin: TwinPlugin, setting: str, message: str
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(loss="softmax", extra=""))
    result = CliRunner().invoke(
        app, ["run", str(spec), "--no-track"], env={"OPTLAB_BACKEND": setting}
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_backend_whose_factory_fails_is_named_even_under_auto(tmp_path: Path) -> None:
    """``auto`` does not hide a broken backend plugin: the run fails naming it (disable it
    with OPTLAB_DISABLE_PLUGINS)."""
    with register_plugin(BrokenPlugin(), name="broken_plugin"):
        exp = experiment(tmp_path)
        _, result = execute(exp.runs[0], experiment=exp.name, observer=_Quiet())
    assert result.status == "FAILED"
    assert re.match(
        r"backend 'broken' \(from broken_plugin \(test 0\)\): factory", str(result.error)
    )


def test_compiled_and_numpy_train_the_same_run_to_rounding(tmp_path: Path) -> None:
    try:
        get_registry().get("backend", "compiled").factory(optlab.Params())
    except optlab.BackendUnavailable as exc:
        pytest.skip(f"the compiled backend cannot run here: {exc}")
    compiled_info, compiled = run(experiment(tmp_path, "svm", "backend: compiled\n"))
    numpy_info, numpy_ = run(experiment(tmp_path, "svm", "backend: numpy\n"))
    assert compiled_info.tags[BACKEND_TAG].startswith("compiled (")
    assert numpy_info.tags[BACKEND_TAG] == "numpy"
    np.testing.assert_allclose(compiled.steps.loss, numpy_.steps.loss, rtol=1e-9)
    assert compiled.metrics["test_accuracy"] == numpy_.metrics["test_accuracy"]
