"""optlab's public surface: every exported name resolves, from the module that defines it."""

from __future__ import annotations

import optlab


def test_every_exported_name_resolves() -> None:
    for name in optlab.__all__:
        assert getattr(optlab, name) is not None, name
    assert set(optlab.__all__) - {"__version__"} == set(optlab._WHERE)


def test_no_kernel_names_and_the_backend_interface_is_public() -> None:
    """How a backend computes is its own business: the core's public names say nothing about
    kernels or batches, and a backend plugin needs only public names."""
    assert not {"KernelForm", "Batch"} & set(optlab.__all__)
    assert not any("kernel" in name.lower() for name in optlab.__all__)
    assert {"Backend", "BackendRecord", "BackendUnavailable"} <= set(optlab.__all__)
    assert not hasattr(optlab.Loss, "kernel_form")


def test_minibatch_params_is_public_and_the_bundled_minibatch_optimizers_build_on_it() -> None:
    """A plugin author reuses the params every bundled minibatch optimizer takes."""
    from optlab.plugin_manager import get_registry

    assert "MinibatchParams" in optlab.__all__
    assert issubclass(optlab.MinibatchParams, optlab.Params)
    assert set(optlab.MinibatchParams.model_fields) == {
        "lr",
        "batch_size",
        "epochs",
        "sampling",
        "lr_decay",
    }
    assert optlab.MinibatchParams.__doc__ and "replacement" in optlab.MinibatchParams.__doc__
    registry = get_registry()
    for name in ("sgd", "adagrad", "rmsprop", "adam"):
        assert issubclass(registry.get("optimizer", name).params, optlab.MinibatchParams), name
