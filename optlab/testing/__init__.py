"""Conformance checks and test doubles for plugin authors (and for optlab's own components).

One line in a plugin's test suite checks a component the way optlab's loop will use it::

    from optlab.testing import check_loss
    from my_plugin import optlab_register_losses

    def test_my_loss():
        check_loss(optlab_register_losses()[0])

Each ``check_*`` takes a record (its factory is called with the params model's defaults, or
with ``params`` overrides) or an already built component, and raises :class:`AssertionError`
naming the component and the fault. What is checked:

- :func:`check_loss`: output types, shapes and dtypes (float32 and float64 in, same out),
  finite values (also for scores of 1e3), inputs left unmodified, ``loss`` agreeing with
  ``loss_and_grad``, the gradient against centered finite differences in float64, float32
  agreeing with float64, the loss being a mean of per-example terms (a batch repeated, a
  batch in two parts), and the declared initial loss at scores of about 0.
- :func:`check_regularizer`: the same for the penalty; a projection that changes a random ``W``
  of scale 1e6 in place (also through a view such as ``W[:-1]``), keeps shape and dtype and is
  idempotent; an input perturbation that keeps shape and dtype,
  leaves its input alone and is reproducible from the generator; finite results at edge
  inputs (all zeros, a zero row or column, tiny weights); ``include_bias`` passed on by the
  factory.
- :func:`check_dataset`: what ``load(rng)`` returns is accepted by optlab (labels, class
  names, shapes, finite features, image shape), two classes at least, the same data for the
  same seed, and no use of the global random state; a ``shape(rng)`` gives the sizes ``load``
  gives.
- :func:`check_optimizer`: on a small convex softmax problem, in float32 and float64, the
  weights come back with the shape and dtype of ``W0`` (unmodified), finite and with a lower
  objective; the monitor saw steps and an evaluation; the same seed gives the same weights;
  a max-norm-like constraint holds at the end (the optimizer projects).
- :func:`check_backend`: a backend's products (also into ``out`` and on several threads) and
  its fused steps agree with the numpy backend's to rounding and leave their inputs alone.

Also here: :class:`RecordingMonitor`, a :class:`~optlab.Monitor` that only records, and
:func:`register_plugin`, a context manager that registers a plugin for the duration of a test.
"""

from __future__ import annotations

from optlab._contract.plugin_manager import get_registry, registered_plugin
from optlab._meta import exported
from optlab.testing._backends import check_backend
from optlab.testing._common import GRADIENT_TOLERANCE
from optlab.testing._datasets import check_dataset
from optlab.testing._doubles import Evaluation, RecordingMonitor, Step, toy_objective
from optlab.testing._losses import check_loss
from optlab.testing._optimizers import check_optimizer
from optlab.testing._regularizers import check_regularizer

__all__ = [
    "GRADIENT_TOLERANCE",
    "Evaluation",
    "RecordingMonitor",
    "Step",
    "check_backend",
    "check_dataset",
    "check_loss",
    "check_optimizer",
    "check_regularizer",
    "get_registry",
    "register_plugin",
    "toy_objective",
]

#: register a plugin (module or object with hook implementations) inside a ``with`` block
register_plugin = registered_plugin

exported(
    Evaluation,
    RecordingMonitor,
    Step,
    check_backend,
    check_dataset,
    check_loss,
    check_optimizer,
    check_regularizer,
    get_registry,
    registered_plugin,
    toy_objective,
    module=__name__,
)
