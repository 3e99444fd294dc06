"""Hostile input: random shapes and dtypes thrown at the public functions.

Each call must give a result or one of our own errors, whose message starts with the op's name
("matmul: ..."), never NumPy's words or a bare KeyError / IndexError from deep inside. Empty axes
compute what PyTorch computes; integer inputs to float functions give float32, as in PyTorch.
"""

import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinygrad_attn as tga
from tinygrad_attn import functional as F

OUR_ERROR = re.compile(r"^[a-z_][\w.]*(?: \([^)]*\))?: ")  # "op: ...", "MultiheadAttention: ...", "max: ..."
DTYPES = [np.float32, np.float64, np.int64, np.bool_]
shapes = st.lists(st.integers(0, 3), min_size=0, max_size=4).map(tuple)


def tensors(shape=shapes):
    return st.builds(lambda s, d, seed: tga.Tensor(np.random.default_rng(seed).normal(size=s).astype(d), dtype=d),
                     shape, st.sampled_from(DTYPES), st.integers(0, 2**16))


def ours_or_result(call):
    """Run call(); an exception must be one of ours (ValueError, TypeError, IndexError) naming the op."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log of a negative number, say: a value, not a crash
        try:
            return call()
        except (ValueError, TypeError, IndexError) as e:
            assert OUR_ERROR.match(str(e)), f"{type(e).__name__} not in our words: {e}"


UNARY = ["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu", "softmax", "log_softmax", "neg"]
AXES = st.one_of(st.none(), st.integers(-5, 5), st.tuples(st.integers(-5, 5), st.integers(-5, 5)))
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,  # the same examples on every run: no flaky CI
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(tensors(), st.sampled_from(UNARY))
def test_elementwise_and_softmax(t, name):
    out = ours_or_result(lambda: (-t) if name == "neg" else getattr(t, name)())
    if out is not None:
        assert out.shape == t.shape
        if name not in ("relu", "neg"):
            assert out.dtype == (t.dtype if t.dtype.kind == "f" else np.float32)


@SETTINGS
@given(tensors(), st.sampled_from(["sum", "mean", "max"]), AXES, st.booleans())
def test_reductions(t, name, axis, keepdims):
    ours_or_result(lambda: getattr(t, name)(axis=axis, keepdims=keepdims))


@SETTINGS
@given(tensors(), tensors(), st.sampled_from(["__add__", "__sub__", "__mul__", "__truediv__", "__matmul__"]))
def test_binary_ops(a, b, name):
    ours_or_result(lambda: getattr(a, name)(b))


@SETTINGS
@given(tensors(), st.lists(st.integers(-1, 4), max_size=4), st.integers(-4, 4), st.integers(-4, 4))
def test_shape_ops(t, shape, a, b):
    ours_or_result(lambda: t.reshape(*shape) if shape else t.reshape(()))
    ours_or_result(lambda: t.transpose(a, b))


@SETTINGS
@given(tensors(), tensors(), tensors(), st.one_of(st.none(), tensors()), st.booleans())
def test_scaled_dot_product_attention(q, k, v, mask, causal):
    ours_or_result(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=None if causal else mask,
                                                          is_causal=causal))


@SETTINGS
@given(tensors(), tensors())
def test_losses_and_embedding(logits, target):
    ours_or_result(lambda: F.cross_entropy(logits, target))
    ours_or_result(lambda: F.embedding(target, logits))


# ---------------------------------------------------------------- what the hostile round found, one by one


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "gelu", "softmax", "log_softmax", "mean"])
def test_integer_inputs_to_float_functions_give_float32(name):
    ints = tga.Tensor([1, 2, 3])
    out = getattr(ints, name)()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, getattr(tga.Tensor([1.0, 2.0, 3.0]), name)().data)
    torch = pytest.importorskip("torch")
    if name not in ("softmax", "log_softmax", "mean"):  # PyTorch refuses integers there; we promote
        assert getattr(torch.tensor([1, 2, 3]), name if name != "gelu" else "exp")().dtype == torch.float32


def test_empty_axes_compute_what_pytorch_computes():
    assert tga.zeros(2, 0).softmax().shape == (2, 0) and tga.zeros(2, 0).log_softmax().shape == (2, 0)
    out = F.scaled_dot_product_attention(tga.randn(1, 2, 4), tga.zeros(1, 0, 4), tga.zeros(1, 0, 4))
    np.testing.assert_array_equal(out.data, np.zeros((1, 2, 4)))  # no keys: an empty sum, as in PyTorch
    model = tga.nn.make_model(11, 11, N=1, d_model=16, d_ff=32, h=2, dropout=0.0)
    assert model(np.zeros((2, 0), np.int64), np.ones((2, 3), np.int64)).shape == (2, 3, 11)
    assert model(np.ones((2, 3), np.int64), np.zeros((2, 0), np.int64)).shape == (2, 0, 11)


@pytest.mark.parametrize("call, fragment", [
    (lambda: tga.zeros(2, 0).max(axis=1), "max: shape (2, 0): axis=1 has length 0"),
    (lambda: tga.zeros(2, 3).transpose(0, 5), "transpose: a=0, b=5 is out of range for shape (2, 3)"),
    (lambda: F.scaled_dot_product_attention(tga.zeros(4), tga.zeros(3, 4), tga.zeros(3, 4)),
     "scaled_dot_product_attention: query (4,), key (3, 4), value (3, 4): each needs at least 2 axes"),
    (lambda: F.scaled_dot_product_attention(tga.zeros(1, 2, 4), tga.zeros(1, 3, 4), tga.zeros(1, 3, 4),
                                            attn_mask=np.zeros((2, 3), np.int64)),
     "pass a bool mask (True = this key takes part"),
])
def test_unsupported_inputs_say_what_and_why(call, fragment):
    with pytest.raises((ValueError, TypeError)) as e:
        call()
    assert fragment in str(e.value)
