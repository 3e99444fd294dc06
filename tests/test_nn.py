"""tinygrad_attn.nn: Module semantics, layers (NumPy, gradcheck, PyTorch), MultiheadAttention vs PyTorch."""

import contextlib
import math
import re

import numpy as np
import pytest

from tinygrad_attn import gradcheck, manual_seed, nn, no_grad
from tinygrad_attn.interop import load_torch_state_dict, to_torch_state_dict
from tinygrad_attn.nn.transformer import Packing
from tinygrad_attn.tensor import Tensor

R = np.random.default_rng(0)


def t64(shape, requires_grad=True):
    return Tensor(R.standard_normal(shape), dtype=np.float64, requires_grad=requires_grad)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.layers = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3, bias=False)])
        self.scale = nn.Parameter(np.ones(3))
        self.note = "not registered"

    def forward(self, x):
        x = self.norm(self.proj(x))
        for layer in self.layers:
            x = layer(x).relu()
        return x * self.scale


# ---------------------------------------------------------------- Module semantics


def test_assignment_registers_parameters_modules_and_lists_with_dotted_names():
    b = Block()
    names = [n for n, _ in b.named_parameters()]
    assert names == ["scale", "proj.weight", "proj.bias", "norm.weight", "norm.bias", "layers.0.weight",
                     "layers.0.bias", "layers.1.weight"]
    assert [n for n, _ in b.named_children()] == ["proj", "norm", "layers"]
    assert [n for n, _ in b.named_modules()] == ["", "proj", "norm", "layers", "layers.0", "layers.1"]
    assert len(list(b.modules())) == 6 and len(list(b.children())) == 3
    assert list(b.state_dict()) == names and all(isinstance(v, np.ndarray) for v in b.state_dict().values())
    assert b.layers[1].bias is None and len(b.layers) == 2 and isinstance(b.layers[:1], nn.ModuleList)
    b.proj = "replaced"  # no longer a module
    assert "proj.weight" not in dict(b.named_parameters())
    p = nn.Parameter(np.ones(2, dtype=np.float64))
    assert p.dtype == np.float32 and p.requires_grad and isinstance(p, Tensor)


def test_module_needs_super_init():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(2))

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_tied_parameters_counted_once_but_saved_under_every_name():
    b = Block()
    b.layers[1].weight = b.layers[0].weight
    assert sum(1 for _ in b.parameters()) == 7
    assert "layers.1.weight" in b.state_dict()


def test_load_state_dict_names_every_problem_and_changes_nothing():
    b = Block()
    before = b.state_dict()
    state = dict(before)
    del state["norm.bias"]
    state["extra.weight"] = np.ones(2)
    state["proj.weight"] = np.ones((5, 4))
    state["scale"] = np.zeros(3)  # a valid change that must not be applied
    with pytest.raises(KeyError) as info:
        b.load_state_dict(state)
    text = str(info.value)
    for word in ["norm.bias", "extra.weight", "proj.weight", "(5, 4)", "(3, 4)", "nothing was loaded"]:
        assert word in text
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    state["proj.weight"] = before["proj.weight"]
    with pytest.warns(UserWarning, match="loaded 7 of 8 parameters; missing: norm.bias; unexpected: extra.weight"):
        missing, unexpected = b.load_state_dict(state, strict=False)
    assert missing == ["norm.bias"] and unexpected == ["extra.weight"] and np.all(b.scale.data == 0)


def test_train_eval_zero_grad_to_and_repr():
    b = Block()
    b.eval()
    assert not any(m.training for m in b.modules())
    b.train()
    assert all(m.training for m in b.modules())
    out = b(Tensor(R.standard_normal((2, 4))))
    out.sum().backward()
    assert b.proj.weight.grad is not None
    b.zero_grad()
    assert all(p.grad is None for p in b.parameters())
    b.double()
    assert all(p.dtype == np.float64 for p in b.parameters()) and b(t64((2, 4))).dtype == np.float64
    text = repr(b)
    assert "(proj): Linear(in_features=4, out_features=3, bias=True)  # 15 parameters" in text
    assert text.endswith(f"# {b.num_parameters():,} parameters") and b.num_parameters() == 15 + 6 + 12 + 9 + 3


def test_call_records_the_module_scope_of_every_result():
    b = Block()
    x = Tensor(R.standard_normal((2, 4)))
    out = b(x)
    assert out._scope == (b,)
    inner = b.proj(x)
    assert inner._scope == (b.proj,)
    seen = set()
    stack = [out]
    while stack:
        t = stack.pop()
        seen.add(t._scope)
        stack.extend(t._parents)
    assert (b, b.norm) in seen and (b, b.layers[0]) in seen


# ---------------------------------------------------------------- initialisation, family by family
# sizes for the init tests: IE = d_model, IFF = dim_feedforward, IV = vocabulary, IKDIM = kdim != d_model

IE, IFF, IV, IKDIM = 64, 128, 300, 32


def _ours(build, *names):
    manual_seed(0)
    params = dict(build().named_parameters())
    return np.concatenate([params[n].data for n in names])  # stacked on axis 0, like PyTorch's in_proj


def _theirs(build, *names):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    params = dict(build(torch.nn).named_parameters())
    return np.concatenate([params[n].detach().numpy() for n in names])


def _transformer(m):
    return m.Transformer(IE, 4, 1, 1, IFF, dropout=0.0, batch_first=True)


# (family, our module, our parameters, PyTorch's module, its parameters, distribution)
# distribution: ("uniform", bound) | ("normal", std) | ("constant", value)
INIT = [
    ("Linear.weight", lambda: nn.Linear(IE, 48), ["weight"], lambda m: m.Linear(IE, 48), ["weight"],
     ("uniform", 1 / math.sqrt(IE))),  # kaiming_uniform(a=sqrt(5))
    ("Linear.bias", lambda: nn.Linear(IE, 4000), ["bias"], lambda m: m.Linear(IE, 4000), ["bias"],
     ("uniform", 1 / math.sqrt(IE))),
    ("Embedding.weight", lambda: nn.Embedding(IV, IE), ["weight"], lambda m: m.Embedding(IV, IE), ["weight"],
     ("normal", 1.0)),
    ("LayerNorm.weight", lambda: nn.LayerNorm(IE), ["weight"], lambda m: m.LayerNorm(IE), ["weight"],
     ("constant", 1.0)),
    ("LayerNorm.bias", lambda: nn.LayerNorm(IE), ["bias"], lambda m: m.LayerNorm(IE), ["bias"],
     ("constant", 0.0)),
    ("MHA in_proj (3E, E)", lambda: nn.MultiheadAttention(IE, 4), ["w_q.weight", "w_k.weight", "w_v.weight"],
     lambda m: m.MultiheadAttention(IE, 4), ["in_proj_weight"], ("uniform", math.sqrt(6 / (4 * IE)))),
    ("MHA in_proj bias", lambda: nn.MultiheadAttention(IE, 4), ["w_q.bias", "w_k.bias", "w_v.bias"],
     lambda m: m.MultiheadAttention(IE, 4), ["in_proj_bias"], ("constant", 0.0)),
    ("MHA out_proj.weight", lambda: nn.MultiheadAttention(IE, 4), ["w_o.weight"],
     lambda m: m.MultiheadAttention(IE, 4), ["out_proj.weight"], ("uniform", 1 / math.sqrt(IE))),
    ("MHA out_proj.bias", lambda: nn.MultiheadAttention(IE, 4), ["w_o.bias"],
     lambda m: m.MultiheadAttention(IE, 4), ["out_proj.bias"], ("constant", 0.0)),
    ("MHA k_proj, kdim != E", lambda: nn.MultiheadAttention(IE, 4, kdim=IKDIM, vdim=IKDIM), ["w_k.weight"],
     lambda m: m.MultiheadAttention(IE, 4, kdim=IKDIM, vdim=IKDIM), ["k_proj_weight"],
     ("uniform", math.sqrt(6 / (IE + IKDIM)))),
    ("Transformer in_proj (3E, E)", lambda: _transformer(nn),
     [f"encoder.layers.0.self_attn.{w}.weight" for w in ("w_q", "w_k", "w_v")], _transformer,
     ["encoder.layers.0.self_attn.in_proj_weight"], ("uniform", math.sqrt(6 / (4 * IE)))),
    ("Transformer cross in_proj", lambda: _transformer(nn),
     [f"decoder.layers.0.cross_attn.{w}.weight" for w in ("w_q", "w_k", "w_v")], _transformer,
     ["decoder.layers.0.multihead_attn.in_proj_weight"], ("uniform", math.sqrt(6 / (4 * IE)))),
    ("Transformer out_proj (E, E)", lambda: _transformer(nn), ["decoder.layers.0.self_attn.w_o.weight"],
     _transformer, ["decoder.layers.0.self_attn.out_proj.weight"], ("uniform", math.sqrt(6 / (2 * IE)))),
    ("Transformer linear1 (F, E)", lambda: _transformer(nn), ["encoder.layers.0.feed_forward.w_1.weight"],
     _transformer, ["encoder.layers.0.linear1.weight"], ("uniform", math.sqrt(6 / (IE + IFF)))),
    ("Transformer linear2 (E, F)", lambda: _transformer(nn), ["decoder.layers.0.feed_forward.w_2.weight"],
     _transformer, ["decoder.layers.0.linear2.weight"], ("uniform", math.sqrt(6 / (IE + IFF)))),
    ("Transformer linear1.bias", lambda: _transformer(nn), ["encoder.layers.0.feed_forward.w_1.bias"],
     _transformer, ["encoder.layers.0.linear1.bias"], ("uniform", 1 / math.sqrt(IE))),
    ("Transformer norm", lambda: _transformer(nn), ["encoder.norm.weight"], _transformer,
     ["encoder.norm.weight"], ("constant", 1.0)),
]


def _check_distribution(w, dist):
    kind, value = dist
    if kind == "constant":
        np.testing.assert_array_equal(w, value)
    elif kind == "uniform":  # U(-b, b): |w| <= b, the extremes reached, std b / sqrt(3)
        a = np.abs(w)
        assert a.max() <= value * (1 + 1e-6) and a.max() > 0.9 * value, (a.max(), value)
        assert abs(w.std() / (value / math.sqrt(3)) - 1) < 0.1, (w.std(), value / math.sqrt(3))
        assert abs(w.mean()) < 0.1 * value
    else:  # N(0, std)
        assert abs(w.std() / value - 1) < 0.05 and abs(w.mean()) < 0.05 * value, (w.mean(), w.std())


@pytest.mark.parametrize("family, build, names, _tb, _tn, dist", INIT, ids=[r[0] for r in INIT])
def test_init_follows_the_distribution(family, build, names, _tb, _tn, dist):
    _check_distribution(_ours(build, *names), dist)


@pytest.mark.parametrize("family, _b, _n, torch_build, torch_names, dist", INIT, ids=[r[0] for r in INIT])
def test_init_distribution_is_pytorchs(family, _b, _n, torch_build, torch_names, dist):
    _check_distribution(_theirs(torch_build, *torch_names), dist)


def test_init_shapes_match_pytorchs():
    for family, build, names, torch_build, torch_names, _ in INIT:
        assert _ours(build, *names).shape == _theirs(torch_build, *torch_names).shape, family


def test_embedding_padding_row_is_zero_also_after_seq2seq_redraws_it():
    manual_seed(0)
    model = nn.make_model(20, 30, N=1, d_model=IE, d_ff=IFF, h=4, padding_idx=3)
    for emb in (model.src_embed, model.tgt_embed):
        w = emb.weight.data
        np.testing.assert_array_equal(w[3], 0.0)
        bound = math.sqrt(6 / (len(w) + IE))  # xavier_uniform, as the Annotated Transformer
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound


# ---------------------------------------------------------------- layers


def test_linear_and_embedding_init_and_shapes():
    manual_seed(0)
    lin = nn.Linear(100, 7)
    assert lin.weight.shape == (7, 100) and np.abs(lin.weight.data).max() <= 0.1
    emb = nn.Embedding(10, 4, padding_idx=2)
    assert np.all(emb.weight.data[2] == 0)
    out = emb(np.array([[2, 3, 2]]))
    out.backward(np.ones(out.shape, np.float32))
    assert np.all(emb.weight.grad.data[2] == 0) and np.all(emb.weight.grad.data[3] == 1)
    with pytest.raises(IndexError, match="outside the vocabulary of 10"):
        emb(np.array([[1, 10]]))


def test_positional_encoding_matches_the_paper():
    pe = nn.PositionalEncoding(6, dropout=0.0, max_len=50)
    out = pe(Tensor(np.zeros((1, 4, 6))), start=3)
    pos, i = 5, 1  # position 3 + 2, feature pair 1
    assert out.data[0, 2, 2] == pytest.approx(math.sin(pos / 10000 ** (2 * i / 6)), abs=1e-6)
    assert out.data[0, 2, 3] == pytest.approx(math.cos(pos / 10000 ** (2 * i / 6)), abs=1e-6)
    assert pe.state_dict() == {}


def test_additive_attention_reference_and_gradcheck():
    att = nn.AdditiveAttention(3, 4, 5).double()
    q, k, v = t64((2, 2, 3)), t64((2, 3, 4)), t64((2, 3, 2))
    pad = np.array([[False, False, True], [False, False, False]])
    ctx, w = att(q, k, v, key_padding_mask=pad)
    wq, wk, vv = att.w_q.weight.data, att.w_k.weight.data, att.v.weight.data
    scores = np.tanh((q.data @ wq.T)[:, :, None] + (k.data @ wk.T)[:, None]) @ vv[0]
    scores = np.where(pad[:, None], -np.inf, scores)
    ref = np.exp(scores - scores.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(w.data, ref, rtol=1e-12)
    np.testing.assert_allclose(ctx.data, ref @ v.data, rtol=1e-12)
    assert att.attn_weights.shape == (2, 2, 3)
    assert gradcheck(lambda q, k, v: att(q, k, v, key_padding_mask=pad)[0], q, k, v)


LAYERS = [
    ("linear", lambda: nn.Linear(4, 3), (2, 5, 4), lambda t: t.nn.Linear(4, 3)),
    ("layer_norm", lambda: nn.LayerNorm(4, eps=1e-3), (2, 5, 4), lambda t: t.nn.LayerNorm(4, eps=1e-3)),
    ("gelu", lambda: nn.GELU(), (3, 4), lambda t: t.nn.GELU()),
    ("relu", lambda: nn.ReLU(), (3, 4), lambda t: t.nn.ReLU()),
    ("softmax", lambda: nn.Softmax(0), (3, 4), lambda t: t.nn.Softmax(0)),
    ("encoder_layer_gelu_prenorm",
     lambda: nn.TransformerEncoderLayer(8, 2, 16, 0.0, "gelu", norm_first=True), (2, 3, 8),
     lambda t: t.nn.TransformerEncoderLayer(8, 2, 16, 0.0, "gelu", batch_first=True, norm_first=True)),
]


@pytest.mark.parametrize("name, make, shape, make_torch", LAYERS, ids=[c[0] for c in LAYERS])
def test_layers_gradcheck_and_torch(name, make, shape, make_torch):
    layer = make().double()
    assert gradcheck(layer, t64(shape))
    torch = pytest.importorskip("torch")
    ref = make_torch(torch).double()
    load_torch_state_dict(layer, ref.state_dict())
    layer.zero_grad()  # gradcheck's backward left gradients in the parameters
    x = R.standard_normal(shape)
    ours, tx = Tensor(x, dtype=np.float64, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, want = layer(ours), ref(tx)
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    u = R.standard_normal(out.shape)
    out.backward(u)
    want.backward(torch.tensor(u))
    np.testing.assert_allclose(ours.grad.data, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    grads = to_torch_state_dict(layer, grads=True)
    for k, p in ref.named_parameters():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- MultiheadAttention


def _causal_bool(t):
    return np.triu(np.ones((t, t), bool), 1)


B, T, S, E, H = 2, 4, 5, 8, 2
KPM = np.array([[False, False, False, True, True], [False] * 5])
MHA_CASES = [
    ("plain", {}, None),
    ("bool_attn_mask", {"attn_mask": np.eye(T, S, 1, dtype=bool)}, None),
    ("float_attn_mask", {"attn_mask": R.standard_normal((T, S))}, None),
    ("per_head_mask", {"attn_mask": R.random((B * H, T, S)) < 0.3}, None),
    ("key_padding_mask", {"key_padding_mask": KPM}, None),
    ("both_masks", {"key_padding_mask": KPM, "attn_mask": np.eye(T, S, 2, dtype=bool)}, None),
    ("per_head_weights", {"key_padding_mask": KPM, "average_attn_weights": False}, None),
    ("no_weights", {"need_weights": False, "key_padding_mask": KPM}, None),
    ("is_causal_self", {"attn_mask": _causal_bool(T), "is_causal": True}, "qkv"),
    # self-attention without weights: the fast path, one packed projection and ops.self_attention
    ("fast_path", {"need_weights": False}, "qkv"),
    ("fast_path_masks", {"need_weights": False, "key_padding_mask": KPM[:, :T], "attn_mask": _causal_bool(T)}, "qkv"),
    ("fast_path_is_causal", {"need_weights": False, "attn_mask": _causal_bool(T), "is_causal": True}, "qkv"),
    # attention to a memory without weights: k, v in one product and ops.cross_attention
    ("fast_path_memory", {"need_weights": False}, "kv"),
    ("fast_path_memory_masks", {"need_weights": False, "key_padding_mask": KPM, "attn_mask": np.eye(T, S, 1) > 0},
     "kv"),
    ("memory_with_weights", {"key_padding_mask": KPM}, "kv"),
]


@pytest.mark.parametrize("name, kwargs, shared", MHA_CASES, ids=[c[0] for c in MHA_CASES])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 3e-5)])
def test_multihead_attention_matches_torch(name, kwargs, shared, dtype, tol):
    torch = pytest.importorskip("torch")
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True).to(getattr(torch, np.dtype(dtype).name))
    mha = nn.MultiheadAttention(E, H).to(dtype)
    load_torch_state_dict(mha, ref.state_dict())
    arrays = [R.standard_normal(s).astype(dtype) for s in [(B, T, E), (B, S, E), (B, S, E)]]
    mask_kwargs = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
                   for k, v in kwargs.items()}
    ours = [Tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    if shared == "qkv":  # one tensor as query, key and value
        ours, theirs = [ours[0]] * 3, [theirs[0]] * 3
    elif shared == "kv":  # one memory as key and value
        ours, theirs = [ours[0], ours[1], ours[1]], [theirs[0], theirs[1], theirs[1]]
    torch_kwargs = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in mask_kwargs.items()}
    out, w = mha(*ours, **mask_kwargs)
    want, want_w = ref(*theirs, **torch_kwargs)
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=tol, atol=tol)
    if kwargs.get("need_weights", True):
        np.testing.assert_allclose(w.data, want_w.detach().numpy(), rtol=tol, atol=tol)
    else:
        assert w is None and want_w is None
    assert mha.attn_weights.shape == (B, H, T, T if shared == "qkv" else S)
    u = R.standard_normal(out.shape).astype(dtype)
    out.backward(u)
    want.backward(torch.tensor(u))
    for a, b in zip(ours, theirs):
        if b.grad is not None:
            np.testing.assert_allclose(a.grad.data, b.grad.numpy(), rtol=tol, atol=tol)
    grads = to_torch_state_dict(mha, grads=True)
    for k, p in ref.named_parameters():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=tol, atol=tol)


def _ops_in(out):
    from tinygrad_attn.topo import topological_order

    return {node._op for node in topological_order(out, lambda node: node._parents) if node._op}


def _no_key_bias(mha):
    mha.w_k.bias = None  # a model with no bias on its keys (some checkpoints): no packed bias, so spelled out


class _LoggedLinear(nn.Linear):
    """A Linear of one's own (hooks, adapters): it must be called, so it cannot join a packed product."""


def _own_query_layer(mha):
    own = _LoggedLinear(E, E).to(np.float64)
    own.load_state_dict(mha.w_q.state_dict())
    mha.w_q = own


@pytest.mark.parametrize("kwargs, edit, fast_op", [
    ({"dropout": 0.3, "bias": False}, None, "self_attention"),
    ({"dropout": 0.0, "batch_first": False}, None, "self_attention"),
    ({}, _no_key_bias, None),
    ({}, _own_query_layer, "cross_attention"),  # self-attention with w_q apart: k and v still packed
    ({"dropout": 0.3}, "memory", "cross_attention"),  # key is value, the memory: the cross-attention route
    ({"batch_first": False, "bias": False}, "memory", "cross_attention"),
])
def test_multihead_attention_fast_path_and_spelled_out_steps_agree(kwargs, edit, fast_op):
    """The same forward, gradients and attn_weights either way, dropout's draws included."""
    mha = nn.MultiheadAttention(E, H, **kwargs).to(np.float64)
    if callable(edit):
        edit(mha)
    first = kwargs.get("batch_first", True)
    x = Tensor(R.standard_normal((B, T, E) if first else (T, B, E)), dtype=np.float64, requires_grad=True)
    inputs, mask = (x, x, x), {"key_padding_mask": KPM[:, :T], "attn_mask": _causal_bool(T)}
    if edit == "memory":
        m = Tensor(R.standard_normal((B, S, E) if first else (S, B, E)), dtype=np.float64, requires_grad=True)
        inputs, mask = (x, m, m), {"key_padding_mask": KPM, "attn_mask": np.eye(T, S, 1) > 0}
    u = R.standard_normal(x.shape)
    runs = []
    for route in ("fast", "spelled out"):
        manual_seed(5)
        with nn.spelled_out() if route == "spelled out" else contextlib.nullcontext():
            out, _ = mha(*inputs, need_weights=False, **mask)
        ops_used = _ops_in(out)
        assert (fast_op in ops_used) == (route == "fast" and fast_op is not None)
        assert ("masked_softmax" in ops_used) == (route == "spelled out" or fast_op is None)
        out.backward(u)
        runs.append([out.data, mha.attn_weights] + [t.grad.data for t in set(inputs)]
                    + [p.grad.data for p in mha.parameters()])
        for t in (*inputs, *mha.parameters()):
            t.zero_grad()
    assert nn.MultiheadAttention.fast_path  # spelled_out() puts it back
    for fast, spelled in zip(*runs):
        np.testing.assert_allclose(fast, spelled, rtol=1e-12, atol=1e-14)


def test_packing_gathers_the_real_tokens_and_puts_them_back():
    pad = np.array([[False, False, True], [False, False, False], [False, True, True]])
    packing = Packing(pad)
    x = t64((3, 3, 2))
    rows = packing.pack(x)
    np.testing.assert_array_equal(rows.data, x.data[~pad])  # the 6 real tokens, in reading order
    np.testing.assert_array_equal(packing.unpack(rows).data, np.where(pad[..., None], 0.0, x.data))
    assert gradcheck(lambda t: packing.unpack(packing.pack(t).tanh()), x)


def test_packing_unpacks_several_sets_of_rows_side_by_side():
    """unpack(q, k, v) of rows of different widths: each set in its columns, zeros at the padding, and each
    set's gradient from its own columns (gradcheck against a random cotangent)."""
    pad = np.array([[False, True, True], [False, False, True]])
    packing = Packing(pad)
    parts = [t64((3, 2)), t64((3, 1)), t64((3, 4))]
    padded = packing.unpack(*parts)
    assert padded.shape == (2, 3, 7)
    expected = np.zeros((6, 7))
    expected[[0, 3, 4]] = np.concatenate([p.data for p in parts], axis=1)
    np.testing.assert_array_equal(padded.data, expected.reshape(2, 3, 7))
    assert gradcheck(lambda a, b, c: packing.unpack(a, b, c), *parts)


def test_packing_unpack_keeps_float32_and_says_what_it_needs():
    packing = Packing(np.array([[False, True], [False, False]]))
    parts = [Tensor(R.standard_normal((3, 2)).astype(np.float32), requires_grad=True) for _ in range(2)]
    padded = packing.unpack(*parts)
    padded.backward(np.ones(padded.shape, np.float32))
    assert padded.dtype == np.float32 and all(p.grad.dtype == np.float32 for p in parts)
    with pytest.raises(ValueError, match=r"unpack_rows: parts .* for 3 places: give one or more 2-D"):
        packing.unpack(parts[0], t64((3, 2)))  # float32 and float64
    with pytest.raises(ValueError, match="unpack_rows"):
        packing.unpack(t64((2, 2)))  # 2 rows for 3 places
    with pytest.raises(ValueError, match="unpack_rows"):
        packing.unpack()
    with pytest.raises(ValueError, match=r"unpack_rows: parts \['ndarray \(3, 2\) float32'\]"):
        packing.unpack(parts[0].data)  # an array, not a Tensor


def test_float32_encoder_skipping_the_padding_stays_float32():
    manual_seed(0)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, 2 * E, 0.0, "gelu"), 2).eval()
    src = Tensor(R.standard_normal((*KPM.shape, E)).astype(np.float32))
    with no_grad():
        out = encoder(src, src_key_padding_mask=KPM)
    assert out.dtype == np.float32
    assert np.all(out.data[KPM] == 0)  # the padding was skipped: zeros there


def test_packing_unpack_matches_torch_index_copy():
    torch = pytest.importorskip("torch")
    pad = np.array([[False, False, True], [True, False, False]])
    packing = Packing(pad)
    parts = [t64((4, 3)), t64((4, 2))]
    g = R.standard_normal((2, 3, 5))
    padded = packing.unpack(*parts)
    padded.backward(g)
    ref_parts = [torch.tensor(p.data, requires_grad=True) for p in parts]
    ref = torch.zeros(6, 5, dtype=torch.float64).index_copy(0, torch.tensor(packing.tokens), torch.cat(ref_parts, 1))
    ref.reshape(2, 3, 5).backward(torch.tensor(g))
    np.testing.assert_allclose(padded.data, ref.detach().numpy().reshape(2, 3, 5), rtol=0, atol=0)
    for ours, theirs in zip(parts, ref_parts):
        np.testing.assert_allclose(ours.grad.data, theirs.grad.numpy(), rtol=0, atol=0)


class _OwnEncoderLayer(nn.TransformerEncoderLayer):
    """A layer of one's own with PyTorch's signatures: the encoder must keep calling its forward."""

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        return super().forward(src, src_mask, src_key_padding_mask, is_causal)

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        return super()._sa_block(x, attn_mask, key_padding_mask, is_causal)


def _frozen_first_layer(encoder):
    for p in encoder.layers[0].parameters():
        p.requires_grad = False


@pytest.mark.parametrize("edit", [_frozen_first_layer, "own layer", "float mask", "no padding"])
def test_encoder_inference_computes_every_position_when_it_must(edit):
    """Every position is computed (nothing is zero at the padding) when a later layer wants gradients, for a
    layer class of one's own, for a float mask with other values than 0 and -inf (they add to the scores), and
    when there is no padding."""
    manual_seed(0)
    layer = (_OwnEncoderLayer if edit == "own layer" else nn.TransformerEncoderLayer)(E, H, 2 * E, 0.0)
    encoder = nn.TransformerEncoder(layer, 2).to(np.float64).eval()
    float_mask = np.where(KPM, -np.inf, 0.0) - np.eye(*KPM.shape)  # padding, and -1 on two real keys
    pad = {"float mask": float_mask, "no padding": np.zeros_like(KPM)}.get(edit, KPM)
    if callable(edit):
        edit(encoder)
    x = Tensor(R.standard_normal((B, S, E)), dtype=np.float64)
    with contextlib.nullcontext() if callable(edit) else no_grad():
        out = encoder(x, src_key_padding_mask=pad)
        assert encoder._packing(x, None, pad, False) is None
    assert out.data[KPM].all()  # the padded positions hold computed values
    encoder.use_nested_tensor = False
    np.testing.assert_array_equal(out.data, encoder(x, src_key_padding_mask=pad).data)
    if callable(edit):
        out.sum().backward()
        assert encoder.layers[1].feed_forward.w_1.weight.grad is not None


def test_an_encoder_of_no_layers_passes_its_input_through_in_inference():
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, 2 * E, 0.0), 0).eval()
    x = Tensor(R.standard_normal((B, S, E)).astype(np.float32))
    with no_grad():
        np.testing.assert_array_equal(encoder(x, src_key_padding_mask=KPM).data, x.data)


@pytest.mark.parametrize("variant", ["fast", "spelled out", "own w_q"])
def test_encoder_inference_computes_the_real_tokens_alone_with_the_same_numbers(variant):
    """In inference on a padded batch the real tokens go through the layers packed as rows: the same numbers
    at every real token as computing every position, zeros at the padding."""
    manual_seed(0)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, 2 * E, 0.0, "gelu"), 2).to(np.float64).eval()
    if variant == "own w_q":
        _own_query_layer(encoder.layers[1].self_attn)
    x = Tensor(R.standard_normal((B, S, E)), dtype=np.float64)
    with no_grad():
        encoder.use_nested_tensor = False
        every = encoder(x, src_key_padding_mask=KPM).data
        encoder.use_nested_tensor = True
        with nn.spelled_out() if variant == "spelled out" else contextlib.nullcontext():
            packed = encoder(x, src_key_padding_mask=KPM).data
    assert every[KPM].any() and not packed[KPM].any()
    np.testing.assert_allclose(packed[~KPM], every[~KPM], rtol=1e-12, atol=1e-13)


def test_multihead_attention_gradcheck_and_masks_block():
    mha = nn.MultiheadAttention(4, 2).double()
    q, kv = t64((1, 3, 4)), t64((1, 4, 4))
    pad = np.array([[False, True, False, True]])
    assert gradcheck(lambda q, kv: mha(q, kv, kv, key_padding_mask=pad)[0], q, kv)
    mha(q, kv, kv, key_padding_mask=pad)
    assert np.all(mha.attn_weights[..., [1, 3]] == 0)
    moved = kv.data.copy()
    moved[:, [1, 3]] += 100.0  # a masked key's value cannot change the output
    a = mha(q, kv, kv, key_padding_mask=pad)[0].data
    b = mha(q, Tensor(moved, dtype=np.float64), Tensor(moved, dtype=np.float64), key_padding_mask=pad)[0].data
    np.testing.assert_allclose(a, b, rtol=1e-12)
    out, w = mha(q, q, q, is_causal=True)  # the causal mask built when none is given
    assert np.all(np.triu(w.data[0], 1) == 0)


def test_fully_masked_query_gives_zero_context_not_nan():
    mha = nn.MultiheadAttention(4, 2, bias=False)
    x = Tensor(R.standard_normal((1, 3, 4)), requires_grad=True)
    mask = np.zeros((3, 3), bool)
    mask[1] = True  # query 1 may see nothing
    out, w = mha(x, x, x, attn_mask=mask)
    assert np.all(np.isfinite(out.data)) and np.all(out.data[0, 1] == 0) and np.all(w.data[0, 1] == 0)
    out.sum().backward()
    assert np.all(np.isfinite(x.grad.data))


@pytest.mark.parametrize("call, kind, words", [
    (lambda: nn.MultiheadAttention(10, 3), ValueError, ["num_heads=3", "embed_dim=10", "divide"]),
    (lambda: nn.Transformer(10, 3), ValueError, ["Transformer:", "nhead=3", "d_model=10", "divide"]),
    (lambda: nn.MultiheadAttention(8, 2)(Tensor(np.ones((1, 2, 6))), *[Tensor(np.ones((1, 2, 8)))] * 2),
     ValueError, ["query", "6", "8", "d_model"]),
    (lambda: nn.MultiheadAttention(8, 2)(*[Tensor(np.ones((1, 2, 8)))] * 3, attn_mask=np.zeros((3, 2), bool)),
     ValueError, ["attn_mask", "(3, 2)", "(2, 2)"]),
    (lambda: nn.MultiheadAttention(8, 2)(*[Tensor(np.ones((1, 2, 8)))] * 3,
                                         key_padding_mask=np.zeros((1, 2), int)),
     TypeError, ["key_padding_mask", "int64", "bool"]),
])
def test_multihead_attention_errors(call, kind, words):
    with pytest.raises(kind) as info:
        call()
    for w in words:
        assert w in str(info.value)


def test_decoder_layer_and_transformer_gradcheck_under_masks():
    manual_seed(0)
    layer = nn.TransformerDecoderLayer(4, 2, 8, dropout=0.0, norm_first=True).double()
    tgt, memory = t64((1, 3, 4)), t64((1, 2, 4))
    causal, pad = np.triu(np.ones((3, 3), bool), 1), np.array([[False, True]])
    assert gradcheck(lambda t, m: layer(t, m, tgt_mask=causal, memory_key_padding_mask=pad), tgt, memory)
    model = nn.Transformer(4, 2, 1, 1, 8, dropout=0.0).double()
    assert gradcheck(lambda s, t: model(s, t, tgt_mask=causal, src_key_padding_mask=pad,
                                        memory_key_padding_mask=pad), memory, tgt)


def test_embedding_matches_torch_with_padding_idx():
    torch = pytest.importorskip("torch")
    ref = torch.nn.Embedding(6, 3, padding_idx=1).double()
    emb = nn.Embedding(6, 3, padding_idx=1).double()
    load_torch_state_dict(emb, ref.state_dict())
    ids = np.array([[1, 2, 2, 5], [0, 1, 3, 5]])
    out, want = emb(ids), ref(torch.tensor(ids))
    np.testing.assert_array_equal(out.data, want.detach().numpy())
    u = R.standard_normal(out.shape)
    out.backward(u)
    want.backward(torch.tensor(u))
    np.testing.assert_allclose(emb.weight.grad.data, ref.weight.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_multihead_attention_sequence_first_matches_torch():
    torch = pytest.importorskip("torch")
    ref = torch.nn.MultiheadAttention(E, H, batch_first=False).double()
    mha = nn.MultiheadAttention(E, H, batch_first=False).double()
    load_torch_state_dict(mha, ref.state_dict())
    q, kv = R.standard_normal((T, B, E)), R.standard_normal((S, B, E))  # (L, B, E)
    want, want_w = ref(*map(torch.tensor, (q, kv, kv)), key_padding_mask=torch.tensor(KPM))
    out, w = mha(Tensor(q, dtype=np.float64), Tensor(kv, dtype=np.float64), Tensor(kv, dtype=np.float64),
                 key_padding_mask=KPM)
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.data, want_w.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_load_state_dict_with_an_unconvertible_value_changes_nothing():
    layer = nn.Linear(3, 2)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    bad = {"weight": before["weight"] + 1, "bias": np.array(["a", "b"])}
    with pytest.raises(KeyError, match="bias: cannot convert"):
        layer.load_state_dict(bad)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_assigning_a_plain_tensor_over_a_parameter_is_an_error():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="Linear.weight is a Parameter"):
        layer.weight = Tensor(np.zeros((2, 3)), requires_grad=True)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.weight = nn.Parameter(np.zeros((2, 3)))  # a Parameter is fine
    layer.bias = None  # and so is removing one, as in PyTorch
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_embedding_padding_idx_must_be_a_row():
    with pytest.raises(ValueError, match=re.escape("Embedding: padding_idx=7 is not a row of a table with 4")):
        nn.Embedding(4, 2, padding_idx=7)


def test_layer_norm_weight_of_the_wrong_shape_is_named():
    from tinygrad_attn import functional as F

    with pytest.raises(ValueError, match=re.escape("layer_norm: weight (3,) and bias (4,) must both have")):
        F.layer_norm(Tensor(np.ones((2, 4))), 4, Tensor(np.ones(3)), Tensor(np.zeros(4)))
