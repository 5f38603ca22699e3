"""optlab's public surface: exactly these names, each resolving, each saying it is ``optlab``'s;
every other module private by name."""

from __future__ import annotations

import ast
import inspect
import pickle
import re
from pathlib import Path

import optlab
import optlab.testing

PUBLIC = {
    # scripts and notebooks
    "run", "load_spec", "compare", "Results", "Table", "Experiment", "RunSpec",
    # plugins: the hook marker, interfaces, params, records
    "hookimpl", "Loss", "Regularizer", "Optimizer", "DatasetSource", "Backend", "Monitor",
    "Params", "RegularizerParams", "MinibatchParams", "MAX_STEPS",
    "ComponentRecord", "LossRecord", "RegularizerRecord", "OptimizerRecord", "DatasetRecord",
    "BackendRecord", "Objective", "LossParts", "RawDataset", "DataShape", "Array",
    # what observers are told
    "RunInfo", "EpochReport", "RunResult", "RunStatus", "DataSummary", "StepHistory",
    # errors
    "OptlabError", "OptlabWarning", "InputError", "SpecError", "SpecIssue", "DataError",
    "PluginError", "ComponentError", "BackendUnavailable", "RunError", "CheckError",
    "DivergenceError", "RunInterrupted", "TrackingError", "TrackingUnavailable",
    "__version__",
}  # fmt: skip

TESTING = {
    "GRADIENT_TOLERANCE", "Evaluation", "RecordingMonitor", "Step", "check_backend",
    "check_dataset", "check_loss", "check_optimizer", "check_regularizer", "get_registry",
    "register_plugin", "toy_objective",
}  # fmt: skip


def test_the_public_names_are_exactly_these() -> None:
    assert set(optlab.__all__) == PUBLIC
    assert set(optlab.testing.__all__) == TESTING
    assert sorted(dir(optlab)) == sorted(PUBLIC)


def test_every_exported_name_resolves() -> None:
    for name in optlab.__all__:
        assert getattr(optlab, name) is not None, name
    assert set(optlab.__all__) - {"__version__"} == set(optlab._WHERE)


def test_public_classes_and_functions_say_they_are_optlabs() -> None:
    """As httpx does: ``optlab.Loss``, not the private module that defines it - in reprs,
    docs and pickles (which then load through the public name)."""
    for name in optlab.__all__:
        obj = getattr(optlab, name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            assert obj.__module__ == "optlab", name
    for name in optlab.testing.__all__:
        obj = getattr(optlab.testing, name)
        if isinstance(obj, type) or inspect.isfunction(obj) or hasattr(obj, "__wrapped__"):
            assert obj.__module__ == "optlab.testing", name
    assert repr(optlab.SpecError).endswith("'optlab.SpecError'>")
    error = pickle.loads(pickle.dumps(optlab.DataError("no file", key="data.path")))
    assert type(error) is optlab.DataError


def test_every_other_module_is_private_by_name() -> None:
    root = Path(optlab.__file__).parent
    public = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if not any(part.startswith("_") and part not in ("__init__", "__main__") for part in parts):
            public.append("/".join(parts))
    assert sorted(public) == ["__init__", "__main__", "testing/__init__"]


def test_plugins_use_only_public_names() -> None:
    """The bundled plugins and the example plugin import ``optlab`` and ``optlab.testing``
    only, as a third-party plugin would."""
    repo = Path(optlab.__file__).parents[1]
    for folder in (repo / "plugins", repo / "examples"):
        for path in folder.rglob("*.py"):
            for line in path.read_text().splitlines():
                words = line.split()
                if words[:1] in (["from"], ["import"]) and words[1].startswith("optlab."):
                    assert words[1] == "optlab.testing", f"{path.relative_to(repo)}: {line}"


def test_plugins_name_only_what_optlab_exports() -> None:
    """Every ``optlab.NAME`` the bundled plugins and the example plugin use is exported: a
    name optlab no longer has (they once used ``optlab.KernelForm``) fails here, where a type
    checker of ``optlab``'s lazy attributes would not look."""
    repo = Path(optlab.__file__).parents[1]
    exported = set(optlab.__all__) | {"testing"}
    unknown = []
    for folder in (repo / "plugins", repo / "examples"):
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in ("optlab", "testing")
                ):
                    names = exported if node.value.id == "optlab" else TESTING
                    if node.attr not in names:
                        unknown.append(f"{path.relative_to(repo)}:{node.lineno}: {node.attr}")
    assert not unknown


def test_no_kernel_names_and_the_backend_interface_is_public() -> None:
    """How a backend computes is its own business: the core's public names say nothing about
    kernels or batches, and a backend plugin needs only public names."""
    assert not {"KernelForm", "Batch"} & set(optlab.__all__)
    assert not any("kernel" in name.lower() for name in optlab.__all__)
    assert {"Backend", "BackendRecord", "BackendUnavailable"} <= set(optlab.__all__)
    assert not hasattr(optlab.Loss, "kernel_form")


def test_minibatch_params_is_public_and_the_bundled_minibatch_optimizers_build_on_it() -> None:
    """A plugin author reuses the params every bundled minibatch optimizer takes."""
    from optlab.testing import get_registry

    assert "MinibatchParams" in optlab.__all__
    assert issubclass(optlab.MinibatchParams, optlab.Params)
    assert set(optlab.MinibatchParams.model_fields) == {
        "lr",
        "batch_size",
        "epochs",
        "sampling",
        "lr_decay",
    }
    assert optlab.MinibatchParams.__doc__ and "replacement" in optlab.MinibatchParams.__doc__
    registry = get_registry()
    for name in ("sgd", "adagrad", "rmsprop", "adam"):
        assert issubclass(registry.get("optimizer", name).params, optlab.MinibatchParams), name


def test_every_error_of_the_documented_hierarchy_is_public() -> None:
    """optlab._errors' docstring draws the hierarchy users catch from; TrackingUnavailable was
    drawn there but ``optlab.TrackingUnavailable`` did not exist."""
    import optlab._errors

    drawn = re.findall(r"(?:├──|└──)\s+(\w+)", optlab._errors.__doc__ or "")
    assert drawn and set(drawn) <= set(optlab.__all__)
