"""Attention heatmaps (one head, the heads of a layer, every layer) and mask pictures.

Rows are queries (the target tokens), columns are keys (the source tokens): row i shows
where position i looks. matplotlib is imported only when drawing.
"""

import re

import numpy as np

from .. import data
from ..decoding import greedy_decode
from ..tensor import no_grad, unwrap

WEIGHT_ATTRS = ("attn_weights", "last_attn", "attn", "attention_weights", "weights", "p_attn")


def attention_weights(model):
    """[(module path, weights (B, h, T, S))] for every attention module that kept its last weights."""
    found = []
    for path, m in model.named_modules():
        if "Attention" not in type(m).__name__:
            continue
        for attr in WEIGHT_ATTRS:
            w = getattr(m, attr, None)
            if w is not None and np.ndim(unwrap(w)) >= 2:
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
    a = unwrap(w).astype(np.float64)
    return a.reshape((1,) * (ndim - a.ndim) + a.shape)


def _heatmap(ax, a, rows, cols, cmap, vmax=1.0, ticks=(True, True)):
    im = ax.imshow(a, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
    for on, setter, labels, n, rot in (
        (ticks[0], ax.set_xticks, cols, a.shape[1], 90),
        (ticks[1], ax.set_yticks, rows, a.shape[0], 0),
    ):
        if on and labels is not None:
            setter(range(n), [str(t) for t in labels], rotation=rot, fontsize=8)
        else:
            setter([])
    return im


def _row(weights, tokens_rows, tokens_cols, batch, attention_mask, where):
    """One batch row's (T, S) matrices and labels, padding trimmed, labels checked against the matrix.

    Tokens are one list, or one list per batch row (model.tokenize's "tokens"). attention_mask (B, S), 1 for
    a real token, trims the padded keys, and the padded queries too when rows and columns are one sequence.
    """
    a = _array(weights, 4)
    if not 0 <= batch < a.shape[0]:
        raise ValueError(f"{where}: batch row {batch} does not exist; the weights {a.shape} hold {a.shape[0]} rows")
    a = a[batch]  # (h, T, S)
    if attention_mask is not None:
        keep = unwrap(attention_mask)
        if keep.ndim != 2 or keep.shape[1] != a.shape[-1]:
            raise ValueError(f"{where}: attention_mask {keep.shape} does not fit weights (.., T, S) = "
                             f"{a.shape}; pass the (B, S) mask the keys were padded with (1 = real token)")
        n = int(keep[batch].sum())
        a = a[:, : n if a.shape[1] == a.shape[2] else a.shape[1], :n]
    rows = _labels(tokens_rows, batch, a.shape[1], "query rows", where)
    cols = _labels(tokens_cols, batch, a.shape[2], "key columns", where)
    return a, rows, cols


def _labels(tokens, batch, size, what, where):
    if tokens is None:
        return None
    tokens = list(tokens)
    if tokens and isinstance(tokens[0], (list, tuple, np.ndarray)):  # one list per batch row
        tokens = list(tokens[batch])
    if len(tokens) > size and all(str(t) in ("[PAD]", "<pad>") for t in tokens[size:]):
        tokens = tokens[:size]  # the row's padding, trimmed with the matrix
    if len(tokens) != size:
        raise ValueError(f"{where}: {len(tokens)} labels for {size} {what}; give one token per position of "
                         f"batch row {batch} (with a padded batch, pass attention_mask to trim the padding)")
    return tokens


def _grid(n):
    """(rows, columns) for n small panels, as square as possible: 12 heads -> 3 x 4, not 1 x 12."""
    cols = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


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
    weights, src_tokens=None, tgt_tokens=None, head=0, batch=0, ax=None, title=None, path=None, attention_mask=None
):
    """Heatmap of one head: ``weights`` (T, S), (h, T, S) or (B, h, T, S), row ``batch`` of a (padded)
    batch, trimmed by ``attention_mask`` (B, S), 1 = real token. Returns the Figure."""
    a, rows, cols = _row(weights, tgt_tokens, src_tokens, batch, attention_mask, "plot_attention")
    a = a[head]
    if ax is None:
        _, axes = _figure(1, 1, cell=max(3.0, 0.35 * max(a.shape)))
        ax = axes[0, 0]
    im = _heatmap(ax, a, rows, cols, "Blues")
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title or f"head {head}", fontsize=10)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return _finish(ax.figure, path)


def plot_heads(weights, src_tokens=None, tgt_tokens=None, batch=0, title=None, path=None, attention_mask=None):
    """All heads of one layer in a near-square grid: ``weights`` (h, T, S) or (B, h, T, S)."""
    a, rows, cols = _row(weights, tgt_tokens, src_tokens, batch, attention_mask, "plot_heads")
    nrows, ncols = _grid(a.shape[0])
    fig, axes = _figure(nrows, ncols, cell=max(2.2, 0.2 * max(a.shape[1:])))
    for i, ax in enumerate(axes.ravel()):
        if i >= a.shape[0]:
            ax.axis("off")
            continue
        r, c = divmod(i, ncols)
        im = _heatmap(ax, a[i], rows, cols, "Blues", ticks=(r == nrows - 1 or i + ncols >= a.shape[0], c == 0))
        ax.set_title(f"head {i}", fontsize=9)
    axes[0, 0].set_ylabel("query (attending)")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title or "rows are queries, columns are keys", fontsize=11)
    return _finish(fig, path)


def plot_layers(layers, src_tokens=None, tgt_tokens=None, batch=0, heads=None, title=None, path=None,
                attention_mask=None):
    """A grid: one row per attention layer, one column per head.

    ``layers`` is a model (its attention modules after a forward) or [(name, weights)]. Encoder
    layers get the source tokens on both axes, decoder self-attention the target tokens, and
    cross-attention target rows against source columns (told apart by the module names). Row ``batch``
    of a padded batch is drawn, trimmed by ``attention_mask`` (B, S), 1 = real token, when given.
    """
    layers = attention_weights(layers) if hasattr(layers, "named_modules") else list(layers)
    n_heads = max(_array(w, 4).shape[1] for _, w in layers)
    cols = range(n_heads) if heads is None else list(heads)
    missing = [h for h in cols if not 0 <= h < n_heads]
    if missing:
        raise ValueError(f"plot_layers: head {missing[0]} does not exist: the model has {n_heads} heads, "
                         f"0 to {n_heads - 1}")
    drawn = []  # (name, (h, T, S) of row batch, row labels, column labels)
    for name, w in layers:
        rows_tok, cols_tok = _tokens_for(name, _array(w, 4).shape[-2:], src_tokens, tgt_tokens)
        mask = attention_mask if cols_tok is src_tokens else None
        drawn.append((name, *_row(w, rows_tok, cols_tok, batch, mask, f"plot_layers ({name})")))
    longest = max(max(a.shape[1:]) for _, a, _, _ in drawn)
    fig, axes = _figure(len(layers), len(cols), cell=max(1.7, 0.16 * longest))  # room for every token
    axis_tokens = [(rows_tok, cols_tok) for _, _, rows_tok, cols_tok in drawn]
    for r, (name, a, rows_tok, cols_tok) in enumerate(drawn):
        x_ticks = r == len(layers) - 1 or axis_tokens[r + 1][1] != cols_tok  # below a change of keys
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
    if tgt is None or shape[0] == shape[1]:
        return src, src  # self-attention over the source (an encoder): the same tokens on both axes
    return tgt, src


def plot_mask(mask, row_tokens=None, col_tokens=None, ax=None, title=None, path=None):
    """A boolean mask as a picture: True (dark) means the key is *ignored* (PyTorch's convention)."""
    m = unwrap(mask).astype(bool)
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
