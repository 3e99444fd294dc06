"""gradcheck itself: it passes correct ops, names the input and element of a wrong VJP, refuses
float32, and contracts with a random cotangent (a sum() cotangent would miss a broken softmax)."""

import re

import numpy as np
import pytest

from tinygrad_attn import GradcheckError, Tensor, gradcheck, ops
from tinygrad_attn.tensor import apply


def leaf(shape, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal(shape), dtype=np.float64, requires_grad=True)


@pytest.mark.parametrize("fn", [
    lambda x, y: x * y + y,
    lambda x, y: (x @ y.transpose(0, 1)).tanh(),
    lambda x, y: (x - y).softmax(axis=0) * y,
], ids=["mul_add", "matmul_tanh", "softmax"])
def test_passes_correct_ops(fn):
    x, y = leaf((2, 3), 1), leaf((2, 3), 2)
    assert gradcheck(fn, x, y) is True
    assert x.grad is None and y.grad is None  # the caller's tensors are left alone


def test_leaves_caller_data_untouched():
    x = leaf((3,))
    before = x.data.copy()
    gradcheck(lambda t: t.exp(), x)
    np.testing.assert_array_equal(x.data, before)


def _wrong_at(index):
    """mul whose dy is off at one element only."""

    def wrong_mul(x, y):
        def vjp(g):
            dy = g * x
            dy[index] *= 1.5
            return g * y, dy

        return x * y, vjp

    return wrong_mul


def test_names_the_input_and_element_of_a_wrong_vjp():
    x, y = leaf((2, 3), 1), leaf((2, 3), 2)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: apply(_wrong_at((1, 2)), a, b), x, y)
    msg = str(info.value)
    assert msg.startswith("gradcheck: input 1 (shape (2, 3)) element (1, 2): numerical ")
    numerical, got = map(float, re.search(r"numerical (\S+) but backward gave (\S+) ", msg).groups())
    u = np.random.default_rng(0).standard_normal((2, 3))  # gradcheck's cotangent (seed=0)
    assert numerical == pytest.approx(u[1, 2] * x.data[1, 2], rel=1e-4)
    assert got == pytest.approx(1.5 * u[1, 2] * x.data[1, 2], rel=1e-4)
    assert isinstance(info.value, AssertionError)


def test_checks_only_inputs_that_require_grad():
    x, y = leaf((2, 3), 1), leaf((2, 3), 2)
    y.requires_grad = False  # the wrong dy is never looked at
    assert gradcheck(lambda a, b: apply(_wrong_at((0, 0)), a, b), x, y) is True
    constant = Tensor(np.ones((2, 3)))  # float32 constants are fine when they need no gradient
    assert gradcheck(lambda a, c: a * c, x, constant) is True


def test_rejects_float32_inputs():
    x = Tensor(np.ones(3), requires_grad=True)
    msg = "gradcheck: input 0 is float32; finite differences need float64, make it with dtype=np.float64"
    with pytest.raises(TypeError, match=re.escape(msg)):
        gradcheck(lambda t: t * 2.0, x)


def test_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="gradcheck: no input requires grad"):
        gradcheck(lambda t: t * 2.0, Tensor(np.ones(3), dtype=np.float64))


def _broken_softmax(x, axis=-1):
    """Softmax whose VJP subtracts the mean of g instead of sum(g * z): right only when g is constant."""
    z, _ = ops.softmax(x, axis=axis)
    return z, lambda g: (z * (g - np.mean(g, axis=axis, keepdims=True)),)


def test_random_cotangent_catches_what_sum_misses():
    x = leaf((2, 4), 3)

    def broken(t):
        return apply(_broken_softmax, t, axis=-1)

    # the check gradcheck does not do: d sum(softmax(x)) / dx is zero, and so is the broken one
    broken(x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 0.0, atol=1e-12)
    assert gradcheck(lambda t: t.softmax(axis=-1), x) is True
    with pytest.raises(GradcheckError, match=r"gradcheck: input 0 \(shape \(2, 4\)\) element \(0, 0\)"):
        gradcheck(broken, x)


def test_tolerances_and_seed_are_honoured():
    x = leaf((3,), 4)
    # a gradient off by 1e-4 relative passes a loose rtol and fails a tight one
    def slightly_wrong(t):
        def op(a):
            return a * 2.0, lambda g: (g * 2.0 * (1 + 1e-4),)
        return apply(op, t)

    assert gradcheck(slightly_wrong, x, rtol=1e-3) is True
    with pytest.raises(GradcheckError):
        gradcheck(slightly_wrong, x, rtol=1e-6, atol=0.0)
    for seed in (0, 1):
        assert gradcheck(lambda t: (t * t).exp(), x, seed=seed) is True


def test_a_function_that_ignores_its_input_has_zero_gradient():
    x = Tensor(np.ones(3), dtype=np.float64, requires_grad=True)
    constant = Tensor(np.arange(3.0), dtype=np.float64)
    assert gradcheck(lambda x: constant * 2.0, x)
