"""Plugin discovery, isolation of broken plugins, strict mode, disabling, collisions."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, model_validator

import optlab
from optlab._contract.plugin_manager import (
    GuardedHooks,
    build_registry,
    get_registry,
    registered_plugin,
    reset,
)
from optlab._errors import OptlabWarning, PluginError
from optlab._spec.experiment import DataOptions


class _NoLoss(optlab.Loss):
    def loss_and_grad(self, scores: optlab.Array, y: optlab.Array) -> tuple[float, optlab.Array]:
        return 0.0, scores * 0


def _loss_plugin(name: str = "zero") -> SimpleNamespace:
    @optlab.hookimpl
    def optlab_register_losses() -> list[optlab.LossRecord]:
        return [optlab.LossRecord(name, lambda p: _NoLoss(), optlab.Params, "always zero")]

    return SimpleNamespace(optlab_register_losses=optlab_register_losses)


def _fake_distribution(
    tmp_path: Path, dist: str, version: str, ep_name: str, module: str, source: str
) -> None:
    """Write an installed distribution (dist-info + module) into a folder on sys.path."""
    # named as installers name it (the name's "-" as "_"): importlib.metadata reads the name
    # up to the first "-" of the folder, so "optlab-x-1.0" would pass for optlab itself
    info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[optlab]\n{ep_name} = {module}\n")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("fakeplug_")]:
        del sys.modules[mod]


def test_test_plugin_registers_a_component_with_its_provider() -> None:
    with registered_plugin(_loss_plugin("zero_loss"), name="zero_plugin"):
        registry = get_registry()
        record = registry.get("loss", "zero_loss")
        assert record.provider == "zero_plugin"
        assert ("loss", "zero_loss") in registry.plugins["zero_plugin"].components
    assert "zero_loss" not in get_registry().names("loss")


def test_plugin_that_fails_to_import_is_reported_and_others_keep_working(site: Path) -> None:
    _fake_distribution(
        site, "optlab-broken", "1.2.3", "broken", "fakeplug_broken", "raise ImportError('boom')\n"
    )
    _, registry = build_registry(extra=[("zero_plugin", _loss_plugin())])
    info = registry.plugins["broken"]
    assert info.status == "failed"
    assert info.distribution == "optlab-broken" and info.version == "1.2.3"
    assert info.reason == "importing fakeplug_broken raised ImportError: boom"
    assert registry.get("loss", "zero").provider == "zero_plugin"


def test_strict_mode_turns_a_failure_into_an_error(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(site, "optlab-broken", "0.1", "broken", "fakeplug_strict", "1/0\n")
    monkeypatch.setenv("OPTLAB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"broken \(optlab-broken 0.1\).*ZeroDivisionError"):
        build_registry()


def test_strict_mode_names_every_failed_plugin_a_line_each(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(site, "optlab-first", "0.1", "first", "fakeplug_first", "1/0\n")
    _fake_distribution(
        site, "optlab-second", "0.2", "second", "fakeplug_second", "raise ImportError('gone')\n"
    )
    monkeypatch.setenv("OPTLAB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as failed:
        build_registry()
    lines = str(failed.value).splitlines()
    assert len(lines) == 2, lines
    assert "first (optlab-first 0.1)" in lines[0] and "ZeroDivisionError" in lines[0]
    assert "second (optlab-second 0.2)" in lines[1] and "gone" in lines[1]


def test_disabled_plugin_is_listed_but_provides_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTLAB_DISABLE_PLUGINS", "zero_plugin, optimizers")
    _, registry = build_registry(extra=[("zero_plugin", _loss_plugin())])
    assert registry.plugins["zero_plugin"].status == "disabled"
    assert "zero" not in registry.names("loss")
    with pytest.raises(PluginError) as unknown:
        registry.get("loss", "zero")
    assert "OPTLAB_DISABLE" not in str(unknown.value)  # other losses exist: did-you-mean

    # with no loss left at all, the message says which plugins are disabled
    monkeypatch.setenv("OPTLAB_DISABLE_PLUGINS", "zero_plugin, losses")
    _, registry = build_registry(extra=[("zero_plugin", _loss_plugin())])
    with pytest.raises(PluginError, match="available: none") as unknown:
        registry.get("loss", "svm")
    assert "(OPTLAB_DISABLE_PLUGINS disables losses (optlab " in str(unknown.value)
    assert "zero_plugin" in str(unknown.value)


def test_the_process_registry_follows_a_change_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A notebook that set os.environ["OPTLAB_DISABLE_PLUGINS"] after its first run kept the
    registry of that run: the plugin it disabled still trained."""
    monkeypatch.delenv("OPTLAB_DISABLE_PLUGINS", raising=False)
    reset()
    try:
        assert "svm" in get_registry().names("loss")
        monkeypatch.setenv("OPTLAB_DISABLE_PLUGINS", "losses")
        assert get_registry().names("loss") == []
        monkeypatch.delenv("OPTLAB_DISABLE_PLUGINS")
        registry = get_registry()
        assert "svm" in registry.names("loss")
        assert get_registry() is registry  # built again only when the environment changed
    finally:
        reset()


def test_a_plugin_listed_as_dist_colon_name_is_disabled_by_that_name(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second plugin with an entry-point name already taken is listed as
    ``distribution:name``; that name disabled nothing (without a warning), and the bare name
    disabled both, so the collision could not be resolved by keeping one of them."""
    source = """\
        import optlab

        @optlab.hookimpl
        def optlab_register_losses():
            return [optlab.LossRecord("twin_loss", lambda p: None)]
        """
    for dist, module in (("optlab-aa", "fakeplug_aa"), ("optlab-bb", "fakeplug_bb")):
        _fake_distribution(site, dist, "1.0", "twin", module, source)
    _, registry = build_registry()
    assert {"twin", "optlab-bb:twin"} <= set(registry.plugins)
    monkeypatch.setenv("OPTLAB_DISABLE_PLUGINS", "optlab-bb:twin")
    _, registry = build_registry()
    assert registry.plugins["optlab-bb:twin"].status == "disabled"
    assert registry.get("loss", "twin_loss").provider == "twin"
    monkeypatch.setenv("OPTLAB_DISABLE_PLUGINS", "twin")
    _, registry = build_registry()
    assert registry.plugins["twin"].status == "disabled"
    assert registry.get("loss", "twin_loss").provider == "optlab-bb:twin"


def test_a_disabled_name_that_matches_no_plugin_is_a_warning_or_in_strict_mode_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A misspelt name would disable nothing without a word."""
    monkeypatch.setenv("OPTLAB_DISABLE_PLUGINS", "lossez, optlab")  # optlab: the distribution
    with pytest.warns(OptlabWarning) as caught:
        _, registry = build_registry()
    (warning,) = caught
    assert str(warning.message) == (
        "OPTLAB_DISABLE_PLUGINS names 'lossez', which matches no plugin (did you mean "
        "'losses'?); plugins: compiled, datasets, losses, optimizers, regularizers"
    )
    assert registry.plugins["losses"].status == "disabled"  # the distribution's name works
    monkeypatch.setenv("OPTLAB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"names 'lossez'.* \(OPTLAB_STRICT_PLUGINS is set\)$"):
        build_registry()


def test_the_cli_prints_optlabs_warnings_as_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTLAB_DISABLE_PLUGINS", "lossez")
    done = subprocess.run(
        [sys.executable, "-m", "optlab", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr.splitlines() == [
        "optlab: warning: OPTLAB_DISABLE_PLUGINS names 'lossez', which matches no plugin (did "
        "you mean 'losses'?); plugins: compiled, datasets, losses, optimizers, regularizers"
    ]


def test_name_collision_lists_both_and_using_it_names_both_providers() -> None:
    _, registry = build_registry(
        extra=[("first_plugin", _loss_plugin("dup")), ("second_plugin", _loss_plugin("dup"))]
    )
    assert registry.collisions() == [("loss", "dup", ["first_plugin", "second_plugin"])]
    with pytest.raises(PluginError, match="first_plugin and second_plugin"):
        registry.get("loss", "dup")


DUP_LINE = (
    "loss 'dup' is provided by first_plugin and second_plugin; using it is an error until one "
    "is disabled (OPTLAB_DISABLE_PLUGINS=<plugin>)"
)


def test_a_name_collision_is_an_error_in_strict_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTLAB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as clash:
        build_registry(
            extra=[("first_plugin", _loss_plugin("dup")), ("second_plugin", _loss_plugin("dup"))]
        )
    assert str(clash.value) == f"{DUP_LINE} (OPTLAB_STRICT_PLUGINS is set)"


def test_optlab_plugins_warns_of_a_collision_as_of_anything_else_and_strict_mode_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from optlab._cli import app

    runner = CliRunner()
    first, second = _loss_plugin("dup"), _loss_plugin("dup")
    with registered_plugin(first, name="first_plugin"), registered_plugin(second, "second_plugin"):
        for args in (["plugins"], ["plugins", "--json"]):
            listed = runner.invoke(app, args)
            assert listed.exit_code == 0, listed.output
            assert listed.stderr.splitlines() == [f"optlab: warning: {DUP_LINE}"]
    monkeypatch.setenv("OPTLAB_STRICT_PLUGINS", "1")
    with registered_plugin(first, name="first_plugin"), registered_plugin(second, "second_plugin"):
        strict = runner.invoke(app, ["plugins"])
    assert strict.exit_code == 2, strict.output
    assert strict.stderr.splitlines() == [
        f"optlab: error: {DUP_LINE} (OPTLAB_STRICT_PLUGINS is set)"
    ]
    assert strict.stdout == ""


def test_unknown_component_name_suggests_the_closest() -> None:
    _, registry = build_registry(extra=[("zero_plugin", _loss_plugin("hingelike"))])
    with pytest.raises(PluginError, match="did you mean 'hingelike'"):
        registry.get("loss", "hingelik")


def test_unknown_hook_is_a_failure_of_that_plugin_only() -> None:
    @optlab.hookimpl
    def optlab_register_lossez() -> list[optlab.LossRecord]:
        return []

    bad = SimpleNamespace(optlab_register_lossez=optlab_register_lossez)
    _, registry = build_registry(extra=[("typo_plugin", bad), ("zero_plugin", _loss_plugin())])
    assert registry.plugins["typo_plugin"].status == "failed"
    assert registry.plugins["typo_plugin"].reason.startswith(
        "it implements unknown hook 'optlab_register_lossez' (did you mean "
        "'optlab_register_losses'?); the hooks are optlab_epoch_ended, "
    )
    assert registry.plugins["zero_plugin"].status == "active"


def test_hook_with_wrong_argument_names_is_a_failure() -> None:
    @optlab.hookimpl
    def optlab_run_started(runinfo: object) -> None:  # the hook's argument is `run`
        return None

    bad = SimpleNamespace(optlab_run_started=optlab_run_started)
    _, registry = build_registry(extra=[("args_plugin", bad)])
    info = registry.plugins["args_plugin"]
    assert info.status == "failed"
    assert info.reason == (
        "its optlab_run_started takes runinfo, which the hook does not pass (hooks pass their "
        "arguments by name; optlab_run_started passes run)"
    )


class _GoodParams(optlab.Params):
    scale: float = Field(1.0, gt=0)


class _PlainParams(BaseModel):
    scale: float = 1.0


class _Inner(BaseModel):
    x: float = 1.0


class _HoldsPlain(optlab.Params):
    inner: list[_Inner] | None = None


class _OutOfBounds(optlab.Params):
    target: float = Field(0.0, gt=0)


class _WrongType(optlab.Params):
    path: str  # required: a spec gives it
    scale: float = Field("abc")  # type: ignore[assignment]


class _RuleBroken(optlab.Params):
    warmup: int = 5
    epochs: int = 3

    @model_validator(mode="after")
    def _warmup_shorter(self) -> _RuleBroken:
        if self.warmup >= self.epochs:
            raise ValueError(f"warmup ({self.warmup}) must be shorter than epochs ({self.epochs})")
        return self


class _NamedParams(optlab.Params):
    name: str = "inner"  # the spec's name key would always set it to the component's


class _AliasedName(optlab.Params):
    title: str = Field("inner", alias="name")


class _TestPathParams(optlab.Params):
    test: str = Field("none", description="The test file.")  # data.test is the test fraction


class _NeedsPath(optlab.Params):
    """Good defaults next to a required field, an alias, a default factory and a rule that
    needs the required field: accepted (only the defaults are checked)."""

    path: str
    scale: float = Field(1.0, gt=0, alias="Scale")
    sizes: list[int] = Field(default_factory=lambda: [1, 2])
    choice: Literal["a", "b"] = "a"

    @model_validator(mode="before")
    @classmethod
    def _path_given(cls, data: Any) -> Any:
        if not data["path"]:  # a KeyError without the path: pydantic lets it through
            raise ValueError("path is empty")
        return data


def test_records_with_good_defaults_and_required_fields_are_accepted() -> None:
    @optlab.hookimpl
    def optlab_register_losses() -> list[optlab.LossRecord]:
        return [
            optlab.LossRecord("needs_path", lambda p: _NoLoss(), _NeedsPath),
            optlab.LossRecord("good", lambda p: _NoLoss(), _GoodParams),
            optlab.LossRecord("bare", _NoLoss),  # params default to optlab.Params
        ]

    plugin = SimpleNamespace(optlab_register_losses=optlab_register_losses)
    _, registry = build_registry(extra=[("good_plugin", plugin)])
    assert registry.plugins["good_plugin"].status == "active", registry.plugins["good_plugin"]
    assert {"needs_path", "good", "bare"} <= set(registry.names("loss"))


def _raise(exc: BaseException) -> None:
    raise exc


def _records_then_raise() -> Iterator[optlab.LossRecord]:
    yield optlab.LossRecord("fine", lambda p: _NoLoss())
    raise KeyError("half way")


# what the hook returns (called) -> the whole reason: one sentence naming the hook and the fault,
# and the exception's type whenever something raised
REGISTRATION_FAULTS = {
    "raises": (
        lambda: 1 / 0,
        "optlab_register_losses raised ZeroDivisionError: division by zero",
    ),
    "raises without a message": (
        lambda: _raise(RuntimeError()),
        "optlab_register_losses raised RuntimeError",
    ),
    "raises on two lines": (
        lambda: _raise(ValueError("first\n  second")),
        "optlab_register_losses raised ValueError: first second",
    ),
    "raises optlab's own error": (
        lambda: _raise(PluginError("not configured")),
        "optlab_register_losses raised PluginError: not configured",
    ),
    "a generator that raises": (
        _records_then_raise,
        "optlab_register_losses raised KeyError: 'half way'",
    ),
    "not a list": (
        lambda: 5,
        "optlab_register_losses returned int, expected a list of LossRecord",
    ),
    "one record, not a list": (
        lambda: optlab.LossRecord("fine", lambda p: _NoLoss()),
        "optlab_register_losses returned LossRecord, expected a list of LossRecord",
    ),
    "not a record": (
        lambda: ["not a record"],
        "optlab_register_losses returned an item of type str among its records; each must "
        "be a LossRecord",
    ),
    "a bad name": (
        lambda: [optlab.LossRecord("Bad Name", lambda p: _NoLoss())],
        "optlab_register_losses returned a loss named 'Bad Name'; names are lowercase "
        "letters, digits and underscores, starting with a letter",
    ),
    "no return statement": (
        lambda: None,
        "optlab_register_losses returned None, expected a list of LossRecord (is its return "
        "statement missing?)",
    ),
    "a name twice": (
        lambda: [optlab.LossRecord("twice", lambda p: _NoLoss())] * 2,
        "optlab_register_losses returned two losses named 'twice'; each name once",
    ),
    "params a dict": (
        lambda: [optlab.LossRecord("pnc", lambda p: _NoLoss(), {"a": 1}, "params is a dict")],
        "optlab_register_losses returned loss 'pnc' whose params is not an optlab.Params "
        "subclass (got dict)",
    ),
    "params a plain pydantic model": (
        lambda: [optlab.LossRecord("plain", lambda p: _NoLoss(), _PlainParams)],
        "optlab_register_losses returned loss 'plain' whose params is not an optlab.Params "
        "subclass (got _PlainParams, a plain pydantic BaseModel, which ignores unknown keys)",
    ),
    "params holding a plain pydantic model": (
        lambda: [optlab.LossRecord("holds", lambda p: _NoLoss(), _HoldsPlain)],
        "optlab_register_losses returned loss 'holds' whose params _HoldsPlain holds _Inner, "
        "a pydantic model that ignores unknown keys; make it an optlab.Params subclass (or "
        "give it model_config = ConfigDict(extra='forbid'))",
    ),
    "params an instance": (
        lambda: [optlab.LossRecord("inst", lambda p: _NoLoss(), _GoodParams())],
        "optlab_register_losses returned loss 'inst' whose params is not an optlab.Params "
        "subclass (got an instance of _GoodParams; pass the class)",
    ),
    "a factory that is not callable": (
        lambda: [optlab.LossRecord("nocall", "SquaredLoss", _GoodParams)],
        "optlab_register_losses returned loss 'nocall' whose factory is not callable (got str)",
    ),
    "a default out of its own bounds": (
        lambda: [optlab.LossRecord("bounds", lambda p: _NoLoss(), _OutOfBounds)],
        "optlab_register_losses returned loss 'bounds' whose params _OutOfBounds has defaults "
        "it refuses: target=0.0 (Input should be greater than 0)",
    ),
    "a default of the wrong type, next to a required field": (
        lambda: [optlab.LossRecord("wrongtype", lambda p: _NoLoss(), _WrongType)],
        "optlab_register_losses returned loss 'wrongtype' whose params _WrongType has defaults "
        "it refuses: scale='abc' (Input should be a valid number, unable to parse string as a "
        "number)",
    ),
    "a field called name": (
        lambda: [optlab.LossRecord("named", lambda p: _NoLoss(), _NamedParams)],
        "optlab_register_losses returned loss 'named' whose params _NamedParams has a field "
        "'name', the key a spec names the loss by; rename the field",
    ),
    "a field whose alias is name": (
        lambda: [optlab.LossRecord("aliased", lambda p: _NoLoss(), _AliasedName)],
        "optlab_register_losses returned loss 'aliased' whose params _AliasedName has a field "
        "'name', the key a spec names the loss by; rename the field",
    ),
    "defaults its own rule refuses": (
        lambda: [optlab.LossRecord("rule", lambda p: _NoLoss(), _RuleBroken)],
        "optlab_register_losses returned loss 'rule' whose params _RuleBroken has defaults it "
        "refuses: Value error, warmup (5) must be shorter than epochs (3)",
    ),
}


@pytest.mark.parametrize("fault", sorted(REGISTRATION_FAULTS))
def test_registration_faults_are_one_sentence_naming_the_hook(fault: str) -> None:
    """Not "optlab_register_losses raised optlab_register_losses returned ...", and never an
    exception's message without its type."""
    returned, reason = REGISTRATION_FAULTS[fault]

    @optlab.hookimpl
    def optlab_register_losses() -> object:
        return returned()

    bad = SimpleNamespace(optlab_register_losses=optlab_register_losses)
    _, registry = build_registry(extra=[("faulty", bad)])
    info = registry.plugins["faulty"]
    assert info.status == "failed"
    assert info.reason == reason
    assert info.components == [] and "fine" not in registry.names("loss")


def test_a_dataset_param_named_like_a_data_option_fails_its_plugin() -> None:
    """``data.test`` is the test fraction: a dataset's own ``test`` field was set from it (a
    path refused as a fraction, a fraction refused as a path) and ``optlab run`` ended in a
    TypeError traceback."""

    @optlab.hookimpl
    def optlab_register_datasets() -> list[optlab.DatasetRecord]:
        return [optlab.DatasetRecord("with_test", lambda p: None, _TestPathParams)]  # type: ignore[arg-type]

    bad = SimpleNamespace(optlab_register_datasets=optlab_register_datasets)
    _, registry = build_registry(extra=[("faulty", bad)])
    assert registry.plugins["faulty"].reason == (
        "optlab_register_datasets returned dataset 'with_test' whose params _TestPathParams has "
        "a field 'test', one of the options optlab reads itself from a spec's data: (bias, "
        "center, dtype, limit, mmap, standardize, test, val); rename the field"
    )
    from optlab._contract.plugin_manager import _DATA_OPTIONS

    assert set(_DATA_OPTIONS) == set(DataOptions.model_fields)


def test_a_bad_name_says_an_optimizer() -> None:
    @optlab.hookimpl
    def optlab_register_optimizers() -> list[optlab.OptimizerRecord]:
        return [optlab.OptimizerRecord("9lives", lambda p: None)]  # type: ignore[arg-type]

    bad = SimpleNamespace(optlab_register_optimizers=optlab_register_optimizers)
    _, registry = build_registry(extra=[("faulty", bad)])
    assert registry.plugins["faulty"].reason.startswith(
        "optlab_register_optimizers returned an optimizer named '9lives'; "
    )


def test_an_observer_raising_without_a_message_is_named_with_its_type() -> None:
    class Quiet:
        @optlab.hookimpl
        def optlab_run_started(self, run: object) -> None:
            raise RuntimeError

    pm, registry = build_registry(extra=[("quiet_observer", Quiet())])
    hooks = GuardedHooks(pm, registry)
    with pytest.warns(OptlabWarning) as caught:
        hooks.optlab_run_started(run=None)
    (warning,) = caught
    assert str(warning.message) == (
        "observer plugin quiet_observer (test 0): optlab_run_started raised RuntimeError; it is "
        "switched off for the rest of this invocation, and the runs go on"
    )
    assert hooks.switched_off == {"quiet_observer"}


def test_bundled_plugins_come_first_and_are_active() -> None:
    registry = get_registry()
    bundled = [p for p in registry.plugins.values() if p.distribution == "optlab"]
    assert {p.name for p in bundled} >= {"losses", "regularizers", "optimizers", "datasets"}
    assert all(p.status == "active" for p in bundled), [p.as_dict() for p in bundled]
    assert list(registry.plugins)[: len(bundled)] == [p.name for p in bundled]


def test_plugin_text_is_shown_literally_never_as_markup(site: Path) -> None:
    """Square brackets in what plugins say (an import error naming a path, a summary with
    W[d,:]) are printed as they are by `optlab plugins` and `optlab components`."""
    from typer.testing import CliRunner

    from optlab._cli import app

    _fake_distribution(
        site,
        "optlab-bracket",
        "0.1",
        "bracket",
        "fakeplug_bracket",
        "raise ImportError('no [/etc/optlab] here, [bold]really[/bold]')\n",
    )

    @optlab.hookimpl
    def optlab_register_losses() -> list[optlab.LossRecord]:
        summary = "reads W[d,:]; see [/docs] and [red]"
        return [optlab.LossRecord("brackets", lambda p: _NoLoss(), optlab.Params, summary)]

    runner = CliRunner()
    plugin = SimpleNamespace(optlab_register_losses=optlab_register_losses)
    with registered_plugin(plugin, name="bracket_plugin"):
        listed = runner.invoke(app, ["plugins"], env={"COLUMNS": "400"})
        described = runner.invoke(app, ["components", "--kind", "loss"], env={"COLUMNS": "400"})
    assert listed.exit_code == 0, listed.stderr
    for text in ("[/etc/optlab]", "[bold]really[/bold]"):  # cells wrap at spaces
        assert text in listed.stdout
    assert described.exit_code == 0, described.stderr
    for text in ("W[d,:];", "[/docs]", "[red]"):
        assert text in described.stdout


def test_registering_a_plugin_that_is_also_installed_is_not_an_error() -> None:
    """A plugin's own tests register it while it is installed (its README asks authors to
    install it): the installed entry point already provides it, once."""
    import optlab_plugins.losses as installed

    with registered_plugin(installed, name="losses_again"):
        registry = get_registry()
        assert [r.provider for r in registry.records("loss")] == ["losses", "losses"]
        assert "losses_again" not in registry.plugins


def test_optlab_plugins_shows_how_long_each_plugin_took_to_load(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin importing a heavy dependency at its top slowed every command, and nothing
    said which plugin it was: ``optlab plugins`` shows each one's load time (import and
    registration hooks), in its table and its JSON; a disabled plugin, not imported, has
    none."""
    import json

    from typer.testing import CliRunner

    from optlab._cli import app

    _fake_distribution(
        site,
        "optlab-heavy",
        "0.2",
        "heavy",
        "fakeplug_heavy",
        "import time\n\ntime.sleep(0.3)  # a heavy dependency, imported at the top\n",
    )
    runner = CliRunner()
    reset()
    try:
        shown = runner.invoke(app, ["plugins", "--json"])
        reset()  # built again, with the plugin imported again
        del sys.modules["fakeplug_heavy"]
        table = runner.invoke(app, ["plugins"], env={"COLUMNS": "200"})
        monkeypatch.setenv("OPTLAB_DISABLE_PLUGINS", "heavy")
        disabled = runner.invoke(app, ["plugins", "--json"])
    finally:
        reset()
    assert shown.exit_code == 0, shown.output
    times = {p["name"]: p["load_time_s"] for p in json.loads(shown.stdout)}
    assert 0.3 <= times["heavy"] < 5, times
    assert all(0 <= t < 0.3 for name, t in times.items() if name != "heavy"), times
    assert table.exit_code == 0, table.output
    assert re.search(r"┃ status +┃ load +┃ components", table.stdout), table.stdout
    (row,) = [line for line in table.stdout.splitlines() if "optlab-heavy" in line]
    assert re.search(r"│ active +│ 0\.[3-9]\d s +│", row), row
    heavy = {p["name"]: p for p in json.loads(disabled.stdout)}["heavy"]
    assert (heavy["status"], heavy["load_time_s"]) == ("disabled", None)
