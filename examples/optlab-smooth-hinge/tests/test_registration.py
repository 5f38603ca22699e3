"""The installed plugin is found through its entry point and registers both components."""

from __future__ import annotations

from importlib.metadata import version

from optlab.testing import get_registry


def test_entry_point_registers_both_components_with_this_distribution() -> None:
    registry = get_registry()
    assert "smooth_hinge" in registry.plugins, "install the plugin first: pip install -e ."
    info = registry.plugins["smooth_hinge"]
    assert (info.distribution, info.status) == ("optlab-smooth-hinge", "active"), info.reason
    assert info.version == version("optlab-smooth-hinge")
    assert registry.get("loss", "smooth_hinge").provider == "smooth_hinge"
    assert registry.get("optimizer", "lookahead_sgd").provider == "smooth_hinge"
