"""The Tensor: an ndarray that remembers how it was made, and backward() through that record.

Each op result keeps its parents (a tuple, so the order is fixed) and the
VJP closure its primitive in ops.py returned. ``backward`` sorts the graph
without recursion, walks it in reverse, and sums gradients into parents out
of place; broadcasting is undone here, once, for every op.
"""

import numpy as np

from . import ops
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


def _shape(shape):
    """Accept both f(2, 3) and f((2, 3))."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


class Tensor:
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
        self.data = data
        self.grad = None
        self.requires_grad = False
        self._parents = ()
        self._vjp = None
        self._op = None
        self._scope = _scope
        self._retain = False
        self.name = None
        if requires_grad:
            self.requires_grad_()

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
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad has shape {grad.shape} but the tensor has shape {self.shape}")

        order = self._topo()
        for node in order:  # before any .grad changes, so a failed call leaves no partial gradients
            if node._parents and node._vjp is None:
                raise RuntimeError(
                    f"backward: the graph through '{node._op}' (shape {node.shape}) was already freed by an "
                    f"earlier backward(); pass retain_graph=True to the first backward() to go through it twice"
                )
        grads = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if not node._parents or node._retain:  # a fresh array: g may be shared or the caller's
                node.grad = Tensor(g.copy() if node.grad is None else node.grad.data + g, dtype=g.dtype)
            if not node._parents:
                continue
            for p, pg in zip(node._parents, node._vjp(g)):
                if pg is None or not p.requires_grad:
                    continue
                if pg.shape != p.data.shape:
                    pg = _unbroadcast(pg, p.data.shape, node._op)
                if pg.dtype != p.data.dtype:
                    pg = pg.astype(p.data.dtype)
                k = id(p)
                grads[k] = pg if k not in grads else grads[k] + pg  # out of place: pg may be shared
            if not retain_graph:
                node._vjp = None

    # ------------------------------------------------------------ arithmetic

    def __add__(self, other):
        return _binary(ops.add, self, other)

    def __radd__(self, other):
        return _binary(ops.add, other, self)

    def __sub__(self, other):
        return _binary(ops.sub, self, other)

    def __rsub__(self, other):
        return _binary(ops.sub, other, self)

    def __mul__(self, other):
        return _binary(ops.mul, self, other)

    def __rmul__(self, other):
        return _binary(ops.mul, other, self)

    def __truediv__(self, other):
        return _binary(ops.div, self, other)

    def __rtruediv__(self, other):
        return _binary(ops.div, other, self)

    def __pow__(self, other):
        if isinstance(other, (int, float)):
            return apply(ops.pow_const, self, c=other if type(other) is int else float(other))  # np.float64 too
        return _binary(ops.power, self, other)

    def __rpow__(self, other):
        return _binary(ops.power, other, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __neg__(self):
        return apply(ops.neg, self)

    # comparisons give bool tensors (masks) and build no graph
    def __eq__(self, other):
        return Tensor(self.data == _raw(other))

    def __ne__(self, other):
        return Tensor(self.data != _raw(other))

    def __lt__(self, other):
        return Tensor(self.data < _raw(other))

    def __le__(self, other):
        return Tensor(self.data <= _raw(other))

    def __gt__(self, other):
        return Tensor(self.data > _raw(other))

    def __ge__(self, other):
        return Tensor(self.data >= _raw(other))

    # ------------------------------------------------------------ elementwise

    def exp(self):
        return apply(ops.exp, self)

    def log(self):
        return apply(ops.log, self)

    def sqrt(self):
        return apply(ops.sqrt, self)

    def tanh(self):
        return apply(ops.tanh, self)

    def sigmoid(self):
        return apply(ops.sigmoid, self)

    def relu(self):
        return apply(ops.relu, self)

    def gelu(self, approximate="none"):
        """GELU; ``approximate='tanh'`` gives the tanh approximation, as in PyTorch."""
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return apply(ops.gelu if approximate == "none" else ops.gelu_tanh, self)

    def astype(self, dtype):
        return apply(ops.astype, self, dtype=np.dtype(dtype))

    # ------------------------------------------------------------ reductions

    def sum(self, axis=None, keepdims=False):
        return _along_axes(ops.sum, self, axis=_axis(axis), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _along_axes(ops.mean, self, axis=_axis(axis), keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return _along_axes(ops.max, self, axis=_axis(axis), keepdims=keepdims)

    def softmax(self, axis=-1):
        return _along_axes(ops.softmax, self, axis=axis)

    def log_softmax(self, axis=-1):
        return _along_axes(ops.log_softmax, self, axis=axis)

    # ------------------------------------------------------------ shape

    def reshape(self, *shape):
        shape = _shape(shape)
        try:
            return apply(ops.reshape, self, shape=shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot view shape {self.shape} ({self.size} elements) as {shape}; "
                f"the new shape must hold the same number of elements (use -1 for one inferred axis)"
            ) from None

    def permute(self, *axes):
        axes = _shape(axes)
        in_range = all(-self.ndim <= a < self.ndim for a in axes)
        if not in_range or sorted(a % self.ndim for a in axes) != list(range(self.ndim)):
            raise ValueError(f"permute: {axes} is not an ordering of the {self.ndim} axes of shape {self.shape}")
        return apply(ops.permute, self, axes=axes)

    def transpose(self, a=-2, b=-1):
        """Swap axes a and b (the last two by default)."""
        return _along_axes(ops.transpose, self, a=a, b=b)

    @property
    def T(self):
        """The last two axes swapped (a batch of matrices transposed), unlike NumPy's .T, which reverses all."""
        return self.transpose(-2, -1) if self.ndim >= 2 else self

    def broadcast_to(self, *shape):
        shape = _shape(shape)
        try:
            return apply(ops.broadcast_to, self, shape=shape)
        except ValueError:
            raise ValueError(f"broadcast_to: shape {self.shape} cannot be stretched to {shape}; each axis must "
                             f"match or be 1, and new axes go in front") from None

    def unsqueeze(self, axis):
        """A new axis of length 1 at ``axis`` (from -ndim-1 to ndim, as in PyTorch)."""
        if not -self.ndim - 1 <= axis <= self.ndim:
            raise ValueError(f"unsqueeze: axis {axis} is out of range for shape {self.shape}; "
                             f"a new axis goes at {-self.ndim - 1} to {self.ndim}")
        shape = list(self.shape)
        shape.insert(axis if axis >= 0 else len(shape) + axis + 1, 1)
        return self.reshape(shape)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        try:
            return apply(ops.getitem, self, index=index)
        except IndexError as e:
            raise IndexError(f"getitem: index {_short(index)} does not fit shape {self.shape}: {e}") from None

    def masked_fill(self, mask, value):
        """Where ``mask`` is True, put ``value``; gradients flow only where it is False."""
        mask = _raw(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"masked_fill: the mask must be bool, got {mask.dtype}; compare first, e.g. ids == pad")
        try:
            np.broadcast_shapes(mask.shape, self.shape)
        except ValueError:
            raise ValueError(
                f"masked_fill: mask of shape {mask.shape} does not broadcast to the tensor's shape {self.shape}"
            ) from None
        return apply(ops.masked_fill, self, mask=mask, value=value)


# ---------------------------------------------------------------- making results


def apply(op, *inputs, **options):
    """Run a primitive from ops.py on tensors and record it in the graph when gradients are needed."""
    data, vjp = op(*(t.data for t in inputs), **options)
    out = Tensor.__new__(Tensor)
    out.data = data if type(data) is np.ndarray else np.asarray(data)
    out.grad = None
    out._scope = _scope
    out._retain = False
    out.name = None
    if _grad_enabled and any(t.requires_grad for t in inputs):
        out.requires_grad, out._parents, out._vjp, out._op = True, inputs, vjp, op.__name__
    else:
        out.requires_grad, out._parents, out._vjp, out._op = False, (), None, None
    return out


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


def _raw(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _short(index):
    text = repr(index)
    return text if len(text) < 60 else text[:57] + "..."


def as_tensor(x, like):
    """A constant operand as a Tensor, with ``like``'s float dtype so float32 stays float32.

    Next to an integer tensor a Python float becomes float32, the default float, as in PyTorch.
    """
    if isinstance(x, Tensor):
        return x
    python_float = isinstance(x, float)
    x = np.asarray(x)
    if like.data.dtype.kind == "f" and x.dtype.kind in "biuf":
        x = x.astype(like.data.dtype, copy=False)
    elif python_float:
        x = x.astype(np.float32)
    return Tensor(x, dtype=x.dtype)


def _float_operands(op, a, b):
    """Where NumPy's promotion and PyTorch's differ, PyTorch's: an integer or bool operand takes the
    float operand's dtype (NumPy would make int64 + float32 a float64), and integers divide to float32."""
    float_a, float_b = a.data.dtype.kind == "f", b.data.dtype.kind == "f"
    if float_a and not float_b:
        b = Tensor(b.data.astype(a.data.dtype), dtype=a.data.dtype)  # integers never require grad: no graph lost
    elif float_b and not float_a:
        a = Tensor(a.data.astype(b.data.dtype), dtype=b.data.dtype)
    elif not float_a and not float_b and op is ops.div:
        a, b = Tensor(a.data, dtype=np.float32), Tensor(b.data, dtype=np.float32)
    return a, b


def _along_axes(op, t, **options):
    """apply() for ops that take axes, turning NumPy's AxisError into a message that names the op."""
    try:
        return apply(op, t, **options)
    except (np.exceptions.AxisError, ValueError) as e:  # an axis out of range, or the same axis twice
        axes = ", ".join(f"{k}={v}" for k, v in options.items() if k != "keepdims")
        problem = "is out of range for" if isinstance(e, np.exceptions.AxisError) else "does not fit"
        raise ValueError(
            f"{op.__name__}: {axes} {problem} shape {t.shape}; "
            f"axes run from {-t.ndim} to {t.ndim - 1}, each named once"
        ) from None


def _binary(op, a, b):
    a = as_tensor(a, b) if not isinstance(a, Tensor) else a
    b = as_tensor(b, a) if not isinstance(b, Tensor) else b
    a, b = _float_operands(op, a, b)
    try:
        return apply(op, a, b)
    except ValueError:
        if _broadcastable(a.shape, b.shape):
            raise
        raise ValueError(
            f"{op.__name__}: shapes {a.shape} and {b.shape} do not broadcast; NumPy's rule compares trailing "
            f"axes, which must be equal or 1 (reshape one operand, e.g. add an axis with unsqueeze)"
        ) from None


def _broadcastable(s, t):
    try:
        np.broadcast_shapes(s, t)
        return True
    except ValueError:
        return False


def matmul(a, b):
    """a @ b with NumPy's rules: batched over leading axes, 1-D operands treated as vectors."""
    a = as_tensor(a, b) if not isinstance(a, Tensor) else a
    b = as_tensor(b, a) if not isinstance(b, Tensor) else b
    a, b = _float_operands(ops.matmul, a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: {a.shape} @ {b.shape}: operands must have at least one axis; use * for scalars")
    k_a, k_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if k_a != k_b:
        raise ValueError(
            f"matmul: {a.shape} @ {b.shape}: inner dimensions {k_a} and {k_b} differ; "
            f"the last axis of the left operand must match the "
            f"{'second-to-last' if b.ndim > 1 else 'only'} axis of the right"
        )
    try:
        return apply(ops.matmul, a, b)
    except ValueError:
        raise ValueError(
            f"matmul: {a.shape} @ {b.shape}: the batch axes {a.shape[:-2]} and {b.shape[:-2]} do not broadcast"
        ) from None
