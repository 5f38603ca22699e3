"""JSON Schema (draft 2020-12) of experiment spec files, for editors and ``optlab schema``.

The schema is built from the same pydantic models the validator uses, plus one branch per
registered component (``oneOf`` per kind, discriminated by a ``name`` const), so an editor
with a YAML language server flags an unknown key or a bad value as it is typed.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from optlab._spec_models import COMPONENT_KEYS, SpecModel
from optlab.components import ComponentKind
from optlab.config import DataOptions
from optlab.registry import Registry

__all__ = ["SCHEMA_DIALECT", "json_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/{model}"
_KIND_OF_KEY: dict[str, ComponentKind] = {
    "data": "dataset",
    "loss": "loss",
    "regularizer": "regularizer",
    "optimizer": "optimizer",
}


def _branch(
    kind: ComponentKind, name: str, summary: str, defs: list[dict[str, Any]]
) -> dict[str, Any]:
    """One component: ``name`` const plus the params of ``defs`` (merged), nothing else."""
    properties: dict[str, Any] = {"name": {"const": name, "description": summary or name}}
    required = ["name"]
    for d in defs:
        properties.update(copy.deepcopy(d.get("properties", {})))
        required += d.get("required", [])
    return {
        "type": "object",
        "title": f"{kind} {name}",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def json_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema of a spec file, including every registered component's params.

    Parameters
    ----------
    registry : Registry
        The components to describe (``optlab.plugin_manager.get_registry()`` in the CLI).

    Returns
    -------
    dict
        A draft 2020-12 schema; ``json.dumps`` it as is.
    """
    records = [r for r in registry.records() if len(list(_records(registry, r.kind, r.name))) == 1]
    models: list[type[BaseModel]] = [SpecModel, DataOptions, *(r.params for r in records)]
    unique = list(dict.fromkeys(models))
    refs, top = models_json_schema([(m, "validation") for m in unique], ref_template=_REF)
    defs: dict[str, Any] = top.get("$defs", {})

    def def_of(model: type[BaseModel]) -> dict[str, Any]:
        ref = refs[(model, "validation")]["$ref"]
        return dict(defs[ref.rsplit("/", 1)[-1]])

    spec = def_of(SpecModel)
    data_opts = def_of(DataOptions)
    for key in COMPONENT_KEYS:
        kind = _KIND_OF_KEY[key]
        branches = [
            _branch(
                kind,
                r.name,
                r.summary,
                [data_opts, def_of(r.params)] if kind == "dataset" else [def_of(r.params)],
            )
            for r in records
            if r.kind == kind
        ]
        defs[f"component_{key}"] = {
            "description": f"A {kind}: its name plus its params.",
            "oneOf": branches or [{"not": {}}],
        }
        names = sorted({r.name for r in records if r.kind == kind})
        defs[f"partial_{key}"] = {
            "description": f"Part of a {kind}, merged into the base run's.",
            "type": "object",
            "properties": {"name": {"enum": names}} if names else {},
        }
    component: dict[str, dict[str, Any]] = {
        k: {"$ref": f"#/$defs/component_{k}"} for k in COMPONENT_KEYS
    }
    component["regularizer"] = {
        "anyOf": [
            {"$ref": "#/$defs/component_regularizer"},
            {"type": "array", "items": {"$ref": "#/$defs/component_regularizer"}},
            {"type": "null"},
            {"const": "none"},
        ]
    }
    props = spec["properties"]
    for key in COMPONENT_KEYS:
        props[key] = {**component[key], "description": f"The run's {_KIND_OF_KEY[key]}."}
    # variants hold partial components, and may be empty (the base run)
    variant_ref = props["variants"]["anyOf"][0]["additionalProperties"]["$ref"]
    variant_name = variant_ref.rsplit("/", 1)[-1]
    variant = defs[variant_name]
    for key in COMPONENT_KEYS:
        partial: dict[str, Any] = {"$ref": f"#/$defs/partial_{key}"}
        if key == "regularizer":
            partial = {
                "anyOf": [
                    partial,
                    {"type": "array", "items": {"$ref": "#/$defs/component_regularizer"}},
                    {"type": "null"},
                    {"const": "none"},
                ]
            }
        variant["properties"][key] = partial
    props["variants"] = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {"anyOf": [{"$ref": variant_ref}, {"type": "null"}]},
        "description": props["variants"].get("description", ""),
    }
    props["sweep"] = {
        "$ref": props["sweep"]["anyOf"][0]["$ref"],
        "description": "A grid and/or random search over dotted keys.",
    }
    defs.pop(spec.get("title", "SpecModel"), None)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://optlab.invalid/schema/spec.json",
        "title": "optlab experiment spec",
        "description": "An optlab experiment: a base run, its variants, sweep and seeds.",
        "type": "object",
        "properties": props,
        "required": spec.get("required", ["name"]),
        "additionalProperties": False,
        "$defs": defs,
    }


def _records(registry: Registry, kind: ComponentKind, name: str) -> list[Any]:
    """Every record offering ``kind``/``name`` (more than one: a collision, left out)."""
    return [r for r in registry.records(kind) if r.name == name]
