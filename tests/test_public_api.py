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
