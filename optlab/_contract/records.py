"""The records observer hooks receive: what a run is, what it measured, how it ended.

They are plain picklable dataclasses, so a worker process can send them to the process that
writes to the tracking store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from optlab._contract.components import Array
from optlab._meta import exported

__all__ = [
    "BACKEND_TAG",
    "PLANE_POINTS",
    "SWEEP_TAG",
    "DataSummary",
    "EpochReport",
    "Landscape",
    "RunInfo",
    "RunResult",
    "RunStatus",
    "StepHistory",
]

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]

#: the run tag holding a sweep run's values, as JSON (dotted key -> value)
SWEEP_TAG = "optlab.sweep"
#: run tag: the backend that trained the run (``numpy``, ``compiled (avx2)``)
BACKEND_TAG = "optlab.backend"
#: most training points a run of two-dimensional data keeps for its decision-regions figure
PLANE_POINTS = 1000


@dataclass(frozen=True)
class DataSummary:
    """Sizes and identity of a run's prepared data (``own_test``: the test split is the
    dataset's own, not drawn from its training data by ``data.test``)."""

    name: str
    n_train: int
    n_val: int
    n_test: int
    n_features: int
    n_classes: int
    classes: tuple[str, ...]
    dtype: str
    sha256: str
    image_shape: tuple[int, ...] | None = None
    has_bias: bool = True
    own_test: bool = False


@dataclass(frozen=True)
class RunInfo:
    """What a run is: its name, its resolved spec and where its components come from.

    Attributes
    ----------
    name : str
        Readable run name (``svm``, ``sgd-lr0.1``, ``svm-seed1``).
    key : str
        Hash of the resolved run spec, data identity and code version (for ``--resume``).
    experiment : str
        The spec's ``name``: the MLflow experiment.
    params : dict
        The resolved run spec flattened to dotted keys (``loss.name``, ``optimizer.lr``).
    spec : dict
        The resolved run spec, nested, as it would be written back to YAML.
    tags : dict
        Variant, sweep values (:data:`SWEEP_TAG`), providers with versions, optlab version,
        spec hash, git commit.
    data : DataSummary
    started_at : float or None
        Wall-clock time the run started (seconds since the Unix epoch), set when
        ``optlab_run_started`` is called; with ``--jobs N`` the hooks are called later, in the
        invoking process, and this still says when the run really started.
    """

    name: str
    key: str
    experiment: str
    params: dict[str, Any]
    spec: dict[str, Any]
    tags: dict[str, str]
    data: DataSummary
    started_at: float | None = None


_STEP_FIELDS = ("examples", "time", "loss", "data_loss", "reg_loss", "elapsed")


@dataclass
class StepHistory:
    """Per-step curves, as parallel 1-d arrays of equal length ``S``.

    ``loss[i]`` is the objective of step ``i``'s batch (a minibatch's for SGD, the whole
    training set's for GD) at the weights the step started from, so it is kept where those
    weights were reached: ``examples[i]`` is the number of training examples processed before
    step ``i`` (the shared x-axis of GD and SGD; 0 for the first step, at the initial
    weights), ``time[i]`` the wall-clock time in seconds since the epoch when the step started
    (what MLflow stores, in milliseconds), ``elapsed[i]`` the seconds from the start of training
    to then on the run's monotonic clock (the x-axis of "loss vs time").

    A history made without ``elapsed`` (read back from MLflow, or from a ``steps.npz`` written
    before optlab kept it) takes ``time - time[0]``.
    """

    examples: Array = field(default_factory=lambda: np.empty(0, np.int64))
    time: Array = field(default_factory=lambda: np.empty(0, np.float64))
    loss: Array = field(default_factory=lambda: np.empty(0, np.float64))
    data_loss: Array = field(default_factory=lambda: np.empty(0, np.float64))
    reg_loss: Array = field(default_factory=lambda: np.empty(0, np.float64))
    elapsed: Array = field(default_factory=lambda: np.empty(0, np.float64))

    def __post_init__(self) -> None:
        if self.elapsed.shape[0] != self.time.shape[0]:
            start = self.time[0] if self.time.shape[0] else 0.0
            self.elapsed = np.asarray(self.time, dtype=np.float64) - start

    def __len__(self) -> int:
        return int(self.examples.shape[0])

    def __getitem__(self, index: slice | Array) -> StepHistory:
        """The steps ``index`` selects (a slice, or an integer index array), as a history."""
        return StepHistory(*(getattr(self, name)[index] for name in _STEP_FIELDS))

    @classmethod
    def concat(cls, parts: list[StepHistory]) -> StepHistory:
        """One history of ``parts``' steps, in order."""
        if not parts:
            return cls()
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in _STEP_FIELDS))

    def extend(self, other: StepHistory) -> None:
        """Append ``other``'s points to this history."""
        for name in _STEP_FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))


@dataclass(frozen=True)
class EpochReport:
    """One evaluation point and the steps since the previous one.

    ``loss`` is the last step's (a minibatch's for SGD); ``train_loss`` the full training
    objective (mean data loss over the whole training set plus the regularization, without
    input perturbations), computed from the same scores as ``train_accuracy``: the loss that
    compares runs fairly. ``time`` is wall-clock (seconds since the Unix epoch), ``elapsed``
    seconds since training started on the run's monotonic clock (``None``: not measured).
    """

    epoch: float
    examples: int
    time: float
    steps: StepHistory
    train_accuracy: float
    val_accuracy: float | None
    loss: float
    train_loss: float | None = None
    elapsed: float | None = None


@dataclass(frozen=True)
class Landscape:
    """Slices of the training objective around a learned ``W`` (computed by
    :func:`optlab._training.landscape.loss_landscape`).

    Attributes
    ----------
    steps : (K,) array
        Steps ``a`` along ``d1`` of the one-dimensional slices (0: ``W`` itself).
    line : (K,) array
        The full objective (mean data loss over the training set plus regularization) at
        ``W + a d1``.
    example : (K,) array
        The data loss of training example :attr:`example_index` alone at ``W + a d1``: of
        200 examples drawn at random, the one whose loss changes most along the slice.
    example_index : int
    grid : (M,) array
        Steps ``a`` (along ``d1``, across) and ``b`` (along ``d2``, up) of the plane.
    plane : (M, M) array
        The full objective at ``W + grid[j] d1 + grid[i] d2`` in row ``i``, column ``j``.
    directions : ((D, C) array, (D, C) array)
        ``d1`` and ``d2``.
    """

    steps: Array
    line: Array
    example: Array
    example_index: int
    grid: Array
    plane: Array
    directions: tuple[Array, Array]


@dataclass
class RunResult:
    """How a run ended and everything it measured (kept for FAILED and KILLED runs too)."""

    name: str
    status: RunStatus
    error: str | None = None
    steps: StepHistory = field(default_factory=StepHistory)
    evaluations: list[EpochReport] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    W: Array | None = None
    confusion: Array | None = None
    #: the preprocessing the run's data had, (F,) float64 each (``weights.npz``): the training
    #: mean subtracted (``data.center``) and the standard deviation divided out
    #: (``data.standardize``), ``None`` where not applied
    mean: Array | None = None
    std: Array | None = None
    #: the run's console transcript (stored as its ``console.log`` artifact)
    console: list[str] = field(default_factory=list)
    #: artifact files already rendered (by a worker process): file name -> content
    artifacts: dict[str, bytes] | None = None
    #: wall-clock time the run ended (seconds since the Unix epoch)
    finished_at: float | None = None
    #: two-dimensional data only (two features besides the bias): ``(epoch, W)`` at the start
    #: (epoch 0) and at each evaluation point, and the training points ``(X, y)``, X (n, 2)
    #: without the bias column (at most :data:`PLANE_POINTS`), for the decision regions
    snapshots: list[tuple[float, Array]] = field(default_factory=list)
    plane: tuple[Array, Array] | None = None
    #: the loss landscape through the learned W, when the spec asks for it
    #: (``tracking.landscape``) and the run finished
    landscape: Landscape | None = None

    @property
    def final_loss(self) -> float | None:
        """The full training objective at the last evaluation point (``train_loss``), when
        that point ends the run; else (a run that failed or stopped between evaluations, or
        recorded before optlab measured it) the last step's loss."""
        last = self.evaluations[-1] if self.evaluations else None
        ends = last is not None and (
            not len(self.steps) or last.examples >= int(self.steps.examples[-1])
        )
        if last is not None and ends and last.train_loss is not None:
            return float(last.train_loss)
        return float(self.steps.loss[-1]) if len(self.steps) else None


exported(DataSummary, EpochReport, RunInfo, RunResult, StepHistory)
