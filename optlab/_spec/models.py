"""The pydantic models of a spec file, built once per registry from its components.

:func:`run_model` is one run: ``data``, ``loss``, ``regularizer`` (a list), ``optimizer``
and ``checks``, each component a discriminated union on ``name`` over the registered
components of its kind (a component's model is its params model plus ``name``; a dataset's
adds :class:`~optlab._spec.experiment.DataOptions`). :func:`spec_model` is the whole file: the run's
keys, ``variants`` (partial runs), ``sweep``, ``seeds`` and the rest. The same two models
validate specs and make ``optlab schema``.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictInt,
    StrictStr,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from optlab._contract.components import ComponentKind
from optlab._contract.registry import Registry
from optlab._spec.experiment import ChecksOptions, DataOptions, TrackingOptions

__all__ = [
    "DATA_OPTION_KEYS",
    "KIND_OF_KEY",
    "RUN_KEYS",
    "Distribution",
    "SweepModel",
    "component_fields",
    "component_keys",
    "param_hint",
    "run_model",
    "spec_model",
]

#: The keys of one run, each holding a component (``checks`` aside) of the kind given.
KIND_OF_KEY: dict[str, ComponentKind] = {
    "data": "dataset",
    "loss": "loss",
    "regularizer": "regularizer",
    "optimizer": "optimizer",
}
#: Keys that describe one run: what variants override and sweep keys address.
RUN_KEYS: tuple[str, ...] = (*KIND_OF_KEY, "checks")
#: Keys of ``data:`` that go to :class:`~optlab._spec.experiment.DataOptions` (the rest to the
#: plugin).
DATA_OPTION_KEYS: frozenset[str] = frozenset(DataOptions.model_fields)
#: The longest experiment name MLflow accepts.
MAX_NAME_LENGTH = 500

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = _STRICT


class Distribution(_Strict):
    """One random-sweep parameter: exactly one of the four distributions."""

    choice: list[Any] | None = Field(None, min_length=1, description="Pick one value uniformly.")
    uniform: tuple[FiniteFloat, FiniteFloat] | None = Field(
        None, description="[low, high]: a float drawn uniformly."
    )
    loguniform: tuple[FiniteFloat, FiniteFloat] | None = Field(
        None, description="[low, high], 0 < low: a float whose log is uniform."
    )
    int_: tuple[StrictInt, StrictInt] | None = Field(
        None, alias="int", description="[low, high]: an integer, both ends included."
    )

    @model_validator(mode="after")
    def _one_distribution(self) -> Distribution:
        given = [k for k in ("choice", "uniform", "loguniform", "int_") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of choice: [...], uniform: [a, b], loguniform: [a, b], "
                f"int: [a, b] (got {len(given)})"
            )
        low, high = self.uniform or self.loguniform or self.int_ or (0, 1)
        if self.loguniform and low <= 0:
            raise ValueError(f"loguniform: [a, b] needs 0 < a < b, got {[low, high]}")
        if low > high or (low == high and not self.int_):
            raise ValueError(f"[a, b] needs a {'<=' if self.int_ else '<'} b, got {[low, high]}")
        return self


class RandomSweep(_Strict):
    """``trials`` random points, each key drawn from its distribution."""

    trials: StrictInt = Field(ge=1, description="Number of random points.")
    params: dict[str, Distribution] = Field(min_length=1, description="Dotted key -> distribution.")


class SweepModel(_Strict):
    """A grid and/or a random search over dotted keys of the run (``optimizer.lr``)."""

    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] | None = Field(
        None, min_length=1, description="Dotted key -> list of values; every combination is a run."
    )
    random: RandomSweep | None = None

    @model_validator(mode="after")
    def _something(self) -> SweepModel:
        if self.grid is None and self.random is None:
            raise ValueError("has neither 'grid' nor 'random': the sweep expands to no runs")
        return self


def _regularizers(value: Any) -> Any:
    """``{name: l2}`` -> ``[{name: l2}]``; ``none``/null -> ``[]``."""
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return []
    if not isinstance(value, dict | list):
        raise ValueError(
            "must be a mapping like {name: l2, strength: 0.001}, a list of them, or none"
        )
    return [value] if isinstance(value, dict) else value


def _checks(value: Any) -> Any:
    """``checks: false`` turns the checks off; ``true`` or null keeps the defaults."""
    if value is False:
        return {"initial_loss": "off", "gradient": "off"}
    if value is not None and not isinstance(value, bool | dict):
        raise ValueError("must be a mapping, true or false")
    return {} if value is None or value is True else value


_Checks = Annotated[
    ChecksOptions,
    BeforeValidator(_checks, json_schema_input_type=ChecksOptions | bool | None),
]


def _component(kind: ComponentKind, name: str, params: type[BaseModel], summary: str) -> Any:
    """The params model plus ``name`` (a dataset's plus DataOptions), built with the run."""
    bases = (params, DataOptions) if kind == "dataset" else (params,)
    namespace = {
        "__annotations__": {"name": Literal[name]},
        "name": Field(description=summary or name),
        "model_config": ConfigDict(defer_build=True),
        "__module__": __name__,
    }
    metaclass: Any = type(params)  # pydantic's model metaclass
    return metaclass(f"{kind}_{name}", bases, namespace)


def component_fields(registry: Registry, key: str, name: Any) -> dict[str, FieldInfo] | None:
    """The fields of the component named ``name`` under the run key ``key`` (``optimizer``,
    ``data``: the dataset's params and :class:`~optlab._spec.experiment.DataOptions`;
    ``checks``: :class:`~optlab._spec.experiment.ChecksOptions`, any name), as validated
    (the first plugin offering the name, as :func:`run_model`); ``None`` for an unknown name."""
    if key == "checks":
        return dict(ChecksOptions.model_fields)
    kind = KIND_OF_KEY.get(key)
    if kind is None or not isinstance(name, str):
        return None
    record = next((r for r in registry.records(kind) if r.name == name), None)
    if record is None:
        return None
    fields = dict(record.params.model_fields)
    return fields | dict(DataOptions.model_fields) if kind == "dataset" else fields


def component_keys(registry: Registry, key: str, name: Any) -> frozenset[str] | None:
    """The keys a component accepts besides ``name`` (:func:`component_fields`, aliases
    included), or ``None`` for an unknown name."""
    fields = component_fields(registry, key, name)
    if fields is None:
        return None
    return frozenset(k for n, info in fields.items() for k in (n, info.alias) if k)


def param_hint(registry: Registry, param: str) -> str:
    """``" (did you mean 'optimizer.lr'?)"`` for ``lr``: the one run key (:data:`RUN_KEYS`)
    whose components take ``param`` (``data`` for ``val``); ``""`` when none or several do
    (``gradient``: ``gd``'s and the checks')."""
    owners = [
        key
        for key in RUN_KEYS
        if any(
            param in (component_keys(registry, key, name) or ())
            for name in (registry.names(KIND_OF_KEY[key]) if key in KIND_OF_KEY else [key])
        )
    ]
    return f" (did you mean '{owners[0]}.{param}'?)" if len(owners) == 1 else ""


@functools.lru_cache(maxsize=8)
def _run_types(registry: Registry) -> dict[str, Any]:
    """The type of each run key: per component kind, a union discriminated by ``name``."""
    types: dict[str, Any] = {"checks": _Checks}
    for key, kind in KIND_OF_KEY.items():
        # one branch per name: a name two plugins offer is refused after validation, with
        # the registry's message naming both (Registry.get)
        first: dict[str, Any] = {}
        for record in registry.records(kind):
            first.setdefault(record.name, record)
        branches = [_component(kind, r.name, r.params, r.summary) for r in first.values()]
        union: Any = branches[0] if len(branches) == 1 else dict[str, Any]
        if len(branches) > 1:
            union = Annotated[Union[tuple(branches)], Field(discriminator="name")]  # noqa: UP007
        if key == "regularizer":
            accepted = union | list[union] | Literal["none"] | None
            union = Annotated[
                list[union],
                BeforeValidator(_regularizers, json_schema_input_type=accepted),
            ]
        types[key] = union
    return types


@functools.lru_cache(maxsize=8)
def run_model(registry: Registry) -> type[BaseModel]:
    """One run of a spec: ``data``, ``loss``, ``optimizer`` required, a list of regularizers,
    and ``checks``."""
    types = _run_types(registry)
    defaults = {
        "regularizer": Field(default_factory=list),
        "checks": Field(default_factory=ChecksOptions),
    }
    fields: dict[str, Any] = {
        k: (t, defaults.get(k, Field(description=f"The run's {KIND_OF_KEY.get(k)}.")))
        for k, t in types.items()
    }
    model: type[BaseModel] = create_model("run", __config__=_STRICT, **fields)
    return model


class _Top(_Strict):
    """The keys of a spec file besides the run's."""

    name: StrictStr = Field(
        min_length=1, max_length=MAX_NAME_LENGTH, description="The MLflow experiment name."
    )
    description: StrictStr = ""
    seed: StrictInt = Field(0, ge=0, description="Seed of every run and of random sweeps.")
    seeds: list[Annotated[StrictInt, Field(ge=0)]] | None = Field(
        None, min_length=1, description="Replicate every run once per seed (distinct seeds)."
    )
    tracking: TrackingOptions = Field(default_factory=TrackingOptions)
    backend: StrictStr = Field(
        "auto",
        description="What computes the products of training: auto (the fastest backend that "
        "runs here for the run's loss and data), numpy, compiled, or a plugin's backend; "
        "$OPTLAB_BACKEND overrides it.",
    )
    sweep: SweepModel = Field(None)  # type: ignore[assignment]
    max_runs: StrictInt = Field(1000, ge=1, description="Refuse specs that expand to more runs.")

    @field_validator("seeds", mode="before")
    @classmethod
    def _a_list_of_seeds(cls, seeds: Any) -> Any:
        """``seeds: 3`` means three replicates: say the list that writes them."""
        if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds > 0:
            listed = list(range(seeds)) if seeds <= 10 else f"[0, 1, ..., {seeds - 1}]"
            raise ValueError(
                f"must be a list of seeds, one run each: for {seeds} replicates write "
                f"seeds: {listed}, got {seeds}"
            )
        return seeds

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds


def _partial(kind: ComponentKind, registry: Registry) -> Any:
    """Part of a component, merged into the base run's: any keys, and a registered name."""
    names = tuple(dict.fromkeys(r.name for r in registry.records(kind)))
    fields: dict[str, Any] = {"name": (Literal[names] | None if names else str | None, None)}
    doc = (
        f"Part of a {kind}, merged into the base run's (a new name keeps the base's params "
        "that the new component also has)."
    )
    config = ConfigDict(extra="allow", frozen=True)
    return create_model(f"partial_{kind}", __config__=config, __doc__=doc, **fields)


@functools.lru_cache(maxsize=8)
def spec_model(registry: Registry) -> type[BaseModel]:
    """A whole spec file: the top-level keys plus the base run's (each optional here: variants
    may complete the base, and each run is validated whole by :func:`run_model`)."""
    fields: dict[str, Any] = {k: (t | None, None) for k, t in _run_types(registry).items()}
    partial = {k: _partial(kind, registry) for k, kind in KIND_OF_KEY.items()}
    partial["regularizer"] = partial["regularizer"] | list[Any] | Literal["none"]
    parts: dict[str, Any] = {k: (t | None, None) for k, t in partial.items()}
    doc = "A partial run, deep-merged into the base run."
    variant: Any = create_model(
        "variant", __config__=_STRICT, __doc__=doc, checks=(_Checks | None, None), **parts
    )
    fields["variants"] = (
        dict[str, variant | None],
        Field(None, min_length=1, description="Variant name -> partial override of the base run."),
    )
    return create_model("spec", __base__=_Top, **fields)
