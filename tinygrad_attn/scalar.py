"""The scalar engine: autograd on single numbers, the place to meet the chain rule.

Each op records its parents and its *local derivatives* d(out)/d(parent)
the moment it runs. backward() then needs nothing but the chain rule:

    parent.grad += local_derivative * out.grad

applied to every node in reverse topological order. The Tensor engine does
the same with arrays, where a local derivative becomes a vector-Jacobian product.
"""

import math

from .topo import topological_order


class Value:
    """A float that remembers how it was made: ``Value(2.0) * Value(3.0)``."""

    __slots__ = ("data", "grad", "_parents", "_local", "_op", "_scope", "label")

    def __init__(self, data, _parents=(), _local=(), _op="", label=""):
        self.data = float(data)
        self.grad = 0.0
        self._parents = _parents  # the Values this one was computed from (a tuple: fixed order)
        self._local = _local  # d(self)/d(parent), one float per parent
        self._op = _op
        self._scope = ()
        self.label = label

    def __repr__(self):
        return f"Value(data={self.data:.4g}, grad={self.grad:.4g})"

    # ------------------------------------------------------------ ops: value and local derivatives

    def __add__(self, other):
        other = _value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other):
        other = _value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __pow__(self, k):
        if not isinstance(k, (int, float)):
            raise TypeError(f"Value ** {type(k).__name__}: only a constant int or float exponent is supported")
        local = 0.0 if k == 0 else k * self.data ** (k - 1)  # x ** 0 is constant, even at x = 0
        return Value(self.data**k, (self,), (local,), f"**{k:g}")

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), (e,), "exp")

    def log(self):
        if self.data <= 0:
            raise ValueError(f"log: Value({self.data:g}) is not positive")
        return Value(math.log(self.data), (self,), (1.0 / self.data,), "log")

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, (self,), (1.0 - t * t,), "tanh")

    def relu(self):
        positive = self.data > 0
        return Value(self.data if positive else 0.0, (self,), (1.0 if positive else 0.0,), "relu")

    # ------------------------------------------------------------ ops made of the ones above

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-_value(other))

    def __truediv__(self, other):
        return self * _value(other) ** -1

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return _value(other) - self

    def __rtruediv__(self, other):
        return _value(other) / self

    # ------------------------------------------------------------ backward

    def _topo(self):
        """Every Value this one depends on, parents before children."""
        return topological_order(self, lambda node: node._parents)

    def backward(self):
        """Add d(self)/d(v) to v.grad for every v this Value depends on.

        Gradients accumulate across calls, as with Tensor; call zero_grad() to reset.
        Intermediate nodes are reset first, so a second call does not double count them.
        """
        order = self._topo()
        for node in order:
            if node._parents:
                node.grad = 0.0
        self.grad += 1.0
        for node in reversed(order):
            for parent, local in zip(node._parents, node._local):
                parent.grad += local * node.grad  # the chain rule

    def zero_grad(self):
        for node in self._topo():
            node.grad = 0.0


def _value(x):
    return x if isinstance(x, Value) else Value(x)


# ---------------------------------------------------------------- a tiny network of Values


class Neuron:
    """relu(w . x + b), or w . x + b when ``nonlin=False``; weights drawn from the library's generator."""

    def __init__(self, nin, nonlin=True):
        from .rng import generator

        self.w = [Value(w, label=f"w{i}") for i, w in enumerate(generator().uniform(-1, 1, nin))]
        self.b = Value(0.0, label="b")
        self.nonlin = nonlin

    def __call__(self, x):
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self):
        return self.w + [self.b]


class Layer:
    """``nout`` neurons reading the same inputs."""

    def __init__(self, nin, nout, nonlin=True):
        self.neurons = [Neuron(nin, nonlin) for _ in range(nout)]

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]


class MLP:
    """Layers of neurons: ``MLP(2, [16, 16, 1])``; the last layer is linear."""

    def __init__(self, nin, nouts):
        sizes = [nin] + list(nouts)
        self.layers = [Layer(sizes[i], sizes[i + 1], nonlin=i < len(nouts) - 1) for i in range(len(nouts))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self):
        for p in self.parameters():
            p.grad = 0.0
