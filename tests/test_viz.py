"""Graph and attention pictures: the DOT text, the rendered SVG and the matplotlib figures."""

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import tinygrad_attn as tga
from tinygrad_attn.nn.layers import LayerNorm, Linear
from tinygrad_attn.nn.module import Module, ModuleList
from tinygrad_attn.scalar import Value

pytest.importorskip("graphviz")
from tinygrad_attn.viz import draw_graph, retain_grads, save
from tinygrad_attn.viz._layout import walk

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
SVG = "{http://www.w3.org/2000/svg}"


class Block(Module):
    def __init__(self, d):
        super().__init__()
        self.fc = Linear(d, d)
        self.norm = LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.fc(x).relu())


class Net(Module):
    def __init__(self, d=4, n=3):
        super().__init__()
        self.layers = ModuleList([Block(d) for _ in range(n)])
        self.head = Linear(d, 1)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def net_loss(n=3, seed=0):
    tga.manual_seed(seed)
    net = Net(n=n)
    x = tga.Tensor(np.linspace(-1, 1, 8).reshape(2, 4))
    return net, (net(x) ** 2).mean()


def neuron():
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2, b = Value(-3.0, label="w1"), Value(1.0, label="w2"), Value(6.8813735870195432, label="b")
    o = (x1 * w1 + x2 * w2 + b).tanh()
    return o, {"w1": w1, "w2": w2, "b": b}


# ---------------------------------------------------------------- reading DOT text


def nodes(source):
    """{node id: label} for the drawn nodes (the legend's left out)."""
    name = r'^\s*(n\d+|omitted|"?b[^" \[]+"?)'  # graph nodes, module boxes, the omitted-nodes note
    found = re.findall(name + r' \[label="((?:[^"\\]|\\.)*)"', source, flags=re.MULTILINE)
    found += [(i, lab) for i, lab in re.findall(name + r" \[label=(\w+)", source, flags=re.MULTILINE)]
    return dict(found)


def clusters(source):
    """{cluster name: enclosing cluster name or None} from the nesting of the DOT text."""
    parent, stack = {}, []
    for line in source.splitlines():
        m = re.match(r'\s*subgraph "?(cluster_[^" ]+)"? \{', line)
        if m:
            parent[m.group(1)] = stack[-1] if stack else None
            stack.append(m.group(1))
        elif line.strip() == "}" and stack:
            stack.pop()
    return parent


def statements(g):
    """({DOT name: (label, fill colour, innermost cluster or None)}, [(from, to)]) read from the statements
    graphviz keeps in g.body, one per entry; the legend's left out."""
    drawn, edges, inside = {}, [], []
    for line in (entry.strip() for entry in g.body):
        if line.startswith("subgraph "):
            inside.append(line.split()[1].strip('"'))
        elif line == "}":
            inside.pop()
        elif m := re.fullmatch(r'"?([\w.#]+)"? -> "?([\w.#]+)"?( \[.*\])?', line, flags=re.S):
            edges.append((m[1], m[2]))
        elif (m := re.fullmatch(r'"?([\w.#]+)"? \[label="?(.*?)"? fillcolor="(#\w+)".*\]', line, flags=re.S)) \
                and not m[1].startswith("legend_"):
            drawn[m[1]] = (m[2], m[3], inside[-1] if inside else None)
    return drawn, edges


# ---------------------------------------------------------------- graphs


def test_value_graph_shows_data_and_grad_like_micrograd():
    o, params = neuron()
    o.backward()
    g = draw_graph(o, params=params)
    labels = nodes(g.source)
    assert len(labels) == len(walk(o)) == 10
    assert "tanh\ndata 0.7071\ngrad 1.0000" in labels.values()
    assert "x1\ndata 2.0000\ngrad -1.5000" in labels.values()
    assert 'legend_param [label=parameter fillcolor="#fcd9a8"' in g.source
    assert re.search(
        r'label="w1\\ndata -3.0000\\ngrad 1.0000" fillcolor="#fcd9a8"', g.source.replace("\n", "\\n")
    )


def test_tensor_graph_nodes_clusters_and_parameter_names():
    net, loss = net_loss()
    g = draw_graph(loss, fold=False)
    graph = walk(loss)
    scalars = [t for t in graph if not t._parents and t.size == 1 and not t.requires_grad]
    labels = nodes(g.source)
    assert len(labels) == len(graph) - len(scalars)
    assert clusters(g.source) == {
        "cluster_root": None,
        **{f"cluster_layers.{k}": "cluster_root" for k in range(3)},
        **{f"cluster_layers.{k}.{m}": f"cluster_layers.{k}" for k in range(3) for m in ("fc", "norm")},
        "cluster_head": "cluster_root",
        "cluster_legend": None,
    }
    assert 'label="layers.1 (Block)"' in g.source and 'label="fc (Linear)"' in g.source
    names = {lab.split("\n")[0] for lab in labels.values()}
    assert {name for name, _ in net.named_parameters()} <= names
    # layers.2.fc.weight is drawn inside the cluster of layers.2.fc
    inner = g.source.split('subgraph "cluster_layers.2.fc" {')[1].split("}")[0]
    assert 'label="layers.2.fc.weight\n(4, 4) float32"' in inner


def test_same_graph_gives_same_text():
    assert draw_graph(net_loss()[1]).source == draw_graph(net_loss()[1]).source
    assert draw_graph(net_loss(seed=1)[1]).source == draw_graph(net_loss(seed=2)[1]).source


@pytest.mark.parametrize("fold", [True, False])
def test_depth_collapses_modules_into_boxes(fold):
    net, loss = net_loss()
    g = draw_graph(loss, depth=1, fold=fold)
    boxes = [lab for lab in nodes(g.source).values() if "\nparams: " in lab]
    per_block = sum(p.size for p in net.layers[0].parameters())
    if fold:
        assert boxes[0].startswith(
            f"layers.0-2 (Block)  x3\nin: (2, 4)\nout: (2, 4)\nparams: {per_block} each"
        )
        assert len(boxes) == 2
    else:
        assert [b.split("\n")[0] for b in boxes] == [
            "layers.0 (Block)",
            "layers.1 (Block)",
            "layers.2 (Block)",
            "head (Linear)",
        ]
        assert f"params: {per_block}" in boxes[1]
    assert boxes[-1].startswith("head (Linear)\nin: (2, 4)\nout: (2, 1)\nparams: 5")
    assert "cluster_layers.0" not in g.source and "cluster_root" in g.source
    assert len(nodes(draw_graph(loss, depth=0).source)) < len(nodes(g.source))


def test_identical_layers_fold_behind_the_first():
    _, loss = net_loss(n=4)
    g = draw_graph(loss)
    assert "cluster_layers.0.fc" in g.source and "cluster_layers.1" not in g.source
    folded = [lab for lab in nodes(g.source).values() if lab.startswith("layers.1-3 (Block)  x3\n")]
    assert len(folded) == 1 and folded[0].endswith("same layers as layers.0, drawn open")


def test_gradients_appear_after_backward():
    _, loss = net_loss()
    before = draw_graph(loss, show=("shape", "grad"), fold=False).source
    retain_grads(loss)
    loss.backward()
    after = nodes(draw_graph(loss, show=("shape", "grad"), fold=False).source)
    stats = nodes(draw_graph(loss, show=("grad_stats",)).source)
    assert "grad" not in before.replace("legend", "")
    assert "mean\n() float32\ngrad 1." in after.values()
    assert sum("grad norm" in lab for lab in after.values()) > 10
    assert any(re.search(r"grad min \S+ mean \S+ max \S+", lab) for lab in stats.values())


def test_backward_view_numbers_the_reverse_topological_order():
    _, loss = net_loss(n=2)
    g = draw_graph(loss, backward=True, fold=False)
    steps = sorted(int(m) for m in re.findall(r'label="\[(\d+)\]', g.source))
    assert steps == list(range(1, len(loss._topo()) + 1))
    assert 'label="[1] mean' in g.source
    assert g.source.count("dir=back") == sum(1 for t in loss._topo() for p in t._parents if p.requires_grad)
    assert "grad sums 2 paths" in g.source  # layers.0's output feeds layers.1's residual add and its Linear


def test_budget_collapses_modules_and_says_so():
    _, loss = net_loss()
    with pytest.warns(UserWarning, match="collapsed to depth"):
        g = draw_graph(loss, max_nodes=12)
    assert len(nodes(g.source)) <= 12
    assert "over the max_nodes=12 budget" in g.source
    assert "params: " in g.source


def test_deep_chain_is_summarised_without_recursion():
    x = tga.Tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0001
    with pytest.warns(UserWarning, match="nearest the output"):
        g = draw_graph(y, max_nodes=50)
    labels = nodes(g.source)
    assert len(labels) == 50
    assert "... 99,952 earlier nodes\n(99,951 ops) not drawn" in labels.values()
    assert "mul 1.0001\n(3,) float32" in labels.values()


def test_without_dot_the_dot_file_is_written_and_install_hint_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    o, _ = neuron()
    g = draw_graph(o)
    written = save(g, tmp_path / "neuron.svg")
    assert written == tmp_path / "neuron.dot" and written.read_text() == g.source
    assert not (tmp_path / "neuron.svg").exists()
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and "brew install graphviz" in err and str(written) in err


def test_notebook_display_without_dot_shows_the_text_and_the_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    g = draw_graph(neuron()[0])
    shown = g._repr_mimebundle_()
    assert list(shown) == ["text/plain"] and "brew install graphviz" in shown["text/plain"]
    assert shown["text/plain"].endswith(g.source)


def transformer_loss(layers=2):
    from tinygrad_attn import functional as F
    from tinygrad_attn.nn import make_model

    tga.manual_seed(0)
    model = make_model(9, 9, N=layers, d_model=16, d_ff=32, h=2, dropout=0.0)
    logits = model(np.array([[3, 4, 5, 6]]), np.array([[1, 7, 8]]))
    return model, F.cross_entropy(logits.reshape(-1, 9), np.array([7, 8, 2]))


def test_transformer_at_depth_1_is_a_handful_of_boxes():
    model, loss = transformer_loss()
    g = draw_graph(loss, depth=1, model=model)
    boxes = sorted(lab.split("\n")[0] for lab in nodes(g.source).values() if "\nparams: " in lab)
    assert boxes == [
        "generator (Linear)",
        "positional (PositionalEncoding)",
        "positional (PositionalEncoding)",
        "src_embed (Embedding)",
        "tgt_embed (Embedding)",
        "transformer.decoder (TransformerDecoder)",
        "transformer.encoder (TransformerEncoder)",
    ]
    n = sum(p.size for p in model.transformer.encoder.parameters())
    assert (
        f"transformer.encoder (TransformerEncoder)\nin: (1, 4, 16)\nout: (1, 4, 16)\nparams: {n:,}"
        in g.source
    )
    assert set(clusters(g.source)) == {"cluster_root", "cluster_legend"}


def test_transformer_clusters_follow_the_module_tree():
    model, loss = transformer_loss()
    g = draw_graph(loss, model=model, fold=False, max_nodes=1000)
    parent = clusters(g.source)
    chain, name = [], "cluster_transformer.decoder.layers.1.cross_attn.w_q"
    while name:
        chain.append(name)
        name = parent[name]
    assert chain[::-1] == [
        "cluster_root",
        "cluster_transformer.decoder",
        "cluster_transformer.decoder.layers.1",
        "cluster_transformer.decoder.layers.1.cross_attn",
        "cluster_transformer.decoder.layers.1.cross_attn.w_q",
    ]
    inner = g.source.split('subgraph "cluster_transformer.decoder.layers.1.cross_attn.w_q" {')[1].split("}")[0]
    assert 'label="transformer.decoder.layers.1.cross_attn.w_q.weight\n(16, 16) float32"' in inner
    names = {lab.split("\n")[0] for lab in nodes(g.source).values()}
    assert {n for n, _ in model.named_parameters()} <= names
    folded = draw_graph(loss, depth=2, model=model).source
    assert (
        "layers.0-1 (TransformerEncoderLayer)  x2" in folded
        and "layers.0-1 (TransformerDecoderLayer)  x2" in folded
    )


TOKEN_INPUTS = [  # (label's first line, the ids transformer_loss() feeds, the op they go into, its module)
    ("src", [[3, 4, 5, 6]], "embedding", "src_embed"),
    ("tgt", [[1, 7, 8]], "embedding", "tgt_embed"),
    ("input", [7, 8, 2], "cross_entropy", None),  # the target: an array made outside the model, unnamed
]


@pytest.mark.parametrize("depth", [None, 1, 2])
@pytest.mark.parametrize("name, ids, op, module", TOKEN_INPUTS, ids=[r[0] for r in TOKEN_INPUTS])
def test_token_ids_are_input_nodes_drawn_into_the_embeddings(depth, name, ids, op, module):
    model, loss = transformer_loss()
    drawn, edges = statements(draw_graph(loss, depth=depth, model=model, max_nodes=1000))
    ids = np.array(ids)
    label = f"{name}\n{ids.shape} int64\nids " + " ".join(str(i) for i in ids.ravel())
    [node] = [k for k, (lab, _, _) in drawn.items() if lab == label]
    assert drawn[node][1:] == ("#bfe0fb", None)  # the input colour, outside every module
    [into] = [b for a, b in edges if a == node]
    if module is not None and depth == 1:  # the embedding is inside its module's closed box
        assert into == "b" + module
    else:
        assert drawn[into][0].startswith(op + "\n")
        assert drawn[into][2] == (None if module is None else "cluster_" + module)


@pytest.mark.parametrize("ids, line", [
    (np.array([[2, 5]]), "ids 2 5"),
    (np.array([7], dtype=np.int32), "ids 7"),  # one token (a decoding step): drawn, not folded into a label
    (np.arange(15).reshape(3, 5) % 10, "ids 0 1 2 3 4 5 6 7 8 9 0 1 ..."),  # the first twelve, row after row
])
def test_an_embedding_called_on_an_array_draws_it_as_an_input_named_ids(ids, line):
    tga.manual_seed(0)
    table = tga.nn.Embedding(10, 3)
    drawn, edges = statements(draw_graph(table(ids).sum()))
    [node] = [k for k, (lab, _, _) in drawn.items() if lab == f"ids\n{ids.shape} {ids.dtype}\n{line}"]
    assert drawn[node][1:] == ("#bfe0fb", None)
    [into] = [b for a, b in edges if a == node]
    assert drawn[into][0].startswith("embedding\n") and drawn[into][2] == "cluster_root"


def test_importing_the_package_does_not_import_graphviz_or_matplotlib():
    code = ("import sys, tinygrad_attn, tinygrad_attn.viz; "
            "print('graphviz' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@needs_dot
def test_svg_has_the_clusters_nested_and_every_node(tmp_path):
    _, loss = net_loss()
    g = draw_graph(loss, fold=False)
    root = ET.parse(save(g, tmp_path / "net.svg")).getroot()
    groups = {
        el.find(f"{SVG}title").text: el
        for el in root.iter(f"{SVG}g")
        if el.get("class") in ("cluster", "node")
    }
    drawn = [t for t, el in groups.items() if el.get("class") == "node" and not t.startswith("legend")]
    assert len(drawn) == len(nodes(g.source))

    def box(name):
        shape = groups[name].find(f"{SVG}path")
        shape = shape.get("d") if shape is not None else groups[name].find(f"{SVG}polygon").get("points")
        pts = np.array(re.findall(r"(-?[\d.]+),(-?[\d.]+)", shape), dtype=float)
        return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()

    outer, inner = box("cluster_layers.1"), box("cluster_layers.1.fc")
    assert outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "layers.1 (Block)" in texts and "layers.1.fc.weight" in texts


# ---------------------------------------------------------------- the command


def test_graph_command_writes_the_picture(tmp_path):
    from tinygrad_attn.cli import main

    out = tmp_path / "mlp.dot"
    assert main(["graph", "mlp", "--backward", "--show", "shape,grad", "-o", str(out)]) == 0
    text = out.read_text()
    assert (
        "subgraph cluster_fc1 {" in text and "[1] mean" in text and "fc2.weight" in text and "grad " in text
    )


# ---------------------------------------------------------------- attention and masks


@pytest.fixture
def plt():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def tiny_model():
    from tinygrad_attn.nn import make_model

    tga.manual_seed(0)
    model = make_model(12, 12, N=2, d_model=16, d_ff=32, h=2, dropout=0.0)
    with tga.no_grad():
        model(np.array([[3, 4, 5, 6]]), np.array([[1, 7, 8]]))
    return model


def tick_labels(ax, axis):
    return [t.get_text() for t in (ax.get_xticklabels() if axis == "x" else ax.get_yticklabels())]


def test_attention_heatmaps_put_tokens_on_the_axes(plt, tmp_path):
    from tinygrad_attn.viz import attention_weights, plot_attention, plot_heads, plot_layers

    model = tiny_model()
    layers = attention_weights(model)
    assert [n for n, _ in layers] == [
        "transformer.encoder.layers.0.self_attn",
        "transformer.encoder.layers.1.self_attn",
        "transformer.decoder.layers.0.self_attn",
        "transformer.decoder.layers.0.cross_attn",
        "transformer.decoder.layers.1.self_attn",
        "transformer.decoder.layers.1.cross_attn",
    ]
    src, tgt = ["a", "b", "c", "d"], ["<s>", "x", "y"]
    fig = plot_attention(layers[3][1], src, tgt, head=1, path=tmp_path / "one.png")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("key (attended to)", "query (attending)", "head 1")
    assert tick_labels(ax, "x") == src and tick_labels(ax, "y") == tgt
    assert np.allclose(ax.images[0].get_array(), layers[3][1][0, 1])
    assert (tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"
    assert len([a for a in plot_heads(layers[0][1], src, src).axes if a.images]) == 2
    grid = plot_layers(model, src, tgt)
    panels = [a for a in grid.axes if a.images]
    assert len(panels) == 6 * 2
    assert tick_labels(panels[6], "y") == tgt and tick_labels(panels[6], "x") == src  # decoder 0 cross_attn
    assert tick_labels(panels[4], "x") == tgt  # decoder 0 self_attn: target on both axes
    assert panels[0].get_ylabel() == "encoder 0\nself_attn"


def test_mask_pictures_show_padding_causal_and_combined(plt):
    from tinygrad_attn.viz import plot_masks

    tokens = ["<s>", "a", "b", "<pad>"]
    fig = plot_masks(tokens)
    panels = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in panels] == [
        "padding (key_padding_mask)",
        "causal (no looking ahead)",
        "combined: padding OR causal",
    ]
    pad, causal, both = (np.asarray(a.images[0].get_array()) > 0 for a in panels)
    assert pad[:, 3].all() and not pad[:, :3].any()
    assert (causal == np.triu(np.ones((4, 4), bool), 1)).all() and (both == (pad | causal)).all()
    assert tick_labels(panels[0], "x") == tokens
    assert panels[0].get_xlabel().startswith("key (attended to)\n\u25a0 True: ignored")


def test_attention_command_draws_a_checkpoint(plt, tmp_path):
    from tinygrad_attn.cli import main
    from tinygrad_attn.serialization import save as save_checkpoint
    from tinygrad_attn.train import Run, config_for

    run = Run(config_for("reverse", num_encoder_layers=1, num_decoder_layers=1, d_model=16, dim_feedforward=32,
                         nhead=2, eval_size=10))
    save_checkpoint(run.state(), tmp_path / "checkpoint.npz")
    out, masks = tmp_path / "att.png", tmp_path / "masks.png"
    plt.close("all")
    assert main(["attention", str(tmp_path / "checkpoint.npz"), "123", "-o", str(out), "--masks", str(masks)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and masks.read_bytes()[:4] == b"\x89PNG"
    assert plt.get_fignums() == []  # both written and closed: a run in-process (a notebook, a test) keeps none


def test_legend_shapes_match_the_nodes_they_explain():
    a, b = Value(2.0, label="a"), Value(3.0, label="b")
    value_source = draw_graph((a * b).tanh(), params={"a": a}).source
    assert re.search(r"legend_param \[[^\]]*shape=ellipse", value_source)
    assert re.search(r"legend_input \[[^\]]*shape=ellipse", value_source)
    x = tga.Tensor(np.ones((2, 3)), requires_grad=True)
    tensor_source = draw_graph((x * 2).sum()).source
    assert not re.search(r"legend_\w+ \[[^\]]*shape=ellipse", tensor_source)


def test_a_padded_batch_row_is_drawn_with_exactly_its_real_tokens(plt):
    from tinygrad_attn.nn import MultiheadAttention
    from tinygrad_attn.viz import plot_attention, plot_heads

    tga.manual_seed(0)
    attn = MultiheadAttention(24, 12)
    x = tga.randn(2, 5, 24)
    pad = np.array([[False] * 5, [False, False, False, True, True]])  # row 1: three real tokens
    attn(x, x, x, key_padding_mask=pad)
    tokens = [["[CLS]", "a", "b", "c", "[SEP]"], ["[CLS]", "d", "[SEP]", "[PAD]", "[PAD]"]]
    keep = (~pad).astype(np.int64)  # Hugging Face's attention_mask: 1 = real token
    fig = plot_attention(attn.attn_weights, tokens, tokens, head=3, batch=1, attention_mask=keep)
    ax = fig.axes[0]
    assert tick_labels(ax, "x") == tick_labels(ax, "y") == ["[CLS]", "d", "[SEP]"]
    np.testing.assert_allclose(ax.images[0].get_array(), attn.attn_weights[1, 3, :3, :3])
    panels = [a for a in plot_heads(attn.attn_weights, tokens, tokens, batch=0).axes if a.images]
    assert len(panels) == 12 and len({round(a.get_position().y0, 3) for a in panels}) == 3  # a 3 x 4 grid
    with pytest.raises(ValueError, match=r"plot_attention: 2 labels for 5 key columns; .* batch row 0"):
        plot_attention(attn.attn_weights, ["a", "b"], head=0, batch=0)
    with pytest.raises(ValueError, match="batch row 2 does not exist"):
        plot_attention(attn.attn_weights, batch=2)
