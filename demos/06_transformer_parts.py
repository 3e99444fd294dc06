# %% [markdown]
# # 6. The parts of a transformer layer
#
# Multi-head attention, positional encoding, the position-wise feed-forward network,
# and the residual + LayerNorm that wraps each of them. Each part is opened up and
# checked against a few lines of NumPy, then we compare post-norm and pre-norm.

# %%
from pathlib import Path

import numpy as np

import tinygrad_attn as tga
from tinygrad_attn.env import quick
from tinygrad_attn.nn import (
    FeedForward,
    LayerNorm,
    MultiheadAttention,
    PositionalEncoding,
    TransformerEncoderLayer,
)

np.set_printoptions(precision=3, suppress=True)
tga.manual_seed(0)
out_dir = Path("tinygrad_attn_out/demos")
B, T, d_model, h = 2, 5, 16, 4
d_k = d_model // h
x = tga.randn(B, T, d_model)

# %% [markdown]
# ## Multi-head attention is h small attentions side by side
# Project to queries, keys and values, split the d_model features into h heads of
# d_k = d_model / h, attend within each head, put the heads back side by side, and mix
# them with the output projection w_o. The module's answer equals these NumPy lines.

# %%
mha = MultiheadAttention(d_model, h)
out, weights = mha(x, x, x, average_attn_weights=False)

X = x.numpy()


def heads(a):  # (B, T, d_model) -> (B, h, T, d_k)
    return a.reshape(B, T, h, d_k).transpose(0, 2, 1, 3)


def project(linear, a):
    return a @ linear.weight.numpy().T + linear.bias.numpy()


Q, K, V = (heads(project(w, X)) for w in (mha.w_q, mha.w_k, mha.w_v))
S = Q @ K.transpose(0, 1, 3, 2) / np.sqrt(d_k)  # (B, h, T, T)
A = np.exp(S - S.max(-1, keepdims=True))
A /= A.sum(-1, keepdims=True)
by_hand = project(mha.w_o, (A @ V).transpose(0, 2, 1, 3).reshape(B, T, d_model))
print("weights per head:", weights.shape, " module == NumPy:", np.allclose(out.numpy(), by_hand, atol=1e-5))
print("head 0 and head 1 look at different places; first query's weights:\n", weights.numpy()[0, :2, 0])

# %% [markdown]
# ## Positional encoding
# Sinusoids of geometrically spaced wavelengths, added to the embeddings. Each pair of
# features is a clock running at its own speed, so the encoding of position p + k is a
# rotation of the encoding of p, and the dot product of two encodings depends only on
# how far apart they are:

# %%
pe = PositionalEncoding(64, dropout=0.0).pe[:100]
for k in [1, 5, 20]:
    dots = [pe[p] @ pe[p + k] for p in range(0, 60, 15)]
    print(f"offset {k:2d}: PE[p] . PE[p+{k}] for p = 0, 15, 30, 45:", np.round(dots, 3))

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    im = ax.imshow(pe.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xlabel("position")
    ax.set_ylabel("feature (fast clocks at the top)")
    ax.set_title("Sinusoidal positional encoding, d_model = 64")
    fig.colorbar(im)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / "06_positional_encoding.png", dpi=100, bbox_inches="tight")
    print("picture written to", out_dir / "06_positional_encoding.png")
    from tinygrad_attn.viz import show

    show(fig)
except ImportError:
    print("(install matplotlib to draw the picture: pip install matplotlib)")

# %% [markdown]
# ## The feed-forward network: the same weights at every position
# Expand each position's d_model features to d_ff, apply the activation, and project
# back. Nothing mixes positions here, so running it on the whole sequence equals
# running it on each position alone.

# %%
ffn = FeedForward(d_model, dim_feedforward=4 * d_model, dropout=0.0)
whole = ffn(x).numpy()
alone = np.stack([ffn(x[:, t:t + 1]).numpy()[:, 0] for t in range(T)], axis=1)
print(f"{d_model} -> {ffn.w_1.weight.shape[0]} -> {ffn.w_2.weight.shape[0]} features;",
      "whole sequence == one position at a time:", np.allclose(whole, alone, atol=1e-6))

# %% [markdown]
# ## Residual + LayerNorm
# Each sublayer's output is added to its input (the residual path carries the signal
# and the gradient straight through) and normalised: every position ends with mean 0
# and variance 1 across its features, then a learned scale and shift.

# %%
y = LayerNorm(d_model)(x + mha(x, x, x)[0]).numpy()
print("after LayerNorm, mean per position:", y.mean(-1)[0], " variance:", y.var(-1)[0])

# %% [markdown]
# ## Post-norm versus pre-norm
# The paper normalises after the residual add: LayerNorm(x + Sublayer(x)) (post-norm,
# our default). Many later models normalise first: x + Sublayer(LayerNorm(x))
# (`norm_first=True`). At initialisation, we measure the gradient that reaches each
# layer of a 6-layer encoder, and how large the residual stream grows.

# %%
depth = 3 if quick() else 6
src = tga.randn(8, 10, 32)
for norm_first in [False, True]:
    tga.manual_seed(0)
    encoder = tga.nn.TransformerEncoder(TransformerEncoderLayer(32, 4, 64, dropout=0.0, norm_first=norm_first), depth)
    out = encoder(src)
    out.backward(np.random.default_rng(0).standard_normal(out.shape).astype(np.float32))
    grads = [np.sqrt(sum((p.grad.numpy() ** 2).sum() for p in layer.parameters())) for layer in encoder.layers]
    with tga.no_grad():  # the residual stream's size after each layer
        x, stds = src, []
        for layer in encoder.layers:
            x = layer(x)
            stds.append(x.numpy().std())
    name = "pre-norm " if norm_first else "post-norm"
    print(f"{name}: gradient norm per layer (input side first) {np.round(grads, 1)}")
    print(f"           std of the stream after each layer       {np.round(stds, 2)}")

# %% [markdown]
# Reading the numbers: in pre-norm the residual path reaches every layer untouched, so a
# lower layer receives the gradients of all the layers above it added together: its
# gradients fall from the input side toward the output side. Its stream is never
# renormalised, so it grows with every layer (the second line), which is why pre-norm
# stacks end with a final LayerNorm (nn.Transformer adds one). Post-norm's gradients
# have no such slope (at initialisation they are largest at the two ends of the stack
# and dip in the middle), and its stream is held at std 1 after every layer, but
# every gradient must pass through the LayerNorms of all the layers above; in deep
# stacks this is what makes post-norm training need a learning-rate warm-up (the
# paper's schedule, `tinygrad_attn.optim`'s Noam schedule).
