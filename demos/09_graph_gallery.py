# %% [markdown]
# # 9. A graph gallery: from one expression to a whole model
#
# Every result in tinygrad_attn remembers the ops that made it, so any result can be
# drawn. We draw five graphs of growing size: one expression on single numbers, a
# neuron, an MLP on tensors, one transformer layer, and a full encoder-decoder, which is
# only readable when modules are folded into boxes (`depth=`). Then the same graphs in
# the backward view: the order in which backward() hands gradients down.
#
# The pictures go to `tinygrad_attn_out/demos/` as SVG. Rendering needs Graphviz's `dot`
# program; without it `save` writes the DOT text (open it in any Graphviz viewer) and
# says how to install Graphviz, and the demo carries on.

# %%
import re
from pathlib import Path

import numpy as np

import tinygrad_attn as tga
from tinygrad_attn.env import quick
from tinygrad_attn.nn import TransformerEncoderLayer, spelled_out
from tinygrad_attn.scalar import Value
from tinygrad_attn.viz import draw_graph, retain_grads, save
from tinygrad_attn.viz import show as show_inline
from tinygrad_attn.viz.examples import example

out_dir = Path("tinygrad_attn_out/demos")


def size(graph):
    """(nodes, edges) drawn, not counting the legend."""
    lines = [line for line in graph.body if "legend" not in line]
    edges = sum("->" in line for line in lines)
    nodes = sum(bool(re.match(r"\s*\S+ \[", line)) and "->" not in line for line in lines)
    return nodes, edges


def show(graph, name):
    nodes, edges = size(graph)
    print(f"{name}: {nodes} nodes, {edges} edges -> {save(graph, out_dir / name)}")
    show_inline(graph)  # inline when run as a notebook


# %% [markdown]
# ## 1. One expression
# L = (a * b + c) * f on `Value`s. Each node shows its data and, after backward(), its
# gradient dL/dnode. The gradient of a is f * b: the local derivatives multiplied along
# the path from L down to a.

# %%
a, b, c, f = Value(2.0, label="a"), Value(-3.0, label="b"), Value(10.0, label="c"), Value(-2.0, label="f")
L = (a * b + c) * f
L.backward()
print(f"L = {L.data}; dL/da = {a.grad} (f * b = {f.data * b.data}), dL/dc = {c.grad}, dL/df = {f.grad}")
assert a.grad == f.data * b.data
show(draw_graph(L, title="L = (a*b + c) * f"), "09_1_expression.svg")

# %% [markdown]
# ## 2. A neuron
# tanh(x1*w1 + x2*w2 + b), with the weights chosen so that the sum is 0.8814 and the
# output is tanh(0.8814) = 0.7071. Its gradient 1 - 0.7071^2 = 0.5 flows back to every
# term of the sum; x2 is 0, so w2 learns nothing from this example.

# %%
neuron_out, neuron_params, title = example("neuron")
print(f"output {neuron_out.data:.4f};",
      ", ".join(f"d out/d {k} = {v.grad:+.4f}" for k, v in neuron_params.items()))
show(draw_graph(neuron_out, params=neuron_params, title=title), "09_2_neuron.svg")

# %% [markdown]
# ## 3. An MLP on tensors
# The same idea with arrays: a node is now a whole tensor, drawn with its shape, and a
# Linear layer is one op (x @ W^T + b) inside a box named after the module. With
# `retain_grads` every intermediate keeps its gradient, shown as values when small and
# as a norm when large.

# %%
mlp_loss, mlp, title = example("mlp")
print(f"loss {mlp_loss.item():.4f}; fc1.weight {mlp.fc1.weight.shape} has gradient norm "
      f"{np.linalg.norm(mlp.fc1.weight.grad.numpy()):.4f}")
show(draw_graph(mlp_loss, model=mlp, show=("shape", "grad"), title=title), "09_3_mlp.svg")

# %% [markdown]
# ## 4. One transformer layer
# An encoder layer: self-attention and a feed-forward network, each with a residual and
# a LayerNorm. Drawn op by op it is already a few dozen nodes; with `depth=1` each
# sublayer (self_attn, feed_forward, norm1, ...) becomes one box with its in and out
# shapes and parameter count. Self-attention normally runs as one fused op (PyTorch's fast
# path); inside `spelled_out()` it records each step, which is what these pictures are for.

# %%
tga.manual_seed(0)
layer = TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0)
x = tga.randn(1, 4, 8)
x.name = "x"
with spelled_out():
    layer_loss = (layer(x) ** 2).mean()
retain_grads(layer_loss).backward()
show(draw_graph(layer_loss, model=layer, title="TransformerEncoderLayer: every op"), "09_4_layer_ops.svg")
show(draw_graph(layer_loss, model=layer, depth=1, title="TransformerEncoderLayer, depth=1"),
     "09_4_layer_depth1.svg")

# %% [markdown]
# ## 5. A whole encoder-decoder, at depth 1, 2 and 3
# `make_model` with three encoder and three decoder layers (two with `--quick`), and
# its cross-entropy loss on one sentence. At depth 1 the picture is the data path: embeddings, positions, the
# encoder and decoder as boxes, the output projection and the loss. Depth 2 opens the
# stacks into their layers (the first layer of a stack is drawn, the identical layers
# after it fold into one box), depth 3 opens a layer into its attention, feed-forward
# and norms, and depth=None opens every module down to single ops. With `fold=False`
# every layer is drawn op by op.

# %%
layers = 2 if quick() else 3
model_loss, model, title = example("transformer", layers=layers, d_model=32, heads=4)
print(f"model: {layers} encoder + {layers} decoder layers, {model.num_parameters():,} parameters, "
      f"loss {model_loss.item():.3f}")
sizes = {}
for depth in (1, 2, 3, None):
    graph = draw_graph(model_loss, model=model, depth=depth, title=f"{title}, depth={depth}")
    sizes[depth] = size(graph)[0]
    show(graph, f"09_5_model_depth{depth or 'all'}.svg")
graph = draw_graph(model_loss, model=model, fold=False, max_nodes=1000, title=f"{title}, every op of every layer")
sizes["unfolded"] = size(graph)[0]
show(graph, "09_5_model_unfolded.svg")
assert sizes[1] < sizes[2] < sizes[3] < sizes[None] < sizes["unfolded"]

# %% [markdown]
# ## The backward view
# backward() visits the nodes in reverse topological order: the loss first, then each
# node only after every node that used it, so its gradient is complete before it is
# passed on. With `backward=True` each node is numbered with its step and the gradient
# edges are drawn in red, pointing down the graph. Here is the order for the MLP, next
# to the order the forward pass ran in:

# %%
forward_order = [n._op for n in mlp_loss._topo() if n._op]
backward_order = [n._op for n in reversed(mlp_loss._topo()) if n._op]
print("forward: ", " -> ".join(forward_order))
print("backward:", " -> ".join(backward_order))
assert backward_order == forward_order[::-1]
show(draw_graph(mlp_loss, model=mlp, show=("shape", "grad"), backward=True, title="MLP, backward view"),
     "09_6_mlp_backward.svg")
show(draw_graph(neuron_out, params=neuron_params, backward=True, title="neuron, backward view"),
     "09_6_neuron_backward.svg")
show(draw_graph(model_loss, model=model, depth=2, backward=True, title=f"{title}, backward view, depth=2"),
     "09_6_model_backward_depth2.svg")

# %% [markdown]
# Open the SVGs side by side: the node counts above grow from a handful for one
# expression to hundreds for the whole model drawn op by op, which is why the model
# pictures fold modules into boxes. In the backward pictures the numbers run from the loss [1] up to
# the parameters, the reverse of the forward order printed above.
