"""optlab's Python API in a real Jupyter kernel (ipykernel, driven by nbclient): two runs in
one kernel, the progress shown as rich's notebook widget, the kernel's signal handlers
restored, results and the comparison table as a notebook user sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

SPEC = {
    "name": "notebook_demo",
    "data": {"name": "blobs", "n_samples": 120},
    "loss": {"name": "softmax"},
    "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 20, "epochs": 2},
    "tracking": {"figures": False},
    "variants": {"soft": {}, "hinge": {"loss": {"name": "svm"}}},
}

WIDGET = "application/vnd.jupyter.widget-view+json"


def _outputs(cell: Any, kind: str) -> list[Any]:
    return [output for output in cell.outputs if output.output_type == kind]


@pytest.mark.slow
def test_two_runs_in_one_kernel_with_the_progress_widget(tmp_path: Path, new_store: Any) -> None:
    uri = new_store(tmp_path / "mlflow.db")
    cells = [
        "import signal, optlab\n"
        "before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]\n"
        f"spec = {SPEC!r}\n"
        f"uri = {uri!r}",
        "first = optlab.run(spec, tracking_uri=uri)",
        "second = optlab.run(spec, tracking_uri=uri, overrides={'optimizer.epochs': 1})\n"
        "assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before\n"
        "print([r['status'] for r in first], [r['status'] for r in second])",
        "optlab.compare('notebook_demo', tracking_uri=uri)",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    # the kernel talks to this process over local sockets (IPC), not TCP
    kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    client = NotebookClient(notebook, km=kernel, timeout=120)
    client.execute(cwd=str(tmp_path))  # raises CellExecutionError if a cell fails

    _, first, second, table = notebook.cells
    assert any(WIDGET in output.get("data", {}) for output in _outputs(first, "display_data"))
    printed = "".join(output.text for output in _outputs(second, "stream"))
    assert "['FINISHED', 'FINISHED'] ['FINISHED', 'FINISHED']" in printed
    (shown,) = _outputs(table, "execute_result")
    text = shown.data["text/plain"]  # the table, as `optlab compare` prints it
    assert "soft" in text and "hinge" in text and "best val" in text and "status" in text
    assert not text.startswith("Table(")
