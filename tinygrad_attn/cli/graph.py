"""``tinygrad-attn graph``: render the computation graph of a demo expression or model to a file.

tinygrad-attn graph neuron -o neuron.svg
tinygrad-attn graph mlp --backward -o mlp.png
tinygrad-attn graph transformer --depth 2 -o transformer.svg
tinygrad-attn graph transformer -o graph.html      # click into modules, inspect nodes, step through backward
tinygrad-attn graph --pretrained all-MiniLM-L6-v2 --depth 2 -o minilm.svg
"""

import os
import time

from ..viz.examples import EXAMPLES
from .options import names_from, non_negative_int, positive_int

FORMATS = (".svg", ".png", ".pdf", ".dot", ".gv", ".html")  # save()'s renderings and DOT text, or explore()'s page


def add_arguments(parser):
    parser.add_argument(
        "example",
        nargs="?",
        default="transformer",
        choices=EXAMPLES,
        help="what to draw: one neuron on Values, a small MLP on Tensors, or make_model()'s "
        "loss (default: transformer)",
    )
    parser.add_argument(
        "-o", "--out", default=None,
        help="output file; .svg, .png, .pdf, .dot, .gv, or .html for a page to click into (default: EXAMPLE.svg)"
    )
    parser.add_argument(
        "--depth",
        type=non_negative_int,
        default=None,
        help="draw modules deeper than this as one box each (default: 2 for the transformer, "
        "everything otherwise)",
    )
    parser.add_argument("--backward", action="store_true", help="number the nodes in backward() order")
    parser.add_argument(
        "--show", type=names_from(("shape", "data", "grad", "grad_stats")), default=("shape",),
        help="comma-separated: shape, data, grad, grad_stats (default: shape)"
    )
    parser.add_argument("--max-nodes", type=positive_int, default=300, help="node budget before collapsing (300)")
    parser.add_argument("--layers", type=positive_int, default=6, help="transformer: encoder and decoder layers (6)")
    parser.add_argument("--d-model", type=positive_int, default=512, help="transformer: d_model (512)")
    parser.add_argument("--heads", type=positive_int, default=8, help="transformer: attention heads (8)")
    parser.add_argument("--no-fold", action="store_true", help="draw identical layers one box each")
    parser.add_argument("--pretrained", default=None, metavar="NAME",
                        help="draw a pretrained encoder's forward instead (all-MiniLM-L6-v2, a Hugging Face cache "
                        "name or an HF-layout folder): the mean of its last hidden states, after backward")
    parser.add_argument("--sentence", default="The cat sat on the mat.", help="--pretrained: the input sentence")


def run(args):
    from ..viz.examples import example
    from ..viz.graph import draw_graph, save

    out = args.out or ("pretrained.svg" if args.pretrained else f"{args.example}.svg")
    if os.path.isdir(out):
        raise ValueError(f"graph: -o {out} is a directory; give a file such as graph.svg")
    suffix = os.path.splitext(out)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"graph: -o: {'unknown format ' + repr(suffix) if suffix else out + ' has no extension'}; "
                         f"use {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    big = args.example == "transformer" or args.pretrained
    depth = args.depth if args.depth is not None else (2 if big else None)
    start = time.perf_counter()
    if args.pretrained:
        output, model, title = _pretrained(args.pretrained, args.sentence)
    else:
        output, model, title = example(args.example, args.layers, args.d_model, args.heads)
    built = time.perf_counter()
    params = model if isinstance(model, dict) else None
    if args.out and args.out.endswith(".html"):  # the page you click into, instead of a picture
        from ..viz.explorer import explore

        explore(output, model=None if params else model, params=params, path=args.out, title=title)
        print(f"wrote {args.out} (model and backward {built - start:.1f} s, page {time.perf_counter() - built:.1f} s)")
        return 0
    g = draw_graph(
        output,
        depth=depth,
        show=args.show,
        backward=args.backward,
        model=None if params else model,
        params=params,
        max_nodes=args.max_nodes,
        fold=not args.no_fold,
        title=title,
    )
    written = save(g, out)
    done = time.perf_counter()
    print(f"wrote {written} (model and backward {built - start:.1f} s, drawing {done - built:.1f} s)")
    return 0


def _pretrained(name, sentence):
    """(the mean of the last hidden states after backward, the model, a title) for a pretrained encoder."""
    from ..nn import spelled_out
    from ..pretrained import load

    model = load(name)
    batch = model.tokenize([sentence])
    with spelled_out():  # every step of attention in the picture
        out = model(batch["input_ids"], attention_mask=batch["attention_mask"]).mean()
    out.backward(retain_graph=True)  # the graph kept, for the page's gradient along each edge
    tokens = " ".join(batch["tokens"][0])
    return out, model, f"{name}: mean of the last hidden states of {tokens}"
