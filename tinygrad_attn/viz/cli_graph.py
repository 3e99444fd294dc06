"""``tinygrad-attn graph``: render the computation graph of a demo expression or model to a file.

tinygrad-attn graph neuron -o neuron.svg
tinygrad-attn graph mlp --backward -o mlp.png
tinygrad-attn graph transformer --depth 2 -o transformer.svg
"""

import time

import numpy as np

EXAMPLES = ("neuron", "mlp", "transformer")


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
        "-o", "--out", default=None, help="output file; .svg, .png, .pdf or .dot (default: EXAMPLE.svg)"
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=None,
        help="draw modules deeper than this as one box each (default: 2 for the transformer, "
        "everything otherwise)",
    )
    parser.add_argument("--backward", action="store_true", help="number the nodes in backward() order")
    parser.add_argument(
        "--show", default="shape", help="comma-separated: shape, data, grad, grad_stats (default: shape)"
    )
    parser.add_argument("--max-nodes", type=int, default=300, help="node budget before collapsing (300)")
    parser.add_argument("--layers", type=int, default=6, help="transformer: encoder and decoder layers (6)")
    parser.add_argument("--d-model", type=int, default=512, help="transformer: d_model (512)")
    parser.add_argument("--heads", type=int, default=8, help="transformer: attention heads (8)")
    parser.add_argument("--no-fold", action="store_true", help="draw identical layers one box each")


def example(name, layers=6, d_model=512, heads=8):
    """(output, model or params, title) for one of the CLI's examples, after backward()."""
    import tinygrad_attn as tga

    tga.manual_seed(0)
    if name == "neuron":
        from ..scalar import Value

        x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
        w1, w2, b = Value(-3.0, label="w1"), Value(1.0, label="w2"), Value(6.8813735870195432, label="b")
        o = (x1 * w1 + x2 * w2 + b).tanh()
        o.backward()
        return o, {"w1": w1, "w2": w2, "b": b}, "one neuron: tanh(x1*w1 + x2*w2 + b)"
    if name == "mlp":
        from ..nn.layers import Linear
        from ..nn.module import Module

        class MLP(Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc2 = Linear(3, 4), Linear(4, 1)

            def forward(self, x):
                return self.fc2(self.fc1(x).tanh())

        model = MLP()
        x = tga.Tensor(np.linspace(-1, 1, 6).reshape(2, 3))
        x.name = "x"
        loss = ((model(x) - 1.0) ** 2).mean()
        from .graph import retain_grads

        retain_grads(loss).backward()
        return loss, model, "an MLP on tensors: mean((fc2(tanh(fc1(x))) - 1)^2)"
    from .. import functional as F
    from ..nn.model import make_model

    model = make_model(11, 11, N=layers, d_model=d_model, d_ff=4 * d_model, h=heads, dropout=0.0)
    src = tga.Tensor(np.array([[1, 4, 3, 7, 2, 9, 5]]))
    tgt_in = tga.Tensor(np.array([[1, 2, 3, 4, 5, 6]]))
    tgt_out = tga.Tensor(np.array([[2, 3, 4, 5, 6, 7]]))
    logits = model(src, tgt_in)
    target = tgt_out.reshape(-1)
    target.name = "target ids"
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target)
    loss.backward()
    return loss, model, f"make_model(N={layers}, d_model={d_model}, h={heads}): cross-entropy loss"


def run(args):
    from .graph import draw_graph, save

    depth = args.depth if args.depth is not None else (2 if args.example == "transformer" else None)
    start = time.perf_counter()
    output, model, title = example(args.example, args.layers, args.d_model, args.heads)
    built = time.perf_counter()
    params = model if isinstance(model, dict) else None
    g = draw_graph(
        output,
        depth=depth,
        show=tuple(s.strip() for s in args.show.split(",")),
        backward=args.backward,
        model=None if params else model,
        params=params,
        max_nodes=args.max_nodes,
        fold=not args.no_fold,
        title=title,
    )
    written = save(g, args.out or f"{args.example}.svg")
    done = time.perf_counter()
    print(f"wrote {written} (model and backward {built - start:.1f} s, drawing {done - built:.1f} s)")
    return 0
