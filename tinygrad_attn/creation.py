"""Constructors: tensors from shapes (zeros, ones, randn, uniform, arange) and from other tensors (cat, stack, where).

This module sits on top of tensor.py and imports it; tensor.py never imports this one.
"""

import numpy as np

from . import ops
from .rng import generator
from .tensor import Tensor, apply, unwrap
from .tensor_methods import _shape, as_tensor


def cat(tensors, axis=0):
    """Join tensors along an existing axis."""
    tensors = _join_operands("cat", tensors)
    try:
        return apply(ops.cat, *tensors, axis=axis)
    except (ValueError, IndexError) as e:  # IndexError: an axis the shapes do not have
        raise ValueError(f"cat: cannot join shapes {[t.shape for t in tensors]} along axis {axis}: {e}") from None


def stack(tensors, axis=0):
    """Join same-shaped tensors along a new axis."""
    tensors = _join_operands("stack", tensors)
    if len({t.shape for t in tensors}) > 1:
        raise ValueError(f"stack: all tensors must have one shape, got {[t.shape for t in tensors]}")
    try:
        return apply(ops.stack, *tensors, axis=axis)
    except IndexError as e:  # numpy's AxisError
        raise ValueError(f"stack: cannot stack shape {tensors[0].shape} along new axis {axis}: {e}") from None


def _join_operands(name, tensors):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: needs at least one tensor")
    first = next((t for t in tensors if isinstance(t, Tensor)), None)
    return [as_tensor(t, first) if first is not None else Tensor(t) for t in tensors]


def where(cond, x, y):
    """x where cond else y, with gradients to both branches."""
    if not isinstance(x, Tensor):
        x = as_tensor(x, y) if isinstance(y, Tensor) else Tensor(x)
    y = as_tensor(y, x)
    cond = unwrap(cond).astype(bool, copy=False)
    try:
        return apply(ops.where, x, y, cond=cond)
    except ValueError:
        raise ValueError(f"where: cond {cond.shape}, x {x.shape} and y {y.shape} do not broadcast to one shape; "
                         f"NumPy's rule compares trailing axes, which must be equal or 1") from None


def zeros(*shape, dtype=np.float32, requires_grad=False):
    """A tensor of zeros: zeros(2, 3) or zeros((2, 3))."""
    return Tensor(np.zeros(_shape(shape)), dtype=dtype, requires_grad=requires_grad)


def ones(*shape, dtype=np.float32, requires_grad=False):
    """A tensor of ones: ones(2, 3) or ones((2, 3))."""
    return Tensor(np.ones(_shape(shape)), dtype=dtype, requires_grad=requires_grad)


def randn(*shape, dtype=np.float32, requires_grad=False):
    """Standard normal draws from the library's generator (see manual_seed)."""
    return Tensor(generator().standard_normal(_shape(shape)), dtype=dtype, requires_grad=requires_grad)


def uniform(*shape, low=0.0, high=1.0, dtype=np.float32, requires_grad=False):
    """Uniform draws on [low, high) from the library's generator (see manual_seed)."""
    return Tensor(generator().uniform(low, high, _shape(shape)), dtype=dtype, requires_grad=requires_grad)


def arange(*args, dtype=None):
    """Evenly spaced values, as np.arange (integers stay integers: useful as positions or ids)."""
    return Tensor(np.arange(*args, dtype=dtype), dtype=dtype)
