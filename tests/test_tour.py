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
    for f in tmp_path.iterdir():  # the tour names every file it wrote; the graphs' DOT text in one phrase
        if f.is_file():
            assert (f.name in out) or (f.suffix == ".dot" and "DOT text of each graph" in out), f"{f.name} unnamed"


def test_tour_without_dot_writes_dot_files_and_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no dot anywhere
    index = tour(tmp_path / "out", task="copy", steps=5, progress=False)
    files = linked(index)
    assert {"graph_depth1.dot", "graph_depth2.dot", "graph_depth3.dot", "graph_backward.dot"} <= set(files)
    assert "install Graphviz" in index.read_text()
    assert "graphviz" in capsys.readouterr().err.lower()


def test_tour_pictures_and_captions_say_exactly_what_is_drawn(tmp_path, monkeypatch):
    """Decoder rows are the positions that read one token and write the next: labelled so, captioned so; the
    masks show a decoder input as training builds it (the example, </s>, then padding)."""
    from tinygrad_attn import viz
    from tinygrad_attn.train import load_model

    drawn = {}
    monkeypatch.setattr(viz, "plot_layers", lambda model, src, tgt, **kw: drawn.update(rows=tgt))
    monkeypatch.setattr(viz, "plot_masks", lambda tokens, **kw: drawn.update(masks=list(tokens)))
    index = tour(tmp_path, task="reverse", steps=5, progress=False)
    text = index.read_text()
    first_input = re.search(r"<tr><td><code>([^<]*)</code>", text).group(1)
    model, task, _ = load_model(tmp_path / "run" / "checkpoint.npz")
    said = viz.translate(model, task, first_input)[0]  # what the drawn forward pass decoded
    reads, writes = ["<s>"] + list(said), list(said) + ["</s>"]
    assert drawn["rows"] == [f"{r}\u2192{w}" for r, w in zip(reads, writes)]
    assert drawn["masks"] == ["<s>"] + list(said) + ["</s>", "<pad>", "<pad>"]
    assert "reads \u2192 writes" in text and "looks at the input character it copies" not in text


def test_tour_without_dot_says_how_to_install_graphviz_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    tour(tmp_path / "out", task="copy", steps=3, progress=False)
    err = capsys.readouterr().err
    assert err.count("apt-get install graphviz") == 1 and err.count("was not found") == 1, err
    for depth in ("depth1", "depth2", "depth3", "backward"):
        assert f"graph_{depth}.dot" in err
