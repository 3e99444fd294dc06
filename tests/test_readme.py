"""The README's Python examples run as written, and the commands it quotes exist."""

import re
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
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (1, 5, 13)
    assert (tmp_path / "graph.svg").exists() or (tmp_path / "graph.dot").exists()


def test_quick_start_commands_name_real_extras_and_subcommands():
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    for extra in re.findall(r'pip install "\.\[(\w+)\]"', README):
        assert re.search(rf"^{extra} = \[", pyproject, re.M), f"README installs the extra {extra!r}, pyproject lacks it"
    help_text = subprocess.run([sys.executable, "-m", "tinygrad_attn", "--help"], capture_output=True, text=True).stdout
    for command in set(re.findall(r"tinygrad-attn (\w+)", README)):
        assert command in help_text, f"README mentions `tinygrad-attn {command}`, which --help does not list"
