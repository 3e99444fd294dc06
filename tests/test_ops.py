"""Every op x shapes, one table, three ways: a NumPy reference for the forward, a float64
gradcheck with a random cotangent, and PyTorch's values and gradients (where torch is installed).

A row is ``Case(name, inputs, f, ref, tf)``: ``inputs`` are (shape, kind) pairs drawn away from
kinks, ``f`` runs on Tensors, ``ref`` on ndarrays, ``tf(torch, *tensors)`` on torch tensors
(``None``: ``f`` itself works on torch tensors). Constants (Python scalars, ndarrays on the
left, masks, index arrays) live inside the lambdas, so every input is differentiated.
"""

import math
import operator
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_attn as tga
from tinygrad_attn import Tensor, gradcheck

# ---------------------------------------------------------------- inputs


def _draw(rng, shape, kind):
    """'n' normal, 'p' positive (log, sqrt, division, powers), 'a' away from 0 (relu), 'd' distinct (max)."""
    if kind == "n":
        return rng.standard_normal(shape)
    if kind == "p":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "a":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 1.5, shape)
    if kind == "d":  # no ties: neighbours at least 0.3 apart, far more than gradcheck's eps
        n = int(np.prod(shape))
        return (rng.permutation(n) * 0.3 - 0.15 * n + rng.uniform(0, 0.05, n)).reshape(shape)
    raise ValueError(kind)


class Case:
    def __init__(self, name, inputs, f, ref, tf=None):
        self.name, self.inputs, self.f, self.ref, self.tf = name, inputs, f, ref, tf

    def sample(self):
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        return [np.asarray(_draw(rng, shape, kind), dtype=np.float64) for shape, kind in self.inputs]

    def torch(self, torch, *xs):
        return self.tf(torch, *xs) if self.tf else self.f(*xs)


# constants used inside rows (float64 ndarrays: on a float32 Tensor they must not promote it)
_c = np.random.default_rng(1)
C34 = _c.standard_normal((3, 4))
C4 = _c.standard_normal(4)
C234 = _c.standard_normal((2, 3, 4))
CP34 = _c.uniform(0.5, 2.0, (3, 4))
M34 = np.array([[True, False, False, True], [False, False, True, False], [True, True, False, False]])
M4 = np.array([False, True, False, True])
IDX = np.array([[0, 2], [2, 2]])
WHERE = np.array([4, 0, 2])
_erf = np.vectorize(math.erf)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _dims(x, axis):
    return tuple(range(x.ndim)) if axis is None else axis


def _t(torch, a):
    return torch.from_numpy(np.asarray(a))


def _unpack_rows(parts, where, length):
    z = np.zeros((length, sum(p.shape[1] for p in parts)))
    z[where] = np.concatenate(parts, axis=1)
    return z


N34, N4, N31, N214, N234 = ((3, 4), "n"), ((4,), "n"), ((3, 1), "n"), ((2, 1, 4), "n"), ((2, 3, 4), "n")
P34, P4, P31 = ((3, 4), "p"), ((4,), "p"), ((3, 1), "p")
S = ((), "n")

CASES = [
    # + with broadcasting, scalars on either side, an ndarray on the left
    Case("add", [N34, N34], lambda x, y: x + y, lambda x, y: x + y),
    Case("add_row", [N34, N4], lambda x, y: x + y, lambda x, y: x + y),
    Case("add_214_31", [N214, N31], lambda x, y: x + y, lambda x, y: x + y),
    Case("add_0d_tensor", [S, N34], lambda x, y: x + y, lambda x, y: x + y),
    Case("add_same_input", [N34], lambda x: x + x, lambda x: x + x),
    Case("add_float_right", [N34], lambda x: x + 2.5, lambda x: x + 2.5),
    Case("add_float_left", [N34], lambda x: 2.5 + x, lambda x: 2.5 + x),
    Case("add_ndarray_left", [N34], lambda x: C34 + x, lambda x: C34 + x, lambda t, x: _t(t, C34) + x),
    Case("add_ndarray_left_bigger", [N34], lambda x: C234 + x, lambda x: C234 + x,
         lambda t, x: _t(t, C234) + x),
    # -
    Case("sub_row", [N34, N4], lambda x, y: x - y, lambda x, y: x - y),
    Case("sub_214_31", [N214, N31], lambda x, y: x - y, lambda x, y: x - y),
    Case("sub_float_right", [N34], lambda x: x - 1.5, lambda x: x - 1.5),
    Case("sub_float_left", [N34], lambda x: 1.5 - x, lambda x: 1.5 - x),
    Case("sub_ndarray_left", [N4], lambda x: C34 - x, lambda x: C34 - x, lambda t, x: _t(t, C34) - x),
    # *
    Case("mul", [N34, N34], lambda x, y: x * y, lambda x, y: x * y),
    Case("mul_row", [N34, N4], lambda x, y: x * y, lambda x, y: x * y),
    Case("mul_214_31", [N214, N31], lambda x, y: x * y, lambda x, y: x * y),
    Case("mul_31_214", [N31, N214], lambda x, y: x * y, lambda x, y: x * y),
    Case("mul_same_input", [N34], lambda x: x * x, lambda x: x * x),
    Case("mul_float_left", [N34], lambda x: 3.0 * x, lambda x: 3.0 * x),
    Case("mul_int_right", [N34], lambda x: x * 3, lambda x: x * 3),
    Case("mul_ndarray_left", [N34], lambda x: C4 * x, lambda x: C4 * x, lambda t, x: _t(t, C4) * x),
    # /
    Case("div", [N34, P34], lambda x, y: x / y, lambda x, y: x / y),
    Case("div_row", [N34, P4], lambda x, y: x / y, lambda x, y: x / y),
    Case("div_214_31", [N214, P31], lambda x, y: x / y, lambda x, y: x / y),
    Case("div_float_left", [P34], lambda x: 2.0 / x, lambda x: 2.0 / x),
    Case("div_float_right", [N34], lambda x: x / 4.0, lambda x: x / 4.0),
    Case("div_ndarray_left", [P34], lambda x: C34 / x, lambda x: C34 / x, lambda t, x: _t(t, C34) / x),
    # ** : tensor ** const, tensor ** tensor, const ** tensor
    Case("pow_int2", [N34], lambda x: x**2, lambda x: x**2),
    Case("pow_int3", [N34], lambda x: x**3, lambda x: x**3),
    Case("pow_half", [P34], lambda x: x**0.5, lambda x: x**0.5),
    Case("pow_neg", [P34], lambda x: x**-1.5, lambda x: x**-1.5),
    Case("pow_tensor", [P34, N34], lambda x, y: x**y, lambda x, y: x**y),
    Case("pow_tensor_row", [P34, N4], lambda x, y: x**y, lambda x, y: x**y),
    Case("pow_const_base", [N34], lambda x: 2.0**x, lambda x: 2.0**x),
    Case("pow_ndarray_base", [N34], lambda x: CP34**x, lambda x: CP34**x, lambda t, x: _t(t, CP34) ** x),
    # @ : 2-D, batched, broadcast batch, 1-D on either side
    Case("matmul", [N34, ((4, 5), "n")], lambda x, y: x @ y, lambda x, y: x @ y),
    Case("matmul_batched", [N234, ((2, 4, 5), "n")], lambda x, y: x @ y, lambda x, y: x @ y),
    Case("matmul_bcast_batch", [((2, 1, 3, 4), "n"), ((5, 4, 2), "n")], lambda x, y: x @ y,
         lambda x, y: x @ y),
    Case("matmul_batch_2d", [N234, ((4, 5), "n")], lambda x, y: x @ y, lambda x, y: x @ y),
    Case("matmul_vec_mat", [N4, ((4, 5), "n")], lambda x, y: x @ y, lambda x, y: x @ y),
    Case("matmul_mat_vec", [N34, N4], lambda x, y: x @ y, lambda x, y: x @ y),
    Case("matmul_vec_vec", [N4, N4], lambda x, y: x @ y, lambda x, y: x @ y),
    Case("matmul_vec_batch", [N4, ((2, 4, 5), "n")], lambda x, y: x @ y, lambda x, y: x @ y),
    Case("matmul_batch_vec", [N234, N4], lambda x, y: x @ y, lambda x, y: x @ y),
    Case("matmul_ndarray_left", [((4, 5), "n")], lambda y: C34 @ y, lambda y: C34 @ y,
         lambda t, y: _t(t, C34) @ y),
    Case("matmul_ndarray_right", [((2, 3), "n")], lambda x: x @ C34, lambda x: x @ C34,
         lambda t, x: x @ _t(t, C34)),
    Case("matmul_func", [N34, ((4, 2), "n")], lambda x, y: tga.matmul(x, y), lambda x, y: x @ y,
         lambda t, x, y: t.matmul(x, y)),
    # unary
    Case("neg", [N34], lambda x: -x, lambda x: -x),
    Case("exp", [N34], lambda x: x.exp(), np.exp),
    Case("log", [P34], lambda x: x.log(), np.log),
    Case("sqrt", [P34], lambda x: x.sqrt(), np.sqrt),
    Case("tanh", [N34], lambda x: x.tanh(), np.tanh),
    Case("sigmoid", [N34], lambda x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    Case("relu", [((3, 4), "a")], lambda x: x.relu(), lambda x: np.maximum(x, 0)),
    Case("gelu", [N34], lambda x: x.gelu(), lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
         lambda t, x: t.nn.functional.gelu(x)),
    Case("gelu_tanh", [N34], lambda x: x.gelu(approximate="tanh"), _gelu_tanh,
         lambda t, x: t.nn.functional.gelu(x, approximate="tanh")),
    Case("exp_0d", [S], lambda x: x.exp(), np.exp),
    Case("tanh_0d", [S], lambda x: x.tanh(), np.tanh),
    Case("sigmoid_0d", [S], lambda x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    Case("gelu_0d", [S], lambda x: x.gelu(), lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
         lambda t, x: t.nn.functional.gelu(x)),
    Case("gelu_tanh_0d", [S], lambda x: x.gelu(approximate="tanh"), _gelu_tanh,
         lambda t, x: t.nn.functional.gelu(x, approximate="tanh")),
]

# reductions: axis int, negative, tuple (with a negative), None; keepdims both ways
for _axis in [None, 0, 1, -1, (0, 2), (-1, 0)]:
    for _keep in [False, True]:
        _id = f"axis={_axis},keepdims={_keep}"
        CASES += [
            Case(f"sum[{_id}]", [N234], lambda x, a=_axis, k=_keep: x.sum(axis=a, keepdims=k),
                 lambda x, a=_axis, k=_keep: x.sum(axis=a, keepdims=k),
                 lambda t, x, a=_axis, k=_keep: t.sum(x, dim=_dims(x, a), keepdim=k)),
            Case(f"mean[{_id}]", [N234], lambda x, a=_axis, k=_keep: x.mean(axis=a, keepdims=k),
                 lambda x, a=_axis, k=_keep: x.mean(axis=a, keepdims=k),
                 lambda t, x, a=_axis, k=_keep: t.mean(x, dim=_dims(x, a), keepdim=k)),
            Case(f"max[{_id}]", [((2, 3, 4), "d")], lambda x, a=_axis, k=_keep: x.max(axis=a, keepdims=k),
                 lambda x, a=_axis, k=_keep: x.max(axis=a, keepdims=k),
                 lambda t, x, a=_axis, k=_keep: t.amax(x, dim=_dims(x, a), keepdim=k)),
        ]

CASES += [
    Case("sum_list_axis", [N234], lambda x: x.sum(axis=[0, 1]), lambda x: x.sum(axis=(0, 1)),
         lambda t, x: x.sum(dim=(0, 1))),
    # shape
    Case("reshape_flat", [N234], lambda x: x.reshape(-1), lambda x: x.reshape(-1)),
    Case("reshape_infer", [N234], lambda x: x.reshape(4, -1), lambda x: x.reshape(4, -1)),
    Case("reshape_tuple", [N234], lambda x: x.reshape((6, 1, 4)), lambda x: x.reshape(6, 1, 4)),
    Case("permute", [N234], lambda x: x.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1)),
    Case("permute_tuple", [N234], lambda x: x.permute((1, 2, 0)), lambda x: x.transpose(1, 2, 0),
         lambda t, x: x.permute(1, 2, 0)),
    Case("permute_negative", [N234], lambda x: x.permute(-1, 0, 1), lambda x: x.transpose(2, 0, 1)),
    Case("transpose_01", [N234], lambda x: x.transpose(0, 1), lambda x: x.swapaxes(0, 1)),
    Case("transpose_neg", [N234], lambda x: x.transpose(-1, 0), lambda x: x.swapaxes(-1, 0)),
    Case("transpose_default", [N234], lambda x: x.transpose(), lambda x: x.swapaxes(-1, -2),
         lambda t, x: x.transpose(-2, -1)),
    Case("T", [N34], lambda x: x.T, lambda x: x.T),
    # getitem: basic, advanced with repeated indices (gradients accumulate), boolean masks
    Case("getitem_int", [N234], lambda x: x[1], lambda x: x[1]),
    Case("getitem_neg_int", [N234], lambda x: x[-1, 2], lambda x: x[-1, 2]),
    Case("getitem_slices", [N234], lambda x: x[:, 1:3, ::2], lambda x: x[:, 1:3, ::2]),
    Case("getitem_none_ellipsis", [N234], lambda x: x[None, ..., 1], lambda x: x[None, ..., 1]),
    Case("getitem_ellipsis_none", [N34], lambda x: x[..., None], lambda x: x[..., None]),
    Case("getitem_repeat_list", [N34], lambda x: x[[0, 0, 2, 0]], lambda x: x[[0, 0, 2, 0]]),
    Case("getitem_repeat_array", [N34], lambda x: x[IDX], lambda x: x[IDX], lambda t, x: x[_t(t, IDX)]),
    Case("getitem_slice_repeat", [N34], lambda x: x[:, [1, 1, 3]], lambda x: x[:, [1, 1, 3]]),
    Case("getitem_pairs_repeat", [N34], lambda x: x[[0, 2, 2, 0], [1, 3, 3, 1]],
         lambda x: x[[0, 2, 2, 0], [1, 3, 3, 1]]),
    Case("getitem_bool_mask", [N34], lambda x: x[M34], lambda x: x[M34], lambda t, x: x[_t(t, M34)]),
    Case("getitem_bool_axis1", [N34], lambda x: x[:, M4], lambda x: x[:, M4], lambda t, x: x[:, _t(t, M4)]),
    Case("getitem_bool_tensor", [N34], lambda x: x[Tensor(M34)], lambda x: x[M34],
         lambda t, x: x[_t(t, M34)]),
    # masked_fill, where
    Case("masked_fill", [N34], lambda x: x.masked_fill(M34, -3.0), lambda x: np.where(M34, -3.0, x),
         lambda t, x: x.masked_fill(_t(t, M34), -3.0)),
    Case("masked_fill_bcast", [N34], lambda x: x.masked_fill(M4, 0.0), lambda x: np.where(M4, 0.0, x),
         lambda t, x: x.masked_fill(_t(t, M4), 0.0)),
    Case("masked_fill_tensor_mask", [N234], lambda x: x.masked_fill(Tensor(M34), 2.0),
         lambda x: np.where(M34, 2.0, x), lambda t, x: x.masked_fill(_t(t, M34), 2.0)),
    Case("where", [N34, N34], lambda x, y: tga.where(M34, x, y), lambda x, y: np.where(M34, x, y),
         lambda t, x, y: t.where(_t(t, M34), x, y)),
    Case("where_bcast", [N34, N4], lambda x, y: tga.where(M4, x, y), lambda x, y: np.where(M4, x, y),
         lambda t, x, y: t.where(_t(t, M4), x, y)),
    Case("where_scalar", [N34], lambda x: tga.where(M34, x, 0.5), lambda x: np.where(M34, x, 0.5),
         lambda t, x: t.where(_t(t, M34), x, 0.5)),
    # cat and stack on several axes
    Case("cat_0", [N34, ((2, 4), "n"), ((1, 4), "n")], lambda *xs: tga.cat(xs, axis=0),
         lambda *xs: np.concatenate(xs, axis=0), lambda t, *xs: t.cat(xs, dim=0)),
    Case("cat_1", [N34, ((3, 2), "n")], lambda *xs: tga.cat(xs, axis=1),
         lambda *xs: np.concatenate(xs, axis=1), lambda t, *xs: t.cat(xs, dim=1)),
    Case("cat_neg", [N234, ((2, 3, 1), "n")], lambda *xs: tga.cat(xs, axis=-1),
         lambda *xs: np.concatenate(xs, axis=-1), lambda t, *xs: t.cat(xs, dim=-1)),
    Case("cat_same_input", [N34], lambda x: tga.cat([x, x * 2.0], axis=1),
         lambda x: np.concatenate([x, x * 2.0], axis=1), lambda t, x: t.cat([x, x * 2.0], dim=1)),
    # rows put back at places of a longer layout (Packing.unpack), zeros elsewhere
    Case("unpack_rows", [N34, ((3, 2), "n")], lambda *xs: tga.functional.unpack_rows(xs, WHERE, 5),
         lambda *xs: _unpack_rows(xs, WHERE, 5),
         lambda t, *xs: t.zeros(5, 6, dtype=xs[0].dtype).index_copy(0, _t(t, WHERE), t.cat(xs, dim=1))),
    Case("stack_0", [N34, N34, N34], lambda *xs: tga.stack(xs, axis=0), lambda *xs: np.stack(xs, axis=0),
         lambda t, *xs: t.stack(xs, dim=0)),
    Case("stack_1", [N34, N34], lambda *xs: tga.stack(xs, axis=1), lambda *xs: np.stack(xs, axis=1),
         lambda t, *xs: t.stack(xs, dim=1)),
    Case("stack_neg", [N34, N34], lambda *xs: tga.stack(xs, axis=-1), lambda *xs: np.stack(xs, axis=-1),
         lambda t, *xs: t.stack(xs, dim=-1)),
]

for _axis in [-1, 0, 1]:
    CASES += [
        Case(f"softmax[{_axis}]", [N234], lambda x, a=_axis: x.softmax(axis=a),
             lambda x, a=_axis: _softmax(x, a), lambda t, x, a=_axis: t.softmax(x, dim=a)),
        Case(f"log_softmax[{_axis}]", [N234], lambda x, a=_axis: x.log_softmax(axis=a),
             lambda x, a=_axis: _log_softmax(x, a), lambda t, x, a=_axis: t.log_softmax(x, dim=a)),
    ]

CASES += [
    # a composite, so unbroadcasting and accumulation meet inside one graph
    Case("attention_scores", [((2, 3, 4), "n"), ((2, 3, 4), "n")],
         lambda q, k: (q @ k.transpose(-1, -2) / 2.0).softmax(axis=-1) @ k,
         lambda q, k: _softmax(q @ k.swapaxes(-1, -2) / 2.0, -1) @ k,
         lambda t, q, k: t.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ k),
]

IDS = [c.name for c in CASES]
assert len(set(IDS)) == len(IDS), "row names must be unique"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_numpy(case):
    arrays = case.sample()
    want = np.asarray(case.ref(*arrays))
    out = case.f(*[Tensor(a, dtype=np.float64) for a in arrays])
    assert isinstance(out, Tensor)
    assert out.shape == want.shape and out.dtype == np.float64
    np.testing.assert_allclose(out.data, want, rtol=1e-12, atol=1e-12)

    # float32 by default; Python scalars and float64 ndarrays inside the row must not promote it
    out32 = case.f(*[Tensor(a) for a in arrays])
    assert out32.dtype == np.float32, f"{case.name} promoted float32 to {out32.dtype}"
    want32 = np.asarray(case.ref(*[a.astype(np.float32).astype(np.float64) for a in arrays]))
    np.testing.assert_allclose(out32.data, want32, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck(case):
    xs = [Tensor(a, dtype=np.float64, requires_grad=True) for a in case.sample()]
    assert gradcheck(case.f, *xs) is True


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_torch(case):
    torch = pytest.importorskip("torch")
    arrays = case.sample()
    xs = [Tensor(a, dtype=np.float64, requires_grad=True) for a in arrays]
    out = case.f(*xs)
    u = np.random.default_rng(7).standard_normal(out.shape)  # one random cotangent for both
    out.backward(u)

    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    tout = case.torch(torch, *ts)
    tout.backward(torch.from_numpy(u))

    assert out.shape == tuple(tout.shape)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    for i, (x, t) in enumerate(zip(xs, ts)):
        assert x.grad is not None, f"input {i} got no gradient"
        assert x.grad.shape == x.shape and x.grad.dtype == np.float64
        np.testing.assert_allclose(x.grad.data, t.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"input {i}")


# ---------------------------------------------------------------- softmax at extreme logits


EXTREME = [
    ("1e4", [[1e4, 0.0, -1e4], [1e4, 1e4, 1e4 - 1.0]]),
    ("3e38", [[3e38, 3e38, 1e38], [0.0, 3e38, -1e37]]),
    ("rows_of_-1e30", [[-1e30, -1e30, -1e30], [-1e30, 0.0, 1.0]]),
]


@pytest.mark.parametrize("name,logits", EXTREME, ids=[e[0] for e in EXTREME])
def test_softmax_is_finite_at_extreme_logits(name, logits):
    x = Tensor(np.array(logits, dtype=np.float32), requires_grad=True)
    s = x.softmax(axis=-1)
    ls = x.log_softmax(axis=-1)
    assert s.dtype == np.float32 and ls.dtype == np.float32
    assert np.all(np.isfinite(s.data)) and np.all(np.isfinite(ls.data)), (s, ls)
    np.testing.assert_allclose(s.data.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.exp(ls.data), s.data, rtol=1e-6, atol=1e-30)
    u = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    (s * u).sum().backward()
    assert np.all(np.isfinite(x.grad.data))
    x.zero_grad()
    (ls * u).sum().backward()
    assert np.all(np.isfinite(x.grad.data))


def test_softmax_extreme_values():
    s = Tensor(np.array([[3e38, 3e38, 1e38], [1e4, 0.0, -1e4], [-1e30] * 3], dtype=np.float32)).softmax()
    np.testing.assert_allclose(s.data, [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [1 / 3] * 3], rtol=1e-6)
    ls = Tensor(np.array([[3e38, 3e38, 1e38]], dtype=np.float32)).log_softmax()
    np.testing.assert_allclose(ls.data, [[-math.log(2), -math.log(2), -2e38]], rtol=1e-6)


# ---------------------------------------------------------------- hypothesis: random broadcastable shapes


def _unbroadcast(g, shape):
    """Reference: sum g down to shape (written independently of the engine's)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


_floats = dict(elements=st.floats(-3, 3, allow_nan=False, width=64), dtype=np.float64)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4),
       op=st.sampled_from(["add", "mul", "sub"]))
def test_hypothesis_broadcast_binary(data, shapes, op):
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    a = data.draw(hnp.arrays(shape=sa, **_floats))
    b = data.draw(hnp.arrays(shape=sb, **_floats))
    u = data.draw(hnp.arrays(shape=out_shape, **_floats))
    x, y = Tensor(a, dtype=np.float64, requires_grad=True), Tensor(b, dtype=np.float64, requires_grad=True)
    out = {"add": x + y, "mul": x * y, "sub": x - y}[op]
    want = {"add": a + b, "mul": a * b, "sub": a - b}[op]
    assert out.shape == out_shape
    np.testing.assert_allclose(out.data, want)
    out.backward(u)
    da = {"add": u, "mul": u * b, "sub": u}[op]
    db = {"add": u, "mul": u * a, "sub": -u}[op]
    assert x.grad.shape == sa and y.grad.shape == sb
    np.testing.assert_allclose(x.grad.data, _unbroadcast(np.broadcast_to(da, out_shape), sa), atol=1e-12)
    np.testing.assert_allclose(y.grad.data, _unbroadcast(np.broadcast_to(db, out_shape), sb), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(data=st.data(),
       shapes=hnp.mutually_broadcastable_shapes(signature="(m?,n),(n,p?)->(m?,p?)", max_dims=3, max_side=3))
def test_hypothesis_matmul(data, shapes):
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    a = data.draw(hnp.arrays(shape=sa, **_floats))
    b = data.draw(hnp.arrays(shape=sb, **_floats))
    x, y = Tensor(a, dtype=np.float64, requires_grad=True), Tensor(b, dtype=np.float64, requires_grad=True)
    out = x @ y
    assert out.shape == np.matmul(a, b).shape == out_shape
    np.testing.assert_allclose(out.data, np.matmul(a, b), atol=1e-12)
    out.backward(np.ones(out_shape))
    assert x.grad.shape == sa and y.grad.shape == sb
    assert gradcheck(lambda p, q: p @ q, x, y)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=4), keepdims=st.booleans())
def test_hypothesis_sum(data, shape, keepdims):
    a = data.draw(hnp.arrays(shape=shape, **_floats))
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)))
    axis = None if not axes else tuple(ax - len(shape) if i % 2 else ax for i, ax in enumerate(axes))
    x = Tensor(a, dtype=np.float64, requires_grad=True)
    out = x.sum(axis=axis, keepdims=keepdims)
    want = a.sum(axis=axis, keepdims=keepdims)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.data, want, atol=1e-12)
    u = data.draw(hnp.arrays(shape=want.shape, **_floats))
    out.backward(u)
    kept = u if keepdims else np.expand_dims(u, axis if axis is not None else tuple(range(len(shape))))
    np.testing.assert_allclose(x.grad.data, np.broadcast_to(kept, shape))


# ---------------------------------------------------------------- dtype rules


def test_float_data_defaults_to_float32():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(np.ones(3)).dtype == np.float32  # a float64 ndarray becomes float32...
    assert Tensor(np.ones(3), dtype=np.float64).dtype == np.float64  # ...unless asked
    assert Tensor(2.5).dtype == np.float32
    assert Tensor([1, 2]).dtype.kind == "i" and Tensor([True]).dtype == np.bool_


OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**"])
def test_python_float_and_float64_ndarray_do_not_promote_float32(op):
    x = Tensor(np.array([1.0, 2.0], dtype=np.float32))
    for other in [2.5, 3, np.float64(2.5), np.array([2.5, 1.5])]:
        for out in [OPERATORS[op](x, other), OPERATORS[op](other, x)]:
            assert isinstance(out, Tensor), (op, type(other))
            assert out.dtype == np.float32, (op, type(other), out.dtype)


def test_ndarray_op_tensor_returns_tensor():
    x = Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    a = np.full((2, 2), 3.0)
    outs = [a + x, a - x, a * x, a / x, a**x, a @ x]
    assert all(type(o) is Tensor for o in outs)
    np.testing.assert_allclose((a - x).data, 2.0)
    np.testing.assert_allclose((a @ x).data, 6.0)
    (a * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 3.0)


def test_float64_end_to_end():
    x = Tensor(np.linspace(0.1, 1.0, 6).reshape(2, 3), dtype=np.float64, requires_grad=True)
    w = Tensor(np.ones((3, 2)), dtype=np.float64, requires_grad=True)
    h = ((x @ w).tanh() * 0.5 + 1.0).log().softmax(axis=-1)
    loss = (h * h).mean()
    assert h.dtype == loss.dtype == np.float64
    loss.backward()
    assert x.grad.dtype == np.float64 and w.grad.dtype == np.float64
    assert x.grad.data.dtype == np.float64 and np.asarray(w.grad).dtype == np.float64


def test_float32_grads_stay_float32():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    (x * np.float64(2.0)).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.data, 2.0)


def test_power_at_zero_base_matches_pytorch():
    # d(x ** y)/dy = x ** y log(x) is 0 at x = 0 for y >= 0 (PyTorch's convention), not 0 * -inf = nan
    x = Tensor([0.0, 1.5, 0.0], dtype=np.float64, requires_grad=True)
    y = Tensor([2.0, 3.0, 0.5], dtype=np.float64, requires_grad=True)
    (x**y).backward(np.ones(3))
    np.testing.assert_allclose(x.grad.data[:2], [0.0, 3 * 1.5**2])
    assert x.grad.data[2] == np.inf
    np.testing.assert_allclose(y.grad.data, [0.0, 1.5**3 * math.log(1.5), 0.0])


def test_where_with_two_constants_is_a_constant_tensor():
    out = tga.where(np.array([True, False]), 1.0, Tensor([5.0, 6.0]))
    np.testing.assert_array_equal(out.data, [1.0, 6.0])
    out = tga.where(np.array([True, False]), 1.0, 2.0)
    assert isinstance(out, Tensor) and not out.requires_grad
    np.testing.assert_array_equal(out.data, [1.0, 2.0])


# ---------------------------------------------------------------- ops that work in place

_RNG = np.random.default_rng(7)
_MASK = np.where(_RNG.random((2, 3, 5)) < 0.3, -np.inf, 0.0)
_MASK_TT = np.where(_RNG.random((2, 1, 5, 5)) < 0.3, -np.inf, 0.0)  # (B, 1, T, T), broadcast over the heads

# (op, its array inputs, its options): ops whose forward or VJP updates arrays in place
IN_PLACE = [
    (tga.ops.linear, [(2, 3, 4), (5, 4), (5,)], {}),
    (tga.ops.layer_norm, [(2, 3, 6), (6,), (6,)], {}),
    (tga.ops.masked_softmax, [(2, 3, 5)], {"bias": _MASK, "scale": 0.5}),
    (tga.ops.self_attention, [(2, 5, 12)], {"heads": 2, "bias": _MASK_TT, "scale": 0.5,
                                            "keep": (_RNG.random((2, 2, 5, 5)) > 0.3) / 0.7}),
    (tga.ops.cross_attention, [(2, 5, 4), (2, 3, 8)], {"heads": 2, "bias": _MASK_TT[..., :3], "scale": 0.5,
                                                       "keep": (_RNG.random((2, 2, 5, 3)) > 0.3) / 0.7}),
]


@pytest.mark.parametrize("op, shapes, options", IN_PLACE, ids=[c[0].__name__ for c in IN_PLACE])
def test_ops_never_write_into_their_inputs_or_the_incoming_gradient(op, shapes, options):
    xs = [_RNG.standard_normal(s) for s in shapes]
    kept = [x.copy() for x in xs] + [v.copy() for v in options.values() if isinstance(v, np.ndarray)]
    z, vjp = op(*xs, **options)
    z_kept, g = z.copy(), _RNG.standard_normal(z.shape)
    g_kept = g.copy()
    vjp(g)
    vjp(g)  # a second backward (retain_graph) sees the same saved arrays
    for x, before in zip(xs + [v for v in options.values() if isinstance(v, np.ndarray)], kept):
        np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(g, g_kept)
    np.testing.assert_array_equal(z, z_kept)  # the output the graph keeps is not reused as scratch


def test_masked_softmax_writes_in_place_when_told_to():
    """out=x and vjp(g, out=g), as the attention ops call it: the same numbers, in the arrays given."""
    x, g = _RNG.standard_normal((2, 3, 5)), _RNG.standard_normal((2, 3, 5))
    z, vjp = tga.ops.masked_softmax(x, _MASK, 0.5)
    scratch = x.copy()
    z_in_place, vjp_in_place = tga.ops.masked_softmax(scratch, _MASK, 0.5, out=scratch)
    assert z_in_place is scratch
    np.testing.assert_array_equal(z_in_place, z)
    (dx,) = vjp(g)
    g_scratch = g.copy()
    (dx_in_place,) = vjp_in_place(g_scratch, out=g_scratch)
    assert dx_in_place is g_scratch
    np.testing.assert_allclose(dx_in_place, dx, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("shape", [(3, 4, 24), (7, 48), (7, 49), (3, 200), (1 << 17, 5), (2, 0, 5), (3, 0)],
                         ids=str)
def test_row_max_is_numpys_both_ways(shape):
    """_row_max reduces short rows across a transposed copy and long (or very many) rows in place: NumPy's
    maxima either way, -inf for a row all at -inf, and for a row of no keys."""
    x = _RNG.standard_normal(shape).astype(np.float32)
    if x.size:
        x.reshape(-1, shape[-1])[1] = -np.inf
    np.testing.assert_array_equal(tga.ops._row_max(x), np.max(x, axis=-1, keepdims=True, initial=-np.inf))
