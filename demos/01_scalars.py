# %% [markdown]
# # 1. Scalars and the chain rule
#
# Before tensors, one number at a time. A `Value` is a float that remembers the
# values it was computed from and, for each of them, the local derivative of the op
# that combined them. That is all backpropagation needs.

# %%
import math
from pathlib import Path

import tinygrad_attn as tga
from tinygrad_attn.scalar import Neuron, Value
from tinygrad_attn.viz import draw_graph, explore, save, show

out_dir = Path("tinygrad_attn_out/demos")

a, b, c = Value(2.0, label="a"), Value(-3.0, label="b"), Value(10.0, label="c")
e = a * b
d = e + c
f = d.tanh()
print("f = tanh(a*b + c) =", f.data)

# %% [markdown]
# ## The chain rule by hand
# Each op stored its local derivatives when it ran: for e = a*b they are de/da = b and
# de/db = a; for d = e + c both are 1; for f = tanh(d) it is 1 - tanh(d)^2.
# df/da is the product of the local derivatives along the path from f back to a.

# %%
df_dd = 1 - math.tanh(d.data) ** 2
df_da = df_dd * 1.0 * b.data  # df/dd * dd/de * de/da
print("by hand:  df/da =", df_da)
print("recorded: f's local derivative", f._local, " e's local derivatives", e._local)

f.backward()
print("backward: df/da =", a.grad, " df/db =", b.grad, " df/dc =", c.grad)
assert math.isclose(a.grad, df_da)

# %% [markdown]
# ## Check it with a nudge
# A derivative says how much f moves when a moves a tiny bit. Nudge a by h both ways:

# %%
h = 1e-6
nudged = ((2.0 + h) * -3.0 + 10.0, (2.0 - h) * -3.0 + 10.0)
numeric = (math.tanh(nudged[0]) - math.tanh(nudged[1])) / (2 * h)
print(f"finite difference {numeric:.6f}  vs backward {a.grad:.6f}")

# %% [markdown]
# ## A neuron, and its graph
# A neuron is relu(w . x + b). Its graph shows every multiply and add with the data
# (top) and the gradient (bottom) that backward() left in each node.

# %%
tga.manual_seed(0)
neuron = Neuron(3)
x = [Value(1.0, label="x0"), Value(-2.0, label="x1"), Value(0.5, label="x2")]
y = neuron(x)
y.backward()
for i, w in enumerate(neuron.w):
    print(f"w{i} = {w.data:+.3f}   dy/dw{i} = {w.grad:+.3f}  (= x{i} when the neuron is active)")

graph = draw_graph(y)
print("graph written to", save(graph, out_dir / "01_neuron.svg"))
show(graph)  # inline when this runs as a notebook (see the README); a script has the file
show(explore(y))  # the same graph to click: select a node for its value and gradient

# %% [markdown]
# ## Gradients add up
# A value used twice gets the sum of both paths' gradients, and repeated backward()
# calls accumulate, as in PyTorch, until you reset them:

# %%
z = Value(3.0)
twice = z * z  # z used twice: d(z*z)/dz = z + z
twice.backward()
print("d(z*z)/dz =", z.grad)
twice.backward()
print("after a second backward():", z.grad)
twice.zero_grad()
print("after zero_grad():", z.grad)
