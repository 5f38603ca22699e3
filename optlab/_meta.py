"""Package facts for modules below the package root (the root re-exports them; importing the
root from inside optlab would make a cycle): the installed version, and :func:`exported`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["__version__", "exported"]

try:
    __version__ = version("optlab")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"


def exported(*objects: Any, module: str = "optlab") -> None:
    """Mark classes and functions as part of ``module``'s public surface, where users import
    them from: their ``__module__`` becomes ``module`` (as httpx does), so reprs, docs and
    pickles name ``optlab.Loss`` rather than the private module that defines it."""
    for obj in objects:
        obj.__module__ = module
