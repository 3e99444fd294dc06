"""Check the engine's gradients against float64 central differences."""

import numpy as np

from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised by gradcheck when backward() and the finite differences disagree."""


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Compare backward() of ``fn(*inputs)`` with central differences, in float64.

    The output is contracted with a random cotangent u, so every element of the
    Jacobian is tested (with u = 1, the gradient of sum(softmax(x)) is zero and a
    broken softmax backward would pass). Inputs that require grad are checked.
    Returns True, or raises GradcheckError naming the input and element.
    """
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad and x.dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} is {x.dtype}; finite differences need float64, "
                f"make it with dtype=np.float64"
            )
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")

    leaves = [Tensor(x.data.copy(), dtype=x.dtype, requires_grad=True) if i in checked else x
              for i, x in enumerate(inputs)]
    out = fn(*leaves)
    u = np.random.default_rng(seed).standard_normal(out.shape)
    if out.requires_grad:  # otherwise fn ignores its inputs and every gradient is zero
        out.backward(u)

    def f():  # <fn(inputs), u> with the inputs' current data
        return float(np.sum(fn(*leaves).data * u))

    for i in checked:
        x = leaves[i].data
        analytic = np.zeros_like(x) if leaves[i].grad is None else leaves[i].grad.data
        for idx in np.ndindex(x.shape):
            old = x[idx]
            x[idx] = old + eps
            up = f()
            x[idx] = old - eps
            down = f()
            x[idx] = old
            numeric = (up - down) / (2 * eps)
            if abs(numeric - analytic[idx]) > atol + rtol * abs(numeric):
                raise GradcheckError(
                    f"gradcheck: input {i} (shape {x.shape}) element {idx}: numerical {numeric:.6g} "
                    f"but backward gave {analytic[idx]:.6g} (|diff| {abs(numeric - analytic[idx]):.3g} > "
                    f"atol {atol} + rtol {rtol} * |numerical|)"
                )
    return True
