"""tinygrad_attn: a readable autograd engine on NumPy and the transformer built on it.

    import tinygrad_attn as tga
    x = tga.Tensor([[1.0, 2.0]], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # Tensor([[2., 4.]])

    tga.save(model.state_dict(), "model.npz")    # .npz, written atomically, never pickled
    model.load_state_dict(tga.load("model.npz"))

The submodules (nn, functional, optim, interop, viz, scalar, ...) load on first
use, so importing the package pulls in NumPy and nothing heavier.
"""

import importlib

from .creation import arange, cat, ones, randn, stack, uniform, where, zeros
from .env import keep_freed_memory
from .gradcheck import GradcheckError, gradcheck
from .rng import manual_seed
from .serialization import load, save
from .tensor import Tensor, is_grad_enabled, no_grad
from .tensor_methods import matmul

__version__ = "0.1.0"

keep_freed_memory()  # glibc keeps freed arrays for reuse: no page faults per step (TINYGRAD_ATTN_MALLOC=0: off)

_SUBMODULES = {"ops", "tensor", "functional", "nn", "optim", "interop", "viz", "scalar", "data", "decoding",
               "train", "env", "cli", "serialization", "creation", "tensor_methods", "pretrained"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tinygrad_attn' has no attribute {name!r}")


__all__ = [
    "GradcheckError", "Tensor", "arange", "cat", "gradcheck", "is_grad_enabled", "load", "manual_seed", "matmul",
    "no_grad", "ones", "randn", "save", "stack", "uniform", "where", "zeros",
]
