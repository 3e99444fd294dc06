"""The Tensor: an ndarray that remembers how it was made, and backward() through that record.

Each op result keeps its parents (a tuple, so the order is fixed) and the
VJP closure its primitive in ops.py returned. ``backward`` sorts the graph
without recursion, walks it in reverse, and sums gradients into parents out
of place; broadcasting is undone here, once, for every op.

The operators and methods (+, @, exp, sum, reshape...) are inherited from
``TensorMethods`` in tensor_methods.py; the constructors live in creation.py.
"""

import numpy as np

from .tensor_methods import TensorMethods
from .topo import topological_order

_grad_enabled = True
_scope = ()  # the module path the next op runs in: a tuple of whatever Module.__call__ pushed


def is_grad_enabled():
    """False inside no_grad(): ops then record no graph."""
    return _grad_enabled


class no_grad:
    """Context manager and decorator (``@no_grad`` or ``@no_grad()``): ops inside record no graph."""

    def __new__(cls, fn=None):
        self = super().__new__(cls)
        return self if fn is None else self(fn)

    def __enter__(self):
        global _grad_enabled
        self._prev, _grad_enabled = _grad_enabled, False

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = fn.__name__, fn.__doc__, fn
        return wrapper


class scope:
    """Context manager: every op inside records ``frame`` as the innermost entry of its scope.

    Module.__call__ enters one, so each result knows which (nested) module made it.
    """

    __slots__ = ("frame", "prev")

    def __init__(self, frame):
        self.frame = frame

    def __enter__(self):
        global _scope
        self.prev, _scope = _scope, _scope + (self.frame,)

    def __exit__(self, *exc):
        global _scope
        _scope = self.prev


class Tensor(TensorMethods):
    """An n-dimensional array with reverse-mode autograd.

    ``Tensor(data, requires_grad=False, dtype=None)``: float data, a float64
    ndarray included, becomes float32 unless ``dtype`` says otherwise (float64
    works end to end); integer and bool data keep their dtype (token ids,
    masks) and cannot require gradients. A Tensor passed as data keeps its dtype.
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_vjp", "_op", "_scope", "_retain", "name")
    __array_ufunc__ = None  # ndarray OP Tensor defers to Tensor's reflected op and returns a Tensor

    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, Tensor):
            data, dtype = data.data, dtype or data.dtype
        data = np.asarray(data, dtype=dtype)
        if dtype is None and data.dtype.kind == "f" and data.dtype != np.float32:
            data = data.astype(np.float32)  # float64 only when asked for: dtype=np.float64
        self._set(data)
        if requires_grad:
            self.requires_grad_()

    def _set(self, data, parents=(), vjp=None, op=None):
        """Fill every field: the one place the Tensor's field list is written (__init__ and apply use it)."""
        self.data = data
        self.grad = None
        self.requires_grad = bool(parents)  # a result requires grad exactly when it recorded its parents
        self._parents = parents
        self._vjp = vjp
        self._op = op
        self._scope = _scope
        self._retain = False
        self.name = None

    # ------------------------------------------------------------ basics

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    is_leaf = property(lambda self: not self._parents)

    def numpy(self):
        return self.data

    def item(self):
        return self.data.item()

    def __array__(self, dtype=None, copy=None):
        """np.asarray(t) is a view of t's data; np.array(t) a copy (a snapshot the optimiser cannot move)."""
        a = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return a.copy() if copy and a is self.data else a

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", precision=4, threshold=20, prefix="Tensor(")
        extra = f", op={self._op}" if self._op else (", requires_grad=True" if self.requires_grad else "")
        return f"Tensor({body}, dtype={self.dtype}{extra})"

    def __bool__(self):
        return bool(self.data)

    __hash__ = object.__hash__  # == is elementwise, so tensors hash by identity

    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad: only floating-point tensors can require gradients, this one is "
                f"{self.data.dtype} with shape {self.shape}; make it with dtype=np.float32 or np.float64"
            )
        self.requires_grad = flag
        return self

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data, dtype=self.dtype)

    def retain_grad(self):
        """Keep this non-leaf tensor's .grad after backward (leaves always keep theirs)."""
        self._retain = True
        return self

    def zero_grad(self):
        self.grad = None

    # ------------------------------------------------------------ the graph

    def _topo(self):
        """Nodes that need a gradient, parents before children."""
        return topological_order(self, lambda node: [p for p in node._parents if p.requires_grad])

    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) . grad into every leaf's .grad.

        ``grad`` defaults to 1 for a one-element tensor. The saved arrays of the
        graph are released afterwards unless ``retain_graph=True``.
        """
        grads = {id(self): self._seed(grad)}
        order = self._topo()
        _check_not_freed(order)  # before any .grad changes, so a failed call leaves no partial gradients
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if not node._parents or node._retain:
                node._keep_grad(g)
            if not node._parents:
                continue
            for p, pg in zip(node._parents, node._vjp(g)):  # the chain rule: g times the local Jacobian
                if pg is not None and p.requires_grad:
                    _accumulate(grads, p, _fit(pg, p, node._op))
            if not retain_graph:
                node._vjp = None

    def _seed(self, grad):
        """The gradient backward starts from: ``grad`` checked against this tensor, or 1 if it holds one number."""
        if not self.requires_grad:
            raise RuntimeError(
                f"backward: this tensor (shape {self.shape}) does not require grad and has no graph; "
                f"make its inputs with requires_grad=True and compute it outside no_grad()"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: a gradient can only be implied for a one-element tensor, this one has "
                    f"shape {self.shape}; reduce it first (loss.sum(), loss.mean()) or pass backward(grad=...)"
                )
            return np.ones_like(self.data)
        grad = np.asarray(unwrap(grad), dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward: grad has shape {grad.shape} but the tensor has shape {self.shape}")
        return grad

    def _keep_grad(self, g):
        """.grad += g for a leaf or a retain_grad() tensor, into a fresh array: g may be shared or the caller's."""
        self.grad = Tensor(g.copy() if self.grad is None else self.grad.data + g, dtype=g.dtype)


def _check_not_freed(order):
    """Refuse to go through a node whose VJP an earlier backward() released."""
    for node in order:
        if node._parents and node._vjp is None:
            raise RuntimeError(
                f"backward: the graph through '{node._op}' (shape {node.shape}) was already freed by an "
                f"earlier backward(); pass retain_graph=True to the first backward() to go through it twice"
            )


def _fit(pg, p, op):
    """A parent's gradient in the parent's shape (broadcasting undone) and dtype."""
    if pg.shape != p.data.shape:
        pg = _unbroadcast(pg, p.data.shape, op)
    return pg if pg.dtype == p.data.dtype else pg.astype(p.data.dtype)


def _accumulate(grads, p, pg):
    """Sum pg into p's pending gradient, out of place: an op may return one array for two inputs."""
    k = id(p)
    grads[k] = pg if k not in grads else grads[k] + pg


# ---------------------------------------------------------------- making results


def apply(op, *inputs, **options):
    """Run a primitive from ops.py on tensors and record it in the graph when gradients are needed."""
    data, vjp = op(*(t.data for t in inputs), **options)
    data = data if type(data) is np.ndarray else np.asarray(data)
    out = Tensor.__new__(Tensor)
    if _grad_enabled and any(t.requires_grad for t in inputs):
        out._set(data, inputs, vjp, op.__name__)
    else:
        out._set(data)
    return out


def unwrap(x):
    """The ndarray behind a Tensor, or np.asarray(x) for anything else (another library's tensor is
    detached first, so a torch Parameter converts too): the one way the package unwraps."""
    if isinstance(x, Tensor):
        return x.data
    return np.asarray(x.detach() if hasattr(x, "detach") else x)


def _unbroadcast(g, shape, op):
    """Sum a gradient over the axes that broadcasting added or stretched, back to ``shape``."""
    lead = g.ndim - len(shape)
    assert lead >= 0 and all(m == n or n == 1 for m, n in zip(g.shape[lead:], shape)), (
        f"{op}: gradient of shape {g.shape} cannot be reduced to its input's shape {shape}"
    )
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    g = np.sum(g, axis=axes, keepdims=True) if axes else g
    g = g.reshape(shape)
    assert g.shape == shape, f"{op}: gradient of shape {g.shape} cannot be reduced to its input's shape {shape}"
    return g
