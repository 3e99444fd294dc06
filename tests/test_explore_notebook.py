"""A demo run as a notebook (jupytext converts it, nbclient executes it) shows its pictures inline."""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_demo_as_notebook_has_image_outputs(tmp_path, monkeypatch):
    hint = "is not installed (pip install 'tinygrad_attn[notebook]')"
    jupytext = pytest.importorskip("jupytext", reason=f"jupytext {hint}")
    nbclient = pytest.importorskip("nbclient", reason=f"nbclient {hint}")
    pytest.importorskip("ipykernel", reason=f"ipykernel {hint}")
    from jupyter_client.kernelspec import NoSuchKernel

    notebook = jupytext.read(ROOT / "demos" / "01_scalars.py")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TINYGRAD_ATTN_QUICK", "1")
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    except NoSuchKernel:
        pytest.skip("no python3 Jupyter kernel: python -m ipykernel install --user")
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    kinds = {kind for o in outputs for kind in o.get("data", {})}
    assert "image/svg+xml" in kinds  # the neuron's graph, drawn inline
    pages = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("<iframe srcdoc=" in p and "explore" in p for p in pages)  # and the page to click into
    assert (tmp_path / "tinygrad_attn_out" / "demos" / "01_neuron.svg").exists()  # the file is still written
