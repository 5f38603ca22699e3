"""One run: data -> objective -> sanity checks -> optimizer -> evaluation.

:func:`execute` never raises for a failure of the run itself: it returns a
:class:`~optlab._contract.records.RunResult` with status FAILED or KILLED and whatever was measured,
after firing ``optlab_run_finished``. Input errors found before the run starts (bad data) raise.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from optlab._contract.backend import requested_backend, select_backend
from optlab._contract.blas_threads import blas_threads
from optlab._contract.components import Array, Loss, Regularizer
from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
from optlab._contract.optimizer import Optimizer
from optlab._contract.plugin_manager import get_registry
from optlab._contract.records import (
    PLANE_POINTS,
    Landscape,
    RunInfo,
    RunResult,
)
from optlab._contract.registry import Registry
from optlab._errors import ComponentError, InputError, RunError, RunInterrupted
from optlab._spec.experiment import ComponentSpec, RunSpec
from optlab._training.checks import WARNING, run_checks
from optlab._training.data import PreparedData, load_data
from optlab._training.describe import describe_run, provider_label
from optlab._training.landscape import loss_landscape
from optlab._training.monitor import StopFlag, TrainingMonitor, stop_flag
from optlab._training.preflight import check_problem, run_streams

__all__ = [
    "Observer",
    "build_objective",
    "execute",
    "initial_weights",
    "run_landscape",
    "run_streams",
]

#: typical size of the initial scores: "W is small, so all scores are about 0" (the lecture)
INIT_SCALE = 1e-3
#: rows of X used to measure the data's scale for the initial weights
_SCALE_ROWS = 1024


class Observer(Protocol):
    """The three observer hooks (``pm.hook`` satisfies this)."""

    def optlab_run_started(self, *, run: RunInfo) -> Any: ...
    def optlab_epoch_ended(self, *, run: RunInfo, report: Any) -> Any: ...
    def optlab_run_finished(
        self, *, run: RunInfo, result: RunResult, error: BaseException | None
    ) -> Any: ...


def _build(spec: ComponentSpec, registry: Registry | None, expected: type) -> Any:
    """Call a component's factory once; a fault or a wrong type names the plugin."""
    provider = provider_label(spec, registry)
    try:
        obj = spec.build()
    except InputError:
        raise
    except Exception as exc:
        raise ComponentError(spec.kind, spec.name, provider, f"factory raised {exc!r}") from exc
    if not isinstance(obj, expected):
        raise ComponentError(
            spec.kind,
            spec.name,
            provider,
            f"factory returned {type(obj).__name__}, expected a subclass of {expected.__name__}",
        )
    return obj


def build_objective(
    run: RunSpec, data: PreparedData, registry: Registry | None, rng: np.random.Generator
) -> tuple[Objective, Optimizer]:
    """Resolve a run's components once and build its objective over the training split.

    Returns
    -------
    objective : Objective
        Over ``data.X_train`` (N, D); ``rng`` drives input perturbations (dropout).
    optimizer : Optimizer
    """
    # the process's, not none: messages name each provider with its distribution and version
    registry = registry if registry is not None else get_registry()
    loss = BoundLoss(
        _build(run.loss, registry, Loss), run.loss.name, provider_label(run.loss, registry)
    )
    regs = [
        BoundRegularizer(
            _build(spec, registry, Regularizer), spec.name, provider_label(spec, registry)
        )
        for spec in run.regularizers
    ]
    optimizer = _build(run.optimizer, registry, Optimizer)
    summary = data.summary
    check_problem(run, optimizer, summary, registry)
    backend = select_backend(
        requested_backend(run.backend),
        registry,
        data.X_train,
        data.y_train,
        summary.n_classes,
        loss.impl,
    )
    objective = Objective(
        data.X_train,
        data.y_train,
        summary.n_classes,
        loss,
        regs,
        has_bias=summary.has_bias,
        rng=rng,
        backend=backend,
    )
    return objective, optimizer


def initial_weights(objective: Objective, rng: np.random.Generator) -> Array:
    """Small random ``W0`` (D, C) in the objective's dtype: all scores start near 0.

    Entries are ``N(0, s^2)`` with ``s = INIT_SCALE / ||x||_rms``, where ``||x||_rms`` is the
    root-mean-square norm of (up to the first 1,024) training rows, so the initial scores
    have a spread of about ``INIT_SCALE`` whatever the data's scale: on digits as on raw
    CIFAR-10 pixels the initial losses are then near ``C - 1`` and ``log C``.
    """
    rows = objective.X[:_SCALE_ROWS]
    norm = float(np.sqrt(np.mean(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))))
    scale = INIT_SCALE / norm if norm > 0 and np.isfinite(norm) else INIT_SCALE
    return (scale * rng.standard_normal(objective.shape)).astype(objective.dtype)


def _components_line(run: RunSpec) -> str:
    def one(spec: ComponentSpec) -> str:
        params = ", ".join(f"{k}={v}" for k, v in spec.params.model_dump().items())
        return f"{spec.name}({params})" if params else spec.name

    regs = " + ".join(one(r) for r in run.regularizers) or "none"
    return f"seed={run.seed} loss={one(run.loss)} regularizer={regs} optimizer={one(run.optimizer)}"


def _evaluation_lines(result: RunResult) -> list[str]:
    lines = []
    for e in result.evaluations:
        val = "" if e.val_accuracy is None else f" val_accuracy={e.val_accuracy:.4f}"
        full = "" if e.train_loss is None else f" train_loss={e.train_loss:.6g}"
        lines.append(
            f"epoch {e.epoch:g}: examples={e.examples} step_loss={e.loss:.6g}{full} "
            f"train_accuracy={e.train_accuracy:.4f}{val}"
        )
    return lines


def _final_line(result: RunResult) -> str:
    metrics = " ".join(f"{k}={v:.6g}" for k, v in sorted(result.metrics.items()))
    if result.status == "FINISHED":
        return f"{result.status}: {metrics}"
    return f"{result.status}: {result.error} ({metrics})"


def plane_points(data: PreparedData) -> tuple[Array, Array] | None:
    """The training points of two-dimensional data (two features besides the bias): ``X``
    (n, 2) without the bias column and ``y`` (n,), at most
    :data:`~optlab._contract.records.PLANE_POINTS` of them (evenly spaced); ``None`` for other
    data."""
    summary = data.summary
    if summary.n_features - int(summary.has_bias) != 2:
        return None
    X, y = data.X_train, data.y_train
    step = max(1, -(-X.shape[0] // PLANE_POINTS))
    return np.array(X[::step, :2], dtype=np.float64), np.array(y[::step])


def confusion_matrix(y_true: Array, y_pred: Array, n_classes: int) -> Array:
    """(C, C) counts: row = true class, column = predicted class."""
    flat = y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def run_landscape(
    run: RunSpec,
    objective: Objective,
    W: Array,
    console: list[str],
    warn: Callable[[str], None],
) -> Landscape | None:
    """The loss landscape the spec asks for (``run.landscape``) through the learned ``W``:
    :func:`optlab._training.landscape.loss_landscape` with directions drawn from
    ``default_rng(run.seed)``, as ``optlab landscape --seed SEED`` draws them. A loss that
    fails on the slices only warns (``None``): the run has trained."""
    options = run.landscape
    if options is None:
        return None
    start = time.perf_counter()
    try:
        slices = loss_landscape(
            objective,
            W,
            np.random.default_rng(run.seed),
            span=options.span,
            points=options.points,
            grid=options.grid,
        )
    except (ComponentError, ValueError) as exc:
        warn(f"no loss landscape: {exc}")
        return None
    console.append(
        f"landscape: {options.points} points along a line, {options.grid} x {options.grid} "
        f"over a plane, {time.perf_counter() - start:.3g} s"
    )
    return slices


def execute(
    run: RunSpec,
    *,
    experiment: str,
    observer: Observer,
    registry: Registry | None = None,
    base_tags: Mapping[str, str] | None = None,
    data: PreparedData | None = None,
    flag: StopFlag = stop_flag,
    log: Callable[[str], None] | None = None,
) -> tuple[RunInfo, RunResult]:
    """Train and evaluate one run; report it to ``observer``.

    Parameters
    ----------
    run : RunSpec
    experiment : str
        The experiment (spec) name.
    observer : Observer
        Receives run started / epoch ended / run finished (``pm.hook``).
    registry : Registry, optional
        For provider names and versions in tags and messages (default: the process's).
    base_tags : mapping, optional
        Tags shared by every run of the invocation (spec hash, git commit).
    data : PreparedData, optional
        Already prepared data (otherwise loaded from ``run.dataset``).
    log : callable(str), optional
        Receives warnings (e.g. a failed sanity check under the ``warn`` policy).

    Returns
    -------
    info : RunInfo
    result : RunResult
        Status FINISHED, FAILED or KILLED; metrics measured before a failure are kept.
    """
    data_rng, init_rng, check_rng, opt_rng = run_streams(run.seed)
    registry = registry if registry is not None else get_registry()
    if data is None:
        data = load_data(run.dataset, run.data, data_rng)
    built: tuple[Objective, Optimizer] | ComponentError | InputError
    try:
        built = build_objective(run, data, registry, opt_rng)
    except (ComponentError, InputError) as exc:  # a factory raised: the run fails, not the rest
        built = exc
    backend = None if isinstance(built, Exception) else built[0].backend.label
    summary = data.summary
    info = describe_run(run, data, experiment, registry, base_tags or {}, backend)
    result = RunResult(name=run.name, status="FINISHED", mean=data.mean, std=data.std)
    console = result.console
    console.append(f"run {run.name}: {_components_line(run)}")
    console.append(
        f"data {summary.name}: {summary.n_train} train, {summary.n_val} val, "
        f"{summary.n_test} test; D={summary.n_features}, C={summary.n_classes}, {summary.dtype}"
    )

    def warn(line: str) -> None:
        console.append(WARNING + line)
        if log is not None:
            log(f"{run.name}: {WARNING}{line}")

    if (absent := _absent_classes(data, limited=run.data.limit is not None)) is not None:
        warn(absent)
    if not isinstance(built, Exception) and (idle := _idle_perturbations(run, built)):
        warn(idle)
    error: BaseException | None = None
    monitor: TrainingMonitor | None = None
    plane = plane_points(data)
    start = time.perf_counter()
    info = dataclasses.replace(info, started_at=time.time())
    try:
        # a diverging run's overflows are reported once, as divergence (the monitor), not as
        # numpy's RuntimeWarnings with source paths
        with np.errstate(all="ignore"):
            observer.optlab_run_started(run=info)
            if isinstance(built, Exception):
                raise built
            objective, optimizer = built
            W0 = initial_weights(objective, init_rng)
            initial = _sanity_checks(run, objective, W0, check_rng, result, warn)
            # finding the BLAS libraries, once a process (ms): not training time, so before
            # the monitor starts the run's clock (the steps' times in the figures)
            blas_threads()
            monitor = TrainingMonitor(
                objective,
                data.X_val,
                data.y_val,
                info,
                observer.optlab_epoch_ended,
                initial_loss=initial,
                divergence_factor=run.checks.divergence_factor,
                flag=flag,
                snapshots=plane is not None,
            )
            if plane is not None:  # the regions before training, for the figure
                monitor.snapshots.append((0.0, np.array(W0, copy=True)))
            if flag.reason is not None:  # during the checks: not a step was trained
                raise RunInterrupted(f"interrupted by {flag.reason} before training started")
            start = time.perf_counter()
            W = _minimize(run, optimizer, objective, W0, opt_rng, monitor, registry)
            result.metrics["train_time_s"] = _trained_for(start, monitor)
            result.W = W
            _test(run, objective, W, data, result, warn)
    except (RunError, InputError) as exc:
        error = exc
        result.status = "KILLED" if isinstance(exc, RunInterrupted) else "FAILED"
        result.error = str(exc)
    except KeyboardInterrupt as exc:
        error = exc
        result.status, result.error = "KILLED", "interrupted (KeyboardInterrupt)"
    finally:
        result.metrics.setdefault("train_time_s", _trained_for(start, monitor))
        if monitor is not None:
            _measured(monitor, plane, result)
        console.extend(_evaluation_lines(result))
        console.append(_final_line(result))
        result.finished_at = time.time()
        try:
            observer.optlab_run_finished(run=info, result=result, error=error)
        except RunError as exc:
            # an observer failed after the run ended (a third-party plugin, or the tracking
            # store gone): observers before it saw the run's own status; the invocation
            # reports this failure and exits 1; a Ctrl-C while a write waited for the store
            # is the interrupt it is
            result.status = "KILLED" if isinstance(exc, RunInterrupted) else "FAILED"
            result.error = str(exc)
    if isinstance(error, KeyboardInterrupt):
        raise error
    return info, result


def _absent_classes(data: PreparedData, limited: bool) -> str | None:
    """A warning naming the classes no training example has (labels numbered from 1 make a
    class 0 that the run still learns a template and a confusion row for), or ``None``;
    ``limited``: the spec sets ``data.limit`` (which may have left them out)."""
    counts = np.bincount(data.y_train, minlength=data.summary.n_classes)
    absent = np.flatnonzero(counts == 0)
    if not absent.size:
        return None
    names = data.summary.classes or tuple(str(k) for k in range(counts.size))
    shown = ", ".join(repr(names[k]) for k in absent[:5]) + (", ..." if absent.size > 5 else "")
    if absent.tolist() == [0] and names[0] == "0":
        hint = "labels numbered from 1? integer labels are class indices 0..C-1"
    elif limited:
        hint = "a larger data.limit, or more examples of them, would train them"
    elif np.isin(absent, np.concatenate([data.y_val, data.y_test])).all():
        hint = "only the validation or test split has examples of them; training needs some"
    else:  # labels 0..4 and 15..19 make ten classes of no example
        hint = (
            "no example has some of these labels: integer labels are class indices 0..C-1, "
            "renumber them without gaps"
        )
    verb = "has" if absent.size == 1 else "have"
    return f"{absent.size} of {counts.size} classes {verb} no training example ({shown}); {hint}"


def _idle_perturbations(run: RunSpec, built: tuple[Objective, Optimizer]) -> str:
    """A warning naming the regularizers that perturb the inputs (dropout) when the optimizer
    takes no gradient steps, the only ones they change; else ``""``."""
    objective, optimizer = built
    if optimizer.takes_gradient_steps:
        return ""
    names = [r.name for r in objective.regularizers if r.impl.has_perturbation]
    if not names:
        return ""
    which = ", ".join(f"'{name}'" for name in names)
    subject = (
        f"regularizer {which} has no effect with optimizer '{run.optimizer.name}': it perturbs"
        if len(names) == 1
        else f"regularizers {which} have no effect with optimizer '{run.optimizer.name}': they "
        "perturb"
    )
    return (
        f"{subject} only the examples of gradient steps, and '{run.optimizer.name}' takes none "
        "(it compares the unperturbed training loss); remove it, or train with gd or sgd"
    )


def _sanity_checks(
    run: RunSpec,
    objective: Objective,
    W0: Array,
    rng: np.random.Generator,
    result: RunResult,
    warn: Callable[[str], None],
) -> float:
    """Run the spec's sanity checks at ``W0`` into ``result``; return the objective at ``W0``
    (the check's data loss plus the penalty, where the check measured it)."""
    checks = run_checks(objective, W0, run.checks, rng)
    result.metrics.update(checks.metrics())
    result.console.extend(f"check: {line}" for line in checks.lines())
    for line in checks.warnings():
        warn(line.removeprefix(WARNING))  # said once, by warn
    if checks.initial_loss is not None:  # the check measured the data loss at W0 already
        reg, _ = objective.reg_value_and_grad(W0, with_grad=False)
        return checks.initial_loss.value + reg
    return objective.value(W0).total


def _minimize(
    run: RunSpec,
    optimizer: Optimizer,
    objective: Objective,
    W0: Array,
    rng: np.random.Generator,
    monitor: TrainingMonitor,
    registry: Registry,
) -> Array:
    """The optimizer's weights (D, C), checked (shape, dtype, and at least one evaluation
    point reported); a fault of the optimizer plugin is a :class:`ComponentError` that names
    it."""

    def fault(what: str) -> ComponentError:
        label = provider_label(run.optimizer, registry)
        return ComponentError("optimizer", run.optimizer.name, label, what)

    try:
        W = optimizer.minimize(objective, W0, rng, monitor)
    except (RunError, InputError):
        raise
    except Exception as exc:
        raise fault(f"raised {exc!r}") from exc
    if not isinstance(W, np.ndarray) or W.shape != objective.shape:
        shape = getattr(W, "shape", None)
        raise fault(f"returned weights of shape {shape}, expected {objective.shape}")
    if W.dtype != objective.dtype:
        raise fault(f"returned weights of dtype {W.dtype}, expected {objective.dtype}")
    if not monitor.evaluations:  # the run would have no accuracy, and no curve
        raise fault("returned without calling monitor.evaluate; call it at least once, at the end")
    return W


def _test(
    run: RunSpec,
    objective: Objective,
    W: Array,
    data: PreparedData,
    result: RunResult,
    warn: Callable[[str], None],
) -> None:
    """Test accuracy and confusion matrix of the trained ``W``, and its loss landscape when
    the spec asks for it, into ``result``."""
    if data.X_test.shape[0]:
        pred = objective.predict(W, data.X_test)
        result.metrics["test_accuracy"] = float(np.mean(pred == data.y_test))
        result.confusion = confusion_matrix(data.y_test, pred, data.summary.n_classes)
    if run.landscape is not None:
        result.landscape = run_landscape(run, objective, W, result.console, warn)


def _trained_for(start: float, monitor: TrainingMonitor | None) -> float:
    """Seconds since ``start`` (``time.perf_counter``) on the run's clock: without the time the
    observers took at evaluation points (a tracking server that went away is waited for
    there)."""
    return time.perf_counter() - start - (monitor.paused if monitor is not None else 0.0)


def _measured(
    monitor: TrainingMonitor, plane: tuple[Array, Array] | None, result: RunResult
) -> None:
    """What the monitor recorded - steps, evaluations, snapshots of the plane - and the last
    evaluation's metrics, into ``result`` (also for a run that failed or was stopped)."""
    monitor.flush()
    result.steps = monitor.history
    result.evaluations = monitor.evaluations
    if plane is not None and monitor.snapshots:
        result.snapshots, result.plane = monitor.snapshots, plane
    if result.evaluations:
        last = result.evaluations[-1]
        result.metrics["train_accuracy"] = last.train_accuracy
        if last.train_loss is not None:  # the full objective, at the last evaluation
            result.metrics["train_loss"] = last.train_loss
        if last.val_accuracy is not None:
            result.metrics["val_accuracy"] = last.val_accuracy
        result.metrics["best_val_accuracy"] = monitor.best_val_accuracy
