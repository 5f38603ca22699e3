"""What a run is, as observers and the store see it: its :class:`~optlab.RunInfo` - name,
key for ``--resume``, flat dotted params, tags (variant, sweep point, providers with versions,
optlab version, data hash, backend)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from optlab._contract.records import BACKEND_TAG, SWEEP_TAG, RunInfo
from optlab._contract.registry import Registry
from optlab._meta import __version__
from optlab._spec.experiment import ComponentSpec, RunSpec
from optlab._training.prepare import PreparedData

__all__ = ["describe_run", "flatten_params", "provider_label", "run_key", "run_tags"]


def flatten_params(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved run spec as flat dotted keys, as logged to MLflow.

    A list of regularizers is keyed by name (``regularizer.l2.strength``), a second one of a
    name by its count as well (``regularizer.l2.2.strength``), and ``regularizer.name`` joins
    their names (``l2+max_norm``, or ``none``).
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = value

    for key, value in resolved.items():
        if key == "regularizer" and isinstance(value, list):
            names = [str(r.get("name")) for r in value if isinstance(r, Mapping)]
            flat["regularizer.name"] = "+".join(names) if names else "none"
            seen: dict[str, int] = {}
            for reg in value:
                params = {k: v for k, v in reg.items() if k != "name"}
                name = str(reg.get("name"))
                seen[name] = seen.get(name, 0) + 1
                walk(f"regularizer.{name}" + (f".{seen[name]}" if seen[name] > 1 else ""), params)
        else:
            walk(key, value)
    return flat


def run_key(name: str, resolved: Mapping[str, Any], data_sha256: str) -> str:
    """Identity of a run for ``--resume``: its name in the plan, its resolved spec, its data
    and the code version (two variants that resolve alike are still two runs)."""
    blob = json.dumps(
        {"name": name, "spec": resolved, "data": data_sha256, "optlab": __version__},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def provider_label(spec: ComponentSpec, registry: Registry | None) -> str:
    if registry is None:
        return spec.record.provider or "unknown"
    return registry.label(spec.record.provider)


def run_tags(
    run: RunSpec,
    data: PreparedData,
    registry: Registry | None,
    base: Mapping[str, str],
    backend: str | None = None,
) -> dict[str, str]:
    """Tags of a run: variant, providers with versions, optlab version, data hash, the
    backend that trains it (``optlab.backend``), ``base``."""
    tags = dict(base)
    tags["optlab.variant"] = run.variant or run.name
    if run.point:  # the sweep values of this run (dotted key -> value)
        tags[SWEEP_TAG] = json.dumps(run.point, default=str)
    tags["optlab.version"] = __version__
    tags["optlab.data_sha256"] = data.summary.sha256
    tags["optlab.provider.dataset"] = provider_label(run.dataset, registry)
    tags["optlab.provider.loss"] = provider_label(run.loss, registry)
    tags["optlab.provider.optimizer"] = provider_label(run.optimizer, registry)
    for reg in run.regularizers:
        tags[f"optlab.provider.regularizer.{reg.name}"] = provider_label(reg, registry)
    if backend is not None:
        tags[BACKEND_TAG] = backend
    return tags


def describe_run(
    run: RunSpec,
    data: PreparedData,
    experiment: str,
    registry: Registry | None,
    base_tags: Mapping[str, str],
    backend: str | None = None,
) -> RunInfo:
    """The :class:`RunInfo` observers receive: name, key, flat params, tags (with the label of
    the ``backend`` that trains it, when known), data summary."""
    return RunInfo(
        name=run.name,
        key=run_key(run.name, run.resolved, data.summary.sha256),
        experiment=experiment,
        params=flatten_params(run.resolved),
        spec=dict(run.resolved),
        tags=run_tags(run, data, registry, base_tags, backend),
        data=data.summary,
    )
