"""optlab's public surface: every exported name resolves, from the module that defines it."""

from __future__ import annotations

import optlab


def test_every_exported_name_resolves() -> None:
    for name in optlab.__all__:
        assert getattr(optlab, name) is not None, name
    assert set(optlab.__all__) - {"__version__"} == set(optlab._WHERE)
