"""optlab's conformance checks, one line each: what optlab's training loop relies on."""

from __future__ import annotations

from optlab.testing import check_loss, check_optimizer

from optlab_smooth_hinge import optlab_register_losses, optlab_register_optimizers

(SMOOTH_HINGE,) = optlab_register_losses()
(LOOKAHEAD,) = optlab_register_optimizers()


def test_smooth_hinge_conforms() -> None:
    check_loss(SMOOTH_HINGE)


def test_smooth_hinge_conforms_with_a_narrow_corner_and_wide_margin() -> None:
    check_loss(SMOOTH_HINGE, params={"smoothing": 0.1, "margin": 2.0})


def test_smooth_hinge_conforms_when_the_margin_sits_in_the_quadratic_piece() -> None:
    check_loss(SMOOTH_HINGE, params={"smoothing": 4.0, "margin": 1.0})


def test_lookahead_sgd_conforms() -> None:
    check_optimizer(LOOKAHEAD, params={"lr": 0.1, "batch_size": 32, "epochs": 3})


def test_lookahead_sgd_with_momentum_conforms() -> None:
    check_optimizer(LOOKAHEAD, params={"lr": 0.05, "batch_size": 32, "epochs": 3, "momentum": 0.9})
