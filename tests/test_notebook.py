"""examples/notebook.ipynb runs in a Jupyter kernel (ipykernel, driven by nbclient) of this environment:
the async client opened in one cell, used in others and closed in another (each cell is a task of its
own), then the sync client, against the emulator."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"


@pytest.fixture
def kernel_of_this_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernel spec that runs this interpreter, first on JUPYTER_PATH: the notebook runs
    against this environment's adcreative-async whatever other kernels the machine has."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (adcreative-async tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's migration warning otherwise
    return "python3"


def outputs_of(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_the_example_notebook_runs(kernel_of_this_environment: str, tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]  # nbformat has no types
    workdir = tmp_path / "work"
    workdir.mkdir()
    NotebookClient(
        notebook,
        kernel_name=kernel_of_this_environment,
        timeout=120,
        resources={"metadata": {"path": str(workdir)}},
    ).execute()  # raises CellExecutionError, naming the cell, if any cell fails
    code = [c for c in notebook.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    text = "\n".join(outputs_of(c) for c in code)
    assert "STARTED -> SUCCEEDED" in text  # the async wait, in a cell after the one that opened
    assert "saved " in text  # the sync client's wait and download
    assert len(list((workdir / "notebook-output").glob("*.png"))) == 2  # 1 async, 1 sync
    cutouts = workdir / "notebook-output" / "cutouts"  # the bulk run's, named after their inputs
    assert sorted(p.name for p in cutouts.iterdir()) == ["product-1.png", "product-2.png", "product-3.png"]
    assert "product-2.jpg -> notebook-output/cutouts/product-2.png" in text
