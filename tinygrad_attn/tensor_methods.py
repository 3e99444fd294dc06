"""The Tensor's operator sugar: arithmetic, comparisons, elementwise, reductions and shape methods.

Each method only checks its operands, applies PyTorch's dtype promotion and routes to a primitive of
ops.py through ``apply``; it adds no math of its own. ``Tensor`` (tensor.py) inherits them from
``TensorMethods``, so every op is a plain method a reader can grep.

Imports go one way at load time: tensor.py imports this module to define ``Tensor``. The three names this
module needs from tensor.py (``apply``, ``Tensor``, ``unwrap``) are looked up on the first op, once, and
kept (``_engine``); an import inside every op cost about 1.5 us, some 40% of a small op's time.
"""

import numpy as np

from . import ops

_tensor_py = None  # tensor.py, once the first op has run


def _engine():
    """tensor.py (it imports this module, so it is looked up when an op first runs, then kept)."""
    global _tensor_py
    if _tensor_py is None:
        from . import tensor

        _tensor_py = tensor
    return _tensor_py


def apply(op, *inputs, **options):
    """tensor.apply: run a primitive of ops.py and record it in the graph."""
    return _engine().apply(op, *inputs, **options)


def _tensor(data, dtype=None):
    """A new constant Tensor (no graph)."""
    return _engine().Tensor(data, dtype=dtype)


class TensorMethods:
    """The operators and methods of Tensor; every one routes to a primitive in ops.py via apply."""

    __slots__ = ()


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
        if self.data.dtype == np.bool_:
            raise TypeError(f"neg: -mask on a bool tensor (shape {self.shape}) is not defined; to invert a mask "
                            f"use ~mask")
        return apply(ops.neg, self)

    def __invert__(self):  # ~mask: a constant, like the comparisons
        if self.data.dtype.kind not in "biu":
            raise TypeError(f"invert: ~ needs a bool or integer tensor, this one is {self.dtype} {self.shape}")
        return _tensor(~self.data)

    # comparisons give bool tensors (masks) and build no graph
    def __eq__(self, other):
        return _tensor(self.data == unwrap(other))

    def __ne__(self, other):
        return _tensor(self.data != unwrap(other))

    def __lt__(self, other):
        return _tensor(self.data < unwrap(other))

    def __le__(self, other):
        return _tensor(self.data <= unwrap(other))

    def __gt__(self, other):
        return _tensor(self.data > unwrap(other))

    def __ge__(self, other):
        return _tensor(self.data >= unwrap(other))

    # ------------------------------------------------------------ elementwise

    def exp(self):
        return apply(ops.exp, _floating(self))

    def log(self):
        return apply(ops.log, _floating(self))

    def sqrt(self):
        return apply(ops.sqrt, _floating(self))

    def tanh(self):
        return apply(ops.tanh, _floating(self))

    def sigmoid(self):
        return apply(ops.sigmoid, _floating(self))

    def relu(self):
        return apply(ops.relu, self)

    def gelu(self, approximate="none"):
        """GELU; ``approximate='tanh'`` gives the tanh approximation, as in PyTorch."""
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return apply(ops.gelu if approximate == "none" else ops.gelu_tanh, _floating(self))

    def astype(self, dtype):
        return apply(ops.astype, self, dtype=np.dtype(dtype))

    # ------------------------------------------------------------ reductions

    def sum(self, axis=None, keepdims=False):
        return _along_axes(ops.sum, self, axis=_axis(axis), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _along_axes(ops.mean, _floating(self), axis=_axis(axis), keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return _along_axes(ops.max, self, axis=_axis(axis), keepdims=keepdims)

    def softmax(self, axis=-1):
        return _along_axes(ops.softmax, _floating(self), axis=axis)

    def log_softmax(self, axis=-1):
        return _along_axes(ops.log_softmax, _floating(self), axis=axis)

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
        if isinstance(index, TensorMethods):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, TensorMethods) else i for i in index)
        try:
            return apply(ops.getitem, self, index=index)
        except IndexError as e:
            raise IndexError(f"getitem: index {_short(index)} does not fit shape {self.shape}: {e}") from None

    def masked_fill(self, mask, value):
        """Where ``mask`` is True, put ``value``; gradients flow only where it is False."""
        mask = unwrap(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"masked_fill: the mask must be bool, got {mask.dtype}; compare first, e.g. ids == pad")
        try:
            np.broadcast_shapes(mask.shape, self.shape)
        except ValueError:
            raise ValueError(
                f"masked_fill: mask of shape {mask.shape} does not broadcast to the tensor's shape {self.shape}"
            ) from None
        return apply(ops.masked_fill, self, mask=mask, value=value)


# ---------------------------------------------------------------- helpers: operands, dtype promotion, errors


def _shape(shape):
    """Accept both f(2, 3) and f((2, 3))."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def unwrap(x):
    """tensor.unwrap: the ndarray behind a Tensor, or np.asarray(x)."""
    return _engine().unwrap(x)


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _short(index):
    text = repr(index)
    return text if len(text) < 60 else text[:57] + "..."


def as_tensor(x, like):
    """A constant operand as a Tensor, with ``like``'s float dtype so float32 stays float32.

    Next to an integer tensor a Python float becomes float32, the default float, as in PyTorch.
    """
    if isinstance(x, TensorMethods):
        return x
    python_float = isinstance(x, float)
    x = np.asarray(x)
    if like.data.dtype.kind == "f" and x.dtype.kind in "biuf":
        x = x.astype(like.data.dtype, copy=False)
    elif python_float:
        x = x.astype(np.float32)
    return _tensor(x, dtype=x.dtype)


def _float_operands(op, a, b):
    """Where NumPy's promotion and PyTorch's differ, PyTorch's: an integer or bool operand takes the
    float operand's dtype (NumPy would make int64 + float32 a float64), and integers divide to float32."""
    float_a, float_b = a.data.dtype.kind == "f", b.data.dtype.kind == "f"
    if float_a and not float_b:
        b = _tensor(b.data.astype(a.data.dtype), dtype=a.data.dtype)  # integers never require grad: no graph lost
    elif float_b and not float_a:
        a = _tensor(a.data.astype(b.data.dtype), dtype=b.data.dtype)
    elif not float_a and not float_b and op is ops.div:
        a, b = _tensor(a.data, dtype=np.float32), _tensor(b.data, dtype=np.float32)
    return a, b


def _floating(t):
    """Integer and bool tensors enter float functions (exp, softmax, mean, ...) as float32, as in PyTorch."""
    return t if t.data.dtype.kind == "f" else _tensor(t.data, dtype=np.float32)


def _along_axes(op, t, **options):
    """apply() for ops that take axes, with NumPy's axis errors and empty reductions named in our words."""
    axis = options["axis"] if "axis" in options else (options["a"], options["b"])  # transpose swaps a and b
    try:
        axes = range(t.ndim) if axis is None else \
            np.lib.array_utils.normalize_axis_tuple(axis, t.ndim, allow_duplicate=op is ops.transpose)
    except (np.exceptions.AxisError, ValueError, TypeError) as e:  # an axis out of range, or one axis twice
        named = ", ".join(f"{k}={v}" for k, v in options.items() if k != "keepdims")
        problem = "is out of range for" if isinstance(e, np.exceptions.AxisError) else "does not fit"
        raise ValueError(
            f"{op.__name__}: {named} {problem} shape {t.shape}; "
            f"axes run from {-t.ndim} to {t.ndim - 1}, each named once"
        ) from None
    if op is ops.max and any(t.shape[a] == 0 for a in axes):
        raise ValueError(f"max: shape {t.shape}: axis={axis} has length 0, and the maximum of nothing is "
                         f"undefined; reduce over a non-empty axis")
    return apply(op, t, **options)


def _binary(op, a, b):
    a = as_tensor(a, b) if not isinstance(a, TensorMethods) else a
    b = as_tensor(b, a) if not isinstance(b, TensorMethods) else b
    a, b = _float_operands(op, a, b)
    try:
        return apply(op, a, b)
    except TypeError as e:  # what NumPy refuses on these dtypes, such as bool - bool
        raise TypeError(f"{op.__name__}: not defined for {a.dtype} and {b.dtype} tensors ({e})") from None
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
    a = as_tensor(a, b) if not isinstance(a, TensorMethods) else a
    b = as_tensor(b, a) if not isinstance(b, TensorMethods) else b
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
