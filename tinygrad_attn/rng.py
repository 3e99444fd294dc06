"""One random generator for the whole library, so manual_seed(n) makes every draw repeatable."""

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed every random draw in tinygrad_attn: initialisation, dropout, data."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def generator():
    """The library's current np.random.Generator."""
    return _generator
