"""optlab-smooth-hinge: a third-party optlab plugin.

Provides the loss ``smooth_hinge`` (the multiclass hinge with its corner rounded off) and the
optimizer ``lookahead_sgd`` (Lookahead around minibatch SGD). optlab finds this module through
the ``optlab`` entry-point group declared in ``pyproject.toml``::

    [project.entry-points.optlab]
    smooth_hinge = "optlab_smooth_hinge"

and calls the two hook implementations below once, when it builds its registry.
"""

from __future__ import annotations

import optlab

from optlab_smooth_hinge.lookahead import LookaheadParams, LookaheadSGD
from optlab_smooth_hinge.loss import SmoothHingeLoss, SmoothHingeParams

__all__ = [
    "LookaheadParams",
    "LookaheadSGD",
    "SmoothHingeLoss",
    "SmoothHingeParams",
    "optlab_register_losses",
    "optlab_register_optimizers",
]


def _smooth_hinge(params: SmoothHingeParams) -> SmoothHingeLoss:
    return SmoothHingeLoss(params.smoothing, params.margin)


def _lookahead_sgd(params: LookaheadParams) -> LookaheadSGD:
    return LookaheadSGD(params)


@optlab.hookimpl
def optlab_register_losses() -> list[optlab.LossRecord]:
    """The loss this plugin provides: ``smooth_hinge``."""
    return [
        optlab.LossRecord(
            name="smooth_hinge",
            factory=_smooth_hinge,
            params=SmoothHingeParams,
            summary="Multiclass hinge loss with a quadratically smoothed corner (width smoothing).",
        )
    ]


@optlab.hookimpl
def optlab_register_optimizers() -> list[optlab.OptimizerRecord]:
    """The optimizer this plugin provides: ``lookahead_sgd``."""
    return [
        optlab.OptimizerRecord(
            name="lookahead_sgd",
            factory=_lookahead_sgd,
            params=LookaheadParams,
            summary="Lookahead (k fast SGD steps, then slow weights pulled by alpha).",
        )
    ]
