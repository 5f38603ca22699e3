"""The registry: every component by kind and name, with its provider.

Built once by :func:`optlab._contract.plugin_manager.build_registry` from the registration hooks.
Two plugins may offer the same name: both are kept and listed, and asking for that name raises a
:class:`~optlab._errors.PluginError` that names both providers.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from optlab._contract.components import ComponentKind, ComponentRecord
from optlab._errors import PluginError

__all__ = ["KINDS", "PluginInfo", "Registry", "did_you_mean"]

KINDS: tuple[ComponentKind, ...] = ("loss", "regularizer", "optimizer", "dataset", "backend")


def did_you_mean(name: str, options: Iterable[str], *, cutoff: float = 0.6) -> str:
    """``" (did you mean 'x'?)"`` for the closest option (at least ``cutoff`` alike, by
    :func:`difflib.get_close_matches`), or ``""``; case is ignored (``SVM`` is close to
    ``svm``)."""
    by_folded = {option.casefold(): option for option in sorted(options, reverse=True)}
    close = difflib.get_close_matches(name.casefold(), sorted(by_folded), n=1, cutoff=cutoff)
    return f" (did you mean '{by_folded[close[0]]}'?)" if close else ""


@dataclass
class PluginInfo:
    """A plugin as ``optlab plugins`` lists it.

    ``status`` is ``active``, ``disabled`` or ``failed``; ``reason`` says why it failed.
    ``load_time_s`` is what loading it took, in seconds: importing its module and calling its
    registration hooks, which every command that builds the registry pays (``None`` for a
    disabled plugin, which is not imported).
    """

    name: str
    distribution: str
    version: str
    status: str = "active"
    reason: str = ""
    entry_point: str = ""
    components: list[tuple[ComponentKind, str]] = field(default_factory=list)
    load_time_s: float | None = None

    @property
    def label(self) -> str:
        """``name (distribution version)``, as used in messages and tags."""
        return f"{self.name} ({self.distribution} {self.version})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "entry_point": self.entry_point,
            "components": [{"kind": k, "name": n} for k, n in self.components],
            "load_time_s": self.load_time_s,
        }


class Registry:
    """Components by kind and name, and the plugins that provided them."""

    def __init__(self) -> None:
        self._records: dict[ComponentKind, dict[str, list[ComponentRecord[Any]]]] = {
            kind: defaultdict(list) for kind in KINDS
        }
        self.plugins: dict[str, PluginInfo] = {}

    def add(self, record: ComponentRecord[Any]) -> None:
        """Add one record (its ``provider`` must be set)."""
        self._records[record.kind][record.name].append(record)

    def remove_provider(self, provider: str) -> None:
        """Drop every record ``provider`` registered (a plugin that failed part-way)."""
        for by_name in self._records.values():
            for name, recs in list(by_name.items()):
                recs[:] = [r for r in recs if r.provider != provider]
                if not recs:
                    del by_name[name]

    def names(self, kind: ComponentKind) -> list[str]:
        """Sorted component names of one kind (colliding names included once)."""
        return sorted(self._records[kind])

    def records(self, kind: ComponentKind | None = None) -> Iterator[ComponentRecord[Any]]:
        """Every record, of one kind or of all, sorted by kind and name."""
        for k in KINDS if kind is None else (kind,):
            for name in sorted(self._records[k]):
                yield from self._records[k][name]

    def collisions(self) -> list[tuple[ComponentKind, str, list[str]]]:
        """``(kind, name, providers)`` for every name offered by more than one plugin."""
        return [
            (k, name, [r.provider for r in recs])
            for k in KINDS
            for name, recs in sorted(self._records[k].items())
            if len(recs) > 1
        ]

    def collision_lines(self) -> list[str]:
        """One line per name offered by more than one plugin (:meth:`collisions`), saying what
        to do: how ``optlab plugins`` warns of it, and how strict mode refuses it."""
        return [
            f"{kind} '{name}' is provided by {' and '.join(providers)}; using it is an error "
            "until one is disabled (OPTLAB_DISABLE_PLUGINS=<plugin>)"
            for kind, name, providers in self.collisions()
        ]

    def get(self, kind: ComponentKind, name: str) -> ComponentRecord[Any]:
        """The record of ``name``; :class:`PluginError` if unknown or offered twice."""
        recs = self._records[kind].get(name)
        if not recs:
            disabled = [p.label for p in self.plugins.values() if p.status == "disabled"]
            note = ""
            if disabled and not self.names(kind):  # nothing of this kind: say why
                note = f" (OPTLAB_DISABLE_PLUGINS disables {', '.join(disabled)})"
            raise PluginError(
                f"unknown {kind} '{name}'{did_you_mean(name, self.names(kind))}; "
                f"available: {', '.join(self.names(kind)) or 'none'}{note}"
            )
        if len(recs) > 1:
            providers = " and ".join(r.provider for r in recs)
            raise PluginError(
                f"{kind} '{name}' is provided by {providers}; "
                "disable one with OPTLAB_DISABLE_PLUGINS=<plugin>"
            )
        return recs[0]

    def bundled(self, plugin: str) -> bool:
        """Whether optlab ships the plugin (distribution ``optlab``: the numpy backend and the
        bundled plugins), as opposed to a third-party one."""
        info = self.plugins.get(plugin)
        return info is not None and info.distribution == "optlab"

    def label(self, plugin: str) -> str:
        """``name (distribution version)`` of a plugin, as messages and tags name it (the bare
        name for a plugin the registry does not know)."""
        info = self.plugins.get(plugin)
        return info.label if info is not None else plugin or "unknown"
