"""The Tensor's backward semantics, graph bookkeeping, constructors, imports and error messages."""

import operator
import re
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_attn as tga
from tinygrad_attn import Tensor, no_grad
from tinygrad_attn.tensor import scope

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}


def leaf(values, dtype=np.float64):
    return Tensor(np.asarray(values, dtype=np.float64), dtype=dtype, requires_grad=True)


# ---------------------------------------------------------------- backward semantics


def test_grads_accumulate_until_zeroed():
    x = leaf([1.0, 2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 4.0, 6.0])
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, [5.0, 7.0, 9.0])
    x.zero_grad()
    assert x.grad is None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3.0, 3.0, 3.0])


def test_np_asarray_of_grad_is_the_gradient():
    x = leaf([[1.0, -2.0]])
    (x * x).sum().backward()
    g = np.asarray(x.grad)
    assert isinstance(g, np.ndarray) and g.shape == (1, 2) and g.dtype == np.float64
    np.testing.assert_array_equal(g, [[2.0, -4.0]])


def test_grads_are_fresh_writable_arrays_not_shared():
    # add's VJP returns the same array for both inputs, and the cotangent is the caller's array:
    # neither may leak into .grad, or an in-place update of one gradient corrupts another
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    u = np.array([1.0, 1.0])
    (a + b).backward(u)
    assert a.grad.data is not b.grad.data and a.grad.data is not u
    a.grad.data *= 10.0
    np.testing.assert_array_equal(b.grad.data, [1.0, 1.0])
    np.testing.assert_array_equal(u, [1.0, 1.0])
    x = leaf(np.ones((2, 3)))
    x.sum().backward()  # sum's VJP is a broadcast view
    x.grad.data[0, 0] = 5.0
    np.testing.assert_array_equal(x.grad.data, [[5.0, 1, 1], [1, 1, 1]])


def test_backward_without_grad_on_one_element_tensors():
    for shape in [(), (1,), (1, 1, 1)]:
        x = leaf(np.full(shape, 3.0))
        (x * x).backward()
        np.testing.assert_allclose(x.grad.data, np.full(shape, 6.0))


def test_backward_without_grad_on_larger_tensor_is_clear_error():
    x = leaf([1.0, 2.0])
    msg = r"backward: a gradient can only be implied for a one-element tensor.*shape \(2,\).*loss\.sum\(\)"
    with pytest.raises(RuntimeError, match=msg):
        (x * 2.0).backward()
    assert x.grad is None


def test_backward_grad_of_wrong_shape_is_clear_error():
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=r"backward: grad has shape \(3,\) but the tensor has shape \(2,\)"):
        (x * 2.0).backward(np.ones(3))


def test_backward_on_tensor_without_graph_is_clear_error():
    with pytest.raises(RuntimeError, match=r"backward: this tensor \(shape \(2,\)\) does not require grad"):
        (Tensor([1.0, 2.0]) * 2.0).backward(np.ones(2))


def test_backward_twice_without_retain_graph_is_clear_error():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"backward: the graph through '(sum|mul)'.*already freed.*"
                                           r"retain_graph=True"):
        y.backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 4.0])  # the failed call added nothing


def test_backward_through_freed_shared_subgraph_is_clear_error():
    x = leaf([1.0, 2.0])
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="already freed"):
        (h * 2.0).sum().backward()
    w = leaf([1.0, 1.0])
    msg = r"backward: the graph through 'exp' \(shape \(2,\)\) was already freed"
    with pytest.raises(RuntimeError, match=msg):
        (w * h).sum().backward()
    assert w.grad is None, "a failed backward must not leave partial gradients behind"


def test_retain_graph_keeps_the_graph():
    x = leaf([1.0, 2.0])
    y = (x * x * x).sum()
    y.backward(retain_graph=True)
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.data, 3 * 3 * np.array([1.0, 4.0]))


def test_backward_with_explicit_grad():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    (x * x).backward(np.array([[1.0, 0.0], [0.5, -1.0]]))
    np.testing.assert_allclose(x.grad.data, [[2.0, 0.0], [3.0, -8.0]])
    y = leaf([1.0, 2.0])
    (y * 2.0).backward(Tensor([1.0, 3.0]))  # a Tensor is accepted as the cotangent too
    np.testing.assert_allclose(y.grad.data, [2.0, 6.0])


def test_backward_on_a_leaf():
    x = leaf([1.0, 2.0])
    x.backward(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(x.grad.data, [3.0, 4.0])


def test_same_input_twice_accumulates():
    x = leaf([1.0, 2.0, 3.0])
    (x + x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 2.0, 2.0])
    x.zero_grad()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 4.0, 6.0])
    x.zero_grad()
    ((x * x) * x + x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 3 * np.array([1.0, 4.0, 9.0]) + 1)


def test_diamond_where_a_parent_is_also_reached_through_a_sibling():
    # y = cat(x, 2x): x is a direct parent and also the parent of the other parent.
    # A topological sort that marks nodes on push, not on visit, ran x before 2x and lost a term.
    x = leaf([1.0, 2.0])
    u = np.array([1.0, 10.0, 100.0, 1000.0])
    tga.cat([x, x * 2.0]).backward(u)
    np.testing.assert_allclose(x.grad.data, [1.0 + 200.0, 10.0 + 2000.0])
    v = leaf([3.0])
    h = v * 3.0
    (h + h * 2.0).backward(np.ones(1))
    np.testing.assert_allclose(v.grad.data, [9.0])


def test_no_grad_context_manager_builds_no_graph():
    x = leaf([1.0, 2.0])
    with no_grad():
        assert not tga.is_grad_enabled()
        y = (x * 2.0).exp().sum()
    assert tga.is_grad_enabled()
    assert y.requires_grad is False and y._parents == () and y.is_leaf
    np.testing.assert_allclose(y.data, np.exp(2.0) + np.exp(4.0))
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_decorator_builds_no_graph():
    @no_grad()
    def step(t):
        """docstring kept"""
        assert not tga.is_grad_enabled()
        return t * 3.0

    x = leaf([1.0])
    y = step(x)
    assert y.requires_grad is False and y._parents == ()
    assert step.__name__ == "step" and step.__doc__ == "docstring kept"
    assert tga.is_grad_enabled()
    np.testing.assert_allclose(y.data, [3.0])


def test_no_grad_restores_state_after_exception_and_nesting():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0  # noqa: B018 (the error is the point)
    assert tga.is_grad_enabled()
    with no_grad():
        with no_grad():
            pass
        assert not tga.is_grad_enabled()
    assert tga.is_grad_enabled()


def test_deep_chain_backpropagates():
    # 100,000 ops: a recursive topological sort would overflow the stack
    n = 100_000
    x = leaf([1.0])
    y = x
    for _ in range(n):
        y = y * 1.00001
    y.backward(np.ones(1))
    np.testing.assert_allclose(x.grad.data, [1.00001**n], rtol=1e-9)


def test_detach_cuts_the_graph():
    x = leaf([1.0, 2.0])
    d = (x * 2.0).detach()
    assert d.requires_grad is False and d._parents == () and d.dtype == np.float64
    np.testing.assert_array_equal(d.data, [2.0, 4.0])
    (x * d).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 4.0])  # d is a constant: no d(d)/dx term


def test_retain_grad_on_an_intermediate():
    x = leaf([1.0, 2.0])
    h = (x * 3.0).retain_grad()
    other = x * 5.0
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.data, 2 * 3 * np.array([1.0, 2.0]))
    np.testing.assert_allclose(x.grad.data, 18 * np.array([1.0, 2.0]))
    assert other.grad is None
    assert h.grad.dtype == np.float64


def test_intermediates_do_not_keep_grad_by_default():
    x = leaf([1.0])
    h = x * 3.0
    (h * h).sum().backward()
    assert h.grad is None and x.grad is not None


# ---------------------------------------------------------------- scope


def test_every_op_records_its_scope():
    x = leaf(np.ones((2, 3)))
    outer, inner = object(), "attn"
    assert (x * 2.0)._scope == ()
    with scope(outer):
        a = x * 2.0
        with scope(inner):
            b = (a @ np.ones((3, 2))).softmax().sum(axis=0)[0]
            c = tga.cat([a, a]).reshape(-1)
        d = a.exp()
    e = d + 1.0
    assert a._scope == (outer,) and d._scope == (outer,)
    assert b._scope == (outer, inner) and c._scope == (outer, inner)
    assert e._scope == ()
    with no_grad(), scope("eval"):
        f = x + 1.0
    assert f._scope == ("eval",)  # recorded with or without a graph


# ---------------------------------------------------------------- dtypes and constructors


def test_requires_grad_on_int_tensor_is_clear_error():
    msg = r"requires_grad: only floating-point tensors can require gradients.*int64.*dtype=np\.float32"
    with pytest.raises(TypeError, match=msg):
        Tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match="only floating-point"):
        Tensor(np.array([True, False])).requires_grad_()


def test_manual_seed_makes_draws_repeatable():
    tga.manual_seed(123)
    a, b = tga.randn(3, 4), tga.uniform(5, low=-2.0, high=3.0)
    tga.manual_seed(123)
    c, d = tga.randn(3, 4), tga.uniform(5, low=-2.0, high=3.0)
    np.testing.assert_array_equal(a.data, c.data)
    np.testing.assert_array_equal(b.data, d.data)
    tga.manual_seed(124)
    assert not np.array_equal(tga.randn(3, 4).data, a.data)
    assert np.all((b.data >= -2.0) & (b.data < 3.0))


@pytest.mark.parametrize("make", ["zeros", "ones", "randn", "uniform"])
def test_constructors_shapes_and_dtypes(make):
    fn = getattr(tga, make)
    for t in [fn(2, 3), fn((2, 3))]:
        assert isinstance(t, Tensor) and t.shape == (2, 3) and t.dtype == np.float32 and not t.requires_grad
    t = fn(4, dtype=np.float64, requires_grad=True)
    assert t.shape == (4,) and t.dtype == np.float64 and t.requires_grad
    if make == "zeros":
        np.testing.assert_array_equal(t.data, 0.0)
    if make == "ones":
        np.testing.assert_array_equal(t.data, 1.0)


def test_arange():
    np.testing.assert_array_equal(tga.arange(4).data, [0, 1, 2, 3])
    assert tga.arange(4).dtype.kind == "i"
    t = tga.arange(0.0, 1.0, 0.25)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.data, [0.0, 0.25, 0.5, 0.75])
    assert tga.arange(2, 8, 2, dtype=np.float64).dtype == np.float64


def test_tensor_basics():
    t = Tensor([[1.0, 2.0, 3.0]])
    assert t.shape == (1, 3) and t.ndim == 2 and t.size == 3 and len(t) == 1
    assert t.numpy() is t.data and t.requires_grad is False and t.grad is None
    assert Tensor(t).dtype == np.float32 and Tensor(Tensor([1.0], dtype=np.float64)).dtype == np.float64
    assert "Tensor(" in repr(t) and "float32" in repr(t)
    assert Tensor([2.0]).item() == 2.0


# ---------------------------------------------------------------- imports


def _run(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_import_pulls_in_nothing_heavy():
    out = _run(
        "import sys, tinygrad_attn\n"
        "print(sorted(m for m in ('torch', 'graphviz', 'matplotlib') if m in sys.modules))"
    )
    assert out == "[]"


def test_submodules_load_lazily():
    out = _run(
        "import sys, tinygrad_attn as t\n"
        "before = 'tinygrad_attn.scalar' in sys.modules\n"
        "v = t.scalar.Value(2.0) * 3\n"
        "print(before, 'tinygrad_attn.scalar' in sys.modules, v.data)"
    )
    assert out == "False True 6.0"
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        tga.nonexistent  # noqa: B018


# ---------------------------------------------------------------- error messages


def test_matmul_inner_dimension_message():
    with pytest.raises(ValueError) as info:
        Tensor(np.ones((3, 4))) @ Tensor(np.ones((5, 6)))
    assert str(info.value).startswith("matmul: (3, 4) @ (5, 6): inner dimensions 4 and 5 differ")
    with pytest.raises(ValueError, match=re.escape("matmul: (3,) @ (4, 2): inner dimensions 3 and 4 differ")):
        Tensor(np.ones(3)) @ np.ones((4, 2))


def test_matmul_batch_and_scalar_messages():
    msg = "matmul: (2, 3, 4) @ (3, 4, 5): the batch axes (2,) and (3,) do not broadcast"
    with pytest.raises(ValueError, match=re.escape(msg)):
        Tensor(np.ones((2, 3, 4))) @ Tensor(np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=re.escape("matmul: () @ (3,)")):
        tga.matmul(Tensor(2.0), Tensor(np.ones(3)))


@pytest.mark.parametrize("op,name", [("+", "add"), ("-", "sub"), ("*", "mul"), ("/", "div"), ("**", "power")])
def test_broadcast_error_shows_both_shapes(op, name):
    x, y = Tensor(np.ones((3, 4))), Tensor(np.ones((2, 4)))
    with pytest.raises(ValueError, match=re.escape(f"{name}: shapes (3, 4) and (2, 4) do not broadcast")):
        OPERATORS[op](x, y)


def test_reshape_error():
    msg = "reshape: cannot view shape (2, 3) (6 elements) as (4, -1)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        Tensor(np.ones((2, 3))).reshape(4, -1)


@pytest.mark.parametrize("axes", [(0, 0, 1), (0, 1), (0, 1, 5), (0, 1, -4)])
def test_permute_error(axes):
    msg = f"permute: {axes} is not an ordering of the 3 axes of shape (2, 3, 4)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        Tensor(np.ones((2, 3, 4))).permute(*axes)


@pytest.mark.parametrize("index", [5, (0, 7), (slice(None), [0, 9])])
def test_getitem_error(index):
    with pytest.raises(IndexError, match=r"getitem: index .* does not fit shape \(3, 4\)"):
        Tensor(np.ones((3, 4)))[index]


def test_masked_fill_errors():
    x = Tensor(np.ones((3, 4)))
    msg = "masked_fill: mask of shape (3,) does not broadcast to the tensor's shape (3, 4)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        x.masked_fill(np.array([True, False, True]), 0.0)
    with pytest.raises(TypeError, match="masked_fill: the mask must be bool, got int64"):
        x.masked_fill(np.ones((3, 4), dtype=np.int64), 0.0)


def test_cat_and_stack_errors():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((2, 4)))
    with pytest.raises(ValueError, match=re.escape("cat: cannot join shapes [(2, 3), (2, 4)] along axis 0")):
        tga.cat([a, b], axis=0)
    with pytest.raises(ValueError, match=re.escape("cat: cannot join shapes [(2, 3), (2, 4)] along axis 2")):
        tga.cat([a, b], axis=2)
    msg = "stack: all tensors must have one shape, got [(2, 3), (2, 4)]"
    with pytest.raises(ValueError, match=re.escape(msg)):
        tga.stack([a, b])
    with pytest.raises(ValueError, match=re.escape("stack: cannot stack shape (2, 3) along new axis 3")):
        tga.stack([a, a], axis=3)
    with pytest.raises(ValueError, match="cat: needs at least one tensor"):
        tga.cat([])
    with pytest.raises(ValueError, match="stack: needs at least one tensor"):
        tga.stack([])


def test_gelu_approximate_error():
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'fast'"):
        Tensor([1.0]).gelu(approximate="fast")


def test_unbroadcast_rejects_a_gradient_of_the_wrong_shape():
    # an op whose VJP returns a transposed gradient must be caught, not silently reshaped
    from tinygrad_attn.tensor import apply

    def bad_op(x):
        return x * 2.0, lambda g: (g.T * 2.0,)

    bad_op.__name__ = "bad_op"
    x = leaf(np.ones((3, 4)))
    msg = r"bad_op: gradient of shape \(4, 3\) cannot be reduced to its input's shape \(3, 4\)"
    with pytest.raises(AssertionError, match=msg):
        apply(bad_op, x).backward(np.ones((3, 4)))


def test_bare_no_grad_decorator_builds_no_graph():
    @no_grad
    def double(x):
        return x * 2

    x = Tensor([1.0, 2.0], requires_grad=True)
    y = double(x)
    assert not y.requires_grad and y.is_leaf
    assert tga.is_grad_enabled()
    np.testing.assert_array_equal(y.numpy(), [2.0, 4.0])


@pytest.mark.parametrize("call, expected", [
    (lambda x: x.sum(axis=3), "sum: axis=3 is out of range for shape (2, 3); axes run from -2 to 1"),
    (lambda x: x.mean(axis=-3), "mean: axis=-3 is out of range for shape (2, 3)"),
    (lambda x: x.max(axis=(0, 2)), "max: axis=(0, 2) is out of range for shape (2, 3)"),
    (lambda x: x.softmax(axis=2), "softmax: axis=2 is out of range for shape (2, 3)"),
    (lambda x: x.transpose(0, 5), "transpose: a=0, b=5 is out of range for shape (2, 3)"),
])
def test_axis_errors_name_the_op_and_shape(call, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        call(tga.ones(2, 3))


def test_np_array_is_a_snapshot_and_np_asarray_a_view():
    t = Tensor([1.0, 2.0, 3.0])
    snapshot, view = np.array(t), np.asarray(t)
    t.data += 1.0  # what an optimiser step does to a parameter
    np.testing.assert_array_equal(snapshot, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(view, [2.0, 3.0, 4.0])


@pytest.mark.parametrize("make, dtype", [
    (lambda f, i: f + i, np.float32),  # NumPy alone would give float64
    (lambda f, i: i * f, np.float32),
    (lambda f, i: i * 0.5, np.float32),  # an integer tensor with a Python float: the default float
    (lambda f, i: i / Tensor([2, 2, 2]), np.float32),  # integer division gives a float, float32
    (lambda f, i: f @ i, np.float32),
    (lambda f, i: Tensor(np.ones(3), dtype=np.float64) + i, np.float64),
    (lambda f, i: i + 1, np.int64),
])
def test_integer_operands_follow_the_float_operand(make, dtype):
    f, i = tga.ones(3), tga.arange(3)
    assert make(f, i).dtype == dtype


def test_unsqueeze_range_is_checked():
    assert tga.ones(2, 3).unsqueeze(-3).shape == (1, 2, 3) and tga.ones(2, 3).unsqueeze(2).shape == (2, 3, 1)
    with pytest.raises(ValueError, match=re.escape("unsqueeze: axis 5 is out of range for shape (2, 3)")):
        tga.ones(2, 3).unsqueeze(5)


@pytest.mark.parametrize("power", [lambda x: x**0, lambda x: x ** Tensor([0.0, 0.0])])
def test_x_to_the_zero_has_zero_gradient_even_at_zero(power):
    x = Tensor([0.0, 2.0], requires_grad=True)
    power(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])  # PyTorch gives 0 too, not NaN


@pytest.mark.parametrize("call, expected", [
    (lambda: tga.ones(3).broadcast_to(2, 4), "broadcast_to: shape (3,) cannot be stretched to (2, 4)"),
    (lambda: tga.where(np.ones(5, bool), tga.ones(2, 3), tga.ones(4)),
     "where: cond (5,), x (2, 3) and y (4,) do not broadcast"),
    (lambda: tga.ones(2, 3).max(axis=(0, 0)), "max: axis=(0, 0) does not fit shape (2, 3)"),
])
def test_more_errors_name_the_op_and_shapes(call, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        call()
