"""Component records (what plugins register) and the interfaces the training loop calls.

Shapes used throughout
----------------------
``N`` examples, ``D`` features (including the bias column when ``data.bias`` is on),
``C`` classes.

- ``X`` : (N, D) float32 or float64 array of examples, one per row.
- ``y`` : (N,) int64 array of labels in ``0..C-1``.
- ``W`` : (D, C) weights, one column per class, so the scores are ``S = X @ W`` of shape (N, C).
  When the data has a bias column it is the last column of ``X`` and the last row of ``W``.

A plugin registers components by returning records from the registration hooks
(see :mod:`optlab._contract.hookspecs`). A record's ``factory`` is called once per run with the
validated params model instance and returns the object the loop calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from optlab._meta import exported

__all__ = [
    "Array",
    "ComponentKind",
    "ComponentRecord",
    "DataShape",
    "DatasetRecord",
    "DatasetSource",
    "Loss",
    "LossRecord",
    "Monitor",
    "Params",
    "RawDataset",
    "Regularizer",
    "RegularizerParams",
    "RegularizerRecord",
]

Array = npt.NDArray[Any]
ComponentKind = Literal["loss", "regularizer", "optimizer", "dataset", "backend"]


class Params(BaseModel):
    """Base class of every component's params model: unknown keys are errors, and so are
    non-finite numbers (``.inf``, ``.nan``) in float fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RegularizerParams(Params):
    """Params every regularizer accepts."""

    include_bias: bool = Field(
        default=False, description="Also penalize (or constrain) the bias row of W."
    )


# --------------------------------------------------------------------------------------------
# Interfaces the loop calls
# --------------------------------------------------------------------------------------------


class Loss(ABC):
    """A data loss over the scores of a batch.

    Subclasses implement :meth:`loss_and_grad`; the objective turns the score gradient into the
    weight gradient (``dW = X.T @ dS``) so a loss never sees ``X`` or ``W``.
    """

    @abstractmethod
    def loss_and_grad(self, scores: Array, y: Array) -> tuple[float, Array]:
        """Mean loss over the batch and its gradient with respect to the scores.

        Parameters
        ----------
        scores : (N, C) array
        y : (N,) int array of labels

        Returns
        -------
        loss : float
            ``(1/N) * sum_i L_i``.
        dscores : (N, C) array, same dtype as ``scores``
            Gradient of the mean loss with respect to ``scores``.
        """

    def loss(self, scores: Array, y: Array) -> float:
        """Mean loss only (default: the first half of :meth:`loss_and_grad`)."""
        return self.loss_and_grad(scores, y)[0]

    def expected_initial_loss(self, n_classes: int) -> float | None:
        """The loss expected when all scores are about 0 (``None``: no expectation)."""
        return None


class Regularizer:
    """A penalty ``R(W)`` and/or a constraint, and/or an input perturbation while training.

    Every method has a neutral default, so a regularizer overrides only what it does:
    ``l2`` overrides :meth:`penalty_and_grad`, ``max_norm`` :meth:`project`, ``dropout``
    :meth:`perturb_inputs`. The objective passes ``W`` without its bias row unless the
    regularizer's ``include_bias`` is true, and restores the bias column of a perturbed batch
    likewise.
    """

    include_bias: bool = False
    #: whether :meth:`penalty_and_grad` adds anything (lets the objective skip it cheaply)
    has_penalty: ClassVar[bool] = False
    has_projection: ClassVar[bool] = False
    has_perturbation: ClassVar[bool] = False

    def penalty_and_grad(self, W: Array) -> tuple[float, Array | None]:
        """Penalty value and its gradient (same shape and dtype as ``W``), or ``(0.0, None)``."""
        return 0.0, None

    def project(self, W: Array) -> None:
        """Project ``W`` (D', C) onto the constraint set, in place (default: nothing)."""

    def perturb_inputs(self, X: Array, rng: np.random.Generator) -> Array:
        """Transform a training batch ``X`` (B, D) (default: unchanged); never at evaluation."""
        return X


class Monitor(ABC):
    """What an optimizer reports to while it runs. Direct method calls, never hook calls.

    :meth:`step` is called once per optimizer step and must stay cheap (it appends to
    buffers). :meth:`evaluate` is called at evaluation points (each epoch for SGD, every few
    iterations for GD); it computes accuracies, fires the coarse ``epoch_ended`` observer hook,
    and raises :class:`~optlab._errors.DivergenceError` or
    :class:`~optlab._errors.RunInterrupted` to stop the run.
    """

    @abstractmethod
    def step(self, examples: int, loss: float, data_loss: float, reg_loss: float) -> None:
        """Record one optimizer step that processed ``examples`` more training examples, with
        the objective's parts at the weights it started from (kept at the examples processed
        before it)."""

    @abstractmethod
    def evaluate(self, epoch: float, W: Array) -> None:
        """An evaluation point after ``epoch`` (passes over the training set, may be fractional)."""


@dataclass
class RawDataset:
    """What a dataset plugin loads, before optlab's common preprocessing and splitting.

    Attributes
    ----------
    X : (N, F) array
        Features, any real dtype (uint8 images are fine: optlab converts once).
    y : (N,) int array
        Labels in ``0..C-1``.
    X_test, y_test : (M, F) and (M,) arrays or None
        The dataset's own test split, kept as is when present (CIFAR-10, MNIST).
    classes : list of str
        Class names, ``len(classes) == C``.
    image_shape : tuple of int or None
        Shape of one example as an image, ``(H, W)`` or ``(H, W, 3)``, so learned weights can
        be shown as templates; ``None`` for non-image data.
    source : str
        Where the data came from (a path, or ``sklearn:digits``), for messages.
    """

    X: Array
    y: Array
    classes: list[str]
    X_test: Array | None = None
    y_test: Array | None = None
    image_shape: tuple[int, ...] | None = None
    source: str = ""


@dataclass(frozen=True)
class DataShape:
    """The sizes a dataset source's :meth:`~DatasetSource.load` would give, found without
    loading the data (by a source's optional ``shape(rng)``, see
    :class:`optlab._training.data.SupportsShape`).

    Attributes
    ----------
    n_examples : int
        ``N``, the examples of the training data (``X``'s rows).
    n_features : int
        ``F``, the features of one example: ``X``'s dimensions after the first, multiplied
        (an image is flattened); no bias column.
    n_classes : int
        ``C``, the number of class names.
    n_test : int or None
        ``M``, the examples of the dataset's own test split; ``None`` when it has none.
    source : str
        Where the data come from, as :attr:`RawDataset.source` (for messages).
    """

    n_examples: int
    n_features: int
    n_classes: int
    n_test: int | None = None
    source: str = ""


class DatasetSource(ABC):
    """A dataset plugin's loader; optlab preprocesses and splits what it returns."""

    @abstractmethod
    def load(self, rng: np.random.Generator) -> RawDataset:
        """Load the data. Raise :class:`~optlab._errors.DataError` with the file and problem."""


# --------------------------------------------------------------------------------------------
# Records: what the registration hooks return
# --------------------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class ComponentRecord(Generic[T]):
    """A component a plugin provides.

    Attributes
    ----------
    name : str
        The name used in spec files (``svm``, ``sgd``); lowercase, ``[a-z0-9_]+``.
    factory : callable
        Called once per run with an instance of ``params``; returns the component object.
    params : type of Params
        The pydantic model of the component's parameters (``extra="forbid"``).
    summary : str
        One line shown by ``optlab components``.
    """

    kind: ClassVar[ComponentKind]
    name: str
    factory: Callable[[Any], T]
    params: type[Params] = Params
    summary: str = ""
    #: filled in by the plugin manager: the plugin that registered this record
    provider: str = field(default="", compare=False)


@dataclass(frozen=True)
class LossRecord(ComponentRecord[Loss]):
    kind: ClassVar[ComponentKind] = "loss"


@dataclass(frozen=True)
class RegularizerRecord(ComponentRecord[Regularizer]):
    kind: ClassVar[ComponentKind] = "regularizer"


@dataclass(frozen=True)
class DatasetRecord(ComponentRecord[DatasetSource]):
    kind: ClassVar[ComponentKind] = "dataset"


exported(
    ComponentRecord,
    DataShape,
    DatasetRecord,
    DatasetSource,
    Loss,
    LossRecord,
    Monitor,
    Params,
    RawDataset,
    Regularizer,
    RegularizerParams,
    RegularizerRecord,
)
