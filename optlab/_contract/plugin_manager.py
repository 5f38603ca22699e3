"""Loading plugins: bundled and third-party alike, through the ``optlab`` entry-point group.

- optlab's own plugin (``optlab``: the ``numpy`` backend) comes first, then the bundled
  plugins (distribution ``optlab``), then every other entry point, sorted.
- A plugin that fails to import, implements an unknown hook, has a hook with wrong argument
  names, raises while registering, or returns a record that cannot work (a factory that is not
  callable, params that are not an :class:`~optlab.Params` subclass, whose defaults break its
  own constraints or with a field a spec cannot set, a name twice) is marked ``failed`` with
  the reason; the others keep working. ``OPTLAB_STRICT_PLUGINS=1`` turns the failures into
  one :class:`PluginError` naming every failed plugin, a line each.
- ``OPTLAB_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point name (or distribution name); a
  name that matches no plugin is an :class:`~optlab._errors.OptlabWarning` (an error under
  ``OPTLAB_STRICT_PLUGINS=1``), since a misspelt name would otherwise disable nothing.
- Two plugins offering one name are both kept (using the name is an error naming both);
  ``OPTLAB_STRICT_PLUGINS=1`` refuses that too.
- Each plugin's registration hooks are called one plugin at a time, so every record knows its
  provider and one broken plugin cannot hide the others' components.

Its size (about 490 lines) is that of one job done carefully: loading entry points, calling
each plugin's hooks alone, and turning every way a plugin can break into one message that
names the plugin, the hook and the fault.
"""

from __future__ import annotations

import inspect
import os
import re
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any, get_args

import pluggy
from pydantic import BaseModel, ValidationError

from optlab._contract import hookspecs
from optlab._contract.backend import Backend, BackendRecord
from optlab._contract.components import (
    ComponentKind,
    ComponentRecord,
    DatasetRecord,
    LossRecord,
    Params,
    RegularizerRecord,
)
from optlab._contract.optimizer import OptimizerRecord
from optlab._contract.registry import PluginInfo, Registry, did_you_mean
from optlab._errors import ComponentError, OptlabError, OptlabWarning, PluginError
from optlab._meta import __version__

__all__ = [
    "ENTRY_POINT_GROUP",
    "GuardedHooks",
    "build_registry",
    "get_plugin_manager",
    "get_registry",
    "registered_plugin",
]

ENTRY_POINT_GROUP = "optlab"
_BUNDLED_DIST = "optlab"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_REGISTRATION: dict[str, tuple[ComponentKind, type[ComponentRecord[Any]]]] = {
    "optlab_register_losses": ("loss", LossRecord),
    "optlab_register_regularizers": ("regularizer", RegularizerRecord),
    "optlab_register_optimizers": ("optimizer", OptimizerRecord),
    "optlab_register_datasets": ("dataset", DatasetRecord),
    "optlab_register_backends": ("backend", BackendRecord),
}
_HOOK_NAMES = {name for name in dir(hookspecs) if name.startswith("optlab_")}
#: keys of a spec's ``data:`` that optlab reads itself, beside ``name`` (the fields of
#: ``optlab._spec.experiment.DataOptions``): a dataset's params cannot have them too
_DATA_OPTIONS = ("bias", "center", "dtype", "limit", "mmap", "standardize", "test", "val")

#: plugins added for the duration of a test (see :func:`registered_plugin`)
_extra_plugins: list[tuple[str, object]] = []
_cache: tuple[pluggy.PluginManager, Registry] | None = None
#: the settings the cached registry was built with (:func:`_settings`)
_cache_settings: tuple[str, ...] = ()


class _Core:
    """optlab's own plugin (listed as ``optlab``): the ``numpy`` backend, which always runs."""

    @staticmethod
    def _numpy(params: Params) -> Backend:
        return Backend()

    @hookspecs.hookimpl
    def optlab_register_backends(self) -> list[BackendRecord]:
        return [
            BackendRecord(
                name=Backend.name,
                factory=self._numpy,
                summary="numpy and BLAS for the products; runs everywhere.",
            )
        ]


def _env_list(name: str) -> set[str]:
    return {p.strip() for p in os.environ.get(name, "").split(",") if p.strip()}


_STRICT_ENV = "OPTLAB_STRICT_PLUGINS"


def _strict() -> bool:
    return os.environ.get(_STRICT_ENV, "").strip().lower() in {"1", "true", "yes"}


def _sorted_entry_points() -> list[EntryPoint]:
    eps = list(entry_points(group=ENTRY_POINT_GROUP))

    def key(ep: EntryPoint) -> tuple[int, str, str]:
        dist = ep.dist.name if ep.dist is not None else ""
        return (0 if dist == _BUNDLED_DIST else 1, dist, ep.name)

    # the same distribution may be visible twice (e.g. editable + stale metadata): keep one
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in sorted(eps, key=key):
        ident = (ep.name, ep.value)
        if ident not in seen:
            seen.add(ident)
            unique.append(ep)
    return unique


def _describe_exception(exc: BaseException) -> str:
    """``Type: message`` on one line (the message's lines joined), or ``Type`` alone when the
    message is empty: how a failure reason names an exception."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _names(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


def _hook_implementations(plugin: object) -> dict[str, Any]:
    """The plugin's ``optlab_*`` attributes marked as hook implementations, by name."""
    found = {}
    for attr in dir(plugin):
        if attr.startswith("optlab_"):
            fn = getattr(plugin, attr, None)
            if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_impl"):
                found[attr] = fn
    return found


def _required_arguments(fn: Any) -> list[str] | None:
    """The arguments pluggy passes ``fn`` by name (those without a default), or ``None`` when
    its signature cannot be read."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in plain and p.default is p.empty]


def _unknown_hooks(plugin: object) -> list[str]:
    """Names of ``optlab_*`` hook implementations that match no hook specification."""
    return [name for name in _hook_implementations(plugin) if name not in _HOOK_NAMES]


def _wrong_arguments(plugin: object) -> str | None:
    """One sentence on the first hook implementation asking for an argument its hook does
    not pass (pluggy matches arguments by name), or ``None``."""
    for name, fn in _hook_implementations(plugin).items():
        if name not in _HOOK_NAMES:
            continue
        wanted = _required_arguments(fn)
        offered = list(inspect.signature(getattr(hookspecs, name)).parameters)
        extra = [arg for arg in wanted or [] if arg not in offered]
        if extra:
            return (
                f"its {name} takes {_names(extra)}, which the hook does not pass (hooks pass "
                f"their arguments by name; {name} passes {_names(offered)})"
            )
    return None


def _register(
    pm: pluggy.PluginManager, registry: Registry, info: PluginInfo, plugin: object
) -> None:
    unknown = _unknown_hooks(plugin)
    if unknown:
        hint = did_you_mean(unknown[0], _HOOK_NAMES)
        raise PluginError(
            f"it implements unknown hook {unknown[0]!r}{hint}; the hooks are "
            f"{_names(sorted(_HOOK_NAMES))}"
        )
    wrong = _wrong_arguments(plugin)
    if wrong is not None:
        raise PluginError(wrong)
    try:
        pm.register(plugin, name=info.name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"pluggy refused to register it: {_describe_exception(exc)}") from exc


def _records(
    hook_name: str, kind: ComponentKind, record_type: type[ComponentRecord[Any]], call: Any
) -> list[ComponentRecord[Any]]:
    """Call one plugin's registration hook and check what it returns; a fault is a
    :class:`PluginError` saying in one sentence what the hook did wrong."""
    try:
        returned = call()
        listed = isinstance(returned, Iterable) and not isinstance(returned, str | bytes | Mapping)
        records = list(returned) if listed else None
    except Exception as exc:  # the hook (or, for a generator, its iteration) raised
        raise PluginError(f"{hook_name} raised {_describe_exception(exc)}") from exc
    if records is None:
        got = "None" if returned is None else type(returned).__name__
        raise PluginError(
            f"{hook_name} returned {got}, expected a list of {record_type.__name__}"
            + (" (is its return statement missing?)" if returned is None else "")
        )
    seen: set[str] = set()
    for rec in records:
        if not isinstance(rec, record_type):
            raise PluginError(
                f"{hook_name} returned an item of type {type(rec).__name__} among its "
                f"records; each must be a {record_type.__name__}"
            )
        if not (isinstance(rec.name, str) and _NAME_RE.match(rec.name)):
            article = "an" if kind[0] in "aeiou" else "a"
            raise PluginError(
                f"{hook_name} returned {article} {kind} named {rec.name!r}; names are "
                "lowercase letters, digits and underscores, starting with a letter"
            )
        if rec.name in seen:
            plural = "losses" if kind == "loss" else f"{kind}s"
            raise PluginError(
                f"{hook_name} returned two {plural} named {rec.name!r}; each name once"
            )
        seen.add(rec.name)
        fault = _record_fault(rec)
        if fault is not None:
            raise PluginError(f"{hook_name} returned {kind} {rec.name!r} whose {fault}")
    return records


def _record_fault(rec: ComponentRecord[Any]) -> str | None:
    """What is wrong with a record whose type and name are right, as the end of a sentence
    (``"factory is not callable (got str)"``), or ``None``.

    Checked here, once, so that a bad record fails its plugin instead of every command that
    builds the spec models (``schema``, ``validate``, ``run``) or the run that calls it.
    """
    if not callable(rec.factory):
        return f"factory is not callable (got {type(rec.factory).__name__})"
    params: object = rec.params
    if not (isinstance(params, type) and issubclass(params, Params)):
        if isinstance(params, type) and issubclass(params, BaseModel):
            # a spec's component model subclasses the params model: a plain BaseModel would
            # silently ignore misspelt keys and let .inf and .nan through
            got = f"{params.__name__}, a plain pydantic BaseModel, which ignores unknown keys"
        elif isinstance(params, BaseModel):
            got = f"an instance of {type(params).__name__}; pass the class"
        else:
            got = type(params).__name__
        return f"params is not an optlab.Params subclass (got {got})"
    return _taken_keys(params, rec.kind) or _lenient_inner(params) or _invalid_defaults(params)


def _lenient_inner(params: type[Params]) -> str | None:
    """The end of a sentence naming a pydantic model inside ``params`` (a field's type, or
    inside it: ``list[Inner]``, ``Inner | None``) that ignores unknown keys, or ``None``: a key
    misspelt under it was dropped without a word, where ``params``' own are refused."""
    seen: set[type[BaseModel]] = {params}
    todo = [f.annotation for f in params.model_fields.values()]
    while todo:
        annotation = todo.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                continue
            seen.add(annotation)
            if annotation.model_config.get("extra") != "forbid":
                return (
                    f"params {params.__name__} holds {annotation.__name__}, a pydantic model "
                    "that ignores unknown keys; make it an optlab.Params subclass (or give it "
                    "model_config = ConfigDict(extra='forbid'))"
                )
            todo += [f.annotation for f in annotation.model_fields.values()]
        else:
            todo += list(get_args(annotation))
    return None


def _taken_keys(params: type[Params], kind: ComponentKind) -> str | None:
    """The end of a sentence naming a field of ``params`` that a spec could never set, since
    optlab reads that key of the component's mapping itself (``name``; for a dataset, the
    common options of ``data:``), or ``None``."""
    for fname, f in params.model_fields.items():
        key = f.validation_alias if isinstance(f.validation_alias, str) else f.alias or fname
        if key == "name":
            return (
                f"params {params.__name__} has a field '{key}', the key a spec names the "
                f"{kind} by; rename the field"
            )
        if kind == "dataset" and key in _DATA_OPTIONS:
            return (
                f"params {params.__name__} has a field '{key}', one of the options optlab "
                f"reads itself from a spec's data: ({', '.join(_DATA_OPTIONS)}); rename the field"
            )
    return None


def _invalid_defaults(params: type[Params]) -> str | None:
    """What is wrong with the defaults of ``params``, validated as a spec's values would be
    (pydantic does not validate defaults), or ``None``.

    When every field has a default, the model is validated whole, its own validators
    included, as for a spec that gives only the component's name. Otherwise the required
    fields are missing (a spec gives them), and only the errors of the defaults count.
    Defaults made by a ``default_factory`` and fields read through an ``AliasChoices`` or
    ``AliasPath`` are left for pydantic to fill in, as it would for a spec.
    """
    fields = params.model_fields
    complete = not any(f.is_required() for f in fields.values())
    values: dict[str, Any] = {}
    for name, f in fields.items():
        alias = f.validation_alias if f.validation_alias is not None else f.alias
        if f.is_required() or f.default_factory is not None or not isinstance(alias, str | None):
            continue
        values[alias or name] = f.default
    try:
        params.model_validate(values)
    except ValidationError as exc:
        faults = [
            f"{'.'.join(map(str, e['loc']))}={e['input']!r} ({e['msg']})" if e["loc"] else e["msg"]
            for e in exc.errors()
            if complete or (e["loc"] and e["loc"][0] in values)
        ]
        if faults:
            return f"params {params.__name__} has defaults it refuses: {'; '.join(faults)}"
    except Exception as exc:  # a validator raising what pydantic does not catch
        if complete:
            return f"params {params.__name__} raised {_describe_exception(exc)} on its defaults"
    return None


@contextmanager
def _timed(info: PluginInfo) -> Iterator[None]:
    """Add the seconds the block takes to ``info.load_time_s`` (loading the plugin)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        info.load_time_s = (info.load_time_s or 0.0) + time.perf_counter() - start


def _collect(pm: pluggy.PluginManager, registry: Registry) -> None:
    """Call each plugin's registration hooks, one plugin at a time."""
    for hook_name, (kind, record_type) in _REGISTRATION.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order
            info = registry.plugins[impl.plugin_name]
            if info.status != "active":
                continue
            try:
                with _timed(info):
                    records = _records(hook_name, kind, record_type, impl.function)
            except PluginError as exc:
                _fail(pm, registry, info, str(exc))
                continue
            for rec in records:
                registry.add(replace(rec, provider=info.name))
                info.components.append((kind, rec.name))


def _fail(pm: pluggy.PluginManager, registry: Registry, info: PluginInfo, reason: str) -> None:
    info.status, info.reason = "failed", reason
    if pm.has_plugin(info.name):
        pm.unregister(name=info.name)
    registry.remove_provider(info.name)  # anything it registered before failing
    info.components.clear()


def build_registry(
    extra: list[tuple[str, object]] | None = None,
) -> tuple[pluggy.PluginManager, Registry]:
    """Load every plugin and collect their components.

    Parameters
    ----------
    extra : list of (name, plugin object), optional
        Plugins registered after the entry points (tests use this).

    Returns
    -------
    pm : pluggy.PluginManager
        With the observer hooks of every active plugin.
    registry : Registry
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    disabled = _env_list("OPTLAB_DISABLE_PLUGINS")
    core = PluginInfo(_BUNDLED_DIST, _BUNDLED_DIST, __version__, entry_point="(built in)")
    registry.plugins[core.name] = core
    with _timed(core):
        _register(pm, registry, core, _Core())

    for ep in _sorted_entry_points():
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "unknown"
        info = PluginInfo(ep.name, dist, version, entry_point=f"{ep.name} = {ep.value}")
        if ep.name in registry.plugins:
            info.name = f"{dist}:{ep.name}"
        registry.plugins[info.name] = info
        # by the name it is listed under (dist:name when another has its name), as the
        # warning of a name two plugins provide asks
        if info.name in disabled or dist in disabled:
            info.status, info.reason = "disabled", "OPTLAB_DISABLE_PLUGINS"
            continue
        try:
            with _timed(info):
                plugin = ep.load()
        except Exception as exc:
            _fail(pm, registry, info, f"importing {ep.value} raised {_describe_exception(exc)}")
            continue
        try:
            with _timed(info):
                _register(pm, registry, info, plugin)
        except PluginError as exc:
            _fail(pm, registry, info, str(exc))

    for name, plugin in [*_extra_plugins, *(extra or [])]:
        if pm.is_registered(plugin):  # installed too (an entry point loaded it): once is enough
            continue
        info = PluginInfo(name, "test", "0", entry_point="(registered in-process)")
        registry.plugins[name] = info
        if name in disabled:
            info.status, info.reason = "disabled", "OPTLAB_DISABLE_PLUGINS"
            continue
        try:
            with _timed(info):
                _register(pm, registry, info, plugin)
        except PluginError as exc:
            _fail(pm, registry, info, str(exc))

    _collect(pm, registry)
    failed = [info for info in registry.plugins.values() if info.status == "failed"]
    unmatched = _unmatched_disables(disabled, registry)
    clashes = registry.collision_lines()
    if (failed or unmatched or clashes) and _strict():  # every fault, one line each
        raise PluginError(
            "\n".join(
                f"{line} (OPTLAB_STRICT_PLUGINS is set)"
                for line in [
                    *(f"plugin {info.label} failed: {info.reason}" for info in failed),
                    *unmatched,
                    *clashes,
                ]
            )
        )
    for line in unmatched:
        warnings.warn(OptlabWarning(line), stacklevel=2)
    return pm, registry


def _unmatched_disables(disabled: set[str], registry: Registry) -> list[str]:
    """A line for each name in ``OPTLAB_DISABLE_PLUGINS`` that matches no plugin."""
    names = {info.name for info in registry.plugins.values() if info.name != _BUNDLED_DIST}
    known = names | {info.distribution for info in registry.plugins.values()}
    return [
        f"OPTLAB_DISABLE_PLUGINS names '{name}', which matches no plugin"
        f"{did_you_mean(name, known)}; plugins: {', '.join(sorted(names))}"
        for name in sorted(disabled - known)
    ]


def _settings() -> tuple[str, ...]:
    """The environment's say in what the registry holds."""
    return tuple(os.environ.get(name, "") for name in ("OPTLAB_DISABLE_PLUGINS", _STRICT_ENV))


def get_plugin_manager() -> tuple[pluggy.PluginManager, Registry]:
    """The process's plugin manager and registry, built on first use, and again when
    ``OPTLAB_DISABLE_PLUGINS`` or ``OPTLAB_STRICT_PLUGINS`` changed since (a notebook setting
    ``os.environ`` after its first run was ignored)."""
    global _cache, _cache_settings
    if _cache is None or _cache_settings != _settings():
        _cache_settings = _settings()
        _cache = build_registry()
    return _cache


def get_registry() -> Registry:
    """The process's registry, built on first use."""
    return get_plugin_manager()[1]


def reset() -> None:
    """Forget the cached registry (the next call rebuilds it from the environment)."""
    global _cache
    _cache = None


@contextmanager
def registered_plugin(plugin: object, name: str = "test_plugin") -> Iterator[object]:
    """Register ``plugin`` (a module or object with hook implementations) while in the block."""
    _extra_plugins.append((name, plugin))
    reset()
    try:
        yield plugin
    finally:
        _extra_plugins.remove((name, plugin))
        reset()


class GuardedHooks:
    """Calls the observer hooks one implementation at a time, so that an observer that raises
    is named and contained.

    A third-party observer that raises is reported once (an :class:`OptlabWarning` naming the
    plugin, the hook and the exception) and switched off for the rest of the invocation; the
    runs go on. optlab's own observers (named ``optlab.*``: tracking, progress) stay fatal:
    their errors pass unchanged if they are optlab's (a :class:`TrackingError`), else become a
    :class:`ComponentError` of kind ``observer``.

    It has the same call signature as ``pm.hook.<name>(**kwargs)``.
    """

    def __init__(self, pm: pluggy.PluginManager, registry: Registry | None = None) -> None:
        self._pm = pm
        self._registry = registry
        #: third-party observers switched off after raising
        self.switched_off: set[str] = set()

    def _call(self, hook_name: str, kwargs: dict[str, Any]) -> None:
        caller = getattr(self._pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # pluggy's order: last registered first
            name = impl.plugin_name
            if name in self.switched_off:
                continue
            try:
                impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception as exc:
                own = name.startswith("optlab.")
                if own and isinstance(exc, OptlabError):
                    raise
                label = self._registry.label(name) if self._registry is not None else name
                fault = f"{hook_name} raised {_describe_exception(exc)}"
                if own:
                    raise ComponentError("observer", name, label, fault) from exc
                self.switched_off.add(name)
                warnings.warn(
                    OptlabWarning(
                        f"observer plugin {label}: {fault}; it is switched off for the rest of "
                        "this invocation, and the runs go on"
                    ),
                    stacklevel=2,
                )

    def optlab_run_started(self, **kwargs: Any) -> None:
        self._call("optlab_run_started", kwargs)

    def optlab_epoch_ended(self, **kwargs: Any) -> None:
        self._call("optlab_epoch_ended", kwargs)

    def optlab_run_finished(self, **kwargs: Any) -> None:
        self._call("optlab_run_finished", kwargs)
