"""attention_view: every attention head of a model as one HTML page, after a forward pass.

    model(src, tgt_in)                                  # any forward: each MultiheadAttention keeps its weights
    attention_view(model, src_tokens, tgt_tokens, path="attention.html")

The head view draws the queries and the keys as two columns of tokens joined by lines whose opacity is
the attention weight, one colour per head; the model view is a grid of every layer x head. Weights come
from attention_weights(model): (B, h, T, S) per module. A weight of exactly 0 is a masked position.
"""

import numpy as np

from ._page import page
from .attention import attention_weights

BLOCKS = {"src": "encoder self-attention", "tgt": "decoder self-attention", "cross": "cross-attention"}


def attention_view(model, src_tokens, tgt_tokens=None, path=None, batch=0, title=None):
    """The attention of ``model``'s last forward as a Page (inline in Jupyter; ``path=`` saves it).

    src_tokens label the encoder's positions (one list, or one per batch row as model.tokenize gives);
    tgt_tokens the decoder's, for an encoder-decoder. ``batch`` picks the row of a batch to show.
    """
    blocks = {}
    for name, w in attention_weights(model):
        kind = _kind(name, tgt_tokens)
        rows, cols = {"src": ("src", "src"), "tgt": ("tgt", "tgt"), "cross": ("tgt", "src")}[kind]
        if not 0 <= batch < w.shape[0]:
            raise ValueError(f"attention_view: batch row {batch} does not exist; {name} kept weights {w.shape}")
        a = w[batch]  # (h, T, S)
        tokens = {"src": src_tokens, "tgt": tgt_tokens}
        block = blocks.setdefault(kind, {
            "kind": kind,
            "label": BLOCKS[kind],
            "rows": _labels(tokens[rows], batch, a.shape[1], name, "queries"),
            "cols": _labels(tokens[cols], batch, a.shape[2], name, "keys"),
            "layers": [],
        })
        block["layers"].append({"path": name, "weights": [[[_r(x) for x in row] for row in head] for head in a]})
    data = {"title": title or "attention", "blocks": [blocks[k] for k in BLOCKS if k in blocks]}
    result = page(data["title"], data, "attention")
    if path is not None:
        result.save(path)
    return result


def _kind(name, tgt_tokens):
    """Which block a module belongs to, from where it sits: cross-attention, decoder or encoder self-attention."""
    parts = name.split(".")
    if tgt_tokens is None:
        return "src"
    if any("cross" in p or p == "src_attn" for p in parts):
        return "cross"
    return "tgt" if any("decoder" in p for p in parts) else "src"


def _labels(tokens, batch, size, name, what):
    """One batch row's tokens as strings, checked against the weights (padding included)."""
    if tokens is None:
        return None
    tokens = list(tokens)
    if tokens and isinstance(tokens[0], (list, tuple, np.ndarray)):  # one list per batch row
        tokens = list(tokens[batch])
    if len(tokens) != size:
        raise ValueError(f"attention_view: {name} has {size} {what} but {len(tokens)} tokens were given; pass one "
                         f"token per position of batch row {batch}, padding included")
    return [str(t) for t in tokens]


def _r(x):
    return float(f"{float(x):.5g}") if np.isfinite(x) else 0.0
