"""PyTorch's initialisers (torch.nn.init), in place on Parameters, drawing from the package's generator."""

import math

import numpy as np

from ..rng import generator


def uniform_(p, bound):
    """p ~ U(-bound, bound)."""
    p.data = generator().uniform(-bound, bound, p.shape).astype(p.dtype)
    return p


def normal_(p):
    """p ~ N(0, 1)."""
    p.data = generator().standard_normal(p.shape).astype(p.dtype)
    return p


def constant_(p, value):
    p.data = np.full(p.shape, value, dtype=p.dtype)
    return p


def xavier_bound(fan_out, fan_in):
    """Glorot's bound sqrt(6 / (fan_in + fan_out)) for a (fan_out, fan_in) matrix."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def xavier_uniform_(*parts):
    """xavier_uniform over the parts stacked on axis 0 as ONE matrix (sum of rows, fan_in): with w_q, w_k,
    w_v this is PyTorch's packed in_proj_weight (3E, E), bound sqrt(6 / 4E); with one part, torch's."""
    rows, fan_in = sum(p.shape[0] for p in parts), parts[0].shape[1]
    bound = xavier_bound(rows, fan_in)
    w = generator().uniform(-bound, bound, (rows, fan_in))  # (sum of rows, fan_in)
    for p, block in zip(parts, np.split(w, np.cumsum([p.shape[0] for p in parts])[:-1])):
        p.data = block.astype(p.dtype)
    return parts
