"""tinygrad_attn.functional and the fused ops: NumPy reference, float64 gradcheck, PyTorch, composites."""

import math

import numpy as np
import pytest

from tinygrad_attn import functional as F
from tinygrad_attn import gradcheck, manual_seed, ops
from tinygrad_attn.tensor import Tensor, apply

R = np.random.default_rng(0)


def t64(shape, requires_grad=True, scale=1.0):
    return Tensor(R.standard_normal(shape) * scale, dtype=np.float64, requires_grad=requires_grad)


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_layer_norm(x, w, b, eps=1e-5, axes=(-1,)):
    mu = x.mean(axes, keepdims=True)
    return (x - mu) / np.sqrt(x.var(axes, keepdims=True) + eps) * w + b


def np_cross_entropy(logits, target, ignore_index=-100, s=0.0, reduction="mean"):
    logp = np.log(np_softmax(logits))
    keep = target != ignore_index
    c = logits.shape[1]
    per = np.array([-(1 - s) * logp[i, t] - s / c * logp[i].sum() if k else 0.0
                    for i, (t, k) in enumerate(zip(target, keep))])
    return {"none": per, "sum": per.sum(), "mean": per.sum() / keep.sum()}[reduction]


def gelu_ref(x):
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def np_heads(x, heads):
    """(B, T, E) -> (B, h, T, d) and back: the heads as attention sees them."""
    b, t, e = x.shape
    return x.reshape(b, t, heads, e // heads).swapaxes(1, 2)


def np_attend(q, k, v, heads, bias=0.0):
    """softmax(q k^T / sqrt(d) + bias) v per head, on (B, L, E) arrays; the heads side by side again."""
    q, k, v = (np_heads(x, heads) for x in (q, k, v))
    context = np_softmax(q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1]) + bias) @ v  # (B, h, T, d)
    return context.swapaxes(1, 2).reshape(q.shape[0], q.shape[2], -1)


def np_self_attention(qkv, heads, bias=0.0):
    return np_attend(*np.split(qkv, 3, axis=-1), heads, bias)


def np_cross_attention(q, kv, heads, bias=0.0):
    return np_attend(q, *np.split(kv, 2, axis=-1), heads, bias)


def torch_self_attention(t, qkv, heads, bias=None):
    return torch_cross_attention(t, *qkv.split([qkv.shape[-1] // 3, 2 * qkv.shape[-1] // 3], -1), heads, bias)


def torch_cross_attention(t, q, kv, heads, bias=None):
    b, n = q.shape[:2]
    q, k, v = (part.reshape(b, part.shape[1], heads, -1).transpose(1, 2) for part in (q, *kv.chunk(2, -1)))
    mask = None if bias is None else t.tensor(bias, dtype=q.dtype)
    return t.nn.functional.scaled_dot_product_attention(q, k, v, mask).transpose(1, 2).reshape(b, n, -1)


TARGET = np.array([1, 0, 3, -100, 2])
CAUSAL = np.where(np.tri(3) > 0, 0.0, -np.inf)  # (T, T): query i sees keys j <= i
CROSS_MASK = np.where(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])[:, None, None] > 0, 0.0, -np.inf)  # (B, 1, 1, S)
PAD0 = TARGET.clip(0)  # 0 as the ignored (padding) class
BOOL_TAKES_PART = np.array([[True, True, False, True], [True, False, False, False], [True, True, True, True]])

# name, function of tensors, NumPy reference of arrays, input shapes, torch function of tensors (by name)
CASES = [
    ("linear", lambda x, w, b: F.linear(x, w, b), lambda x, w, b: x @ w.T + b, [(2, 3, 4), (5, 4), (5,)],
     lambda t, x, w, b: t.nn.functional.linear(x, w, b)),
    ("linear_2d_nobias", lambda x, w: F.linear(x, w), lambda x, w: x @ w.T, [(3, 4), (2, 4)],
     lambda t, x, w: t.nn.functional.linear(x, w)),
    ("softmax", lambda x: F.softmax(x), np_softmax, [(3, 5)], lambda t, x: t.softmax(x, -1)),
    ("log_softmax", lambda x: F.log_softmax(x, 0), lambda x: np.log(np_softmax(x, 0)), [(3, 5)],
     lambda t, x: t.log_softmax(x, 0)),
    ("relu", F.relu, lambda x: np.maximum(x, 0), [(4, 5)], lambda t, x: t.relu(x)),
    ("gelu", F.gelu, gelu_ref, [(4, 5)], lambda t, x: t.nn.functional.gelu(x)),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, 6, w, b), np_layer_norm, [(2, 3, 6), (6,), (6,)],
     lambda t, x, w, b: t.nn.functional.layer_norm(x, (6,), w, b)),
    ("layer_norm_noaffine", lambda x: F.layer_norm(x, (6,)), lambda x: np_layer_norm(x, 1, 0), [(4, 6)],
     lambda t, x: t.nn.functional.layer_norm(x, (6,))),
    ("layer_norm_two_axes", lambda x, w, b: F.layer_norm(x, (3, 6), w, b),
     lambda x, w, b: np_layer_norm(x, w, b, axes=(-2, -1)), [(2, 3, 6), (3, 6), (3, 6)],
     lambda t, x, w, b: t.nn.functional.layer_norm(x, (3, 6), w, b)),
    ("cross_entropy", lambda z: F.cross_entropy(z, TARGET), lambda z: np_cross_entropy(z, TARGET), [(5, 4)],
     lambda t, z: t.nn.functional.cross_entropy(z, t.tensor(TARGET))),
    ("cross_entropy_smooth_sum", lambda z: F.cross_entropy(z, TARGET, label_smoothing=0.2, reduction="sum"),
     lambda z: np_cross_entropy(z, TARGET, s=0.2, reduction="sum"), [(5, 4)],
     lambda t, z: t.nn.functional.cross_entropy(z, t.tensor(TARGET), label_smoothing=0.2, reduction="sum")),
    ("cross_entropy_smooth_mean_ignore", lambda z: F.cross_entropy(z, TARGET, label_smoothing=0.1),
     lambda z: np_cross_entropy(z, TARGET, s=0.1), [(5, 4)],
     lambda t, z: t.nn.functional.cross_entropy(z, t.tensor(TARGET), label_smoothing=0.1)),
    ("cross_entropy_none_pad0", lambda z: F.cross_entropy(z, PAD0, ignore_index=0, reduction="none"),
     lambda z: np_cross_entropy(z, PAD0, 0, reduction="none"), [(5, 4)],
     lambda t, z: t.nn.functional.cross_entropy(z, t.tensor(PAD0), ignore_index=0, reduction="none")),
    ("sdpa", lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
     lambda q, k, v: np_softmax(q @ np.swapaxes(k, -1, -2) / 2) @ v, [(2, 3, 4), (2, 4, 4), (2, 4, 5)],
     lambda t, q, k, v: t.nn.functional.scaled_dot_product_attention(q, k, v)),
    ("sdpa_bool_mask", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, BOOL_TAKES_PART),
     lambda q, k, v: np_softmax(np.where(BOOL_TAKES_PART, q @ np.swapaxes(k, -1, -2) / 2, -np.inf)) @ v,
     [(2, 3, 4), (2, 4, 4), (2, 4, 5)],
     lambda t, q, k, v: t.nn.functional.scaled_dot_product_attention(q, k, v, t.tensor(BOOL_TAKES_PART))),
    ("sdpa_causal_scale", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),
     lambda q, k, v: np_softmax(np.where(np.tri(3) > 0, 0.3 * q @ np.swapaxes(k, -1, -2), -np.inf)) @ v,
     [(2, 3, 4), (2, 3, 4), (2, 3, 5)],
     lambda t, q, k, v: t.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)),
    ("self_attention", lambda qkv: F.self_attention(qkv, 2)[0], lambda qkv: np_self_attention(qkv, 2),
     [(2, 3, 12)], lambda t, qkv: torch_self_attention(t, qkv, 2)),
    ("self_attention_causal_one_head", lambda qkv: F.self_attention(qkv, 1, CAUSAL)[0],
     lambda qkv: np_self_attention(qkv, 1, CAUSAL), [(2, 3, 6)],
     lambda t, qkv: torch_self_attention(t, qkv, 1, CAUSAL)),
    ("cross_attention", lambda q, kv: F.cross_attention(q, kv, 2)[0], lambda q, kv: np_cross_attention(q, kv, 2),
     [(2, 3, 4), (2, 5, 8)], lambda t, q, kv: torch_cross_attention(t, q, kv, 2)),
    ("cross_attention_masked", lambda q, kv: F.cross_attention(q, kv, 1, CROSS_MASK)[0],
     lambda q, kv: np_cross_attention(q, kv, 1, CROSS_MASK), [(2, 3, 4), (2, 5, 8)],
     lambda t, q, kv: torch_cross_attention(t, q, kv, 1, CROSS_MASK)),
]


@pytest.mark.parametrize("name, fn, ref, shapes, torch_fn", CASES, ids=[c[0] for c in CASES])
def test_against_numpy_and_gradcheck(name, fn, ref, shapes, torch_fn):
    xs = [t64(s) for s in shapes]
    np.testing.assert_allclose(fn(*xs).data, ref(*[x.data for x in xs]), rtol=1e-10, atol=1e-12)
    assert gradcheck(fn, *xs, atol=1e-6)


@pytest.mark.parametrize("name, fn, ref, shapes, torch_fn", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_against_torch(name, fn, ref, shapes, torch_fn, dtype, tol):
    torch = pytest.importorskip("torch")
    arrays = [R.standard_normal(s).astype(dtype) for s in shapes]
    xs = [Tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, want = fn(*xs), torch_fn(torch, *ts)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=tol, atol=tol)
    u = R.standard_normal(out.shape).astype(dtype)
    out.backward(u)
    want.backward(torch.tensor(u))
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad.data, t.grad.numpy(), rtol=tol, atol=tol)


# ---------------------------------------------------------------- fused ops against their composites


def composite_layer_norm(x, w, b, eps=1e-5):
    xc = x - x.mean(-1, keepdims=True)
    return xc / ((xc * xc).mean(-1, keepdims=True) + eps).sqrt() * w + b


def composite_cross_entropy(z, target, ignore_index=-100, s=0.0):
    keep = target != ignore_index
    logp = z.log_softmax(-1)
    picked = logp[np.arange(len(target)), np.where(keep, target, 0)]
    per = -(1 - s) * picked - s / z.shape[1] * logp.sum(-1)
    return (per * keep.astype(z.dtype)).sum() / keep.sum()


def composite_heads(x, parts, heads):
    """(B, L, parts * E) -> parts Tensors (B, h, L, d), by the Tensor ops."""
    b, length, width = x.shape
    return [x.reshape(b, length, parts, heads, width // (parts * heads)).permute(2, 0, 3, 1, 4)[i]
            for i in range(parts)]


def composite_attention(q, k, v, bias, keep):
    w = (q @ k.transpose(-1, -2) * (1 / math.sqrt(q.shape[-1])) + bias).softmax(-1)  # (B, h, T, S)
    return ((w * keep) @ v).transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


KEEP = (R.random((4, 5)) > 0.3) / 0.7
SA_KEEP = (R.random((2, 2, 3, 3)) > 0.3) / 0.7  # dropout on (B, h, T, T) weights
CA_KEEP = (R.random((2, 2, 3, 5)) > 0.3) / 0.7  # and on (B, h, T, S)
IDS = np.array([[1, 2, 1]])  # a repeated id: its gradient rows add up
BIAS = np.where(R.random((3, 5)) < 0.3, -np.inf, 0.0)
BIAS[:, 0] = 0.0  # no fully masked row: there the composite gives NaN

FUSED = [
    ("linear", lambda x, w, b: apply(ops.linear, x, w, b), lambda x, w, b: x @ w.T + b,
     [(2, 3, 4), (5, 4), (5,)]),
    ("layer_norm", lambda x, w, b: apply(ops.layer_norm, x, w, b), composite_layer_norm,
     [(2, 3, 6), (6,), (6,)]),
    ("cross_entropy", lambda z: F.cross_entropy(z, TARGET, label_smoothing=0.1),
     lambda z: composite_cross_entropy(z, TARGET, s=0.1), [(5, 4)]),
    ("masked_softmax", lambda x: F.masked_softmax(x, BIAS, 0.5), lambda x: (x * 0.5 + BIAS).softmax(-1),
     [(2, 3, 5)]),
    ("dropout", lambda x: apply(ops.dropout, x, keep=KEEP), lambda x: x * KEEP, [(4, 5)]),
    ("embedding", lambda w: F.embedding(IDS, w), lambda w: w[IDS], [(4, 3)]),
    ("self_attention", lambda qkv: apply(ops.self_attention, qkv, heads=2, bias=CAUSAL, scale=1 / math.sqrt(2),
                                         keep=SA_KEEP),
     lambda qkv: composite_attention(*composite_heads(qkv, 3, 2), CAUSAL, SA_KEEP), [(2, 3, 12)]),
    ("cross_attention", lambda q, kv: apply(ops.cross_attention, q, kv, heads=2, bias=CROSS_MASK,
                                            scale=1 / math.sqrt(2), keep=CA_KEEP),
     lambda q, kv: composite_attention(*composite_heads(q, 1, 2), *composite_heads(kv, 2, 2), CROSS_MASK, CA_KEEP),
     [(2, 3, 4), (2, 5, 8)]),
]


@pytest.mark.parametrize("name, fused, composite, shapes", FUSED, ids=[c[0] for c in FUSED])
def test_fused_gradient_equals_composite(name, fused, composite, shapes):
    xs = [t64(s) for s in shapes]
    ys = [Tensor(x.data.copy(), dtype=np.float64, requires_grad=True) for x in xs]
    a, b = fused(*xs), composite(*ys)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-12)
    u = R.standard_normal(a.shape)
    a.backward(u)
    b.backward(u)
    for x, y in zip(xs, ys):
        np.testing.assert_allclose(x.grad.data, y.grad.data, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ids, name", [
    (IDS, "ids"),  # an array: wrapped in a Tensor named ids
    (IDS.tolist(), "ids"),
    (Tensor(IDS), None),  # a Tensor: itself, as the caller made it
])
def test_embedding_takes_the_ids_as_an_input_that_gets_no_gradient(ids, name):
    weight = t64((4, 3))
    out = F.embedding(ids, weight)
    assert out._parents[0] is weight and out._parents[1].name == name
    if isinstance(ids, Tensor):
        assert out._parents[1] is ids
    np.testing.assert_array_equal(out._parents[1].data, IDS)
    assert not out._parents[1].requires_grad
    u = R.standard_normal(out.shape)
    out.backward(u)
    expected = np.zeros((4, 3))
    np.add.at(expected, IDS.ravel(), u.reshape(-1, 3))  # NumPy's scatter-add: the rows of u into the rows used
    np.testing.assert_allclose(weight.grad.data, expected, rtol=1e-12)
    assert out._parents[1].grad is None


# ---------------------------------------------------------------- masks, dropout, errors


def test_fully_masked_query_gets_zero_weights_and_zero_gradient_not_nan():
    scores = t64((2, 3, 4))
    bias = np.zeros((3, 4))
    bias[1] = -np.inf
    w = F.masked_softmax(scores, bias)
    assert np.all(w.data[:, 1] == 0) and np.allclose(w.data[:, [0, 2]].sum(-1), 1)
    w.backward(R.standard_normal(w.shape))
    assert np.all(np.isfinite(scores.grad.data)) and np.all(scores.grad.data[:, 1] == 0)
    q, k, v = t64((1, 3, 4)), t64((1, 4, 4)), t64((1, 4, 2))
    none = np.zeros((3, 4), bool)  # sdpa convention: True takes part; row 0 has no key at all
    none[1:] = True
    out = F.scaled_dot_product_attention(q, k, v, none)
    assert np.all(out.data[0, 0] == 0) and np.all(np.isfinite(out.data))


def test_mask_helpers_block_what_they_should():
    ids = np.array([[5, 6, 0, 0], [7, 0, 0, 0]])
    np.testing.assert_array_equal(F.padding_mask(ids, 0), ids == 0)
    m = F.causal_mask(3)
    np.testing.assert_array_equal(m, [[False, True, True], [False, False, True], [False, False, False]])
    np.testing.assert_array_equal(F.causal_mask(2, offset=2), [[False, False, False, True], [False] * 4])
    bias = F.merge_masks(m, F.padding_mask(ids[:, :3], 0), 2, 1, 3, 3, np.float32)
    assert bias.shape == (2, 1, 3, 3) and bias.dtype == np.float32
    # batch 1 ignores key 1 and 2 (padding) and, by causality, keys after the query
    np.testing.assert_array_equal(np.isinf(bias[1, 0]), [[False, True, True]] * 3)
    np.testing.assert_array_equal(np.isinf(bias[0, 0]), m | np.array([False, False, True]))


def test_dropout_inverted_scaling_and_identity():
    x = Tensor(np.ones((200, 100)), requires_grad=True)
    assert F.dropout(x, 0.3, training=False) is x and F.dropout(x, 0.0) is x
    manual_seed(1)
    y = F.dropout(x, 0.3)
    kept = y.data != 0
    assert abs(1 - kept.mean() - 0.3) < 0.02
    np.testing.assert_allclose(y.data[kept], 1 / 0.7, rtol=1e-6)
    y.backward(np.ones(y.shape, np.float32))
    np.testing.assert_allclose(x.grad.data, y.data)  # d/dx = the same mask and scale
    assert y.dtype == np.float32


@pytest.mark.parametrize("call, kind, words", [
    (lambda: F.cross_entropy(t64((3, 4)), np.array([0, 4, 1])), IndexError, ["cross_entropy", "4", "0..3"]),
    (lambda: F.cross_entropy(t64((3, 4)), np.array([0.0, 1, 1])), TypeError, ["integer"]),
    (lambda: F.cross_entropy(t64((3, 4)), np.array([0, 1])), ValueError, ["(3, 4)", "(2,)"]),
    (lambda: F.linear(t64((2, 3)), t64((4, 5))), ValueError, ["linear", "(2, 3)", "(4, 5)"]),
    (lambda: F.layer_norm(t64((2, 3)), 4), ValueError, ["layer_norm", "(2, 3)", "(4,)"]),
    (lambda: F.masked_softmax(t64((2, 3, 4)), np.zeros((5, 4))), ValueError,
     ["masked_softmax", "(5, 4)", "(2, 3, 4)", "(..., T, S)"]),
    (lambda: F.self_attention(t64((2, 3, 12)), 3), ValueError, ["self_attention", "(2, 3, 12)", "num_heads=3"]),
    (lambda: F.self_attention(t64((2, 3)), 1), ValueError, ["self_attention", "(B, T, 3E)"]),
    (lambda: F.self_attention(t64((2, 3, 12)), 2, np.zeros((4, 3))), ValueError,
     ["self_attention", "(4, 3)", "(2, 2, 3, 3)", "without adding axes", "(B or 1, h or 1, T or 1, S)"]),
    (lambda: F.self_attention(t64((2, 3, 12)), 2, t64((3, 3))), TypeError, ["self_attention", "attention()"]),
    (lambda: F.cross_attention(t64((2, 3, 4)), t64((2, 5, 4)), 2), ValueError,
     ["cross_attention", "(2, 3, 4)", "(2, 5, 4)", "(B, S, 2E)"]),
    (lambda: F.cross_attention(t64((2, 3, 4)), t64((2, 5, 6)), 2), ValueError,
     ["cross_attention", "kv", "(2, 5, 6)", "num_heads=2"]),
    (lambda: F.cross_attention(t64((2, 3, 4)), np.zeros((2, 5, 8)), 2), TypeError, ["cross_attention", "ndarray"]),
    (lambda: F.cross_attention(t64((1, 3, 4)), t64((1, 5, 8)), 2, np.zeros((4, 2, 3, 5))), ValueError,
     ["cross_attention", "(4, 2, 3, 5)", "(1, 2, 3, 5)", "without adding axes", "(B or 1, h or 1, T or 1, S)"]),
    (lambda: F.cross_attention(t64((1, 3, 4)), t64((1, 5, 8)), 2, np.zeros((2, 1, 2, 3, 5))), ValueError,
     ["cross_attention", "(2, 1, 2, 3, 5)", "without adding axes"]),
    (lambda: F.self_attention(t64((2, 3, 12)), 2, dropout_p=1.5), ValueError, ["self_attention", "[0, 1]", "1.5"]),
    (lambda: F.embedding(np.array([[0, 9]]), t64((5, 2))), IndexError, ["embedding", "9", "5 tokens"]),
    (lambda: F.merge_masks(np.zeros((3, 3), bool), None, 2, 2, 3, 4, np.float32), ValueError,
     ["attn_mask", "(3, 3)", "(3, 4)"]),
    (lambda: F.merge_masks(np.zeros((3, 4), np.int64), None, 2, 2, 3, 4, np.float32), TypeError,
     ["attn_mask", "int64", "bool"]),
    (lambda: F.merge_masks(None, np.zeros((2, 3), bool), 2, 2, 3, 4, np.float32), ValueError,
     ["key_padding_mask", "(2, 3)", "(2, 4)"]),
])
def test_errors_name_the_op_the_shapes_and_the_fix(call, kind, words):
    with pytest.raises(kind) as info:
        call()
    for w in words:
        assert w in str(info.value)


def test_cross_entropy_spatial_matches_torch():
    torch = pytest.importorskip("torch")
    z, t = R.standard_normal((2, 4, 3)), np.array([[0, 3, -100], [2, 1, 1]])
    ours = F.cross_entropy(Tensor(z, dtype=np.float64), t, label_smoothing=0.3, reduction="none")
    want = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(t), label_smoothing=0.3,
                                             reduction="none")
    np.testing.assert_allclose(ours.data, want.numpy(), rtol=1e-12)


def test_sdpa_float_mask_tensor_gets_a_gradient_like_torch():
    torch = pytest.importorskip("torch")
    q, k, v, m = (R.standard_normal(s) for s in [(2, 3, 4), (2, 5, 4), (2, 5, 2), (3, 5)])
    ours = [Tensor(a, dtype=np.float64, requires_grad=True) for a in (q, k, v, m)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v, m)]
    out = F.scaled_dot_product_attention(*ours[:3], attn_mask=ours[3])
    want = torch.nn.functional.scaled_dot_product_attention(*theirs[:3], attn_mask=theirs[3])
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=1e-10)
    u = R.standard_normal(out.shape)
    out.backward(u)
    want.backward(torch.tensor(u))
    np.testing.assert_allclose(ours[3].grad.data, theirs[3].grad.numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- max ties, causal sdpa with T != S


MAX_TIES = [
    (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [5.0, 1.0, 0.0]]), 1),
    (np.array([[1.0, 3.0, 3.0], [2.0, 3.0, 2.0], [3.0, 1.0, 0.0]]), 0),
    (np.array([[1.0, 4.0, 4.0], [2.0, 4.0, 2.0], [3.0, 1.0, 4.0]]), None),
]


@pytest.mark.parametrize("x, axis", MAX_TIES, ids=["axis1", "axis0", "all"])
def test_max_with_tied_maxima_shares_the_gradient_equally(x, axis):
    t = Tensor(x, dtype=np.float64, requires_grad=True)
    z = t.max(axis=axis)
    g = R.standard_normal(z.shape) + 2.0  # a random cotangent, away from 0
    z.backward(g)
    hit = x == x.max(axis=axis, keepdims=True)
    g_keep = g if axis is None else np.expand_dims(g, axis)
    want = g_keep * hit / hit.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(t.grad.data, want, rtol=1e-14)
    np.testing.assert_allclose(t.grad.data.sum(axis=axis), g, rtol=1e-14)  # no more, no less than g
    torch = pytest.importorskip("torch")
    tt = torch.tensor(x, requires_grad=True)
    torch.amax(tt, dim=(0, 1) if axis is None else axis).backward(torch.tensor(g))
    np.testing.assert_allclose(t.grad.data, tt.grad.numpy(), rtol=1e-14)


@pytest.mark.parametrize("t, s", [(3, 5), (5, 3)], ids=["T<S", "T>S"])
def test_sdpa_is_causal_with_t_not_s_matches_torch(t, s):
    torch = pytest.importorskip("torch")
    q, k, v = R.standard_normal((2, 2, t, 4)), R.standard_normal((2, 2, s, 4)), R.standard_normal((2, 2, s, 3))
    ours = [Tensor(a, dtype=np.float64, requires_grad=True) for a in (q, k, v)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ours, is_causal=True)
    want = torch.nn.functional.scaled_dot_product_attention(*theirs, is_causal=True)
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    u = R.standard_normal(out.shape)
    out.backward(u)
    want.backward(torch.tensor(u))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.data, b.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_sdpa_mask_with_more_batch_axes_than_the_scores_broadcasts_them():
    # 2-D query and key, a (2, T, S) bool mask: the result takes the mask's batch axis, as PyTorch's does
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in [(4, 8), (5, 8), (5, 8)])
    keep = np.ones((2, 4, 5), bool)
    keep[0, :, 0] = False
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), attn_mask=keep)
    scores = np.where(keep, q @ k.T / np.sqrt(8), -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, weights @ v, rtol=1e-5, atol=1e-6)
