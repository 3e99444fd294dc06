# %% [markdown]
# # 7. The encoder-decoder on the copy task
#
# The smallest job for a whole transformer: read a string of digits, write it out again.
# The encoder reads the source; the decoder writes the target one token at a time,
# looking at what it has written so far (masked self-attention) and at the encoder's
# output (cross-attention). We look at the masks that keep it honest, the shifted
# target it trains on (teacher forcing), train it, watch greedy decoding build an
# answer token by token, and draw where it looked.

# %%
import time
from pathlib import Path

import numpy as np

import tinygrad_attn as tga
from tinygrad_attn import data
from tinygrad_attn import functional as F
from tinygrad_attn.decoding import greedy_decode
from tinygrad_attn.env import quick, set_blas_threads
from tinygrad_attn.nn import make_model
from tinygrad_attn.optim import Adam, CosineLR, clip_grad_norm_
from tinygrad_attn.train import evaluate

np.set_printoptions(precision=3, suppress=True)
set_blas_threads(1)  # small matrices: one BLAS thread beats two that wait on each other
tga.manual_seed(0)
rng = np.random.default_rng(0)
out_dir = Path("tinygrad_attn_out/demos")

task = data.get_task("copy")
vocab = task.src_vocab  # the same digits on both sides
print(task)
src, tgt = data.batch([("3141", "3141"), ("27", "27")], vocab, vocab)
print("src ids (text + EOS, PAD-padded):\n", src)
print("tgt ids (BOS + text + EOS):\n", tgt)

# %% [markdown]
# ## Masks
# Two kinds of keys must be invisible. **Padding**: the second source, "27", was padded
# to the length of the first; those PAD positions carry no information, so no query
# may attend to them (`key_padding_mask`, True = ignore). **The future**: while
# training, the decoder sees the whole target at once, so position i must not peek at
# positions after i (the causal mask). The pictures show both and their combination.

# %%
src_pad = F.padding_mask(src, data.PAD)  # (B, S) bool, True at PAD
print("source padding mask (True = ignore):\n", src_pad)
print("causal mask for 5 target positions (True = ignore):\n", F.causal_mask(5).astype(int))

try:
    import matplotlib

    matplotlib.use("Agg")
    from tinygrad_attn.viz import plot_masks

    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = [vocab.itos[i] for i in data.batch([("27", "27")], vocab, vocab)[1][0]] + ["<pad>", "<pad>"]
    from tinygrad_attn.viz import show

    show(plot_masks(tokens, path=out_dir / "07_masks.png", title="decoder self-attention masks for '27'"))
    print("mask pictures written to", out_dir / "07_masks.png")
except ImportError:
    print("(install matplotlib to draw the masks: pip install matplotlib)")

# %% [markdown]
# A mask becomes -inf added to the scores before the softmax, so a masked key gets a
# weight of exactly 0. Check it in a fresh model: the encoder's attention weights on the
# padded keys of "27", and the decoder's weights on future positions.

# %%
model = make_model(len(vocab), len(vocab), N=2, d_model=64, d_ff=128, h=4, dropout=0.0)
with tga.no_grad():
    logits = model(src, tgt[:, :-1], src_key_padding_mask=src_pad)

enc_w = model.transformer.encoder.layers[0].self_attn.attn_weights  # (B, h, S, S)
dec_w = model.transformer.decoder.layers[0].self_attn.attn_weights  # (B, h, T, T)
print("encoder, '27', head 0 (columns 3 and 4 are PAD):\n", enc_w[1, 0])
print("largest weight on a padded key:", enc_w[1][:, :, src_pad[1]].max())
future = np.triu(np.ones(dec_w.shape[-2:], dtype=bool), k=1)
print("decoder self-attention, '3141', head 0 (above the diagonal is the future):\n", dec_w[0, 0])
print("largest weight on a future position:", dec_w[..., future].max())
assert enc_w[1][:, :, src_pad[1]].max() == 0.0 and dec_w[..., future].max() == 0.0

# %% [markdown]
# Zero weight means the masked tokens cannot matter at all: change what sits in the
# padded source slots, or change a future target token, and the outputs that must not
# see them do not move.

# %%
src_changed = src.copy()
src_changed[1, 3:] = 9  # junk where "27" was padded, still masked as padding
tgt_changed = tgt.copy()
tgt_changed[0, 3] = 9  # the target token at position 3 of "3141"
with tga.no_grad():
    moved_pad = np.abs(model(src_changed, tgt[:, :-1], src_key_padding_mask=src_pad).numpy()
                       - logits.numpy())[1].max()
    moved_future = np.abs(model(src, tgt_changed[:, :-1], src_key_padding_mask=src_pad).numpy()
                          - logits.numpy())[0].max(axis=-1)
print("junk in the padded slots moves the logits of '27' by", moved_pad)
print("changing target position 3 moves the logits at positions 0..4 by", moved_future)
assert moved_pad == 0.0 and np.all(moved_future[:3] == 0.0)

# %% [markdown]
# ## Teacher forcing: read one, predict the next
# The decoder is trained on the target shifted by one. It reads BOS and the correct
# target so far (`tgt[:, :-1]`) and at every position must predict the next token
# (`tgt[:, 1:]`), the last one being EOS. All positions train in one pass, and the causal
# mask stops each from copying the answer it is being asked for. PAD targets are skipped
# by the loss (`ignore_index`).

# %%
tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
for row in range(2):
    print(f"example {row}:")
    print("   position      ", " ".join(f"{t:>4d}" for t in range(tgt_in.shape[1])))
    print("   decoder reads ", " ".join(f"{vocab.itos[i]:>4s}" for i in tgt_in[row]))
    print("   must predict  ", " ".join(f"{vocab.itos[i]:>4s}" for i in tgt_out[row]))
loss = F.cross_entropy(logits.reshape(-1, len(vocab)), tgt_out.reshape(-1), ignore_index=data.PAD)
print(f"untrained loss {loss.item():.3f}  (a uniform guess among {len(vocab)} symbols would score "
      f"ln {len(vocab)} = {np.log(len(vocab)):.3f})")

# %% [markdown]
# ## Training
# Random digit strings of length 3 to 10, batches of 64, Adam with a short warm-up and a
# cosine decay, gradients clipped to norm 1. The held-out strings are never trained on.

# %%
steps, batch_size = (15, 16) if quick() else (400, 64)
heldout, heldout_keys = data.heldout(task, 20 if quick() else 500)
opt = Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
schedule = CosineLR(opt, steps, warmup=min(100, steps // 4))
model.train()
start = time.perf_counter()
for step in range(1, steps + 1):
    src_b, tgt_b = data.train_batch(task, rng, batch_size, heldout_keys)
    logits_b = model(src_b, tgt_b[:, :-1], src_key_padding_mask=src_b == data.PAD)  # (B, T, V)
    loss = F.cross_entropy(logits_b.reshape(-1, len(vocab)), tgt_b[:, 1:].reshape(-1), ignore_index=data.PAD)
    opt.zero_grad()
    loss.backward()
    clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    schedule.step()
    if step % max(1, steps // 8) == 0 or step == steps:
        print(f"step {step:4d}  loss {loss.item():.4f}")
model.eval()
accuracy, outputs = evaluate(model, task, heldout)
print(f"{steps} steps in {time.perf_counter() - start:.1f} s; exact match on {len(heldout)} held-out strings: "
      f"{accuracy:.1%}")

# %% [markdown]
# ## Greedy decoding, one token at a time
# At test time there is no target to read: the decoder reads its own output. Start from
# BOS, pick the most likely next token, append it, repeat until EOS. The encoder runs
# once; the key/value cache keeps the decoder's earlier steps, so each step feeds only
# the newest token.

# %%
text = heldout[0][0]
src1 = data.sources([text], vocab)  # (1, S)
with tga.no_grad():
    memory = model.encode(src1, src_key_padding_mask=src1 == data.PAD)
    cache = model.new_cache()
    ys = [data.BOS]
    for step in range(task.max_tgt + 1):
        logits1 = model.decode(np.array([[ys[-1]]]), memory, memory_key_padding_mask=src1 == data.PAD,
                               cache=cache)  # (1, 1, V)
        probs = logits1.softmax(axis=-1).numpy()[0, -1]
        ys.append(int(probs.argmax()))
        print(f"step {step + 1:2d}: reads {vocab.itos[ys[-2]]:>4s} -> writes {vocab.itos[ys[-1]]:>4s} "
              f"(p = {probs.max():.3f})   output so far: {vocab.decode(ys)!r}")
        if ys[-1] == data.EOS:
            break
print(f"source {text!r} -> output {vocab.decode(ys)!r}")
library = greedy_decode(model, src1, task.max_tgt + 1)[0]
print("the library's greedy_decode gives the same tokens:", vocab.decode(library) == vocab.decode(ys))
assert vocab.decode(library) == vocab.decode(ys)

# %% [markdown]
# ## Where it looked
# One teacher-forced pass over the model's own output leaves every attention module's
# weights in place. The grid has a row per attention layer (encoder self-attention,
# decoder self-attention, decoder cross-attention) and a column per head. Row i of the
# decoder reads output token i - 1 and must write output token i, which is source
# token i: copying needs the cross-attention of row i on source position i. We count
# how often the heaviest source position (averaged over heads) is exactly that one.

# %%
tgt1 = np.array([ys[:-1]])  # what the decoder read: BOS and the output, without the final EOS
with tga.no_grad():
    model(src1, tgt1, src_key_padding_mask=src1 == data.PAD)
src_tokens = [vocab.itos[i] for i in src1[0]]
tgt_tokens = [vocab.itos[i] for i in tgt1[0]]
for i, layer in enumerate(model.transformer.decoder.layers):
    looked = layer.cross_attn.attn_weights[0].mean(axis=0).argmax(axis=-1)  # (T,) heaviest source position
    on_diagonal = np.mean(looked == np.arange(len(looked)))
    print(f"decoder layer {i} cross-attention: output position i looks hardest at source position "
          f"{looked.tolist()} ({on_diagonal:.0%} on the diagonal)")

try:
    from tinygrad_attn.viz import attention_view, plot_layers, show

    show(plot_layers(model, src_tokens, tgt_tokens, path=out_dir / "07_attention.png",
                     title=f"copying {text!r}: rows are queries, columns are keys"))
    show(attention_view(model, src_tokens, tgt_tokens))  # in a notebook: hover a token to see where it looks
    print("attention maps written to", out_dir / "07_attention.png")
except ImportError:
    print("(install matplotlib to draw the attention maps: pip install matplotlib)")

# %% [markdown]
# After the full training nearly every row of the last decoder layer's
# cross-attention sits on the diagonal (the picture's bottom row): the model learned
# to copy by looking up the source position it is writing. In our full run the one row
# off the diagonal is the last, which writes EOS: there is no digit left to copy.
# With `--quick` the model has barely trained and the maps are still blurred.
