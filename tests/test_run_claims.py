"""Run claims (issue 22): of the invocations alive on one store, exactly one trains a run.

Real ``optlab run SPEC --resume`` processes on one SQLite store and on a real ``mlflow
server``; claims made at the same moment by threads (the race itself); a claim whose holder
was killed (SIGKILL), or whose heartbeat is old, is taken over; a fresh one is respected.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow_server import MlflowServer, mlflow_server  # noqa: F401 (fixture)

from optlab._errors import TrackingError
from optlab._tracking import Tracker
from optlab._tracking.claims import (
    CLAIM_PREFIX,
    CLAIMED,
    HEARTBEAT_TAG,
    RELEASED,
    STALE_ENV,
    RunClaims,
    heartbeat_every,
    stale_after,
)
from optlab._tracking.tracker import HOST_TAG, PARENT_TAG, PID_TAG, ROLE_TAG, RUN_KEY_TAG

pytestmark = pytest.mark.integration

#: four runs of about half a second each
SPEC = """\
name: {name}
data: {{name: blobs, n_samples: 200}}
loss: {{name: softmax}}
optimizer: {{name: sgd, lr: 0.05, batch_size: 20, epochs: 300}}
checks: {{gradient: off}}
tracking: {{figures: false}}
variants:
  a: {{optimizer: {{name: sgd, lr: 0.05, batch_size: 20, epochs: {a_epochs}}}}}
  b: {{loss: {{name: svm}}}}
  c: {{optimizer: {{name: sgd, lr: 0.01, batch_size: 20, epochs: 300}}}}
  d: {{optimizer: {{name: sgd, lr: 0.02, batch_size: 20, epochs: 300}}}}
"""
RUNS = {"a", "b", "c", "d"}


def write_spec(folder: Path, name: str, a_epochs: int = 300) -> Path:
    spec = folder / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, a_epochs=a_epochs))
    return spec


def start(spec: Path, uri: str, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(
        [sys.executable, "-m", "optlab", "run", str(spec), "--tracking-uri", uri, *extra],
        cwd=spec.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[list[dict[str, Any]], str]:
    """The ``--json`` rows of a finished invocation, and its stderr."""
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return json.loads(out), err


def client_of(uri: str) -> Any:
    from optlab._tracking.store import connect

    return connect(uri)


def runs_of(uri: str, experiment: str, role: str = "run") -> list[Any]:
    """The runs (or, with ``role="invocation"``, the parent runs) of ``experiment``."""
    client = client_of(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return list(
        client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = '{role}'", max_results=1000
        )
    )


def claim_tags(run: Any) -> dict[str, str]:
    """A parent run's claim tags and heartbeat."""
    return {
        k: v for k, v in run.data.tags.items() if k.startswith(CLAIM_PREFIX) or k == HEARTBEAT_TAG
    }


def finished_per_run(uri: str, experiment: str) -> Counter[str]:
    return Counter(r.info.run_name for r in runs_of(uri, experiment) if r.info.status == "FINISHED")


def two_resumes_at_once(tmp_path: Path, uri: str, name: str, *second: str) -> None:
    """Two ``optlab run SPEC --resume`` started together (the second with ``second`` as
    further arguments) train each run once between them."""
    spec = write_spec(tmp_path, name)
    procs = [start(spec, uri, "--resume", "--json", *extra) for extra in ((), second)]
    (rows1, err1), (rows2, err2) = (finish(p) for p in procs)
    # every run is in the rows of one of them at least: trained, or (an invocation that
    # started late) reused as FINISHED by the other, so the rows do not say who trained it
    assert {row["name"] for row in rows1 + rows2} == RUNS, (err1, err2)
    # the store does: each run trained once between them (one child run each, FINISHED)
    started = Counter(r.info.run_name for r in runs_of(uri, name))
    assert started == dict.fromkeys(RUNS, 1), (err1, err2)
    assert finished_per_run(uri, name) == dict.fromkeys(RUNS, 1)
    for err in (err1, err2):  # a run left to the other is said so, on one line
        for line in err.splitlines():
            if "not run here" in line:
                assert line.split(":")[0] in RUNS and "another invocation" in line


@pytest.mark.slow
def test_two_resumes_at_once_train_each_run_once_sqlite(
    tmp_path: Path, new_store: Callable[[Path], str]
) -> None:
    # one of them with two workers: its runs are claimed together, before any is submitted
    uri = new_store(tmp_path / "mlflow.db")
    two_resumes_at_once(tmp_path, uri, "claims_sqlite", "--jobs", "2")


@pytest.mark.slow
def test_two_resumes_at_once_train_each_run_once_server(
    tmp_path: Path,
    mlflow_server: MlflowServer,  # noqa: F811
) -> None:
    two_resumes_at_once(tmp_path, mlflow_server.url, "claims_server")


# ---------------------------------------------------------------------- the race, in threads
@pytest.fixture(params=["sqlite", "server"])
def uri(request: pytest.FixtureRequest, tmp_path: Path, new_store: Callable[[Path], str]) -> str:
    if request.param == "sqlite":
        return new_store(tmp_path / "mlflow.db")
    server: MlflowServer = request.getfixturevalue("mlflow_server")
    return server.url


def test_claims_made_at_the_same_moment_have_exactly_one_winner(uri: str) -> None:
    """Four invocations claim the same runs at the same moment (a barrier), three times:
    each run is won by exactly one of them; the others are told who has it."""
    contenders = 4
    experiment = f"race-{time.time_ns()}"
    trackers = [Tracker(uri, experiment, plots=False) for _ in range(contenders)]
    barrier = threading.Barrier(contenders, timeout=120)
    won: list[list[set[str]]] = [[] for _ in range(contenders)]
    parents: list[str] = []
    holders: dict[str, set[str]] = {}
    errors: list[BaseException] = []

    def contender(i: int) -> None:
        try:
            with (
                trackers[i].parent(experiment) as parent_id,
                RunClaims(trackers[i], parent_id, since=None) as claims,
            ):
                parents.append(parent_id)
                for round_ in range(3):
                    runs = {f"key{round_}-{k}": f"run{k}" for k in range(3)}
                    barrier.wait()
                    taken = claims.acquire(runs)
                    won[i].append(set(runs) - set(taken))
                    for key, t in taken.items():
                        holders.setdefault(key, set()).add(t.holder.run_id)
                    barrier.wait()  # every claim is held until all have decided
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    for round_ in range(3):
        for k in range(3):
            key = f"key{round_}-{k}"
            winners = [i for i in range(contenders) if key in won[i][round_]]
            assert len(winners) == 1, (key, winners)
            # the others name a contender as the one that has the run
            assert holders[key] and holders[key] <= set(parents)


# ---------------------------------------------------------------------- stale and fresh claims
def keys_of(spec: Path) -> dict[str, str]:
    """Run name -> run key (``optlab.run_key``), as an invocation computes them."""
    from optlab._spec.load import load_experiment
    from optlab._training.describe import run_key
    from optlab._training.preflight import data_key, preflight

    runs = load_experiment(spec).runs
    prepared = preflight(runs)
    return {
        run.name: run_key(run.name, run.resolved, prepared[data_key(run)].summary.sha256)
        for run in runs
    }


def fake_holder(
    uri: str, experiment: str, key: str, name: str, heartbeat: float
) -> tuple[str, str]:
    """An invocation of another host that claims run ``key`` and trains it (RUNNING): its
    parent run id and the run's id."""
    from optlab._tracking.store import ensure_experiment

    client = client_of(uri)
    exp_id = ensure_experiment(client, experiment, uri)
    owner = {HOST_TAG: "elsewhere.example", PID_TAG: "4242"}
    parent = client.create_run(
        exp_id,
        run_name=experiment,
        tags={
            ROLE_TAG: "invocation",
            **owner,
            HEARTBEAT_TAG: f"{heartbeat:.3f}",
            CLAIM_PREFIX + key: CLAIMED + name,
        },
    )
    child = client.create_run(
        exp_id,
        run_name=name,
        tags={ROLE_TAG: "run", RUN_KEY_TAG: key, PARENT_TAG: parent.info.run_id, **owner},
    )
    return parent.info.run_id, child.info.run_id


def invoke(spec: Path, uri: str, *extra: str) -> Any:
    from typer.testing import CliRunner

    from optlab._cli import app

    return CliRunner().invoke(app, ["run", str(spec), "--tracking-uri", uri, *extra])


def test_a_fresh_claim_is_respected_and_a_stale_one_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Callable[[Path], str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(STALE_ENV, "20")
    uri = new_store(tmp_path / "mlflow.db")
    spec = write_spec(tmp_path, "fresh_stale")
    key_b = keys_of(spec)["b"]
    parent_id, child_id = fake_holder(uri, "fresh_stale", key_b, "b", heartbeat=time.time())

    # fresh: b is left to the other invocation, in one line, and the exit status is 0
    first = invoke(spec, uri, "--resume")
    assert first.exit_code == 0, (first.stdout, first.stderr)
    holder = f"pid 4242 on elsewhere.example, MLflow run {parent_id}"
    line = f"b: not run here: another invocation is training it ({holder})"
    assert line in first.stderr.splitlines()
    assert f"1 run(s) not run here: another invocation is training them ({holder}): b" in (
        first.stdout.splitlines()
    )
    assert finished_per_run(uri, "fresh_stale") == dict.fromkeys(RUNS - {"b"}, 1)
    client = client_of(uri)
    assert client.get_run(child_id).info.status == "RUNNING"

    # stale (no heartbeat for longer than OPTLAB_CLAIM_STALE_S): taken over
    client.set_tag(parent_id, HEARTBEAT_TAG, f"{time.time() - 45:.3f}")
    second = invoke(spec, uri, "--resume")
    assert second.exit_code == 0, (second.stdout, second.stderr)
    taken = [line for line in second.stderr.splitlines() if line.startswith("b: taken over")]
    assert len(taken) == 1 and holder in taken[0] and "no heartbeat for 4" in taken[0]
    assert finished_per_run(uri, "fresh_stale") == dict.fromkeys(RUNS, 1)
    for run_id in (parent_id, child_id):  # what the stale invocation left ends as KILLED
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert "taken over by invocation" in run.data.tags["optlab.status_reason"]
    # the two invocations here have ended: their claim tags and heartbeats are gone
    ours = [r for r in runs_of(uri, "fresh_stale", "invocation") if r.info.run_id != parent_id]
    assert [r.info.status for r in ours] == ["FINISHED", "FINISHED"]
    assert [claim_tags(r) for r in ours] == [{}, {}]


def test_an_ended_invocation_deletes_its_claim_tags_and_heartbeat(
    tmp_path: Path, new_store: Callable[[Path], str]
) -> None:
    """While the invocation goes on, a release overwrites its claim tag; once it has ended,
    every claim tag it wrote (released, released later, still held) and its heartbeat are
    deleted from its parent run, also one that is gone already."""
    uri = new_store(tmp_path / "mlflow.db")
    tracker = Tracker(uri, "ended", plots=False)
    client = client_of(uri)
    with (
        tracker.parent("ended") as parent_id,
        RunClaims(tracker, parent_id, since=None) as claims,
    ):
        assert claims.acquire({"k1": "a", "k2": "b", "k3": "c", "k4": "d"}) == {}
        claims.release("k1")
        claims.release("k2", later=True)
        tags = claim_tags(client.get_run(parent_id))
        assert tags.pop(HEARTBEAT_TAG)
        assert tags == {
            CLAIM_PREFIX + "k1": RELEASED + "a",
            CLAIM_PREFIX + "k2": CLAIMED + "b",  # written with the next claim, or at the end
            CLAIM_PREFIX + "k3": CLAIMED + "c",
            CLAIM_PREFIX + "k4": CLAIMED + "d",
        }
        client.delete_tag(parent_id, CLAIM_PREFIX + "k3")  # as if a retried delete
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert claim_tags(parent) == {}
    assert parent.data.tags[HOST_TAG] and parent.data.tags[PID_TAG]  # who ran it stays


@pytest.mark.slow
def test_a_holder_killed_with_sigkill_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Callable[[Path], str]
) -> None:
    """A plain ``optlab run`` trains run a (for ever); a ``--resume`` started meanwhile leaves
    a to it and trains the rest; once the first is killed (SIGKILL), its claim is stale at
    once (its process is gone) and the next claim of a takes it over."""
    monkeypatch.chdir(tmp_path)
    uri = new_store(tmp_path / "mlflow.db")
    name = "killed_holder"
    spec = write_spec(tmp_path, name, a_epochs=1_000_000)
    first = start(spec, uri)
    try:
        deadline = time.monotonic() + 120
        while not [r for r in runs_of(uri, name) if r.info.run_name == "a"]:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "run a never started"
            time.sleep(0.2)
        resumed = invoke(spec, uri, "--resume", "--json")  # in this process: quicker
        assert resumed.exit_code == 0, resumed.stderr
        assert sorted(row["name"] for row in json.loads(resumed.stdout)) == ["b", "c", "d"]
        line = next(line for line in resumed.stderr.splitlines() if line.startswith("a: "))
        assert line.startswith("a: not run here: another invocation is training it")
        assert f"(pid {first.pid} on " in line
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)

    (running,) = [r for r in runs_of(uri, name) if r.info.run_name == "a"]
    assert running.info.status == "RUNNING"
    first_parent = running.data.tags[PARENT_TAG]
    tracker = Tracker(uri, name, plots=False)
    logged: list[str] = []
    with (
        tracker.parent(name) as parent_id,
        RunClaims(tracker, parent_id, since=None, log=logged.append) as claims,
    ):
        assert claims.acquire({running.data.tags[RUN_KEY_TAG]: "a"}) == {}  # won
    assert len(logged) == 1 and "its process is gone" in logged[0]
    client = client_of(uri)
    for run_id in (running.info.run_id, first_parent):
        assert client.get_run(run_id).info.status == "KILLED"
    assert finished_per_run(uri, name) == {"b": 1, "c": 1, "d": 1}


def test_the_staleness_interval_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(STALE_ENV, raising=False)
    assert stale_after() == 60.0 and heartbeat_every(60.0) == 5.0
    monkeypatch.setenv(STALE_ENV, "3")
    assert stale_after() == 3.0 and heartbeat_every(3.0) == 0.5
    assert stale_after(7) == 7.0
    for bad in ("soon", "0", "-1", "inf"):
        monkeypatch.setenv(STALE_ENV, bad)
        with pytest.raises(TrackingError, match=f"{STALE_ENV}: '{bad}' is not a number"):
            stale_after()


def test_compare_shows_the_runs_left_to_another_invocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Callable[[Path], str]
) -> None:
    """Two invocations of a spec at once: the one that ends first, while the other still
    trains a run it left to it, is the latest invocation; `optlab compare` shows that run too
    (RUNNING, then as it ended), not a plan with a run missing."""
    from typer.testing import CliRunner

    from optlab._cli import app

    monkeypatch.chdir(tmp_path)
    uri = new_store(tmp_path / "mlflow.db")
    spec = write_spec(tmp_path, "left_to_other")
    _, child_id = fake_holder(uri, "left_to_other", keys_of(spec)["b"], "b", time.time())
    first = invoke(spec, uri)
    assert first.exit_code == 0, (first.stdout, first.stderr)
    assert "b: not run here: another invocation is training it" in first.stderr

    def compared() -> dict[str, str]:
        shown = CliRunner().invoke(
            app, ["compare", "left_to_other", "--tracking-uri", uri, "--json"]
        )
        assert shown.exit_code == 0, shown.stderr
        return {row["name"]: row["status"] for row in json.loads(shown.stdout)}

    assert compared() == {"a": "FINISHED", "b": "RUNNING", "c": "FINISHED", "d": "FINISHED"}
    client_of(uri).set_terminated(child_id, "FINISHED")  # the other invocation finishes b
    assert compared() == dict.fromkeys(RUNS, "FINISHED")


def test_compare_says_an_invocation_killed_before_any_run_ended_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Callable[[Path], str]
) -> None:
    """`optlab compare` after a `kill -9` (or a lost store) that ended an invocation before it
    recorded a run said it was "still starting"; it says it ended, and what to run."""
    from typer.testing import CliRunner

    from optlab._cli import app
    from optlab._tracking.store import ensure_experiment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(STALE_ENV, "20")
    uri = new_store(tmp_path / "mlflow.db")
    client = client_of(uri)
    parent = client.create_run(
        ensure_experiment(client, "gone", uri),
        run_name="gone",
        tags={
            ROLE_TAG: "invocation",
            HOST_TAG: "elsewhere.example",
            PID_TAG: "4242",
            HEARTBEAT_TAG: f"{time.time() - 600:.3f}",
            "optlab.spec_file": "/data/gone.yaml",
        },
    )

    def compared() -> tuple[int, str]:
        shown = CliRunner().invoke(app, ["compare", "gone", "--tracking-uri", uri])
        return shown.exit_code, shown.stderr

    code, err = compared()
    assert code == 2 and len(err.splitlines()) == 1
    assert "recorded no run (no heartbeat for 600 s)" in err
    assert f"`optlab run /data/gone.yaml --resume --tracking-uri {uri}`" in err
    assert "still starting" not in err
    client.set_tag(parent.info.run_id, HEARTBEAT_TAG, f"{time.time():.3f}")
    code, err = compared()
    assert code == 2 and "has no run recorded yet (still starting" in err
    client.set_terminated(parent.info.run_id, "FAILED")
    code, err = compared()
    assert code == 2 and "recorded no run (it ended FAILED)" in err
