# %% [markdown]
# # 5. Attention versus a position-wise layer
#
# A Linear layer (or an MLP) applied to each position of a sequence sees one token at a
# time: it cannot use context. Attention mixes positions, with weights computed from the
# data, and works for any length with the same weights. But attention alone does not know
# the order of its inputs. Three experiments show all of that.

# %%
import numpy as np

import tinygrad_attn as tga
from tinygrad_attn.env import quick
from tinygrad_attn.nn import Embedding, Linear, Module, MultiheadAttention, PositionalEncoding, ReLU
from tinygrad_attn.optim import Adam

np.set_printoptions(precision=3, suppress=True)
tga.manual_seed(0)
rng = np.random.default_rng(0)
d = 16

# %% [markdown]
# ## Change one token: what moves?
# We change the token at position 3 of a 6-token sequence and see which outputs change.

# %%
mlp = tga.nn.FeedForward(d, 4 * d, dropout=0.0)
attention = MultiheadAttention(d, num_heads=2)
x = tga.randn(1, 6, d)
x2 = tga.Tensor(x.numpy().copy())
x2.data[0, 3] += 1.0

with tga.no_grad():
    moved_mlp = np.abs(mlp(x2).numpy() - mlp(x).numpy()).max(axis=-1)[0]
    moved_att = np.abs(attention(x2, x2, x2)[0].numpy() - attention(x, x, x)[0].numpy()).max(axis=-1)[0]
print("how much each output moved, position-wise MLP:", moved_mlp)
print("how much each output moved, attention:        ", moved_att)

# %% [markdown]
# Only output 3 of the MLP moved; every output of the attention layer did.
# The same attention weights also run on any length:

# %%
with tga.no_grad():
    for length in [3, 10, 50]:
        out, w = attention(tga.randn(1, length, d), tga.randn(1, length, d), tga.randn(1, length, d))
        print(f"length {length:2d}: output {out.shape}, attention weights {w.shape}")

# %% [markdown]
# ## A task that needs context: every position must name the largest token
# Sequences of 8 digits; at every position the answer is the largest digit in the whole
# sequence. A position-wise MLP sees only its own digit; an attention layer can look
# everywhere. Same embedding size, same optimiser, same steps.

# %%
vocab, length, batch = 10, 8, 64
steps = 40 if quick() else 400


class PositionWise(Module):
    def __init__(self):
        super().__init__()
        self.embed, self.hidden = Embedding(vocab, d), Linear(d, 4 * d)
        self.relu, self.out = ReLU(), Linear(4 * d, vocab)

    def forward(self, ids):
        return self.out(self.relu(self.hidden(self.embed(ids))))


class WithAttention(Module):
    def __init__(self, positions=False):
        super().__init__()
        self.embed, self.attention = Embedding(vocab, d), MultiheadAttention(d, num_heads=2)
        self.positions = PositionalEncoding(d, dropout=0.0) if positions else None
        self.hidden, self.relu, self.out = Linear(d, 4 * d), ReLU(), Linear(4 * d, vocab)

    def forward(self, ids):
        x = self.embed(ids)
        if self.positions is not None:
            x = self.positions(x)
        context, _ = self.attention(x, x, x)
        return self.out(self.relu(self.hidden(context + x)))


def accuracy_after_training(model, task):
    opt = Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        ids, target = task(batch)
        loss = tga.functional.cross_entropy(model(ids).reshape(-1, vocab), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    ids, target = task(1000)
    with tga.no_grad():
        return (model(ids).numpy().argmax(-1) == target).mean()


def largest(n):
    ids = rng.integers(0, vocab, (n, length))
    return ids, np.repeat(ids.max(axis=1, keepdims=True), length, axis=1)


for name, model in [("position-wise MLP", PositionWise()), ("attention", WithAttention())]:
    tga.manual_seed(0)
    print(f"{name:18s} accuracy on 'largest token': {accuracy_after_training(model, largest):.1%}")

# %% [markdown]
# The MLP can only guess from its own digit (it learns "the answer is at least my digit,
# and probably 9"); attention finds the largest digit wherever it is.
#
# ## Attention alone is blind to order
# Shuffle the input positions and the attention outputs shuffle the same way, value for
# value: "a b c" and "c b a" look the same to it. Adding positional encodings breaks the
# symmetry. The task "every position must name the first token" shows the difference.

# %%
perm = rng.permutation(6)
with tga.no_grad():
    out = attention(x, x, x)[0].numpy()[0]
    x_perm = tga.Tensor(x.numpy()[:, perm])
    out_perm = attention(x_perm, x_perm, x_perm)[0].numpy()[0]
print("outputs of a shuffled input are the shuffled outputs:", np.allclose(out[perm], out_perm, atol=1e-5))


def first(n):
    ids = rng.integers(0, vocab, (n, length))
    return ids, np.repeat(ids[:, :1], length, axis=1)


for name, model in [("attention, no positions", WithAttention()), ("attention + positions", WithAttention(True))]:
    tga.manual_seed(0)
    print(f"{name:24s} accuracy on 'first token': {accuracy_after_training(model, first):.1%}")

# %% [markdown]
# Without positions the model cannot tell which token came first (it can do little
# better than guessing among the digits present); with sinusoidal positions added to
# the embeddings it can.
