# %% [markdown]
# # 4. Why divide the scores by sqrt(d_k)?
#
# A dot product of two d_k-dimensional vectors with unit-variance entries is a sum of
# d_k products, so its variance grows like d_k. Large scores push the softmax into
# saturation: almost all weight on one key, and gradients several times smaller.
# Dividing by sqrt(d_k) keeps the scores' variance at 1 whatever d_k is.
# We measure that, then see what it does to learning, and compare additive attention.

# %%
import time

import numpy as np

import tinygrad_attn as tga
from tinygrad_attn.env import quick
from tinygrad_attn.nn import AdditiveAttention, Linear
from tinygrad_attn.optim import SGD, Adam

rng = np.random.default_rng(0)
n_keys, trials = 16, (50 if quick() else 500)

# %% [markdown]
# ## Saturation, measured
# For each d_k: random queries and 16 random keys, softmax of the raw and of the scaled
# scores. We report the score spread, the largest weight (1.0 = all attention on one
# key) and the size of the softmax's gradient for a random upstream gradient.

# %%


def softmax_stats(scores):
    s = tga.Tensor(scores, dtype=np.float64, requires_grad=True)
    w = s.softmax(axis=-1)
    w.backward(rng.standard_normal(w.shape))
    return w.numpy().max(axis=-1).mean(), np.linalg.norm(s.grad.numpy(), axis=-1).mean()


print(" d_k | score std raw / scaled | max weight raw / scaled | grad norm raw / scaled")
for d_k in [4, 16, 64, 256, 1024]:
    q = rng.standard_normal((trials, 1, d_k))
    k = rng.standard_normal((trials, n_keys, d_k))
    raw = (q @ k.transpose(0, 2, 1))[:, 0]  # (trials, n_keys)
    scaled = raw / np.sqrt(d_k)
    (mw_raw, g_raw), (mw_scaled, g_scaled) = softmax_stats(raw), softmax_stats(scaled)
    print(f"{d_k:4d} | {raw.std():8.1f} / {scaled.std():5.2f}   | {mw_raw:10.3f} / {mw_scaled:5.3f}   "
          f"| {g_raw:9.4f} / {g_scaled:6.4f}")

# %% [markdown]
# The raw scores' spread grows like sqrt(d_k); by d_k = 256 the softmax puts nearly all
# weight on one key and its gradient has shrunk several times over. The scaled column
# does not move.
#
# ## What it does to learning: find the matching key
# Each example has 16 random keys; the query is a noisy copy of one of them, and the
# model must put its attention on that key (the loss is -log of the weight there;
# chance is log 16 = 2.77). Queries and keys pass through learned projections,
# initialised as nn.Linear does. Unscaled scores are the scaled ones times sqrt(d_k),
# so they are not a different model: they are the same model run hotter. We train
# both with plain SGD at two learning rates.

# %%
d_k, batch = 64, 32
steps = 30 if quick() else 300


def make_batch():
    keys = rng.standard_normal((batch, n_keys, d_k)).astype(np.float32)
    target = rng.integers(0, n_keys, batch)
    query = keys[np.arange(batch), target] + 0.5 * rng.standard_normal((batch, d_k)).astype(np.float32)
    return tga.Tensor(query[:, None]), tga.Tensor(keys), target


class DotScorer(tga.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.w_q, self.w_k, self.scale = Linear(d_k, d_k, bias=False), Linear(d_k, d_k, bias=False), scale

    def forward(self, query, keys):  # query (B, 1, d_k), keys (B, S, d_k) -> scores (B, S)
        scores = self.w_q(query) @ self.w_k(keys).transpose(1, 2)  # (B, 1, S)
        return (scores / np.sqrt(d_k) if self.scale else scores)[:, 0]


class AdditiveScorer(tga.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.attention = AdditiveAttention(d_k, d_k, hidden)

    def forward(self, query, keys):
        _, weights = self.attention(query, keys, keys)  # (B, 1, S)
        return weights[:, 0].log()  # log-weights are scores up to a constant


def train(model, optimizer):
    losses = []
    with np.errstate(all="ignore"):  # a diverging run overflows; we report it rather than warn
        for _ in range(steps):
            query, keys, target = make_batch()
            loss = -model(query, keys).log_softmax(axis=-1)[np.arange(batch), target].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return np.array(losses)


def row(name, losses):
    tenth = max(1, steps // 10)
    final = np.mean(losses[-10:])
    print(f"{name:30s} {np.mean(losses[:5]):10.3f} {np.mean(losses[tenth:tenth + 5]):14.3g} "
          f"{'diverged' if not np.isfinite(final) else f'{final:.3f}':>10s}")


print(f"{'':30s} {'first loss':>10s} {'after 10%':>14s} {'final loss':>10s}")
for lr in [0.5, 0.05]:
    for scale in [False, True]:
        tga.manual_seed(0)
        model = DotScorer(scale)
        row(f"{'scaled' if scale else 'unscaled'} dot product, lr {lr}", train(model, SGD(model.parameters(), lr)))

# %% [markdown]
# What the table shows: unscaled attention starts saturated (a first loss above chance:
# confident and wrong), and at the learning rate where the scaled model trains well it
# diverges. At a ten times smaller rate it trains fine on this task, which rewards
# sharp attention. So the sqrt(d_k) is not magic: it is the temperature that keeps the
# softmax out of saturation at the start and lets one learning rate work whatever d_k
# is, instead of one that must shrink as d_k grows.
#
# ## Additive attention: speed, memory and learning
# Additive attention scores with a small network, v^T tanh(W_q q + W_k k). It has to
# build a hidden vector for every (query, key) pair: a (B, T, S, hidden) tensor where
# the dot product needs (B, T, S).

# %%
B, T, hidden = 8, 64, 64
x = tga.randn(B, T, d_k)
dot, additive = DotScorer(scale=True), AdditiveAttention(d_k, d_k, hidden)


repeats = 3 if quick() else 20


def timed(fn):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1e3 * (time.perf_counter() - start) / repeats


def dot_step():
    scores = dot.w_q(x) @ dot.w_k(x).transpose(1, 2) / np.sqrt(d_k)  # (B, T, T)
    (scores.softmax(axis=-1) @ x).sum().backward()


def additive_step():
    context, _ = additive(x, x, x)
    context.sum().backward()


print(f"scores for {B} x {T} queries against {T} keys, forward + backward:")
print(f"  scaled dot product {timed(dot_step):7.2f} ms   largest array (B, T, T) = {B * T * T:,} numbers")
print(f"  additive           {timed(additive_step):7.2f} ms   largest array (B, T, T, hidden) = "
      f"{B * T * T * hidden:,} numbers")

# %% [markdown]
# And on the matching task (Adam, so the learning rate is not the question):

# %%
print(f"{'':30s} {'first loss':>10s} {'after 10%':>14s} {'final loss':>10s}")
for name, model in [("scaled dot product", DotScorer(scale=True)), (f"additive, hidden {d_k}", AdditiveScorer(d_k))]:
    tga.manual_seed(0)
    row(name, train(model, Adam(model.parameters(), lr=3e-3)))

# %% [markdown]
# The additive scorer is slower and far hungrier for memory, and on this task it stays
# at chance: it *adds* the query's and the key's features before the tanh, so "q
# matches k" has to be built out of the tanh's curvature, while a dot product
# multiplies them directly. That, and speed, is why the transformer uses the scaled
# dot product.
