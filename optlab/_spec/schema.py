"""JSON Schema (draft 2020-12) of experiment spec files, for editors and ``optlab schema``.

It is pydantic's schema of the very model that validates spec files
(:func:`optlab._spec.models.spec_model`): each component is a ``oneOf`` discriminated by its
``name``, one branch per registered component, so an editor with a YAML language server
flags an unknown key or a bad value as it is typed.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema

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
    schema = spec_model(registry).model_json_schema(schema_generator=_AnyValueForOtherTypes)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://optlab.invalid/schema/spec.json",
        **schema,
        "title": "optlab experiment spec",
        "description": "An optlab experiment: a base run, its variants, sweep and seeds.",
    }


class _AnyValueForOtherTypes(GenerateJsonSchema):
    """A params field of a type JSON Schema cannot describe (a plugin's numpy array, with
    ``arbitrary_types_allowed``) takes any value in the schema, and optlab's validation checks
    it. pydantic's own generator left the whole component out of its kind's ``oneOf``, without
    a word, so that an editor flagged the component's name as unknown."""

    def handle_invalid_for_json_schema(
        self, schema: CoreSchema | Any, error_info: str
    ) -> JsonSchemaValue:
        return {"description": f"any value (checked when the spec is validated: {error_info})"}
