"""The JSON Schema of spec files accepts valid specs and rejects malformed ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ConfigDict, Field
from spec_testplugins import BUNDLED, SpecTestPlugin, make_registry

import optlab
from optlab._contract.plugin_manager import build_registry
from optlab._contract.registry import Registry
from optlab._errors import SpecError
from optlab._spec.load import load_experiment
from optlab._spec.reader import load_yaml
from optlab._spec.schema import SCHEMA_DIALECT, json_schema

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).parent.parent
CORPUS = Path(__file__).parent / "bad_specs"

GOOD = """\
name: demo
description: all features
seed: 1
seeds: [0, 1]
data: {name: digits, limit: {train: 100}, n_samples: 500, dtype: float32}
loss: {name: svm, margin: 2}
regularizer: [{name: l2, strength: 0.001}]
optimizer: {name: sgd, lr: 0.1, batch_size: 50, epochs: 2}
checks: {gradient: off}
tracking: {enabled: false}
max_runs: 50
variants:
  svm:
  softmax: {loss: {name: softmax}}
  blobs: {data: {name: blobs}, checks: false}
sweep:
  grid: {optimizer.lr: [0.1, 0.01]}
  random:
    trials: 2
    params:
      regularizer.0.strength: {loguniform: [1.0e-5, 1.0e-2]}
      optimizer.epochs: {int: [1, 3]}
      optimizer.batch_size: {choice: [10, 20]}
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return make_registry()


@pytest.fixture(scope="module")
def validator(registry: Registry) -> object:
    schema = json_schema(registry)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _data(text: str) -> object:
    return load_yaml(text, "x")[0]


def _branches(schema: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """The schema of each component a run key accepts, by name."""
    prop = schema["properties"][key]["anyOf"][0]
    refs = [b["$ref"] for b in prop.get("oneOf", [prop])]
    branches = [schema["$defs"][r.rsplit("/", 1)[1]] for r in refs]
    return {b["properties"]["name"]["const"]: b for b in branches}


def test_schema_shape(registry: Registry) -> None:
    schema = json_schema(registry)
    assert schema["$schema"] == SCHEMA_DIALECT
    json.dumps(schema)
    assert set(_branches(schema, "loss")) == {"svm", "softmax"}
    assert schema["properties"]["loss"]["anyOf"][0]["discriminator"]["propertyName"] == "name"
    sgd = _branches(schema, "optimizer")["sgd"]
    assert sgd["properties"]["lr"]["exclusiveMinimum"] == 0
    assert sgd["additionalProperties"] is False
    digits = _branches(schema, "data")["digits"]
    assert {"center", "dtype", "limit", "n_samples"} <= set(digits["properties"])


class _ArrayParams(optlab.Params):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    weights: np.ndarray = Field(default_factory=lambda: np.ones(3), description="Per class.")
    scale: float = Field(1.0, gt=0)


class _ArrayParamsPlugin:
    @optlab.hookimpl
    def optlab_register_losses(self) -> list[optlab.LossRecord]:
        return [optlab.LossRecord("array_loss", lambda p: None, _ArrayParams, "array params")]


def test_a_component_whose_params_json_schema_cannot_describe_is_in_the_schema() -> None:
    """A params field of a type JSON Schema has no word for (a numpy array) left the whole
    component out of the schema, without a word: editors flagged its name as unknown."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTLAB_DISABLE_PLUGINS", BUNDLED)
        extra = [("spec_test", SpecTestPlugin()), ("array_plugin", _ArrayParamsPlugin())]
        registry = build_registry(extra=extra)[1]
    schema = json_schema(registry)
    branch = _branches(schema, "loss")["array_loss"]
    assert branch["properties"]["scale"]["exclusiveMinimum"] == 0
    assert branch["properties"]["weights"] == {"description": "Per class.", "title": "Weights"}
    validator = jsonschema.Draft202012Validator(schema)
    spec = _data(GOOD.replace("loss: {name: svm, margin: 2}", "loss: {name: array_loss}"))
    assert list(validator.iter_errors(spec)) == []


def test_good_spec_validates(tmp_path: Path, registry: Registry, validator: object) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    assert len(load_experiment(path, registry=registry).runs) == 3 * 2 * 2 * 2
    assert list(validator.iter_errors(_data(GOOD))) == []  # type: ignore[attr-defined]


def test_bundled_example_specs_agree_with_the_validator() -> None:
    """Every shipped spec: the schema accepts it exactly when load_experiment does."""
    examples = sorted((ROOT / "experiments").glob("*.yaml")) + sorted(
        (ROOT / "examples").glob("**/*.yaml")
    )
    if not examples:
        pytest.skip("no bundled example specs yet")
    from optlab._contract.plugin_manager import get_registry

    real = get_registry()
    schema = jsonschema.Draft202012Validator(json_schema(real))
    for path in examples:
        errors = [e.message for e in schema.iter_errors(_data(path.read_text()))]
        try:
            load_experiment(path, registry=real)
        except SpecError as exc:
            assert errors, f"{path}: the schema accepts what the validator rejects: {exc}"
            continue
        assert errors == [], f"{path}: {errors}"


@pytest.mark.parametrize(
    "name",
    [
        "unknown_top_key",
        "unknown_loss",
        "unknown_param",
        "negative_lr",
        "empty_seeds",
        "empty_variants",
        "variant_unknown_key",
        "data_unknown_key",
        "checks_bad_policy",
        "random_unknown_distribution",
        "max_runs_zero",
    ],
)
def test_schema_rejects_what_the_validator_rejects(
    name: str, registry: Registry, validator: object
) -> None:
    path = CORPUS / f"{name}.yaml"
    with pytest.raises(SpecError):
        load_experiment(path, registry=registry)
    assert list(validator.iter_errors(_data(path.read_text())))  # type: ignore[attr-defined]
