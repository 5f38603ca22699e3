"""InputError's ``key`` (the spec key at fault): optional, kept through pickling, which is how
a worker process sends an error back."""

from __future__ import annotations

import pickle

import pytest

from optlab._errors import (
    BackendUnavailable,
    ComponentError,
    DataError,
    DivergenceError,
    InputError,
    OptlabError,
    PluginError,
    SpecError,
    SpecIssue,
    TrackingError,
    TrackingUnavailable,
)


@pytest.mark.parametrize(
    "error",
    [
        DataError("dataset 'npz': /nope.npz: no such file or directory", key="path"),
        DataError("no training examples left", key="limit.train"),
        DataError("cannot be memory-mapped", key="mmap", fix="remove data.mmap"),
        InputError("optimizer.batch_size=500 is larger than the training set", key="batch_size"),
        PluginError("unknown loss 'svn'"),
        TrackingError("store unreachable", key=None),
        BackendUnavailable("not built"),
        TrackingUnavailable("gone for 60 s"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_message_and_key_survive_pickling(error: OptlabError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error) and back.args == error.args
    assert back.key == error.key  # type: ignore[attr-defined]
    assert (back.what, back.fix) == (error.what, error.fix)  # type: ignore[attr-defined]
    assert back.exit_code == error.exit_code


@pytest.mark.parametrize(
    "error",
    [
        ComponentError("loss", "focal", "walkp (optlab-walkp 0.2.0)", "raised RuntimeError('x')"),
        DivergenceError("diverged: loss nan is not finite at step 3", step=3),
    ],
    ids=lambda e: type(e).__name__,
)
def test_run_errors_survive_pickling(error: ComponentError | DivergenceError) -> None:
    """A worker process sends a run's error back pickled: one that cannot be rebuilt broke
    the pool, failing every run of ``optlab run --jobs 2`` ('worker failed') and ending
    ``optlab check --jobs 2`` with a traceback."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error) and back.__dict__ == error.__dict__


def test_key_is_optional_and_not_in_the_message() -> None:
    assert DataError("m").key is None
    error = DataError("m", key="path")
    assert str(error) == "m" and error.args == ("m",) and error.key == "path"


def test_a_fix_is_said_after_the_message_and_kept_apart() -> None:
    """optlab says another fix where the key came from elsewhere (a variant keeping the base's
    data.mmap): it takes ``what`` and ``fix`` apart, never the message's text."""
    error = DataError("cannot be memory-mapped", key="mmap", fix="remove data.mmap")
    assert str(error) == "cannot be memory-mapped; remove data.mmap"
    assert (error.what, error.fix, error.key) == (
        "cannot be memory-mapped",
        "remove data.mmap",
        "mmap",
    )
    plain = DataError("m", key="path")
    assert (plain.what, plain.fix) == ("m", None)


def test_spec_error_pickles_from_its_issues() -> None:
    issues = [
        SpecIssue("spec.yaml", 3, 7, "loss", "unknown loss 'svn'; did you mean 'svm'?"),
        SpecIssue("spec.yaml", 9, 3, "optimizer.lr", "must be finite"),
    ]
    error = SpecError(issues)
    back = pickle.loads(pickle.dumps(error))
    assert back.issues == issues and str(back) == str(error) and back.key is None
