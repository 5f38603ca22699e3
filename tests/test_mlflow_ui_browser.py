"""The comparison as a user sees it: headless Chromium on the real MLflow UI shows the parent
run of an invocation and, once expanded, its variants' child runs ``svm`` and ``softmax``."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_server import MlflowServer, mlflow_server  # noqa: F401 (fixture)
from tracking_data import drive, train

from optlab.tracking import Tracker

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


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_experiment_page_shows_the_variants(mlflow_server: MlflowServer) -> None:  # noqa: F811
    playwright = pytest.importorskip("playwright.sync_api")
    tracker = Tracker(mlflow_server.url, "browser-svm-vs-softmax", plots=False)
    with tracker.parent("svm_vs_softmax", {}):
        drive(tracker, [train("svm", lr=0.5), train("softmax", lr=0.05)])

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            url = f"{mlflow_server.url}/#/experiments/{tracker.experiment_id}/runs"
            page.goto(url, wait_until="load")
            name_cell = page.locator('[col-id="attributes.`Run Name`"]')
            parent = name_cell.filter(has_text="svm_vs_softmax").first
            parent.wait_for(state="visible")
            child = page.get_by_role("link", name="softmax", exact=True)
            assert child.count() == 0  # children start collapsed under their parent
            parent.locator("button").first.click()  # expand
            for name in ("svm", "softmax"):
                page.get_by_role("link", name=name, exact=True).wait_for(state="visible")
            page.screenshot(path=str(SCREENSHOT))
            assert page.get_by_text("3 matching runs").is_visible()
        finally:
            browser.close()
