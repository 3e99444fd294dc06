# %% [markdown]
# # 3. Self-attention from scratch
#
# Every word asks a question (its *query*), every word offers a label (its *key*) and a
# message (its *value*). A word's new representation is the average of all messages,
# weighted by how well its question matches each label. We build that four ways:
# one word at a time with plain loops, with matrices, with the scalar engine, and with
# the Tensor engine, and check they agree.

# %%
import numpy as np

import tinygrad_attn as tga
from tinygrad_attn.scalar import Value

np.set_printoptions(precision=3, suppress=True)
rng = np.random.default_rng(0)

words = ["the", "cat", "sat"]
d_model, d_k = 4, 2
X = rng.standard_normal((3, d_model))  # one embedding row per word
W_q, W_k, W_v = (rng.standard_normal((d_model, d_k)) for _ in range(3))

# %% [markdown]
# ## One word at a time
# Queries, keys and values are three different linear views of the same embeddings.
# For the word "cat" we score its query against every key, scale by sqrt(d_k),
# turn the scores into weights with a softmax, and sum the values with those weights.

# %%
q = X[1] @ W_q  # the query of "cat"
keys = [X[j] @ W_k for j in range(3)]
values = [X[j] @ W_v for j in range(3)]

scores = [float(q @ k) / np.sqrt(d_k) for k in keys]
weights = np.exp(scores) / np.sum(np.exp(scores))
context = sum(w * v for w, v in zip(weights, values))

for word, s, w in zip(words, scores, weights):
    print(f"cat -> {word:4s} relevance {s:+.3f}   weight {w:.3f}")
print("new representation of 'cat':", context)

# %% [markdown]
# ## The same, for every word at once, as matrices
# Stacking the rows turns the loops into three matrix products:
# softmax(Q K^T / sqrt(d_k)) V. Row 1 of the result is the vector we just built.

# %%
Q, K, V = X @ W_q, X @ W_k, X @ W_v
S = Q @ K.T / np.sqrt(d_k)  # (3, 3): row i scores word i's query against every key
A = np.exp(S - S.max(axis=1, keepdims=True))
A /= A.sum(axis=1, keepdims=True)  # each row sums to 1
out = A @ V  # (3, d_k)
print("attention weights (rows: who asks, columns: who answers):\n", A)
print("row for 'cat' equals the loop above:", np.allclose(out[1], context))
assert np.allclose(out[1], context)

# %% [markdown]
# ## One head on the scalar engine and on the Tensor engine
# The scalar engine builds the head from single numbers, so every multiply is a node
# you could draw; the Tensor engine does the same with a handful of array ops.
# Both give the same output and the same gradients of every weight.

# %%


def head_scalar(X, W_q, W_k, W_v):
    """One attention head with Values: lists of lists, explicit sums."""
    def matmul(A, B):
        return [[sum((A[i][t] * B[t][j] for t in range(len(B))), Value(0.0)) for j in range(len(B[0]))]
                for i in range(len(A))]

    Q, K, V = matmul(X, W_q), matmul(X, W_k), matmul(X, W_v)
    out = []
    for i in range(len(X)):
        s = [sum((Q[i][t] * K[j][t] for t in range(d_k)), Value(0.0)) / np.sqrt(d_k) for j in range(len(X))]
        e = [x.exp() for x in s]  # small scores here, so no max-shift is needed
        total = sum(e, Value(0.0))
        a = [x / total for x in e]
        out.append([sum((a[j] * V[j][t] for j in range(len(X))), Value(0.0)) for t in range(d_k)])
    return out


def head_tensor(X, W_q, W_k, W_v):
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    return (Q @ K.transpose(0, 1) / np.sqrt(d_k)).softmax(axis=-1) @ V


as_values = [[[Value(x) for x in row] for row in M] for M in (X, W_q, W_k, W_v)]
as_tensors = [tga.Tensor(M, dtype=np.float64, requires_grad=True) for M in (X, W_q, W_k, W_v)]

out_s = head_scalar(*as_values)
out_t = head_tensor(*as_tensors)
cotangent = rng.standard_normal((3, d_k))  # a random direction, so every gradient entry matters
sum((c * o for c_row, o_row in zip(cotangent, out_s) for c, o in zip(c_row, o_row)), Value(0.0)).backward()
out_t.backward(cotangent)

print("outputs agree:", np.allclose([[o.data for o in row] for row in out_s], out_t.numpy()))
for name, vals, ten in zip(["X", "W_q", "W_k", "W_v"], as_values, as_tensors):
    same = np.allclose([[v.grad for v in row] for row in vals], ten.grad.numpy())
    print(f"gradient of {name:3s} agrees: {same}")
    assert same

# %% [markdown]
# ## Does summing the weighted values lose which words mattered?
# The output is a weighted *average*, so on its own it cannot always say which words
# were weighted. With four words and d_k = 2, here are two different weightings that
# give exactly the same output:

# %%
V4 = rng.standard_normal((4, d_k))
# a direction n with n @ V4 = 0 and sum(n) = 0: moving the weights along it changes nothing
constraints = np.vstack([V4.T, np.ones(4)])  # (3, 4)
n = np.linalg.svd(constraints)[2][-1]
w1 = np.full(4, 0.25)
w2 = w1 + 0.2 * n / np.abs(n).max()
print("weighting 1:", w1, " output:", w1 @ V4)
print("weighting 2:", w2, " output:", w2 @ V4)
print("same output from different weights:", np.allclose(w1 @ V4, w2 @ V4))

# %% [markdown]
# So the *output* can be ambiguous about who was attended to, but nothing is lost
# inside the model: the weights are a separate, inspectable result of every head
# (our MultiheadAttention keeps them after each forward, and the heatmaps draw them).
# And the output does keep *what* the attended words said: move weight onto one word
# and the output moves toward that word's value.

# %%
for j, word in enumerate(["w0", "w1", "w2", "w3"]):
    focused = np.full(4, 0.02)
    focused[j] = 0.94
    distance = np.linalg.norm(focused @ V4 - V4[j])
    print(f"94% of the weight on {word}: output is {distance:.3f} from its value "
          f"(the values are {np.linalg.norm(V4 - V4[j], axis=1).round(2)} apart)")
