"""Structure of a spec file (phase 1 of validation): the top level, variants and sweeps.

Component mappings (``data``, ``loss``, ``regularizer``, ``optimizer``) are typed ``Any`` here:
phase 2 checks them against the params model of the plugin named by their ``name``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from optlab.config import ChecksOptions, DataOptions, TrackingOptions

__all__ = [
    "COMPONENT_KEYS",
    "DATA_OPTION_KEYS",
    "RUN_KEYS",
    "Distribution",
    "RandomSweep",
    "SpecModel",
    "SweepModel",
    "VariantModel",
]

#: Keys of a spec that hold one component (``regularizer`` may hold a list of them).
COMPONENT_KEYS: tuple[str, ...] = ("data", "loss", "regularizer", "optimizer")
#: Keys that describe one run: what variants override and sweep keys address.
RUN_KEYS: tuple[str, ...] = (*COMPONENT_KEYS, "checks")
#: Keys of ``data:`` that go to :class:`~optlab.config.DataOptions` (the rest to the plugin).
DATA_OPTION_KEYS: frozenset[str] = frozenset(DataOptions.model_fields)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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
        if self.uniform is not None and not self.uniform[0] < self.uniform[1]:
            raise ValueError(f"uniform: [a, b] needs a < b, got {list(self.uniform)}")
        if self.loguniform is not None:
            low, high = self.loguniform
            if not 0 < low < high:
                raise ValueError(f"loguniform: [a, b] needs 0 < a < b, got {[low, high]}")
        if self.int_ is not None and not self.int_[0] <= self.int_[1]:
            raise ValueError(f"int: [a, b] needs a <= b, got {list(self.int_)}")
        return self


class RandomSweep(_Strict):
    """``trials`` random points, each key drawn from its distribution."""

    trials: StrictInt = Field(ge=1, description="Number of random points.")
    params: dict[str, Distribution] = Field(description="Dotted key -> distribution.")


class SweepModel(_Strict):
    """A grid and/or a random search over dotted keys of the run (``optimizer.lr``)."""

    grid: dict[str, list[Any]] | None = Field(
        None, description="Dotted key -> list of values; every combination is a run."
    )
    random: RandomSweep | None = None


class VariantModel(_Strict):
    """A partial override of the base run, deep-merged into it."""

    data: Any = None
    loss: Any = None
    regularizer: Any = None
    optimizer: Any = None
    checks: ChecksOptions | StrictBool | None = None


class SpecModel(_Strict):
    """The top level of a spec file."""

    name: StrictStr = Field(min_length=1, description="The MLflow experiment name.")
    description: StrictStr = ""
    seed: StrictInt = Field(0, ge=0, description="Seed of every run and of random sweeps.")
    seeds: list[Annotated[StrictInt, Field(ge=0)]] | None = Field(
        None, min_length=1, description="Replicate every run once per seed."
    )
    data: Any = None
    loss: Any = None
    regularizer: Any = None
    optimizer: Any = None
    checks: ChecksOptions | StrictBool | None = None
    tracking: TrackingOptions | None = None
    backend: StrictStr = Field(
        "auto",
        description="What computes the products of training: auto (the fastest backend that "
        "runs here for the run's loss and data), numpy, compiled, or a plugin's backend; "
        "$OPTLAB_BACKEND overrides it.",
    )
    variants: dict[str, VariantModel] | None = Field(
        None, description="Variant name -> partial override of the base run."
    )
    sweep: SweepModel | None = None
    max_runs: StrictInt = Field(1000, ge=1, description="Refuse specs that expand to more runs.")

    @field_validator("variants", mode="before")
    @classmethod
    def _some_variants(cls, variants: Any) -> Any:
        if variants is None or variants == {}:
            raise ValueError("is empty: name at least one variant, or remove 'variants'")
        if isinstance(variants, dict):  # a variant without overrides is the base run
            return {k: {} if v is None else v for k, v in variants.items()}
        return variants

    @field_validator("sweep", mode="before")
    @classmethod
    def _some_sweep(cls, sweep: Any) -> Any:
        if sweep is None:
            raise ValueError("is empty: give grid: {key: [values]} or random: {trials, params}")
        return sweep

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds
