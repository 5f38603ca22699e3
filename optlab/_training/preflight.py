"""Checking an experiment's runs against their data before anything is trained or logged.

Each distinct dataset is loaded once - or, for ``optlab validate``, only measured (a header or
a shape, :func:`optlab._training.data.inspect_data`) - and every run's optimizer may refuse the
problem (:meth:`optlab.Optimizer.check_problem`). Every problem is located at the spec key at fault,
in the base, variant or sweep entry the run comes from
(:meth:`optlab._spec.experiment.RunSpec.issue`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from optlab._contract.backend import forced_backend, requested_backend
from optlab._contract.optimizer import Optimizer
from optlab._contract.plugin_manager import get_registry
from optlab._contract.records import DataSummary
from optlab._contract.registry import Registry
from optlab._errors import ComponentError, DataError, InputError, SpecError, SpecIssue
from optlab._spec.experiment import RunSpec
from optlab._spec.load import sorted_issues
from optlab._training.data import PreparedData, inspect_data, load_data

__all__ = [
    "check_problem",
    "data_key",
    "data_rng",
    "own_test_ignored",
    "preflight",
    "run_streams",
]


def run_streams(seed: int) -> tuple[np.random.Generator, ...]:
    """The run's four independent random streams: data, initial weights, checks, optimizer."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))


def data_key(run: RunSpec) -> str:
    """What identifies a run's data: runs that share it share one prepared copy."""
    return json.dumps(
        [run.dataset.as_dict(), run.data.model_dump(mode="json"), run.seed], sort_keys=True
    )


def data_rng(run: RunSpec) -> np.random.Generator:
    """The generator the run's data are split and drawn with."""
    return run_streams(run.seed)[0]


def _located(run: RunSpec, component: str, exc: InputError) -> SpecIssue:
    """``exc`` at the key it names, below ``component`` (the key not repeated in front)."""
    key = ".".join(filter(None, (component, exc.key)))
    return run.issue(key, str(exc).removeprefix(f"{key}: "))


def _kept_from_the_base(run: RunSpec, key: str, message: str) -> SpecIssue | None:
    """``message`` about ``data.<key>`` (``test``, ``mmap``) where ``run``'s dataset was
    chosen apart from that key: a variant's ``data`` (or a sweep entry's ``data.name``) under
    a ``data.<key>`` the base wrote for its own dataset. Located at the variant (the base's
    line named nobody among several variants), saying where the key comes from; ``None``
    where the key was written with the dataset."""
    at = run.where.get(f"data.{key}")
    if at is None or at.path != f"data.{key}":  # written by the variant or the sweep entry
        return None
    for chosen in ("data.name", "data"):
        own = run.where.get(chosen)
        if own is not None and own.path != chosen:  # the variant's or a sweep entry's
            where = f"{at.file}:{at.line}:{at.column}{at.message}"
            fix = (
                "set mmap: false in its data, or remove data.mmap from the base's"
                if key == "mmap"
                else "remove it from the base's data, or write it only for the datasets "
                "that draw their test split"
            )
            text = f"{message}; it keeps data.{key} from the base ({where}): {fix}"
            return SpecIssue(own.file, own.line, own.column, own.path, text)
    return None


def own_test_ignored(dataset: str) -> tuple[str, str]:
    """What is wrong and what to do about ``data.test`` written for a dataset with its own
    test split, which is the test set whatever ``data.test`` says (the setting would have no
    effect)."""
    return (
        f"dataset '{dataset}' has its own test split, the test set whatever data.test says",
        "remove data.test (to draw the test split from the training data instead, leave the "
        "test files or arrays out of the dataset)",
    )


def check_problem(
    run: RunSpec, optimizer: Optimizer, summary: DataSummary, registry: Registry
) -> None:
    """Ask ``run``'s optimizer whether it takes the problem of ``summary``'s sizes.

    Raises
    ------
    InputError
        The optimizer refuses the problem (the user's to change: a ``batch_size``, ...).
    ComponentError
        Its ``check_problem`` raised anything else: a fault of the plugin, named with its
        distribution and version, the method and the exception.
    """
    try:
        optimizer.check_problem(summary.n_train, summary.n_features, summary.n_classes)
    except InputError:
        raise
    except Exception as exc:
        label = registry.label(run.optimizer.record.provider)
        fault = f"check_problem raised {exc!r}"
        raise ComponentError("optimizer", run.optimizer.name, label, fault) from exc


def preflight(
    runs: Sequence[RunSpec],
    *,
    load: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict[str, PreparedData]:
    """Check every run against its data before anything is trained or logged.

    Each distinct dataset is loaded once (or, with ``load=False``, only measured: a header or
    a shape, see :func:`optlab._training.data.inspect_data`), and every run's optimizer may
    refuse the problem (:meth:`optlab.Optimizer.check_problem`). Returns the prepared data by
    :func:`data_key`, for :func:`run_all` to reuse (empty with ``load=False``).

    An optimizer whose factory or ``check_problem`` raises anything but an InputError is a
    fault of its plugin, not of the spec: its run fails when it starts (recorded FAILED,
    naming the plugin) and the others run. ``warn`` (if given) hears of a ``check_problem``
    fault first, as ``RUN: message``.

    Raises
    ------
    SpecError
        Every problem found, each located at the spec key at fault (``data.path``,
        ``optimizer.batch_size``) in the base, variant or sweep entry the run comes from;
        also a ``data.test`` written for a dataset with its own test split (it would have no
        effect).
    InputError
        The backend asked for is unknown or cannot run here.
    """
    registry = get_registry()
    for setting in dict.fromkeys(requested_backend(run.backend) for run in runs):
        forced_backend(setting, registry)
    prepared: dict[str, PreparedData] = {}
    sizes: dict[str, DataSummary | None] = {}
    refused: dict[str, DataError] = {}
    issues: list[SpecIssue] = []
    for run in runs:
        key = data_key(run)
        if key not in sizes:
            try:
                if load:
                    prepared[key] = load_data(run.dataset, run.data, data_rng(run))
                    sizes[key] = prepared[key].summary
                else:
                    sizes[key] = inspect_data(run.dataset, run.data, data_rng(run))
            except DataError as exc:
                sizes[key], refused[key] = None, exc
        summary = sizes[key]
        if summary is None:  # each run's (the same place is said once): two variants may
            fault = refused[key]  # keep the base's data.mmap for the same dataset
            kept = _kept_from_the_base(run, "mmap", fault.what) if fault.key == "mmap" else None
            issues.append(kept or _located(run, "data", fault))
            continue
        if summary.own_test and "test" in run.data.model_fields_set:
            what, fix = own_test_ignored(summary.name)
            kept = _kept_from_the_base(run, "test", what)
            issues.append(kept or run.issue("data.test", f"{what}; {fix}"))
        try:
            optimizer = run.optimizer.build()
            if isinstance(optimizer, Optimizer):  # else its run fails as it starts, naming it
                check_problem(run, optimizer, summary, registry)
        except InputError as exc:
            issues.append(_located(run, "optimizer", exc))
        except ComponentError as exc:  # the plugin's fault: its run fails as it starts
            if warn is not None:
                warn(f"{run.name}: {exc}")
        except Exception:  # the factory raised: the run fails as it starts, naming it
            pass
    if issues:
        raise SpecError(sorted_issues(issues, issues[0].file))
    return prepared
