"""What the checks share: building a component from a record, one message template for a
fault, array and scalar checks, the gradient against finite differences."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import ValidationError

from optlab._contract.components import Array, ComponentRecord
from optlab._training.checks import probe_gradient, relative_error

#: largest relative error allowed between an analytic gradient and float64 finite differences
#: on the small, smooth problems used here (the course notes call < 1e-7 good)
GRADIENT_TOLERANCE = 1e-5

DTYPES = (np.float32, np.float64)


def fail(kind: str, name: str, fault: str) -> AssertionError:
    return AssertionError(f"{kind} '{name}': {fault}")


def build(
    component: Any, interface: type[Any], kind: str, params: Mapping[str, Any] | None
) -> tuple[Any, str]:
    """The component object and its name, from a record or an object."""
    what = _a(interface.__name__)
    if isinstance(component, ComponentRecord):
        name, given = component.name, dict(params or {})
        try:
            model = component.params(**given)
        except ValidationError as exc:
            raise fail(kind, name, f"its params refuse {given}: {_errors(exc)}") from exc
        try:
            obj = component.factory(model)
        except Exception as exc:
            raise fail(kind, name, f"factory failed with its params {given}: {exc!r}") from exc
        if not isinstance(obj, interface):
            raise fail(kind, name, f"factory returned {type(obj).__name__}, not {what}")
        return obj, name
    if params:
        raise TypeError("params overrides need a record, not a built component")
    if isinstance(component, type):  # check_loss(MyLoss): the class, not one of its objects
        name = component.__name__
        raise fail(
            kind, name, f"a class, not {what}: pass {name}() or the record your hook returns"
        )
    if not isinstance(component, interface):
        raise fail(kind, type(component).__name__, f"{type(component).__name__} is not {what}")
    return component, type(component).__name__


def _a(noun: str) -> str:
    """``noun`` with its article: ``a Loss``, ``an Optimizer``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _errors(exc: ValidationError) -> str:
    """pydantic's errors on one line: ``lr: Input should be greater than 0; ...``."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors()
    )


def check_array(kind: str, name: str, what: str, got: object, shape: Any, dtype: Any) -> Array:
    if not isinstance(got, np.ndarray):
        raise fail(kind, name, f"{what} is {type(got).__name__}, not a numpy array")
    if got.shape != tuple(shape):
        raise fail(kind, name, f"{what} has shape {got.shape}, expected {tuple(shape)}")
    if got.dtype != np.dtype(dtype):
        raise fail(kind, name, f"{what} has dtype {got.dtype}, expected {np.dtype(dtype)}")
    if not np.all(np.isfinite(got)):
        raise fail(kind, name, f"{what} has non-finite values")
    return got


def check_scalar(kind: str, name: str, what: str, got: object) -> float:
    try:
        value = float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise fail(kind, name, f"{what} is {type(got).__name__}, not a number") from None
    if not math.isfinite(value):
        raise fail(kind, name, f"{what} is not finite ({value})")
    return value


def check_gradient(
    kind: str,
    name: str,
    f: Callable[[Array], float],
    point: Array,
    analytic: Array,
) -> None:
    """Compare ``analytic`` with finite differences of ``f`` at ``point`` (float64)."""
    coords = np.array(list(np.ndindex(point.shape)))
    centered, kinks = probe_gradient(f, point, coords, kink_tolerance=1e-4)
    smooth = ~kinks
    if smooth.sum() < max(1, len(coords) // 2):
        raise fail(kind, name, f"{kinks.sum()} of {len(coords)} coordinates sit at kinks")
    a = analytic.reshape(-1)[smooth]
    errors = relative_error(a, centered[smooth])
    worst = int(np.argmax(errors))
    if errors[worst] > GRADIENT_TOLERANCE:
        where = tuple(int(i) for i in coords[smooth][worst])
        raise fail(
            kind,
            name,
            f"gradient does not match finite differences: relative error {errors[worst]:.2e} "
            f"at {where} (analytic {a[worst]:.6g}, numeric {centered[smooth][worst]:.6g}); "
            f"allowed {GRADIENT_TOLERANCE:g}",
        )
