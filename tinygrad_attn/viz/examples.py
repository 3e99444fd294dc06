"""The example computations whose graphs `tinygrad-attn graph`, the graph-gallery demo and the docs draw:
one neuron on Values, a small MLP on Tensors, and make_model()'s loss.
"""

import numpy as np

from .. import functional as F
from ..nn.attention import spelled_out
from ..nn.layers import Linear
from ..nn.model import make_model
from ..nn.module import Module
from ..rng import manual_seed
from ..scalar import Value
from ..tensor import Tensor
from .graph import retain_grads

EXAMPLES = ("neuron", "mlp", "transformer")


def example(name, layers=6, d_model=512, heads=8):
    """(output, model or params, title) for one of EXAMPLES, after backward(): what `tinygrad-attn graph` draws."""
    manual_seed(0)
    if name == "neuron":
        x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
        w1, w2, b = Value(-3.0, label="w1"), Value(1.0, label="w2"), Value(6.8813735870195432, label="b")
        o = (x1 * w1 + x2 * w2 + b).tanh()
        o.backward()
        return o, {"w1": w1, "w2": w2, "b": b}, "one neuron: tanh(x1*w1 + x2*w2 + b)"
    if name == "mlp":
        class MLP(Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc2 = Linear(3, 4), Linear(4, 1)

            def forward(self, x):
                return self.fc2(self.fc1(x).tanh())

        model = MLP()
        x = Tensor(np.linspace(-1, 1, 6).reshape(2, 3))
        x.name = "x"
        loss = ((model(x) - 1.0) ** 2).mean()
        retain_grads(loss).backward()
        return loss, model, "an MLP on tensors: mean((fc2(tanh(fc1(x))) - 1)^2)"
    model = make_model(11, 11, N=layers, d_model=d_model, d_ff=4 * d_model, h=heads, dropout=0.0)
    src = Tensor(np.array([[1, 4, 3, 7, 2, 9, 5]]))
    tgt_in = Tensor(np.array([[1, 2, 3, 4, 5, 6]]))
    tgt_out = Tensor(np.array([[2, 3, 4, 5, 6, 7]]))
    with spelled_out():  # every step of attention in the picture, not its fast path's one op
        logits = model(src, tgt_in)
    target = tgt_out.reshape(-1)
    target.name = "target ids"
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target)
    retain_grads(loss).backward(retain_graph=True)  # every op keeps its gradient, for explore()'s edges too
    return loss, model, f"make_model(N={layers}, d_model={d_model}, h={heads}): cross-entropy loss"
