"""optlab's installed version, for modules below the package root (the root re-exports it as
``optlab.__version__``; importing the root from inside optlab would make a cycle)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("optlab")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"
