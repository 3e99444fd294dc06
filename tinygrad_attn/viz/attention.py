"""Attention heatmaps (one head, the heads of a layer, every layer) and mask pictures.

Rows are queries (the target tokens), columns are keys (the source tokens): row i shows
where position i looks. matplotlib is imported only when drawing.
"""

import re

import numpy as np

from .. import data
from ..decoding import greedy_decode
from ..tensor import no_grad

WEIGHT_ATTRS = ("attn_weights", "last_attn", "attn", "attention_weights", "weights", "p_attn")


def attention_weights(model):
    """[(module path, weights (B, h, T, S))] for every attention module that kept its last weights."""
    found = []
    for path, m in model.named_modules():
        if "Attention" not in type(m).__name__:
            continue
        for attr in WEIGHT_ATTRS:
            w = getattr(m, attr, None)
            if w is not None and np.ndim(getattr(w, "data", w)) >= 2:
                found.append((path, _array(w, 4)))
                break
    if not found:
        raise ValueError(
            "attention_weights: no attention module has kept weights; run a forward pass first "
            f"(looked for the attributes {', '.join(WEIGHT_ATTRS)} on *Attention modules)"
        )
    return found


def translate(model, task, text):
    """(output text, source tokens, target tokens) after a teacher-forced pass over the model's own output,
    which leaves every attention layer's weights in place for drawing."""
    src = data.sources([text], task.src_vocab)  # (1, S): the text and EOS, as in training
    out = greedy_decode(model, src, task.max_tgt + 1)[0]
    output = task.tgt_vocab.decode(out)
    tgt_in = np.array([[data.BOS] + task.tgt_vocab.encode(output)])  # (1, T): what the decoder read
    with no_grad():
        model(src, tgt_in)
    shown = {" ": "\u2423"}  # a space drawn as an open box, so it shows on the axis
    src_tokens = [shown.get(t, t) for t in (task.src_vocab.itos[i] for i in src[0])]
    tgt_tokens = [shown.get(t, t) for t in (task.tgt_vocab.itos[i] for i in tgt_in[0])]
    return output, src_tokens, tgt_tokens


def _array(w, ndim):
    """Weights as a float array with leading axes added up to ``ndim``: (T, S) -> (1, 1, T, S)."""
    a = np.asarray(getattr(w, "data", w), dtype=np.float64)
    return a.reshape((1,) * (ndim - a.ndim) + a.shape)


def _heatmap(ax, a, rows, cols, cmap, vmax=1.0, ticks=(True, True)):
    im = ax.imshow(a, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
    for on, setter, labels, n, rot in (
        (ticks[0], ax.set_xticks, cols, a.shape[1], 90),
        (ticks[1], ax.set_yticks, rows, a.shape[0], 0),
    ):
        if on and labels is not None and len(labels) == n:
            setter(range(n), [str(t) for t in labels], rotation=rot, fontsize=8)
        else:
            setter([])
    return im


def _figure(nrows, ncols, cell=2.2):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        nrows, ncols, figsize=(0.6 + cell * ncols, 0.6 + cell * nrows), squeeze=False, constrained_layout=True
    )
    return fig, axes


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")  # nothing clipped at the edges
    return fig


def plot_attention(
    weights, src_tokens=None, tgt_tokens=None, head=0, batch=0, ax=None, title=None, path=None
):
    """Heatmap of one head: ``weights`` (T, S), (h, T, S) or (B, h, T, S). Returns the Figure."""
    a = _array(weights, 4)[batch, head]
    if ax is None:
        _, axes = _figure(1, 1, cell=max(3.0, 0.35 * max(a.shape)))
        ax = axes[0, 0]
    im = _heatmap(ax, a, tgt_tokens, src_tokens, "Blues")
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title or f"head {head}", fontsize=10)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return _finish(ax.figure, path)


def plot_heads(weights, src_tokens=None, tgt_tokens=None, batch=0, title=None, path=None):
    """All heads of one layer side by side: ``weights`` (h, T, S) or (B, h, T, S)."""
    a = _array(weights, 4)[batch]
    fig, axes = _figure(1, a.shape[0])
    for h, ax in enumerate(axes[0]):
        im = _heatmap(ax, a[h], tgt_tokens, src_tokens, "Blues", ticks=(True, h == 0))
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xlabel("key (attended to)", fontsize=8)
    axes[0, 0].set_ylabel("query (attending)")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_layers(layers, src_tokens=None, tgt_tokens=None, batch=0, heads=None, title=None, path=None):
    """A grid: one row per attention layer, one column per head.

    ``layers`` is a model (its attention modules after a forward) or [(name, weights)]. Encoder
    layers get the source tokens on both axes, decoder self-attention the target tokens, and
    cross-attention target rows against source columns (told apart by the module names).
    """
    layers = attention_weights(layers) if hasattr(layers, "named_modules") else list(layers)
    n_heads = max(_array(w, 4).shape[1] for _, w in layers)
    cols = range(n_heads) if heads is None else heads
    longest = max([len(t) for t in (src_tokens, tgt_tokens) if t is not None] or [0])
    fig, axes = _figure(len(layers), len(cols), cell=max(1.7, 0.16 * longest))  # room for every token
    axis_tokens = [_tokens_for(name, _array(w, 4).shape[-2:], src_tokens, tgt_tokens) for name, w in layers]
    for r, (name, w) in enumerate(layers):
        a = _array(w, 4)[batch]
        rows_tok, cols_tok = axis_tokens[r]
        x_ticks = r == len(layers) - 1 or axis_tokens[r + 1][1] is not cols_tok  # below a change of keys
        for c, h in enumerate(cols):
            ax = axes[r, c]
            if h >= a.shape[0]:
                ax.axis("off")
                continue
            im = _heatmap(ax, a[h], rows_tok, cols_tok, "Blues", ticks=(x_ticks, c == 0))
            if r == 0:
                ax.set_title(f"head {h}", fontsize=9)
            if c == 0:
                ax.set_ylabel(_short(name), fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.5, label="attention weight")
    fig.suptitle(title or "attention: rows are queries, columns are keys", fontsize=11)
    return _finish(fig, path)


def _short(name):
    """'transformer.decoder.layers.1.cross_attn' -> 'decoder 1\ncross_attn', to fit beside a row."""
    m = re.search(r"(\w+)\.layers\.(\d+)\.(\w+)$", name)
    return f"{m.group(1)} {m.group(2)}\n{m.group(3)}" if m else name


def _tokens_for(name, shape, src, tgt):
    """(row tokens, column tokens) for an attention module, from its name and its weights' shape."""
    name = name.lower()
    if "decoder" in name or name.startswith("dec"):
        cross = any(k in name for k in ("cross", "src", "enc", "mha", "multihead"))
        return (tgt, src) if cross else (tgt, tgt)
    if src is not None and len(src) == shape[0] == shape[1]:
        return src, src
    return tgt, src


def plot_mask(mask, row_tokens=None, col_tokens=None, ax=None, title=None, path=None):
    """A boolean mask as a picture: True (dark) means the key is *ignored* (PyTorch's convention)."""
    m = np.asarray(getattr(mask, "data", mask), dtype=bool)
    m = m.reshape(m.shape[-2:]) if m.ndim > 2 else np.atleast_2d(m)
    if ax is None:
        _, axes = _figure(1, 1, cell=max(3.0, 0.35 * max(m.shape)))
        ax = axes[0, 0]
    _heatmap(ax, m.astype(float), row_tokens, col_tokens, "Greys", vmax=1.4)
    ax.set_xticks(np.arange(m.shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(m.shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="#b0b0b0", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    # the key to the colours is part of the axis label, so it can never overlap the tick labels
    ax.set_xlabel("key (attended to)\n\u25a0 True: ignored   \u25a1 False: attended", fontsize=9)
    ax.set_ylabel("query (attending)")
    ax.set_title(title or "mask", fontsize=10)
    return _finish(ax.figure, path)


def plot_masks(tokens, pad="<pad>", path=None, title=None):
    """Self-attention masks over ``tokens``: padding (keys equal to ``pad``), causal, and the two combined."""
    tokens = list(tokens)
    n = len(tokens)
    padding = np.broadcast_to(np.array([t == pad for t in tokens]), (n, n))
    causal = np.triu(np.ones((n, n), dtype=bool), k=1)
    fig, axes = _figure(1, 3, cell=max(2.6, 0.3 * n))
    for ax, (name, m) in zip(
        axes[0],
        (
            ("padding (key_padding_mask)", padding),
            ("causal (no looking ahead)", causal),
            ("combined: padding OR causal", padding | causal),
        ),
    ):
        plot_mask(m, tokens, tokens, ax=ax, title=name)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
