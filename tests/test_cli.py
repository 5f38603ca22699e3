"""The ``optlab`` command: every subcommand, exit statuses, one-line errors, --json, --set."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
from pydantic import Field
from typer.testing import CliRunner

import optlab
from optlab._cli import app
from optlab.testing import register_plugin

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

TINY = """\
name: tiny
seed: 3
data: {name: digits, limit: 300}
loss: {name: svm}
optimizer: {name: sgd, lr: 0.01, batch_size: 32, epochs: 3}
variants:
  svm: {}
  softmax: {loss: {name: softmax}}
"""


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_prints_the_plan(spec: Path) -> None:
    code, out, _ = invoke("validate", str(spec))
    assert code == 0
    assert "2 runs" in out and "svm:" in out and "softmax:" in out
    # which plugin provides each component, with its distribution and version
    assert f"loss svm from losses (optlab {optlab.__version__})" in out


def test_validate_checks_every_file_it_is_given(spec: Path, tmp_path: Path) -> None:
    """``optlab validate experiments/*.yaml``: each file's plan under its name, each mistake
    on its line, every file checked, exit 2 when any is refused."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("name: svm", "name: svmm", 1))
    code, out, err = invoke("validate", str(spec), str(bad), str(tmp_path / "gone.yaml"), str(spec))
    assert code == 2
    assert out.count(f"{spec}:\n") == 2 and out.count("2 runs") == 2
    assert f"{bad}:\n" in out and "unknown loss 'svmm'" in err and "gone.yaml" in err
    assert invoke("validate", str(spec), str(spec))[0] == 0


def test_run_json_gives_one_object_per_run(spec: Path) -> None:
    code, out, _ = invoke("run", str(spec), "--json", "--no-track")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["svm", "softmax"]
    for row in rows:
        assert row["status"] == "FINISHED"
        assert row["optimizer"]["name"] == "sgd" and row["optimizer"]["lr"] == 0.01
        assert 0.5 < row["metrics"]["test_accuracy"] <= 1.0
        assert row["final_loss"] is not None and row["run_id"] is None  # untracked


#: the fields of a run's record in ``optlab run --json`` and ``optlab compare --json`` (README)
RECORD = {
    "name", "variant", "sweep", "seed", "status", "error", "data", "loss", "regularizer",
    "optimizer", "final_loss", "best_val_accuracy", "test_accuracy", "train_time_s", "metrics",
    "key", "run_id", "reused", "best", "group",
}  # fmt: skip
GROUP = {
    "name", "runs", "status", "replicates", "final_loss", "final_loss_std", "best_val_accuracy",
    "best_val_accuracy_std", "test_accuracy", "test_accuracy_std", "train_time_s",
    "train_time_s_std",
}  # fmt: skip


def test_run_json_and_compare_json_give_the_same_record_per_run(
    spec: Path, new_store: Callable[[Path], str]
) -> None:
    """optlab run --json gave a record per run (name, the components' settings as nested
    mappings, metrics, key); optlab compare --json the table's rows (run, the components'
    names, means and std, members, best). One record per run now, the same from both."""
    seeds = TINY.replace("seed: 3", "seeds: [3, 4]\ntracking: {figures: false}")
    spec.write_text(seeds.replace("epochs: 3", "epochs: 1"))
    uri = new_store(spec.parent / "mlflow.db")
    code, ran, err = invoke("run", str(spec), "--json", "--tracking-uri", uri)
    assert code == 0, err
    code, compared, err = invoke("compare", "tiny", "--json", "--tracking-uri", uri)
    assert code == 0, err
    records = json.loads(ran)
    assert json.loads(compared) == records
    # comparison.json, on the parent run and from compare --out, holds the same records
    # (it held the table's rows: run, the components' names, means, members)
    code, _, err = invoke("compare", "tiny", "--out", "report", "--tracking-uri", uri)
    assert code == 0, err
    assert json.loads((spec.parent / "report" / "comparison.json").read_text()) == records
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(records[0]["run_id"]).data.tags["mlflow.parentRunId"]
    stored = Path(client.download_artifacts(parent, "comparison.json", str(spec.parent)))
    assert json.loads(stored.read_text()) == records
    names = ["svm-seed3", "svm-seed4", "softmax-seed3", "softmax-seed4"]
    assert [r["name"] for r in records] == names
    for record in records:
        assert set(record) == RECORD and set(record["group"]) == GROUP
        assert record["status"] == "FINISHED" and record["error"] is None
        assert record["loss"]["name"] in ("svm", "softmax") and record["regularizer"] == []
        assert record["optimizer"] == {**record["optimizer"], "name": "sgd", "lr": 0.01}
        assert record["test_accuracy"] == record["metrics"]["test_accuracy"]
        assert client.get_run(record["run_id"]).info.run_name == record["name"]
    svm = records[0]["group"]
    assert (svm["name"], svm["runs"], svm["replicates"]) == ("svm", names[:2], 2)
    mean = (records[0]["test_accuracy"] + records[1]["test_accuracy"]) / 2
    assert svm["test_accuracy"] == pytest.approx(mean)
    assert sum(r["best"] for r in records) == 2  # the two runs of the best row
    assert not any(r["reused"] for r in records)
    # --resume with a third seed: the records say which runs it reused, the same from run,
    # compare and the parent's comparison.json (a script could not tell them apart), and the
    # reused runs and the new one are one group (they were two groups named svm)
    spec.write_text(spec.read_text().replace("seeds: [3, 4]", "seeds: [3, 4, 5]"))
    code, ran, err = invoke("run", str(spec), "--json", "--resume", "--tracking-uri", uri)
    assert code == 0, err
    again = json.loads(ran)
    reused = {r["name"]: r["reused"] for r in again}
    assert reused == {**dict.fromkeys(names, True), "svm-seed5": False, "softmax-seed5": False}
    assert [r["run_id"] for r in again if r["reused"]] == [r["run_id"] for r in records]
    assert again[0]["group"]["runs"] == ["svm-seed3", "svm-seed4", "svm-seed5"]
    assert json.loads(invoke("compare", "tiny", "--json", "--tracking-uri", uri)[1]) == again
    parent = client.get_run(again[2]["run_id"]).data.tags["mlflow.parentRunId"]
    stored = Path(client.download_artifacts(parent, "comparison.json", str(spec.parent / "2")))
    assert json.loads(stored.read_text()) == again


def test_run_prints_the_comparison_table(spec: Path) -> None:
    code, out, _ = invoke("run", str(spec), "--no-track")
    assert code == 0
    assert "svm" in out and "softmax" in out and "FINISHED" in out


def test_same_spec_same_numbers(spec: Path) -> None:
    first = json.loads(invoke("run", str(spec), "--json", "--no-track")[1])
    second = json.loads(invoke("run", str(spec), "--json", "--no-track")[1])
    assert [r["final_loss"] for r in first] == [r["final_loss"] for r in second]
    assert [r["metrics"]["test_accuracy"] for r in first] == [
        r["metrics"]["test_accuracy"] for r in second
    ]


def test_set_overrides_go_through_validation(spec: Path) -> None:
    code, out, _ = invoke("run", str(spec), "--json", "--no-track", "--set", "optimizer.epochs=1")
    assert code == 0
    assert all(r["optimizer"]["epochs"] == 1 for r in json.loads(out))
    code, _, err = invoke("validate", str(spec), "--set", "optimizer.lr=-1")
    assert code == 2
    assert "optimizer.lr" in err and "must be greater than 0" in err
    assert "Traceback" not in err


def test_bad_spec_exits_2_with_located_errors_and_no_traceback(spec: Path) -> None:
    spec.write_text(TINY.replace("lr: 0.01", "lrr: 0.01").replace("name: svm}", "name: svn}"))
    code, out, err = invoke("run", str(spec), "--no-track")
    assert code == 2
    assert out == ""
    assert f"{spec}:5:" in err and "did you mean 'lr'" in err
    assert f"{spec}:4:" in err and "did you mean 'svm'" in err
    assert "Traceback" not in err


def test_batch_larger_than_the_data_is_bad_input_before_any_run(spec: Path) -> None:
    code, _, err = invoke("run", str(spec), "--set", "optimizer.batch_size=100000")
    assert code == 2
    assert "batch_size" in err and "Traceback" not in err
    assert not (spec.parent / "mlflow.db").exists()


def test_a_failed_run_exits_1_and_the_others_still_run(spec: Path) -> None:
    # a learning rate far too large diverges for the SVM variant only
    text = TINY.replace("  svm: {}", "  svm: {optimizer: {name: sgd, lr: 1.0e+12}}")
    spec.write_text(text)
    code, out, _ = invoke("run", str(spec), "--json", "--no-track")
    assert code == 1
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["svm"]["status"] == "FAILED" and "diverged" in rows["svm"]["error"]
    assert rows["softmax"]["status"] == "FINISHED"


def test_fail_fast_stops_at_the_first_failure(spec: Path) -> None:
    spec.write_text(TINY.replace("  svm: {}", "  svm: {optimizer: {name: sgd, lr: 1.0e+12}}"))
    code, out, _ = invoke("run", str(spec), "--json", "--no-track", "--fail-fast")
    assert code == 1
    assert [r["name"] for r in json.loads(out)] == ["svm"]


def test_run_json_still_says_on_stderr_what_was_not_run_and_what_to_run_next(
    spec: Path,
) -> None:
    """--json (rows on stdout, for jq) dropped every note of the summary: the runs
    --fail-fast left, the --resume command, the runs --resume skipped. They go to stderr."""
    spec.write_text(TINY.replace("  svm: {}", "  svm: {optimizer: {name: sgd, lr: 1.0e+12}}"))
    code, out, err = invoke("run", str(spec), "--json", "--fail-fast")
    assert code == 1 and [r["name"] for r in json.loads(out)] == ["svm"]
    assert "1 run(s) not run (--fail-fast stopped at the first failed run): softmax" in err
    assert f"optlab run {spec} --resume" in err
    assert err.count("svm: FAILED") == 1  # said once, as the run ended
    spec.write_text(TINY)
    code, out, err = invoke("run", str(spec), "--json", "--resume")
    assert code == 0 and len(json.loads(out)) == 2
    code, out, err = invoke("run", str(spec), "--json", "--resume")
    assert code == 0 and "skipped 2 run(s) already finished (--resume)" in err


def test_resume_without_tracking_is_refused_before_any_run(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--resume reads the store: with tracking off it trained every run again, without a
    word. Refused in one line, exit 2, nothing trained or written."""
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("run", str(spec), "--resume", "--no-track")
    assert code == 2 and out == ""
    assert err == (
        "optlab: error: --resume skips the runs the tracking store has FINISHED, and this "
        "invocation tracks nothing (--no-track): drop --resume, or track the runs\n"
    )
    spec.write_text(TINY + "tracking: {enabled: false}\n")
    code, _, err = invoke("run", str(spec), "--resume")
    assert code == 2 and "(the spec's tracking: {enabled: false})" in err
    with pytest.raises(optlab.InputError, match=r"^resume=True skips"):  # as the API takes it
        optlab.run(spec, resume=True, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([spec.name])


def test_fail_fast_says_which_runs_it_did_not_run(spec: Path) -> None:
    """The table of a --fail-fast invocation shows the runs that ran; a line names the others
    and how to run them (the plan's other runs were not mentioned at all)."""
    spec.write_text(TINY.replace("  svm: {}", "  svm: {optimizer: {name: sgd, lr: 1.0e+12}}"))
    code, out, _ = invoke("run", str(spec), "--fail-fast")
    assert code == 1
    assert (
        "1 run(s) not run (--fail-fast stopped at the first failed run): softmax; run them "
        f"with `optlab run {spec} --resume`" in out
    )
    code, out, _ = invoke("run", str(spec), "--fail-fast", "--no-track")
    assert code == 1
    assert "1 run(s) not run (--fail-fast stopped at the first failed run): softmax\n" in out


def test_run_into_a_store_in_another_folder_keeps_the_artifacts_beside_it(
    spec: Path, monkeypatch: pytest.MonkeyPatch, new_store: Callable[[Path], str]
) -> None:
    """``optlab run SPEC --tracking-uri sqlite:////elsewhere/mlflow.db``: the runs' artifacts
    go to ``mlruns/`` beside that database, not to ``./mlruns`` of the working folder, and the
    commands the summary suggests name that store."""
    spec.write_text(TINY + "tracking: {figures: false}\n")
    (spec.parent / "store").mkdir()
    uri = new_store(spec.parent / "store" / "mlflow.db")
    work = spec.parent / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = invoke("run", str(spec), "--tracking-uri", uri)
    assert code == 0, err
    assert (
        f"view: optlab ui --tracking-uri {uri}, or optlab compare tiny --tracking-uri {uri}" in out
    )
    saved = sorted(spec.parent.glob("store/mlruns/1/*/artifacts/spec.yaml"))
    assert len(saved) == 2  # the two variants' runs
    assert list(work.iterdir()) == []
    for path in saved:  # each run's spec.yaml is a spec of that run, runnable as it is
        code, out, err = invoke("validate", str(path))
        assert code == 0, err
        assert "1 run" in out and ("svm:" in out) != ("softmax:" in out)


def test_check_prints_both_sanity_checks(spec: Path) -> None:
    code, out, _ = invoke("check", str(spec))
    assert code == 0, out
    assert "svm:" in out and "softmax:" in out
    assert "9" in out  # C - 1 for the SVM
    assert "2.30" in out  # log 10 for softmax


def test_plugins_json_lists_bundled_plugins() -> None:
    code, out, _ = invoke("plugins", "--json")
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["losses"]["status"] == "active"
    assert plugins["losses"]["distribution"] == "optlab"
    assert {"kind": "loss", "name": "svm"} in plugins["losses"]["components"]


def test_components_lists_params_with_defaults_and_bounds() -> None:
    code, out, _ = invoke("components", "--kind", "optimizer", "--json")
    assert code == 0
    comps = {c["name"]: c for c in json.loads(out)}
    assert {"sgd", "gd", "adam", "random_search"} <= set(comps)
    params = {p["name"]: p for p in comps["sgd"]["params"]}
    assert params["lr"]["bounds"].get("gt") == 0
    assert params["lr"]["required"] is False
    # the choices of a Literal (it read "Literal"), a list's items (it read "list")
    assert params["sampling"]["type"] == "Literal['shuffle', 'replacement']"
    assert params["lr"]["type"] == "float"
    code, _, err = invoke("components", "--kind", "losss")
    assert code == 2 and "did you mean 'loss'" in err


def test_components_help_names_every_kind_it_takes() -> None:
    """``--kind backend`` lists the backends, but the help named only the other four."""
    from optlab._contract.registry import KINDS

    shown = runner.invoke(app, ["components", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    (line,) = [line for line in shown.stdout.splitlines() if "--kind" in line]
    assert all(kind in line for kind in KINDS)
    code, out, _ = invoke("components", "--kind", "backend", "--json")
    assert code == 0 and {c["name"] for c in json.loads(out)} >= {"numpy"}


class _ListParams(optlab.Params):
    weights: list[float] = Field(default_factory=lambda: [1.0, 2.0], description="Per class.")


class _ListDefaultPlugin:
    @optlab.hookimpl
    def optlab_register_losses(self) -> list[optlab.LossRecord]:
        return [optlab.LossRecord("weighted", lambda p: None, _ListParams, "A weighted loss.")]


def test_components_shows_a_default_made_by_a_default_factory() -> None:
    """A list default is written ``Field(default_factory=...)``; it was listed as None."""
    with register_plugin(_ListDefaultPlugin(), name="weighted"):
        code, out, _ = invoke("components", "--kind", "loss", "--json")
        assert code == 0
        (weighted,) = [c for c in json.loads(out) if c["name"] == "weighted"]
        assert weighted["params"][0]["default"] == [1.0, 2.0]
        assert weighted["params"][0]["type"] == "list[float]"
        assert weighted["params"][0]["required"] is False
        shown = runner.invoke(app, ["components", "--kind", "loss"], env={"COLUMNS": "200"})
        assert "weights=[1.0, 2.0]" in shown.stdout


def test_schema_is_json_with_every_component() -> None:
    code, out, _ = invoke("schema")
    assert code == 0
    text = json.dumps(json.loads(out))
    for name in ("svm", "softmax", "l2", "max_norm", "sgd", "adam", "digits", "cifar10"):
        assert f'"{name}"' in text


def test_python_dash_m_works_and_help_does_not_import_mlflow(tmp_path: Path) -> None:
    # main() returns the exit status, which __main__ passes to sys.exit: the process ends once
    # its exit handlers ran
    probe = (
        "import atexit, sys, runpy\n"
        "def check():\n"
        "    assert 'mlflow' not in sys.modules, 'optlab --help imported mlflow'\n"
        "    print('ok')\n"
        "atexit.register(check)\n"
        "sys.argv = ['optlab', '--help']\n"
        "runpy.run_module('optlab', run_name='__main__')\n"
        "print('not reached: python -m optlab exits with main()')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout and done.stdout.strip().endswith("ok")


def test_validate_does_not_import_mlflow(spec: Path) -> None:
    probe = (
        "import sys\nfrom optlab._cli import app\n"
        f"try:\n    app(['validate', {str(spec)!r}])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'mlflow' not in sys.modules\nprint('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_missing_spec_file_is_one_line_exit_2(tmp_path: Path) -> None:
    code, _, err = invoke("run", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml" in err and len(err.strip().splitlines()) == 1


def test_landscape_with_a_negative_seed_is_bad_input_not_a_traceback(spec: Path) -> None:
    """optlab landscape --seed -1 trained nothing wrong but ended in numpy's traceback
    (ValueError: expected non-negative integer), exit 1. Refused as it is parsed, before
    any store is read (so no run is needed here)."""
    code, out, err = invoke("landscape", "tiny", "--seed", "-1")
    assert code == 2 and out == ""
    assert "optlab: error: landscape: invalid value for '--seed'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["run"], "optlab: error: run: missing argument 'SPEC'; see optlab run --help"),
        (
            ["run", "x.yaml", "--jobz", "2"],
            "optlab: error: run: no such option --jobz (did you mean --jobs or --json?); "
            "see optlab run --help",
        ),
        (
            ["components", "--kindd", "loss"],
            "optlab: error: components: no such option --kindd (did you mean --kind?); "
            "see optlab components --help",
        ),
        (
            ["compare"],
            "optlab: error: compare: missing argument 'EXPERIMENT'; see optlab compare --help",
        ),
        (
            ["check", "x.yaml", "--jobs", "0"],
            "optlab: error: check: invalid value for '--jobs' / '-j': Input should be greater "
            "than or equal to 1; see optlab check --help",
        ),
        (
            ["validate", "x.yaml", "--set"],
            "optlab: error: validate: option '--set' requires an argument; "
            "see optlab validate --help",
        ),
        (
            ["check", "a.yaml", "b.yaml"],
            "optlab: error: check: got unexpected extra argument(s) (b.yaml); "
            "see optlab check --help",
        ),
        (["rnu"], "optlab: error: no such command 'rnu' (did you mean 'run'?); see optlab --help"),
        (["--bogus"], "optlab: error: no such option --bogus; see optlab --help"),
    ],
)
def test_a_usage_error_is_one_line_with_the_suggestions_and_exit_2(
    args: list[str], line: str
) -> None:
    """Click's usage errors (a missing argument, an unknown option or command, a bad value)
    were four lines: 'Usage: ...', 'Try ... for help.', a blank line, 'Error: ...'. They are
    one, as optlab's other errors: where, what is wrong (with click's suggestions), what to
    do; and with their prefix, ``optlab: error:`` (it was ``optlab run: no such option ...``,
    every other error a user can cause ``optlab: error: ...``)."""
    code, out, err = invoke(*args)
    assert (code, out, err) == (2, "", line + "\n")


def test_main_returns_the_exit_status_instead_of_ending_the_process(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A notebook or another program can call it: no SystemExit, the status is returned."""
    from optlab._cli import main

    assert main(["validate", str(spec)]) == 0
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("run", "optlab run [OPTIONS] SPEC"),
        ("validate", "optlab validate [OPTIONS] SPEC..."),
        ("check", "optlab check [OPTIONS] SPEC"),
        ("compare", "optlab compare [OPTIONS] EXPERIMENT"),
        ("landscape", "optlab landscape [OPTIONS] EXPERIMENT"),
        ("ui", "optlab ui [OPTIONS]"),
    ],
)
def test_help_shows_the_usage_line_plainly(command: str, usage: str) -> None:
    """``-h`` works; arguments are named as in the docs, not in braces (``{SPEC}``), and no
    flag shows a type (``--help <bool>``)."""
    code, out, _ = invoke(command, "-h")
    assert code == 0
    assert out.splitlines()[0] == f"Usage: {usage}"
    assert "<bool>" not in out and "{" not in out.splitlines()[0]


def test_version_prints_the_version() -> None:
    code, out, _ = invoke("--version")
    assert (code, out.strip()) == (0, f"optlab {optlab.__version__}")


def test_ctrl_c_before_any_run_says_nothing_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C while the spec is still being read: exit 130 and one line, nothing recorded."""
    import optlab._cli as cli

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load", interrupted)
    code, out, err = invoke("run", str(tmp_path / "spec.yaml"))
    assert code == 130
    assert out == ""
    assert err == "optlab: interrupted before any run started: nothing is recorded\n"


def test_components_in_80_columns_cut_no_value() -> None:
    """A long parameter folds onto the next line; it used to end in an ellipsis, so that
    batch_size=20... read as a default of 20."""
    result = runner.invoke(app, ["components", "--kind", "optimizer"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "batch_size=200" in result.stdout.replace("\n", "").replace("│", "").replace(" ", "")


def test_components_in_80_columns_break_no_name_and_no_param() -> None:
    """rich shrank the widest columns evenly and broke what no longer fitted: at 80 columns
    'include_correc' / 't=False', 'batch_size=200' / ',', 'random_local_' / 'search'. A cell
    wraps between words only, the params between params: every word on the screen is a whole
    word of a name, provider, summary or param."""
    result = runner.invoke(app, ["components"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "…" not in result.stdout and max(len(line) for line in lines) <= 80
    shown = [cell.strip() for line in lines for cell in line.split("│")[1:-1]]
    code, out, _ = invoke("components", "--json")
    assert code == 0
    rows = json.loads(out)
    whole = {"component", "summary", "params", "from"}
    for row in rows:
        whole.update(row["kind"].split() + row["name"].split() + row["summary"].split())
        whole.update(f"{row['provider']} ({row['distribution']} {row['version']})".split())
        whole.update(f"{p['name']}={p['default']!r}" for p in row["params"] if not p["required"])
        whole.update(p["name"] for p in row["params"] if p["required"])
    words = {word.rstrip(",") for cell in shown for word in cell.split()}
    assert words - {word.rstrip(",") for word in whole} == set()  # no piece of a broken word
    assert {"random_local_search", "include_correct=False", "batch_size=200"} <= words
    assert "max_numeric_evaluations=1000000" in words


def test_plugins_in_80_columns_cut_no_name() -> None:
    """A long component name folds onto the next line; it used to end in an ellipsis
    (optimizer:random_local_sea...)."""
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    joined = result.stdout.replace("\n", "").replace("│", "").replace(" ", "")
    assert "optimizer:random_local_search," in joined


class _CtrlCAsTheRunEnds:
    """A Ctrl-C sent as the run (the spec's only one) ends: after every run, before the
    invocation has put its signal handlers back."""

    @optlab.hookimpl
    def optlab_run_finished(self, run: Any, result: Any, error: Any) -> None:
        signal.raise_signal(signal.SIGINT)


def test_ctrl_c_as_the_run_ends_says_what_is_saved_in_one_line(
    spec: Path, new_store: Callable[[Path], str]
) -> None:
    """A Ctrl-C once every run has ended, while the invocation still had its handlers (it
    writes the comparison): status 130 and the line on what is saved, not a summary as if
    nothing had happened and a silent exit by SIGINT."""
    uri = new_store(spec.parent / "mlflow.db")
    spec.write_text(TINY.split("variants:")[0] + "tracking: {figures: false}\n")
    with register_plugin(_CtrlCAsTheRunEnds(), name="ctrl-c"):
        code, out, err = invoke("run", str(spec), "--tracking-uri", uri)
    assert code == 130, err
    assert "FINISHED" in out
    assert err == (
        f"optlab: interrupted after every run had ended: 1 run FINISHED and saved in {uri} "
        f"(experiment 'tiny'); see them with `optlab compare tiny --tracking-uri {uri}`\n"
    )


@pytest.mark.parametrize("where", ["preflight", "log_comparison"])
def test_a_ctrl_c_that_a_library_turned_into_its_own_error_still_says_what_is_saved(
    where: str, spec: Path, new_store: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C whose ``KeyboardInterrupt`` came out of C code as another exception
    (matplotlib's ft2font made it ``ImportError: initialization failed``) ended the command
    with that traceback. It is the Ctrl-C's end, status 130 and the line on what is saved:
    before the runs (the data prepared), and as the comparison is written (where the first
    Ctrl-C only asks the invocation to stop, and the second raises)."""
    from optlab._execution import invocation
    from optlab._tracking.tracker import Tracker

    def interrupted_in_c(*args: Any, **kwargs: Any) -> None:
        try:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # in C code, which raises its own error instead
        raise ImportError("initialization failed")

    if where == "preflight":
        monkeypatch.setattr(invocation, "preflight", interrupted_in_c)
    else:
        monkeypatch.setattr(Tracker, "log_comparison", interrupted_in_c)
    uri = new_store(spec.parent / "mlflow.db")
    spec.write_text(TINY.split("variants:")[0] + "tracking: {figures: false}\n")
    code, _, err = invoke("run", str(spec), "--tracking-uri", uri)
    assert code == 130, err
    if where == "preflight":
        assert err == (
            "optlab: interrupted before any run started: nothing is recorded; start again "
            f"with `optlab run {spec} --tracking-uri {uri}`\n"
        )
    else:  # every run FINISHED: nothing for --resume to finish
        assert err == (
            f"optlab: interrupted after every run had ended: 1 run FINISHED and saved in {uri} "
            f"(experiment 'tiny'); see them with `optlab compare tiny --tracking-uri {uri}`\n"
        )
        # the parent run is KILLED, as after any second Ctrl-C (not FAILED with the ImportError)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("tiny")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        statuses = {
            "parent" if "mlflow.parentRunId" not in r.data.tags else "child": r.info.status
            for r in runs
        }
        assert statuses == {"parent": "KILLED", "child": "FINISHED"}


def test_a_ctrl_c_while_the_interrupt_line_is_made_still_says_it(
    spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C once as the summary is printed, and again while the line on what is saved is
    made: the line is still said (the second ended the command with nothing said)."""
    from optlab._execution.invocation import Invocation

    summary, line = Invocation.print_summary, Invocation.interrupted_line

    def summary_then_ctrl_c(self: Invocation, *args: Any, **kwargs: Any) -> None:
        summary(self, *args, **kwargs)
        signal.raise_signal(signal.SIGINT)

    def ctrl_c_then_line(self: Invocation) -> str:
        signal.raise_signal(signal.SIGINT)
        return line(self)

    monkeypatch.setattr(Invocation, "print_summary", summary_then_ctrl_c)
    monkeypatch.setattr(Invocation, "interrupted_line", ctrl_c_then_line)
    before = signal.getsignal(signal.SIGINT)
    code, _, err = invoke("run", str(spec), "--no-track")
    assert code == 130
    assert err == "optlab: interrupted; nothing is recorded (tracking is off)\n"
    assert signal.getsignal(signal.SIGINT) is before


#: moments of `optlab run` at which no run trains, each as (module, name of the function
#: during which SIGTERM comes, whether the signal comes after it returned)
SIGTERM_MOMENTS = {
    "spec_read": ("optlab._cli", "_load", False),
    "data_prepared": ("optlab._execution.invocation", "preflight", False),
    "store_opened": ("optlab._execution.invocation", "check_free_space", False),
    "runs_ended": ("optlab._execution.invocation.Invocation", "print_summary", True),
}


@pytest.mark.parametrize("moment", list(SIGTERM_MOMENTS))
def test_sigterm_while_no_run_trains_says_the_line_and_exits_143(
    spec: Path, new_store: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """SIGTERM (``kill PID``) while the spec was read, the data prepared, the store opened, or
    once the runs had ended ended ``optlab run`` at once with nothing said (Python's default
    SIGTERM). It says the line on what is saved, as a Ctrl-C at that moment does, and exits
    143. The signal is sent from the function running at that moment; the test's own handler
    stands in for the default, which would end pytest, and must be put back untouched."""
    import importlib

    uri = new_store(spec.parent / "mlflow.db")
    spec.write_text(TINY.split("variants:")[0] + "tracking: {figures: false}\n")
    where, name, after = SIGTERM_MOMENTS[moment]
    owner: Any
    if where.endswith(".Invocation"):
        owner = importlib.import_module(where.rsplit(".", 1)[0]).Invocation
    else:
        owner = importlib.import_module(where)
    original = getattr(owner, name)

    def with_sigterm(*args: Any, **kwargs: Any) -> Any:
        if not after:
            signal.raise_signal(signal.SIGTERM)
        done = original(*args, **kwargs)
        if after:
            signal.raise_signal(signal.SIGTERM)
        return done

    monkeypatch.setattr(owner, name, with_sigterm)
    reached: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: reached.append(signum))
    try:
        code, out, err = invoke("run", str(spec), "--tracking-uri", uri)
        handler = signal.getsignal(signal.SIGTERM)
    finally:
        mine = signal.signal(signal.SIGTERM, before)
    assert reached == [] and handler is mine
    assert code == 143, (out, err)
    if after:
        assert "FINISHED" in out
        assert err == (
            f"optlab: interrupted after every run had ended: 1 run FINISHED and saved in {uri} "
            f"(experiment 'tiny'); see them with `optlab compare tiny --tracking-uri {uri}`\n"
        )
    elif moment == "spec_read":  # no invocation yet: nor its command
        assert (out, err) == (
            "",
            "optlab: interrupted before any run started: nothing is recorded\n",
        )
    else:
        assert (out, err) == (
            "",
            "optlab: interrupted before any run started: nothing is recorded; start again "
            f"with `optlab run {spec} --tracking-uri {uri}`\n",
        )


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_during_check_says_how_far_it_got_and_exits_by_it(
    spec: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals, status: int
) -> None:
    """``optlab check`` had Python's default handlers: a SIGTERM ended it with nothing said,
    a Ctrl-C could print a traceback. As ``optlab run``, it says one line on how far it got
    and exits 130 (Ctrl-C) or 143 (SIGTERM). The signal comes during the second run's checks;
    the test's own handlers stand in for the defaults and must be put back untouched."""
    from optlab._execution import check as check_module

    original = check_module.check_run

    def second_is_signalled(run: Any, *args: Any, **kwargs: Any) -> Any:
        if run.name == "softmax":
            signal.raise_signal(signum)
        return original(run, *args, **kwargs)

    monkeypatch.setattr(check_module, "check_run", second_is_signalled)
    reached: list[int] = []
    before = {
        s: signal.signal(s, lambda n, _: reached.append(n)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        code, out, err = invoke("check", str(spec))
        handlers = {s: signal.getsignal(s) for s in before}
    finally:
        mine = {s: signal.signal(s, before[s]) for s in before}
    assert reached == [] and handlers == mine
    assert code == status, (out, err)
    assert out.startswith("svm:\n") and "softmax:" not in out
    assert err == (
        "optlab: interrupted after the checks of 1 of 2 runs, printed above; "
        f"run `optlab check {spec}` to check them all\n"
    )


def _read_only_mount(folder: Path) -> list[str] | None:
    """A command prefix that runs a command with ``folder`` mounted read-only (a user and mount
    namespace of its own: ``unshare -rm``), or ``None`` where the system does not allow one."""
    mount = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"
    prefix = ["unshare", "-rm", "sh", "-c", f'{mount} && exec "$@"', "sh"]
    try:
        probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True)
    except OSError:
        return None
    if probe.returncode == 0 or (folder / "probe").exists():
        return None
    return prefix


@pytest.mark.slow
def test_compare_reads_a_store_it_cannot_write(
    spec: Path, new_store: Callable[[Path], str]
) -> None:
    """A store on a read-only file system (a course's shared results, a mounted copy) can be
    read: ``optlab compare`` writes nothing to it, so it does not refuse it."""
    store = spec.parent / "store"
    store.mkdir()
    uri = new_store(store / "mlflow.db")
    spec.write_text(TINY + "tracking: {figures: false}\n")
    code, _, err = invoke("run", str(spec), "--tracking-uri", uri)
    assert code == 0, err
    read_only = _read_only_mount(store)
    if read_only is None:
        pytest.skip("no read-only mount here (unshare -rm is not allowed)")
    done = subprocess.run(
        [*read_only, sys.executable, "-m", "optlab", "compare", "tiny", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
    )
    assert done.returncode == 0, done.stderr
    assert [row["name"] for row in json.loads(done.stdout)] == ["svm", "softmax"]


@pytest.mark.slow
def test_landscape_on_a_store_whose_run_files_are_read_only_says_so_in_one_line(
    spec: Path, new_store: Callable[[Path], str]
) -> None:
    """The store's database can be written, its runs' files (mlruns, a read-only mount) not:
    optlab landscape ended in an OSError traceback, exit 1. One line, exit 2, naming the
    folder to make writable, and no other store (it would not hold the run)."""
    uri = new_store(spec.parent / "mlflow.db")
    spec.write_text(TINY.split("variants:")[0] + "tracking: {figures: false}\n")
    code, _, err = invoke("run", str(spec), "--tracking-uri", uri)
    assert code == 0, err
    read_only = _read_only_mount(spec.parent / "mlruns")
    if read_only is None:
        pytest.skip("no read-only mount here (unshare -rm is not allowed)")
    done = subprocess.run(
        [*read_only, sys.executable, "-m", "optlab", "landscape", "tiny", "--tracking-uri", uri],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"optlab: error: tracking store '{uri}': cannot store loss_landscape")
    folder = re.escape(str(spec.parent / "mlruns"))
    assert re.search(
        rf"\(Read-only file system\); the run's figures are stored with it: make "
        rf"{folder}/\d+/\w+/artifacts writable$",
        line,
    ), line
