"""Regenerate the pictures in docs/figures/ (they are made by this script, never by hand).

    python docs/make_figures.py              # graphs, masks, and an untrained model's attention
    python docs/make_figures.py --checkpoint runs/dates/checkpoint.npz   # a trained model's attention

Needs the graphviz and matplotlib Python packages and Graphviz's `dot` program. The trained
checkpoint comes from `tinygrad-attn train dates --out runs/dates` (a few minutes on 2 cores).
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
from layering import LAYERS, imports_between_modules

import tinygrad_attn as tga
from tinygrad_attn.train import load_model
from tinygrad_attn.viz import draw_graph, plot_layers, plot_masks, save
from tinygrad_attn.viz.attention import translate
from tinygrad_attn.viz.examples import example

FIGURES = Path(__file__).parent / "figures"


def graphs():
    o, params, title = example("neuron")
    save(draw_graph(o, params=params, title=title), FIGURES / "neuron.png", keep_dot=False)
    loss, model, title = example("mlp")
    save(
        draw_graph(loss, model=model, show=("shape", "grad"), title=title + ", after backward"),
        FIGURES / "mlp.png",
        keep_dot=False,
    )
    save(
        draw_graph(loss, model=model, backward=True, title=title + ": the order backward() visits"),
        FIGURES / "mlp_backward.png",
        keep_dot=False,
    )
    start = time.perf_counter()
    loss, model, title = example("transformer", layers=6, d_model=512, heads=8)
    built = time.perf_counter()
    for depth in (1, 2, 3):
        tick = time.perf_counter()
        save(
            draw_graph(loss, depth=depth, model=model, title=f"{title}, depth={depth}"),
            FIGURES / f"transformer_depth{depth}.png",
            keep_dot=False,
        )
        print(
            f"make_model() 6+6 at depth={depth}: draw_graph and PNG {time.perf_counter() - tick:.2f} s "
            f"(model, forward and backward took {built - start:.1f} s)"
        )


def without_implied(edges):
    """Drop an edge a -> c when a path a -> b -> ... -> c exists anyway (a transitive reduction)."""
    reach = {}

    def reachable(a):  # every module a depends on, directly or not
        if a not in reach:
            reach[a] = set()
            for x, y in edges:
                if x == a:
                    reach[a] |= {y} | reachable(y)
        return reach[a]

    return {(a, c) for a, c in edges if not any(c in reachable(b) for x, b in edges if x == a and b != c)}


def architecture():
    """The package's modules coloured by layer, an arrow for each import that no chain of imports implies."""
    import graphviz

    colours = ["#fde2c4", "#fbd3a8", "#cfe3f7", "#cdebd0", "#e7dcf3", "#f3f3f3", "#fff7c2"]
    dot = graphviz.Digraph(graph_attr={"rankdir": "BT", "fontname": "Helvetica", "nodesep": "0.25",
                                       "ranksep": "0.45", "labelloc": "t",
                                       "label": "tinygrad_attn's modules: A -> B means A imports B "
                                                "(imports implied by a chain are not drawn)"},
                           node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                      "fontsize": "11"},
                           edge_attr={"color": "#777777", "arrowsize": "0.6"})
    layer_of = {}
    for (layer, modules), colour in zip(LAYERS, colours):
        for m in modules:
            layer_of[m] = layer
            dot.node(m, fillcolor=colour)
    with dot.subgraph(name="cluster_legend", graph_attr={"label": "layers", "fontsize": "10"}) as legend:
        for (layer, _), colour in zip(LAYERS, colours):
            legend.node(f"legend {layer}", layer, fillcolor=colour, fontsize="9")
    at_load = imports_between_modules(at_load_only=True)
    # every import, except a function-level one back to a module that imports this one when it loads
    edges = {(a, b) for a, b in imports_between_modules() if a in layer_of and b in layer_of
             and ((a, b) in at_load or (b, a) not in at_load)}
    for a, b in sorted(without_implied(edges)):
        dot.edge(a, b)
    save(dot, FIGURES / "architecture.png", keep_dot=False)


def attention(checkpoint, text):
    if checkpoint:
        model, task, _ = load_model(checkpoint)
        output, src, tgt = translate(model, task, text)
        title = f"{text!r} -> {output!r} (trained on dates): rows are queries, columns are keys"
    else:
        from tinygrad_attn.nn import make_model

        tga.manual_seed(0)
        model = make_model(12, 12, N=2, d_model=32, d_ff=64, h=4, dropout=0.0)
        src, tgt = ["<s>", "the", "cat", "sat", "down", "</s>"], ["<s>", "le", "chat", "assis", "."]
        with tga.no_grad():
            model(np.array([[1, 5, 7, 3, 9, 2]]), np.array([[1, 4, 6, 8, 10]]))
        title = "an untrained model's attention: rows are queries, columns are keys"
    plot_layers(model, src, tgt, title=title, path=FIGURES / "attention_grid.png")
    plot_masks(
        ["<s>", "2", "0", "0", "1", "<pad>", "<pad>"],
        path=FIGURES / "masks.png",
        title="which keys each query may not see (a target of 5 tokens padded to 7)",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a training checkpoint for the attention grid")
    parser.add_argument("--text", default="3rd of May 1999", help="the input for the attention grid")
    args = parser.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    architecture()
    graphs()
    attention(args.checkpoint, args.text)
    for f in sorted(FIGURES.iterdir()):
        print(f"{f.stat().st_size / 1024:7.1f} KB  {f}")


if __name__ == "__main__":
    main()
