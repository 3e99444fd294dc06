"""The tour: a short run writes every picture and an index.html that shows them; without dot it still completes."""

import re
import shutil

import pytest

pytest.importorskip("graphviz")
pytest.importorskip("matplotlib")

from tinygrad_attn.cli.tour import tour  # noqa: E402

PICTURES = ["graph_depth1", "graph_depth2", "graph_depth3", "graph_backward", "attention.png", "masks.png", "loss.png"]


def linked(index):
    return re.findall(r"(?:src|href)='([^']+)'", index.read_text())


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_tour_writes_every_picture_and_an_index_that_shows_them(tmp_path, capsys):
    index = tour(tmp_path, task="copy", steps=30, progress=False)
    text = index.read_text()
    files = linked(index)
    for picture in PICTURES:
        assert any(f.startswith(picture) for f in files), f"{picture} is not in index.html"
    for f in files:
        assert (tmp_path / f).stat().st_size > 1000, f"{f} is missing or empty"
    assert "graph_depth2.svg" in files and "<svg" in (tmp_path / "graph_depth2.svg").read_text()
    assert text.count("<tr>") == 6  # the decoded examples next to their targets
    out = capsys.readouterr().out
    assert "held-out" in out and str(index) in out


def test_tour_without_dot_writes_dot_files_and_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no dot anywhere
    index = tour(tmp_path / "out", task="copy", steps=5, progress=False)
    files = linked(index)
    assert {"graph_depth1.dot", "graph_depth2.dot", "graph_depth3.dot", "graph_backward.dot"} <= set(files)
    assert "install Graphviz" in index.read_text()
    assert "graphviz" in capsys.readouterr().err.lower()
