"""JSON Schema (draft 2020-12) of experiment spec files, for editors and ``optlab schema``.

It is pydantic's schema of the very model that validates spec files
(:func:`optlab._spec.models.spec_model`): each component is a ``oneOf`` discriminated by its
``name``, one branch per registered component, so an editor with a YAML language server
flags an unknown key or a bad value as it is typed.
"""

from __future__ import annotations

from typing import Any

from optlab._contract.registry import Registry
from optlab._spec.models import spec_model

__all__ = ["SCHEMA_DIALECT", "json_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema of a spec file, including every registered component's params.

    Parameters
    ----------
    registry : Registry
        The components to describe (``optlab._contract.plugin_manager.get_registry()`` in the CLI).

    Returns
    -------
    dict
        A draft 2020-12 schema; ``json.dumps`` it as is.
    """
    schema = spec_model(registry).model_json_schema()
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://optlab.invalid/schema/spec.json",
        **schema,
        "title": "optlab experiment spec",
        "description": "An optlab experiment: a base run, its variants, sweep and seeds.",
    }
