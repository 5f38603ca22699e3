"""The comparison as a user sees it: ``optlab run`` of two variants, then ``optlab ui``, then the
link it prints opened in headless Chromium on the real MLflow UI.

What the user must see: MLflow's model-training view (not its GenAI view), in chart mode, the
learning curves first with both variants' lines, the summaries next, and the comparison files
on the parent run; and ``optlab ui`` prints the link and none of MLflow's start-up noise. Its
server keeps the artifacts of an experiment made in the UI beside the store.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_server import free_port, healthy

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/optlab-mlflow-ui.png")
SPEC = """\
name: browser_svm_vs_softmax
seed: 0
data: {name: blobs, n_samples: 300, n_features: 4, n_classes: 3, val: 0.2, test: 0.2}
loss: {name: svm}
regularizer: {name: l2, strength: 0.0001}
optimizer: {name: sgd, lr: 0.05, batch_size: 16, epochs: 4}
variants:
  svm: {}
  softmax: {loss: {name: softmax}}
"""
SECTION = '[data-testid="experiment-view-compare-runs-section-header"]'
CARD = '[data-testid="experiment-view-compare-runs-card"]'


@pytest.fixture(scope="module")
def ui(
    tmp_path_factory: pytest.TempPathFactory, _empty_store: Path
) -> Iterator[tuple[str, list[str], Path]]:
    """``optlab ui --tracking-uri`` on a store holding one invocation, started in another
    (empty) folder: (the link it printed, everything it printed once stopped, the store's
    folder). The store, the default one of the run before it, starts as a copy of the empty
    store. (That ``optlab ui`` finds the default store: tests/test_reliability_security.py.)
    """
    folder = tmp_path_factory.mktemp("browser")
    (folder / "spec.yaml").write_text(SPEC)
    shutil.copyfile(_empty_store, folder / "mlflow.db")
    from typer.testing import CliRunner

    from optlab._cli import app

    with pytest.MonkeyPatch.context() as patch:  # the run in this process, into ./mlflow.db
        patch.chdir(folder)
        done = CliRunner().invoke(app, ["run", "spec.yaml"])
    assert done.exit_code == 0, (done.stdout, done.stderr)
    command = [sys.executable, "-m", "optlab"]
    port = free_port()
    elsewhere = folder / "elsewhere"  # where MLflow's server would put files of its own
    elsewhere.mkdir()
    server = subprocess.Popen(
        [*command, "ui", "--port", str(port), "--tracking-uri", f"sqlite:///{folder}/mlflow.db"],
        cwd=elsewhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        assert server.stdout is not None
        while not (line := server.stdout.readline()).strip().startswith(url + "/#/"):
            assert line, f"optlab ui printed no link: {output}"
            output.append(line)
        output.append(line)
        # printed once the server answers: the link works when it appears (it was printed
        # before the server started, which takes seconds, up to a minute on a busy machine)
        assert healthy(url), output
        yield line.strip(), output, folder
    finally:
        server.send_signal(signal.SIGTERM)  # optlab ui stops its server too
        rest, _ = server.communicate(timeout=30)
        output += rest.splitlines(keepends=True)
    assert server.returncode == 0, output
    assert not healthy(url), "the MLflow server outlived optlab ui"


def test_optlab_ui_prints_the_link_and_no_startup_noise(ui: tuple[str, list[str], Path]) -> None:
    link, output, _ = ui
    assert output[0].startswith("Starting the MLflow UI on http://127.0.0.1:")
    assert output[1].startswith("MLflow UI on http://127.0.0.1:")
    assert "workflowType=machine_learning" in link and "compareRunsMode=CHART" in link
    assert len(output) == 4, output  # starting, the address, what the link is, the link


def test_experiments_made_in_the_ui_keep_their_artifacts_beside_the_store(
    ui: tuple[str, list[str], Path],
) -> None:
    """``optlab ui`` serves a SQLite store so that an experiment created in the UI keeps its
    artifacts in ``mlruns/<id>`` beside the database, as optlab's own experiments do, not in
    the folder the server was started from."""
    from mlflow.tracking import MlflowClient

    link, _, folder = ui
    client = MlflowClient(link.split("/#/")[0])
    experiment_id = client.create_experiment("made in the UI")
    location = client.get_experiment(experiment_id).artifact_location
    assert location.removeprefix("file://") == str(folder / "mlruns" / experiment_id)
    run_id = client.create_run(experiment_id).info.run_id
    client.log_text(run_id, "kept", "note.txt")
    saved = folder / "mlruns" / experiment_id / run_id / "artifacts" / "note.txt"
    assert saved.read_text() == "kept"
    assert sorted(p.name for p in (folder / "elsewhere").iterdir()) == []


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_the_link_opens_the_training_view_curves_first_with_both_variants(
    ui: tuple[str, list[str], Path],
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    link, _, _ = ui
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(link)
            # the model-training view, in chart mode (not the GenAI overview)
            page.get_by_role("heading", level=2, name="Runs", exact=True).wait_for()
            assert page.locator('input[name="runs-view-mode"][value="CHART"]').is_checked()
            assert page.get_by_text("Evaluation runs").count() == 0
            page.locator(CARD).filter(has_text="curves/val_accuracy").wait_for()
            sections = [t.split("\n")[0] for t in page.locator(SECTION).all_inner_texts()]
            assert sections[:2] == ["curves", "summary"], sections
            page.get_by_text("2 matching runs").wait_for()  # the invocation's two variants
            for key in ("curves/loss", "curves/val_accuracy"):
                card = page.locator(CARD).filter(has=page.get_by_text(key, exact=True))
                for variant in ("svm", "softmax"):  # a line each, named in the legend
                    card.get_by_text(re.compile(rf"^{variant} \(")).first.wait_for()
            page.screenshot(path=str(SCREENSHOT))

            # the parent run holds the comparison
            experiment = re.search(r"#/experiments/(\d+)/", link)
            parent = re.search(r"mlflow\.parentRunId%60%20%3D%20%27(\w+)%27", link)
            assert experiment and parent, link
            page.goto(
                link.split("#")[0] + f"#/experiments/{experiment.group(1)}/runs/"
                f"{parent.group(1)}/artifacts?workflowType=machine_learning"
            )
            for name in ("comparison.png", "comparison.md", "comparison.json"):
                page.get_by_text(name, exact=True).first.wait_for()
        finally:
            browser.close()
