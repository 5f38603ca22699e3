"""Validated configuration: the core's option models and the resolved form of one run.

:mod:`optlab._spec.load` turns a YAML file into an :class:`Experiment` holding one :class:`RunSpec`
per run (variants x sweep points x seeds); the runner consumes a :class:`RunSpec` and nothing
else. Component params are validated against their plugin's model before a ``RunSpec`` exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from optlab._contract.components import ComponentKind, ComponentRecord, Params
from optlab._errors import SpecIssue
from optlab._meta import exported

__all__ = [
    "DEFAULT_STEP_POINTS",
    "ChecksOptions",
    "ComponentSpec",
    "DataOptions",
    "Experiment",
    "LandscapeOptions",
    "RunSpec",
    "SplitLimit",
    "TrackingOptions",
]

Policy = Literal["warn", "error", "off"]

#: per-step points logged per metric and run, by default (every step is in ``steps.npz``): as
#: many as MLflow 3.17's charts draw of a run's metric (they fetch a sample of 320 points per run
#: and metric, ``maxResults: 320`` in its UI); what more would cost: benchmarks/README.md,
#: "Measurements behind the code".
DEFAULT_STEP_POINTS = 320


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SplitLimit(_Options):
    """At most this many examples per split (stratified subsample)."""

    train: PositiveInt | None = None
    val: PositiveInt | None = None
    test: PositiveInt | None = None


class DataOptions(_Options):
    """Preprocessing and splitting common to every dataset (keys of ``data:`` besides
    ``name`` and the dataset plugin's own params)."""

    center: bool = Field(True, description="Subtract the training mean (the course's default).")
    standardize: bool = Field(False, description="Divide by the training standard deviation.")
    bias: bool = Field(True, description="Append a constant-1 column (the bias trick).")
    dtype: Literal["float32", "float64"] = Field("float64", description="Floating dtype of X.")
    val: float = Field(
        0.2, ge=0.0, lt=1.0, description="Validation fraction of what remains after the test split."
    )
    test: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Test fraction; a dataset with its own test split uses that one and "
        "refuses data.test.",
    )
    limit: PositiveInt | SplitLimit | None = Field(
        None, description="Cap per split: one number for every split, or {train, val, test}."
    )
    mmap: bool = Field(
        False,
        description="Memory-map .npy/.npz inputs instead of reading them (dataset npz; the "
        "others read their data whole and refuse it).",
    )


class ChecksOptions(_Options):
    """Sanity checks run before training, and the divergence guard during it."""

    initial_loss: Policy = Field("warn", description="Compare the initial loss with C-1 / log C.")
    initial_loss_tolerance: float = Field(
        0.1, gt=0, description="Allowed relative deviation of the initial loss."
    )
    gradient: Policy = Field(
        "error",
        description="Check the analytic gradient numerically; a wrong one fails the run "
        "(naming the loss or regularizer at fault), or only warns with 'warn'.",
    )
    gradient_tolerance: float = Field(
        1e-2,
        gt=0,
        description="Max relative error allowed (also the kink tolerance: a coordinate whose "
        "one-sided differences disagree by more is skipped, so a kink adds at most half).",
    )
    divergence_factor: float = Field(
        1e3, gt=1, description="Fail when the loss exceeds this factor of the initial loss."
    )


class LandscapeOptions(_Options):
    """The loss landscape a run draws when it ends (``tracking: {landscape: ...}``): slices
    of the training objective through the learned ``W`` along random directions."""

    points: int = Field(
        41, ge=3, le=2001, description="Points of the 1-D slices (odd: W itself is one)."
    )
    grid: int = Field(
        21,
        ge=3,
        le=201,
        description="Points per side of the 2-D slice (odd: W itself is one); it costs grid^2 "
        "evaluations of the loss.",
    )
    span: float = Field(1.0, gt=0, description="The slices reach -span .. span times ||W|| from W.")


class TrackingOptions(_Options):
    """Where runs are logged (``--tracking-uri`` > spec > MLFLOW_TRACKING_URI > default)."""

    uri: str | None = Field(None, description="MLflow tracking URI or server address.")
    enabled: bool = Field(True, description="Log runs to MLflow.")
    figures: bool = Field(
        True,
        description="Draw each run's figures (learning curves, weight templates, confusion "
        "matrix) and the comparison figure as artifacts; false saves their drawing time.",
    )
    step_points: int = Field(
        DEFAULT_STEP_POINTS,
        ge=2,
        le=1_000_000,
        description="Most per-step points logged per metric and run (evenly thinned, first and "
        "last kept; 320, the default, is what MLflow's charts draw of a run's curve); the run's "
        "steps.npz artifact keeps every step.",
    )
    landscape: bool | LandscapeOptions = Field(
        False,
        description="Draw each finished run's loss landscape (loss_landscape.png, and the "
        "slices in loss_landscape.npz): the training objective along a random direction "
        "through the learned W, over a plane of two, and one example's loss along the line. "
        "true: 41 points and a 21 x 21 plane, which costs three products with the training "
        "set and about 480 evaluations of the loss over its scores (0.2-0.5 s a run on digits, "
        "5-20 s on CIFAR-10's 49,000 images); or {points, grid, span}.",
    )

    def landscape_options(self) -> LandscapeOptions | None:
        """The landscape to draw, or None (``landscape: false``)."""
        if isinstance(self.landscape, LandscapeOptions):
            return self.landscape
        return LandscapeOptions() if self.landscape else None


@dataclass(frozen=True)
class ComponentSpec:
    """A resolved component: its record (factory, provider) and validated params."""

    kind: ComponentKind
    name: str
    params: Params
    record: ComponentRecord[Any]

    def build(self) -> Any:
        """Call the record's factory with the params: the object the loop uses."""
        return self.record.factory(self.params)

    def as_dict(self) -> dict[str, Any]:
        """``{"name": ..., **params}`` as written in a spec."""
        return {"name": self.name, **self.params.model_dump(mode="json")}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Factories are often closures and do not pickle: a worker process resolves the
        # component by name in its own registry and validates the params again.
        return (_restore_component, (self.kind, self.name, self.params.model_dump()))


def _restore_component(kind: ComponentKind, name: str, params: dict[str, Any]) -> ComponentSpec:
    from optlab._contract.plugin_manager import get_registry

    record = get_registry().get(kind, name)
    return ComponentSpec(kind, name, record.params(**params), record)


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs, validated.

    Attributes
    ----------
    name : str
        Readable, unique within the experiment (``svm``, ``sgd-lr0.1``, ``svm-seed1``).
    variant : str or None
        The variant this run comes from.
    seed : int
    dataset : ComponentSpec
    data : DataOptions
    loss, optimizer : ComponentSpec
    regularizers : tuple of ComponentSpec
    checks : ChecksOptions
    backend : str
        The spec's ``backend`` setting (``auto`` or a backend's name; ``$OPTLAB_BACKEND``
        overrides it when the run is built). Not part of ``resolved``: a backend changes the
        last bits of the sums, not the run.
    landscape : LandscapeOptions or None
        The spec's ``tracking.landscape``: the loss landscape to compute when the run has
        trained (None: none). Not part of ``resolved``: it adds artifacts, not a new run.
    point : dict
        The sweep values of this run (dotted key -> value), empty outside sweeps.
    resolved : dict
        The whole run as a nested plain dict (what is logged and shown).
    where : dict
        Dotted key of the run as written (``optimizer.lr``) -> where it was written (an issue
        without a message); see :meth:`issue`.
    """

    name: str
    variant: str | None
    seed: int
    dataset: ComponentSpec
    data: DataOptions
    loss: ComponentSpec
    optimizer: ComponentSpec
    regularizers: tuple[ComponentSpec, ...] = ()
    checks: ChecksOptions = field(default_factory=ChecksOptions)
    backend: str = "auto"
    landscape: LandscapeOptions | None = None
    point: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)
    where: dict[str, SpecIssue] = field(default_factory=dict, repr=False)

    def issue(self, key: str, message: str) -> SpecIssue:
        """A problem with this run's ``key`` (``data.path``, ``optimizer.batch_size``), located
        where the key was written - in the base, the variant or the sweep entry the run
        comes from - or, for a default, at the closest key written (its component)."""
        parts = [p for p in key.split(".") if p]
        for n in range(len(parts), -1, -1):
            at = self.where.get(".".join(parts[:n]))
            if at is not None:
                path = ".".join(p for p in (at.path, *parts[n:]) if p)
                return replace(at, path=path, message=message + at.message)
        return SpecIssue("", 0, 0, key, message)


@dataclass(frozen=True)
class Experiment:
    """A validated spec file: the experiment's name and every run it expands to."""

    name: str
    description: str
    source: str
    runs: tuple[RunSpec, ...]
    tracking: TrackingOptions = field(default_factory=TrackingOptions)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    spec_hash: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


exported(Experiment, RunSpec)
