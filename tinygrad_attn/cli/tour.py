"""``tinygrad-attn tour``: train a small transformer, look inside it, and leave it all in one folder.

In about a minute on a laptop: train an encoder-decoder to reverse digit strings, show its
answers next to the targets, then write its computation graph (depth 1, 2, 3 and the backward
pass), its attention, its masks and its loss curve into the output folder with an index.html
that explains each picture. Without Graphviz's `dot` the graphs are written as DOT text, and
without matplotlib the heatmaps are skipped; either way the tour completes and says what to install.
"""

import contextlib
import html
import io
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .options import positive_int

DEFAULT_OUT = "tinygrad_attn_out/tour"
VIZ_HINT = "pip install 'tinygrad_attn[viz]'"


def add_arguments(parser):
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    from ..data import TASKS

    parser.add_argument("--task", default="reverse", choices=TASKS,
                        help="what the model learns (default: reverse; dates takes about 2 minutes)")
    parser.add_argument("--steps", type=positive_int,
                        help="training steps (default: the task's own, see tinygrad-attn train)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    tour(args.out, args.task, args.steps, progress=not args.no_progress)
    return 0


def tour(out=DEFAULT_OUT, task="reverse", steps=None, progress=True):
    """Run the tour; returns the path of the index.html it wrote."""
    from ..train import load_model, train

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"tour: --out {out} is a file; give a folder for the pictures (a new one is created)")
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # each tour trains afresh
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    _say(f"1. Training a 2+2-layer transformer to {task} (each step: forward, loss, backward, Adam).")
    result = train(task, steps=steps, out=run_dir, progress=progress)
    model, task_obj, cfg = load_model(run_dir / "checkpoint.npz")
    print(f"   {result['steps']} steps in {result['seconds']:.0f} s; exact match on {cfg.eval_size} held-out "
          f"examples: greedy {result['exact_match']:.1%}")

    _say("2. What it answers, on examples it never trained on:")
    examples = _show_examples(model, task_obj)

    figures = []  # (file name, caption)
    _say("3. Its computation graph, drawn from the engine's own record of the ops:")
    figures += _graphs(model, task_obj, examples[0], out)
    _say("4. Where it looks: attention weights and masks.")
    figures += _attention(model, task_obj, examples[0][0], out)
    figures += _loss_curve(result["losses"], task, len(task_obj.tgt_vocab), out)

    index = _write_index(out, task, result, cfg, examples, figures)
    _say(f"Done in {time.perf_counter() - start:.0f} s. Open {index} in a browser to see everything;")
    print(f"   the trained checkpoint is {run_dir / 'checkpoint.npz'}. Next: tinygrad-attn demo (step-through demos).")
    return index


def _say(text):
    print("\n" + text, flush=True)


def _show_examples(model, task):
    from ..data import heldout
    from ..train import evaluate

    pairs, _ = heldout(task, 6)
    _, outputs = evaluate(model, task, pairs)
    width = max(len(s) for s, _ in pairs)
    for (src, tgt), got in zip(pairs, outputs):
        print(f"   {src:>{width}}  ->  {got:{width}}  {'ok' if got == tgt else 'expected ' + tgt}")
    return [(src, tgt, got) for (src, tgt), got in zip(pairs, outputs)]


def _graphs(model, task, example, out):
    """The loss of one example, drawn at three depths and as the backward pass."""
    try:
        import graphviz  # noqa: F401 (only to find out early that it is missing)

        from ..viz import draw_graph, retain_grads, save
        from ..viz.graph import INSTALL_HINT
    except ImportError:
        print(f"   skipped: the graphviz Python package is missing ({VIZ_HINT})")
        return []
    from .. import data
    from .. import functional as F
    from ..nn import spelled_out
    from ..tensor import Tensor

    src_text, tgt_text, _ = example
    src, tgt = data.batch([(src_text, tgt_text)], task.src_vocab, task.tgt_vocab)
    model.eval()
    with spelled_out():  # every step of attention in the pictures
        logits = model(src, tgt[:, :-1])
    target = Tensor(tgt[:, 1:].reshape(-1))  # the next token at every position
    target.name = "target ids"
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target)
    captions = {
        1: "Depth 1: the whole model as a handful of boxes (embeddings, positions, encoder, decoder, "
           "output projection), each with its input and output shapes and parameter count.",
        2: "Depth 2: inside the encoder and decoder, the identical layers folded into one box (x2), and the "
           "parameters named by their module path.",
        3: "Depth 3: one encoder and one decoder layer opened up: self-attention, the residual adds, "
           "LayerNorm, the feed-forward network, and the decoder's cross-attention to the encoder's output.",
    }
    made = []
    with contextlib.redirect_stderr(io.StringIO()):  # without dot, save() says so each time: the tour says it once
        for depth in (1, 2, 3):
            graph = draw_graph(loss, depth=depth, model=model,
                               title=f"the loss of one {task.name} example, depth {depth}")
            made.append((save(graph, out / f"graph_depth{depth}.svg").name, captions[depth]))
        retain_grads(loss).backward(retain_graph=True)  # the graph kept for the page's gradient along each edge
        graph = draw_graph(loss, depth=2, model=model, backward=True, title="the backward pass, step by step")
        made.append((save(graph, out / "graph_backward.svg").name,
                     "The backward pass: [k] is the order in which backward() visits each node, from the loss back "
                     "to the parameters; every arrow carries a gradient by the chain rule."))
    names = ", ".join(name for name, _ in made)
    if any(name.endswith(".dot") for name, _ in made):
        print(f"   Graphviz's `dot` program was not found, so the graphs were written as DOT text: {names}\n"
              + "   " + INSTALL_HINT.replace("\n", "\n   "), file=sys.stderr)
    if shutil.which("dot"):
        from ..viz import explore

        explore(loss, model=model, path=out / "graph.html", title=f"the loss of one {task.name} example")
        made.insert(0, ("graph.html", "The same graph to explore: click a green box to open that module in place "
                        "and its frame to close it, click any node for its shape, values, gradient and the "
                        "primitive that made it, and step through the backward pass with the slider."))
    beside = " (the DOT text of each graph beside it, as .dot)" if shutil.which("dot") else ""
    print(f"   wrote {', '.join(name for name, _ in made)}{beside}")
    return made


def _attention(model, task, text, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print(f"   skipped: matplotlib is missing ({VIZ_HINT})")
        return []
    from .. import data, viz

    output, src_tokens, tgt_tokens = viz.translate(model, task, text)
    eos, pad = task.tgt_vocab.itos[data.EOS], task.tgt_vocab.itos[data.PAD]
    writes = tgt_tokens[1:] + [eos]  # the decoder position that reads token i writes token i + 1
    rows = [f"{r}\u2192{w}" for r, w in zip(tgt_tokens, writes)]
    viz.attention_view(model, src_tokens, tgt_tokens, path=out / "attention.html", title=f"{text!r} -> {output!r}")
    viz.plot_layers(model, src_tokens, rows, path=out / "attention.png",
                    title=f"{text!r} -> {output!r}: rows are queries, columns are keys")
    padded = tgt_tokens + [eos] + [pad] * 2  # a decoder input in a batch with a longer example: </s>, then padding
    viz.plot_masks(padded, pad=pad, path=out / "masks.png", title="which keys each decoder query may not see")
    print("   wrote attention.html, attention.png, masks.png")
    return [
        ("attention.html", "Every head as lines between the tokens: pick the block (encoder, decoder, cross) and "
                           "layer, hover a token to see only where it looks, click a cell of the grid to open it."),
        ("attention.png", "Attention of every head in every layer for one input. Encoder rows and columns are the "
                          "input characters. A decoder row is one position, labelled reads \u2192 writes: it reads "
                          "one token of the output so far (<s> first) and predicts the next (</s> last). In the "
                          "cross-attention (decoder rows, input columns) a position that has learnt the task looks "
                          "at the input character it writes: for reversal, an anti-diagonal."),
        ("masks.png", f"The decoder's masks for its input {' '.join(padded)}, as in a training batch where a longer "
                      "example pads this one: padding hides the padded keys, the causal mask hides the future, "
                      "and the combined mask is what the decoder's self-attention really uses."),
    ]


def _loss_curve(losses, task, vocab_size, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (log scale)")
    ax.set_title(f"training loss, {task}")
    fig.savefig(out / "loss.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    print("   wrote loss.png, the training loss at every step")
    start, end = float(np.mean(losses[:10])), float(np.mean(losses[-50:]))
    return [("loss.png", f"The training loss at every step, on a log scale: {start:.2f} over the first 10 steps "
                         f"(a uniform guess among the {vocab_size} output tokens would score ln {vocab_size} = "
                         f"{np.log(vocab_size):.2f}; an untrained model's guesses are random but not uniform, so it "
                         f"starts near or above that), {end:.1e} over the last 50.")]


def _write_index(out, task, result, cfg, examples, figures):
    rows = "\n".join(
        f"<tr><td><code>{html.escape(s)}</code></td><td><code>{html.escape(g)}</code></td>"
        f"<td>{'&#10003;' if g == t else 'expected <code>' + html.escape(t) + '</code>'}</td></tr>"
        for s, t, g in examples
    )
    parts = []
    for name, caption in figures:
        if name.endswith(".dot"):
            body = (f"<p><em>Graphviz's <code>dot</code> was not found, so this graph is the DOT text "
                    f"<a href='{name}'>{name}</a>; install Graphviz (apt-get install graphviz, or brew install "
                    f"graphviz) and run the tour again to see it.</em></p>")
        elif name.endswith(".html"):  # an interactive page, with a link to open it full size
            body = (f"<iframe src='{name}' title='{html.escape(name)}'></iframe>"
                    f"<p><a href='{name}'>open {html.escape(name)} on its own</a></p>")
        else:
            body = f"<a href='{name}'><img src='{name}' alt='{html.escape(name)}'></a>"
        parts.append(f"<section><p>{html.escape(caption)}</p>{body}</section>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tinygrad_attn tour</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}
img{{max-width:100%;border:1px solid #ddd}}iframe{{width:100%;height:640px;border:1px solid #ddd}}
section{{margin:2em 0}}td{{padding:0 1em}}</style></head><body>
<h1>Inside a transformer that learned to {task}</h1>
<p>A {cfg.num_encoder_layers}+{cfg.num_decoder_layers}-layer encoder-decoder (d_model {cfg.d_model}, {cfg.nhead} heads),
trained for {result['steps']} steps in {result['seconds']:.0f} s on NumPy alone. Exact match on
{cfg.eval_size} held-out examples: {result['exact_match']:.1%} (greedy decoding).</p>
<h2>Its answers on unseen inputs</h2><table>{rows}</table>
<h2>Pictures</h2>
{''.join(parts)}
<p>Made by <code>tinygrad-attn tour</code>. Step through how each piece works with <code>tinygrad-attn demo</code>.</p>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page)
    return index
