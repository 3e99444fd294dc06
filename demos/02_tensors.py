# %% [markdown]
# # 2. Tensors and broadcasting
#
# The Tensor engine is the scalar engine with arrays: each op keeps its inputs and a
# vector-Jacobian product (VJP), and backward() runs the VJPs in reverse order.
# This demo shows the one subtle step, broadcasting, and how to check any gradient.

# %%
import numpy as np

import tinygrad_attn as tga
from tinygrad_attn import ops

np.set_printoptions(precision=3, suppress=True)
tga.manual_seed(0)

# %% [markdown]
# ## A layer's bias is broadcast
# `x @ W + b` adds the same bias row to every example in the batch: NumPy stretches
# b from shape (3,) to (4, 3) without copying it.

# %%
x = tga.randn(4, 2)  # a batch of 4 examples
W = tga.randn(2, 3, requires_grad=True)
b = tga.Tensor([0.1, 0.2, 0.3], requires_grad=True)
y = x @ W + b
print("y has shape", y.shape, "but b has shape", b.shape)

# %% [markdown]
# ## Why the gradient of a broadcast operand is a sum
# Each of b's 3 numbers was used 4 times, once per example. By the chain rule a
# number used in several places receives the sum of the gradients from every place.
# The add op's VJP hands back a (4, 3) gradient; the engine sums it down to b's
# (3,) shape, once, for every op (see `_unbroadcast` in tensor.py).

# %%
g = np.arange(12, dtype=np.float32).reshape(4, 3)  # pretend upstream gradient
_, vjp = ops.add(x.data @ W.data, b.data)
print("the add op's VJP gives b a gradient of shape", vjp(g)[1].shape)
y.backward(g)
print("after the engine sums it:", b.grad.numpy(), " column sums of g:", g.sum(axis=0))
assert np.allclose(b.grad.numpy(), g.sum(axis=0))

# %% [markdown]
# Gradients accumulate across backward() calls, exactly as in PyTorch, until you
# zero them (zero_grad sets .grad back to None):

# %%
(x @ W + b).backward(g)
print("after a second backward:", b.grad.numpy())
b.zero_grad()
print("after zero_grad:", b.grad)

# %% [markdown]
# ## Checking a gradient
# `gradcheck` compares backward() with central differences in float64. It contracts
# the output with a *random* vector u: with u = 1 the gradient of sum(softmax(x)) is
# zero for any x, so a wrong softmax backward would slip through.

# %%
a = tga.randn(3, 4, dtype=np.float64, requires_grad=True)
w = tga.randn(4, dtype=np.float64, requires_grad=True)
print("softmax(a * w) passes:", tga.gradcheck(lambda a, w: (a * w).softmax(axis=-1), a, w))

# And a wrong derivative is caught. This tanh's VJP "forgets" its (1 - z^2) factor:


def bad_tanh(x):
    return np.tanh(x), lambda g: (g,)


try:
    tga.gradcheck(lambda a: tga.tensor.apply(bad_tanh, a), a)
except tga.GradcheckError as e:
    print("caught:", e)
