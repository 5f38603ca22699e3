"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kernel_sets import compiled_module
from session_cache import once_per_session
from venvs import build_wheel, optlab_source

from optlab._contract.plugin_manager import build_registry
from optlab._contract.registry import Registry
from optlab._training.data import clear_cache
from optlab_plugins.compiled._kernelset import INSTRUCTION_SETS, KernelSet


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n N`` without a ``--dist`` of one's own: work stealing (``--dist worksteal``,
    as ``make test`` asks), not xdist's default ``load``.

    A few tests take tens of seconds (they start servers, build a wheel, run the benchmark
    suite, kill sweeps): ``load`` hands them out in fixed chunks, and a worker can end up
    running the last of them alone while the other waits; a worker that runs out of tests
    under work stealing takes half of the other's queue.
    """
    given = [*config.invocation_params.args, *config.getini("addopts")]
    given += os.environ.get("PYTEST_ADDOPTS", "").split()
    if config.getoption("dist") != "load" or any(
        a.startswith("--dist") or a == "-d" for a in given
    ):
        return None
    from xdist.scheduler import WorkStealingScheduling

    return WorkStealingScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``-n N``: the tests in N parts of equal length, as work stealing hands them out
    at first (one to each worker, in order), each with its share of the modules that have a
    test marked ``slow`` or ``integration`` first, each module's tests together and in their
    order (a module's fixtures are set up once), and short tests after them.

    Those modules' tests take seconds to tens of seconds each (they start processes and
    servers, build a wheel, kill sweeps). A worker that runs out of tests takes the last half of
    another's queue: with the short tests last in every queue, it is short tests that end the
    run, not a long test that started late while the other workers have nothing left.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # set in xdist's workers
    if workers < 2:
        return
    modules: dict[Path, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)
    heavy = [
        tests
        for tests in modules.values()
        if any(t.get_closest_marker("slow") or t.get_closest_marker("integration") for t in tests)
    ]
    light = [t for tests in modules.values() if tests not in heavy for t in tests]
    parts: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for i, tests in enumerate(heavy):  # in turn, in their order
        parts[i % workers].extend(tests)
    size = len(items) // workers  # the first workers' share; the last takes the rest
    for part in parts[:-1]:
        while len(part) < size and light:
            part.append(light.pop(0))
    parts[-1].extend(light)
    items[:] = [item for part in parts for item in part]


@pytest.fixture(scope="module", autouse=True)
def _module_in_tmp_folder(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """A module's module-scoped fixtures (set up before any test's own fixtures) run in a new
    empty working folder of the module's, as its tests do in theirs (``_in_tmp_path``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp(request.module.__name__))
        yield


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own empty working folder, its ``tmp_path``: what optlab or MLflow
    write relative to the working folder (the default store ``./mlflow.db``, ``./mlruns``) goes
    there, not into the checkout. Tests find the repository's files from ``__file__``."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def registry() -> Registry:
    """A registry built from the installed plugins (the bundled datasets among them)."""
    return build_registry()[1]


@pytest.fixture(scope="session")
def optlab_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """optlab's wheel, built from a copy of the tree once per test session (tests/venvs.py);
    tests/test_install.py and tests/test_external_plugin.py install it into fresh virtual
    environments."""
    out = once_per_session(
        tmp_path_factory, "optlab-wheel", lambda out: build_wheel(optlab_source(out), out)
    )
    (wheel,) = out.glob("optlab-*.whl")
    return wheel


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new MLflow SQLite store, created and migrated by optlab once per test session (in a
    process of its own, so that this one's MLflow holds nothing open on it; in the store's
    folder, where MLflow puts the default experiment's artifact location)."""

    def make(folder: Path) -> None:
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        code = f"from optlab._tracking.store import connect; connect({uri!r})"
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=folder)

    return once_per_session(tmp_path_factory, "empty-store", make) / "mlflow.db"


@pytest.fixture
def new_store(_empty_store: Path) -> Callable[[Path], str]:
    """``new_store(path)`` puts an empty, migrated MLflow store at ``path`` and returns its
    ``sqlite:///`` URI: for tests that run into a new store and are not about creating one
    (MLflow's migrations of a new SQLite store take a few seconds each time)."""

    def place(path: Path) -> str:
        shutil.copyfile(_empty_store, path)
        return f"sqlite:///{path}"

    return place


@pytest.fixture
def fresh_data_cache() -> Iterator[None]:
    """Each test loads its data anew: the per-process dataset cache is cleared around it."""
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(params=INSTRUCTION_SETS)
def kernel(request: pytest.FixtureRequest) -> KernelSet:
    """Each instruction set's kernels of the compiled backend (``optlab_plugins.compiled``),
    where the module was built and the CPU runs them; skipped otherwise."""
    isa = request.param
    module = compiled_module()
    if module is None or isa not in module.isas:
        pytest.skip(f"no {isa} kernel here (not built, or the CPU does not run it)")
    return KernelSet.from_module(module, isa)
